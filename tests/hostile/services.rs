//! Hostile clients against the services around the models: metrics labels, batching, logs,
//! forwarded headers and upstream answers (issue #12, cases 2, 4, 11, 12 and 14). Each case is
//! sent as the issue's attacker sent it, to the real binary.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use tinyserve::http::TrustedProxies;

use crate::support::serve::ServeChild;
use crate::support::wire::{statuses, Conn};
use crate::support::TestServer;

/// Longest a test waits on a socket; reaching it means a hang, and fails the test.
const BOUND: Duration = Duration::from_secs(30);

/// How far above its idle RSS a server may peak in these cases: none of them may keep what an
/// attacker sends (the metrics flood alone once grew RSS by 1 GB).
const RSS_HEADROOM_KIB: u64 = 64 * 1024;

/// Asserts the server still runs and its peak RSS stayed within [`RSS_HEADROOM_KIB`] of `idle`.
fn assert_up_and_bounded(server: &mut ServeChild, idle_kib: u64) {
    assert!(server.is_running(), "the server died:\n{}", server.stderr());
    let (_, peak) = server.rss_kib();
    assert!(
        peak < idle_kib + RSS_HEADROOM_KIB,
        "peak RSS {peak} KiB, idle {idle_kib} KiB"
    );
}

/// One request on a new connection: the status and the body as text.
fn exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let reply = Conn::request(addr, request).reply();
    (reply.status, reply.text())
}

/// Sends `count` requests with unique 16 KB method tokens, then `head` (the rest of the request
/// line and headers), pipelined `per_conn` to a connection (the last asks to close), reading the answers as they come; returns the
/// statuses answered.
fn method_flood(addr: SocketAddr, count: usize, per_conn: usize, head: &str) -> Vec<u16> {
    let connections = count.div_ceil(per_conn);
    let mut answered = Vec::new();
    for c in 0..connections {
        let mut conn = Conn::open_with(addr, BOUND);
        let mut writer = conn.writer();
        let read = std::thread::spawn(move || {
            conn.finish();
            conn.unread().to_vec()
        });
        for i in 0..per_conn {
            let n = c * per_conn + i;
            let method = format!("M{n:08}{}", "X".repeat(16 * 1024 - 128));
            let close = if i + 1 == per_conn {
                "Connection: close\r\n"
            } else {
                ""
            };
            let request = format!("{method} {head}{close}\r\n");
            if writer.write_all(request.as_bytes()).is_err() {
                break; // the server closed the connection: the rest goes on the next one
            }
        }
        let _ = writer.shutdown(std::net::Shutdown::Write);
        answered.extend(statuses(&read.join().expect("reader thread")));
    }
    answered
}

/// Case 2: every distinct method token used to become a series (63,100 of them took RSS from
/// 29 MB to 1.02 GB, and a scrape to a 3 GB peak). Now unknown methods are one label value,
/// `OTHER`, for answered requests and for 401s alike.
#[test]
fn unique_method_tokens_do_not_grow_the_metrics() {
    for (args, head, status) in [
        (vec![], "/healthz HTTP/1.1\r\nHost: t\r\n", 405),
        (
            vec!["--api-key-env", "TINYSERVE_HOSTILE_KEY"],
            "/v2/models/iris HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer wrong\r\n",
            401,
        ),
    ] {
        let mut server = ServeChild::builder()
            .models(crate::support::repo("models"))
            .args(&args)
            .env("TINYSERVE_HOSTILE_KEY", "the-key")
            .start();
        let (idle, _) = server.rss_kib();
        let answered = method_flood(server.addr, 3_000, 100, head);
        assert!(answered.len() >= 30, "too few answers: {}", answered.len());
        assert!(
            answered.iter().all(|s| (400..500).contains(s) || *s == 501),
            "not all refused: {answered:?}"
        );
        let scrape = |server: &ServeChild| {
            let mut http = Conn::request(
                server.addr,
                b"GET /metrics HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer the-key\r\n\r\n",
            );
            assert_eq!(http.status, 200);
            String::from_utf8(http.read_to_end()).expect("metrics are UTF-8")
        };
        let text = scrape(&server);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("tinyserve_requests_total{"))
            .collect();
        // However the transport answers these (dispatched and counted, as here, or refused
        // while reading the head, which is not counted), no method token becomes a label.
        assert!(
            series.len() <= 4 && !series.iter().any(|l| l.contains("XXXX")),
            "the flood made series: {series:?}"
        );
        let flood: Vec<&str> = series
            .iter()
            .copied()
            .filter(|l| l.contains("method=\"OTHER\""))
            .collect();
        assert!(
            flood.len() <= 1,
            "one series for every unknown method: {series:?}"
        );
        if let Some(line) = flood.first() {
            assert!(line.contains(&format!("status=\"{status}\"")), "{line}");
        }
        assert!(
            text.len() < 64 * 1024,
            "metrics grew to {} bytes",
            text.len()
        );
        assert_up_and_bounded(&mut server, idle);
    }
}

