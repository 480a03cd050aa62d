//! Outbound HTTP: an [`Upstream`] per service, and [`FanOut`] to call several at once.
//!
//! Handlers block, so parallel calls need threads: `FanOut` owns a rayon pool sized for I/O
//! (threads mostly wait on sockets), separate from rayon's global pool (one thread per core,
//! which would run blocking calls one core at a time). A handler hands it N calls and gets N
//! results back, in order, in the time of the slowest call, or by the deadline.
//!
//! Size the pool for the calls in flight, not far beyond: rayon's idle workers look for work
//! (work stealing), which costs CPU that grows with the number of threads (measured: a
//! 512-thread pool spent about half of two cores doing so under load; see the README).

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::{Error, ErrorKind, Request, Result};

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
///         Err(err) => println!("{err}"), // names the upstream and what happened
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
    agent: ureq::Agent,
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
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(DEFAULT_CONNECT_TIMEOUT.min(timeout)))
            .timeout_global(Some(timeout))
            .max_idle_connections(64)
            .max_idle_connections_per_host(64)
            .build()
            .into();
        Upstream {
            inner: Arc::new(UpstreamInner {
                name: name.to_string(),
                base_url: base_url.trim_end_matches('/').to_string(),
                agent,
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

    /// Calls made so far by outcome (`ok`, `error`, `timeout`), for metrics.
    pub fn outcomes(&self) -> Vec<(&'static str, u64)> {
        let counts = self
            .inner
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
        if let Ok(mut outcomes) = self.inner.outcomes.lock() {
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
        if status >= 400 {
            return Err(self.upstream.status_error(&self.url(), status, &body));
        }
        Ok(UpstreamReply { status, body })
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
        for (name, value) in inner.headers.iter().chain(&self.headers) {
            builder = builder.header(name, value);
        }
        if self.body.is_some() {
            builder = builder.header("Content-Type", "application/json");
        }
        let request = builder
            .body(self.body.clone().unwrap_or_default())
            .map_err(|err| Error::internal(format!("upstream call to {url}: {err}")))?;
        let timeout = timeout.min(inner.timeout);
        let config = inner.agent.configure_request(request);
        let request = match per_read {
            true => config
                .timeout_global(None)
                .timeout_per_read(Some(timeout))
                .timeout_per_write(Some(timeout)),
            false => config.timeout_global(Some(timeout)),
        }
        .build();
        let result = inner
            .agent
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

/// Runs outbound calls in parallel on its own rayon thread pool.
pub struct FanOut {
    pool: rayon::ThreadPool,
}

/// Threads of the shared [`FanOut`] pool: calls mostly wait, so many more than cores.
pub const DEFAULT_FANOUT_THREADS: usize = 64;

impl FanOut {
    /// A pool of `threads` threads for outbound calls.
    pub fn new(threads: usize) -> Result<FanOut> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("tinyserve-fanout-{i}"))
            // rayon aborts the process on a panic in a spawned job unless a handler is set; a
            // panicking call only loses its own result (reported as a 504 by the deadline).
            .panic_handler(|_| crate::log::error("an outbound call panicked"))
            .build()
            .map_err(Error::internal)?;
        Ok(FanOut { pool })
    }

    /// The process-wide pool ([`DEFAULT_FANOUT_THREADS`] threads), created on first use.
    pub fn shared() -> Result<&'static FanOut> {
        static SHARED: OnceLock<std::result::Result<FanOut, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| FanOut::new(DEFAULT_FANOUT_THREADS).map_err(|err| err.to_string()))
            .as_ref()
            .map_err(|err| Error::internal(format!("cannot start the fan-out pool: {err}")))
    }

    /// Runs every call at once and returns one result per call, in input order, by `deadline`
    /// at the latest: a call still running then is a 504 error. One failed or slow call does
    /// not fail the others.
    pub fn run(&self, calls: Vec<Call>, deadline: Duration) -> Vec<Result<UpstreamReply>> {
        self.run_until(calls, deadline, || false)
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
        self.run_until(calls, deadline, || req.is_client_gone())
    }

    fn run_until(
        &self,
        calls: Vec<Call>,
        deadline: Duration,
        gone: impl Fn() -> bool,
    ) -> Vec<Result<UpstreamReply>> {
        let started = Instant::now();
        let (done, results) = mpsc::channel();
        let urls: Vec<(Upstream, String)> = calls
            .iter()
            .map(|c| (c.upstream.clone(), c.url()))
            .collect();
        for (index, call) in calls.into_iter().enumerate() {
            let done = done.clone();
            self.pool.spawn(move || {
                let _ = done.send((index, call.send_within(deadline)));
            });
        }
        drop(done);
        let mut slots: Vec<Option<Result<UpstreamReply>>> = (0..urls.len()).map(|_| None).collect();
        let mut missing = urls.len();
        let mut cancelled = false;
        while missing > 0 {
            let left = deadline.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match results.recv_timeout(left.min(Duration::from_millis(50))) {
                Ok((index, result)) => {
                    slots[index] = Some(result);
                    missing -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if gone() => {
                    cancelled = true;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        slots
            .into_iter()
            .zip(urls)
            .map(|(slot, (upstream, url))| {
                slot.unwrap_or_else(|| {
                    Err(if cancelled {
                        upstream.error(
                            ErrorKind::BadRequest,
                            &url,
                            "abandoned: the client went away",
                            None,
                        )
                    } else {
                        upstream.error(
                            ErrorKind::GatewayTimeout,
                            &url,
                            format!("no answer within the {} ms deadline", deadline.as_millis()),
                            None,
                        )
                    })
                })
            })
            .collect()
    }
}
