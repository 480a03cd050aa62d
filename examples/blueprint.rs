//! Hooks, a route group and static files, as a Flask app with a blueprint would have them.
//! `cargo run --example blueprint` (port: `PORT`, default 8000), then:
//!
//! ```text
//! curl -i localhost:8000/healthz                                    # 200, open
//! curl -i localhost:8000/api/items                                  # 401
//! curl -i localhost:8000/api/items -H 'Authorization: Bearer secret' # 200, JSON
//! curl -i localhost:8000/nowhere           # 404 {"error": "not found", "path": "/nowhere"}
//! curl -i localhost:8000/static/index.html # the page, which lists the items
//! ```
//!
//! Every answer, the 401, 404, 405 and 304 included, carries `X-App: blueprint`.
//!
//! Why it is built this way: the bearer check is a before hook on the `/api` group, so it
//! guards every route of the group, and any path under `/api`, without a line in a handler;
//! it runs on the request head, so a refused upload is never read. The header is one after
//! hook on the app, which sees every answer. The 404 body is an error handler: it replaces
//! the router's 404 and any handler's `Error::not_found`. The tests at the bottom run the
//! app through `App::test_client`, without a socket.

use std::path::PathBuf;

use serde_json::json;
use tinyserve::{App, Error, ErrorKind, Group, Json, Request};

/// The token the `/api` group asks for. A real app reads it from its settings.
const TOKEN: &str = "secret";

/// The app: `main` serves it, and the tests send requests through it.
pub fn app() -> App {
    App::new()
        .get("/healthz", |_| "ok")
        .mount("/api", api())
        .static_files("/static", static_dir())
        .on_error(404, |req, _error| {
            (404, json!({"error": "not found", "path": req.path()}))
        })
        .after(|_req, res| res.with_header("X-App", "blueprint"))
}

/// The API: its routes and the guard they share, like a Flask blueprint.
fn api() -> Group {
    Group::new().before(require_bearer).get("/items", |_| {
        Json(json!([{"id": 1, "name": "kettle"}, {"id": 2, "name": "teapot"}]))
    })
}

/// `None` lets the request through; an error answers it (401, with `WWW-Authenticate`).
fn require_bearer(req: &Request) -> Option<Error> {
    let token = req
        .header("Authorization")
        .and_then(|value| value.strip_prefix("Bearer "));
    (token != Some(TOKEN)).then(|| {
        Error::new(
            ErrorKind::Unauthorized,
            "send Authorization: Bearer <token>",
        )
        .with_header("WWW-Authenticate", "Bearer")
    })
}

/// `examples/static/`, wherever the example is run from.
fn static_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/static")
}

#[allow(dead_code)]
fn main() -> tinyserve::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".to_string());
    app().run(format!("127.0.0.1:{port}"))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use tinyserve::Request;

    use super::app;

    fn authorized(method: &str, path: &str) -> Request {
        Request::new(method, path).with_header("Authorization", "Bearer secret")
    }

    #[test]
    fn health_is_open_and_the_api_needs_the_token() {
        let app = app();
        let client = app.test_client();
        let health = client.get("/healthz");
        assert_eq!((health.status(), health.text().as_str()), (200, "ok"));
        assert_eq!(health.header("X-App"), Some("blueprint"));

        let refused = client.get("/api/items");
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.header("WWW-Authenticate"), Some("Bearer"));
        assert_eq!(refused.header("X-App"), Some("blueprint"));
        let wrong = client
            .send(Request::new("GET", "/api/items").with_header("Authorization", "Bearer nope"));
        assert_eq!(wrong.status(), 401);

        let items = client.send(authorized("GET", "/api/items"));
        assert_eq!(items.status(), 200);
        assert_eq!(items.header("Content-Type"), Some("application/json"));
        let items: Value = items.json().expect("JSON");
        assert_eq!(items[1]["name"], "teapot");
    }

    #[test]
    fn not_found_and_wrong_method_answer_with_the_hooks() {
        let app = app();
        let client = app.test_client();
        let missing = client.get("/nowhere");
        assert_eq!(missing.status(), 404);
        assert_eq!(
            missing.json::<Value>().ok(),
            Some(json!({"error": "not found", "path": "/nowhere"}))
        );
        assert_eq!(missing.header("X-App"), Some("blueprint"));
        let in_api = client.send(authorized("GET", "/api/nothing"));
        assert_eq!(
            in_api.json::<Value>().ok().map(|v| v["path"].clone()),
            Some(json!("/api/nothing"))
        );

        let wrong = client.send(authorized("POST", "/api/items"));
        assert_eq!(
            (wrong.status(), wrong.header("Allow")),
            (405, Some("GET, HEAD"))
        );
        assert_eq!(wrong.header("X-App"), Some("blueprint"));
    }

    #[test]
    fn static_files_with_types_validators_and_the_header() {
        let app = app();
        let client = app.test_client();
        let page = client.get("/static/index.html");
        assert_eq!(page.status(), 200);
        assert_eq!(
            page.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
        assert!(page.text().contains("<h1>Items</h1>"));
        let script = client.get("/static/js/app.js");
        assert_eq!(
            script.header("Content-Type"),
            Some("text/javascript; charset=utf-8")
        );
        assert!(script.text().contains("/api/items"));

        let etag = page.header("ETag").expect("an ETag");
        let again = client
            .send(Request::new("GET", "/static/index.html").with_header("If-None-Match", etag));
        assert_eq!((again.status(), again.body().len()), (304, 0));
        assert_eq!(again.header("X-App"), Some("blueprint"));
        let outside = client.get("/static/%2e%2e/blueprint.rs");
        assert_eq!(
            (outside.status(), outside.header("X-App")),
            (400, Some("blueprint"))
        );
    }
}
