//! Outbound calls: `Upstream` + `FanOut` against real upstream servers on port 0 (tinyserve
//! apps with sleeping handlers, one answering 500, a socket that accepts and never answers, a
//! closed port), and the `tinyserve serve --upstream NAME=URL` proxy run as the real binary.
//!
//! Timing assertions are ratios or bounded waits that only a hang can exceed; streaming is
//! checked by ordering (the upstream sends event k only after the test acknowledges k-1).
//! Sleeps appear only inside upstream handlers (simulated latency) and in bounded polling.

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tinyserve::model::ModelRegistry;
use tinyserve::protocol::{self, Readiness};
use tinyserve::{App, Error, ErrorKind, Event, FanOut, Request, Sse, Upstream};

use crate::support::process::tinyserve;
use crate::support::serve::{assert_refuses_to_serve, ServeBuilder, ServeChild};
use crate::support::wire::{post_json_request, Conn, ResponseFraming};
use crate::support::{agent, repo, TestServer};

/// Longest a test waits for anything; reaching it means a hang, and fails the test.
pub(crate) const BOUND: Duration = Duration::from_secs(10);

/// An upstream whose `GET /echo/<i>?ms=N` sleeps N ms (simulated latency) and answers `i`,
/// and whose `GET /fail` answers 500 with a recognizable body.
pub(crate) fn echo_upstream() -> TestServer {
    TestServer::start(
        App::new()
            .get("/echo/<i>", |req: &Request| {
                let ms = req
                    .query_param("ms")
                    .and_then(|ms| ms.parse().ok())
                    .unwrap_or(0);
                thread::sleep(Duration::from_millis(ms));
                req.param("i").unwrap_or_default().to_string()
            })
            .get("/fail", |_| (500, "the database is on fire"))
            .with_workers(16),
    )
}

