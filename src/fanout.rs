//! Outbound HTTP: an [`Upstream`] per service, and [`FanOut`] to call several at once.
//!
//! Handlers block, so parallel calls need threads: a handler hands `FanOut` N calls and gets N
//! results back, in order, in the time of the slowest call, or by the deadline. Its own thread
//! makes one of the calls; each of the others runs on a call thread (`fanout/threads.rs`),
//! started when the calls in flight need one more, parked between calls, gone after 10 s idle.
//! The connections (`fanout/connections.rs`) are ureq's, pooled per upstream.
//!
//! Not on rayon: its idle workers look for work in the other workers' queues before they
//! sleep, so a pool large enough for hundreds of blocking calls spent more CPU searching than
//! calling (README, design decisions).

mod connections;
mod threads;

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::{Error, ErrorKind, Request, Result};
use connections::Connections;
use threads::Threads;

/// A service the server calls: a name for errors and metrics, a base URL, timeouts, and a
/// shared connection pool. Cheap to clone; clones share the pool.
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
///         Err(err) => println!("{err}"), // names the upstream, its URL and what happened
///     }
/// }
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<UpstreamInner>,
}

struct UpstreamInner {
    name: String,
    base_url: String,
    connections: Connections,
    timeout: Duration,
    headers: Vec<(String, String)>,
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
        Upstream::build(name, base_url, DEFAULT_UPSTREAM_TIMEOUT, Vec::new())
    }

    fn build(
        name: &str,
        base_url: &str,
        timeout: Duration,
        headers: Vec<(String, String)>,
    ) -> Upstream {
        let connections = Connections::new(DEFAULT_CONNECT_TIMEOUT.min(timeout), timeout);
        Upstream {
            inner: Arc::new(UpstreamInner {
                name: name.to_string(),
                base_url: base_url.trim_end_matches('/').to_string(),
                connections,
                timeout,
                headers,
                outcomes: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The same upstream with another per-call timeout (for streaming calls, the time allowed
    /// between two reads).
    pub fn with_timeout(&self, timeout: Duration) -> Upstream {
        let inner = &self.inner;
        Upstream::build(&inner.name, &inner.base_url, timeout, inner.headers.clone())
    }

    /// The same upstream sending `name: value` on every call (such as `Authorization`).
    pub fn with_header(&self, name: &str, value: &str) -> Upstream {
        let inner = &self.inner;
        let mut headers = inner.headers.clone();
        headers.push((name.to_string(), value.to_string()));
        Upstream::build(&inner.name, &inner.base_url, inner.timeout, headers)
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
            headers: Vec::new(),
        }
    }

    /// Calls so far by outcome, for metrics: `ok`, `error`, `timeout`, and `no_thread` for a
    /// fan-out call never sent because every [`FanOut`] thread was busy until its deadline.
    pub fn outcomes(&self) -> Vec<(&'static str, u64)> {
        let counts = self
            .inner
            .outcomes
            .lock()
            .map(|o| o.clone())
            .unwrap_or_default();
        ["ok", "error", "timeout", "no_thread"]
            .into_iter()
            .map(|outcome| (outcome, counts.get(outcome).copied().unwrap_or(0)))
            .collect()
    }

    fn count(&self, outcome: &'static str) {
        if let Ok(mut outcomes) = self.inner.outcomes.lock() {
            *outcomes.entry(outcome).or_default() += 1;
        }
    }

    /// An error about this upstream and `url`.
    fn error(&self, kind: ErrorKind, url: &str, what: impl std::fmt::Display) -> Error {
        Error::new(
            kind,
            format!("upstream \"{}\" ({url}): {what}", self.inner.name),
        )
    }
}

/// One outbound call, not yet sent.
#[derive(Debug, Clone)]
pub struct Call {
    upstream: Upstream,
    method: String,
    path: String,
    body: Option<Vec<u8>>,
    headers: Vec<(String, String)>,
}

/// An upstream's answer: status and body.
#[derive(Debug, Clone)]
pub struct UpstreamReply {
    /// The HTTP status (any status; a 4xx/5xx becomes an error only through [`UpstreamReply::ok`]).
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
        serde_json::from_slice(&self.body).map_err(|err| {
            Error::new(
                ErrorKind::BadGateway,
                format!("upstream answered invalid JSON: {err}"),
            )
        })
    }
}

/// Longest part of an upstream's error body quoted in an error message.
const EXCERPT_BYTES: usize = 200;

impl Call {
    /// Adds a header to this call only (for example the request id).
    pub fn with_header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// The call's URL.
    pub fn url(&self) -> String {
        self.upstream.url(&self.path)
    }

    /// Sends the call and waits for the whole answer, within `timeout` at most (and the
    /// upstream's own timeout). A status of 400 or more is a 502 error quoting the body.
    pub fn send_within(&self, timeout: Duration) -> Result<UpstreamReply> {
        let mut response = self.start(timeout, false)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .map_err(|err| self.failure(err, timeout))?;
        let reply = UpstreamReply { status, body };
        if status >= 400 {
            let text = reply.text();
            let excerpt: String = text.chars().take(EXCERPT_BYTES).collect();
            let what = format!("status {status}: {}", excerpt.trim());
            return Err(self
                .upstream
                .error(ErrorKind::BadGateway, &self.url(), what));
        }
        Ok(reply)
    }

    /// [`Call::send_within`] with the upstream's own timeout.
    pub fn send(&self) -> Result<UpstreamReply> {
        self.send_within(self.upstream.inner.timeout)
    }

    /// Sends the call and returns the response as soon as its head arrives, for streaming.
    /// With `per_read`, `timeout` bounds each wait for the upstream (the head, then every read
    /// of the body) instead of the whole call, so a stream that keeps sending is never cut.
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
        for (name, value) in inner.headers.iter().chain(&self.headers) {
            builder = builder.header(name, value);
        }
        if self.body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let request = builder
            .body(self.body.clone().unwrap_or_default())
            .map_err(|err| self.upstream.error(ErrorKind::Internal, &url, err))?;
        let timeout = timeout.min(inner.timeout);
        let agent = inner.connections.agent();
        let config = agent.configure_request(request);
        let request = match per_read {
            true => config
                .timeout_global(None)
                .timeout_per_read(Some(timeout))
                .timeout_per_write(Some(timeout)),
            false => config.timeout_global(Some(timeout)),
        }
        .build();
        let result = agent.run(request).map_err(|err| self.failure(err, timeout));
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
        match &err {
            ureq::Error::Timeout(_) => upstream.error(
                ErrorKind::GatewayTimeout,
                &url,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                upstream.error(ErrorKind::BadGateway, &url, "connection refused")
            }
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => upstream.error(
                ErrorKind::GatewayTimeout,
                &url,
                format!("no answer within {} ms", timeout.as_millis()),
            ),
            ureq::Error::HostNotFound => {
                upstream.error(ErrorKind::BadGateway, &url, "host not found")
            }
            other => upstream.error(ErrorKind::BadGateway, &url, other),
        }
    }
}

/// Runs outbound calls in parallel, each on a thread of its own while it waits.
///
/// The threads are started on demand and reused: a call takes a parked thread (one wake-up),
/// or starts one while fewer than the bound are alive, or waits for the next one to free up
/// (counted in [`FanOut::queued`], and failing with a 504 at its deadline if none does). An
/// idle thread costs no CPU and exits after 10 s without work. There is no size to tune: the
/// bound only caps the threads (and their memory) a burst can start.
pub struct FanOut {
    threads: Threads,
}

/// The bound of the shared [`FanOut`]: threads it may run at once, one per call in flight
/// (256 concurrent requests making 3 calls each need 768).
pub const DEFAULT_FANOUT_THREADS: usize = 1024;

/// How often a handler waiting for its calls checks whether its client has gone.
const GONE_CHECK: Duration = Duration::from_millis(250);
/// The longest deadline for which a request's handler thread makes one of the calls itself:
/// it notices a client that leaves only once that call ends.
const OWN_CALL_MAX: Duration = Duration::from_secs(1);

impl FanOut {
    /// A fan-out running at most `threads` calls at once (no thread is started yet).
    pub fn new(threads: usize) -> Result<FanOut> {
        Ok(FanOut {
            threads: Threads::new(threads),
        })
    }

    /// The process-wide fan-out (at most [`DEFAULT_FANOUT_THREADS`] calls at once), created
    /// on first use.
    pub fn shared() -> Result<&'static FanOut> {
        static SHARED: OnceLock<std::result::Result<FanOut, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| FanOut::new(DEFAULT_FANOUT_THREADS).map_err(|err| err.to_string()))
            .as_ref()
            .map_err(|err| Error::internal(format!("cannot start the fan-out pool: {err}")))
    }

    /// Threads alive now, busy or parked.
    pub fn threads(&self) -> usize {
        self.threads.live()
    }

    /// Threads parked now, waiting for calls.
    pub fn idle_threads(&self) -> usize {
        self.threads.idle()
    }

    /// Calls so far that found every thread busy at the bound and waited for one.
    pub fn queued(&self) -> u64 {
        self.threads.queued()
    }

    /// The most threads this fan-out runs at once.
    pub fn max_threads(&self) -> usize {
        self.threads.max()
    }

    /// Runs every call at once and returns one result per call, in input order, by `deadline`
    /// at the latest: a call still running then is a 504 error. One failed or slow call does
    /// not fail the others.
    pub fn run(&self, calls: Vec<Call>, deadline: Duration) -> Vec<Result<UpstreamReply>> {
        self.run_until(calls, deadline, None)
    }

    /// [`FanOut::run`] for a request: each call carries the request's `X-Request-ID`, and when
    /// the client goes away the calls still running are abandoned (the handler gets errors for
    /// them at once) instead of being waited for.
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
        let urls: Vec<(Upstream, String)> = calls
            .iter()
            .map(|c| (c.upstream.clone(), c.url()))
            .collect();
        let batch = Arc::new(Batch::new(calls.len()));
        let mut calls = calls.into_iter().enumerate();
        // The handler thread would wait anyway: it makes the first call itself (one hand-off
        // and one wake-up fewer), unless it must watch a client for longer than OWN_CALL_MAX
        // (a blocking call cannot be interrupted when the client leaves).
        let own = match req.is_none() || deadline <= OWN_CALL_MAX {
            true => calls.next(),
            false => None,
        };
        for (index, call) in calls {
            let batch = Arc::clone(&batch);
            self.threads.submit(Box::new(move || {
                let left = until.saturating_duration_since(Instant::now());
                let result = match left.is_zero() {
                    true => {
                        call.upstream.count("no_thread");
                        Err(call.upstream.error(
                            ErrorKind::GatewayTimeout,
                            &call.url(),
                            "not sent: every fan-out thread was busy until the deadline",
                        ))
                    }
                    false => call.send_within(left),
                };
                batch.deliver(index, result);
            }));
        }
        if let Some((index, call)) = own {
            batch.deliver(index, call.send_within(deadline));
        }
        let cancelled = batch.wait(until, || req.is_some_and(Request::is_client_gone));
        batch
            .take()
            .into_iter()
            .zip(urls)
            .map(|(slot, (upstream, url))| {
                slot.unwrap_or_else(|| {
                    Err(if cancelled {
                        upstream.error(
                            ErrorKind::BadRequest,
                            &url,
                            "abandoned: the client went away",
                        )
                    } else {
                        upstream.error(
                            ErrorKind::GatewayTimeout,
                            &url,
                            format!("no answer within the {} ms deadline", deadline.as_millis()),
                        )
                    })
                })
            })
            .collect()
    }
}

