//! [`Group`]: routes mounted together at a prefix, with hooks of their own (Flask's blueprints,
//! FastAPI's routers).

use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::catalog::RouteDoc;
use crate::hooks::{ErrorMatch, Hooks};
use crate::router::Handler;
use crate::typed::ResponseSchema;
use crate::websocket::{IntoClose, WebSocket};
use crate::{App, IntoResponse, Request, Response};

/// Builds a group from the app it is mounted on (its catalog, settings or metrics).
type Build = Arc<dyn Fn(&App) -> Group + Send + Sync>;

/// What a group holds besides its own routes, mounted in order after them.
#[derive(Clone)]
enum Part {
    /// A group mounted inside this one, at its prefix below this one's.
    Group(String, Group),
    /// A group built when this one is mounted, at this one's prefix.
    Built(Build),
}

/// Routes, hooks and guards mounted together at a prefix with [`App::mount`] (or built in
/// place with [`App::group`]).
///
/// The group's before hooks run after the app's, its after hooks before the app's, its error
/// handlers before the app's (see [`crate::hooks`]). They run for the group's routes, and for
/// any other request whose path lies under the prefix (a 404 there too), so a guard answers
/// before a client learns which paths exist.
///
/// # Example
/// ```
/// use tinyserve::{App, Error, ErrorKind, Group, Json};
///
/// fn require_bearer(req: &tinyserve::Request) -> Option<Error> {
///     let ok = req.header("Authorization") == Some("Bearer secret");
///     (!ok).then(|| Error::new(ErrorKind::Unauthorized, "a bearer token is needed"))
/// }
///
/// let api = Group::new()
///     .before(require_bearer)
///     .get("/items", |_| Json(["a", "b"]));
/// let app = App::new().get("/healthz", |_| "ok").mount("/api", api);
///
/// let client = app.test_client();
/// assert_eq!(client.get("/healthz").status(), 200);
/// assert_eq!(client.get("/api/items").status(), 401);
/// let req = tinyserve::Request::new("GET", "/api/items").with_header("Authorization", "Bearer secret");
/// assert_eq!(client.send(req).text(), r#"["a","b"]"#);
/// ```
#[derive(Default, Clone)]
pub struct Group {
    routes: Vec<(String, String, Handler)>,
    /// Documentation for routes, by (method, pattern): the app's catalog gets it on mounting.
    docs: Vec<(String, String, RouteDoc)>,
    hooks: Hooks,
    public: bool,
    /// Groups mounted in this one, in order.
    nested: Vec<Part>,
}

/// A group as the app keeps it once mounted: its prefix and hooks.
pub(crate) struct Mounted {
    pub(crate) prefix: String,
    pub(crate) hooks: Hooks,
    /// Served without the app's API key.
    pub(crate) public: bool,
}

impl Mounted {
    /// Whether `path` lies under the prefix (at a segment boundary). A group at the root holds
    /// no path this way: a 404 that no group's prefix claims is the app's, so a root group
    /// [without a key](Group::without_key) (the health probes) does not open every unknown
    /// path to clients without the key.
    pub(crate) fn holds(&self, path: &str) -> bool {
        !self.prefix.is_empty()
            && path
                .strip_prefix(&self.prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

impl Group {
    /// A group with no routes and no hooks.
    pub fn new() -> Group {
        Group::default()
    }

    /// Registers `handler` for `method` on `pattern`, relative to the prefix the group is
    /// mounted at (`/items` in a group at `/api` is `/api/items`; `/` is the prefix itself).
    pub fn route<F, R>(mut self, method: &str, pattern: &str, handler: F) -> Group
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        let handler: Handler = Arc::new(move |req: &Request| handler(req).into_response());
        self.routes
            .push((method.to_string(), pattern.to_string(), handler));
        self
    }

    /// Registers a `GET` handler (which also answers `HEAD`).
    pub fn get<F, R>(self, pattern: &str, handler: F) -> Group
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route("GET", pattern, handler)
    }

    /// Registers a `POST` handler.
    pub fn post<F, R>(self, pattern: &str, handler: F) -> Group
    where
        F: Fn(&Request) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route("POST", pattern, handler)
    }