/// A server that accepts connections and never answers. Dropping it closes them.
struct Silent {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind silent upstream");
        let addr = listener.local_addr().expect("silent address");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut held = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((socket, _)) => held.push(socket),
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Silent {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A local port nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn err_of(result: &tinyserve::Result<tinyserve::fanout::UpstreamReply>) -> &Error {
    match result {
        Ok(reply) => panic!("expected an error, got {} {:?}", reply.status, reply.text()),
        Err(err) => err,
    }
}

fn text_of(result: &tinyserve::Result<tinyserve::fanout::UpstreamReply>) -> String {
    match result {
        Ok(reply) => reply.text(),
        Err(err) => panic!("expected an answer, got {err}"),
    }
}

#[test]
fn fan_out_takes_the_time_of_the_slowest_call_and_keeps_input_order() {
    let upstream = echo_upstream();
    let echo = Upstream::new("echo", &upstream.url(""));
    // ~100 ms each; later calls are quicker, so they finish first: order must come from
    // the input, not from completion.
    let sleeps: Vec<u64> = (0..8).map(|i| 100 + 5 * (7 - i)).collect();
    let calls = sleeps
        .iter()
        .enumerate()
        .map(|(i, ms)| echo.get(&format!("/echo/{i}?ms={ms}")))
        .collect();
    let started = Instant::now();
    let results = FanOut::shared().expect("shared pool").run(calls, BOUND);
    let elapsed = started.elapsed();
    let sum = Duration::from_millis(sleeps.iter().sum());
    let answers: Vec<String> = results.iter().map(text_of).collect();
    let expected: Vec<String> = (0..8).map(|i| i.to_string()).collect();
    assert_eq!(answers, expected, "results in input order");
    assert!(
        elapsed < sum / 2,
        "8 parallel calls took {elapsed:?}; one after another they take {sum:?}"
    );
}

#[test]
fn parallel_calls_reuse_pooled_connections() {
    let upstream = TestServer::start(
        App::new()
            .get("/port", |req: &Request| {
                thread::sleep(Duration::from_millis(100)); // simulated latency: calls overlap
                req.remote_addr().map(|a| a.port()).unwrap_or(0).to_string()
            })
            .with_workers(32),
    );
    let ports = Upstream::new("ports", &upstream.url(""));
    let round = || -> std::collections::BTreeSet<String> {
        let calls = (0..24).map(|_| ports.get("/port")).collect();
        let results = FanOut::shared().expect("pool").run(calls, BOUND);
        results.iter().map(text_of).collect()
    };
    let first = round();
    let second = round();
    assert_eq!(
        first.len(),
        24,
        "24 calls at once, on 24 connections: {first:?}"
    );
    assert!(
        second.is_subset(&first),
        "the second round opened new connections: {first:?} then {second:?}"
    );
}

#[test]
fn a_fan_out_makes_at_most_its_bound_of_calls_at_once() {
    let (now, most) = (Arc::new(Mutex::new(0usize)), Arc::new(Mutex::new(0usize)));
    let (counting, highest) = (Arc::clone(&now), Arc::clone(&most));
    let upstream = TestServer::start(
        App::new()
            .get("/slow", move |_: &Request| {
                {
                    let mut now = counting.lock().expect("count");
                    *now += 1;
                    let mut most = highest.lock().expect("most");
                    *most = (*most).max(*now);
                }
                thread::sleep(Duration::from_millis(100)); // simulated latency: calls overlap
                *counting.lock().expect("count") -= 1;
                "ok"
            })
            .with_workers(16),
    );
    let slow = Upstream::new("slow", &upstream.url(""));
    let calls = (0..6).map(|_| slow.get("/slow")).collect();
    let results = FanOut::new(2).expect("fan-out").run(calls, BOUND);
    assert_eq!(
        results.iter().map(text_of).collect::<Vec<_>>(),
        vec!["ok"; 6]
    );
    assert_eq!(*most.lock().expect("most"), 2, "two calls at a time");
}

#[test]
fn chunked_answers_and_closed_keep_alive_connections() {
    let mut settings = tinyserve::Settings::default();
    // The upstream closes an idle connection after 100 ms: the pooled ones go stale.
    settings.keep_alive_timeout = Duration::from_millis(100);
    let upstream = TestServer::start(App::new().with_settings(settings).get(
        "/chunked/<n>",
        |req: &Request| {
            let n: usize = req.param("n").and_then(|n| n.parse().ok()).unwrap_or(0);
            tinyserve::Response::stream("text/plain", move |out| {
                for i in 0..n {
                    out.send(format!("{i},"))?;
                }
                Ok(())
            })
        },
    ));
    let chunks = Upstream::new("chunks", &upstream.url(""));
    for round in 0..2 {
        let calls = (0..3)
            .map(|n| chunks.get(&format!("/chunked/{n}")))
            .collect();
        let results = FanOut::shared().expect("pool").run(calls, BOUND);
        let bodies: Vec<String> = results.iter().map(text_of).collect();
        assert_eq!(bodies, ["", "0,", "0,1,"], "round {round}");
        // Long enough for the upstream to close the connections just pooled.
        thread::sleep(Duration::from_millis(300));
    }
    let outcomes = chunks.outcomes();
    assert_eq!(outcomes[0], ("ok", 6), "{outcomes:?}");
}

#[test]
fn fan_out_posts_json_and_a_4xx_answer_is_our_own_502() {
    let upstream = TestServer::start(
        App::new()
            .post("/echo", |req: &Request| {
                req.json::<Value>()
                    .map(|body| tinyserve::Json(json!({"got": body})))
            })
            .post("/reject", |_: &Request| (422, "field \"q\" is missing")),
    );
    // By name: resolved when a connection is opened.
    let by_name = upstream.url("").replace("127.0.0.1", "localhost");
    let api = Upstream::new("api", &by_name);
    let calls = vec![
        api.post_json("/echo", &json!({"q": "cat", "n": [1, 2]})),
        api.post_json("/reject", &json!({})),
    ];
    let results = FanOut::shared().expect("pool").run(calls, BOUND);
    let echoed: Value = match &results[0] {
        Ok(reply) => reply.json().expect("JSON"),
        Err(err) => panic!("expected an answer, got {err}"),
    };
    assert_eq!(echoed, json!({"got": {"q": "cat", "n": [1, 2]}}));
    let err = err_of(&results[1]);
    assert_eq!(err.status(), 502);
    for needle in ["upstream \"api\"", "status 422"] {
        assert!(err.message().contains(needle), "{err} lacks {needle:?}");
    }
    // The upstream's own body is for the log, not the client.
    assert!(!err.message().contains("is missing"), "{err}");
    assert!(
        err.chain().contains("field \"q\" is missing"),
        "{}",
        err.chain()
    );
    // The upstream answered both: neither is an error of the connection or a timeout.
    assert_eq!(api.outcomes()[0], ("ok", 2), "{:?}", api.outcomes());
}

#[test]
fn failed_calls_do_not_fail_the_others() {
    let upstream = echo_upstream();
    let silent = Silent::start();
    let port = closed_port();
    let ok = Upstream::new("echo", &upstream.url(""));
    let refused_url = format!("http://127.0.0.1:{port}");
    let refused = Upstream::new("refused", &refused_url);
    let hanging = Upstream::new("hanging", &silent.url());
    let deadline = Duration::from_millis(500);
    let calls = vec![
        ok.get("/echo/0?ms=50"),
        ok.get("/fail"),
        refused.get("/search"),
        hanging.get("/features"),
        ok.get("/echo/4"),
    ];
    let started = Instant::now();
    let results = FanOut::shared().expect("pool").run(calls, deadline);
    let elapsed = started.elapsed();
    assert_eq!(results.len(), 5);
    assert_eq!(text_of(&results[0]), "0");
    assert_eq!(text_of(&results[4]), "4");

    let err = err_of(&results[1]);
    assert_eq!(err.kind(), ErrorKind::BadGateway, "{err}");
    assert_eq!(err.status(), 502);
    assert_eq!(err.to_json()["code"], "upstream_error");
    // The client's message names the upstream and the status; the URL and the upstream's
    // body are in the cause, for the log.
    let fail_url = upstream.url("/fail");
    let message = err.message();
    for needle in ["upstream \"echo\"", "status 500"] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    for secret in [fail_url.as_str(), "the database is on fire"] {
        assert!(!message.contains(secret), "{message:?} quotes {secret:?}");
        assert!(
            err.chain().contains(secret),
            "{} lacks {secret:?}",
            err.chain()
        );
    }

    let err = err_of(&results[2]);
    assert_eq!(err.kind(), ErrorKind::BadGateway, "{err}");
    let message = err.message();
    for needle in ["upstream \"refused\"", "connection refused"] {
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    }
    assert!(!message.contains(&refused_url), "{message:?}");
    assert!(err.chain().contains(&refused_url), "{}", err.chain());

    let err = err_of(&results[3]);
    assert_eq!(err.kind(), ErrorKind::GatewayTimeout, "{err}");
    assert_eq!(err.status(), 504);
    assert_eq!(err.to_json()["code"], "upstream_timeout");
    let silent_url = format!("{}/features", silent.url());
    let message = err.message();
    assert!(message.contains("upstream \"hanging\""), "{message:?}");
    assert!(!message.contains(&silent_url), "{message:?}");
    assert!(err.chain().contains(&silent_url), "{}", err.chain());
    assert!(
        elapsed >= deadline,
        "the hanging call was given up before the deadline: {elapsed:?}"
    );
}

/// Status and JSON body of a response.
pub(crate) fn status_json(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> (u16, Value) {
    let mut response = response.expect("response within the client timeout");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("body is not JSON ({err}): {text}"));
    (status, body)
}

#[test]
fn a_missed_deadline_is_a_504_naming_the_upstream_and_frees_the_worker() {
    let silent = Silent::start();
    let llm = Upstream::new("llm", &silent.url());
    let deadline = Duration::from_millis(300);
    let server = TestServer::start(
        App::new()
            .get("/ask", move |req: &Request| -> tinyserve::Result<String> {
                let mut results =
                    FanOut::shared()?.run_for(req, vec![llm.get("/complete")], deadline);
                match results.pop() {
                    Some(result) => Ok(result?.text()),
                    None => Err(Error::internal("no result")),
                }
            })
            .get("/ping", |_| "pong")
            .with_workers(1),
    );
    // Gives up after BOUND: a hang fails the test instead of blocking it.
    let agent = agent(BOUND);
    let started = Instant::now();
    let (status, body) = status_json(agent.get(server.url("/ask")).call());
    let elapsed = started.elapsed();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["code"], "upstream_timeout", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("upstream \"llm\"") && !message.contains(&silent.url()),
        "the upstream's name, not its address: {message:?}"
    );
    assert!(elapsed >= deadline, "answered before the deadline");
    // The only worker is free again.
    let mut reply = agent.get(server.url("/ping")).call().expect("ping");
    assert_eq!(reply.status().as_u16(), 200);
    assert_eq!(reply.body_mut().read_to_string().expect("body"), "pong");
}

#[test]
fn a_client_that_leaves_abandons_the_fan_out() {
    let silent = Silent::start();
    let slow = Upstream::new("slow", &silent.url());
    let deadline = Duration::from_secs(30);
    let (started_tx, started) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    let server = TestServer::start(App::new().get("/ask", move |req: &Request| {
        let _ = started_tx.send(());
        let begun = Instant::now();
        let calls = vec![slow.get("/a"), slow.get("/b")];
        let results = match FanOut::shared() {
            Ok(pool) => pool.run_for(req, calls, deadline),
            Err(err) => vec![Err(err)],
        };
        let errors: Vec<Option<String>> = results
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.message().to_string()))
            .collect();
        let _ = done_tx.send((begun.elapsed(), errors));
        "too late"
    }));
    let mut conn = Conn::open_with(server.addr, BOUND);
    conn.send(b"GET /ask HTTP/1.1\r\nHost: test\r\n\r\n");
    started.recv_timeout(BOUND).expect("the handler started");
    drop(conn);
    let (_, errors) = done
        .recv_timeout(BOUND)
        .expect("the handler returned soon after its client left, long before its 30 s deadline");
    assert_eq!(errors.len(), 2);
    for error in errors {
        let message = error.expect("an abandoned call is an error");
        assert!(
            message.contains("upstream \"slow\"") && message.contains("client went away"),
            "{message:?}"
        );
    }
}

