//! HTTP/1.1 on a blocking socket: reading a request head and body under limits and deadlines,
//! and writing a response.
//!
//! Every read is bounded in bytes (head size, header count, body size) and in time (a deadline
//! for the head, a timeout per body read), so a slow or hostile client costs one connection
//! slot for a bounded time and bounded memory.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Error, ErrorKind};

/// The limits a connection enforces while reading a request.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_head_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) head_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) keep_alive_timeout: Duration,
}

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) minor_version: u8,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        crate::request::find_header(&self.headers, name)
    }

    /// Whether the client wants the connection kept open after this request.
    pub(crate) fn wants_keep_alive(&self) -> bool {
        let connection = self.header("Connection").unwrap_or("").to_ascii_lowercase();
        if self.minor_version == 0 {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        }
    }
}

/// How the body is framed.
enum Framing {
    Length(usize),
    Chunked,
}

/// Why reading a request stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed, or stayed idle past the keep-alive timeout, between requests: close quietly.
    Closed,
    /// The request is bad: answer with this error, then close.
    Reject(Error),
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> ReadError {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ReadError::Reject(Error::new(
                ErrorKind::RequestTimeout,
                "timed out reading the request",
            )),
            _ => ReadError::Closed,
        }
    }
}

/// One client connection: the socket and the bytes read ahead of the current request.
pub(crate) struct Connection {
    stream: Arc<TcpStream>,
    /// The socket's read timeout as last set: setting it is a system call, skipped when the
    /// value is unchanged (the usual case between keep-alive requests).
    read_timeout: Option<Duration>,
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

/// A new connection's read buffer: most request heads and small JSON bodies fit.
const INITIAL_BUFFER: usize = 2 * 1024;
/// Free space below which the buffer grows (doubling) before the next read.
const MIN_READ: usize = 1024;
/// Above this, a buffer grown by a large body is given back once the body is consumed.
const KEEP_BUFFER: usize = 64 * 1024;

impl Connection {
    pub(crate) fn new(stream: TcpStream) -> Connection {
        Connection {
            stream: Arc::new(stream),
            read_timeout: None,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// The socket: shared, so a request can check whether its client has gone.
    pub(crate) fn stream(&self) -> &Arc<TcpStream> {
        &self.stream
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // A large body grew the buffer: give the memory back before waiting for the next
            // request.
            if self.buf.len() > KEEP_BUFFER {
                self.buf = vec![0; INITIAL_BUFFER];
            }
        }
    }

    /// Reads more bytes into the buffer, waiting at most `timeout`. Returns 0 at end of stream.
    fn fill(&mut self, timeout: Duration) -> io::Result<usize> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let timeout = timeout.max(Duration::from_millis(1));
        if self.read_timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        // The buffer keeps its length (zeroed once) and `end` marks the bytes read, so a read
        // does not zero memory it is about to overwrite.
        if self.buf.len() - self.end < MIN_READ {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = (&*self.stream).read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads the next request head. Waits up to the keep-alive timeout for its first byte,
    /// then up to the head timeout for the rest.
    /// `idle` is lowered as soon as the first byte arrives: from then on a graceful shutdown
    /// lets this request finish.
    pub(crate) fn read_head(
        &mut self,
        limits: &Limits,
        idle: &std::sync::atomic::AtomicBool,
    ) -> Result<Head, ReadError> {
        // Browsers and proxies may send empty lines between requests (RFC 9112 section 2.2).
        while self.buffered().starts_with(b"\r\n") {
            self.consume(2);
        }
        if self.buffered().is_empty() {
            match self.fill(limits.keep_alive_timeout) {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
        }
        idle.store(false, std::sync::atomic::Ordering::SeqCst);
        let deadline = Instant::now() + limits.head_timeout;
        loop {
            match parse_head(self.buffered(), limits.max_headers) {
                Ok(httparse::Status::Complete((len, head))) => {
                    // A complete head can arrive in one read, past the check below.
                    if len > limits.max_head_bytes {
                        return Err(ReadError::Reject(too_large_head(limits)));
                    }
                    self.consume(len);
                    return Ok(head);
                }
                Ok(httparse::Status::Partial) => {}
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(ReadError::Reject(too_large_head(limits)));
                }
                Err(err) => {
                    let message = format!("malformed request: {err}");
                    return Err(ReadError::Reject(Error::bad_request(message)));
                }
            }
            if self.buffered().len() >= limits.max_head_bytes {
                return Err(ReadError::Reject(too_large_head(limits)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::from(io::ErrorKind::TimedOut).into());
            }
            if self.fill(left)? == 0 {
                return Err(ReadError::Closed);
            }
        }
    }

    /// Reads the body the head announces, refusing more than the body limit.
    pub(crate) fn read_body(&mut self, head: &Head, limits: &Limits) -> Result<Vec<u8>, ReadError> {
        let body = match framing(head)? {
            Framing::Length(0) => return Ok(Vec::new()),
            Framing::Length(len) if len > limits.max_body_bytes => {
                return Err(ReadError::Reject(Error::payload_too_large(
                    limits.max_body_bytes,
                )));
            }
            Framing::Length(len) => {
                self.send_continue(head)?;
                self.read_exact_body(len, limits)?
            }
            Framing::Chunked => {
                self.send_continue(head)?;
                self.read_chunked_body(limits)?
            }
        };
        Ok(body)
    }

    fn send_continue(&mut self, head: &Head) -> io::Result<()> {
        let expects = head
            .header("Expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if expects && self.buffered().is_empty() {
            (&*self.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        Ok(())
    }

    fn read_exact_body(&mut self, len: usize, limits: &Limits) -> Result<Vec<u8>, ReadError> {
        while self.buffered().len() < len {
            let want = len - self.buffered().len();
            if self.fill(limits.read_timeout)? == 0 {
                let message = format!("body ended {want} bytes before its declared length");
                return Err(ReadError::Reject(Error::bad_request(message)));
            }
        }
        let body = self.buffered()[..len].to_vec();
        self.consume(len);
        Ok(body)
    }

    fn read_line(&mut self, limits: &Limits) -> Result<String, ReadError> {
        loop {
            if let Some(pos) = self.buffered().windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffered()[..pos]).into_owned();
                self.consume(pos + 2);
                return Ok(line);
            }
            if self.buffered().len() > 4096 {
                return Err(ReadError::Reject(Error::bad_request("chunk line too long")));
            }
            if self.fill(limits.read_timeout)? == 0 {
                return Err(ReadError::Reject(Error::bad_request(
                    "chunked body ended early",
                )));
            }
        }
    }

    fn read_chunked_body(&mut self, limits: &Limits) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(limits)?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| {
                ReadError::Reject(Error::bad_request(format!("bad chunk size {size_text:?}")))
            })?;
            if size == 0 {
                // Trailers, if any, end with an empty line.
                while !self.read_line(limits)?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > limits.max_body_bytes {
                return Err(ReadError::Reject(Error::payload_too_large(
                    limits.max_body_bytes,
                )));
            }
            body.extend(self.read_exact_body(size, limits)?);
            if !self.read_line(limits)?.is_empty() {
                return Err(ReadError::Reject(Error::bad_request(
                    "chunk not followed by CRLF",
                )));
            }
        }
    }

    /// Writes a whole response. `head_only` leaves the body out (HEAD requests) but keeps its length.
    pub(crate) fn write_response(
        &mut self,
        status: u16,
        headers: &[(String, String)],
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
        (&*self.stream).write_all(&out)?;
        (&*self.stream).flush()
    }
}

impl Connection {
    /// Writes the head of a streamed response: chunked for HTTP/1.1, close-delimited for 1.0.
    pub(crate) fn write_stream_head(
        &mut self,
        status: u16,
        headers: &[(String, String)],
        keep_alive: bool,
        chunked: bool,
    ) -> io::Result<()> {
        let mut out = Vec::with_capacity(256);
        write_head(&mut out, status, headers, keep_alive && chunked);
        if chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        out.extend_from_slice(b"\r\n");
        (&*self.stream).write_all(&out)
    }

