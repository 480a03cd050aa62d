//! Routing: 404 and 405 (with `Allow`), HEAD, percent-decoded path and query parameters.

use serde_json::json;

use crate::support::wire::get_request;
use crate::support::TestServer;

use super::{app, assert_serving, open};

#[test]
fn unknown_path_is_404_not_found() {
    let server = TestServer::start(app());
    server
        .get("/no/such/path")
        .assert_error(404, "not_found", "/no/such/path");
    server
        .post_json("/nowhere", &json!({}))
        .assert_error(404, "not_found", "/nowhere");
    assert_serving(&server);
}

#[test]
fn wrong_method_is_405_with_allow_header() {
    let server = TestServer::start(
        app()
            .route("PUT", "/both", |_| "put")
            .post("/both", |_| "post"),
    );
    for (method, path, allowed) in [
        ("DELETE", "/echo/x", ["GET", "HEAD"]),
        ("GET", "/both", ["POST", "PUT"]),
    ] {
        let reply = server.request(method, path, &[], b"");
        reply.assert_error(405, "method_not_allowed", method);
        let allow = reply.header("Allow").expect("405 carries Allow");
        let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
        methods.sort_unstable();
        assert_eq!(methods, allowed, "Allow: {allow}");
    }

    assert_eq!(server.request("PUT", "/both", &[], b"").text(), "put");
    assert_serving(&server);
}

#[test]
fn head_on_get_route_has_content_length_but_no_body() {
    let server = TestServer::start(app());
    let mut conn = open(server.addr);
    conn.send(b"HEAD /echo/hello HTTP/1.1\r\nHost: test\r\n\r\n");
    let head = conn.response();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Length"), Some("5"));
    assert!(head
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("text/plain")));
    // No body bytes follow: the next response on the same connection parses cleanly.
    conn.send(get_request("/echo/again").as_bytes());
    let next = conn.response();
    assert_eq!(next.status, 200);
    assert_eq!(next.text(), "again");
    drop(conn);

    // HEAD on an unknown path: the 404's length, no body, and the connection closes cleanly.
    let mut conn = open(server.addr);
    conn.send(b"HEAD /missing HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let head = conn.response();
    assert_eq!(head.status, 404);
    let get = server.get("/missing");
    let length = get.body.len().to_string();
    assert_eq!(head.header("Content-Length"), Some(length.as_str()));
    conn.assert_closed();
}

#[test]
fn path_params_are_percent_decoded() {
    let server = TestServer::start(app());
    for (path, expected) in [
        ("/echo/plain", "plain"),
        ("/echo/a%20b%2Fc", "a b/c"),
        ("/echo/caf%C3%A9", "café"),
        ("/echo/1%2B1", "1+1"),
        // `+` is a literal plus in a path; only query strings use it for a space.
        ("/echo/c++", "c++"),
        ("/echo/100%", "100%"),
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        assert_eq!(reply.text(), expected, "{path}");
    }
    // A decoded `/` does not make a path parameter span two segments.
    server
        .get("/echo/a/b")
        .assert_error(404, "not_found", "/echo/a/b");
    assert_serving(&server);
}

#[test]
fn query_param_is_decoded() {
    let server = TestServer::start(app());
    let reply = server.get("/query?x=1&q=a+b%26c%3D");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    assert_eq!(reply.json(), json!({"q": "a b&c="}));
    assert_eq!(server.get("/query?q=first&q=second").json()["q"], "first");
    assert_eq!(server.get("/query").json(), json!({"q": null}));
    assert_eq!(server.get("/query?q=").json(), json!({"q": ""}));
}
