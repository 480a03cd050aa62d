//! `App`: routes and settings, built by value, then bound to an address.

use std::net::ToSocketAddrs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::{RouteCatalog, RouteDoc};
// `App::bind` starts a `Server`, whose connections run this app's handlers: app <-> http is
// the handler API and the transport that serves it, a cycle by design.
use crate::http::Server;
use crate::router::{Match, Router};
use crate::{
    Error, ErrorKind, IntoResponse, Request, Response, Result, ServerMetrics, TrustedProxies,
};

/// Server settings, each with a documented default. See the limits table in docs/deployment.md.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Handlers running at once; each runs on its connection's thread during a worker turn.
    /// Default: [`DEFAULT_WORKERS`].
    pub workers: usize,
    /// Requests waiting for a worker turn; beyond it the server answers 503 at once. Default 1024.
    pub queue_capacity: usize,
    /// Open connections. When they are all taken, a new connection takes the slot of the one
    /// that has been idle longest (waiting for its first request, or between two); when none is
    /// idle it gets one of a few reserved slots that answer only the health probes
    /// (`public_paths`), else 503. Default 1024.
    pub max_connections: usize,
    /// Open connections from one client address (IPv6: one /64), not counting the trusted
    /// proxies, whose connections carry many clients; beyond it new connections from that
    /// address get 503. 0 turns the cap off. Default 128.
    pub max_connections_per_ip: usize,
    /// Streamed responses at once. Each holds a worker turn while its producer runs, so the cap
    /// keeps streams from starving plain requests; beyond it a stream gets 503. Default `None`:
    /// derived when the server binds, half the worker turns (at least 1), so it follows
    /// [`App::with_workers`]; see [`Settings::stream_limit`].
    pub max_streams: Option<usize>,
    /// Largest request body; larger ones get 413. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Largest request line plus headers; larger gets 431. Default 16 KiB.
    pub max_head_bytes: usize,
    /// Most headers in a request; more gets 431. Default 100.
    pub max_headers: usize,
    /// Time allowed to receive a whole request head once it started; a new connection must
    /// send its first head whole within it, or is closed. Default 30 s.
    pub head_timeout: Duration,
    /// Time allowed to receive a whole request, head and body, from its first byte; then 408
    /// and close. Default 60 s (a 10 MiB body at 175 KB/s).
    pub request_timeout: Duration,
    /// Longest pause while reading a body, and while the client reads a response. Default 30 s.
    pub io_timeout: Duration,
    /// How long an idle keep-alive connection stays open. Default 75 s (longer than nginx's 60 s
    /// upstream keep-alive, so the proxy closes first and never reuses a closing connection).
    pub keep_alive_timeout: Duration,
    /// How long a shutdown waits for requests in flight (streams included). Default 30 s.
    pub drain_timeout: Duration,
    /// Peers whose `X-Forwarded-*` / `Forwarded` headers are believed. Default: loopback.
    pub trusted_proxies: TrustedProxies,
    /// The path prefix the app is mounted under behind a proxy (`/api`): used in generated
    /// links; a request path that still carries it is routed without it. Default: none.
    pub root_path: String,
    /// One log line per request on stderr. Default: off for the library, on in `tinyserve serve`.
    pub access_log: bool,
    /// Origins allowed to call from a browser (`*` for any). Default: none (CORS off).
    pub cors_origins: Vec<String>,
    /// When set, every request but the public paths needs `Authorization: Bearer <key>`.
    pub api_key: Option<ApiKey>,
    /// Paths served without an API key: the health probes.
    pub public_paths: Vec<String>,
    /// WebSockets: how many may be open, message and frame sizes, the idle timeout
    /// ([`crate::websocket::Limits`]).
    pub websockets: crate::websocket::Limits,
}

impl Settings {
    /// The cap on concurrent streams the server applies: `max_streams` when set, else half the
    /// worker turns (at least 1).
    ///
    /// # Example
    /// ```
    /// use tinyserve::App;
    /// assert_eq!(App::new().with_workers(8).settings().stream_limit(), 4);
    /// let mut settings = tinyserve::Settings::default();
    /// settings.max_streams = Some(16);
    /// assert_eq!(settings.stream_limit(), 16);
    /// ```
    pub fn stream_limit(&self) -> usize {
        self.max_streams.unwrap_or((self.workers.max(1) / 2).max(1))
    }
}