/// Case 11: a `%0A` in the model name of the path used to write a forged line into the human
/// access log. Every field is escaped now, in both formats. The name is one path segment (its
/// `/` sent as `%2F`), so the predict route matches and records it as the request's model.
#[test]
fn a_model_name_cannot_forge_log_lines() {
    let forged = "2026-12-05T00:00:00.000Z INFO 203.0.113.1 \"GET /admin\" 200 0B 0.1ms rid=forged";
    let path = format!(
        "/models/x%0A{}%0D%1B[31m%E2%80%A8%C2%85/predict",
        forged
            .replace(' ', "%20")
            .replace('"', "%22")
            .replace('/', "%2F")
    );
    for format in ["human", "json"] {
        let mut server = ServeChild::start(&["--log-format", format]);
        let (idle, _) = server.rss_kib();
        let body = r#"{"inputs": {"input": [[1, 2, 3, 4]]}}"#;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nX-Request-ID: hostile-log-{format}\r\n\r\n{body}",
            body.len()
        );
        let (status, answer) = exchange(server.addr, request.as_bytes());
        assert_eq!(status, 404, "{answer}");
        let log = server.wait_for_stderr(BOUND, "the access line", |log| {
            log.contains(&format!("hostile-log-{format}"))
        });
        for line in log.lines() {
            assert!(
                !line.starts_with("2026-12-05T00:00:00.000Z"),
                "a forged line in the {format} log:\n{log}"
            );
            assert!(
                !line.chars().any(|c| c.is_control() || c == '\u{2028}'),
                "a control character in the {format} log: {line:?}"
            );
            if format == "json" {
                let parsed: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("not one JSON object per line ({err}): {line:?}"));
                if parsed["request_id"] == format!("hostile-log-{format}") {
                    assert!(parsed["model"].as_str().is_some_and(|m| m.contains('\n')));
                }
            }
        }
        let access = log
            .lines()
            .find(|l| l.contains(&format!("hostile-log-{format}")))
            .unwrap_or_default();
        if format == "human" {
            assert!(
                access.contains("model=\"x\\x0a2026-12-05T00:00:00.000Z INFO"),
                "{access}"
            );
        }
        let (status, answer) = exchange(server.addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(status, 200, "{answer}");
        assert_up_and_bounded(&mut server, idle);
    }
}

