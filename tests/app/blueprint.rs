//! `examples/blueprint.rs`: its own tests (the module's `tests`, run here as part of this
//! binary) use the test client; this one serves it on a real socket.

use serde_json::Value;

use crate::support::TestServer;

/// The example itself: its `app()` is what `cargo run --example blueprint` serves, and its
/// `#[cfg(test)]` tests run in this binary.
#[allow(dead_code)]
#[path = "../../examples/blueprint.rs"]
mod example;

#[test]
fn the_blueprint_example_on_a_real_server() {
    let server = TestServer::start(example::app());
    let health = server.get("/healthz");
    assert_eq!(
        (health.status, health.header("X-App")),
        (200, Some("blueprint"))
    );
    let refused = server.get("/api/items");
    assert_eq!(
        (refused.status, refused.header("X-App")),
        (401, Some("blueprint"))
    );
    let items = server.request(
        "GET",
        "/api/items",
        &[("Authorization", "Bearer secret")],
        b"",
    );
    assert_eq!(items.status, 200);
    assert_eq!(items.json()[0]["name"], Value::from("kettle"));
    let page = server.get("/static/index.html");
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    let etag = page.header("ETag").expect("ETag").to_string();
    let cached = server.request(
        "GET",
        "/static/index.html",
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(
        (cached.status, cached.header("X-App")),
        (304, Some("blueprint"))
    );
    let missing = server.get("/static/nothing.css");
    assert_eq!(missing.json()["path"], Value::from("/static/nothing.css"));
}
