//! Writing a response on a connection: the status line and headers, then the body whole
//! (with `Content-Length`) or piece by piece (chunked for HTTP/1.1, close-delimited for 1.0).

use std::io::{self, Write};
use std::net::TcpStream;

use super::wire::Connection;
use crate::{Error, Headers, Response};

impl Connection {
    /// Writes a whole response. `head_only` leaves the body out (HEAD requests) but keeps its length.
    pub(crate) fn write_response(
        &mut self,
        status: u16,
        headers: &Headers,
        body: &[u8],
        keep_alive: bool,
        head_only: bool,
    ) -> io::Result<()> {
        write_whole(self.socket(), status, headers, body, keep_alive, head_only)?;
        (&**self.socket()).flush()
    }

    /// Writes the head of a streamed response: chunked for HTTP/1.1, close-delimited for 1.0.
    pub(crate) fn write_stream_head(
        &mut self,
        status: u16,
        headers: &Headers,
        keep_alive: bool,
        chunked: bool,
    ) -> io::Result<()> {
        let mut out = Vec::with_capacity(256);
        write_head(&mut out, status, headers, keep_alive && chunked);
        if chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        out.extend_from_slice(b"\r\n");
        (&**self.socket()).write_all(&out)
    }
}

impl Connection {
    /// Writes the head of `101 Switching Protocols`: no body follows, and the connection is
    /// the new protocol's from the next byte on.
    pub(crate) fn write_switch_head(&mut self, headers: &Headers) -> io::Result<()> {
        let mut out = Vec::with_capacity(256);
        write_head(&mut out, 101, headers, true);
        out.extend_from_slice(b"\r\n");
        (&**self.socket()).write_all(&out)
    }
}

/// Status line and the headers every response carries.
fn write_head(out: &mut Vec<u8>, status: u16, headers: &Headers, keep_alive: bool) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        // Header values come from handlers: never let them split the response.
        if value.contains(['\r', '\n']) || name.contains(['\r', '\n', ':']) {
            continue;
        }
        for part in [name.as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
            out.extend_from_slice(part);
        }
    }
    out.extend_from_slice(b"Date: ");
    push_http_date(out);
    out.extend_from_slice(b"\r\n");
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
}

/// Writes a response with a whole body (`Content-Length`) in one write. `head_only` leaves the
/// body out (HEAD requests) but keeps its length.
fn write_whole(
    mut socket: &TcpStream,
    status: u16,
    headers: &Headers,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + body.len());
    write_head(&mut out, status, headers, keep_alive);
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    if !head_only {
        out.extend_from_slice(body);
    }
    socket.write_all(&out)
}

/// Writes the error response ([`Response::from_error`]) on a raw socket and asks to close,
/// for requests refused before a handler could see them.
pub(crate) fn write_error(socket: &TcpStream, err: &Error) -> io::Result<()> {
    let response = Response::from_error(err);
    let (status, headers) = (response.status(), response.headers());
    write_whole(socket, status, headers, response.body(), false, false)
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Appends the current IMF-fixdate, formatted at most once a second per thread.
fn push_http_date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> = const {
            std::cell::RefCell::new((u64::MAX, String::new()))
        };
    }
    let now = std::time::SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(at, date)| {
        if *at != secs {
            *at = secs;
            *date = http_date(now);
        }
        out.extend_from_slice(date.as_bytes());
    });
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (year, month, day, h, m, s, weekday) = crate::log::civil(secs);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {h:02}:{m:02}:{s:02} GMT",
        WEEKDAYS[weekday],
        MONTHS[(month - 1) as usize]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn http_date_matches_known_instants() {
        let at = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(http_date(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