    /// Writes one piece of a streamed body, framed as a chunk when `chunked`, in one write.
    pub(crate) fn write_chunk(&mut self, data: &[u8], chunked: bool) -> io::Result<()> {
        if !chunked {
            return (&*self.stream).write_all(data);
        }
        let mut out = Vec::with_capacity(data.len() + 16);
        out.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        (&*self.stream).write_all(&out)
    }

    /// Ends a chunked body.
    pub(crate) fn write_last_chunk(&mut self) -> io::Result<()> {
        (&*self.stream).write_all(b"0\r\n\r\n")
    }

    /// Whether the client has closed its side (or reset the connection), checked without
    /// blocking and without consuming anything it may have sent.
    pub(crate) fn client_gone(&self) -> bool {
        peer_closed(&self.stream)
    }
}

/// Whether the peer has closed its side of `stream` (or reset it), checked without blocking,
/// without consuming anything it sent, and without touching the socket's blocking mode, so
/// another thread may check while this one reads or writes.
pub(crate) fn peer_closed(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    match socket2::SockRef::from(stream).recv_with_flags(&mut byte, flags) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => !matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
        ),
    }
}

/// Headers parsed into an array on the stack; heads with more are parsed again into one of
/// `max_headers` on the heap.
const STACK_HEADERS: usize = 32;

