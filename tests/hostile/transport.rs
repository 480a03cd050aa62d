//! The transport cases of issue #12, as an attacker sends them to the real binary: bodies that
//! never finish (5), work before authentication (6), slots hoarded by silence (7), request
//! smuggling (9) and half-close (13). Each asserts the status (or the documented behaviour),
//! that the server keeps serving, and that its peak RSS stays within [`RSS_BOUND_KIB`] of what
//! it held before the attack.

use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::support::serve::ServeChild;
use crate::support::wire::{json_after_head as error_body, statuses, Conn, End};

/// How far the peak RSS of the server may rise above its RSS before an attack: docs/deployment.md's
/// bound for the transport cases (each refused before its body is buffered, or bounded by
/// the head and body limits of one request).
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// How long a client waits for the server to answer or close; far above every server timeout
/// the tests set, so a server that kept a connection open fails the test.
const CLIENT_LIMIT: Duration = Duration::from_secs(30);

/// A server of the bundled models; its RSS before the attack.
fn start(args: &[&str]) -> (ServeChild, u64) {
    let server = ServeChild::start(args);
    let (rss, _) = server.rss_kib();
    (server, rss)
}

/// The server still answers, and its peak RSS stayed within the bound.
fn assert_survived(server: &mut ServeChild, rss_before: u64) {
    assert!(server.is_running(), "the server died: {}", server.stderr());
    let mut http = Conn::get(server.addr, "/healthz");
    assert_eq!(http.status, 200);
    assert_eq!(http.json()["status"], "ok");
    let (_, peak) = server.rss_kib();
    assert!(
        peak <= rss_before + RSS_BOUND_KIB,
        "peak RSS {peak} KiB, more than {RSS_BOUND_KIB} KiB above the {rss_before} KiB before"
    );
}

/// A connection on which the client waits at most [`CLIENT_LIMIT`].
fn open(addr: SocketAddr) -> Conn {
    Conn::open_with(addr, CLIENT_LIMIT)
}

/// Sends `request` on a new connection; returns what came back until the server closed it.
fn send_and_wait_close(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut conn = open(addr);
    conn.send(request);
    conn.until_closed()
}

/// Sends `head` on a new connection, then, from another thread, each of `pieces` with `pause`
/// after each until the server stops reading; returns what came back until the server closed
/// the connection.
fn attack(
    addr: SocketAddr,
    head: &[u8],
    pieces: impl Iterator<Item = Vec<u8>> + Send + 'static,
    pause: Duration,
) -> Vec<u8> {
    let mut conn = open(addr);
    conn.send(head);
    let writer = conn.writer();
    let feeder = thread::spawn(move || {
        for piece in pieces {
            if (&writer).write_all(&piece).is_err() {
                return;
            }
            thread::sleep(pause);
        }
    });
    let answer = conn.until_closed();
    conn.close();
    let _ = feeder.join();
    answer
}

/// Asserts the statuses of every response in `answer`.
fn assert_statuses(answer: &[u8], expected: &[u16]) {
    assert_eq!(
        statuses(answer),
        expected,
        "{}",
        String::from_utf8_lossy(answer)
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Bodies that never finish.

#[test]
fn a_body_trickling_in_gets_408_at_the_request_deadline() {
    // The per-read timeout (30 s) never fires: a byte comes every 200 ms. Only the
    // whole-request deadline can end the request.
    let (mut server, rss) = start(&["--request-timeout", "2", "--io-timeout", "30"]);
    let answer = attack(
        server.addr,
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Content-Length: 100000\r\n\r\n",
        std::iter::repeat_n(b" ".to_vec(), (CLIENT_LIMIT.as_millis() / 200) as usize),
        Duration::from_millis(200),
    );
    assert_statuses(&answer, &[408]);
    let body = error_body(&answer);
    assert_eq!(body["code"], "request_timeout");
    assert!(
        body["error"].as_str().is_some_and(|m| m.contains("2 s")),
        "{body}"
    );
    assert_survived(&mut server, rss);
}

#[test]
fn endless_chunked_trailers_get_431_within_the_head_limit() {
    let (mut server, rss) = start(&[]);
    let line = format!("X-Trailer: {}\r\n", "a".repeat(4085)).into_bytes();
    // 16 MiB at most: far past the 16 KiB head limit the trailers count against.
    let count = (16 * 1024 * 1024usize).div_ceil(line.len());
    let answer = attack(
        server.addr,
        b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n",
        std::iter::repeat_n(line, count),
        Duration::ZERO,
    );
    assert_statuses(&answer, &[431]);
    let body = error_body(&answer);
    assert_eq!(body["code"], "headers_too_large");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("trailer fields exceed the limit of 16384 bytes")),
        "{body}"
    );
    assert_survived(&mut server, rss);
}

