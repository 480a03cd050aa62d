//! `App`: routes and settings, built by value, then bound to an address.

use std::net::ToSocketAddrs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::router::{Match, Router};
use crate::server::Server;
use crate::{Error, IntoResponse, Request, Response, Result};

/// Server settings, each with a documented default. See the README's limits table.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Worker threads running handlers. Default: 2 × the number of cores, at least 8.
    pub workers: usize,
    /// Requests waiting for a worker; beyond it the server answers 503 at once. Default 1024.
    pub queue_capacity: usize,
    /// Open connections; beyond it new connections get 503 and are closed. Default 1024.
    pub max_connections: usize,
    /// Streamed responses at once. Each holds a worker while its producer runs, so the cap
    /// keeps streams from starving plain requests; beyond it a stream gets 503. Default: half
    /// the workers (at least 1).
    pub max_streams: usize,
    /// Largest request body; larger ones get 413. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Largest request line plus headers; larger gets 431. Default 16 KiB.
    pub max_head_bytes: usize,
    /// Most headers in a request; more gets 431. Default 100.
    pub max_headers: usize,
    /// Time allowed to receive a whole request head once it started. Default 30 s.
    pub head_timeout: Duration,
    /// Longest pause while reading a body, and while the client reads a response. Default 30 s.
    pub io_timeout: Duration,
    /// How long an idle keep-alive connection stays open. Default 75 s (longer than nginx's 60 s
    /// upstream keep-alive, so the proxy closes first and never reuses a closing connection).
    pub keep_alive_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = (2 * cores).max(8);
        Settings {
            workers,
            max_streams: (workers / 2).max(1),
            queue_capacity: 1024,
            max_connections: 1024,
            max_body_bytes: 10 * 1024 * 1024,
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            head_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(75),
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
        self
    }

    /// Registers a `GET` handler (which also answers `HEAD`).
    pub fn get<F, R>(self, pattern: &str, handler: F) -> App
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route("GET", pattern, handler)
    }

    /// Registers a `POST` handler.
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

    /// Sets the number of worker threads (at least 1).
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

    /// Runs the handler the request's method and path select; a panic becomes a 500.
    pub(crate) fn dispatch(&self, mut req: Request) -> Response {
        match self.router.find(req.method(), req.path()) {
            Match::Found { route, params } => {
                req.set_params(params);
                let handler = &route.handler;
                catch_unwind(AssertUnwindSafe(|| handler(&req))).unwrap_or_else(|panic| {
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
                })
            }
            Match::MethodNotAllowed(allowed) => {
                let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
                Response::from_error(&Error::method_not_allowed(
                    req.method(),
                    req.path(),
                    &allowed,
                ))
            }
            Match::NotFound => Response::from_error(&Error::not_found(req.path())),
        }
    }
}
