//! The test client: the whole router without a socket, and the same answers as the server.

use serde_json::{json, Value};
use tinyserve::app::ApiKey;
use tinyserve::{App, Event, Request, Response, Settings, Sse};

use crate::support::TestServer;

fn app() -> App {
    let mut settings = Settings::default();
    settings.cors_origins = vec!["http://page.local".into()];
    settings.api_key = Some(ApiKey::new("k"));
    settings.max_body_bytes = 1024;
    App::new()
        .with_settings(settings)
        .get("/hello/<name>", |req| {
            format!("Hello, {}!", req.param("name").unwrap_or("?"))
        })
        .post("/echo", |req| req.json::<Value>())
        .get("/count", |_| {
            Response::stream("text/plain", |body| {
                for i in 0..5 {
                    body.send(format!("{i}\n"))?;
                }
                Ok(())
            })
        })
        .get("/events", |_| {
            Sse::new(|events| {
                events.send(Event::data("one"))?;
                events.send(Event::json(&json!({"n": 2})))
            })
        })
}

fn key(req: Request) -> Request {
    req.with_header("Authorization", "Bearer k")
}

#[test]
fn the_test_client_routes_guards_and_reads_streams_to_the_end() {
    let app = app();
    let client = app.test_client();
    let res = client.send(key(Request::new("GET", "/hello/ada")));
    assert_eq!((res.status(), res.text().as_str()), (200, "Hello, ada!"));
    assert!(res.header("X-Request-ID").is_some_and(|id| !id.is_empty()));

    let missing = client.send(key(Request::new("GET", "/nowhere")));
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().ok().map(|v| v["code"].clone()),
        Some(json!("not_found"))
    );
    let wrong = client.send(key(Request::new("PUT", "/echo")));
    assert_eq!((wrong.status(), wrong.header("Allow")), (405, Some("POST")));

    let no_key = client.get("/hello/ada");
    assert_eq!(
        (no_key.status(), no_key.header("WWW-Authenticate")),
        (401, Some("Bearer"))
    );

    let preflight = Request::new("OPTIONS", "/echo")
        .with_header("Origin", "http://page.local")
        .with_header("Access-Control-Request-Method", "POST")
        .with_header("Access-Control-Request-Headers", "authorization");
    let res = client.send(preflight);
    assert_eq!(res.status(), 204, "a preflight needs no key");
    assert_eq!(
        res.header("Access-Control-Allow-Origin"),
        Some("http://page.local")
    );
    let cors = client
        .send(key(Request::new("GET", "/hello/x")).with_header("Origin", "http://page.local"));
    assert_eq!(
        cors.header("Access-Control-Allow-Origin"),
        Some("http://page.local")
    );

    let streamed = client.send(key(Request::new("GET", "/count")));
    assert_eq!(streamed.text(), "0\n1\n2\n3\n4\n");
    let events = client.send(key(Request::new("GET", "/events"))).text();
    assert!(
        events.contains("data: one\n\n") && events.contains("data: {\"n\":2}\n\n"),
        "{events}"
    );

    let head = client.send(key(Request::new("HEAD", "/hello/ada")));
    assert_eq!((head.status(), head.body().len()), (200, 0));
    let big = key(Request::new("POST", "/echo")).with_body(vec![b' '; 2048]);
    assert_eq!(client.send(big).status(), 413);
}

/// The client stands for the server: the same requests get the same statuses and bodies.
#[test]
fn the_test_client_answers_as_the_server_does() {
    let server = TestServer::start(app());
    let app = app();
    let client = app.test_client();
    let auth = [("Authorization", "Bearer k")];
    for (method, path, headers) in [
        ("GET", "/hello/b%C3%A9a", &auth[..]),
        ("GET", "/hello/ada", &[][..]),
        ("GET", "/nowhere", &auth[..]),
        ("DELETE", "/echo", &auth[..]),
        ("GET", "/count", &auth[..]),
    ] {
        let wire = server.request(method, path, headers, b"");
        let mut req = Request::new(method, path);
        for (name, value) in headers {
            req = req.with_header(*name, *value);
        }
        let local = client.send(req);
        assert_eq!(
            (local.status(), local.text()),
            (wire.status, wire.text()),
            "{method} {path}"
        );
        assert_eq!(
            local.header("Content-Type"),
            wire.header("Content-Type"),
            "{method} {path}"
        );
    }
}
