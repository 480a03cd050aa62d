//! Outbound HTTP: an [`Upstream`] per service, and [`FanOut`] to call several at once.
//!
//! A handler hands `FanOut` N calls and gets N results back, in order, in the time of the
//! slowest call, or by the deadline. Its own thread makes them all (`fanout/exchange.rs`):
//! it writes every request, then reads the answers, on keep-alive connections pooled per
//! upstream; no other thread takes part, so a fan-out costs no hand-off and no pool to size.
//! Single calls ([`Call::send`]) and the LLM proxy's streams go through ureq
//! (`fanout/connections.rs`).
//!
//! Not on rayon, nor on any thread pool: blocking calls on pool threads cost a hand-off and
//! a wake-up per call, and rayon's idle workers search the other workers' queues before they
//! sleep (docs/design.md).

mod connections;
mod exchange;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::{Error, ErrorKind, Headers, Request, Result};
use connections::Connections;

/// A service the server calls: a name for errors and metrics, a base URL, timeouts, headers
/// sent on every call, and a connection pool. Cheap to clone; clones share the pool, and so
/// do the upstreams [`Upstream::with_header`] and [`Upstream::with_timeout`] derive from it
/// (with the call counts of [`Upstream::outcomes`]).
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use tinyserve::{FanOut, Upstream};
/// let vectors = Upstream::new("vectors", "http://127.0.0.1:6333");
/// let features = Upstream::new("features", "http://127.0.0.1:7000");
/// let calls = vec![vectors.get("/search?q=cat"), features.get("/user/42")];
/// for result in FanOut::shared()?.run(calls, Duration::from_millis(300)) {
///     match result {
///         Ok(reply) => println!("{}", reply.text()),
///         Err(err) => println!("{err}"), // names the upstream and what happened
///     }
/// }
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<UpstreamInner>,
    pool: Arc<Pool>,
}

/// What an upstream's calls are made with; changed by the `with_*` modifiers.
#[derive(Clone)]
struct UpstreamInner {
    name: String,
    base_url: String,
    timeout: Duration,
    headers: Headers,
}