/// Case 12: from a trusted proxy, `X-Forwarded-For: 203.0.113.7` plus a client's own
/// `Forwarded: for=6.6.6.6` logged 6.6.6.6. With X-Forwarded-For present, `Forwarded` is
/// ignored: directly from a trusted peer, and behind the shipped nginx configuration.
#[test]
fn a_client_forwarded_header_cannot_choose_the_logged_address() {
    let mut server = ServeChild::start(&["--forwarded-allow-ips", "127.0.0.1"]);
    let (idle, _) = server.rss_kib();
    let request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.7\r\n\
        Forwarded: for=6.6.6.6;proto=https\r\nX-Request-ID: hostile-forwarded\r\n\r\n";
    let (status, _) = exchange(server.addr, request);
    assert_eq!(status, 200);
    let log = server.wait_for_stderr(BOUND, "the access line", |log| {
        log.contains("hostile-forwarded")
    });
    let line = log
        .lines()
        .find(|l| l.contains("hostile-forwarded"))
        .unwrap_or_default();
    assert!(
        line.contains(" INFO 203.0.113.7 \"GET /healthz\""),
        "{line}"
    );
    assert!(!log.contains("6.6.6.6"), "{log}");
    assert_up_and_bounded(&mut server, idle);

    // Behind the shipped nginx, which reaches the app from 127.0.0.3 (`proxy_bind`), the only
    // trusted proxy: the client is the test's own 127.0.0.1, whatever it claims.
    let app = TestServer::start(crate::production::whoami_app(
        TrustedProxies::parse("127.0.0.3").expect("trusted list"),
    ));
    let nginx = crate::production::shipped_nginx([app.addr, app.addr], "    proxy_bind 127.0.0.3;");
    for spoof in [
        "Forwarded: for=6.6.6.6;proto=https;host=evil.example\r\n",
        "X-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6;proto=https;host=evil.example\r\n",
    ] {
        let (http, who) = crate::production::get_with(
            nginx.addr,
            "/api/whoami",
            &format!("Host: models.example.com\r\n{spoof}"),
        );
        assert_eq!(http.status, 200, "{who}\n{}", nginx.log());
        assert_eq!(who["peer"], "127.0.0.3", "{who}");
        assert_eq!(who["client"], "127.0.0.1", "{spoof:?}: {who}");
        assert_eq!(who["scheme"], "http", "{spoof:?}: {who}");
        assert_eq!(who["host"], "models.example.com", "{spoof:?}: {who}");
    }
}

/// Issue #23, case 4: a proxy that adds its own `X-Forwarded-For` line after the client's
/// (rather than append to it) leaves two lines; they are one list, read from the right.
#[test]
fn repeated_forwarded_lines_are_one_list_read_from_the_right() {
    let mut server = ServeChild::start(&["--forwarded-allow-ips", "127.0.0.1"]);
    let (idle, _) = server.rss_kib();
    for (id, lines) in [
        (
            "hostile-xff-lines",
            "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.7\r\n",
        ),
        (
            "hostile-fwd-lines",
            "Forwarded: for=6.6.6.6\r\nForwarded: for=203.0.113.7\r\n",
        ),
    ] {
        let request =
            format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{lines}X-Request-ID: {id}\r\n\r\n");
        let (status, _) = exchange(server.addr, request.as_bytes());
        assert_eq!(status, 200);
        let log = server.wait_for_stderr(BOUND, "the access line", |log| log.contains(id));
        let line = log.lines().find(|l| l.contains(id)).unwrap_or_default();
        // Before: the first line only, the client's own `6.6.6.6`.
        assert!(
            line.contains(" INFO 203.0.113.7 \"GET /healthz\""),
            "{line}"
        );
    }
    assert!(!server.stderr().contains("6.6.6.6"), "{}", server.stderr());
    assert_up_and_bounded(&mut server, idle);
}