/// `tinyserve serve` on `models/tests/multi`: the proxy under test, given its `--upstream`s.
pub(crate) fn serve_proxy() -> ServeBuilder {
    ServeChild::builder().models(repo("models/tests/multi"))
}

/// The proxy with `upstream` as the upstream `up`.
fn proxy_to(upstream: &TestServer) -> ServeChild {
    serve_proxy()
        .args(upstream_arg(format!("up={}", upstream.url("/v1"))))
        .start()
}

pub(crate) fn upstream_arg(spec: String) -> Vec<String> {
    vec!["--upstream".to_string(), spec]
}

/// Server-Sent Events read from a raw connection, event by event.
pub(crate) struct EventReader {
    conn: Conn,
}

impl EventReader {
    /// POSTs `body` to `path` and reads the response head, which must be a 200 event stream.
    pub(crate) fn open(addr: SocketAddr, path: &str, body: &Value) -> EventReader {
        let mut conn = Conn::open_with(addr, BOUND);
        conn.send(&post_json_request(path, body));
        conn.read_head();
        let head = format!("{} {:?}", conn.status, conn.headers);
        assert_eq!(
            (conn.version.as_str(), conn.status),
            ("HTTP/1.1", 200),
            "{head}"
        );
        assert!(
            conn.header("Content-Type")
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/event-stream")),
            "{head}"
        );
        assert_eq!(conn.framing, ResponseFraming::Chunked, "{head}");
        EventReader { conn }
    }

