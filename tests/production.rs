//! Production deployment as `deploy/` and the README describe it: tinyserve behind the repo's
//! own nginx configuration, the real binary's production flags (`--root-path`,
//! `--shutdown-grace` / `--drain-timeout` with SIGTERM, `--cors-origin`, `--api-key-env`,
//! `--log-format`) and `GET /metrics` read by the official Prometheus parser.
//!
//! The nginx under test runs the shipped file, `deploy/nginx/tinyserve.conf`: the test reads
//! it, substitutes the listen port and the two upstream addresses (failing if those lines ever
//! change shape, so the substitution cannot silently miss), and wraps it in the `events {}` /
//! `http {}` blocks and private temp paths a standalone nginx needs. Whatever the shipped file
//! says about the `/api/` location (prefix stripping, forwarding headers, request ids,
//! retries) is what these tests exercise.
//!
//! Ordering, not sleeps: every wait is a bounded poll for something observable (a log line, a
//! status, a refused connection), and the proxied stream is driven by the test's acks.

use std::io::ErrorKind as IoErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tinyserve::http::TrustedProxies;
use tinyserve::{App, Event, Request, Settings, Sse};

use crate::support::fixtures::fixture;
use crate::support::nginx::Nginx;
use crate::support::process::{run, tinyserve, wait_until};
use crate::support::python::python_env;
use crate::support::serve::{assert_refuses_to_serve, ServeChild};
use crate::support::wire::{Http, SseEvent};
use crate::support::{self, repo, send, TestServer};

/// Longest any single wait may take; reaching it means a hang (or a lost event) and fails.
const BOUND: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The shipped nginx configuration, run for real

/// The shipped config with `listen 80;` and the two `server 127.0.0.1:800x` upstream lines
/// pointed at the test's addresses. Panics if any of those lines is not there exactly once.
fn shipped_config(port: u16, upstreams: [SocketAddr; 2]) -> String {
    let path = repo("deploy/nginx/tinyserve.conf");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let substitute = |text: String, from: &str, to: &str| {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{} must contain {from:?} exactly once: the test substitutes it",
            path.display()
        );
        text.replacen(from, to, 1)
    };
    let text = substitute(text, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    let text = substitute(
        text,
        "server 127.0.0.1:8000 ",
        &format!("server {} ", upstreams[0]),
    );
    substitute(
        text,
        "server 127.0.0.1:8001 ",
        &format!("server {} ", upstreams[1]),
    )
}