    /// A typed route ([`App::route_typed`]): the body checked and documented from its type.
    ///
    /// # Panics
    /// As [`App::post_typed`].
    pub fn route_typed<B, R, F>(self, method: &str, pattern: &str, handler: F) -> Group
    where
        B: DeserializeOwned + JsonSchema + 'static,
        R: ResponseSchema,
        F: Fn(&Request, B) -> R + Send + Sync + 'static,
    {
        let (handler, doc) = crate::typed::typed_route(method, pattern, handler);
        self.route(method, pattern, handler)
            .document(method, pattern, doc)
    }

    /// A typed `POST` route ([`App::post_typed`]).
    ///
    /// # Example
    /// ```
    /// use schemars::JsonSchema;
    /// use serde::Deserialize;
    /// use tinyserve::{App, Group, Json, Request};
    ///
    /// #[derive(Deserialize, JsonSchema)]
    /// struct Sum { a: f64, b: f64 }
    ///
    /// let api = Group::new().post_typed("/sum", |_: &Request, s: Sum| Json(s.a + s.b));
    /// let app = App::new().mount("/api", api);
    /// let routes = app.catalog().routes();
    /// assert_eq!(routes[0].pattern, "/api/sum");
    /// assert!(routes[0].doc.request.is_some(), "documented from the type");
    /// let res = app.test_client().post_json("/api/sum", &serde_json::json!({"a": 1, "b": 2}));
    /// assert_eq!(res.text(), "3.0");
    /// ```
    ///
    /// # Panics
    /// As [`App::post_typed`].
    pub fn post_typed<B, R, F>(self, pattern: &str, handler: F) -> Group
    where
        B: DeserializeOwned + JsonSchema + 'static,
        R: ResponseSchema,
        F: Fn(&Request, B) -> R + Send + Sync + 'static,
    {
        self.route_typed("POST", pattern, handler)
    }

    /// A `GET` route documented from its return type ([`App::get_typed`]).
    pub fn get_typed<R, F>(self, pattern: &str, handler: F) -> Group
    where
        R: ResponseSchema,
        F: Fn(&Request) -> R + Send + Sync + 'static,
    {
        self.get(pattern, handler)
            .document("GET", pattern, crate::typed::get_doc::<R>())
    }

    /// A WebSocket route ([`App::websocket`]).
    pub fn websocket<F, R>(self, pattern: &str, handler: F) -> Group
    where
        F: Fn(&Request, &mut WebSocket) -> R + Send + Sync + 'static,
        R: IntoClose,
    {
        self.get(pattern, crate::websocket::upgrade_handler(handler))
    }

    /// Documents a route of the group ([`App::document`]); `pattern` as registered in the
    /// group.
    pub fn document(mut self, method: &str, pattern: &str, doc: RouteDoc) -> Group {
        self.docs
            .push((method.to_string(), pattern.to_string(), doc));
        self
    }

    /// Serves the files under `dir` at `prefix` (relative to the group's); see
    /// [`App::static_files`].
    pub fn static_files(self, prefix: &str, dir: impl Into<PathBuf>) -> Group {
        let pattern = format!("{}/<path..>", prefix.trim_end_matches('/'));
        self.get(&pattern, crate::static_files::handler(dir.into()))
    }

