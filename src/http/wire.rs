//! HTTP/1.1 on a blocking socket: reading a request head and body under limits and deadlines.
//! Writing the response is in [`super::write`].
//!
//! Every read is bounded in bytes (head size, header count, body size) and in time (a deadline
//! for the head, one for the whole request, and a timeout per read), so a slow or hostile
//! client costs one connection slot for a bounded time and bounded memory. Where a body ends
//! is decided by [`super::framing`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::framing::{ChunkedDecoder, Framing};
use super::head::{parse_head, Head};
use super::peer::{peer_state, Peer};
use crate::{Error, ErrorKind};

/// The limits a connection enforces while reading a request.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_head_bytes: usize,
    pub(crate) max_headers: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) head_timeout: Duration,
    /// The whole request, head and body, from its first byte.
    pub(crate) request_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) keep_alive_timeout: Duration,
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
    socket: Arc<TcpStream>,
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
    pub(crate) fn new(socket: TcpStream) -> Connection {
        Connection {
            socket: Arc::new(socket),
            read_timeout: None,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
        }
    }

    /// The socket: shared, so a request can check whether its client has gone.
    pub(crate) fn socket(&self) -> &Arc<TcpStream> {
        &self.socket
    }

    /// What the client has done with its side of the connection, checked without blocking
    /// and without consuming anything it may have sent.
    pub(crate) fn peer(&self) -> Peer {
        peer_state(&self.socket)
    }

    /// Takes the bytes read past the current request (a WebSocket's first frames).
    pub(crate) fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buffered().to_vec();
        self.consume(rest.len());
        rest
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
        self.set_timeout(timeout)?;
        // The buffer keeps its length (zeroed once) and `end` marks the bytes read, so a read
        // does not zero memory it is about to overwrite.
        if self.buf.len() - self.end < MIN_READ {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = (&*self.socket).read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let timeout = timeout.max(Duration::from_millis(1));
        if self.read_timeout != Some(timeout) {
            self.socket.set_read_timeout(Some(timeout))?;
            self.read_timeout = Some(timeout);
        }
        Ok(())
    }

    /// Reads the next request head. The first request of a connection must arrive whole
    /// within the head timeout; a later one may wait up to the keep-alive timeout for its first
    /// byte, then gets the head timeout for the rest. A connection that stays silent is closed
    /// quietly. `started` is called as soon as the first byte arrives: from then on a graceful
    /// shutdown lets this request finish.
    pub(crate) fn read_head(
        &mut self,
        limits: &Limits,
        first: bool,
        started: impl FnOnce(),
    ) -> Result<Head, ReadError> {
        let accepted = Instant::now();
        // Browsers and proxies may send empty lines between requests (RFC 9112 section 2.2).
        while self.buffered().starts_with(b"\r\n") {
            self.consume(2);
        }
        if self.buffered().is_empty() {
            let wait = if first {
                limits.head_timeout
            } else {
                limits.keep_alive_timeout
            };
            match self.fill(wait) {
                Ok(0) | Err(_) => return Err(ReadError::Closed),
                Ok(_) => {}
            }
        }
        started();
        let now = Instant::now();
        let deadline = if first { accepted } else { now } + limits.head_timeout;
        loop {
            match parse_head(self.buffered(), limits.max_headers) {
                Ok(httparse::Status::Complete((len, mut head))) => {
                    // A complete head can arrive in one read, past the check below.
                    if len > limits.max_head_bytes {
                        return Err(ReadError::Reject(too_large_head(limits)));
                    }
                    self.consume(len);
                    head.started = now;
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

    /// Reads the body `framing` announces (sending `100 Continue` first if the client waits for
    /// it), refusing more than the body limit, a pause longer than the read timeout, and a
    /// request not received whole within the request timeout.
    pub(crate) fn read_body(
        &mut self,
        head: &Head,
        framing: Framing,
        limits: &Limits,
    ) -> Result<Vec<u8>, ReadError> {
        let mut reader = BodyReader {
            conn: self,
            deadline: head.started + limits.request_timeout,
            limits,
        };
        match framing {
            Framing::Length(0) => Ok(Vec::new()),
            Framing::Length(len) if len > limits.max_body_bytes => Err(ReadError::Reject(
                Error::payload_too_large(limits.max_body_bytes),
            )),
            Framing::Length(len) => {
                reader.conn.send_continue(head)?;
                reader.exact(len)
            }
            Framing::Chunked => {
                reader.conn.send_continue(head)?;
                // Trailers get what the head left of the head limits.
                let trailer_bytes = limits.max_head_bytes.saturating_sub(head.len);
                let trailer_fields = limits.max_headers.saturating_sub(head.headers.len());
                let head_limits = (limits.max_head_bytes, limits.max_headers);
                let decoder = ChunkedDecoder::new(
                    limits.max_body_bytes,
                    trailer_bytes,
                    trailer_fields,
                    head_limits,
                );
                reader.chunked(decoder)
            }
        }
    }

    fn send_continue(&mut self, head: &Head) -> io::Result<()> {
        let expects = head
            .header("Expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        // An HTTP/1.0 client never gets a 1xx (RFC 9110 section 15.2): it ignores the
        // expectation, and the server reads its body without one.
        if expects && head.minor_version > 0 && self.buffered().is_empty() {
            (&*self.socket).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        Ok(())
    }
}

/// Reads one request body under the read timeout and the whole-request deadline.
struct BodyReader<'a> {
    conn: &'a mut Connection,
    deadline: Instant,
    limits: &'a Limits,
}

impl BodyReader<'_> {
    /// `len` bytes, read straight into the body (no copy through the connection's buffer).
    fn exact(&mut self, len: usize) -> Result<Vec<u8>, ReadError> {
        // Zeroed lazily by the allocator: pages cost memory as the body fills them.
        let mut body = vec![0u8; len];
        let have = self.conn.buffered().len().min(len);
        body[..have].copy_from_slice(&self.conn.buffered()[..have]);
        self.conn.consume(have);
        let mut got = have;
        while got < len {
            let timeout = self.timeout()?;
            self.conn.set_timeout(timeout)?;
            match (&*self.conn.socket).read(&mut body[got..]) {
                Ok(0) => {
                    let message =
                        format!("body ended {} bytes before its declared length", len - got);
                    return Err(ReadError::Reject(Error::bad_request(message)));
                }
                Ok(n) => got += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(self.timed_out(err)),
            }
        }
        Ok(body)
    }

    fn chunked(&mut self, mut decoder: ChunkedDecoder) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let used = decoder
                .decode(self.conn.buffered(), &mut body)
                .map_err(ReadError::Reject)?;
            self.conn.consume(used);
            if decoder.is_done() {
                return Ok(body);
            }
            let timeout = self.timeout()?;
            match self.conn.fill(timeout) {
                Ok(0) => {
                    return Err(ReadError::Reject(Error::bad_request(
                        "chunked body ended early",
                    )))
                }
                Ok(_) => {}
                Err(err) => return Err(self.timed_out(err)),
            }
        }
    }

    /// How long the next read may wait: the read timeout, or less when the request deadline
    /// comes first.
    fn timeout(&self) -> Result<Duration, ReadError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.late());
        }
        Ok(left.min(self.limits.read_timeout))
    }

    fn timed_out(&self, err: io::Error) -> ReadError {
        let timeout = matches!(
            err.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        if timeout && Instant::now() >= self.deadline {
            self.late()
        } else {
            err.into()
        }
    }

    fn late(&self) -> ReadError {
        ReadError::Reject(Error::new(
            ErrorKind::RequestTimeout,
            format!(
                "the request was not received whole within the request timeout of {} s",
                self.limits.request_timeout.as_secs_f64()
            ),
        ))
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
