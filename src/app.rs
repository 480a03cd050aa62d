//! `App`: routes and settings, built by value, then bound to an address.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::{RouteCatalog, RouteDoc};
use crate::group::Mounted;
use crate::hooks::{ErrorMatch, Hooks};
use crate::router::{Handler, Match, Router};
use crate::{layers, Error, IntoResponse, Request, Response, ServerMetrics, TrustedProxies};

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
    /// One access record per request, on the `log` facade's target `tinyserve::access`
    /// ([`crate::log`]; nothing is written until the application installs a logger). Default:
    /// on, as Flask's and uvicorn's access logs are; `tinyserve serve` turns it off below
    /// `--log-level info`.
    pub access_log: bool,
    /// Origins allowed to call from a browser (`*` for any). Default: none (CORS off).
    pub cors_origins: Vec<String>,
    /// When set, every request but the public paths needs `Authorization: Bearer <key>`.
    pub api_key: Option<ApiKey>,
    /// Paths served without an API key: the health probes. (For more, mount a group
    /// [without a key](crate::Group::without_key).)
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
            access_log: true,
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
    hooks: Hooks,
    groups: Vec<Mounted>,
}

impl App {
    /// An app with no routes and default settings.
    pub fn new() -> App {
        App::default()
    }

    /// Registers `handler` for `method` on `pattern`. In the pattern, `<name>` captures one
    /// path segment, read back with [`Request::param`].
    /// The last segment may be written `<name..>`: it captures the rest of the path, one
    /// segment or more (`/files/<path..>` matches `/files/a/b.txt` with `path` = `a/b.txt`).
    pub fn route<F, R>(self, method: &str, pattern: &str, handler: F) -> App
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        let handler = Arc::new(move |req: &Request| handler(req).into_response());
        self.add_route(method, pattern, handler, None)
    }

    pub(crate) fn add_route(
        mut self,
        method: &str,
        pattern: &str,
        handler: Handler,
        group: Option<usize>,
    ) -> App {
        self.router.add(method, pattern, handler, group);
        self.catalog.add(method, pattern);
        self
    }

    /// Keeps a mounted group's prefix and hooks; returns its index for its routes.
    pub(crate) fn add_group(&mut self, group: Mounted) -> usize {
        self.groups.push(group);
        self.groups.len() - 1
    }

    /// Adds a hook that runs before every request's handler, on the request head (the body is
    /// not read yet, so a refusal costs no upload): `None` goes on, `Some(answer)` answers at
    /// once (and the after hooks still run). Flask's `before_request`; see [`crate::hooks`]
    /// for the order.
    ///
    /// # Example
    /// ```
    /// use tinyserve::{App, Error};
    /// let app = App::new()
    ///     .before(|req| req.header("X-Tenant").is_none().then(|| Error::bad_request("X-Tenant is required")))
    ///     .get("/", |req| format!("hello, {}", req.header("X-Tenant").unwrap_or_default()));
    /// let client = app.test_client();
    /// assert_eq!(client.get("/").status(), 400);
    /// let req = tinyserve::Request::new("GET", "/").with_header("X-Tenant", "acme");
    /// assert_eq!(client.send(req).text(), "hello, acme");
    /// ```
    pub fn before<F, R>(mut self, hook: F) -> App
    where
        F: Fn(&Request) -> Option<R> + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.hooks.add_before(hook);
        self
    }

    /// Adds a hook that sees, and may change or replace, every answer of the app: a handler's,
    /// an early one of a before hook, a 401, the router's 404 and 405, an error handler's.
    /// Flask's `after_request`; the last added runs first.
    ///
    /// # Example
    /// ```
    /// use tinyserve::App;
    /// let app = App::new()
    ///     .after(|_req, res| res.with_header("X-Frame-Options", "DENY"))
    ///     .get("/", |_| "home");
    /// let client = app.test_client();
    /// assert_eq!(client.get("/").header("X-Frame-Options"), Some("DENY"));
    /// assert_eq!(client.get("/nowhere").header("X-Frame-Options"), Some("DENY"));
    /// ```
    pub fn after<F>(mut self, hook: F) -> App
    where
        F: Fn(&Request, Response) -> Response + Send + Sync + 'static,
    {
        self.hooks.add_after(hook);
        self
    }

    /// Adds an error handler: it replaces each error answer ([`Response::error_code`]) of a
    /// status (`404`) or an error code (`"unauthorized"`) with its own. It gets the request and
    /// the error response (whose JSON body says `error` and `code`); the error's headers
    /// (`Allow` on a 405, `WWW-Authenticate` on a 401) stay unless it sets them. A handler's
    /// deliberate non-error answer (`(404, "no such page")`) is left alone. Flask's
    /// `errorhandler`.
    ///
    /// # Example
    /// ```
    /// use serde_json::json;
    /// use tinyserve::App;
    /// let app = App::new().on_error(404, |req, _error| {
    ///     (404, json!({"error": "not found", "path": req.path()}))
    /// });
    /// let res = app.test_client().get("/missing");
    /// assert_eq!(res.status(), 404);
    /// assert_eq!(res.json::<serde_json::Value>()?["path"], "/missing");
    /// # Ok::<(), tinyserve::Error>(())
    /// ```
    pub fn on_error<F, R>(mut self, which: impl Into<ErrorMatch>, handler: F) -> App
    where
        F: Fn(&Request, Response) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.hooks.add_error(which.into(), handler);
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

    /// The answer to a request that is settled by its head alone: a CORS preflight (204), a
    /// 401 when the API key is missing or wrong, a before hook's answer; each finished by the
    /// error handlers and after hooks. The server asks before it reads the body or sends
    /// `100 Continue`, so a refused request costs no body. `None`: go on to
    /// [`App::dispatch`].
    pub(crate) fn screen(&self, req: &Request) -> Option<Response> {
        let group = self.group_of(req);
        let public = self.is_public(req.path()) || group.is_some_and(|g| g.public);
        let early = layers::preflight(&self.settings, req)
            .or_else(|| layers::key(&self.settings, req, public))
            .or_else(|| self.hooks.run_before(req))
            .or_else(|| group.and_then(|g| g.hooks.run_before(req)))?;
        Some(self.finish(req, group, early))
    }

    /// Runs the handler the request's method and path select, once [`App::screen`] let the
    /// request through; a panic becomes a 500; then the error handlers and after hooks.
    /// Returns the response and the route template matched.
    pub(crate) fn dispatch(&self, mut req: Request) -> (Response, Option<String>) {
        let (response, route, group) = self.handle(&mut req);
        let group = group.and_then(|index| self.groups.get(index));
        // An error handler or an after hook may answer anew: the model stays recorded.
        let model = response.model().map(str::to_string);
        let response = self.finish(&req, group, response);
        let response = match model {
            Some(model) if response.model().is_none() => response.with_model(model),
            _ => response,
        };
        (response, route)
    }

    /// Whether `path` is a health probe's (served without an API key, and on the reserved
    /// connection slots when every other slot is busy).
    pub(crate) fn is_public(&self, path: &str) -> bool {
        self.settings.public_paths.iter().any(|p| p == path)
    }

    /// The group whose hooks a request runs: its route's; for a 404, the innermost group
    /// whose prefix holds the path.
    fn group_of(&self, req: &Request) -> Option<&Mounted> {
        let found = self.router.find(req.method(), req.path());
        self.group_index(&found, req.path())
            .and_then(|index| self.groups.get(index))
    }

    fn group_index(&self, found: &Match<'_>, path: &str) -> Option<usize> {
        match found {
            Match::Found { route, .. } => route.group,
            Match::MethodNotAllowed { group, .. } => *group,
            Match::NotFound => self
                .groups
                .iter()
                .enumerate()
                .filter(|(_, g)| g.holds(path))
                .max_by_key(|(_, g)| g.prefix.len())
                .map(|(index, _)| index),
        }
    }

    /// An answer's way out: the error handlers (the group's, else the app's), the after hooks
    /// (the group's, then the app's), the CORS headers.
    fn finish(&self, req: &Request, group: Option<&Mounted>, response: Response) -> Response {
        let response = match group {
            Some(g) if g.hooks.takes(&response) => g.hooks.run_error(req, response),
            _ => self.hooks.run_error(req, response),
        };
        let response = match group {
            Some(g) => g.hooks.run_after(req, response),
            None => response,
        };
        let response = self.hooks.run_after(req, response);
        layers::cors(&self.settings, req, response)
    }

    /// Runs the handler; returns its answer, the route template and the group's index.
    fn handle(&self, req: &mut Request) -> (Response, Option<String>, Option<usize>) {
        let found = self.router.find(req.method(), req.path());
        let group = self.group_index(&found, req.path());
        let (response, route) = match found {
            Match::Found { route, params } => {
                req.set_params(params);
                let handler = &route.handler;
                let response = catch_unwind(AssertUnwindSafe(|| handler(req)))
                    .unwrap_or_else(|panic| crate::hooks::panicked(req, "the handler", &*panic));
                // The route's pattern says which parameter names a model, for the access log.
                let model = route.pattern.model_param().and_then(|name| req.param(name));
                let response = match model {
                    Some(model) if response.model().is_none() => response.with_model(model),
                    _ => response,
                };
                (response, Some(route.pattern.as_str().to_string()))
            }
            Match::MethodNotAllowed { allowed, .. } => {
                let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
                let err = Error::method_not_allowed(req.method(), req.path(), &allowed);
                (Response::from_error(&err), None)
            }
            Match::NotFound => (Response::from_error(&Error::not_found(req.path())), None),
        };
        (response, route, group)
    }
}