// ---------------------------------------------------------------------------------------------
// 6. Work before authentication.

fn with_key(args: &[&str]) -> (ServeChild, u64) {
    let server = ServeChild::builder()
        .models(crate::support::repo("models"))
        .args(["--api-key-env", "TINYSERVE_TEST_KEY"])
        .args(args)
        .env("TINYSERVE_TEST_KEY", "sesame")
        .start();
    let (rss, _) = server.rss_kib();
    (server, rss)
}

#[test]
fn a_request_without_the_key_is_refused_before_its_body() {
    let (mut server, rss) = with_key(&[]);
    let head =
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
                Content-Length: 10485760\r\n";
    // Waiting for `100 Continue`: the answer is the 401, never an invitation to send.
    let waiting: Vec<_> = (0..30)
        .map(|_| {
            let addr = server.addr;
            let request = format!("{head}Expect: 100-continue\r\n\r\n");
            thread::spawn(move || send_and_wait_close(addr, request.as_bytes()))
        })
        .collect();
    for client in waiting {
        let answer = client.join().expect("client");
        assert_statuses(&answer, &[401]);
        assert_eq!(error_body(&answer)["code"], "unauthorized");
    }
    // Without `Expect`, before sending a byte of the body: the 401 comes all the same (a
    // server that read the body first would wait for it).
    let answer = send_and_wait_close(server.addr, format!("{head}\r\n").as_bytes());
    assert_statuses(&answer, &[401]);
    // Pushing whole 10 MiB bodies at once: 401, and the bodies are not buffered (the RSS
    // bound below).
    let pushing: Vec<_> = (0..10)
        .map(|_| {
            let (addr, head) = (server.addr, format!("{head}\r\n"));
            thread::spawn(move || {
                let chunks = std::iter::repeat_n(vec![b'['; 64 * 1024], 160);
                attack(addr, head.as_bytes(), chunks, Duration::ZERO)
            })
        })
        .collect();
    for client in pushing {
        let answer = client.join().expect("client");
        assert_statuses(&answer, &[401]);
    }
    // With the key, the same request is invited, read and served.
    let body =
        r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let request = format!(
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sesame\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    let mut conn = open(server.addr);
    conn.send(request.as_bytes());
    assert_eq!(conn.read_raw(25), b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.send(body.as_bytes());
    conn.half_close();
    let answer = conn.until_closed();
    assert_statuses(&answer, &[200]);
    assert_survived(&mut server, rss);
}

#[test]
fn a_cors_preflight_is_answered_on_its_head_without_the_key() {
    let (mut server, rss) = with_key(&["--cors-origin", "https://app.example"]);
    let preflight = "OPTIONS /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\n\
                     Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n";
    let mut http = Conn::request(server.addr, preflight.as_bytes());
    assert_eq!(http.status, 204);
    assert_eq!(
        http.header("Access-Control-Allow-Origin"),
        Some("https://app.example")
    );
    assert!(http.at_end());
    // The 401 of a browser's request carries the CORS headers, so the page can read it.
    let request =
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nOrigin: https://app.example\r\n\
                   Content-Length: 10485760\r\nExpect: 100-continue\r\n\r\n";
    let answer = send_and_wait_close(server.addr, request.as_bytes());
    assert_eq!(statuses(&answer), [401]);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("Access-Control-Allow-Origin: https://app.example"),
        "{text}"
    );
    assert_survived(&mut server, rss);
}

// ---------------------------------------------------------------------------------------------
// 7. Slots hoarded by silence.

#[test]
fn a_thousand_silent_connections_do_not_fail_healthz() {
    // Default settings: 1024 connection slots, 75 s keep-alive, 30 s head timeout.
    let (mut server, rss) = start(&[]);
    let silent: Vec<Conn> = (0..1024).map(|_| open(server.addr)).collect();
    for _ in 0..20 {
        let mut http = Conn::get(server.addr, "/healthz");
        let (status, body) = (http.status, http.json());
        assert_eq!(
            (status, &body["status"]),
            (200, &Value::from("ok")),
            "{body}"
        );
        assert_eq!(Conn::get(server.addr, "/readyz").status, 200);
    }
    // Model requests are served too: each newcomer takes a silent connection's slot.
    let mut http = Conn::get(server.addr, "/v2/models/iris");
    let (status, body) = (http.status, http.json());
    assert_eq!(status, 200, "{body}");
    // The silent connections that lost their slot were closed by the server.
    let closed = silent
        .iter()
        .filter(|conn| conn.is_closed_by_server())
        .count();
    assert!(closed >= 1, "no silent connection lost its slot");
    drop(silent);
    assert_survived(&mut server, rss);
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_head_timeout() {
    let (mut server, rss) = start(&["--head-timeout", "1", "--keep-alive-timeout", "600"]);
    assert_eq!(
        open(server.addr).until_closed(),
        b"",
        "closed quietly, without an answer"
    );
    // A connection that was served waits for its next request up to the keep-alive timeout
    // (longer than the client waits here), not the head timeout.
    let mut conn = Conn::open_with(server.addr, Duration::from_secs(3));
    conn.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(conn.response().status, 200);
    assert_eq!(conn.finish(), End::ClientTimeout, "still open after 3 s");
    assert!(conn.unread().is_empty());
    assert_survived(&mut server, rss);
}

// ---------------------------------------------------------------------------------------------
// 9. Request smuggling.

#[test]
fn ambiguous_framing_is_400_and_closes_the_connection() {
    let (mut server, rss) = start(&[]);
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
    let cases = [
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
                5 + smuggled.len()
            ),
            "both Transfer-Encoding and Content-Length",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
                 Transfer-Encoding: gzip\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            "unsupported Transfer-Encoding \"chunked, gzip\"",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                 0\r\n\r\n{smuggled}"
            ),
            "only chunked",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                 +b\r\nhello world\r\n0\r\n\r\n{smuggled}"
            ),
            "bad chunk size line \"+b\"",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                 \x20\x20b\x20\x20\r\nhello world\r\n0\r\n\r\n{smuggled}"
            ),
            "bad chunk size line \"  b  \"",
        ),
        (
            format!(
                "GET /healthz HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\
                 Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            "HTTP/1.0",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\n\r\n{smuggled}"),
            "without a Host header",
        ),
        (
            format!("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n{smuggled}"),
            "more than one Host",
        ),
    ];
    for (request, message) in cases {
        let answer = send_and_wait_close(server.addr, request.as_bytes());
        let first_line = request.lines().next().unwrap_or_default();
        assert_eq!(
            statuses(&answer),
            [400],
            "{first_line}: only a 400, the smuggled request unanswered: {}",
            String::from_utf8_lossy(&answer)
        );
        let body = error_body(&answer);
        assert_eq!(body["code"], "bad_request");
        assert!(
            body["error"].as_str().is_some_and(|m| m.contains(message)),
            "{request:?}: {body}"
        );
    }
    assert_survived(&mut server, rss);
}

