//! Outbound HTTP: an [`Upstream`] per service, and [`FanOut`] to call several at once.
//!
//! A handler hands `FanOut` N calls and gets N results back, in order, in the time of the
//! slowest call, or by the deadline. Its own thread makes them all (`fanout/exchange.rs`):
//! it writes every request, then reads the answers, on keep-alive connections pooled per
//! upstream; no other thread takes part, so a fan-out costs no hand-off and no pool to size.
//! Single calls ([`Call::send`]) and the LLM proxy's streams are the same exchange, on the
//! same pool. The framing is ureq-proto's (`fanout/http1.rs`); connections are TCP or TLS
//! (rustls, `fanout/trust.rs`), direct or through the environment's forward proxy
//! (`fanout/forward_proxy.rs`), opened within the call's deadline (`fanout/conn.rs`).
//!
//! Not on rayon, nor on any thread pool: blocking calls on pool threads cost a hand-off and
//! a wake-up per call, and rayon's idle workers search the other workers' queues before they
//! sleep (docs/design.md).

mod conn;
mod exchange;
mod forward_proxy;
mod http1;
mod streamed;
mod trust;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::{Error, ErrorKind, Headers, Request, Result};
use conn::Route;
pub use forward_proxy::Proxy;
pub(crate) use streamed::UpstreamStream;

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
    stream_deadline: Duration,
    headers: Headers,
}

/// What every clone of an upstream shares: where it is and how it is reached, its idle
/// connections and its call counts.
struct Pool {
    /// An error in words for an upstream that cannot be called at all (its URL, or the
    /// environment's proxy URL): every call fails with it.
    route: std::result::Result<Route, String>,
    idle: exchange::Idle,
    outcomes: Mutex<BTreeMap<&'static str, u64>>,
}

impl Pool {
    fn new(route: std::result::Result<Route, String>) -> Arc<Pool> {
        Arc::new(Pool {
            route,
            idle: exchange::Idle::default(),
            outcomes: Mutex::new(BTreeMap::new()),
        })
    }
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
/// Default time allowed to open a connection (look-up, connect, proxy tunnel, TLS handshake).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time allowed for a whole streamed answer, however steadily it comes.
pub const DEFAULT_STREAM_DEADLINE: Duration = Duration::from_secs(600);

impl Upstream {
    /// An upstream called `name` at `base_url` (`http://host:port/prefix` or `https://...`),
    /// with the default timeouts: 5 s to connect, 30 s per call. HTTPS trusts the platform's
    /// root certificates (or `SSL_CERT_FILE` / `SSL_CERT_DIR`), and the environment's
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` choose a forward proxy. A URL that cannot be
    /// called makes every call a 502 saying why ([`Upstream::check_url`] tells at once).
    pub fn new(name: &str, base_url: &str) -> Upstream {
        let base_url = base_url.trim_end_matches('/').to_string();
        let route = route_of(&base_url, None, ProxyChoice::FromEnv)
            .map_err(|err| err.message().to_string());
        Upstream {
            inner: Arc::new(UpstreamInner {
                name: name.to_string(),
                base_url,
                timeout: DEFAULT_UPSTREAM_TIMEOUT,
                stream_deadline: DEFAULT_STREAM_DEADLINE,
                headers: Headers::new(),
            }),
            pool: Pool::new(route),
        }
    }

    /// Whether the URL (scheme `http` or `https`, a host) and the environment's proxy settings
    /// can be used: the reason in words when not.
    pub fn check_url(&self) -> Result<()> {
        self.route().map(|_| ())
    }

    /// This upstream trusting, besides the platform's roots, the CA certificates of the PEM
    /// file at `path` (a private service's CA). The file is read now: an unreadable one is an
    /// error naming it. The upstream gets a pool of its own.
    ///
    /// # Example
    /// ```no_run
    /// use tinyserve::Upstream;
    /// let vectors = Upstream::new("vectors", "https://vectors.internal:6333")
    ///     .with_ca_file("/etc/ssl/private-ca.pem")?;
    /// # Ok::<(), tinyserve::Error>(())
    /// ```
    pub fn with_ca_file(mut self, path: impl AsRef<Path>) -> Result<Upstream> {
        let tls = trust::with_ca_file(path.as_ref())?;
        let proxy = self.route().ok().map(|route| route.proxy.clone());
        let choice = match proxy {
            Some(proxy) => ProxyChoice::This(proxy),
            None => ProxyChoice::FromEnv,
        };
        let route = route_of(&self.inner.base_url, Some(tls), choice)?;
        self.pool = Pool::new(Ok(route));
        Ok(self)
    }

    /// This upstream reached through `proxy` (`None`: directly), whatever the environment
    /// says. The upstream gets a pool of its own.
    pub fn with_proxy(mut self, proxy: Option<Proxy>) -> Upstream {
        let tls = self.route().ok().and_then(|route| route.tls.clone());
        let route = route_of(&self.inner.base_url, tls, ProxyChoice::This(proxy));
        self.pool = Pool::new(route.map_err(|err| err.message().to_string()));
        self
    }

