//! Writing a response on a connection: the status line and headers, then the body whole
//! (with `Content-Length`) or piece by piece (chunked for HTTP/1.1, close-delimited for 1.0).

use std::io::{self, Write};
use std::net::TcpStream;

use super::wire::Connection;
use crate::{Error, Headers};

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
    // 1xx, 204 and 304 have no body; a 304's Content-Length would be the 200's (RFC 9110,
    // 8.6), which the answer does not know: none is written.
    if matches!(status, 100..=199 | 204 | 304) {
        out.extend_from_slice(b"\r\n");
    } else {
        let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
        if !head_only {
            out.extend_from_slice(body);
        }
    }
    socket.write_all(&out)
}

/// Writes the JSON answer of `err` (as `Response::from_error` builds it) on a raw
/// socket and asks to close, for requests refused before a handler could see them.
pub(crate) fn write_error(socket: &TcpStream, err: &Error) -> io::Result<()> {
    let body = err.to_json().to_string();
    let headers = err.answer_headers();
    write_whole(
        socket,
        err.status(),
        &headers,
        body.as_bytes(),
        false,
        false,
    )
}

/// The reason phrase of a status line: the `http` crate's table of registered statuses (its
/// phrases are RFC 7231's, "Payload Too Large" where RFC 9110 says "Content Too Large":
/// clients read the code, not the phrase).
fn reason(status: u16) -> &'static str {
    ::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Unknown")
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
            *date = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(date.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_carry_the_registered_reason() {
        assert_eq!(reason(200), "OK");
        assert_eq!(reason(101), "Switching Protocols");
        assert_eq!(reason(431), "Request Header Fields Too Large");
        assert_eq!(reason(299), "Unknown");
    }
}
