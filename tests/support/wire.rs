//! The one raw HTTP/1.1 client of the tests: [`Conn`], a connection on which a test writes
//! exact bytes (well-formed requests or deliberately malformed ones), reads response heads and
//! decodes bodies (chunked, sized or close-delimited) as they arrive without buffering ahead,
//! reads Server-Sent Events, half-closes, and watches how the server ends the connection.
//! Several responses can be read one after the other on one connection (keep-alive,
//! pipelining, `100 Continue`).

use std::io::{self, ErrorKind as IoErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::Reply;

/// How long a client waits for the next bytes before the test fails. A server or proxy that
/// buffers a stream the test drives by ordering never sends them.
pub const READ_LIMIT: Duration = Duration::from_secs(20);

/// Where `needle` first starts in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `GET path` over HTTP/1.1, as bytes to write.
pub fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

/// `POST path` with a JSON body over HTTP/1.1, as bytes to write.
pub fn post_json_request(path: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The status of every status line (`HTTP/1.1 NNN`) found anywhere in `bytes`: what a client
/// that read a connection to its end was answered, in order.
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

/// The JSON body after the first response head in `bytes` (a single error response).
pub fn json_after_head(bytes: &[u8]) -> Value {
    let at = find(bytes, b"\r\n\r\n").expect("a complete response head") + 4;
    serde_json::from_slice(&bytes[at..]).unwrap_or_else(|err| {
        panic!(
            "error body is not JSON ({err}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length`: this many bytes are still to come.
    Length(usize),
    /// No length: the body ends when the server closes the connection (HTTP/1.0 streams).
    Close,
    /// No body at all (a HEAD response, 1xx, 204, 304).
    Empty,
}

/// How a connection ended, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed the connection (FIN).
    Eof,
    /// The server reset the connection.
    Reset,
    /// The client gave up waiting: the server kept the connection open.
    ClientTimeout,
}

/// A client connection: raw bytes out, responses in. The fields describe the response whose
/// head was read last.
pub struct Conn {
    socket: TcpStream,
    limit: Duration,
    /// Bytes read from the socket and not yet decoded.
    raw: Vec<u8>,
    /// Decoded body bytes not yet consumed.
    body: Vec<u8>,
    /// Whether the last request written was a HEAD (its response has no body).
    head_request: bool,
    pub status: u16,
    /// `HTTP/1.x` of the status line.
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub framing: ResponseFraming,
    ended: bool,
    /// The request line of the last request written, for failure messages.
    what: String,
}

impl Conn {
    /// A connection to `addr` whose reads and writes fail the test after [`READ_LIMIT`].
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::open_with(addr, READ_LIMIT)
    }

    /// A connection to `addr` whose reads and writes fail the test after `limit`.
    pub fn open_with(addr: SocketAddr, limit: Duration) -> Conn {
        Conn::try_open(addr, limit).unwrap_or_else(|err| panic!("connect {addr}: {err}"))
    }

    /// Like [`Conn::open_with`], but a refused connection is an `Err` for the test to inspect.
    pub fn try_open(addr: SocketAddr, limit: Duration) -> io::Result<Conn> {
        let socket = TcpStream::connect(addr)?;
        socket.set_read_timeout(Some(limit))?;
        socket.set_write_timeout(Some(limit))?;
        Ok(Conn {
            socket,
            limit,
            raw: Vec::new(),
            body: Vec::new(),
            head_request: false,
            status: 0,
            version: String::new(),
            headers: Vec::new(),
            framing: ResponseFraming::Empty,
            ended: true,
            what: format!("connection to {addr}"),
        })
    }

    /// Connects to `addr`, writes `request` and reads the response head.
    pub fn request(addr: SocketAddr, request: &[u8]) -> Conn {
        let mut conn = Conn::open(addr);
        conn.send(request);
        conn.read_head();
        conn
    }

    /// `GET path` over HTTP/1.1 on a new connection, up to the response head.
    pub fn get(addr: SocketAddr, path: &str) -> Conn {
        Conn::request(addr, get_request(path).as_bytes())
    }

    /// `POST path` with a JSON body over HTTP/1.1 on a new connection, up to the response head.
    pub fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Conn {
        Conn::request(addr, &post_json_request(path, body))
    }

    /// Writes `bytes` as they are; fails the test if the socket refuses them.
    pub fn send(&mut self, bytes: &[u8]) {
        self.note_request(bytes);
        let what = &self.what;
        (&self.socket)
            .write_all(bytes)
            .unwrap_or_else(|err| panic!("sending {what:?}: {err}"));
    }

    /// Writes `bytes` as they are, for a test that expects the server may stop reading.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.note_request(bytes);
        (&self.socket).write_all(bytes)
    }

    /// Remembers a request line written (not a body or a fragment): for failure messages,
    /// and whether the response to come has a body.
    fn note_request(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned();
        let line = text.lines().next().unwrap_or_default();
        if line.contains(" HTTP/1.") {
            self.what = line.to_string();
            self.head_request = bytes.starts_with(b"HEAD ");
        }
    }

    /// A second handle on the socket, to write raw bytes from another thread while this one
    /// reads.
    pub fn writer(&self) -> TcpStream {
        self.socket.try_clone().expect("clone the client socket")
    }

    /// Half-closes: the server reads an end of stream, the client can still read.
    pub fn half_close(&self) {
        self.socket.shutdown(Shutdown::Write).expect("half-close");
    }

    /// Closes both directions (errors ignored: the server may have closed already).
    pub fn close(&self) {
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Reads more bytes from the socket; 0 at end of stream (or a reset). A timeout fails the
    /// test.
    fn fill(&mut self) -> usize {
        match self.fill_raw() {
            Ok(n) => n,
            Err(err) if matches!(err.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut) => {
                panic!(
                    "{}: nothing arrived within {:?}; the server or a proxy is holding back \
                     data it should have sent (body so far: {:?}, unread: {:?})",
                    self.what,
                    self.limit,
                    String::from_utf8_lossy(&self.body),
                    String::from_utf8_lossy(&self.raw)
                )
            }
            // A reset after the server closed: the same as an end of stream here.
            Err(err) if err.kind() == IoErrorKind::ConnectionReset => 0,
            Err(err) => panic!("{}: reading: {err}", self.what),
        }
    }

    fn fill_raw(&mut self) -> io::Result<usize> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.socket.read(&mut buf) {
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    return Ok(n);
                }
                Err(err) if err.kind() == IoErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Reads the next response head (an interim 1xx counts as one); what is left of the body
    /// of the previous response is dropped.
    pub fn read_head(&mut self) {
        while self.more() {}
        self.body.clear();
        let end = loop {
            if let Some(pos) = find(&self.raw, b"\r\n\r\n") {
                break pos;
            }
            if self.fill() == 0 {
                panic!(
                    "{}: connection closed before a complete response head: {:?}",
                    self.what,
                    String::from_utf8_lossy(&self.raw)
                );
            }
        };
        let head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
        self.raw.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        self.version = parts.next().unwrap_or("").to_string();
        assert!(
            self.version.starts_with("HTTP/1."),
            "{}: bad status line {status_line:?}",
            self.what
        );
        self.status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}: bad status line {status_line:?}", self.what));
        self.headers = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("{}: bad header line {line:?}", self.what));
                (name.trim().to_string(), value.trim().to_string())
            })
            .collect();
        let no_body = self.head_request
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304;
        let chunked = self
            .header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = self
            .header("Content-Length")
            .map(|v| v.parse::<usize>().expect("numeric Content-Length"));
        self.framing = match (no_body, chunked, length) {
            (true, _, _) => ResponseFraming::Empty,
            (false, true, _) => ResponseFraming::Chunked,
            (false, false, Some(len)) => ResponseFraming::Length(len),
            (false, false, None) => ResponseFraming::Close,
        };
        self.ended = false;
    }

    /// The next whole response: its head and its body.
    pub fn response(&mut self) -> Reply {
        self.read_head();
        self.reply()
    }

    /// The response whose head was read last, with the rest of its body.
    pub fn reply(&mut self) -> Reply {
        let body = self.read_to_end();
        Reply {
            status: self.status,
            headers: self.headers.clone(),
            body,
        }
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Takes one CRLF-terminated line of chunk framing from the socket.
    fn raw_line(&mut self) -> String {
        loop {
            if let Some(pos) = find(&self.raw, b"\r\n") {
                let line = String::from_utf8_lossy(&self.raw[..pos]).into_owned();
                self.raw.drain(..pos + 2);
                return line;
            }
            if self.fill() == 0 {
                panic!("{}: connection closed inside chunk framing", self.what);
            }
        }
    }

    /// Exactly `n` bytes as they come off the socket (not decoded as a response).
    pub fn read_raw(&mut self, n: usize) -> Vec<u8> {
        while self.raw.len() < n {
            if self.fill() == 0 {
                panic!(
                    "{}: connection closed after {:?}",
                    self.what,
                    String::from_utf8_lossy(&self.raw)
                );
            }
        }
        self.raw.drain(..n).collect()
    }

    /// Decodes more body bytes (one chunk, or what the socket has); false once the body ended.
    fn more(&mut self) -> bool {
        if self.ended {
            return false;
        }
        match self.framing {
            ResponseFraming::Chunked => {
                let line = self.raw_line();
                let size_text = line.split(';').next().unwrap_or("").trim().to_string();
                let size = usize::from_str_radix(&size_text, 16)
                    .unwrap_or_else(|_| panic!("{}: bad chunk size line {line:?}", self.what));
                if size == 0 {
                    while !self.raw_line().is_empty() {}
                    self.ended = true;
                    return false;
                }
                let data = self.read_raw(size);
                self.body.extend_from_slice(&data);
                let end = self.read_raw(2);
                assert_eq!(end, b"\r\n", "{}: chunk not followed by CRLF", self.what);
                true
            }
            ResponseFraming::Length(0) | ResponseFraming::Empty => {
                self.ended = true;
                false
            }
            ResponseFraming::Length(left) => {
                if self.raw.is_empty() && self.fill() == 0 {
                    panic!("{}: body ended {left} bytes early", self.what);
                }
                let n = left.min(self.raw.len());
                let data: Vec<u8> = self.raw.drain(..n).collect();
                self.body.extend_from_slice(&data);
                self.framing = ResponseFraming::Length(left - n);
                true
            }
            ResponseFraming::Close => {
                if self.raw.is_empty() && self.fill() == 0 {
                    self.ended = true;
                    return false;
                }
                let data = std::mem::take(&mut self.raw);
                self.body.extend_from_slice(&data);
                true
            }
        }
    }

    /// Reads until the body has `expected` next, and consumes it; fails on anything else.
    pub fn expect_body(&mut self, expected: &[u8]) {
        while self.body.len() < expected.len() {
            if !self.more() {
                break;
            }
        }
        let got = &self.body[..expected.len().min(self.body.len())];
        assert_eq!(
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(expected),
            "{}: unexpected body bytes",
            self.what
        );
        self.body.drain(..expected.len());
    }

    /// Whether the body has ended with nothing left to consume.
    pub fn at_end(&mut self) -> bool {
        self.body.is_empty() && !self.more() && self.body.is_empty()
    }

    /// The rest of the body, until it ends.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.more() {}
        std::mem::take(&mut self.body)
    }

    /// The rest of the body as JSON.
    pub fn json(&mut self) -> Value {
        let body = self.read_to_end();
        serde_json::from_slice(&body).unwrap_or_else(|err| {
            panic!(
                "{}: body is not JSON ({err}): {}",
                self.what,
                String::from_utf8_lossy(&body)
            )
        })
    }

    /// The next raw SSE event (up to and including its blank line), or `None` at the end.
    pub fn next_event_text(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = find(&self.body, b"\n\n") {
                let text: Vec<u8> = self.body.drain(..pos + 2).collect();
                return Some(String::from_utf8(text).expect("events are UTF-8"));
            }
            if !self.more() {
                assert!(
                    self.body.is_empty(),
                    "{}: stream ended inside an event: {:?}",
                    self.what,
                    String::from_utf8_lossy(&self.body)
                );
                return None;
            }
        }
    }

    /// The next SSE event, comments included, or `None` at the end of the stream.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.next_event_text().map(|text| SseEvent::parse(&text))
    }

    /// The next SSE event that has data (keep-alive comments skipped), or `None` at the end.
    pub fn next_data_event(&mut self) -> Option<SseEvent> {
        loop {
            let event = self.next_event()?;
            if event.data.is_some() {
                return Some(event);
            }
        }
    }

    /// Reads until the connection ends, keeping what arrives as unread bytes; returns how it
    /// ended. A client timeout is an answer here, not a failure.
    pub fn finish(&mut self) -> End {
        loop {
            match self.fill_raw() {
                Ok(0) => return End::Eof,
                Ok(_) => {}
                Err(err)
                    if matches!(err.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut) =>
                {
                    return End::ClientTimeout
                }
                Err(_) => return End::Reset,
            }
        }
    }

    /// The bytes read from the socket and not yet taken as a response.
    pub fn unread(&self) -> &[u8] {
        &self.raw
    }

    /// Everything the server sends until it closes (or resets) the connection, after what was
    /// already read; fails the test if it keeps the connection open past the limit.
    pub fn until_closed(&mut self) -> Vec<u8> {
        if self.finish() == End::ClientTimeout {
            panic!(
                "the server kept the connection open; got {:?}",
                String::from_utf8_lossy(&self.raw)
            );
        }
        std::mem::take(&mut self.raw)
    }

    /// Asserts the server closes the connection (cleanly) with nothing more to read.
    pub fn assert_closed(&mut self) {
        let end = self.finish();
        assert_eq!(end, End::Eof, "the server should close the connection");
        assert!(
            self.raw.is_empty(),
            "unexpected bytes after the response: {:?}",
            String::from_utf8_lossy(&self.raw)
        );
    }

    /// Whether the server has already closed (or reset) this connection; waits at most 1 ms.
    pub fn is_closed_by_server(&self) -> bool {
        self.socket
            .set_read_timeout(Some(Duration::from_millis(1)))
            .expect("read timeout");
        let closed = match self.socket.peek(&mut [0u8; 1]) {
            Ok(n) => n == 0,
            Err(err) => err.kind() == IoErrorKind::ConnectionReset,
        };
        self.socket
            .set_read_timeout(Some(self.limit))
            .expect("read timeout");
        closed
    }
}

/// One parsed Server-Sent Event (per the WHATWG `text/event-stream` rules).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub retry: Option<u64>,
    /// The `data:` lines joined with `\n`; `None` when there was no `data:` line.
    pub data: Option<String>,
    /// Comment lines (`:` ...), without the colon.
    pub comments: Vec<String>,
}

impl SseEvent {
    pub fn parse(text: &str) -> SseEvent {
        let mut event = SseEvent::default();
        for line in text.split('\n').filter(|l| !l.is_empty()) {
            if let Some(comment) = line.strip_prefix(':') {
                event.comments.push(comment.to_string());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
            match field {
                "event" => event.event = Some(value),
                "id" => event.id = Some(value),
                "retry" => event.retry = value.parse().ok(),
                "data" => match &mut event.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => event.data = Some(value),
                },
                _ => {}
            }
        }
        event
    }

    /// The data as JSON.
    pub fn json(&self) -> Value {
        let data = self.data.as_deref().unwrap_or("");
        serde_json::from_str(data)
            .unwrap_or_else(|err| panic!("event data is not JSON ({err}): {data}"))
    }
}
