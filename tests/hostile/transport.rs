//! The transport cases of issue #12, as an attacker sends them to the real binary: bodies that
//! never finish (5), work before authentication (6), slots hoarded by silence (7), request
//! smuggling (9) and half-close (13). Each asserts the status (or the documented behaviour),
//! that the server keeps serving, and that its peak RSS stays within [`RSS_BOUND_KIB`] of what
//! it held before the attack.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::support::serve::ServeChild;
use crate::support::wire::{connect, find, Http};

/// How far the peak RSS of the server may rise above its RSS before an attack: the README's
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
    let mut http = Http::get(server.addr, "/healthz");
    assert_eq!(http.status, 200);
    assert_eq!(http.json()["status"], "ok");
    let (_, peak) = server.rss_kib();
    assert!(
        peak <= rss_before + RSS_BOUND_KIB,
        "peak RSS {peak} KiB, more than {RSS_BOUND_KIB} KiB above the {rss_before} KiB before"
    );
}

/// What the server sent on `stream` until it closed it (or reset it): fails the test if it
/// keeps it open past [`CLIENT_LIMIT`].
fn until_closed(mut stream: &TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(CLIENT_LIMIT))
        .expect("read timeout");
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "the server kept the connection open; got {:?}",
                    String::from_utf8_lossy(&out)
                )
            }
            // A reset after the server's answer and close: what arrived is the answer.
            Err(_) => return out,
        }
    }
}

/// The status lines of every response in `bytes`.
fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