    /// Adds a before hook for the group's requests: `None` goes on, `Some(answer)` answers
    /// at once. See [`App::before`].
    pub fn before<F, R>(mut self, hook: F) -> Group
    where
        F: Fn(&Request) -> Option<R> + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.hooks.add_before(hook);
        self
    }

    /// Adds an after hook for the group's answers. See [`App::after`].
    pub fn after<F>(mut self, hook: F) -> Group
    where
        F: Fn(&Request, Response) -> Response + Send + Sync + 'static,
    {
        self.hooks.add_after(hook);
        self
    }

    /// Adds an error handler for the group's error answers. See [`App::on_error`].
    pub fn on_error<F, R>(mut self, which: impl Into<ErrorMatch>, handler: F) -> Group
    where
        F: Fn(&Request, Response) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.hooks.add_error(which.into(), handler);
        self
    }

    /// Mounts `group` inside this one at `prefix`: its routes are under both prefixes, and
    /// this group's hooks wrap its own (this group's before hooks first, after hooks last,
    /// error handlers after its own), as with Flask's nested blueprints.
    ///
    /// # Example
    /// ```
    /// use tinyserve::{App, Group};
    /// let v1 = Group::new().get("/ping", |_| "pong");
    /// let api = Group::new().after(|_, res| res.with_header("X-Api", "1")).mount("/v1", v1);
    /// let app = App::new().mount("/api", api);
    /// let res = app.test_client().get("/api/v1/ping");
    /// assert_eq!((res.text().as_str(), res.header("X-Api")), ("pong", Some("1")));
    /// ```
    pub fn mount(mut self, prefix: &str, group: Group) -> Group {
        self.nested.push(Part::Group(prefix.to_string(), group));
        self
    }

    /// Mounts, inside this group and at its prefix, the group `build` makes from the app this
    /// one is mounted on: for routes that serve the app's own catalog, settings or metrics
    /// (the OpenAPI document, `/metrics`).
    pub(crate) fn with_app(
        mut self,
        build: impl Fn(&App) -> Group + Send + Sync + 'static,
    ) -> Group {
        self.nested.push(Part::Built(Arc::new(build)));
        self
    }

    /// Serves the group without the app's API key ([`crate::Settings::api_key`]): for health
    /// probes, public pages, static files. The group's own guards still run.
    pub fn without_key(mut self) -> Group {
        self.public = true;
        self
    }
}

impl App {
    /// Mounts `group`'s routes at `prefix` (`/api`), with its hooks.
    ///
    /// # Example
    /// ```
    /// use tinyserve::{App, Group};
    /// let app = App::new().mount("/v1", Group::new().get("/ping", |_| "pong"));
    /// assert_eq!(app.test_client().get("/v1/ping").text(), "pong");
    /// ```
    pub fn mount(mut self, prefix: &str, group: Group) -> App {
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            inner => format!("/{inner}"),
        };
        let index = self.add_group(Mounted {
            prefix: prefix.clone(),
            hooks: group.hooks.clone(),
            public: group.public,
        });
        let full = |pattern: &str| match pattern.trim_start_matches('/') {
            "" if prefix.is_empty() => "/".to_string(),
            "" => prefix.clone(),
            rest => format!("{prefix}/{rest}"),
        };
        let catalog = self.catalog();
        for (method, pattern, handler) in group.routes {
            self = self.add_route(&method, &full(&pattern), handler, Some(index));
            if group.public {
                catalog.set_public(&method, &full(&pattern));
            }
        }
        for (method, pattern, doc) in group.docs {
            self = self.document(&method, &full(&pattern), doc);
        }
        for part in group.nested {
            let (inner_prefix, mut inner) = match part {
                Part::Group(inner_prefix, inner) => (inner_prefix, inner),
                Part::Built(build) => (String::new(), build(&self)),
            };
            inner.hooks = group.hooks.around(&inner.hooks);
            inner.public |= group.public;
            self = self.mount(&full(&inner_prefix), inner);
        }
        self
    }

    /// Builds a group with `build` and mounts it at `prefix`: the same as
    /// `app.mount(prefix, build(Group::new()))`.
    ///
    /// # Example
    /// ```
    /// use tinyserve::App;
    /// let app = App::new().group("/admin", |g| {
    ///     g.before(|_req| Some((403, "no admins today"))).get("/users", |_| "everyone")
    /// });
    /// assert_eq!(app.test_client().get("/admin/users").status(), 403);
    /// ```
    pub fn group(self, prefix: &str, build: impl FnOnce(Group) -> Group) -> App {
        self.mount(prefix, build(Group::new()))
    }
}