/// An API key: compared in constant time, never printed.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    /// Whether `candidate` is the key, in time independent of where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), candidate.as_bytes());
        let mut diff = a.len() ^ b.len();
        for (i, byte) in a.iter().enumerate() {
            diff |= usize::from(byte ^ b.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Default number of handlers running at once.
pub const DEFAULT_WORKERS: usize = 256;

impl Default for Settings {
    fn default() -> Settings {
        // Handlers run on their connection's thread; a turn that must wait costs two context
        // switches, so the cap is set well above the cores (docs/design.md "Threads": iris at 256
        // connections, 45,700 requests/s with 256 turns against 30,600 with 8).
        Settings {
            workers: DEFAULT_WORKERS,
            max_streams: None,
            queue_capacity: 1024,
            max_connections: 1024,
            max_connections_per_ip: 128,
            max_body_bytes: 10 * 1024 * 1024,
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            head_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(75),
            drain_timeout: Duration::from_secs(30),
            trusted_proxies: TrustedProxies::default(),
            root_path: String::new(),
            access_log: false,
            cors_origins: Vec::new(),
            api_key: None,
            public_paths: ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready"]
                .map(String::from)
                .to_vec(),
            websockets: crate::websocket::Limits::default(),
        }
    }
}

/// A web application: handlers registered by method and path pattern.
///
/// # Example
/// ```no_run
/// use tinyserve::App;
///
/// App::new()
///     .get("/", |_| "Hello, world!")
///     .get("/hello/<name>", |req| format!("Hello, {}!", req.param("name").unwrap_or("you")))
///     .run("127.0.0.1:8000")?;
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Default)]
pub struct App {
    router: Router,
    settings: Settings,
    metrics: Arc<ServerMetrics>,
    catalog: RouteCatalog,
}

impl App {
    /// An app with no routes and default settings.
    pub fn new() -> App {
        App::default()
    }

