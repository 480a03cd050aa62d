//! Outbound calls in the real world (issue #21): HTTPS upstreams with certificates made at
//! test time (rcgen) behind a real nginx terminating TLS, trusted through `SSL_CERT_FILE` or a
//! per-upstream `ca=FILE`; certificates from another CA, for another host, expired; Debian's
//! tinyproxy as the forward proxy of `HTTPS_PROXY` (its log shows each `CONNECT`), `NO_PROXY`
//! and proxy credentials; and hostile upstreams (raw sockets) whose answers must end in a
//! 502/504 within a limit or deadline, with the server still serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tinyserve::{App, Error, ErrorKind, Event, FanOut, Request, Response, Sse, Upstream};

use crate::logging::Example;
use crate::openai::{assert_proxied_identically, run_openai_check};
use crate::outbound::{bad_gateway, chat, post, serve_proxy, upstream_arg, EventReader, BOUND};
use crate::support::process::build_example;
use crate::support::serve::ServeChild;
use crate::support::tls::{Ca, HttpsFront, ServerCert, Tinyproxy};
use crate::support::wire::Conn;
use crate::support::TestServer;

/// A CA and a certificate it signed for 127.0.0.1 and localhost.
fn trusted() -> (Ca, ServerCert) {
    let ca = Ca::new("trusted");
    let cert = ca.issue("server", &["127.0.0.1", "localhost"], false);
    (ca, cert)
}

