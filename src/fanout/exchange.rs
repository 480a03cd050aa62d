//! A handler's calls made by its own thread, all at once: every request is written first, then
//! the answers are read one after another. The calls are in flight together, so the whole
//! takes the time of the slowest; no other thread is involved, so there is no hand-off and no
//! wake-up but the handler's own (see docs/design.md).
//!
//! The framing is ureq-proto's (`http1.rs`); the connections are the upstream's pool
//! (`conn.rs`: TCP or TLS, direct or tunnelled), shared with single calls and the proxy's
//! streams ([`Exchange`] is also what a stream reads its body with).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::conn::{Conn, OpenError};
use super::http1::Answer;
use super::{Call, Upstream, UpstreamReply, BODY_LIMIT};
use crate::{Error, ErrorKind, Result};

/// Idle keep-alive connections kept per upstream.
pub(crate) const MAX_IDLE: usize = 1024;
/// How long an idle connection is kept (upstreams close theirs after 5 to 75 s).
const IDLE_AGE: Duration = Duration::from_secs(30);
/// Longest wait on one socket before the handler looks at its client again.
const GONE_CHECK: Duration = Duration::from_millis(250);
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// Each thread's buffer for reads from upstreams, zeroed once rather than per read (16 KiB
    /// cleared seven times per fan-out request was measurable).
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; READ_CHUNK]);
}

/// An upstream's idle keep-alive connections, the most recently used last, each with the
/// time it was put back.
#[derive(Default)]
pub(crate) struct Idle {
    conns: Mutex<VecDeque<(Conn, Instant)>>,
}

impl Idle {
    fn lock(&self) -> MutexGuard<'_, VecDeque<(Conn, Instant)>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection that the upstream has not closed (nor sent
    /// anything on) meanwhile.
    fn take(&self) -> Option<Conn> {
        loop {
            let (conn, since) = self.lock().pop_back()?;
            if since.elapsed() >= IDLE_AGE {
                // The rest are older still.
                self.lock().clear();
                return None;
            }
            if conn.is_quiet() {
                return Some(conn);
            }
        }
    }