    /// This upstream with another per-call timeout (for streaming calls, the time allowed
    /// between two reads), sharing its pool.
    pub fn with_timeout(mut self, timeout: Duration) -> Upstream {
        Arc::make_mut(&mut self.inner).timeout = timeout;
        self
    }

    /// This upstream with another total deadline for a streamed answer (the proxy's streams;
    /// [`DEFAULT_STREAM_DEADLINE`] unless set), sharing its pool. An upstream that keeps
    /// sending, however slowly, is cut off there.
    pub fn with_stream_deadline(mut self, deadline: Duration) -> Upstream {
        Arc::make_mut(&mut self.inner).stream_deadline = deadline;
        self
    }

    /// TLS handshakes made so far on this upstream's pool: one per new connection, none
    /// for a call on a kept-alive one.
    pub fn tls_handshakes(&self) -> u64 {
        self.route().map_or(0, Route::handshakes)
    }

    fn route(&self) -> Result<&Route> {
        self.pool.route.as_ref().map_err(|why| {
            let name = &self.inner.name;
            Error::new(ErrorKind::BadGateway, format!("upstream \"{name}\": {why}"))
        })
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

    /// Counts a call that got no answer, by outcome (`timeout` or `error`).
    fn count_error(&self, err: &Error) {
        self.count(match err.kind() {
            ErrorKind::GatewayTimeout => "timeout",
            _ => "error",
        });
    }

    /// The reply, or for a status of 400 or more an error ([`Upstream::status_error`]).
    fn check(&self, url: &str, reply: UpstreamReply) -> Result<UpstreamReply> {
        if reply.status >= 400 {
            return Err(self.status_error(url, reply.status, &reply.body));
        }
        Ok(reply)
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

/// The proxy of an upstream: the environment's choice, or a given one.
enum ProxyChoice {
    FromEnv,
    This(Option<Proxy>),
}

/// Where `base_url` is and how it is reached; an error in words for a URL that cannot be
/// called (scheme, host, port) or a proxy variable that does not parse.
fn route_of(
    base_url: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    proxy: ProxyChoice,
) -> Result<Route> {
    let bad = |why: &str| Error::bad_request(format!("URL {base_url:?}: {why}"));
    let (scheme, rest) = base_url
        .split_once("://")
        .ok_or_else(|| bad("expected http://host[:port] or https://host[:port]"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad("the scheme must be http or https")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not sent; use a header"));
    }
    let (host, port) = forward_proxy::split_host_port(authority, default_port)
        .ok_or_else(|| bad("expected a host and an optional port"))?;
    let tls = match scheme.as_str() {
        "https" => Some(tls.unwrap_or_else(trust::platform)),
        _ => None,
    };
    let proxy = match proxy {
        ProxyChoice::FromEnv => Proxy::from_env(&scheme, &host)?,
        ProxyChoice::This(proxy) => proxy,
    };
    Ok(Route::new(host, port, tls, proxy))
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
        let timeout = timeout.min(self.upstream.inner.timeout);
        let (mut results, _) = exchange::run(
            std::slice::from_ref(self),
            Instant::now() + timeout,
            timeout,
            &|| false,
        );
        results
            .pop()
            .flatten()
            .unwrap_or_else(|| Err(Error::internal("a single call gave no result")))
    }

    /// [`Call::send_within`] with the upstream's own timeout.
    pub fn send(&self) -> Result<UpstreamReply> {
        self.send_within(self.upstream.inner.timeout)
    }

    /// The request's bytes and the state its answer is read with. Headers: `Accept`, the
    /// upstream's, the call's, and `Content-Type` for a JSON body.
    fn encode(&self, url: &str) -> Result<(Vec<u8>, http1::Answer)> {
        let json = self
            .body
            .as_ref()
            .map(|_| ("Content-Type", "application/json"));
        let headers = [("Accept", "*/*")]
            .into_iter()
            .chain(self.upstream.inner.headers.iter())
            .chain(self.headers.iter())
            .chain(json);
        http1::encode(&self.method, url, headers, self.body.as_deref()).map_err(|err| {
            let what = format!("the request cannot be sent ({err})");
            self.upstream.error(ErrorKind::Internal, url, what, None)
        })
    }

    /// Sends the call and returns as soon as the answer's head arrives, for streaming: the
    /// head within `timeout` (and the upstream's own timeout), then each read of the body
    /// within it too, the whole within the upstream's stream deadline. A 1xx answer
    /// (`101 Switching Protocols`, say) is not an answer to relay: a 502.
    pub(crate) fn start(&self, timeout: Duration) -> Result<UpstreamStream> {
        let per_read = timeout.min(self.upstream.inner.timeout);
        let until = Instant::now() + self.upstream.inner.stream_deadline;
        let result = UpstreamStream::start(self, per_read, until);
        self.upstream.count(match &result {
            Ok(stream) if stream.status() < 500 => "ok",
            Err(err) if err.kind() == ErrorKind::GatewayTimeout => "timeout",
            _ => "error",
        });
        result
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
