//! A handler's calls made by its own thread, all at once: every request is written first, then
//! the answers are read one after another. The calls are in flight together, so the whole
//! takes the time of the slowest; no other thread is involved, so there is no hand-off and no
//! wake-up but the handler's own (see docs/design.md).
//!
//! HTTP/1.1 over plain TCP: `Content-Length`, chunked and close-delimited bodies, interim (1xx)
//! answers skipped, keep-alive connections pooled per upstream.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Call, UpstreamReply, BODY_LIMIT};
use crate::{Error, ErrorKind, Result};

/// Idle keep-alive connections kept per upstream.
pub(crate) const MAX_IDLE: usize = 1024;
/// How long an idle connection is kept (upstreams close theirs after 5 to 75 s).
const IDLE_AGE: Duration = Duration::from_secs(30);
/// Longest wait on one socket before the handler looks at its client again.
const GONE_CHECK: Duration = Duration::from_millis(250);
/// Longest response head accepted.
const HEAD_LIMIT: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// An upstream's idle keep-alive connections, the most recently used last, each with the
/// time it was put back.
#[derive(Default)]
pub(crate) struct Idle {
    conns: Mutex<VecDeque<(TcpStream, Instant)>>,
}

impl Idle {
    fn lock(&self) -> MutexGuard<'_, VecDeque<(TcpStream, Instant)>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection that the upstream has not closed (nor sent
    /// anything on) meanwhile.
    fn take(&self) -> Option<TcpStream> {
        loop {
            let (conn, since) = self.lock().pop_back()?;
            if since.elapsed() >= IDLE_AGE {
                // The rest are older still.
                self.lock().clear();
                return None;
            }
            if is_quiet(&conn) {
                return Some(conn);
            }
        }
    }

    fn put(&self, conn: TcpStream) {
        let now = Instant::now();
        let mut conns = self.lock();
        while conns
            .front()
            .is_some_and(|(_, since)| now.duration_since(*since) >= IDLE_AGE)
        {
            conns.pop_front();
        }
        if conns.len() < MAX_IDLE {
            conns.push_back((conn, now));
        }
    }
}

/// Whether an idle connection is still open with nothing to read (one `recv`, which neither
/// blocks nor consumes anything): the upstream has not closed it nor sent anything unasked.
fn is_quiet(conn: &TcpStream) -> bool {
    matches!(crate::http::wire::peek(conn), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
}

/// How a call ended before its answer was complete.
enum Stop {
    Deadline,
    Gone,
    Failed(Error),
}

/// One call in flight.
struct Exchange<'c> {
    call: &'c Call,
    conn: Option<TcpStream>,
    reused: bool,
    buf: Vec<u8>,
    /// The read timeout set on `conn` (`None`: non-blocking, past the deadline). A pooled
    /// connection is blocking with GONE_CHECK.
    timeout: Option<Duration>,
    deadline: Duration,
}

/// Makes every call at once on this thread; `None` for a call abandoned because `gone` said
/// the client left (then the second value is true). Calls still unanswered at `until` fail
/// with a 504, answers already received are kept.
pub(crate) fn run(
    calls: &[Call],
    until: Instant,
    deadline: Duration,
    gone: &dyn Fn() -> bool,
) -> (Vec<Option<Result<UpstreamReply>>>, bool) {
    let mut exchanges: Vec<(Exchange, Option<Result<UpstreamReply>>)> = calls
        .iter()
        .map(|call| {
            let mut exchange = Exchange {
                call,
                conn: None,
                reused: false,
                buf: Vec::new(),
                timeout: Some(GONE_CHECK),
                deadline,
            };
            let sent = exchange.send(until).err().map(|err| {
                exchange.count(&err);
                Err(err)
            });
            (exchange, sent)
        })
        .collect();
    let mut cancelled = false;
    for (exchange, slot) in &mut exchanges {
        if slot.is_none() && !cancelled {
            *slot = exchange.finish(until, gone, &mut cancelled);
        }
    }
    (
        exchanges.into_iter().map(|(_, slot)| slot).collect(),
        cancelled,
    )
}