/// A v2 request for bytelm with these token ids, as raw HTTP/1.1 (kept alive).
fn bytelm_request(ids: &[i64]) -> Vec<u8> {
    let body = serde_json::json!({"inputs": [{"name": "input_ids", "shape": [1, ids.len()],
        "datatype": "INT64", "data": ids}]})
    .to_string();
    format!(
        "POST /v2/models/bytelm/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Case 4 and acceptance 3: with `--max-batch-size 8`, one client looping an out-of-vocabulary
/// token used to fail everyone's batch (normal clients got 235 × 200 and 12,700 × 500, each
/// failure an ERROR line). Now a failed batch is run again request by request: the attacker
/// gets its 400, every normal client its own 200 with the answer it gets alone, and a 4xx
/// writes no ERROR line.
#[test]
fn with_batching_a_bad_client_causes_no_5xx_for_others() {
    let mut server = ServeChild::start(&["--max-batch-size", "8", "--batch-timeout-us", "20000"]);
    let normal = bytelm_request(&[72, 105, 33]);
    let (status, alone) = exchange(server.addr, &normal);
    assert_eq!(status, 200, "{alone}");
    let alone: serde_json::Value = serde_json::from_str(&alone).expect("JSON");
    let (idle, _) = server.rss_kib();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (attacker, normals) = std::thread::scope(|scope| {
        let attacker = scope.spawn(|| {
            let mut statuses = Vec::new();
            let request = bytelm_request(&[72, 300, 33]);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let mut http = Conn::request(server.addr, &request);
                let body = http.json();
                statuses.push((http.status, body["code"].clone()));
            }
            statuses
        });
        let clients: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    (0..40)
                        .map(|_| {
                            let mut http = Conn::request(server.addr, &normal);
                            (http.status, http.json())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let normals: Vec<_> = clients
            .into_iter()
            .flat_map(|c| c.join().expect("client thread"))
            .collect();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (attacker.join().expect("attacker thread"), normals)
    });
    for (status, body) in &normals {
        assert_eq!(*status, 200, "a normal client got {status}: {body}");
        assert_eq!(
            body["outputs"], alone["outputs"],
            "a batched answer differs"
        );
    }
    assert!(!attacker.is_empty());
    for (status, code) in &attacker {
        assert_eq!((*status, code.as_str()), (400, Some("invalid_input")));
    }
    let (_, metrics) = exchange(server.addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    let shared: u64 = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("tinyserve_batches_total{model=\"bytelm\",size=\""))
        .filter_map(|rest| {
            let (size, count) = rest.split_once("\"} ")?;
            (size.parse::<u64>().ok()? > 1).then(|| count.parse::<u64>().ok())?
        })
        .sum();
    assert!(
        shared > 0,
        "no batch held two requests, the test proved nothing:\n{metrics}"
    );
    let log = server.stderr();
    assert!(
        !log.lines().any(|l| l.contains(" ERROR ")),
        "a 4xx was logged as an error:\n{log}"
    );
    assert_up_and_bounded(&mut server, idle);
}

/// A fake upstream on a raw socket: it answers every request whose body names the model
/// `switch` with `101 Switching Protocols` (then raw bytes), and any other with a 500 whose
/// body holds a secret. One connection at a time, each closed after its answer.
fn fake_upstream() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake upstream");
    let addr = listener.local_addr().expect("fake upstream address");
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { continue };
            let _ = socket.set_read_timeout(Some(BOUND));
            let mut request = Vec::new();
            let mut buf = [0u8; 8192];
            // Head, then as much body as Content-Length says.
            while let Ok(n @ 1..) = socket.read(&mut buf) {
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if request.len() >= end + 4 + length {
                    break;
                }
            }
            let answer: &[u8] = if String::from_utf8_lossy(&request).contains("\"switch\"") {
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nraw bytes"
            } else {
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                  Content-Length: 55\r\n\r\n{\"error\": \"db password=hunter2 at postgres://10.0.0.5\"}"
            };
            let _ = socket.write_all(answer);
        }
    });
    addr
}

/// Case 14: an upstream's 101 was relayed as `HTTP/1.1 101 Unknown` with `Content-Length: 0`
/// on a kept-alive connection, and a 502 quoted the upstream's error body (secrets included)
/// and its internal URL. Now a 1xx is a 502, and a 502 names the upstream and the status only;
/// the body and URL are in the server's log.
#[test]
fn upstream_answers_are_mapped_to_our_own_errors() {
    let upstream = fake_upstream();
    let mut server = ServeChild::builder()
        .models(crate::support::repo("models/tests/multi"))
        .args(["--upstream", &format!("internal=http://{upstream}/v1")])
        .start();
    let (idle, _) = server.rss_kib();
    let chat = |model: &str| {
        let body =
            serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
                .to_string();
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for (model, says) in [
        ("internal/switch", "answered status 101"),
        ("internal/crash", "answered status 500"),
    ] {
        let mut http = Conn::request(server.addr, chat(model).as_bytes());
        let status = http.status;
        let body = http.json();
        assert_eq!(status, 502, "{model}: {body}");
        assert_eq!(body["error"]["code"], "upstream_error", "{body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("upstream \"internal\"") && message.contains(says),
            "{model}: {message:?}"
        );
        for secret in ["hunter2", "10.0.0.5", &upstream.to_string(), "raw bytes"] {
            assert!(
                !body.to_string().contains(secret),
                "{model} leaks {secret}: {body}"
            );
        }
        // The connection is still good for the next request.
        let (status, _) = exchange(server.addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(status, 200);
    }
    server.wait_for_stderr(BOUND, "the upstream's body and URL in the log", |log| {
        log.lines().any(|l| {
            l.contains(" WARN ") && l.contains("hunter2") && l.contains(&upstream.to_string())
        })
    });
    assert_up_and_bounded(&mut server, idle);
}