    fn put(&self, conn: Conn) {
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

/// How a call ended before its answer was complete.
pub(crate) enum Stop {
    Deadline,
    /// Nothing came for the time allowed per wait (streams).
    Idle,
    Gone,
    Failed(Error),
}

/// One call in flight: its connection, its answer so far.
pub(crate) struct Exchange {
    /// The method, for the state of an answer to the same request sent again on a new
    /// connection when a pooled one turns out closed.
    method: String,
    upstream: Upstream,
    url: String,
    request: Vec<u8>,
    conn: Option<Conn>,
    reused: bool,
    answer: Option<Answer>,
    /// Bytes received on this connection for this call.
    received: usize,
    /// The deadline, for messages.
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
    let mut exchanges: Vec<(Option<Exchange>, Option<Result<UpstreamReply>>)> = calls
        .iter()
        .map(|call| match Exchange::send(call, until, deadline) {
            Ok(exchange) => (Some(exchange), None),
            Err(err) => {
                call.upstream.count_error(&err);
                (None, Some(Err(err)))
            }
        })
        .collect();
    let mut cancelled = false;
    for (exchange, slot) in &mut exchanges {
        if let (Some(exchange), None, false) = (exchange, &slot, cancelled) {
            *slot = exchange.finish(until, gone, &mut cancelled);
        }
    }
    (
        exchanges.into_iter().map(|(_, slot)| slot).collect(),
        cancelled,
    )
}

impl Exchange {
    /// Takes a connection (pooled, else new) and writes the request.
    pub(crate) fn send(call: &Call, until: Instant, deadline: Duration) -> Result<Exchange> {
        let upstream = call.upstream.clone();
        let url = call.url();
        let (request, answer) = call.encode(&url)?;
        let mut exchange = Exchange {
            method: call.method.clone(),
            upstream,
            url,
            request,
            conn: None,
            reused: false,
            answer: Some(answer),
            received: 0,
            deadline,
        };
        // A pooled connection keeps the write timeout it was opened with: one system call
        // fewer per call (a request of a few hundred bytes never waits for the upstream).
        if let Some(mut conn) = exchange.upstream.pool.idle.take() {
            if conn.write_all(&exchange.request).is_ok() {
                exchange.conn = Some(conn);
                exchange.reused = true;
                return Ok(exchange);
            }
        }
        exchange.send_fresh(until)?;
        Ok(exchange)
    }

    /// Writes the request on a new connection.
    fn send_fresh(&mut self, until: Instant) -> Result<()> {
        let limit = super::DEFAULT_CONNECT_TIMEOUT.min(self.upstream.inner.timeout);
        let mut conn = self
            .upstream
            .route()?
            .open(until, limit)
            .map_err(|err| match err {
                OpenError::Deadline => self.late(),
                OpenError::Failed(what, detail) => {
                    self.upstream
                        .error(ErrorKind::BadGateway, &self.url, what, detail.as_deref())
                }
            })?;
        conn.set_write_timeout(self.upstream.inner.timeout);
        conn.write_all(&self.request)
            .map_err(|err| self.error(ErrorKind::BadGateway, io_words(&err)))?;
        self.conn = Some(conn);
        self.reused = false;
        Ok(())
    }

    fn late(&self) -> Error {
        let what = format!(
            "no answer within the {} ms deadline",
            self.deadline.as_millis()
        );
        self.error(ErrorKind::GatewayTimeout, what)
    }

    fn finish(
        &mut self,
        until: Instant,
        gone: &dyn Fn() -> bool,
        cancelled: &mut bool,
    ) -> Option<Result<UpstreamReply>> {
        let mut body = Vec::new();
        let err = match self.receive_all(until, gone, &mut body) {
            Ok(status) => {
                let outcome = if status < 500 { "ok" } else { "error" };
                self.upstream.count(outcome);
                let reply = UpstreamReply { status, body };
                return Some(self.upstream.check(&self.url, reply));
            }
            Err(Stop::Gone) => {
                *cancelled = true;
                return None;
            }
            Err(Stop::Deadline | Stop::Idle) => self.late(),
            Err(Stop::Failed(err)) => err,
        };
        self.upstream.count_error(&err);
        Some(Err(err))
    }

    pub(crate) fn error(&self, kind: ErrorKind, what: impl std::fmt::Display) -> Error {
        self.upstream.error(kind, &self.url, what, None)
    }

    fn answer(&self) -> Option<&Answer> {
        self.answer.as_ref()
    }

    /// The answer's status, once its head has arrived.
    pub(crate) fn status(&self) -> u16 {
        self.answer().map_or(0, Answer::status)
    }

    /// A header of the answer's head.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.answer()?.header(name)
    }

    /// Reads the whole answer into `body`; its status.
    fn receive_all(
        &mut self,
        until: Instant,
        gone: &dyn Fn() -> bool,
        body: &mut Vec<u8>,
    ) -> std::result::Result<u16, Stop> {
        while !self.answer().is_some_and(Answer::is_done) {
            self.read_more(until, None, gone, body, BODY_LIMIT)?;
        }
        self.done();
        Ok(self.status())
    }

    /// Reads until the answer's head has arrived (body bytes that came with it go to `body`).
    pub(crate) fn receive_head(
        &mut self,
        until: Instant,
        per_wait: Duration,
        body: &mut Vec<u8>,
    ) -> std::result::Result<(), Stop> {
        while !self.answer().is_some_and(Answer::has_head) {
            self.read_more(until, Some(per_wait), &|| false, body, BODY_LIMIT)?;
        }
        if self.answer().is_some_and(Answer::is_done) {
            self.done();
        }
        Ok(())
    }

    /// Whether the whole answer has been read.
    pub(crate) fn is_done(&self) -> bool {
        self.answer().is_some_and(Answer::is_done)
    }

    /// Reads once more from the connection (waiting up to `per_wait` each time, `until` at
    /// the latest) and decodes what came into `body` (`limit` bytes at most in all). A pooled
    /// connection the upstream closed before answering is replaced once by a new one.
    pub(crate) fn read_more(
        &mut self,
        until: Instant,
        per_wait: Option<Duration>,
        gone: &dyn Fn() -> bool,
        body: &mut Vec<u8>,
        limit: usize,
    ) -> std::result::Result<(), Stop> {
        READ_BUFFER.with_borrow_mut(|chunk| {
            match self.fill(chunk, until, per_wait, gone, body, limit) {
                Err(Stop::Failed(_)) if self.reused && self.received == 0 => {
                    let answer = super::http1::answer_to(&self.method, &self.url)
                        .map_err(|what| Stop::Failed(self.error(ErrorKind::Internal, what)))?;
                    self.answer = Some(answer);
                    self.send_fresh(until).map_err(Stop::Failed)?;
                    self.fill(chunk, until, per_wait, gone, body, limit)
                }
                other => other,
            }
        })
    }

    /// One read into `chunk` (this thread's buffer), decoded into `body`.
    fn fill(
        &mut self,
        chunk: &mut [u8],
        until: Instant,
        per_wait: Option<Duration>,
        gone: &dyn Fn() -> bool,
        body: &mut Vec<u8>,
        limit: usize,
    ) -> std::result::Result<(), Stop> {
        let wait_end = per_wait.map(|per_wait| Instant::now() + per_wait);
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Err(Stop::Failed(
                    self.error(ErrorKind::BadGateway, "connection closed"),
                ));
            };
            let now = Instant::now();
            let end = wait_end.map_or(until, |wait_end| wait_end.min(until));
            // Past the deadline: only what has already arrived.
            let wait = match until.saturating_duration_since(now) {
                left if left.is_zero() => None,
                _ => Some(end.saturating_duration_since(now).min(GONE_CHECK)),
            };
            match conn.read_within(chunk, wait) {
                Ok(0) => {
                    self.conn = None;
                    let answer = self.answer.as_mut().ok_or(Stop::Deadline)?;
                    return answer
                        .end()
                        .map_err(|what| Stop::Failed(self.error(ErrorKind::BadGateway, what)));
                }
                Ok(n) => {
                    self.received += n;
                    let answer = self.answer.as_mut().ok_or(Stop::Deadline)?;
                    return answer
                        .feed(&chunk[..n], body, limit)
                        .map_err(|what| Stop::Failed(self.error(ErrorKind::BadGateway, what)));
                }
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    let now = Instant::now();
                    if wait.is_none() || now >= until {
                        return Err(Stop::Deadline);
                    }
                    if gone() {
                        return Err(Stop::Gone);
                    }
                    if wait_end.is_some_and(|wait_end| now >= wait_end) {
                        return Err(Stop::Idle);
                    }
                }
                Err(err) => {
                    self.conn = None;
                    let what = io_words(&err);
                    let detail = err.to_string();
                    return Err(Stop::Failed(self.upstream.error(
                        ErrorKind::BadGateway,
                        &self.url,
                        what,
                        Some(&detail),
                    )));
                }
            }
        }
    }

    /// The answer is whole: its connection goes back to the pool if it can carry another.
    fn done(&mut self) {
        if self.answer().is_some_and(Answer::is_reusable) {
            if let Some(conn) = self.conn.take() {
                self.upstream.pool.idle.put(conn);
            }
        }
        self.conn = None;
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        // A stream read to its end returns its connection; one abandoned midway is closed.
        if self.is_done() {
            self.done();
        }
    }
}

/// An I/O failure in our words (the system's go to the log).
fn io_words(err: &io::Error) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
            "connection closed by the upstream".into()
        }
        io::ErrorKind::UnexpectedEof => "connection closed before the whole answer".into(),
        _ => match super::trust::describe(err, "the upstream") {
            Some(words) => words,
            None => "connection broken".into(),
        },
    }
}