impl Exchange<'_> {
    fn finish(
        &mut self,
        until: Instant,
        gone: &dyn Fn() -> bool,
        cancelled: &mut bool,
    ) -> Option<Result<UpstreamReply>> {
        let err = match self.receive(until, gone) {
            Ok(reply) => {
                let outcome = if reply.status < 500 { "ok" } else { "error" };
                self.call.upstream.count(outcome);
                return Some(self.call.check(reply));
            }
            Err(Stop::Gone) => {
                *cancelled = true;
                return None;
            }
            Err(Stop::Deadline) => self.error(
                ErrorKind::GatewayTimeout,
                format!(
                    "no answer within the {} ms deadline",
                    self.deadline.as_millis()
                ),
            ),
            Err(Stop::Failed(err)) => err,
        };
        self.count(&err);
        Some(Err(err))
    }

    fn error(&self, kind: ErrorKind, what: impl std::fmt::Display) -> Error {
        self.call.upstream.error(kind, &self.call.url(), what, None)
    }

    /// Counts a call that got no answer, by outcome (`timeout` or `error`).
    fn count(&self, err: &Error) {
        self.call.upstream.count(match err.kind() {
            ErrorKind::GatewayTimeout => "timeout",
            _ => "error",
        });
    }

    /// Takes a connection (pooled, else new) and writes the request.
    fn send(&mut self, until: Instant) -> Result<()> {
        let request = self.call.request_bytes()?;
        if let Some(mut conn) = self.call.upstream.pool.idle.take() {
            if conn.write_all(&request).is_ok() {
                self.conn = Some(conn);
                self.reused = true;
                return Ok(());
            }
        }
        self.send_fresh(until, &request)
    }

    /// Writes the request on a new connection.
    fn send_fresh(&mut self, until: Instant, request: &[u8]) -> Result<()> {
        let mut conn = self.connect(until)?;
        conn.write_all(request)
            .map_err(|err| self.error(ErrorKind::BadGateway, err))?;
        self.conn = Some(conn);
        self.reused = false;
        self.timeout = Some(GONE_CHECK);
        Ok(())
    }

    fn connect(&self, until: Instant) -> Result<TcpStream> {
        let deadline = self.deadline;
        let authority = self.call.authority()?;
        let addrs = authority
            .to_socket_addrs()
            .map_err(|_| self.error(ErrorKind::BadGateway, "host not found"))?;
        let inner = &self.call.upstream.inner;
        let mut last = self.error(ErrorKind::BadGateway, "host not found");
        for addr in addrs {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let limit = left.min(super::DEFAULT_CONNECT_TIMEOUT).min(inner.timeout);
            match TcpStream::connect_timeout(&addr, limit) {
                Ok(conn) => {
                    let _ = conn.set_nodelay(true);
                    let _ = conn.set_write_timeout(Some(inner.timeout));
                    let _ = conn.set_read_timeout(Some(GONE_CHECK));
                    return Ok(conn);
                }
                Err(err) => last = self.connect_error(err, deadline),
            }
        }
        Err(last)
    }

    fn connect_error(&self, err: io::Error, deadline: Duration) -> Error {
        match err.kind() {
            io::ErrorKind::ConnectionRefused => {
                self.error(ErrorKind::BadGateway, "connection refused")
            }
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => self.error(
                ErrorKind::GatewayTimeout,
                format!("no answer within {} ms", deadline.as_millis()),
            ),
            _ => self.error(ErrorKind::BadGateway, err),
        }
    }

    /// Reads the answer; a reused connection the upstream closed before answering is
    /// replaced once by a new one (the request is sent again).
    fn receive(
        &mut self,
        until: Instant,
        gone: &dyn Fn() -> bool,
    ) -> std::result::Result<UpstreamReply, Stop> {
        match self.read_answer(until, gone) {
            Err(Stop::Failed(_)) if self.reused && self.buf.is_empty() => {
                let request = self.call.request_bytes().map_err(Stop::Failed)?;
                self.send_fresh(until, &request).map_err(Stop::Failed)?;
                self.read_answer(until, gone)
            }
            other => other,
        }
    }

    fn read_answer(
        &mut self,
        until: Instant,
        gone: &dyn Fn() -> bool,
    ) -> std::result::Result<UpstreamReply, Stop> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut head = httparse::Response::new(&mut headers);
            let parsed = head.parse(&self.buf).map_err(|err| {
                Stop::Failed(self.error(ErrorKind::BadGateway, format!("invalid answer: {err}")))
            })?;
            let httparse::Status::Complete(head_len) = parsed else {
                if self.buf.len() > HEAD_LIMIT {
                    return Err(Stop::Failed(
                        self.error(ErrorKind::BadGateway, "answer head too large"),
                    ));
                }
                self.fill(until, gone, true)?;
                continue;
            };
            let status = head.code.unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                self.buf.drain(..head_len);
                continue;
            }
            let framing = Framing::of(&head, status);
            let keep_alive = head.version == Some(1)
                && !head.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("connection")
                        && String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .contains("close")
                });
            self.buf.drain(..head_len);
            let body = self.read_body(framing, until, gone)?;
            // Anything after the answer was not asked for: such a connection is not reused.
            if keep_alive && !matches!(framing, Framing::UntilClose) && self.buf.is_empty() {
                if let Some(conn) = self.conn.take() {
                    // Pooled connections are blocking, with GONE_CHECK as read timeout.
                    let reset = match self.timeout {
                        Some(t) if t == GONE_CHECK => Ok(()),
                        Some(_) => conn.set_read_timeout(Some(GONE_CHECK)),
                        None => conn
                            .set_nonblocking(false)
                            .and_then(|()| conn.set_read_timeout(Some(GONE_CHECK))),
                    };
                    if reset.is_ok() {
                        self.call.upstream.pool.idle.put(conn);
                    }
                }
            }
            return Ok(UpstreamReply { status, body });
        }
    }

    fn read_body(
        &mut self,
        framing: Framing,
        until: Instant,
        gone: &dyn Fn() -> bool,
    ) -> std::result::Result<Vec<u8>, Stop> {
        match framing {
            Framing::Length(length) => {
                if length > BODY_LIMIT {
                    return Err(Stop::Failed(
                        self.error(ErrorKind::BadGateway, "answer larger than 64 MiB"),
                    ));
                }
                while self.buf.len() < length {
                    self.fill(until, gone, true)?;
                }
                let rest = self.buf.split_off(length);
                Ok(std::mem::replace(&mut self.buf, rest))
            }
            Framing::Chunked => loop {
                match dechunk(&self.buf) {
                    Ok(Some((body, used))) => {
                        self.buf.drain(..used);
                        return Ok(body);
                    }
                    Ok(None) if self.buf.len() > BODY_LIMIT + HEAD_LIMIT => {
                        return Err(Stop::Failed(
                            self.error(ErrorKind::BadGateway, "answer larger than 64 MiB"),
                        ))
                    }
                    Ok(None) => {
                        self.fill(until, gone, true)?;
                    }
                    Err(what) => return Err(Stop::Failed(self.error(ErrorKind::BadGateway, what))),
                }
            },
            Framing::UntilClose => {
                while self.fill(until, gone, false)? > 0 {
                    if self.buf.len() > BODY_LIMIT {
                        return Err(Stop::Failed(
                            self.error(ErrorKind::BadGateway, "answer larger than 64 MiB"),
                        ));
                    }
                }
                self.conn = None;
                Ok(std::mem::take(&mut self.buf))
            }
        }
    }

    /// Reads more of the answer; 0 at the end of the connection (an error when `more`).
    fn fill(
        &mut self,
        until: Instant,
        gone: &dyn Fn() -> bool,
        more: bool,
    ) -> std::result::Result<usize, Stop> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(Stop::Failed(self.call.upstream.error(
                ErrorKind::BadGateway,
                &self.call.url(),
                "connection closed",
                None,
            )));
        };
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let wait = match left.is_zero() {
                // Past the deadline: only what has already arrived.
                true => None,
                false => Some(left.min(GONE_CHECK)),
            };
            if wait != self.timeout {
                let set = match (wait, self.timeout) {
                    (Some(wait), Some(_)) => conn.set_read_timeout(Some(wait)),
                    (Some(wait), None) => conn
                        .set_nonblocking(false)
                        .and_then(|()| conn.set_read_timeout(Some(wait))),
                    (None, _) => conn.set_nonblocking(true),
                };
                if set.is_err() {
                    return Err(Stop::Failed(self.call.upstream.error(
                        ErrorKind::BadGateway,
                        &self.call.url(),
                        "connection broken",
                        None,
                    )));
                }
                self.timeout = wait;
            }
            match conn.read(&mut chunk) {
                Ok(0) if more => {
                    return Err(Stop::Failed(self.call.upstream.error(
                        ErrorKind::BadGateway,
                        &self.call.url(),
                        "connection closed before the whole answer",
                        None,
                    )))
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if left.is_zero() {
                        return Err(Stop::Deadline);
                    }
                    if gone() {
                        return Err(Stop::Gone);
                    }
                }
                Err(err) => {
                    return Err(Stop::Failed(self.call.upstream.error(
                        ErrorKind::BadGateway,
                        &self.call.url(),
                        err,
                        None,
                    )))
                }
            }
        }
    }
}