/// The results of one fan-out, filled in by the call threads as they finish.
struct Batch {
    state: Mutex<BatchState>,
    ready: Condvar,
}

struct BatchState {
    slots: Vec<Option<Result<UpstreamReply>>>,
    missing: usize,
    /// The handler sleeps on `ready`: the last result wakes it (otherwise no wake-up is needed).
    waiting: bool,
}

impl Batch {
    fn new(calls: usize) -> Batch {
        Batch {
            state: Mutex::new(BatchState {
                slots: (0..calls).map(|_| None).collect(),
                missing: calls,
                waiting: false,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BatchState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records call `index`'s result (ignored once the handler has taken the results).
    fn deliver(&self, index: usize, result: Result<UpstreamReply>) {
        let mut state = self.lock();
        if let Some(slot) = state.slots.get_mut(index).filter(|slot| slot.is_none()) {
            *slot = Some(result);
            state.missing -= 1;
            if state.missing == 0 && state.waiting {
                self.ready.notify_one();
            }
        }
    }

    /// Waits for every result until `until`, checking `gone` every GONE_CHECK; true when it
    /// stopped because `gone` said so.
    fn wait(&self, until: Instant, gone: impl Fn() -> bool) -> bool {
        let mut state = self.lock();
        while state.missing > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state.waiting = true;
            let (next, timeout) = self
                .ready
                .wait_timeout(state, left.min(GONE_CHECK))
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            state.waiting = false;
            if timeout.timed_out() && state.missing > 0 {
                drop(state);
                if gone() {
                    return true;
                }
                state = self.lock();
            }
        }
        false
    }

    /// The results so far; later deliveries are dropped.
    fn take(&self) -> Vec<Option<Result<UpstreamReply>>> {
        std::mem::take(&mut self.lock().slots)
    }
}