/// nginx running `deploy/nginx/tinyserve.conf` with the test's ports (see [`Nginx::run`]) in
/// front of `upstreams`; `extra_http` goes into the wrapping `http {}` block (so it applies to
/// the shipped server without editing it). Returns once a request through this very nginx came
/// back.
///
/// `Nginx::start` runs a fixed, generic proxy configuration; these tests need the repo's file
/// instead: the same runner, another config.
pub(crate) fn shipped_nginx(upstreams: [SocketAddr; 2], extra_http: &str) -> Nginx {
    Nginx::run("production-nginx", BOUND, 1024, |dir, port, token| {
        format!(
            r#"    # Test instrumentation, outside the shipped file: which request id nginx generated and
    # which replica(s) each request went to (a retried request lists two).
    log_format tinyserve_test '$request_id $status "$request" '
                              'upstream=$upstream_addr upstream_status=$upstream_status';
    access_log {dir}/access.log tinyserve_test;
    add_header X-Test-Proxy "{token}" always;
{extra_http}
# ---- deploy/nginx/tinyserve.conf, with the test's listen port and upstream addresses ----
{shipped}
"#,
            dir = dir.display(),
            shipped = shipped_config(port, upstreams),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// `tinyserve serve --port 0 --workers 4 ARGS` on the default models folder (the bundled
/// `iris` and `bytelm`); stderr is collected line by line; killed on drop.
fn serve(args: &[&str]) -> ServeChild {
    ServeChild::builder().args(args).start()
}

/// A blocking HTTP client that reports every status as a response (no pooling across tests).
fn agent() -> ureq::Agent {
    support::agent(Duration::from_secs(60))
}

/// Status, headers (lower-case names) and body of one request through `agent`.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let reply = send(agent, method, url, headers, body.as_bytes());
    let text = reply.text();
    (reply.status, reply.headers, text)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A predict body for the first iris fixture case, and the label it must get.
fn iris_case() -> (String, Value) {
    let case = &fixture("iris")[0];
    (
        json!({"inputs": {"input": case["input"]}}).to_string(),
        case["label"].clone(),
    )
}

/// Access-log lines (human format) of successful iris predictions.
fn predict_lines(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("\"POST /models/iris/predict\" 200 "))
        .count()
}

// ---------------------------------------------------------------------------------------------
// 1. Client address, scheme, host, prefix and request id behind the shipped nginx

/// `GET /whoami`: what the request says about where it came from.
pub(crate) fn whoami_app(trusted: TrustedProxies) -> App {
    let mut settings = Settings::default();
    settings.trusted_proxies = trusted;
    settings.workers = 2;
    App::new()
        .with_settings(settings)
        .get("/whoami", |req: &Request| {
            json!({
                "peer": req.remote_addr().map(|a| a.ip().to_string()),
                "client": req.client_addr().map(|ip| ip.to_string()),
                "scheme": req.scheme(),
                "host": req.host(),
                "root_path": req.root_path(),
                "base_url": req.base_url(),
                "request_id": req.request_id(),
            })
        })
}

/// A `GET path` with extra header lines, on a fresh connection; the response and its JSON.
pub(crate) fn get_with(addr: SocketAddr, path: &str, extra: &str) -> (Http, Value) {
    let request = format!("GET {path} HTTP/1.1\r\n{extra}Connection: close\r\n\r\n");
    let mut http = Http::send(addr, request.as_bytes());
    let body = http.json();
    (http, body)
}

#[test]
fn behind_the_shipped_nginx_the_client_address_prefix_and_request_id_are_right() {
    // Telling the client from the proxy needs two loopback addresses. A client socket cannot
    // choose its source address with std (no bind-before-connect), so the kernel makes it
    // 127.0.0.1. nginx can: `proxy_bind 127.0.0.3` (added in the wrapping http block, not in
    // the shipped file) makes it reach tinyserve from 127.0.0.3, the only trusted proxy. Then:
    // - naively believing X-Forwarded-For's first hop would give the spoofed 6.6.6.6;
    // - ignoring the headers would give the proxy's 127.0.0.3;
    // - walking X-Forwarded-For ("6.6.6.6, 127.0.0.1") right to left, stopping at the first
    //   untrusted hop, gives the real client, 127.0.0.1. Only that passes.
    let server = TestServer::start(whoami_app(
        TrustedProxies::parse("127.0.0.3").expect("trusted list"),
    ));
    let nginx = shipped_nginx([server.addr, server.addr], "    proxy_bind 127.0.0.3;");

    let (http, who) = get_with(
        nginx.addr,
        "/api/whoami",
        "Host: models.example.com\r\nX-Forwarded-For: 6.6.6.6\r\n\
         X-Forwarded-Proto: https\r\nX-Forwarded-Prefix: /evil\r\n",
    );
    assert_eq!(http.status, 200, "{who}\n{}", nginx.log());
    assert_eq!(
        who["peer"], "127.0.0.3",
        "nginx connects from proxy_bind's address"
    );
    assert_eq!(
        who["client"], "127.0.0.1",
        "the real client, not the spoof: {who}"
    );
    assert_eq!(
        who["scheme"], "http",
        "nginx's X-Forwarded-Proto ($scheme) replaces the client's: {who}"
    );
    assert_eq!(who["host"], "models.example.com", "{who}");
    assert_eq!(
        who["root_path"], "/api",
        "from nginx's X-Forwarded-Prefix: {who}"
    );
    assert_eq!(who["base_url"], "http://models.example.com/api", "{who}");

    // The request id is nginx's $request_id (32 hex digits), which tinyserve saw and echoed.
    let id = who["request_id"].as_str().expect("request id").to_string();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "nginx's $request_id is 32 hex digits: {id:?}"
    );
    assert_eq!(
        http.header("X-Request-ID"),
        Some(id.as_str()),
        "tinyserve echoes the id it was given, and nginx passes it on"
    );
    // nginx writes its access line after sending the response: poll for it.
    let mut nginx_line = String::new();
    wait_until(BOUND, || {
        nginx_line = nginx
            .access_log()
            .lines()
            .find(|l| l.contains("/api/whoami"))
            .map(str::to_string)
            .unwrap_or_default();
        !nginx_line.is_empty()
    });
    assert!(
        nginx_line.starts_with(&format!("{id} 200 ")),
        "nginx logged the same id: {nginx_line:?}"
    );

    // Two requests, two ids.
    let (_, again) = get_with(nginx.addr, "/api/whoami", "Host: models.example.com\r\n");
    assert_ne!(again["request_id"], who["request_id"]);
    assert_eq!(again["client"], "127.0.0.1");

    // The same app reached directly (bypassing nginx) from the untrusted 127.0.0.1: every
    // forwarding header is ignored.
    let spoof = "Host: direct.example\r\nX-Forwarded-For: 6.6.6.6\r\n\
                 X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\
                 X-Forwarded-Prefix: /evil\r\nX-Request-ID: direct-1\r\n";
    let (http, who) = get_with(server.addr, "/whoami", spoof);
    assert_eq!(http.status, 200);
    assert_eq!(
        who,
        json!({"peer": "127.0.0.1", "client": "127.0.0.1", "scheme": "http",
               "host": "direct.example", "root_path": "", "base_url": "http://direct.example",
               "request_id": "direct-1"})
    );
    assert_eq!(http.header("X-Request-ID"), Some("direct-1"));

    // An app that trusts nobody ignores them as well.
    let untrusting = TestServer::start(whoami_app(TrustedProxies::none()));
    let (http, who) = get_with(untrusting.addr, "/whoami", spoof);
    assert_eq!(http.status, 200);
    assert_eq!(
        who,
        json!({"peer": "127.0.0.1", "client": "127.0.0.1", "scheme": "http",
               "host": "direct.example", "root_path": "", "base_url": "http://direct.example",
               "request_id": "direct-1"})
    );
}

// ---------------------------------------------------------------------------------------------
// 2. --root-path

#[test]
fn root_path_routes_with_and_without_the_prefix() {
    let server = serve(&["--root-path", "/api"]);
    let agent = agent();
    for path in ["/api/healthz", "/healthz"] {
        let (status, _, body) = call(&agent, "GET", &server.url(path), &[], "");
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"ok"}"#),
            "{path}"
        );
    }
    let (body, label) = iris_case();
    for path in ["/api/models/iris/predict", "/models/iris/predict"] {
        let (status, _, text) = call(
            &agent,
            "POST",
            &server.url(path),
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(status, 200, "{path}: {text}");
        let got: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(got["outputs"]["label"], label, "{path}");
    }
    // The prefix is a whole path segment: /apix is not /api.
    let (status, _, _) = call(&agent, "GET", &server.url("/apix/healthz"), &[], "");
    assert_eq!(status, 404);
    // Metrics label both spellings with the route template.
    let (_, _, metrics) = call(&agent, "GET", &server.url("/api/metrics"), &[], "");
    assert!(
        metrics.contains(
            "tinyserve_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2\n"
        ),
        "{metrics}"
    );

    // What handlers see: the library with the same setting.
    let mut settings = Settings::default();
    settings.root_path = "/api".to_string();
    settings.workers = 2;
    let app = App::new().with_settings(settings).get("/whoami", |req: &Request| {
        json!({"path": req.path(), "root_path": req.root_path(), "base_url": req.base_url()})
    });
    let lib = TestServer::start(app);
    for path in ["/api/whoami", "/whoami"] {
        let (http, who) = get_with(lib.addr, path, "Host: models.example.com\r\n");
        assert_eq!(http.status, 200, "{path}");
        assert_eq!(
            who,
            json!({"path": "/whoami", "root_path": "/api",
                   "base_url": "http://models.example.com/api"}),
            "{path}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 3. SSE through the shipped nginx

#[test]
fn sse_passes_the_shipped_nginx_event_by_event() {
    const EVENTS: usize = 5;
    // The producer sends event k only after the test has read event k-1 and acked it: an nginx
    // that buffered the stream would never deliver event k-1, and the read would time out.
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let acks = Arc::new(Mutex::new(Some(ack_rx)));
    let mut settings = Settings::default();
    settings.workers = 2;
    let app = App::new()
        .with_settings(settings)
        .get("/events", move |_: &Request| {
            let acks = acks.lock().ok().and_then(|mut a| a.take());
            Sse::new(move |events| {
                let Some(acks) = acks else {
                    return events.send(Event::data("only one stream per test"));
                };
                for k in 0..EVENTS {
                    if k > 0 && acks.recv_timeout(Duration::from_secs(60)).is_err() {
                        return Ok(()); // the test gave up
                    }
                    events.send(Event::data(format!("event {k}")).with_id(k.to_string()))?;
                }
                Ok(())
            })
        });
    let server = TestServer::start(app);
    let nginx = shipped_nginx([server.addr, server.addr], "");

    let mut http = Http::get(nginx.addr, "/api/events");
    assert_eq!(http.status, 200, "{}", nginx.log());
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    for k in 0..EVENTS {
        let event = http.next_data_event().expect("another event");
        assert_eq!(
            event,
            SseEvent {
                id: Some(k.to_string()),
                data: Some(format!("event {k}")),
                ..SseEvent::default()
            }
        );
        if k + 1 < EVENTS {
            ack_tx.send(()).expect("the producer waits for the ack");
        }
    }
    assert!(http.next_data_event().is_none(), "the stream ends");
}

// ---------------------------------------------------------------------------------------------
// 4. A rolling restart behind the shipped nginx loses nothing

/// Sets the flag when dropped: load threads stop even when the test panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn sigterm_to_one_replica_behind_the_shipped_nginx_loses_no_request() {
    const CLIENTS: usize = 8;
    let args = ["--shutdown-grace", "1", "--drain-timeout", "10"];
    let mut first = serve(&args);
    let mut second = serve(&args);
    let nginx = shipped_nginx([first.addr, second.addr], "");

    let cases: Arc<Vec<(String, Value)>> = Arc::new(
        fixture("iris")
            .iter()
            .map(|c| {
                let body = json!({"inputs": {"input": c["input"]}}).to_string();
                (body, c["label"].clone())
            })
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(Arc::clone(&stop));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = format!("http://{}/api/models/iris/predict", nginx.addr);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (cases, stop, ok, failures, url) = (
                Arc::clone(&cases),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failures),
                url.clone(),
            );
            thread::spawn(move || {
                // One agent per client: a keep-alive connection to nginx, reused.
                let agent = agent();
                let mut i = n;
                while !stop.load(Ordering::SeqCst) {
                    let (body, label) = &cases[i % cases.len()];
                    i += 1;
                    let outcome = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(body.as_bytes());
                    let failure = match outcome {
                        Ok(mut response) => {
                            let status = response.status().as_u16();
                            let text = response.body_mut().read_to_string().unwrap_or_default();
                            let got = serde_json::from_str::<Value>(&text)
                                .map(|v| v["outputs"]["label"].clone())
                                .unwrap_or(Value::Null);
                            if status == 200 && &got == label {
                                ok.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            format!("status {status}, body {text}")
                        }
                        Err(err) => format!("transport error: {err}"),
                    };
                    if let Ok(mut failures) = failures.lock() {
                        failures.push(failure);
                    }
                }
            })
        })
        .collect();

    // Both replicas take traffic before the signal.
    let started = Instant::now();
    assert!(
        wait_until(BOUND, || predict_lines(&first.stderr()) >= 500
            && predict_lines(&second.stderr()) >= 500),
        "both replicas should serve requests; first:\n{}\nsecond:\n{}\nnginx:\n{}",
        first.stderr(),
        second.stderr(),
        nginx.log()
    );
    first.terminate();
    let at_signal = ok.load(Ordering::SeqCst);
    let status = first.wait_exit(BOUND);
    let at_exit = ok.load(Ordering::SeqCst);
    // Keep the load on after the replica is gone: its share now fails over to the other.
    assert!(
        wait_until(BOUND, || ok.load(Ordering::SeqCst) >= at_exit + 1500),
        "the surviving replica should take all the traffic"
    );
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("client thread");
    }
    let elapsed = started.elapsed();
    // Stop the survivor the same way, so its access log is complete.
    second.terminate();
    let second_status = second.wait_exit(BOUND);

    let total = ok.load(Ordering::SeqCst);
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    let (first_log, second_log) = (first.stderr(), second.stderr());
    let (served_first, served_second) = (predict_lines(&first_log), predict_lines(&second_log));
    let after_signal = first_log
        .split_once("signal 15")
        .map_or(0, |(_, after)| predict_lines(after));
    let access = nginx.access_log();
    let retried = access
        .lines()
        .filter(|l| l.contains("/api/models/iris/predict") && l.contains(", "))
        .count();
    println!(
        "zero-loss run: {CLIENTS} clients, {total} requests OK and {} failed in {elapsed:.1?} \
         ({at_signal} before SIGTERM, {} until the replica exited, {} after); \
         terminated replica served {served_first} ({after_signal} after the signal), \
         surviving replica served {served_second}; nginx retried {retried} on the other replica",
        failures.len(),
        at_exit - at_signal,
        total - at_exit,
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed; first ones: {:#?}\nnginx error log:\n{}",
        failures.len(),
        total + failures.len(),
        &failures[..failures.len().min(10)],
        nginx.log()
    );
    assert!(
        status.success(),
        "the terminated replica exits 0, got {status}; stderr tail:\n{}",
        &first_log[first_log.len().saturating_sub(2000)..]
    );
    assert!(
        second_status.success(),
        "the survivor exits 0 too: {second_status}"
    );
    assert!(served_first > 0 && served_second > 0);
    assert!(
        served_first + served_second >= total,
        "every OK answer came from a replica: {served_first} + {served_second} < {total}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. SIGTERM during a long stream

#[test]
fn sigterm_lets_a_long_stream_finish_while_readiness_fails_and_the_listener_closes() {
    const MAX_TOKENS: u64 = 3000;
    let mut server = serve(&["--shutdown-grace", "2", "--drain-timeout", "60"]);
    let request = json!({
        "model": "bytelm", "prompt": "Once upon a time", "max_tokens": MAX_TOKENS,
        "temperature": 0, "stream": true, "stream_options": {"include_usage": true},
    });
    let mut http = Http::post_json(server.addr, "/v1/completions", &request);
    assert_eq!(http.status, 200, "{}", server.stderr());
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    let first = http.next_data_event().expect("a first event");
    assert_eq!(first.json()["object"], "text_completion");

    // Read the rest on another thread, counting events as they arrive.
    let read = Arc::new(AtomicUsize::new(1));
    let reader = {
        let read = Arc::clone(&read);
        thread::spawn(move || {
            let mut events = vec![first];
            while let Some(event) = http.next_data_event() {
                events.push(event);
                read.fetch_add(1, Ordering::SeqCst);
            }
            events
        })
    };

    server.terminate();
    // During the grace period: not ready, still alive, still serving.
    let mut readyz = (0, Value::Null);
    assert!(
        wait_until(BOUND, || {
            let mut http = Http::get(server.addr, "/readyz");
            readyz = (http.status, http.json());
            readyz.0 == 503
        }),
        "/readyz should turn 503 after SIGTERM: last {readyz:?}"
    );
    assert_eq!(readyz.1["code"], "not_ready", "{readyz:?}");
    let mut healthz = Http::get(server.addr, "/healthz");
    assert_eq!(healthz.status, 200, "alive during the grace period");
    assert_eq!(healthz.json(), json!({"status": "ok"}));

    // After the grace period the listener closes: new connections are refused, while the
    // stream, still being generated, goes on.
    let mut last_error = String::new();
    assert!(
        wait_until(BOUND, || match TcpStream::connect(server.addr) {
            Ok(_) => false,
            Err(err) => {
                last_error = format!("{err}");
                err.kind() == IoErrorKind::ConnectionRefused
            }
        }),
        "new connections should be refused once the listener closes (last: {last_error:?})"
    );
    let read_at_close = read.load(Ordering::SeqCst);
    assert!(
        matches!(server.try_wait(), Ok(None)),
        "the process is still draining when the listener has closed"
    );

    let events = reader.join().expect("stream reader");
    let total = events.len();
    assert!(
        total > read_at_close,
        "the stream went on after the listener closed ({read_at_close} events by then, \
         {total} in all): generation must outlast the 2 s grace for this test to mean anything"
    );
    assert_eq!(
        events.last().and_then(|e| e.data.as_deref()),
        Some("[DONE]"),
        "the stream completes"
    );
    let usage = events[total - 2].json();
    assert_eq!(
        usage["usage"]["completion_tokens"], MAX_TOKENS,
        "every token was generated: {usage}"
    );
    assert_eq!(
        events[total - 3].json()["choices"][0]["finish_reason"],
        "length"
    );
    let status = server.wait_exit(BOUND);
    assert!(
        status.success(),
        "exit 0 after draining, got {status}; stderr:\n{}",
        server.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// 6. /metrics, parsed by the official Prometheus client

#[test]
fn metrics_parse_with_prometheus_client_and_count_the_requests_made() {
    const HEALTHZ: usize = 5;
    const PREDICTS: usize = 3;
    let python = python_env();
    let server = serve(&[]);
    for _ in 0..HEALTHZ {
        let mut http = Http::get(server.addr, "/healthz");
        assert_eq!(http.status, 200);
        http.read_to_end();
    }
    let case = &fixture("iris")[0];
    for _ in 0..PREDICTS {
        let body = json!({"inputs": {"input": case["input"]}});
        let mut http = Http::post_json(server.addr, "/models/iris/predict", &body);
        assert_eq!(http.status, 200);
        assert_eq!(http.json()["outputs"]["label"], case["label"]);
    }
    let mut http = Http::get(server.addr, "/no/such/path");
    assert_eq!(http.status, 404);
    http.read_to_end();

    let mut command = Command::new(&python);
    command
        .arg(repo("tests/python/metrics_check.py"))
        .args(["--url", &server.url("/metrics")]);
    let out = run(command, Duration::from_secs(120));
    assert!(
        out.success,
        "metrics_check.py failed (exit {:?}):\n{}\n{}",
        out.code, out.stdout, out.stderr
    );
    let parsed: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|err| {
        panic!(
            "metrics_check.py output is not JSON ({err}): {}",
            out.stdout
        )
    });
    assert!(
        parsed["content_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{}",
        parsed["content_type"]
    );
    let families = parsed["families"].as_array().expect("families");
    let family_type = |name: &str| {
        families
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["type"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(
        family_type("tinyserve_requests").as_deref(),
        Some("counter")
    );
    assert_eq!(
        family_type("tinyserve_request_duration_seconds").as_deref(),
        Some("histogram")
    );
    assert_eq!(
        family_type("tinyserve_inferences").as_deref(),
        Some("counter")
    );
    assert_eq!(
        family_type("process_resident_memory_bytes").as_deref(),
        Some("gauge")
    );
    // The value of the one sample called `name` with exactly `labels`.
    let sample = |name: &str, labels: Value| -> f64 {
        let found: Vec<f64> = families
            .iter()
            .flat_map(|f| f["samples"].as_array().cloned().unwrap_or_default())
            .filter(|s| s["name"] == name && s["labels"] == labels)
            .filter_map(|s| s["value"].as_f64())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one sample {name}{labels}; parsed: {}",
            out.stdout
        );
        found[0]
    };
    let requests = |method: &str, route: &str, status: &str| {
        sample(
            "tinyserve_requests_total",
            json!({"method": method, "route": route, "status": status}),
        )
    };
    assert_eq!(requests("GET", "/healthz", "200"), HEALTHZ as f64);
    assert_eq!(
        requests("POST", "/models/<name>/predict", "200"),
        PREDICTS as f64
    );
    assert_eq!(requests("GET", "(unmatched)", "404"), 1.0);
    assert_eq!(
        sample("tinyserve_inferences_total", json!({"model": "iris"})),
        PREDICTS as f64
    );
    let route = json!({"route": "/models/<name>/predict"});
    assert_eq!(
        sample("tinyserve_request_duration_seconds_count", route.clone()),
        PREDICTS as f64
    );
    assert_eq!(
        sample(
            "tinyserve_request_duration_seconds_bucket",
            json!({"route": "/models/<name>/predict", "le": "+Inf"}),
        ),
        PREDICTS as f64
    );
    assert!(sample("tinyserve_request_duration_seconds_sum", route) > 0.0);
    assert!(sample("process_resident_memory_bytes", json!({})) > 0.0);
}

// ---------------------------------------------------------------------------------------------
// 7. CORS and the API key

#[test]
fn cors_and_api_key_guard_the_binary() {
    const KEY: &str = "ts-secret-6f1d2c9a";
    let server = ServeChild::builder()
        .args([
            "--cors-origin",
            "http://demo.local",
            "--api-key-env",
            "TS_KEY",
        ])
        .env("TS_KEY", KEY)
        .start();
    let agent = agent();
    let url = server.url("/models/iris/predict");
    let (body, label) = iris_case();
    let json_type = ("Content-Type", "application/json");
    let bearer = format!("Bearer {KEY}");

    // A browser's preflight carries no credentials; it is answered before the key check.
    let (status, headers, _) = call(
        &agent,
        "OPTIONS",
        &url,
        &[
            ("Origin", "http://demo.local"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        "",
    );
    assert_eq!(status, 204);
    assert_eq!(
        header(&headers, "Access-Control-Allow-Origin"),
        Some("http://demo.local")
    );
    assert!(header(&headers, "Access-Control-Allow-Methods").is_some_and(|m| m.contains("POST")));
    assert!(header(&headers, "Access-Control-Allow-Headers")
        .is_some_and(|h| h.to_ascii_lowercase().contains("authorization")));

    // The allowed origin gets the header, on success and on a 401 alike (so the page can
    // read the error); another origin gets none.
    let auth = [
        ("Origin", "http://demo.local"),
        ("Authorization", bearer.as_str()),
        json_type,
    ];
    let (status, headers, text) = call(&agent, "POST", &url, &auth, &body);
    assert_eq!(status, 200, "{text}");
    let got: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(got["outputs"]["label"], label);
    assert_eq!(
        header(&headers, "Access-Control-Allow-Origin"),
        Some("http://demo.local")
    );
    let (status, headers, _) = call(
        &agent,
        "GET",
        &server.url("/models"),
        &[("Origin", "http://demo.local")],
        "",
    );
    assert_eq!(status, 401);
    assert_eq!(
        header(&headers, "Access-Control-Allow-Origin"),
        Some("http://demo.local")
    );
    let (status, headers, _) = call(
        &agent,
        "GET",
        &server.url("/models"),
        &[("Origin", "http://evil.local"), ("Authorization", &bearer)],
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "Access-Control-Allow-Origin"), None);
    let (status, headers, _) = call(
        &agent,
        "OPTIONS",
        &url,
        &[
            ("Origin", "http://evil.local"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    );
    assert_ne!(status, 204, "no preflight approval for another origin");
    assert_eq!(header(&headers, "Access-Control-Allow-Origin"), None);

    // The key: missing or wrong is 401 with a Bearer challenge; right is 200.
    let wrong = "Bearer ts-wrong-key-0000";
    for headers in [vec![json_type], vec![json_type, ("Authorization", wrong)]] {
        let (status, got_headers, text) = call(&agent, "POST", &url, &headers, &body);
        assert_eq!(status, 401, "{headers:?}: {text}");
        assert_eq!(header(&got_headers, "WWW-Authenticate"), Some("Bearer"));
        let error: Value = serde_json::from_str(&text).expect("JSON error");
        assert_eq!(error["code"], "unauthorized", "{text}");
    }
    let (status, _, text) = call(
        &agent,
        "POST",
        &url,
        &[json_type, ("Authorization", &bearer)],
        &body,
    );
    assert_eq!(status, 200, "{text}");
    // The probes stay public: orchestrators have no key.
    for path in ["/healthz", "/readyz"] {
        let (status, _, _) = call(&agent, "GET", &server.url(path), &[], "");
        assert_eq!(status, 200, "{path} without a key");
    }

    // The access log recorded those requests, and never a key.
    let stderr = server.wait_for_stderr(BOUND, "the access line of GET /readyz", |t| {
        t.contains("\"GET /readyz\" 200")
    });
    assert!(
        stderr.contains("\"POST /models/iris/predict\" 401"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(KEY),
        "the key leaked into stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("ts-wrong-key-0000"),
        "a presented key leaked into stderr:\n{stderr}"
    );

    // The variable unset: serve refuses to start, naming it.
    let mut command = tinyserve();
    command
        .args([
            "serve",
            "--port",
            "0",
            "--api-key-env",
            "TS_KEY_NOT_SET_ANYWHERE",
        ])
        .env_remove("TS_KEY_NOT_SET_ANYWHERE");
    let out = assert_refuses_to_serve(command, "serve started without its key");
    assert!(
        out.stderr.contains("TS_KEY_NOT_SET_ANYWHERE"),
        "the error names the variable: {}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Access log formats

#[test]
fn access_log_json_and_human_carry_the_request_id_and_model() {
    let server = serve(&["--log-format", "json"]);
    let agent = agent();
    let (body, _) = iris_case();
    let (status, _, health_body) = call(
        &agent,
        "GET",
        &server.url("/healthz"),
        &[("X-Request-ID", "prod-json-healthz-1")],
        "",
    );
    assert_eq!(status, 200);
    let (status, headers, predict_body) = call(
        &agent,
        "POST",
        &server.url("/models/iris/predict"),
        &[
            ("X-Request-ID", "prod-json-predict-2"),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "X-Request-ID"),
        Some("prod-json-predict-2")
    );

    let stderr = server.wait_for_stderr(BOUND, "both access lines", |t| {
        t.contains("prod-json-healthz-1") && t.contains("prod-json-predict-2")
    });
    let line_of = |id: &str| -> Value {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(id)).collect();
        assert_eq!(lines.len(), 1, "one line per request for {id}:\n{stderr}");
        serde_json::from_str(lines[0])
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {}", lines[0]))
    };
    let health = line_of("prod-json-healthz-1");
    let predict = line_of("prod-json-predict-2");
    for (line, method, path, bytes, model) in [
        (&health, "GET", "/healthz", health_body.len(), Value::Null),
        (
            &predict,
            "POST",
            "/models/iris/predict",
            predict_body.len(),
            json!("iris"),
        ),
    ] {
        let time = line["time"].as_str().unwrap_or_default();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "RFC 3339 UTC time: {line}"
        );
        assert_eq!(line["client"], "127.0.0.1", "{line}");
        assert_eq!(line["method"], method, "{line}");
        assert_eq!(line["path"], path, "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["bytes"], bytes, "{line}");
        assert!(
            line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{line}"
        );
        assert_eq!(line["model"], model, "{line}");
    }
    assert_eq!(health["request_id"], "prod-json-healthz-1");
    assert_eq!(predict["request_id"], "prod-json-predict-2");

    // The human format, the default.
    let server = serve(&[]);
    let (status, _, _) = call(
        &agent,
        "POST",
        &server.url("/models/iris/predict"),
        &[
            ("X-Request-ID", "prod-human-3"),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(status, 200);
    let stderr = server.wait_for_stderr(BOUND, "the access line", |t| t.contains("prod-human-3"));
    let line = stderr
        .lines()
        .find(|l| l.contains("prod-human-3"))
        .unwrap_or_default();
    assert!(
        line.contains("\"POST /models/iris/predict\" 200 ")
            && line.contains("rid=prod-human-3")
            && line.contains("model=iris"),
        "{line}"
    );
}