/// The JSON body of the single error response in `bytes`.
fn error_body(bytes: &[u8]) -> Value {
    let at = find(bytes, b"\r\n\r\n").expect("a complete response head") + 4;
    serde_json::from_slice(&bytes[at..]).unwrap_or_else(|err| {
        panic!(
            "error body is not JSON ({err}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}

/// Sends `request` on a new connection; returns what came back until the server closed it.
fn send_and_wait_close(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let stream = connect(addr, CLIENT_LIMIT);
    (&stream).write_all(request).expect("send");
    until_closed(&stream)
}

// ---------------------------------------------------------------------------------------------
// 5. Bodies that never finish.

#[test]
fn a_body_trickling_in_gets_408_at_the_request_deadline() {
    // The per-read timeout (30 s) never fires: a byte comes every 200 ms. Only the
    // whole-request deadline can end the request.
    let (mut server, rss) = start(&["--request-timeout", "2", "--io-timeout", "30"]);
    let stream = connect(server.addr, CLIENT_LIMIT);
    (&stream)
        .write_all(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
              Content-Length: 100000\r\n\r\n",
        )
        .expect("send the head");
    let writer = stream.try_clone().expect("clone");
    let trickle = thread::spawn(move || {
        for _ in 0..(CLIENT_LIMIT.as_millis() / 200) {
            if (&writer).write_all(b" ").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    let answer = until_closed(&stream);
    assert_eq!(
        statuses(&answer),
        [408],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let body = error_body(&answer);
    assert_eq!(body["code"], "request_timeout");
    assert!(
        body["error"].as_str().is_some_and(|m| m.contains("2 s")),
        "{body}"
    );
    let _ = stream.shutdown(Shutdown::Both);
    let _ = trickle.join();
    assert_survived(&mut server, rss);
}

#[test]
fn endless_chunked_trailers_get_431_within_the_head_limit() {
    let (mut server, rss) = start(&[]);
    let stream = connect(server.addr, CLIENT_LIMIT);
    (&stream)
        .write_all(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n",
        )
        .expect("send the head");
    let writer = stream.try_clone().expect("clone");
    let flood = thread::spawn(move || {
        let line = format!("X-Trailer: {}\r\n", "a".repeat(4085));
        let mut sent = 0usize;
        // 16 MiB at most: far past the 16 KiB head limit the trailers count against.
        while sent < 16 * 1024 * 1024 && (&writer).write_all(line.as_bytes()).is_ok() {
            sent += line.len();
        }
        sent
    });
    let answer = until_closed(&stream);
    assert_eq!(
        statuses(&answer),
        [431],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let body = error_body(&answer);
    assert_eq!(body["code"], "headers_too_large");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("trailer fields exceed the limit of 16384 bytes")),
        "{body}"
    );
    let _ = stream.shutdown(Shutdown::Both);
    let _ = flood.join();
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
        assert_eq!(
            statuses(&answer),
            [401],
            "{}",
            String::from_utf8_lossy(&answer)
        );
        assert_eq!(error_body(&answer)["code"], "unauthorized");
    }
    // Without `Expect`, before sending a byte of the body: the 401 comes all the same (a
    // server that read the body first would wait for it).
    let answer = send_and_wait_close(server.addr, format!("{head}\r\n").as_bytes());
    assert_eq!(
        statuses(&answer),
        [401],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Pushing whole 10 MiB bodies at once: 401, and the bodies are not buffered (the RSS
    // bound below).
    let pushing: Vec<_> = (0..10)
        .map(|_| {
            let (addr, head) = (server.addr, format!("{head}\r\n"));
            thread::spawn(move || {
                let stream = connect(addr, CLIENT_LIMIT);
                (&stream).write_all(head.as_bytes()).expect("send the head");
                let writer = stream.try_clone().expect("clone");
                let body = thread::spawn(move || {
                    let chunk = vec![b'['; 64 * 1024];
                    for _ in 0..160 {
                        if (&writer).write_all(&chunk).is_err() {
                            return;
                        }
                    }
                });
                let answer = until_closed(&stream);
                let _ = stream.shutdown(Shutdown::Both);
                let _ = body.join();
                answer
            })
        })
        .collect();
    for client in pushing {
        let answer = client.join().expect("client");
        assert_eq!(
            statuses(&answer),
            [401],
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    // With the key, the same request is invited, read and served.
    let body =
        r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;
    let request = format!(
        "POST /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer sesame\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    let mut stream = connect(server.addr, CLIENT_LIMIT);
    stream.write_all(request.as_bytes()).expect("send the head");
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).expect("100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).expect("send the body");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let answer = until_closed(&stream);
    assert_eq!(
        statuses(&answer),
        [200],
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_survived(&mut server, rss);
}

#[test]
fn a_cors_preflight_is_answered_on_its_head_without_the_key() {
    let (mut server, rss) = with_key(&["--cors-origin", "https://app.example"]);
    let preflight = "OPTIONS /v2/models/iris/infer HTTP/1.1\r\nHost: t\r\n\
                     Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n";
    let mut http = Http::send(server.addr, preflight.as_bytes());
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
    let silent: Vec<TcpStream> = (0..1024)
        .map(|_| connect(server.addr, CLIENT_LIMIT))
        .collect();
    for _ in 0..20 {
        let mut http = Http::get(server.addr, "/healthz");
        let (status, body) = (http.status, http.json());
        assert_eq!(
            (status, &body["status"]),
            (200, &Value::from("ok")),
            "{body}"
        );
        assert_eq!(Http::get(server.addr, "/readyz").status, 200);
    }
    // Model requests are served too: each newcomer takes a silent connection's slot.
    let mut http = Http::get(server.addr, "/v2/models/iris");
    let (status, body) = (http.status, http.json());
    assert_eq!(status, 200, "{body}");
    // The silent connections that lost their slot were closed by the server.
    let closed = silent
        .iter()
        .filter(|stream| {
            stream
                .set_read_timeout(Some(Duration::from_millis(1)))
                .expect("read timeout");
            match (&**stream).read(&mut [0u8; 1]) {
                Ok(n) => n == 0,
                Err(err) => err.kind() == ErrorKind::ConnectionReset,
            }
        })
        .count();
    assert!(closed >= 1, "no silent connection lost its slot");
    drop(silent);
    assert_survived(&mut server, rss);
}

#[test]
fn a_connection_that_sends_nothing_is_closed_at_the_head_timeout() {
    let (mut server, rss) = start(&["--head-timeout", "1", "--keep-alive-timeout", "600"]);
    let silent = connect(server.addr, CLIENT_LIMIT);
    assert_eq!(
        until_closed(&silent),
        b"",
        "closed quietly, without an answer"
    );
    // A connection that was served waits for its next request up to the keep-alive timeout
    // (longer than the client waits here), not the head timeout.
    let stream = connect(server.addr, Duration::from_secs(3));
    (&stream)
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = (&stream).read(&mut buf).expect("the answer");
    assert_eq!(statuses(&buf[..n]), [200]);
    let err = (&stream).read(&mut buf).expect_err("still open after 3 s");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
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

#[test]
fn a_half_closed_client_gets_the_whole_stream() {
    let (mut server, rss) = start(&[]);
    let body = r#"{"model":"bytelm","prompt":"hello","max_tokens":20,"stream":true}"#;
    let request = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let stream = connect(server.addr, CLIENT_LIMIT);
    (&stream).write_all(request.as_bytes()).expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let answer = until_closed(&stream);
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(statuses(&answer), [200], "{text}");
    assert!(text.contains("data: [DONE]\n\n"), "no [DONE]: {text}");
    assert!(text.ends_with("\r\n0\r\n\r\n"), "no final chunk: {text}");
    assert!(text.contains("\"finish_reason\":\"length\""), "{text}");
    // A non-streaming answer too.
    let request = "GET /v2/models/iris HTTP/1.1\r\nHost: t\r\n\r\n";
    let stream = connect(server.addr, CLIENT_LIMIT);
    (&stream).write_all(request.as_bytes()).expect("send");
    stream.shutdown(Shutdown::Write).expect("half-close");
    let answer = until_closed(&stream);
    assert_eq!(statuses(&answer), [200]);
    assert_survived(&mut server, rss);
}
