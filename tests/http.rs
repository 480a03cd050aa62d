//! The HTTP contract, on real servers bound to port 0: routing, handler return types, JSON
//! errors, overload, abuse (limits and timeouts), protocol details and shutdown.
//!
//! Every test checks what a client relies on (status, Content-Type, JSON `code` and message)
//! and that the server still answers the next request. Synchronization is by ordering
//! (channels, responses), never by sleeping.

use std::io::{ErrorKind as IoErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tinyserve::http::TrustedProxies;
use tinyserve::{App, Error, Json, Request, Settings};

use crate::support::wire::{connect, find};
use crate::support::{repo, Reply, TestServer};

/// How long a client waits for the server before the test gives up.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serializes the tests that load the whole process (1000 connections) or measure it (RSS).
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The app most tests serve: a greeting, an echo of a path parameter, a query parameter and
/// the request body.
fn app() -> App {
    App::new()
        .get("/", |_| "Hello, world!")
        .get("/echo/<text>", |req| {
            req.param("text").unwrap_or("<missing>").to_string()
        })
        .get("/query", |req| json!({"q": req.query_param("q")}))
        .post("/body", |req| {
            String::from_utf8_lossy(req.body()).into_owned()
        })
        .post("/len", |req| req.body().len().to_string())
}

fn serve(settings: Settings) -> TestServer {
    TestServer::start(app().with_settings(settings))
}

/// The server answers a plain request: it survived whatever the test did before.
fn assert_serving(server: &TestServer) {
    let reply = server.get("/");
    assert_eq!(
        reply.status,
        200,
        "server should still serve: {}",
        reply.text()
    );
    assert_eq!(reply.text(), "Hello, world!");
}

/// A handler that blocks until the test releases it, and tells the test when it has started.
/// The handler never blocks longer than 30 s, so a failing test still lets the server stop.
struct Gate {
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

fn gate() -> (
    Gate,
    impl Fn(&Request) -> &'static str + Send + Sync + 'static,
) {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let handler = move |_: &Request| {
        let _ = entered_tx.send(());
        let release = release_rx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = release.recv_timeout(Duration::from_secs(30));
        "released"
    };
    let gate = Gate {
        entered: entered_rx,
        release: release_tx,
    };
    (gate, handler)
}

impl Gate {
    fn wait_entered(&self) {
        self.entered
            .recv_timeout(CLIENT_TIMEOUT)
            .expect("the blocking handler should start");
    }

    fn release(&self) {
        self.release.send(()).expect("release the blocking handler");
    }
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client: exact bytes out, responses parsed by Content-Length.

/// Parses one response at the start of `buf`; `None` while it is incomplete. Returns the reply
/// and the number of bytes it took. `head_only`: the response to a HEAD, which has no body.
fn parse_response(buf: &[u8], head_only: bool) -> Option<(Reply, usize)> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    assert!(
        version.starts_with("HTTP/1."),
        "bad status line {status_line:?}"
    );
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("bad header line {line:?}"));
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect();
    let no_body = head_only || (100..200).contains(&status) || status == 204 || status == 304;
    let body_len = if no_body {
        0
    } else {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("response without a valid Content-Length: {head}"))
    };
    let total = end + 4 + body_len;
    if buf.len() < total {
        return None;
    }
    let reply = Reply {
        status,
        headers,
        body: buf[end + 4..total].to_vec(),
    };
    Some((reply, total))
}

/// How a connection ended, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The server closed the connection (FIN).
    Eof,
    /// The server reset the connection.
    Reset,
    /// The client gave up waiting: the server kept the connection open.
    ClientTimeout,
}

