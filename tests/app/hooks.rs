//! Before hooks, after hooks and error handlers, on the app.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tinyserve::app::ApiKey;
use tinyserve::{App, Error, IntoResponse, Request, Response, Settings};

use crate::support::wire::Conn;
use crate::support::TestServer;

fn counter() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    (Arc::clone(&count), count)
}

#[test]
fn a_before_hook_answers_early_and_the_handler_does_not_run() {
    let (handled, seen) = counter();
    let app = App::new()
        .before(|req| (req.query_param("block").is_some()).then_some((429, "blocked")))
        .get("/", move |_| {
            handled.fetch_add(1, Ordering::SeqCst);
            "ran"
        });
    let client = app.test_client();
    let res = client.get("/?block=1");
    assert_eq!((res.status(), res.text().as_str()), (429, "blocked"));
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the handler did not run");
    assert_eq!(client.get("/").text(), "ran");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}

#[test]
fn after_hooks_see_every_answer_and_run_last_registered_first() {
    let mut settings = Settings::default();
    settings.api_key = Some(ApiKey::new("k"));
    settings.cors_origins = vec!["http://page.local".into()];
    let app = App::new()
        .with_settings(settings)
        .after(|_, res| res.with_appended_header("X-Order", "first-registered"))
        .after(|_, res| res.with_appended_header("X-Order", "second-registered"))
        .before(|req| (req.path() == "/early").then_some("early"))
        .get("/", |_| "home");
    let client = app.test_client();
    let with_key = |method: &str, path: &str| {
        Request::new(method, path).with_header("Authorization", "Bearer k")
    };
    let preflight = Request::new("OPTIONS", "/")
        .with_header("Origin", "http://page.local")
        .with_header("Access-Control-Request-Method", "GET");
    let cases = [
        (client.send(with_key("GET", "/")), 200),
        (client.send(with_key("GET", "/early")), 200),
        (client.get("/"), 401),
        (client.send(with_key("GET", "/nowhere")), 404),
        (client.send(with_key("POST", "/")), 405),
        (client.send(preflight), 204),
    ];
    for (res, status) in cases {
        assert_eq!(res.status(), status, "{}", res.text());
        let order: Vec<&str> = res.headers().get_all("X-Order").collect();
        assert_eq!(
            order,
            ["second-registered", "first-registered"],
            "on a {status}"
        );
    }
}

#[test]
fn error_handlers_take_errors_by_status_or_code_and_leave_deliberate_answers() {
    let app = App::new()
        .on_error(404, |req, _| {
            (404, json!({"error": "not found", "path": req.path()}))
        })
        .on_error(405, |_, error| {
            let code = error.error_code().unwrap_or_default().to_string();
            (405, json!({"custom": code}))
        })
        .on_error("invalid_body", |_, _| (422, "fix your JSON"))
        .on_error(400, |_, _| "a 400 that is not invalid_body")
        .get("/page", |req| match req.query_param("missing") {
            Some(_) => (404, "no such page").into_response(),
            None => Error::not_found(req.path()).into_response(),
        })
        .post("/json", |req| {
            req.json::<Vec<u32>>().map(|v| v.len().to_string())
        });
    let client = app.test_client();

    let res = client.get("/nowhere");
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<Value>().ok(),
        Some(json!({"error": "not found", "path": "/nowhere"}))
    );
    assert_eq!(
        client
            .get("/page")
            .json::<Value>()
            .ok()
            .map(|v| v["path"].clone()),
        Some(json!("/page"))
    );
    assert_eq!(
        client.get("/page?missing=1").text(),
        "no such page",
        "not an error answer"
    );

    let res = client.send(Request::new("DELETE", "/page"));
    assert_eq!(res.status(), 405);
    assert_eq!(
        res.json::<Value>().ok(),
        Some(json!({"custom": "method_not_allowed"}))
    );
    assert_eq!(
        res.header("Allow"),
        Some("GET, HEAD"),
        "the error's own header is kept"
    );

    let bad = client.post_json("/json", &json!({"not": "a list"}));
    assert_eq!(
        (bad.status(), bad.text().as_str()),
        (422, "fix your JSON"),
        "by code before status"
    );
    let req = Request::new("POST", "/json")
        .with_header("Content-Type", "text/plain")
        .with_body(b"[]".to_vec());
    assert_eq!(
        client.send(req).status(),
        415,
        "no handler for 415: unchanged"
    );
}

#[test]
fn a_panicking_hook_is_a_500_and_the_app_keeps_answering() {
    let app = App::new()
        .before(|req| -> Option<Response> {
            assert!(req.path() != "/boom", "the before hook fails on /boom");
            None
        })
        .after(|req, res| {
            assert!(req.path() != "/boom-after", "the after hook fails");
            res
        })
        .get("/<any>", |_| "fine");
    let client = app.test_client();
    assert_eq!(client.get("/boom").status(), 500);
    assert_eq!(
        client
            .get("/boom")
            .json::<Value>()
            .ok()
            .map(|v| v["code"].clone()),
        Some(json!("internal"))
    );
    assert_eq!(client.get("/boom-after").status(), 500);
    assert_eq!(client.get("/calm").text(), "fine");
}

/// On a real server: each hook and the key check run once per request (they ran twice when
/// the server screened a request and the app screened it again), a before hook's refusal
/// leaves a large body unread (no `100 Continue`), and the after hook's header is on the wire.
#[test]
fn on_the_wire_hooks_run_once_and_a_refusal_reads_no_body() {
    let (before, befores) = counter();
    let (after, afters) = counter();
    let (handled, handles) = counter();
    let mut settings = Settings::default();
    settings.cors_origins = vec!["*".into()];
    let app = App::new()
        .with_settings(settings)
        .before(move |req| {
            before.fetch_add(1, Ordering::SeqCst);
            (req.header("X-Ticket").is_none()).then(|| Error::bad_request("a ticket is needed"))
        })
        .after(move |_, res| {
            after.fetch_add(1, Ordering::SeqCst);
            res.with_header("X-Seen", "yes")
        })
        .post("/upload", move |req| {
            handled.fetch_add(1, Ordering::SeqCst);
            req.body().len().to_string()
        });
    let server = TestServer::start(app);

    let reply = server.request(
        "POST",
        "/upload",
        &[("X-Ticket", "1"), ("Origin", "http://a")],
        b"12345",
    );
    assert_eq!((reply.status, reply.text().as_str()), (200, "5"));
    assert_eq!(reply.header("X-Seen"), Some("yes"));
    assert_eq!(reply.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(
        (
            befores.load(Ordering::SeqCst),
            afters.load(Ordering::SeqCst),
            handles.load(Ordering::SeqCst)
        ),
        (1, 1, 1),
        "each once"
    );

    // 1 GB announced, none sent: the answer comes without `100 Continue` and without a read.
    let mut conn = Conn::open(server.addr);
    conn.send(
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n",
    );
    let reply = conn.response();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(
        reply.header("X-Seen"),
        Some("yes"),
        "after hooks run on an early answer"
    );
    assert!(reply.text().contains("a ticket is needed"));
    let mut rest = Vec::new();
    let _ = conn.writer().read_to_end(&mut rest);
    assert!(!String::from_utf8_lossy(&rest).contains("100 Continue"));
    assert_eq!(
        (
            befores.load(Ordering::SeqCst),
            afters.load(Ordering::SeqCst),
            handles.load(Ordering::SeqCst)
        ),
        (2, 2, 1)
    );
}