/// How the body of an answer ends.
#[derive(Clone, Copy)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl Framing {
    fn of(head: &httparse::Response, status: u16) -> Framing {
        if status == 204 || status == 304 {
            return Framing::Length(0);
        }
        let value = |name: &str| {
            head.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
        };
        if value("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
            return Framing::Chunked;
        }
        match value("content-length").and_then(|v| v.parse().ok()) {
            Some(length) => Framing::Length(length),
            None => Framing::UntilClose,
        }
    }
}

/// A whole chunked body at the start of `buf`: the body and the bytes used, `None` when more
/// is needed.
fn dechunk(buf: &[u8]) -> std::result::Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(end) = find_crlf(&buf[at..]) else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[at..at + end]);
        let size = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| format!("invalid chunk size {size:?}"))?;
        at += end + 2;
        if size == 0 {
            // Trailers, then a blank line.
            loop {
                let Some(end) = find_crlf(&buf[at..]) else {
                    return Ok(None);
                };
                at += end + 2;
                if end == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn chunked_bodies_are_joined_and_need_their_last_chunk() {
        let whole = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (body, used) = dechunk(whole).ok().flatten().unwrap_or_default();
        assert_eq!(body, b"Wikipedia");
        assert_eq!(&whole[used..], b"NEXT");
        for cut in 0..whole.len() - 4 {
            assert_eq!(dechunk(&whole[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(dechunk(b"zz\r\n").is_err());
    }
}