/// One client connection with its read-ahead buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        Conn {
            stream: connect(addr, CLIENT_TIMEOUT),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write the request");
    }

    /// Reads one response (an interim 1xx counts as one).
    fn response(&mut self) -> Reply {
        self.read_response(false)
    }

    /// Reads the response to a HEAD request.
    fn head_response(&mut self) -> Reply {
        self.read_response(true)
    }

    fn read_response(&mut self, head_only: bool) -> Reply {
        loop {
            if let Some((reply, used)) = parse_response(&self.buf, head_only) {
                self.buf.drain(..used);
                return reply;
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "server closed the connection before a full response; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err) => panic!(
                    "reading a response: {err}; got so far {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
    }

    /// Reads until the connection ends; returns how, and the bytes not yet consumed.
    fn finish(&mut self) -> (End, Vec<u8>) {
        let mut chunk = [0u8; 16 * 1024];
        let end = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break End::Eof,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err)
                    if matches!(err.kind(), IoErrorKind::WouldBlock | IoErrorKind::TimedOut) =>
                {
                    break End::ClientTimeout
                }
                Err(_) => break End::Reset,
            }
        };
        (end, std::mem::take(&mut self.buf))
    }

    /// Asserts the server closes the connection (cleanly) with nothing more to read.
    fn assert_closed(&mut self) {
        let (end, rest) = self.finish();
        assert_eq!(end, End::Eof, "the server should close the connection");
        assert!(
            rest.is_empty(),
            "unexpected bytes after the response: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// Sends `bytes` on a new connection and reads one response.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut conn = Conn::open(addr);
    conn.send(bytes);
    conn.response()
}

fn get_request(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

// ---------------------------------------------------------------------------------------------
// 1. Hello world.

/// The first ```rust block after the `## Hello world` heading, with a final newline per line.
fn hello_snippet(readme: &str) -> Option<String> {
    let mut lines = readme.lines().skip_while(|line| {
        !(line.trim_start().starts_with('#') && line.to_ascii_lowercase().contains("hello world"))
    });
    lines.next()?;
    let mut lines = lines.skip_while(|line| !line.trim_start().starts_with("```rust"));
    lines.next()?;
    let mut snippet = String::new();
    for line in lines {
        if line.trim_start().starts_with("```") {
            return Some(snippet);
        }
        snippet.push_str(line);
        snippet.push('\n');
    }
    None
}

#[test]
fn hello_snippet_is_the_first_rust_block_after_the_heading() {
    let readme = "# tinyserve\n\n```rust\nnot this\n```\n\n## Hello world\n\nText.\n\n\
                  ```toml\n[x]\n```\n\n```rust\nfn main() {}\n```\n\n```rust\nnor this\n```\n";
    assert_eq!(hello_snippet(readme).as_deref(), Some("fn main() {}\n"));
    assert_eq!(hello_snippet("## Hello world\n\nno code\n"), None);
}

/// Fails until README.md exists: its hello-world snippet must be examples/hello.rs, byte for byte.
#[test]
fn readme_hello_world_is_examples_hello() {
    let path = repo("README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "{} should exist and show examples/hello.rs under `## Hello world`: {err}",
            path.display()
        )
    });
    let snippet = hello_snippet(&readme)
        .expect("README.md: a `## Hello world` heading followed by a ```rust block");
    let example =
        std::fs::read_to_string(repo("examples/hello.rs")).expect("read examples/hello.rs");
    assert_eq!(
        snippet, example,
        "README's hello-world snippet and examples/hello.rs differ"
    );
}

#[test]
fn hello_world_route_answers_plain_text() {
    let server = TestServer::start(App::new().get("/", |_| "Hello, world!"));
    let reply = server.get("/");
    assert_eq!(reply.status, 200);
    let content_type = reply.header("Content-Type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain"),
        "Content-Type {content_type:?}"
    );
    assert_eq!(reply.text(), "Hello, world!");
    server.get("/nope").assert_error(404, "not_found", "/nope");
    assert_eq!(server.get("/").text(), "Hello, world!");
}

// ---------------------------------------------------------------------------------------------
// 2. Routing.

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
    let reply = server.request("DELETE", "/echo/x", &[], b"");
    reply.assert_error(405, "method_not_allowed", "DELETE");
    let allow = reply.header("Allow").expect("405 carries Allow");
    let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["GET", "HEAD"], "Allow: {allow}");

    let reply = server.request("GET", "/both", &[], b"");
    reply.assert_error(405, "method_not_allowed", "GET");
    let allow = reply.header("Allow").expect("405 carries Allow");
    let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["POST", "PUT"], "Allow: {allow}");

    assert_eq!(server.request("PUT", "/both", &[], b"").text(), "put");
    assert_serving(&server);
}

