//! Route groups: routes at a prefix with their own hooks and guards; a group without the key.

use serde_json::{json, Value};
use tinyserve::app::ApiKey;
use tinyserve::{App, Error, ErrorKind, Group, Json, Request, Settings};

fn require_bearer(req: &Request) -> Option<Error> {
    let ok = req.header("Authorization") == Some("Bearer secret");
    (!ok).then(|| Error::new(ErrorKind::Unauthorized, "a bearer token is needed"))
}

fn bearer(method: &str, path: &str) -> Request {
    Request::new(method, path).with_header("Authorization", "Bearer secret")
}

#[test]
fn a_group_guard_covers_its_routes_and_its_prefix_and_nothing_else() {
    let api = Group::new()
        .before(require_bearer)
        .after(|_, res| res.with_header("X-Group", "api"))
        .get("/items", |_| Json(json!(["a", "b"])))
        .get("/", |_| "the api's root");
    let app = App::new()
        .get("/healthz", |_| "ok")
        .get("/apiary", |_| "bees, not the api")
        .mount("/api", api);
    let client = app.test_client();

    let open = client.get("/healthz");
    assert_eq!((open.status(), open.header("X-Group")), (200, None));
    assert_eq!(
        client.get("/apiary").status(),
        200,
        "a prefix ends at a segment boundary"
    );

    let refused = client.get("/api/items");
    assert_eq!(refused.status(), 401);
    assert_eq!(
        refused.json::<Value>().ok().map(|v| v["code"].clone()),
        Some(json!("unauthorized"))
    );
    assert_eq!(
        refused.header("X-Group"),
        Some("api"),
        "the group's after hook sees its guard's answer"
    );

    let items = client.send(bearer("GET", "/api/items"));
    assert_eq!(items.json::<Value>().ok(), Some(json!(["a", "b"])));
    assert_eq!(client.send(bearer("GET", "/api")).text(), "the api's root");
    assert_eq!(client.send(bearer("GET", "/api/")).text(), "the api's root");

    // Under the prefix, a path without a route is the group's too: 401 first, 404 with the key.
    assert_eq!(client.get("/api/secret-route").status(), 401);
    let missing = client.send(bearer("GET", "/api/secret-route"));
    assert_eq!(
        (missing.status(), missing.header("X-Group")),
        (404, Some("api"))
    );
    let wrong_method = client.send(bearer("POST", "/api/items"));
    assert_eq!(
        (wrong_method.status(), wrong_method.header("X-Group")),
        (405, Some("api"))
    );
    assert_eq!(client.get("/elsewhere").header("X-Group"), None);
}

#[test]
fn a_groups_error_handler_comes_before_the_apps() {
    let app = App::new()
        .on_error(404, |_, _| (404, "the app's 404"))
        .group("/v1", |g| {
            g.on_error(404, |req, _| {
                (404, json!({"error": "not found", "path": req.path()}))
            })
            .get("/ping", |_| "pong")
        });
    let client = app.test_client();
    assert_eq!(
        client
            .get("/v1/nope")
            .json::<Value>()
            .ok()
            .map(|v| v["path"].clone()),
        Some(json!("/v1/nope"))
    );
    assert_eq!(client.get("/nope").text(), "the app's 404");
    assert_eq!(client.get("/v1/ping").text(), "pong");

    // A prefix written without its leading slash, or with a trailing one, is the same prefix.
    let app = App::new().group("v2/", |g| {
        g.after(|_, res| res.with_header("X-Group", "v2"))
            .get("/ping", |_| "pong")
    });
    let client = app.test_client();
    assert_eq!(client.get("/v2/ping").header("X-Group"), Some("v2"));
    assert_eq!(client.get("/v2/nope").header("X-Group"), Some("v2"));
}

#[test]
fn a_group_without_the_key_is_public_and_the_rest_still_needs_it() {
    let mut settings = Settings::default();
    settings.api_key = Some(ApiKey::new("k-123"));
    let app = App::new()
        .with_settings(settings)
        .get("/private", |_| "private")
        .mount(
            "/public",
            Group::new().without_key().get("/page", |_| "public"),
        )
        .mount(
            "/guarded",
            Group::new()
                .without_key()
                .before(require_bearer)
                .get("/x", |_| "x"),
        );
    let client = app.test_client();
    assert_eq!(client.get("/public/page").text(), "public");
    assert_eq!(
        client.get("/public/nothing-here").status(),
        404,
        "no key asked under the prefix"
    );
    assert_eq!(client.get("/private").status(), 401);
    let with_key = Request::new("GET", "/private").with_header("Authorization", "Bearer k-123");
    assert_eq!(client.send(with_key).text(), "private");
    assert_eq!(
        client.get("/healthz").status(),
        404,
        "the probes' paths stay public"
    );
    assert_eq!(
        client.get("/guarded/x").status(),
        401,
        "the group's own guard still runs"
    );
    assert_eq!(client.send(bearer("GET", "/guarded/x")).text(), "x");
}