    /// Registers `handler` for `method` on `pattern`. In the pattern, `<name>` captures one
    /// path segment, read back with [`Request::param`].
    pub fn route<F, R>(mut self, method: &str, pattern: &str, handler: F) -> App
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        let handler = Arc::new(move |req: &Request| handler(req).into_response());
        self.router.add(method, pattern, handler);
        self.catalog.add(method, pattern);
        self
    }

    /// Attaches documentation to the route registered for `method` and `pattern`; it shows in
    /// the OpenAPI document and the docs page. What `doc` leaves unset (request and response
    /// schemas, error statuses) keeps what the route had, such as a typed route's schemas
    /// ([`App::post_typed`]); error statuses add to the route's.
    pub fn document(self, method: &str, pattern: &str, doc: RouteDoc) -> App {
        self.catalog.document(method, pattern, doc);
        self
    }

    /// The routes and their documentation, shared: routes added later show up too.
    pub fn catalog(&self) -> RouteCatalog {
        self.catalog.clone()
    }

    /// Registers a `GET` handler (which also answers `HEAD`).
    pub fn get<F, R>(self, pattern: &str, handler: F) -> App
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route("GET", pattern, handler)
    }

    /// Registers a `POST` handler. Typed routes, whose body is checked and documented from its
    /// type, are registered with [`App::post_typed`] (in typed.rs).
    pub fn post<F, R>(self, pattern: &str, handler: F) -> App
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route("POST", pattern, handler)
    }

    /// Replaces all settings.
    pub fn with_settings(mut self, settings: Settings) -> App {
        self.settings = settings;
        self
    }

    /// Sets the number of worker turns, the handlers running at once (at least 1). Each runs
    /// on its connection's thread; see [`Settings::workers`].
    pub fn with_workers(mut self, workers: usize) -> App {
        self.settings.workers = workers.max(1);
        self
    }

    /// Sets the largest accepted request body, in bytes.
    pub fn with_max_body_bytes(mut self, bytes: usize) -> App {
        self.settings.max_body_bytes = bytes;
        self
    }

    /// The current settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The server's request metrics, shared with the running server (for a `/metrics` route).
    pub fn metrics(&self) -> Arc<ServerMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Starts serving on `addr` (port 0 picks a free port) and returns the running server.
    pub fn bind(self, addr: impl ToSocketAddrs) -> Result<Server> {
        Server::start(self, addr)
    }

    /// Serves on `addr` until the server is shut down. Prints `listening on http://ADDR`.
    pub fn run(self, addr: impl ToSocketAddrs) -> Result<()> {
        let server = self.bind(addr)?;
        eprintln!("listening on http://{}", server.addr());
        server.join();
        Ok(())
    }

    /// The answer to a request that is settled by its head alone: a CORS preflight (204), or
    /// 401 when the API key is missing or wrong. The server asks before it reads the body or
    /// sends `100 Continue`, so a refused request costs no body. `None`: go on to the handler.
    pub(crate) fn screen(&self, req: &Request) -> Option<Response> {
        let allowed_origin = req.header("Origin").and_then(|o| self.allowed_origin(o));
        if let Some(allowed) = &allowed_origin {
            if req.method() == "OPTIONS" && req.header("Access-Control-Request-Method").is_some() {
                return Some(self.preflight(req, allowed));
            }
        }
        if self.is_authorized(req) {
            return None;
        }
        let err = Error::new(ErrorKind::Unauthorized, "missing or invalid API key")
            .with_header("WWW-Authenticate", "Bearer");
        Some(with_cors(Response::from_error(&err), allowed_origin))
    }

    /// Runs the handler the request's method and path select, after [`App::screen`]; a panic
    /// becomes a 500. Returns the response and the route template matched.
    pub(crate) fn dispatch(&self, mut req: Request) -> (Response, Option<String>) {
        if let Some(response) = self.screen(&req) {
            return (response, None);
        }
        let allowed_origin = req.header("Origin").and_then(|o| self.allowed_origin(o));
        let (response, route) = self.handle(&mut req);
        (with_cors(response, allowed_origin), route)
    }

    /// Whether `path` is a health probe's (served without an API key, and on the reserved
    /// connection slots when every other slot is busy).
    pub(crate) fn is_public(&self, path: &str) -> bool {
        self.settings.public_paths.iter().any(|p| p == path)
    }

    fn handle(&self, req: &mut Request) -> (Response, Option<String>) {
        match self.router.find(req.method(), req.path()) {
            Match::Found { route, params } => {
                req.set_params(params);
                let handler = &route.handler;
                let response =
                    catch_unwind(AssertUnwindSafe(|| handler(req))).unwrap_or_else(|panic| {
                        let what = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        let message = format!(
                            "handler for {} {} panicked: {what}",
                            req.method(),
                            route.pattern.as_str()
                        );
                        Response::from_error(&Error::internal(message))
                    });
                (response, Some(route.pattern.as_str().to_string()))
            }
            Match::MethodNotAllowed(allowed) => {
                let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
                let err = Error::method_not_allowed(req.method(), req.path(), &allowed);
                (Response::from_error(&err), None)
            }
            Match::NotFound => (Response::from_error(&Error::not_found(req.path())), None),
        }
    }

    fn is_authorized(&self, req: &Request) -> bool {
        let Some(key) = &self.settings.api_key else {
            return true;
        };
        if self.is_public(req.path()) {
            return true;
        }
        // The scheme is case-insensitive (RFC 9110 section 11.1): `bearer` is `Bearer`.
        req.header("Authorization")
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .is_some_and(|(_, token)| key.matches(token.trim()))
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, when CORS allows it.
    fn allowed_origin(&self, origin: &str) -> Option<String> {
        let origins = &self.settings.cors_origins;
        if origins.iter().any(|o| o == "*") {
            Some("*".to_string())
        } else {
            origins.iter().find(|o| o.as_str() == origin).cloned()
        }
    }

    /// Answers a CORS preflight.
    fn preflight(&self, req: &Request, allowed: &str) -> Response {
        let headers = req
            .header("Access-Control-Request-Headers")
            .unwrap_or("Content-Type, Authorization")
            .to_string();
        Response::empty(204)
            .with_header("Access-Control-Allow-Origin", allowed)
            .with_header(
                "Access-Control-Allow-Methods",
                "GET, POST, PUT, PATCH, DELETE, OPTIONS",
            )
            .with_header("Access-Control-Allow-Headers", &headers)
            .with_header("Access-Control-Max-Age", "600")
            .with_header("Vary", "Origin")
    }
}

/// Adds the CORS headers of an allowed origin to a response.
fn with_cors(response: Response, allowed_origin: Option<String>) -> Response {
    match allowed_origin {
        Some(allowed) => response
            .with_header("Access-Control-Allow-Origin", &allowed)
            .with_header("Access-Control-Expose-Headers", "X-Request-ID")
            .with_header("Vary", "Origin"),
        None => response,
    }
}