#[test]
fn head_on_get_route_has_content_length_but_no_body() {
    let server = TestServer::start(app());
    let mut conn = Conn::open(server.addr);
    conn.send(b"HEAD /echo/hello HTTP/1.1\r\nHost: test\r\n\r\n");
    let head = conn.head_response();
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
    let mut conn = Conn::open(server.addr);
    conn.send(b"HEAD /missing HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let head = conn.head_response();
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

// ---------------------------------------------------------------------------------------------
// 3. Panics.

#[test]
fn panicking_handler_is_500_without_details_and_the_worker_survives() {
    let server = TestServer::start(
        app()
            .with_workers(1)
            .get("/panic", |_| -> &'static str { panic!("secret detail 42") })
            .get("/panic-string", |req| -> String {
                panic!("formatted secret {}", req.path())
            }),
    );
    for path in ["/panic", "/panic-string", "/panic"] {
        let reply = server.get(path);
        assert_eq!(reply.status, 500, "{path}");
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
        assert_eq!(
            reply.json(),
            json!({"error": "internal server error", "code": "internal"})
        );
        assert!(
            !reply.text().contains("secret"),
            "panic text leaked: {}",
            reply.text()
        );
        // The only worker survived the panic.
        assert_serving(&server);
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Handler return types and JSON bodies.

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

// ---------------------------------------------------------------------------------------------
// 5. Overload.

#[test]
fn full_queue_answers_503_at_once_and_accepted_requests_complete() {
    let (gate, handler) = gate();
    let mut settings = Settings::default();
    settings.workers = 1;
    settings.queue_capacity = 1;
    let server = TestServer::start(app().with_settings(settings).get("/block", handler));
    // Dropped before `server`, so a failing test releases the handler instead of hanging.
    let gate = gate;
    let addr = server.addr;

    // A occupies the only worker.
    let a = thread::spawn(move || exchange(addr, get_request("/block").as_bytes()));
    gate.wait_entered();

    // B and C: one of them takes the only queue slot, the other must get 503 while A still
    // holds the worker. Which is which depends on which reaches the queue first.
    let (replies_tx, replies) = mpsc::channel();
    for name in ["B", "C"] {
        let mut conn = Conn::open(addr);
        conn.send(get_request(&format!("/echo/{name}")).as_bytes());
        let replies_tx = replies_tx.clone();
        thread::spawn(move || {
            let _ = replies_tx.send((name, conn.response()));
        });
    }
    let (rejected, reply) = replies
        .recv_timeout(CLIENT_TIMEOUT)
        .expect("a request beyond the queue should get an answer while the worker is busy");
    reply.assert_error(503, "overloaded", "queue");
    assert_eq!(reply.header("Retry-After"), Some("1"));

    gate.release();
    let a = a.join().expect("request A");
    assert_eq!(a.status, 200, "A: {}", a.text());
    assert_eq!(a.text(), "released");
    let (queued, reply) = replies
        .recv_timeout(CLIENT_TIMEOUT)
        .expect("the queued request should be answered");
    assert_ne!(queued, rejected);
    assert_eq!(reply.status, 200, "{queued}: {}", reply.text());
    assert_eq!(reply.text(), queued);
    assert_serving(&server);
}

// ---------------------------------------------------------------------------------------------
// 6a. Body limits.

#[test]
fn huge_content_length_is_413_and_the_server_keeps_serving() {
    let server = TestServer::start(app());
    let mut conn = Conn::open(server.addr);
    conn.send(
        b"POST /len HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Content-Length: 1000000000000\r\n\r\n{\"a\":",
    );
    conn.response()
        .assert_error(413, "payload_too_large", "limit of 10485760 bytes");
    let (end, rest) = conn.finish();
    assert_ne!(
        end,
        End::ClientTimeout,
        "the server should close after a 413"
    );
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));

    // Longer than any integer.
    let reply = exchange(
        server.addr,
        b"POST /len HTTP/1.1\r\nHost: test\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
    );
    reply.assert_error(413, "payload_too_large", "limit");
    assert_serving(&server);
}

#[test]
fn body_limit_is_exact() {
    let server = TestServer::start(app().with_max_body_bytes(1024));
    let post = |len: usize| {
        server.request(
            "POST",
            "/len",
            &[("Content-Type", "application/octet-stream")],
            &vec![b'x'; len],
        )
    };
    let reply = post(1024);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "1024");
    post(1025).assert_error(413, "payload_too_large", "1024");
    assert_eq!(post(0).text(), "0");
    assert_eq!(post(1024).text(), "1024");
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let server = TestServer::start(app().with_max_body_bytes(1024));
    let chunk = |len: usize| {
        let mut out = format!("{len:x}\r\n").into_bytes();
        out.extend(std::iter::repeat_n(b'x', len));
        out.extend_from_slice(b"\r\n");
        out
    };
    let head = b"POST /len HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";

    // Exactly at the limit, in two chunks: accepted.
    let mut request = head.to_vec();
    request.extend(chunk(1000));
    request.extend(chunk(24));
    request.extend_from_slice(b"0\r\n\r\n");
    let reply = exchange(server.addr, &request);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "1024");

    // One byte over: refused.
    let mut request = head.to_vec();
    request.extend(chunk(1000));
    request.extend(chunk(25));
    request.extend_from_slice(b"0\r\n\r\n");
    exchange(server.addr, &request).assert_error(413, "payload_too_large", "1024");

    // A single chunk announcing far more than the limit: refused before it is read.
    let mut request = head.to_vec();
    request.extend_from_slice(b"fffffffff\r\nxxxx");
    exchange(server.addr, &request).assert_error(413, "payload_too_large", "1024");
    assert_serving(&server);
}

// ---------------------------------------------------------------------------------------------
// 6b. Timeouts.

fn short_timeouts() -> TestServer {
    let mut settings = Settings::default();
    settings.head_timeout = Duration::from_secs(1);
    settings.io_timeout = Duration::from_secs(1);
    serve(settings)
}

/// The server closes the connection by itself (the client would wait 10 s), optionally after
/// a 408 `request_timeout`.
fn assert_closed_by_server(conn: &mut Conn) {
    let (end, rest) = conn.finish();
    assert_ne!(
        end,
        End::ClientTimeout,
        "the server kept a stalled connection open; got {:?}",
        String::from_utf8_lossy(&rest)
    );
    if !rest.is_empty() {
        let (reply, used) =
            parse_response(&rest, false).expect("a complete response before the close");
        reply.assert_error(408, "request_timeout", "timed out");
        assert_eq!(used, rest.len(), "bytes after the 408");
    }
}

#[test]
fn stalled_request_line_is_closed() {
    let server = short_timeouts();
    let mut conn = Conn::open(server.addr);
    conn.send(b"GET /ec");
    assert_closed_by_server(&mut conn);
    assert_serving(&server);
}

#[test]
fn stalled_headers_are_closed() {
    let server = short_timeouts();
    let mut conn = Conn::open(server.addr);
    conn.send(b"GET /echo/x HTTP/1.1\r\nHost: test\r\nX-Slow: ");
    assert_closed_by_server(&mut conn);
    assert_serving(&server);
}

#[test]
fn stalled_body_is_closed() {
    let server = short_timeouts();
    let mut conn = Conn::open(server.addr);
    conn.send(b"POST /len HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789");
    assert_closed_by_server(&mut conn);
    assert_serving(&server);
}

#[test]
fn default_timeouts_are_bounded() {
    let settings = Settings::default();
    assert!(settings.head_timeout > Duration::ZERO);
    assert!(settings.head_timeout <= Duration::from_secs(60));
    assert!(settings.io_timeout > Duration::ZERO);
    assert!(settings.io_timeout <= Duration::from_secs(60));
    assert!(settings.request_timeout >= settings.head_timeout);
    assert!(settings.request_timeout <= Duration::from_secs(120));
    assert!(settings.keep_alive_timeout > Duration::ZERO);
}

// ---------------------------------------------------------------------------------------------
// 6c. Header limits.

#[test]
fn one_mebibyte_header_is_431() {
    let server = TestServer::start(app());
    let mut conn = Conn::open(server.addr);
    let mut writer = conn.stream.try_clone().expect("clone the client socket");
    // The server stops reading and closes early: write from another thread, ignoring errors.
    let sender = thread::spawn(move || {
        let mut request = b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        request.extend_from_slice(b"\r\n\r\n");
        let _ = writer.write_all(&request);
    });
    conn.response()
        .assert_error(431, "headers_too_large", "16384 bytes");
    sender.join().expect("writer thread");
    assert_serving(&server);
}

/// A GET request whose head (request line, headers, blank line) is exactly `total` bytes.
fn head_of_size(total: usize) -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: test\r\nX-Pad: ".to_vec();
    let pad = total - head.len() - 4;
    head.extend(std::iter::repeat_n(b'p', pad));
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), total);
    head
}