/// Parses a request head: its length and the owned head once complete.
fn parse_head(buf: &[u8], max_headers: usize) -> httparse::Result<(usize, Head)> {
    fn parse<'b>(
        buf: &'b [u8],
        headers: &mut [httparse::Header<'b>],
    ) -> httparse::Result<(usize, Head)> {
        let mut parsed = httparse::Request::new(headers);
        Ok(match parsed.parse(buf)? {
            httparse::Status::Complete(len) => httparse::Status::Complete((
                len,
                Head {
                    method: parsed.method.unwrap_or("GET").to_string(),
                    target: parsed.path.unwrap_or("/").to_string(),
                    minor_version: parsed.version.unwrap_or(1),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value).into_owned();
                            (h.name.to_string(), value)
                        })
                        .collect(),
                },
            )),
            httparse::Status::Partial => httparse::Status::Partial,
        })
    }
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    match parse(buf, &mut stack[..max_headers.min(STACK_HEADERS)]) {
        Err(httparse::Error::TooManyHeaders) if max_headers > STACK_HEADERS => {
            parse(buf, &mut vec![httparse::EMPTY_HEADER; max_headers])
        }
        result => result,
    }
}

fn too_large_head(limits: &Limits) -> Error {
    Error::new(
        ErrorKind::HeadersTooLarge,
        format!(
            "request line and headers exceed the limit of {} bytes or {} headers",
            limits.max_head_bytes, limits.max_headers
        ),
    )
}

fn framing(head: &Head) -> Result<Framing, ReadError> {
    if let Some(encoding) = head.header("Transfer-Encoding") {
        if encoding.trim().eq_ignore_ascii_case("chunked") {
            return Ok(Framing::Chunked);
        }
        let message = format!("unsupported transfer encoding {encoding:?}");
        return Err(ReadError::Reject(Error::bad_request(message)));
    }
    let mut lengths = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"));
    let Some((_, first)) = lengths.next() else {
        return Ok(Framing::Length(0));
    };
    if lengths.any(|(_, v)| v != first) {
        return Err(ReadError::Reject(Error::bad_request(
            "conflicting Content-Length headers",
        )));
    }
    let text = first.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ReadError::Reject(Error::bad_request(format!(
            "bad Content-Length {text:?}"
        ))));
    }
    // Longer than usize: certainly over any limit.
    Ok(Framing::Length(text.parse().unwrap_or(usize::MAX)))
}

/// Status line and the headers every response carries.
fn write_head(out: &mut Vec<u8>, status: u16, headers: &[(String, String)], keep_alive: bool) {
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

/// Writes an error response on a raw socket, for connections refused before a worker sees them.
pub(crate) fn write_error(mut stream: &TcpStream, err: &Error) -> io::Result<()> {
    let body = err.to_json().to_string();
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(err.headers().iter().cloned());
    let mut out = Vec::new();
    write_head(&mut out, err.status(), &headers, false);
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    stream.write_all(&out)
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
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

    #[test]
    fn http_date_matches_known_instants() {
        let at = |secs| std::time::UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(http_date(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