#[test]
fn a_groups_guard_covers_its_websocket_and_typed_routes() {
    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Sum {
        a: f64,
        b: f64,
    }
    let api = Group::new()
        .before(require_bearer)
        .websocket("/ws", |_req, _socket| Ok(()))
        .post_typed("/sum", |_: &Request, s: Sum| Json(s.a + s.b));
    let app = App::new().mount("/api", api);
    let upgrade = |req: Request| {
        req.with_header("Upgrade", "websocket")
            .with_header("Connection", "Upgrade")
            .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .with_header("Sec-WebSocket-Version", "13")
    };
    let client = app.test_client();
    assert_eq!(
        client
            .send(upgrade(Request::new("GET", "/api/ws")))
            .status(),
        401
    );
    let switched = client.send(upgrade(bearer("GET", "/api/ws")));
    assert_eq!(switched.status(), 101);
    assert_eq!(
        switched.header("Sec-WebSocket-Accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );

    let body = json!({"a": 1, "b": 2, "c": 3}).to_string().into_bytes();
    let typed = |req: Request| {
        client.send(
            req.with_header("Content-Type", "application/json")
                .with_body(body.clone()),
        )
    };
    assert_eq!(typed(Request::new("POST", "/api/sum")).status(), 401);
    let checked = typed(bearer("POST", "/api/sum"));
    assert_eq!(checked.status(), 400, "{}", checked.text());
    assert_eq!(
        checked.json::<Value>().ok().map(|v| v["code"].clone()),
        Some(json!("invalid_body"))
    );
    let routes = app.catalog().routes();
    assert!(routes
        .iter()
        .any(|r| r.pattern == "/api/sum" && r.doc.request.is_some()));
}

#[test]
fn a_nested_group_runs_inside_its_parents_hooks() {
    let trace = |name: &'static str| {
        move |_: &Request, res: tinyserve::Response| res.with_appended_header("X-After", name)
    };
    let admin = Group::new()
        .before(|req| (req.header("X-Admin").is_none()).then_some((403, "admins only")))
        .after(trace("admin"))
        .on_error(404, |_, _| (404, "no such admin page"))
        .get("/users", |_| "users");
    let api = Group::new()
        .before(require_bearer)
        .after(trace("api"))
        .on_error(404, |_, _| (404, "no such api page"))
        .on_error(405, |_, _| (405, "the api's 405"))
        .get("/items", |_| "items")
        .mount("/admin/", admin);
    let app = App::new().after(trace("app")).mount("/api", api);
    let client = app.test_client();

    assert_eq!(
        client.get("/api/admin/users").status(),
        401,
        "the outer guard first"
    );
    let not_admin = client.send(bearer("GET", "/api/admin/users"));
    assert_eq!(
        (not_admin.status(), not_admin.text().as_str()),
        (403, "admins only")
    );
    let order: Vec<&str> = not_admin.headers().get_all("X-After").collect();
    assert_eq!(order, ["admin", "api", "app"], "inner after hooks first");
    let admin_req = |method, path| bearer(method, path).with_header("X-Admin", "1");
    assert_eq!(
        client.send(admin_req("GET", "/api/admin/users")).text(),
        "users"
    );
    assert_eq!(
        client.send(admin_req("GET", "/api/admin/x")).text(),
        "no such admin page"
    );
    assert_eq!(
        client.send(admin_req("POST", "/api/admin/users")).text(),
        "the api's 405"
    );
    assert_eq!(
        client.send(bearer("GET", "/api/x")).text(),
        "no such api page"
    );
    let items = client.send(bearer("GET", "/api/items"));
    assert_eq!(
        items.headers().get_all("X-After").collect::<Vec<_>>(),
        ["api", "app"]
    );
}

#[test]
fn the_built_in_probes_are_a_group_without_the_key() {
    let mut settings = Settings::default();
    settings.api_key = Some(ApiKey::new("k-123"));
    // Only the probes' group says they are public now.
    settings.public_paths.clear();
    let models = tinyserve::model::ModelRegistry::default();
    let ready = tinyserve::protocol::Readiness::new(true);
    let app = tinyserve::protocol::mount(App::new().with_settings(settings), &models, &ready);
    let client = app.test_client();
    assert_eq!(client.get("/healthz").status(), 200);
    assert_eq!(client.get("/readyz").status(), 200);
    assert_eq!(client.get("/models").status(), 401);
    assert_eq!(
        client.get("/no-such-page").status(),
        401,
        "a group at the root does not open the paths it has no route for"
    );
    let keyed = |path: &str| {
        client.send(Request::new("GET", path).with_header("Authorization", "Bearer k-123"))
    };
    assert_eq!(keyed("/models").status(), 200);
    assert_eq!(keyed("/no-such-page").status(), 404);
    // The OpenAPI document says what the server does.
    let doc: Value = keyed("/openapi.json").json().unwrap_or_default();
    let health = &doc["paths"]["/healthz"]["get"];
    assert_eq!(health["security"], json!([]), "{health}");
    assert!(health["responses"].get("401").is_none(), "{health}");
    assert!(doc["paths"]["/models"]["get"]["responses"]
        .get("401")
        .is_some());
}