/// An OpenAI-compatible upstream: `GET /v1/models`, and chat completions answering plain or
/// streamed (three events, then `[DONE]`); model `html` gets a 404 HTML page, model `json` a
/// 429 in OpenAI's shape.
fn llm_upstream() -> TestServer {
    TestServer::start(
        App::new()
            .get("/v1/models", |_| {
                Response::json(&json!({"object": "list", "data": [{"id": "m", "object": "model"}]}))
            })
            .post("/v1/chat/completions", |req: &Request| -> tinyserve::Result<Response> {
                let body: Value = req.json()?;
                Ok(match (body["model"].as_str(), body["stream"].as_bool()) {
                    (Some("html"), _) => Response::new(404, "text/html", "<html><body>Not Found: nginx/1.2 at 10.0.0.7</body></html>"),
                    (Some("json"), _) => Response::json(&json!({"error": {"message": "rate limited", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded", "internal": "secret"}})).with_status(429),
                    (_, Some(true)) => Sse::new(|events| {
                        for k in 0..3 {
                            events.send(Event::json(&json!({"k": k})))?;
                        }
                        events.send(Event::data("[DONE]"))
                    })
                    .into_response(),
                    _ => Response::json(&json!({"choices": [{"message": {"role": "assistant", "content": "hello"}}]})),
                })
            })
            .with_workers(16),
    )
}

fn addr_of(server: &TestServer) -> String {
    server.addr.to_string()
}

#[test]
fn the_openai_client_streams_through_the_proxy_to_an_https_upstream_trusted_by_ssl_cert_file() {
    let (ca, cert) = trusted();
    let direct = ServeChild::start(&[]);
    let front = HttpsFront::start(direct.base().trim_start_matches("http://"), &cert);
    let proxy = ServeChild::builder()
        .models(crate::support::repo("models"))
        .args(upstream_arg(format!("local={}", front.url("/v1"))))
        .env("SSL_CERT_FILE", ca.pem())
        .start();
    let stdout = run_openai_check(&[direct.base(), proxy.base()], &|| {
        format!(
            "direct:\n{}\nproxy:\n{}\nnginx:\n{}",
            direct.stderr(),
            proxy.stderr(),
            front.nginx.log()
        )
    });
    assert_proxied_identically(&stdout);
    let log = proxy.wait_for_stderr(BOUND, "the start-up probe of the upstream", |log| {
        log.contains("answered GET /models")
    });
    assert!(
        !log.contains("host not found") && !log.contains("panicked"),
        "{log}"
    );
}

#[test]
fn the_proxy_trusts_a_private_ca_given_with_ca_file_and_relays_only_json_errors() {
    let (ca, cert) = trusted();
    let upstream = llm_upstream();
    let front = HttpsFront::start(&addr_of(&upstream), &cert);
    // A host name this time: looked up within the call's deadline, and no false warning.
    let url = format!("https://localhost:{}/v1", front.https.port());
    let proxy = serve_proxy()
        .args(upstream_arg(format!("up={url},ca={}", ca.pem().display())))
        .start();
    let (status, body) = post(&proxy.url("/v1/chat/completions"), &chat("up/m", false));
    assert_eq!(
        (status, &body["choices"][0]["message"]["content"]),
        (200, &json!("hello")),
        "{body}"
    );
    let mut events = EventReader::open(proxy.addr, "/v1/chat/completions", &chat("up/m", true));
    for k in 0..3 {
        assert_eq!(events.next(), Some(format!("data: {{\"k\":{k}}}")));
    }
    assert_eq!(events.next().as_deref(), Some("data: [DONE]"));
    assert_eq!(events.next(), None);

    // A 4xx keeps its status; an HTML page never reaches the client, JSON is re-encoded.
    let (status, body) = post(&proxy.url("/v1/chat/completions"), &chat("up/html", false));
    assert_eq!(status, 404, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(message, "upstream \"up\" answered status 404", "{body}");
    assert!(!body.to_string().contains("nginx/1.2"), "{body}");
    let (status, body) = post(&proxy.url("/v1/chat/completions"), &chat("up/json", false));
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        body,
        json!({"error": {"message": "rate limited", "type": "rate_limit_error", "param": null, "code": "rate_limit_exceeded"}})
    );
    let log = proxy.wait_for_stderr(BOUND, "the start-up probe", |log| {
        log.contains("answered GET /models: 1 models")
    });
    assert!(
        !log.contains("host not found") && !log.contains("panicked"),
        "{log}"
    );
}

#[test]
fn a_fan_out_app_trusting_ssl_cert_file_makes_one_handshake_per_kept_alive_connection() {
    let (ca, cert) = trusted();
    let upstream = crate::outbound::echo_upstream();
    let front = HttpsFront::start(&addr_of(&upstream), &cert);
    let exe = build_example("fanout_https");
    let urls = vec![front.url(""); 3].join(",");
    let mut child = Example(
        Command::new(&exe)
            .env("PORT", "0")
            .env("UPSTREAMS", &urls)
            .env("SSL_CERT_FILE", ca.pem())
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("start {exe}: {err}")),
    );
    let addr = listening_addr(&mut child);
    let rounds = 10;
    let mut handshakes = 0;
    for round in 0..rounds {
        let mut http = Conn::get(addr, &format!("/all?path=/echo/{round}"));
        let answer = http.json();
        assert_eq!(http.status, 200, "{answer}");
        for reply in answer["answers"].as_array().into_iter().flatten() {
            assert_eq!(reply["status"], 200, "{answer}");
            assert_eq!(reply["body"], round.to_string(), "{answer}");
        }
        handshakes = answer["tls_handshakes"].as_u64().unwrap_or(u64::MAX);
    }
    // 3 calls at once need 3 connections; every later round reuses them.
    assert!(
        handshakes <= 3,
        "{handshakes} TLS handshakes for {} calls",
        3 * rounds
    );
    let log = front.nginx.access_log();
    let mut connections: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("GET /echo/"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        log.lines().filter(|l| l.contains("GET /echo/")).count(),
        3 * rounds,
        "{log}"
    );
    connections.sort_unstable();
    connections.dedup();
    assert!(
        connections.len() <= 3,
        "nginx saw {} connections:\n{log}",
        connections.len()
    );
}

/// The `listening on http://ADDR` line of an example.
fn listening_addr(child: &mut Example) -> SocketAddr {
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).map(|n| n == 1).unwrap_or(false) && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    line.strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not `listening on http://ADDR`: {line:?}"))
}

/// The error of a single call to `upstream`.
fn call_error(upstream: &Upstream) -> Error {
    match upstream.get("/echo/1").send_within(BOUND) {
        Ok(reply) => panic!("expected an error, got {} {}", reply.status, reply.text()),
        Err(err) => err,
    }
}

#[test]
fn certificates_that_must_not_be_trusted_are_502s_naming_the_cause() {
    let (ca, _) = trusted();
    let upstream = crate::outbound::echo_upstream();
    let other = Ca::new("other");
    let cases = [
        (
            other.issue("stranger", &["127.0.0.1"], false),
            "certificate for 127.0.0.1 is signed by an unknown issuer",
        ),
        (
            ca.issue("elsewhere", &["other.test"], false),
            "hostname mismatch: certificate is not valid for 127.0.0.1",
        ),
        (
            ca.issue("expired", &["127.0.0.1"], true),
            "certificate for 127.0.0.1 has expired",
        ),
    ];
    for (cert, cause) in cases {
        let front = HttpsFront::start(&addr_of(&upstream), &cert);
        let secure = Upstream::new("secure", &front.url(""))
            .with_ca_file(ca.pem())
            .expect("the CA file loads");
        let err = call_error(&secure);
        assert_eq!(err.kind(), ErrorKind::BadGateway, "{err}");
        assert_eq!(err.status(), 502);
        assert_eq!(err.message(), format!("upstream \"secure\": {cause}"));
        let results = FanOut::shared()
            .expect("fan-out")
            .run(vec![secure.get("/echo/1")], BOUND);
        let message = results[0].as_ref().err().map(|e| e.message().to_string());
        assert_eq!(message, Some(format!("upstream \"secure\": {cause}")));
    }
    // Trusted, the same upstream answers; without the CA file, the platform's roots do not
    // know the test CA.
    let cert = ca.issue("good", &["127.0.0.1"], false);
    let front = HttpsFront::start(&addr_of(&upstream), &cert);
    let good = Upstream::new("secure", &front.url(""))
        .with_ca_file(ca.pem())
        .expect("CA");
    let reply = good
        .get("/echo/7")
        .send_within(BOUND)
        .expect("a trusted answer");
    assert_eq!(reply.text(), "7");
    let err = call_error(&Upstream::new("secure", &front.url("")));
    assert!(
        err.message().contains("signed by an unknown issuer"),
        "{err}"
    );
    // An unreadable CA file is refused when the upstream is made, naming the file.
    let err = Upstream::new("secure", &front.url(""))
        .with_ca_file("/nonexistent/ca.pem")
        .err();
    let message = err.map(|e| e.message().to_string()).unwrap_or_default();
    assert!(
        message.starts_with("CA file /nonexistent/ca.pem: "),
        "{message}"
    );
}

#[test]
fn serve_refuses_an_unreadable_ca_file_or_a_bad_upstream_url_in_one_line() {
    for (spec, needle) in [
        (
            "up=https://127.0.0.1:1/v1,ca=/nonexistent/ca.pem",
            "CA file /nonexistent/ca.pem",
        ),
        ("up=ftp://127.0.0.1/v1", "the scheme must be http or https"),
        ("up=https:///v1", "expected a host"),
    ] {
        let mut command = crate::support::process::tinyserve();
        command
            .args(["serve", "--port", "0", "--models"])
            .arg(crate::support::repo("models/tests/multi"));
        command.args(["--upstream", spec]);
        let out = crate::support::process::run(command, BOUND);
        assert!(!out.success, "{spec}: {}", out.report());
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{spec}: {}", out.report());
        assert!(
            lines[0].starts_with("error: --upstream ") && lines[0].contains(needle),
            "{}",
            out.report()
        );
    }
}

#[test]
fn https_proxy_tunnels_through_a_real_forward_proxy_and_no_proxy_bypasses_it() {
    let (ca, cert) = trusted();
    let upstream = llm_upstream();
    let front = HttpsFront::start(&addr_of(&upstream), &cert);
    let target = front.https.to_string();
    let spec = format!("up={}", front.url("/v1"));
    let tinyproxy = Tinyproxy::start("");
    let through = serve_proxy()
        .args(upstream_arg(spec.clone()))
        .env("SSL_CERT_FILE", ca.pem())
        .env("HTTPS_PROXY", tinyproxy.url())
        .env("NO_PROXY", "example.com")
        .start();
    let (status, body) = post(&through.url("/v1/chat/completions"), &chat("up/m", false));
    assert_eq!(status, 200, "{body}\n{}", through.stderr());
    let tunnelled = tinyproxy.connects_to(&target);
    assert!(
        tunnelled >= 1,
        "no CONNECT {target} in tinyproxy's log:\n{}",
        tinyproxy.log()
    );

    let direct = serve_proxy()
        .args(upstream_arg(spec.clone()))
        .env("SSL_CERT_FILE", ca.pem())
        .env("https_proxy", tinyproxy.url())
        .env("no_proxy", "localhost,127.0.0.1")
        .start();
    let (status, body) = post(&direct.url("/v1/chat/completions"), &chat("up/m", false));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        tinyproxy.connects_to(&target),
        tunnelled,
        "NO_PROXY names the host: no tunnel"
    );

    // A proxy that refuses the tunnel: a 502 naming the proxy and its answer.
    let strict = Tinyproxy::start("ConnectPort 443");
    let refused = serve_proxy()
        .args(upstream_arg(spec))
        .env("SSL_CERT_FILE", ca.pem())
        .env("HTTPS_PROXY", strict.url())
        .start();
    let reply = post(&refused.url("/v1/chat/completions"), &chat("up/m", false));
    let message = bad_gateway(&reply);
    let expected = format!(
        "upstream \"up\": proxy {}: refused the tunnel to {target} (status 403)",
        strict.addr
    );
    assert_eq!(message, expected);
}

#[test]
fn proxy_credentials_come_from_the_proxy_url() {
    let (ca, cert) = trusted();
    let upstream = crate::outbound::echo_upstream();
    let front = HttpsFront::start(&addr_of(&upstream), &cert);
    let tinyproxy = Tinyproxy::start("BasicAuth alice s3cret");
    let call = |password: &str| {
        let proxy =
            tinyserve::fanout::Proxy::new(&format!("http://alice:{password}@{}", tinyproxy.addr))
                .expect("proxy URL");
        Upstream::new("secure", &front.url(""))
            .with_ca_file(ca.pem())
            .expect("CA")
            .with_proxy(Some(proxy))
            .get("/echo/5")
            .send_within(BOUND)
    };
    assert_eq!(call("s3cret").map(|r| r.text()).ok().as_deref(), Some("5"));
    let err = call("wrong")
        .err()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    // tinyproxy refuses bad credentials with 401 (squid with 407): the status is passed on.
    assert!(
        err.contains("refused the tunnel") && err.contains("(status 401)"),
        "{err}"
    );
    assert!(
        !err.contains("wrong") && !err.contains("alice"),
        "credentials never shown: {err}"
    );
}

/// An upstream on a raw socket: each connection's request head is read, then `answer` writes
/// whatever it likes, until it returns or the peer leaves. Stopped on drop.
struct Hostile {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Hostile {
    fn start(answer: fn(&mut TcpStream) -> std::io::Result<()>) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match conn.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let _ = answer(&mut conn);
                });
            }
        });
        Hostile { addr, stop }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn oversized_head(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(b"HTTP/1.1 200 OK\r\nX-Big: ")?;
    loop {
        conn.write_all(&[b'a'; 4096])?;
    }
}