// ---------------------------------------------------------------------------------------------
// 13. Half-close.

/// Sends `request` and half-closes; what came back until the server closed the connection.
fn half_closed(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut conn = open(addr);
    conn.send(request);
    conn.half_close();
    conn.until_closed()
}

#[test]
fn a_half_closed_client_gets_the_whole_stream() {
    let (mut server, rss) = start(&[]);
    let body = r#"{"model":"bytelm","prompt":"hello","max_tokens":20,"stream":true}"#;
    let request = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = half_closed(server.addr, request.as_bytes());
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(statuses(&answer), [200], "{text}");
    assert!(text.contains("data: [DONE]\n\n"), "no [DONE]: {text}");
    assert!(text.ends_with("\r\n0\r\n\r\n"), "no final chunk: {text}");
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    // A non-streaming answer too.
    let request = "GET /v2/models/iris HTTP/1.1\r\nHost: t\r\n\r\n";
    let answer = half_closed(server.addr, request.as_bytes());
    assert_eq!(statuses(&answer), [200]);
    assert_survived(&mut server, rss);
}

/// Issue #23, case 5: a complete non-streaming `/v1` request, then a half-close: the client is
/// answered (before, the generation was cancelled as if it had left). A client that closed for
/// good still stops the generation (`hostile::memory::non_streaming_generation_stops_…`).
#[test]
fn a_half_closed_client_gets_its_non_streaming_completion() {
    let (mut server, rss) = start(&[]);
    for model in ["bytelm", "tinychat"] {
        let body = format!(
            r#"{{"model":"{model}","prompt":"Once upon a time","max_tokens":8,"temperature":0}}"#
        );
        let request = format!(
            "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = half_closed(server.addr, request.as_bytes());
        let text = String::from_utf8_lossy(&answer);
        // The final answer, after at most the interim `100 Continue` that told the half-close
        // from a close.
        assert_eq!(statuses(&answer).last(), Some(&200), "{model}: {text}");
        assert!(
            text.contains("\"finish_reason\":\"length\""),
            "{model}: {text}"
        );
        assert!(text.contains("\"completion_tokens\":8"), "{model}: {text}");
    }
    assert_survived(&mut server, rss);
}

/// Issue #23, case 8: an HTTP/1.0 client's `Expect: 100-continue` is ignored, as RFC 9110
/// says: it gets no 1xx, only its answer.
#[test]
fn an_http_1_0_client_gets_no_100_continue() {
    let (mut server, rss) = start(&[]);
    let body = "[[5.1, 3.5, 1.4, 0.2]]";
    let request = format!(
        "POST /models/iris/predict HTTP/1.0\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = send_and_wait_close(server.addr, request.as_bytes());
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(statuses(&answer), [200], "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert_survived(&mut server, rss);
}

/// Issue #23, case 8: the small points fixed in the transport and the routes. A head with a
/// bare LF line end is refused (a proxy in front may not read it as tinyserve did); the
/// `Bearer` scheme is case-insensitive; `Inference-Header-Content-Length: +5` is not a number.
#[test]
fn bare_lf_heads_lower_case_bearer_and_signed_lengths() {
    let (mut server, rss) = with_key(&[]);
    let answer = send_and_wait_close(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: t\nX-Hidden: 1\r\n\r\n",
    );
    assert_eq!(
        statuses(&answer),
        [400],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let request = format!(
            "GET /v2/models/iris HTTP/1.1\r\nHost: t\r\nAuthorization: {scheme} sesame\r\n\
             Connection: close\r\n\r\n"
        );
        let answer = send_and_wait_close(server.addr, request.as_bytes());
        assert_eq!(statuses(&answer), [200], "{scheme}");
    }
    let header = r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}"#;
    let mut request = format!(
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sesame\r\n\
         Connection: close\r\nContent-Type: application/octet-stream\r\n\
         Inference-Header-Content-Length: +{}\r\nContent-Length: {}\r\n\r\n{header}",
        header.len(),
        header.len() + 16
    )
    .into_bytes();
    request.extend_from_slice(&[0u8; 16]);
    let answer = send_and_wait_close(server.addr, &request);
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(statuses(&answer), [400], "{text}");
    assert!(text.contains("is not a number"), "{text}");
    assert_survived(&mut server, rss);
}

/// Issue #23, case 8: an output requested twice is named as such.
#[test]
fn an_output_requested_twice_is_named() {
    let (mut server, rss) = start(&[]);
    let body = r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"label"},{"name":"label"}]}"#;
    let request = format!(
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = send_and_wait_close(server.addr, request.as_bytes());
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(statuses(&answer), [400], "{text}");
    assert!(
        text.contains("output \\\"label\\\" is requested twice"),
        "{text}"
    );
    assert_survived(&mut server, rss);
}