/// What every clone of an upstream shares: its connections and its call counts.
struct Pool {
    connections: Connections,
    /// Idle keep-alive connections of fan-out calls.
    idle: exchange::Idle,
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Headers may hold credentials: never print them.
        f.debug_struct("Upstream")
            .field("name", &self.inner.name)
            .field("base_url", &self.inner.base_url)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Default time allowed for one whole call (connect, send, receive).
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time allowed to open a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Upstream {
    /// An upstream called `name` at `base_url` (`http://host:port/prefix`), with the default
    /// timeouts: 5 s to connect, 30 s per call. ureq has none by default; a call never hangs.
    pub fn new(name: &str, base_url: &str) -> Upstream {
        let timeout = DEFAULT_UPSTREAM_TIMEOUT;
        Upstream {
            inner: Arc::new(UpstreamInner {
                name: name.to_string(),
                base_url: base_url.trim_end_matches('/').to_string(),
                timeout,
                headers: Headers::new(),
            }),
            pool: Arc::new(Pool {
                // Each call sets its own timeouts (`Call::start`): these are defaults only.
                connections: Connections::new(DEFAULT_CONNECT_TIMEOUT, timeout),
                idle: exchange::Idle::default(),
                outcomes: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// This upstream with another per-call timeout (for streaming calls, the time allowed
    /// between two reads), sharing its pool.
    pub fn with_timeout(mut self, timeout: Duration) -> Upstream {
        Arc::make_mut(&mut self.inner).timeout = timeout;
        self
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The full URL of `path` on this upstream.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.inner.base_url, path)
    }

    /// A `GET` call, to run with [`Call::send`] or [`FanOut::run`].
    pub fn get(&self, path: &str) -> Call {
        self.call("GET", path, None)
    }

    /// A `POST` call with a JSON body.
    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Call {
        self.call("POST", path, Some(body.to_string().into_bytes()))
    }

    fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Call {
        Call {
            upstream: self.clone(),
            method: method.to_string(),
            path: path.to_string(),
            body,
            headers: Headers::new(),
        }
    }

    /// Calls made so far by outcome (`ok`, `error`, `timeout`), for metrics.
    pub fn outcomes(&self) -> Vec<(&'static str, u64)> {
        let counts = self
            .pool
            .outcomes
            .lock()
            .map(|o| o.clone())
            .unwrap_or_default();
        ["ok", "error", "timeout"]
            .into_iter()
            .map(|outcome| (outcome, counts.get(outcome).copied().unwrap_or(0)))
            .collect()
    }

    fn count(&self, outcome: &'static str) {
        if let Ok(mut outcomes) = self.pool.outcomes.lock() {
            *outcomes.entry(outcome).or_default() += 1;
        }
    }

    /// An error about this upstream, for the client: `upstream "NAME": what`, where `what` is
    /// our own words (a status, "connection refused", a deadline). The URL, an internal
    /// address, is kept for the log only: it is the error's source, and with `detail` (such as
    /// the upstream's own error body, which may hold secrets) written as a warning now.
    pub(crate) fn error(
        &self,
        kind: ErrorKind,
        url: &str,
        what: impl std::fmt::Display,
        detail: Option<&str>,
    ) -> Error {
        let name = &self.inner.name;
        let logged = match detail {
            Some(detail) => format!("upstream \"{name}\" ({url}): {what}: {detail}"),
            None => format!("upstream \"{name}\" ({url}): {what}"),
        };
        if kind != ErrorKind::BadRequest {
            crate::log::warn(&logged);
        }
        Error::new(kind, format!("upstream \"{name}\": {what}")).with_source(logged)
    }

    /// The 502 for an answer with an error or non-final `status`: the client learns the status
    /// and the upstream's name; an excerpt of `body` goes to the log.
    pub(crate) fn status_error(&self, url: &str, status: u16, body: &[u8]) -> Error {
        let text = String::from_utf8_lossy(body);
        let excerpt: String = text.chars().take(EXCERPT_BYTES).collect();
        let what = match status {
            100..=199 => format!("answered status {status}, not a final answer"),
            _ => format!("answered status {status}"),
        };
        // The log escapes control characters itself: the excerpt goes in as it is.
        let detail = format!("body: {}", excerpt.trim());
        let detail = (!body.is_empty()).then_some(detail.as_str());
        self.error(ErrorKind::BadGateway, url, what, detail)
    }
}

/// One outbound call, not yet sent.
#[derive(Debug, Clone)]
pub struct Call {
    upstream: Upstream,
    method: String,
    path: String,
    body: Option<Vec<u8>>,
    headers: Headers,
}

/// An upstream's answer: status and body.
#[derive(Debug, Clone)]
pub struct UpstreamReply {
    /// The HTTP status, below 400: [`Call::send`] and [`FanOut::run`] turn a status of 400 or
    /// more into a 502 error.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

impl UpstreamReply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        // serde_json's message may quote the body: the client gets the position only.
        serde_json::from_slice(&self.body).map_err(|err| {
            let at = format!("line {}, column {}", err.line(), err.column());
            Error::new(
                ErrorKind::BadGateway,
                format!("upstream answered invalid JSON ({at})"),
            )
            .with_source(err)
        })
    }
}

/// Largest upstream answer read.
const BODY_LIMIT: usize = 64 * 1024 * 1024;
/// Longest part of an upstream's error body quoted in an error message.
const EXCERPT_BYTES: usize = 200;

impl Call {
    /// The call's URL.
    pub fn url(&self) -> String {
        self.upstream.url(&self.path)
    }

    /// Sends the call and waits for the whole answer, within `timeout` at most (and the
    /// upstream's own timeout). A status of 400 or more is a 502 error naming the upstream
    /// and the status (the body and URL are logged, not put in the error's message).
    pub fn send_within(&self, timeout: Duration) -> Result<UpstreamReply> {
        let mut response = self.start(timeout, false)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .map_err(|err| self.failure(err, timeout))?;
        self.check(UpstreamReply { status, body })
    }

    /// The reply, or for a status of 400 or more a 502 error naming the upstream and the
    /// status (the body and URL go to the log, not into the error's message).
    fn check(&self, reply: UpstreamReply) -> Result<UpstreamReply> {
        if reply.status >= 400 {
            return Err(self
                .upstream
                .status_error(&self.url(), reply.status, &reply.body));
        }
        Ok(reply)
    }

    /// `host:port` of the call's URL (port 80 when it has none).
    fn authority(&self) -> Result<String> {
        let (authority, _) = self.split_url()?;
        Ok(match authority.rsplit_once(':') {
            Some((_, port)) if !port.ends_with(']') => authority.to_string(),
            _ => format!("{authority}:80"),
        })
    }

    fn split_url(&self) -> Result<(String, String)> {
        let url = self.url();
        let Some(rest) = url.strip_prefix("http://") else {
            let what = "only http:// upstreams can be called in a fan-out";
            return Err(self.upstream.error(ErrorKind::BadGateway, &url, what, None));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        Ok((authority.to_string(), path))
    }

    /// The request as it goes on the wire (HTTP/1.1, keep-alive).
    fn request_bytes(&self) -> Result<Vec<u8>> {
        let (authority, path) = self.split_url()?;
        let mut head = format!(
            "{} {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: */*\r\n",
            self.method
        );
        for (name, value) in self
            .upstream
            .inner
            .headers
            .iter()
            .chain(self.headers.iter())
        {
            if [name, value].iter().any(|s| s.contains(['\r', '\n'])) {
                let what = format!("header {name:?} holds a line break");
                return Err(self
                    .upstream
                    .error(ErrorKind::Internal, &self.url(), what, None));
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = self.body.as_deref().unwrap_or_default();
        if self.body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        Ok(bytes)
    }

    /// [`Call::send_within`] with the upstream's own timeout.
    pub fn send(&self) -> Result<UpstreamReply> {
        self.send_within(self.upstream.inner.timeout)
    }

    /// Sends the call and returns the response as soon as its head arrives, for streaming.
    /// With `per_read`, `timeout` bounds each wait for the upstream (the head, then every read
    /// of the body) instead of the whole call, so a stream that keeps sending is never cut.
    /// A 1xx answer (a `101 Switching Protocols`, say) is not an answer to relay: a 502.
    pub(crate) fn start(
        &self,
        timeout: Duration,
        per_read: bool,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let inner = &self.upstream.inner;
        let url = self.url();
        let mut builder = ureq::http::Request::builder()
            .method(self.method.as_str())
            .uri(&url);
        for (name, value) in inner.headers.iter().chain(self.headers.iter()) {
            builder = builder.header(name, value);
        }
        if self.body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let request = builder
            .body(self.body.clone().unwrap_or_default())
            .map_err(|err| Error::internal(format!("upstream call to {url}: {err}")))?;
        let timeout = timeout.min(inner.timeout);
        let agent = self.upstream.pool.connections.agent();
        let config = agent
            .configure_request(request)
            .timeout_connect(Some(DEFAULT_CONNECT_TIMEOUT.min(timeout)));
        let request = match per_read {
            true => config
                .timeout_global(None)
                .timeout_per_read(Some(timeout))
                .timeout_per_write(Some(timeout)),
            false => config.timeout_global(Some(timeout)),
        }
        .build();
        let result = agent
            .run(request)
            .map_err(|err| self.failure(err, timeout))
            .and_then(|response| match response.status().as_u16() {
                100..=199 => Err(self
                    .upstream
                    .status_error(&url, response.status().as_u16(), b"")),
                _ => Ok(response),
            });
        self.upstream.count(match &result {
            Ok(response) if response.status().as_u16() < 500 => "ok",
            Err(err) if err.kind() == ErrorKind::GatewayTimeout => "timeout",
            _ => "error",
        });
        result
    }

    fn failure(&self, err: ureq::Error, timeout: Duration) -> Error {
        let url = self.url();
        let upstream = &self.upstream;
        let late = || format!("no answer within {} ms", timeout.as_millis());
        match &err {
            ureq::Error::Timeout(_) => {
                upstream.error(ErrorKind::GatewayTimeout, &url, late(), None)
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                upstream.error(ErrorKind::BadGateway, &url, "connection refused", None)
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                upstream.error(ErrorKind::GatewayTimeout, &url, late(), None)
            }
            ureq::Error::HostNotFound => {
                upstream.error(ErrorKind::BadGateway, &url, "host not found", None)
            }
            // ureq's own words may name hosts or quote the answer: for the log only.
            other => upstream.error(
                ErrorKind::BadGateway,
                &url,
                "no valid answer",
                Some(&other.to_string()),
            ),
        }
    }
}

/// Runs outbound calls in parallel: the handler's thread writes every request, then reads the
/// answers as they come, so the calls take the time of the slowest, with no other thread and
/// no pool to size. Connections are kept alive and pooled per upstream.
pub struct FanOut {
    max_calls: usize,
}

/// The most calls one run of the shared [`FanOut`] makes at once; more are made in rounds of
/// this many. Each call in flight holds a connection to its upstream.
pub const DEFAULT_FANOUT_THREADS: usize = 1024;

impl FanOut {
    /// A fan-out making at most `max_calls` calls of one run at once (more go in rounds).
    pub fn new(max_calls: usize) -> Result<FanOut> {
        Ok(FanOut {
            max_calls: max_calls.max(1),
        })
    }

    /// The process-wide fan-out ([`DEFAULT_FANOUT_THREADS`] calls at once per run).
    pub fn shared() -> Result<&'static FanOut> {
        static SHARED: OnceLock<FanOut> = OnceLock::new();
        Ok(SHARED.get_or_init(|| FanOut {
            max_calls: DEFAULT_FANOUT_THREADS,
        }))
    }

    /// Runs every call at once and returns one result per call, in input order, by `deadline`
    /// at the latest: a call still running then is a 504 error. One failed or slow call does
    /// not fail the others.
    pub fn run(&self, calls: Vec<Call>, deadline: Duration) -> Vec<Result<UpstreamReply>> {
        self.run_until(calls, deadline, None)
    }

    /// [`FanOut::run`] for a request: each call carries the request's `X-Request-ID`, and when
    /// the client goes away (looked at every 250 ms while an answer is awaited) the calls still
    /// running are abandoned and the handler gets errors for them.
    pub fn run_for(
        &self,
        req: &Request,
        calls: Vec<Call>,
        deadline: Duration,
    ) -> Vec<Result<UpstreamReply>> {
        let id = req.request_id();
        let calls = calls
            .into_iter()
            .map(|call| match id.is_empty() {
                true => call,
                false => call.with_header("X-Request-ID", id),
            })
            .collect();
        self.run_until(calls, deadline, Some(req))
    }

    fn run_until(
        &self,
        calls: Vec<Call>,
        deadline: Duration,
        req: Option<&Request>,
    ) -> Vec<Result<UpstreamReply>> {
        let until = Instant::now() + deadline;
        let gone = || req.is_some_and(Request::is_client_gone);
        let mut results = Vec::with_capacity(calls.len());
        let mut cancelled = false;
        for round in calls.chunks(self.max_calls) {
            let slots = match cancelled {
                true => round.iter().map(|_| None).collect(),
                false => {
                    let (slots, gone) = exchange::run(round, until, deadline, &gone);
                    cancelled = gone;
                    slots
                }
            };
            for (slot, call) in slots.into_iter().zip(round) {
                results.push(slot.unwrap_or_else(|| {
                    Err(call.upstream.error(
                        ErrorKind::BadRequest,
                        &call.url(),
                        "abandoned: the client went away",
                        None,
                    ))
                }));
            }
        }
        results
    }
}

crate::headers::header_modifiers!(
    Upstream,
    "every call of this upstream (such as `Authorization`); it shares the pool",
    |s| Arc::make_mut(&mut s.inner).headers
);

crate::headers::header_modifiers!(Call, "this call only (a request id...)", |s| s.headers);

#[cfg(test)]
mod tests;
