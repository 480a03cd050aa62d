//! What handlers return becomes a response; JSON request bodies map their errors to 415 and 400.

use serde::Deserialize;
use serde_json::{json, Value};
use tinyserve::{App, Error, Json};

use crate::support::{Reply, TestServer};

use super::app;

#[derive(Deserialize)]
struct Pair {
    a: i64,
    b: i64,
}

#[test]
fn handler_return_types_become_responses() {
    let server = TestServer::start(
        App::new()
            .get("/string", |req| format!("path {}", req.path()))
            .get("/str", |_| "static")
            .get("/json", |_| Json(vec![1, 2, 3]))
            .get("/value", |_| json!({"ok": true}))
            .post("/created", |_| (201, Json(json!({"id": 7}))))
            .get("/ok", |_| -> tinyserve::Result<Json<Value>> {
                Ok(Json(json!("fine")))
            })
            .get("/err", |_| -> tinyserve::Result<Json<Value>> {
                Err(Error::invalid_input("x must be positive"))
            }),
    );
    let text = |reply: &Reply| reply.header("Content-Type").unwrap_or_default().to_string();

    let reply = server.get("/string");
    assert_eq!((reply.status, reply.text().as_str()), (200, "path /string"));
    assert!(text(&reply).starts_with("text/plain"), "{}", text(&reply));

    let reply = server.get("/str");
    assert_eq!((reply.status, reply.text().as_str()), (200, "static"));
    assert!(text(&reply).starts_with("text/plain"), "{}", text(&reply));

    let reply = server.get("/json");
    assert_eq!(reply.status, 200);
    assert_eq!(text(&reply), "application/json");
    assert_eq!(reply.json(), json!([1, 2, 3]));

    let reply = server.get("/value");
    assert_eq!(reply.status, 200);
    assert_eq!(text(&reply), "application/json");
    assert_eq!(reply.json(), json!({"ok": true}));

    let reply = server.post_json("/created", &json!({}));
    assert_eq!(reply.status, 201);
    assert_eq!(text(&reply), "application/json");
    assert_eq!(reply.json(), json!({"id": 7}));

    let reply = server.get("/ok");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!("fine"));

    server
        .get("/err")
        .assert_error(400, "invalid_input", "x must be positive");
    assert_eq!(server.get("/str").text(), "static");
}

#[test]
fn json_bodies_map_errors_to_415_and_400() {
    let server = TestServer::start(app().post("/sum", |req| -> tinyserve::Result<Json<Value>> {
        let pair: Pair = req.json()?;
        Ok(Json(json!({"sum": pair.a + pair.b})))
    }));
    let post = |content_type: &str, body: &str| {
        server.request(
            "POST",
            "/sum",
            &[("Content-Type", content_type)],
            body.as_bytes(),
        )
    };

    let reply = post("application/json", r#"{"a": 1, "b": 2}"#);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"sum": 3}));
    let reply = post("application/json; charset=utf-8", r#"{"a": 2, "b": 2}"#);
    assert_eq!(reply.json(), json!({"sum": 4}));

    post("text/plain", r#"{"a": 1, "b": 2}"#).assert_error(
        415,
        "unsupported_media_type",
        "text/plain",
    );
    assert_eq!(post("application/json", r#"{"a": 1, "b": 1}"#).status, 200);

    post("application/json", r#"{"a": 1,"#).assert_error(400, "invalid_json", "invalid JSON");
    post("application/json", "").assert_error(400, "invalid_json", "invalid JSON");
    assert_eq!(post("application/json", r#"{"a": 1, "b": 1}"#).status, 200);

    post("application/json", r#"{"a": 1}"#).assert_error(400, "invalid_body", "missing field `b`");
    post("application/json", r#"{"a": "one", "b": 2}"#).assert_error(400, "invalid_body", "a");
    assert_eq!(
        post("application/json", r#"{"a": 40, "b": 2}"#).json(),
        json!({"sum": 42})
    );
}