    /// The next event's text (comments skipped), or `None` at the end of the body. Panics when
    /// nothing arrives within [`BOUND`].
    pub(crate) fn next(&mut self) -> Option<String> {
        loop {
            let event = self.conn.next_event_text()?;
            let event = event.trim_end();
            if !event.starts_with(':') {
                return Some(event.to_string());
            }
        }
    }
}

pub(crate) fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[test]
fn the_proxy_passes_each_event_through_as_it_comes() {
    const EVENTS: usize = 5;
    let (ack_tx, acks) = mpsc::channel::<usize>();
    let acks = Arc::new(Mutex::new(acks));
    let (model_tx, models) = mpsc::channel();
    let upstream = TestServer::start(App::new().post(
        "/v1/chat/completions",
        move |req: &Request| -> tinyserve::Result<Sse> {
            let body: Value = req.json()?;
            let _ = model_tx.send(body["model"].clone());
            let acks = Arc::clone(&acks);
            Ok(Sse::new(move |events| {
                let acks = acks.lock().unwrap_or_else(|p| p.into_inner());
                for k in 0..EVENTS {
                    // Event k only once the client has event k-1: a proxy that buffers
                    // anything deadlocks here, and the test's read times out.
                    if k > 0 && acks.recv_timeout(BOUND) != Ok(k - 1) {
                        return Ok(());
                    }
                    events.send(Event::json(&json!({"k": k})))?;
                }
                events.send(Event::data("[DONE]"))
            }))
        },
    ));
    let proxy = proxy_to(&upstream);
    let mut events = EventReader::open(
        proxy.addr,
        "/v1/chat/completions",
        &chat("up/anything", true),
    );
    for k in 0..EVENTS {
        let event = events.next().expect("an event");
        assert_eq!(event, format!("data: {{\"k\":{k}}}"));
        ack_tx.send(k).expect("upstream waits for the ack");
    }
    assert_eq!(events.next().as_deref(), Some("data: [DONE]"));
    assert_eq!(events.next(), None, "the stream ends after [DONE]");
    assert_eq!(
        models
            .recv_timeout(BOUND)
            .expect("upstream saw the request"),
        "anything",
        "the upstream gets its own model name"
    );
}