fn huge_chunk_size(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n")?;
    loop {
        conn.write_all(&[b'x'; 65536])?;
    }
}

fn endless_chunks(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
    let mut chunk = b"1000\r\n".to_vec();
    chunk.extend_from_slice(&[b'y'; 4096]);
    chunk.extend_from_slice(b"\r\n");
    loop {
        conn.write_all(&chunk)?;
    }
}

fn drip(conn: &mut TcpStream) -> std::io::Result<()> {
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        .iter()
        .chain([b'z'; 1000].iter())
    {
        conn.write_all(&[*byte])?;
        thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

fn drip_events(conn: &mut TcpStream) -> std::io::Result<()> {
    conn.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    )?;
    conn.write_all(b"9\r\ndata: 1\n\n\r\n")?;
    loop {
        conn.write_all(b"1\r\nd\r\n")?;
        thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn hostile_upstreams_end_in_a_502_or_504_within_their_limit_and_the_server_keeps_serving() {
    // The deadline leaves the limits time to be reached on a loaded machine; the drip only
    // ends at the deadline.
    type Answer = fn(&mut TcpStream) -> std::io::Result<()>;
    let cases: [(&str, Answer, u16, &str); 4] = [
        (
            "oversized head",
            oversized_head,
            502,
            "answer head larger than 64 KiB",
        ),
        (
            "chunk size FFFFFFFFFFFFFFFF",
            huge_chunk_size,
            502,
            "answer larger than 64 MiB",
        ),
        (
            "endless chunks",
            endless_chunks,
            502,
            "answer larger than 64 MiB",
        ),
        (
            "a byte every 500 ms",
            drip,
            504,
            "no answer within the 8000 ms deadline",
        ),
    ];
    let hostiles: Vec<(&str, Hostile, u16, &str)> = cases
        .into_iter()
        .map(|(what, answer, status, needle)| (what, Hostile::start(answer), status, needle))
        .collect();
    let targets: Vec<Upstream> = hostiles
        .iter()
        .map(|(what, h, ..)| Upstream::new(what, &h.url()))
        .collect();
    let app = App::new().get(
        "/call/<i>",
        move |req: &Request| -> tinyserve::Result<Response> {
            let i: usize = req.param("i").and_then(|i| i.parse().ok()).unwrap_or(0);
            let target = targets.get(i).ok_or_else(|| Error::not_found(req.path()))?;
            let results =
                FanOut::shared()?.run_for(req, vec![target.get("/")], Duration::from_secs(8));
            results
                .into_iter()
                .next()
                .unwrap_or_else(|| Err(Error::internal("no result")))
                .map(|r| Response::text(r.text()))
        },
    );
    let server = TestServer::start(app.get("/ok", |_| "ok"));
    for (i, (what, _, status, needle)) in hostiles.iter().enumerate() {
        let started = Instant::now();
        let mut http = Conn::get(server.addr, &format!("/call/{i}"));
        let body = http.json();
        assert_eq!(http.status, *status, "{what}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert_eq!(message, format!("upstream \"{what}\": {needle}"), "{what}");
        assert!(
            started.elapsed() < Duration::from_secs(9),
            "{what} took {:?}",
            started.elapsed()
        );
        assert_eq!(
            Conn::get(server.addr, "/ok").status,
            200,
            "still serving after {what}"
        );
    }
}

#[test]
fn a_streaming_upstream_that_drips_is_cut_at_its_total_deadline() {
    let hostile = Hostile::start(drip_events);
    let proxy = serve_proxy()
        .args(upstream_arg(format!("up={}/v1,deadline=2", hostile.url())))
        .start();
    let started = Instant::now();
    let mut events = EventReader::open(proxy.addr, "/v1/chat/completions", &chat("up/m", true));
    assert_eq!(events.next().as_deref(), Some("data: 1"));
    // The drip never completes an event: the next one is the error at the deadline.
    let last = events.next().expect("an error event at the deadline");
    let elapsed = started.elapsed();
    let body: Value =
        serde_json::from_str(last.rsplit("data: ").next().unwrap_or_default()).expect("JSON");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert_eq!(
        message, "upstream \"up\": stream not finished within its 2 s deadline",
        "{body}"
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < BOUND,
        "{elapsed:?}"
    );
    assert_eq!(events.next(), None);
    assert!(!proxy.stderr().contains("panicked"), "{}", proxy.stderr());
}
