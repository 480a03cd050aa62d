//! A raw HTTP/1.1 client on a socket: exact bytes out, the response head parsed, the body
//! decoded (chunked, sized or close-delimited) as it arrives, without buffering ahead; and a
//! Server-Sent Events parser on top.

use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// How long a client waits for the next bytes before the test fails. A server or proxy that
/// buffers a stream the test drives by ordering never sends them.
pub const READ_LIMIT: Duration = Duration::from_secs(20);

/// Where `needle` first starts in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A connection to `addr` whose reads and writes give up after `timeout`.
pub fn connect(addr: SocketAddr, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|err| panic!("connect {addr}: {err}"));
    stream
        .set_read_timeout(Some(timeout))
        .expect("set read timeout");
    stream
        .set_write_timeout(Some(timeout))
        .expect("set write timeout");
    stream
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length`: this many bytes are still to come.
    Length(usize),
    /// No length: the body ends when the server closes the connection (HTTP/1.0 streams).
    Close,
    /// No body at all (a HEAD response).
    Empty,
}

/// One HTTP exchange on a raw socket: sends a request, parses the response head, and decodes
/// the body (chunked, sized or close-delimited) as it arrives, without buffering ahead.
pub struct Http {
    stream: TcpStream,
    /// Bytes read from the socket and not yet decoded.
    raw: Vec<u8>,
    /// Decoded body bytes not yet consumed.
    body: Vec<u8>,
    pub status: u16,
    /// `HTTP/1.x` of the status line.
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    ended: bool,
    what: String,
}

impl Http {
    /// Connects to `addr`, writes `request` and reads the response head.
    pub fn send(addr: SocketAddr, request: &[u8]) -> Http {
        let what = String::from_utf8_lossy(request)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let stream = connect(addr, READ_LIMIT);
        (&stream)
            .write_all(request)
            .unwrap_or_else(|err| panic!("sending {what:?}: {err}"));
        let head_only = request.starts_with(b"HEAD ");
        let mut http = Http {
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            status: 0,
            version: String::new(),
            headers: Vec::new(),
            framing: Framing::Empty,
            ended: false,
            what,
        };
        http.read_head(head_only);
        http
    }

    /// `GET path` over HTTP/1.1.
    pub fn get(addr: SocketAddr, path: &str) -> Http {
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        Http::send(addr, request.as_bytes())
    }

    /// `POST path` with a JSON body over HTTP/1.1.
    pub fn post_json(addr: SocketAddr, path: &str, body: &Value) -> Http {
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        Http::send(addr, request.as_bytes())
    }

    /// Reads more bytes from the socket; 0 at end of stream. A timeout fails the test.
    fn fill(&mut self) -> usize {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut buf) {
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    return n;
                }
                Err(err) if err.kind() == IoErrorKind::Interrupted => continue,
                Err(err)
                    if matches!(err.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut) =>
                {
                    panic!(
                        "{}: nothing arrived within {READ_LIMIT:?}; the server or a proxy is \
                         holding back data it should have sent (body so far: {:?})",
                        self.what,
                        String::from_utf8_lossy(&self.body)
                    )
                }
                // A reset after the server closed: the same as an end of stream here.
                Err(err) if err.kind() == IoErrorKind::ConnectionReset => return 0,
                Err(err) => panic!("{}: reading: {err}", self.what),
            }
        }
    }

    fn read_head(&mut self, head_only: bool) {
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
        self.status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}: bad status line {status_line:?}", self.what));
        self.headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let chunked = self
            .header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = self
            .header("Content-Length")
            .map(|v| v.parse::<usize>().expect("numeric Content-Length"));
        self.framing = match (head_only, chunked, length) {
            (true, _, _) => Framing::Empty,
            (false, true, _) => Framing::Chunked,
            (false, false, Some(len)) => Framing::Length(len),
            (false, false, None) => Framing::Close,
        };
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

    fn raw_exact(&mut self, n: usize) -> Vec<u8> {
        while self.raw.len() < n {
            if self.fill() == 0 {
                panic!("{}: connection closed inside a chunk", self.what);
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
            Framing::Chunked => {
                let line = self.raw_line();
                let size_text = line.split(';').next().unwrap_or("").trim().to_string();
                let size = usize::from_str_radix(&size_text, 16)
                    .unwrap_or_else(|_| panic!("{}: bad chunk size line {line:?}", self.what));
                if size == 0 {
                    while !self.raw_line().is_empty() {}
                    self.ended = true;
                    return false;
                }
                let data = self.raw_exact(size);
                self.body.extend_from_slice(&data);
                let end = self.raw_exact(2);
                assert_eq!(end, b"\r\n", "{}: chunk not followed by CRLF", self.what);
                true
            }
            Framing::Length(0) | Framing::Empty => {
                self.ended = true;
                false
            }
            Framing::Length(left) => {
                if self.raw.is_empty() && self.fill() == 0 {
                    panic!("{}: body ended {left} bytes early", self.what);
                }
                let n = left.min(self.raw.len());
                let data: Vec<u8> = self.raw.drain(..n).collect();
                self.body.extend_from_slice(&data);
                self.framing = Framing::Length(left - n);
                true
            }
            Framing::Close => {
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