#[test]
fn a_client_leaving_the_proxy_closes_the_upstream_stream() {
    let (ended_tx, ended) = mpsc::channel();
    let upstream =
        TestServer::start(App::new().post("/v1/chat/completions", move |_: &Request| {
            let ended_tx = ended_tx.clone();
            Sse::new(move |events| {
                // A long generation (~100 s): only a closed connection ends it early.
                for k in 0..5000 {
                    if let Err(gone) = events.send(Event::json(&json!({"k": k}))) {
                        let _ = ended_tx.send(k);
                        return Err(gone);
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                Ok(())
            })
        }));
    let proxy = proxy_to(&upstream);
    let mut events = EventReader::open(
        proxy.addr,
        "/v1/chat/completions",
        &chat("up/anything", true),
    );
    assert_eq!(events.next().as_deref(), Some("data: {\"k\":0}"));
    assert_eq!(events.next().as_deref(), Some("data: {\"k\":1}"));
    drop(events);
    let sent = ended
        .recv_timeout(BOUND)
        .expect("the upstream producer saw its client (the proxy) leave");
    assert!(sent >= 2, "{sent}");
}

#[test]
fn the_proxy_timeout_bounds_each_wait_not_the_whole_stream() {
    let timeout = Duration::from_secs(1);
    let (unstall, stall) = mpsc::channel::<()>();
    let stall = Arc::new(Mutex::new(stall));
    let upstream =
        TestServer::start(App::new().post("/v1/chat/completions", move |_: &Request| {
            let stall = Arc::clone(&stall);
            Sse::new(move |events| {
                // Three timeouts' worth of events, a tenth of a timeout apart...
                for k in 0..30 {
                    events.send(Event::json(&json!({"k": k})))?;
                    thread::sleep(timeout / 10);
                }
                // ...then silence, longer than the timeout.
                let _ = stall.lock().map(|stall| stall.recv_timeout(BOUND));
                events.send(Event::data("[DONE]"))
            })
        }));
    // In process, to give the upstream a short timeout (the CLI's is 30 s).
    let models = ModelRegistry::load_dir(repo("models/tests/multi")).expect("models");
    let up = Upstream::new("up", &upstream.url("/v1")).with_timeout(timeout);
    let app = protocol::mount_with_upstreams(App::new(), &models, &Readiness::new(true), &[up]);
    let proxy = TestServer::start(app);
    let mut events = EventReader::open(proxy.addr, "/v1/chat/completions", &chat("up/long", true));
    for k in 0..30 {
        let event = events.next().expect("an event");
        assert_eq!(event, format!("data: {{\"k\":{k}}}"), "the stream was cut");
    }
    let last = events
        .next()
        .expect("an error event for the stalled upstream");
    let last: Value = serde_json::from_str(last.trim_start_matches("data: ")).expect("JSON");
    assert_eq!(last["error"]["code"], "upstream_error", "{last}");
    let message = last["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("upstream \"up\"") && message.contains("timeout"),
        "{message:?}"
    );
    assert_eq!(events.next(), None, "the stream ends after the error");
    drop(unstall); // lets the upstream's producer finish, so its server stops at once
}

/// POSTs JSON through the proxy; status and JSON body.
pub(crate) fn post(url: &str, body: &Value) -> (u16, Value) {
    status_json(agent(BOUND).post(url).send_json(body))
}

/// Asserts a 502 in OpenAI's error shape with code `upstream_error`; returns its message.
pub(crate) fn bad_gateway((status, body): &(u16, Value)) -> &str {
    assert_eq!(*status, 502, "{body}");
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    assert_eq!(body["error"]["code"], "upstream_error", "{body}");
    body["error"]["message"].as_str().unwrap_or_default()
}

#[test]
fn upstream_failures_through_the_proxy() {
    let invalid = json!({"error": {"message": "temperature too high", "type": "invalid_request_error", "param": "temperature", "code": null}});
    let answer = invalid.clone();
    let upstream = TestServer::start(App::new().post(
        "/v1/chat/completions",
        move |req: &Request| -> tinyserve::Result<tinyserve::Response> {
            let body: Value = req.json()?;
            Ok(match body["model"].as_str() {
                Some("crash") => tinyserve::Response::text("model crashed").with_status(500),
                _ => tinyserve::Response::json(&answer).with_status(400),
            })
        },
    ));
    let port = closed_port();
    let mut args = upstream_arg(format!("up={}", upstream.url("/v1")));
    args.extend(upstream_arg(format!("dead=http://127.0.0.1:{port}/v1")));
    let proxy = serve_proxy().args(args).start();
    let url = proxy.url("/v1/chat/completions");

    let reply = post(&url, &chat("dead/gpt", false));
    let message = bad_gateway(&reply);
    assert!(
        message.contains("upstream \"dead\"") && message.contains("connection refused"),
        "{message:?}"
    );

    let reply = post(&url, &chat("up/crash", true));
    let message = bad_gateway(&reply);
    assert!(
        message.contains("upstream \"up\"")
            && message.contains("status 500")
            && !message.contains("model crashed")
            && !message.contains(&upstream.url("")),
        "the status and the upstream's name, not its body or address: {message:?}"
    );
    proxy.wait_for_stderr(BOUND, "the upstream's body and URL in the log", |log| {
        log.lines().any(|l| {
            l.contains(" WARN ")
                && l.contains("model crashed")
                && l.contains(&upstream.url("/v1/chat/completions"))
        })
    });

    let (status, body) = post(&url, &chat("up/picky", false));
    assert_eq!(status, 400, "a 4xx from the upstream is passed through");
    assert_eq!(body, invalid);
}

const KEY_VAR: &str = "TINYSERVE_OUTBOUND_TEST_KEY";

#[test]
fn the_proxy_sends_the_key_from_the_environment_and_lists_upstream_models() {
    let upstream = TestServer::start(
        App::new()
            .post("/v1/chat/completions", |req: &Request| {
                json!({"authorization": req.header("Authorization"), "model": req.json::<Value>().ok().map(|b| b["model"].clone())})
            })
            .get("/v1/models", |_| {
                json!({"object": "list", "data": [
                    {"id": "small", "object": "model", "owned_by": "them"},
                    {"id": "large", "object": "model", "owned_by": "them"}
                ]})
            }),
    );
    let spec = format!("up={},key-env={KEY_VAR}", upstream.url("/v1"));
    let proxy = serve_proxy()
        .args(upstream_arg(spec))
        .env(KEY_VAR, "sk-test-123")
        .start();

    let (status, body) = post(&proxy.url("/v1/chat/completions"), &chat("up/large", false));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"authorization": "Bearer sk-test-123", "model": "large"})
    );

    let (status, body) = status_json(agent(BOUND).get(proxy.url("/v1/models")).call());
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    for id in ["up/small", "up/large"] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    // The local models are plain ONNX models: /v1 does not run them, so it does not list them.
    for id in ["add_mul", "scale"] {
        assert!(!ids.contains(&id), "{id} listed in {ids:?}");
    }
}

#[test]
fn serve_refuses_an_upstream_whose_key_variable_is_unset() {
    let mut command: Command = tinyserve();
    command
        .args(["serve", "--port", "0", "--models"])
        .arg(repo("models/tests/multi"))
        .arg("--upstream")
        .arg(format!("x=http://127.0.0.1:9/v1,key-env={KEY_VAR}_UNSET"))
        .env_remove(format!("{KEY_VAR}_UNSET"));
    let out = assert_refuses_to_serve(command, "serve started without its key");
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains(&format!("{KEY_VAR}_UNSET")),
        "stderr: {}",
        out.stderr
    );
}