#[test]
fn head_limit_is_exact() {
    let mut settings = Settings::default();
    settings.max_head_bytes = 1024;
    let server = serve(settings);
    // Each head arrives in one read: the limit must hold for complete heads too.
    let reply = exchange(server.addr, &head_of_size(1024));
    assert_eq!(reply.status, 200, "{}", reply.text());
    exchange(server.addr, &head_of_size(1025)).assert_error(431, "headers_too_large", "1024 bytes");
    exchange(server.addr, &head_of_size(4000)).assert_error(431, "headers_too_large", "1024 bytes");
    assert_serving(&server);
}

#[test]
fn too_many_headers_is_431() {
    let server = TestServer::start(app());
    let mut request = String::from("GET / HTTP/1.1\r\nHost: test\r\n");
    for i in 0..200 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    exchange(server.addr, request.as_bytes()).assert_error(431, "headers_too_large", "100 headers");

    // One over the limit of 100 (with Host).
    let mut request = String::from("GET / HTTP/1.1\r\nHost: test\r\n");
    for i in 0..100 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    exchange(server.addr, request.as_bytes()).assert_error(431, "headers_too_large", "100 headers");

    // 99 extra headers (100 with Host) are fine.
    let mut request = String::from("GET / HTTP/1.1\r\nHost: test\r\n");
    for i in 0..99 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let reply = exchange(server.addr, request.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_serving(&server);
}

// ---------------------------------------------------------------------------------------------
// 6d. Connections.

#[test]
fn thousand_concurrent_connections_are_all_served() {
    let _heavy = heavy();
    assert!(Settings::default().max_connections >= 1000);
    let server = TestServer::start(app());
    let started = Instant::now();
    let mut conns: Vec<Conn> = (0..1000).map(|_| Conn::open(server.addr)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(get_request(&format!("/echo/{i}")).as_bytes());
    }
    // Every connection is still open here: all 1000 are served at the same time.
    for (i, conn) in conns.iter_mut().enumerate() {
        let reply = conn.response();
        assert_eq!(reply.status, 200, "connection {i}: {}", reply.text());
        assert_eq!(reply.text(), i.to_string(), "connection {i}");
    }
    // And each stays usable (keep-alive).
    for (i, conn) in conns.iter_mut().enumerate().step_by(97) {
        conn.send(get_request(&format!("/echo/again{i}")).as_bytes());
        assert_eq!(conn.response().text(), format!("again{i}"));
    }
    drop(conns);
    assert_serving(&server);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "1000 connections took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_new_connection_takes_the_slot_of_the_one_idle_longest() {
    let mut settings = Settings::default();
    settings.max_connections = 10;
    let server = serve(settings);
    let mut conns: Vec<Conn> = (0..10).map(|_| Conn::open(server.addr)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(get_request(&format!("/echo/{i}")).as_bytes());
        assert_eq!(conn.response().text(), i.to_string());
    }
    // All 10 slots are open and idle between requests: an 11th connection is served, and the
    // connection idle longest is closed for it. (Which one that is depends on when each
    // connection thread marked itself idle after answering, so the test does not name it.)
    let mut extra = Conn::open(server.addr);
    extra.send(get_request("/echo/extra").as_bytes());
    assert_eq!(extra.response().text(), "extra");
    // The server closed it before answering the newcomer: its end of stream is already here.
    let closed: Vec<usize> = conns
        .iter()
        .enumerate()
        .filter(|(_, conn)| {
            conn.stream.set_nonblocking(true).expect("non-blocking");
            let ended = matches!(conn.stream.peek(&mut [0u8; 1]), Ok(0));
            conn.stream.set_nonblocking(false).expect("blocking");
            ended
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(closed.len(), 1, "closed: {closed:?}");
    conns.remove(closed[0]).assert_closed();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(get_request(&format!("/echo/again{i}")).as_bytes());
        assert_eq!(conn.response().text(), format!("again{i}"));
    }
    assert_serving(&server);
}

#[test]
fn one_address_holds_at_most_max_connections_per_ip_unless_it_is_a_trusted_proxy() {
    let mut settings = Settings::default();
    settings.max_connections_per_ip = 3;
    settings.trusted_proxies = TrustedProxies::none();
    let server = serve(settings.clone());
    let mut conns: Vec<Conn> = (0..3).map(|_| Conn::open(server.addr)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(get_request(&format!("/echo/{i}")).as_bytes());
        assert_eq!(conn.response().text(), i.to_string());
    }
    let mut fourth = Conn::open(server.addr);
    fourth
        .response()
        .assert_error(503, "overloaded", "from one address (limit 3)");
    assert_eq!(fourth.finish().0, End::Eof);
    // A closed connection gives its slot back (noticed asynchronously: poll, bounded).
    drop(conns.pop());
    let mut last = None;
    for _ in 0..500 {
        let reply = exchange(server.addr, get_request("/echo/again").as_bytes());
        if reply.status == 200 {
            last = None;
            break;
        }
        last = Some(reply);
        thread::sleep(Duration::from_millis(10));
    }
    assert!(last.is_none(), "still refused: {last:?}");

    // Behind a trusted proxy (loopback by default) the cap does not apply.
    settings.trusted_proxies = TrustedProxies::default();
    let proxied = serve(settings);
    let mut conns: Vec<Conn> = (0..6).map(|_| Conn::open(proxied.addr)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(get_request(&format!("/echo/{i}")).as_bytes());
        assert_eq!(conn.response().text(), i.to_string());
    }
    assert_serving(&proxied);
}

/// A server with 10 connection slots whose `/held` handler blocks until released; `/held`
/// and `/healthz` are the health probe paths, served on the reserved slots too.
fn held_server() -> (Gate, TestServer) {
    let (gate, held) = gate();
    let mut settings = Settings::default();
    settings.max_connections = 10;
    settings.public_paths = vec!["/healthz".to_string(), "/held".to_string()];
    let app = app()
        .get("/healthz", |_| "ok")
        .get("/held", held)
        .with_settings(settings);
    (gate, TestServer::start(app))
}

/// `n` connections, each with a request in the blocked handler.
fn hold(server: &TestServer, gate: &Gate, n: usize) -> Vec<Conn> {
    (0..n)
        .map(|_| {
            let mut conn = Conn::open(server.addr);
            conn.send(get_request("/held").as_bytes());
            gate.wait_entered();
            conn
        })
        .collect()
}

/// Releases every held handler (in whatever order they take the releases), then reads their
/// answers.
fn release_all(gate: &Gate, held: Vec<Conn>) {
    for _ in &held {
        gate.release();
    }
    for mut conn in held {
        assert_eq!(conn.response().text(), "released");
    }
}

#[test]
fn when_every_slot_is_busy_a_reserved_slot_answers_health_probes() {
    let (gate, server) = held_server();
    let held = hold(&server, &gate, 10);
    let mut probe = Conn::open(server.addr);
    probe.send(get_request("/healthz").as_bytes());
    let reply = probe.response();
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
    assert_eq!(reply.header("Connection"), Some("close"));
    probe.assert_closed();
    let mut other = Conn::open(server.addr);
    other.send(get_request("/echo/x").as_bytes());
    let reply = other.response();
    reply.assert_error(503, "overloaded", "answers only the health probes");
    other.assert_closed();
    release_all(&gate, held);
    assert_serving(&server);
}

#[test]
fn when_the_reserved_slots_are_busy_too_new_connections_get_503_at_once() {
    let (gate, server) = held_server();
    let held = hold(&server, &gate, 10 + 16);
    let mut extra = Conn::open(server.addr);
    let reply = extra.response();
    reply.assert_error(503, "overloaded", "too many open connections");
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert_eq!(extra.finish().0, End::Eof);
    release_all(&gate, held);
    // The slots free up as the connections close (the reserved ones after one request), which
    // the server notices asynchronously: poll, bounded.
    let mut last = None;
    for _ in 0..500 {
        let reply = exchange(server.addr, get_request("/echo/back").as_bytes());
        if reply.status == 200 {
            last = None;
            break;
        }
        last = Some(reply);
        thread::sleep(Duration::from_millis(10));
    }
    assert!(last.is_none(), "still refused: {last:?}");
    assert_serving(&server);
}

// ---------------------------------------------------------------------------------------------
// 6e. Memory.

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("VmRSS value in kB");
    kib * 1024
}

/// 20 hostile requests at once: 10 declare a 1 TB body, 10 send an endless header; each client
/// streams 8 MiB. Returns the RSS growth measured while all 20 connections are still open (so a
/// server buffering what it receives would be caught holding it), and the 20 replies.
fn hostile_round(addr: SocketAddr) -> (u64, Vec<Reply>) {
    const STREAMED: usize = 8 * 1024 * 1024;
    let before = rss_bytes();
    let writers: Vec<_> = (0..20)
        .map(|i| {
            thread::spawn(move || {
                let conn = Conn::open(addr);
                let mut stream = conn.stream.try_clone().expect("clone the client socket");
                let head: &[u8] = if i % 2 == 0 {
                    b"POST /len HTTP/1.1\r\nHost: test\r\nContent-Length: 1000000000000\r\n\r\n"
                } else {
                    b"GET / HTTP/1.1\r\nHost: test\r\nX-Endless: "
                };
                let filler = [b'a'; 64 * 1024];
                // The server refuses early and closes: write errors are expected.
                if stream.write_all(head).is_ok() {
                    for _ in 0..STREAMED / filler.len() {
                        if stream.write_all(&filler).is_err() {
                            break;
                        }
                    }
                }
                conn
            })
        })
        .collect();
    let mut conns: Vec<Conn> = writers
        .into_iter()
        .map(|writer| writer.join().expect("hostile client"))
        .collect();
    let growth = rss_bytes().saturating_sub(before);
    let replies = conns.iter_mut().map(Conn::response).collect();
    (growth, replies)
}

#[test]
fn memory_stays_bounded_under_huge_bodies_and_headers() {
    let _heavy = heavy();
    let server = TestServer::start(app());
    assert_serving(&server);
    const LIMIT: u64 = 64 * 1024 * 1024;
    // Other test modules share this process: retry a noisy measurement. A server that buffers
    // what it receives grows by ~160 MiB on every round, so it fails all three.
    let mut growths = Vec::new();
    for _ in 0..3 {
        let (growth, replies) = hostile_round(server.addr);
        for (i, reply) in replies.iter().enumerate() {
            if i % 2 == 0 {
                reply.assert_error(413, "payload_too_large", "limit");
            } else {
                reply.assert_error(431, "headers_too_large", "limit");
            }
        }
        assert_serving(&server);
        growths.push(growth);
        if growth < LIMIT {
            break;
        }
    }
    let last = growths.last().copied().unwrap_or(u64::MAX);
    assert!(
        last < LIMIT,
        "RSS grew by {:?} MiB under 20 hostile requests",
        growths
            .iter()
            .map(|g| g / (1024 * 1024))
            .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Protocol details.

#[test]
fn keep_alive_serves_two_requests_on_one_socket() {
    let server = TestServer::start(app());
    let mut conn = Conn::open(server.addr);
    for word in ["one", "two", "three"] {
        conn.send(get_request(&format!("/echo/{word}")).as_bytes());
        let reply = conn.response();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), word);
        assert_ne!(reply.header("Connection"), Some("close"));
    }
    // An error response does not end a keep-alive connection either.
    conn.send(get_request("/missing").as_bytes());
    conn.response().assert_error(404, "not_found", "/missing");
    conn.send(b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nbody");
    assert_eq!(conn.response().text(), "body");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start(app());
    let mut conn = Conn::open(server.addr);
    let mut batch = get_request("/echo/first").into_bytes();
    batch
        .extend_from_slice(b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\n\r\nsecond");
    batch.extend(get_request("/echo/third").into_bytes());
    conn.send(&batch);
    for expected in ["first", "second", "third"] {
        let reply = conn.response();
        assert_eq!(reply.status, 200, "{expected}");
        assert_eq!(reply.text(), expected);
    }
    conn.send(get_request("/echo/fourth").as_bytes());
    assert_eq!(conn.response().text(), "fourth");
}

#[test]
fn connection_close_is_honored() {
    let server = TestServer::start(app());
    let mut conn = Conn::open(server.addr);
    conn.send(b"GET /echo/bye HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let reply = conn.response();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "bye");
    assert_eq!(reply.header("Connection"), Some("close"));
    conn.assert_closed();
    assert_serving(&server);
}

#[test]
fn http_1_0_without_keep_alive_closes() {
    let server = TestServer::start(app());
    let mut conn = Conn::open(server.addr);
    conn.send(b"GET /echo/old HTTP/1.0\r\n\r\n");
    let reply = conn.response();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "old");
    assert_eq!(reply.header("Connection"), Some("close"));
    conn.assert_closed();
    assert_serving(&server);
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let server = TestServer::start(app());
    let mut conn = Conn::open(server.addr);
    conn.send(
        b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = conn.response();
    assert_eq!(interim.status, 100, "{interim:?}");
    assert!(interim.body.is_empty());
    conn.send(b"hello");
    let reply = conn.response();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello");

    // Over the limit: a 413 instead of 100 Continue, before the client sends the body.
    let server = TestServer::start(app().with_max_body_bytes(4));
    let mut conn = Conn::open(server.addr);
    conn.send(
        b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    conn.response()
        .assert_error(413, "payload_too_large", "4 bytes");
}

#[test]
fn chunked_request_body_is_decoded() {
    let server = TestServer::start(app());
    let mut conn = Conn::open(server.addr);
    conn.send(
        b"POST /body HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    let reply = conn.response();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "hello world");
    // The connection is still in sync after the chunked body.
    conn.send(get_request("/echo/next").as_bytes());
    assert_eq!(conn.response().text(), "next");

    let reply = exchange(
        server.addr,
        b"POST /body HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    reply.assert_error(400, "bad_request", "chunk size");
}

#[test]
fn malformed_request_line_is_400() {
    let server = TestServer::start(app());
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        let mut conn = Conn::open(server.addr);
        conn.send(garbage);
        conn.response()
            .assert_error(400, "bad_request", "malformed request");
        let (end, _) = conn.finish();
        assert_ne!(
            end,
            End::ClientTimeout,
            "the server should close after a 400"
        );
    }
    assert_serving(&server);
}

#[test]
fn conflicting_content_length_is_400() {
    let server = TestServer::start(app());
    let reply = exchange(
        server.addr,
        b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    );
    reply.assert_error(400, "bad_request", "conflicting Content-Length");
    let reply = exchange(
        server.addr,
        b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: -5\r\n\r\nhello",
    );
    reply.assert_error(400, "bad_request", "Content-Length");
    // The same length twice is not a conflict.
    let reply = exchange(
        server.addr,
        b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(reply.text(), "hello");
    assert_serving(&server);
}

// ---------------------------------------------------------------------------------------------
// 8. Shutdown.

#[test]
fn shutdown_returns_promptly_with_an_idle_keep_alive_connection() {
    let server = app().bind("127.0.0.1:0").expect("bind");
    let mut idle = Conn::open(server.addr());
    idle.send(get_request("/echo/idle").as_bytes());
    assert_eq!(idle.response().text(), "idle");
    // The connection now idles in keep-alive (75 s by default).
    let started = Instant::now();
    server.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    idle.assert_closed();
}

#[test]
fn shutdown_answers_the_request_in_flight() {
    let (gate, handler) = gate();
    let server = app()
        .with_workers(1)
        .get("/block", handler)
        .bind("127.0.0.1:0")
        .expect("bind");
    let gate = gate;
    let addr = server.addr();
    let mut idle = Conn::open(addr);
    idle.send(get_request("/echo/idle").as_bytes());
    assert_eq!(idle.response().text(), "idle");

    let in_flight = thread::spawn(move || {
        let mut conn = Conn::open(addr);
        conn.send(get_request("/block").as_bytes());
        let reply = conn.response();
        (reply, conn.finish())
    });
    gate.wait_entered();

    let started = Instant::now();
    server.shutdown_handle().shutdown();
    // Shutdown has started; only now does the handler finish.
    gate.release();
    server.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");

    let (reply, (end, rest)) = in_flight.join().expect("request in flight");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "released");
    assert_eq!(
        end,
        End::Eof,
        "the connection closes after the last response"
    );
    assert!(rest.is_empty());
    idle.assert_closed();
}
