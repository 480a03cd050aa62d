//! The upgrade through the request pipeline, the socket's limits in time, and shutdown.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use tinyserve::app::ApiKey;
use tinyserve::{App, Disconnected, Response, Settings};

use super::{assert_echo, close_code, echo_app, exchange, open, refused, upgrade_request, BOUND};
use crate::support::process::wait_until;
use crate::support::TestServer;

/// The server's metrics as Prometheus text.
fn metrics_text(metrics: &Arc<tinyserve::metrics::ServerMetrics>) -> String {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    text
}

#[test]
fn refusals_come_before_the_upgrade_and_sockets_are_counted() {
    let mut settings = Settings::default();
    settings.api_key = Some(ApiKey::new("k"));
    settings.cors_origins = vec!["https://ok.example".into()];
    settings.websockets.max_open = 2;
    let app = echo_app(settings).get("/switch", |_| Response::empty(101));
    let metrics = app.metrics();
    let server = TestServer::start(app);
    let key = "Authorization: Bearer k\r\n";

    let (status, _, body) = refused(server.addr, &upgrade_request("/ws/echo", ""));
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let evil = format!("{key}Origin: https://evil.example\r\n");
    let (status, _, body) = refused(server.addr, &upgrade_request("/ws/echo", &evil));
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let plain = format!("GET /ws/echo HTTP/1.1\r\nHost: t\r\n{key}\r\n");
    let (status, head, body) = refused(server.addr, &plain);
    assert_eq!(
        (status, body["code"].as_str()),
        (426, Some("upgrade_required"))
    );
    assert!(head.contains("HTTP/1.1 426 Upgrade Required\r\n"), "{head}");
    assert!(head.contains("Upgrade: websocket\r\n"), "{head}");
    let v8 = upgrade_request("/ws/echo", key).replace("Version: 13", "Version: 8");
    let (status, head, _) = refused(server.addr, &v8);
    assert_eq!(status, 426);
    assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
    let keyless = upgrade_request("/ws/echo", key).replace("Sec-WebSocket-Key", "X-Key");
    assert_eq!(refused(server.addr, &keyless).0, 400);
    // A plain handler cannot switch protocols: 500, never "101 Unknown" with a body.
    let (status, head, _) = refused(
        server.addr,
        &format!("GET /switch HTTP/1.1\r\nHost: t\r\n{key}\r\n"),
    );
    assert_eq!(status, 500, "{head}");

    let ok = format!("{key}Origin: https://ok.example\r\n");
    let (head, socket, rest) = exchange(server.addr, upgrade_request("/ws/echo", &ok).as_bytes());
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        !head.contains("Content-Length") && !head.contains("chunked"),
        "{head}"
    );
    let mut first = tungstenite::WebSocket::from_partially_read(
        socket,
        rest,
        tungstenite::protocol::Role::Client,
        None,
    );
    let same_host = format!("{key}Origin: http://test\r\n");
    let (head, socket, _) = exchange(
        server.addr,
        upgrade_request("/ws/echo", &same_host).as_bytes(),
    );
    assert!(
        head.starts_with("HTTP/1.1 101 "),
        "the own host is allowed: {head}"
    );
    assert_echo(&mut first, "one");
    let (status, _, body) = refused(server.addr, &upgrade_request("/ws/echo", key));
    assert_eq!(status, 503);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many open WebSockets (limit 2)")),
        "{body}"
    );
    // The echo can reach the client before the server's thread counts the message it sent.
    let lines = [
        "tinyserve_open_websockets 2\n",
        "tinyserve_websocket_messages_received_total 1\n",
        "tinyserve_websocket_messages_sent_total 1\n",
        "tinyserve_rejected_total{reason=\"websockets\"} 1\n",
    ];
    let counted = wait_until(BOUND, || {
        let text = metrics_text(&metrics);
        lines.iter().all(|line| text.contains(line))
    });
    let text = metrics_text(&metrics);
    assert!(counted, "{lines:?} in\n{text}");
    // A closed socket gives its place back.
    drop(socket);
    assert!(wait_until(BOUND, || metrics_text(&metrics)
        .contains("tinyserve_open_websockets 1\n")));
    let (head, _socket, _) = exchange(server.addr, upgrade_request("/ws/echo", key).as_bytes());
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

#[test]
fn first_frames_sent_with_the_handshake_are_read() {
    let server = TestServer::start(echo_app(Settings::default()));
    // A masked text frame "hi" right behind the request head, in the same write.
    let mut bytes = upgrade_request("/ws/echo", "").into_bytes();
    let mask = [1u8, 2, 3, 4];
    bytes.extend_from_slice(&[0x81, 0x82]);
    bytes.extend_from_slice(&mask);
    bytes.extend(b"hi".iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    let (head, mut socket, mut rest) = exchange(server.addr, &bytes);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    while rest.len() < 4 {
        let mut chunk = [0u8; 16];
        let n = socket.read(&mut chunk).expect("read the echo");
        assert!(n > 0, "closed before the echo");
        rest.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(&rest[..4], &[0x81, 0x02, b'h', b'i']);
}

#[test]
fn a_silent_client_is_pinged_then_closed_with_1011() {
    let mut settings = Settings::default();
    settings.websockets.idle_timeout = Duration::from_millis(600);
    let server = TestServer::start(echo_app(settings));
    let started = Instant::now();
    let (head, mut socket, mut raw) =
        exchange(server.addr, upgrade_request("/ws/echo", "").as_bytes());
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // Read the server's (unmasked) frames raw: this client answers nothing.
    let mut frames = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        while raw.len() >= 2 && raw.len() >= 2 + usize::from(raw[1] & 0x7f) {
            let len = usize::from(raw[1] & 0x7f);
            frames.push((raw[0] & 0x0f, raw[2..2 + len].to_vec(), started.elapsed()));
            raw.drain(..2 + len);
        }
        match socket.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    let opcodes: Vec<u8> = frames.iter().map(|f| f.0).collect();
    assert_eq!(opcodes, [0x9, 0x8], "a ping, then a close: {frames:?}");
    assert!(frames[0].2 >= Duration::from_millis(300), "{frames:?}");
    assert!(frames[1].2 >= Duration::from_millis(600), "{frames:?}");
    assert_eq!(&frames[1].1[..2], &1011u16.to_be_bytes(), "{frames:?}");
}

#[test]
fn a_client_that_answers_pings_stays_open_past_the_idle_timeout() {
    let mut settings = Settings::default();
    settings.websockets.idle_timeout = Duration::from_millis(400);
    let server = TestServer::start(echo_app(settings));
    let mut client = open(server.addr, "/ws/echo");
    client
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    // tungstenite answers each ping while it reads; three idle timeouts pass.
    let until = Instant::now() + Duration::from_millis(1200);
    let mut pings = 0;
    while Instant::now() < until {
        match client.read() {
            Ok(tungstenite::Message::Ping(_)) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(err))
                if err.kind() == std::io::ErrorKind::WouldBlock
                    || err.kind() == std::io::ErrorKind::TimedOut => {}
            Err(err) => panic!("the socket closed: {err}"),
        }
    }
    assert!(pings >= 2, "{pings} pings");
    client
        .get_ref()
        .set_read_timeout(Some(BOUND))
        .expect("timeout");
    assert_echo(&mut client, "still here");
}

#[test]
fn a_graceful_shutdown_closes_each_socket_with_1001() {
    let server = App::new()
        .websocket("/ws/echo", |_req, socket| -> Result<(), Disconnected> {
            loop {
                let message = socket.recv()?;
                socket.send(message)?;
            }
        })
        .bind("127.0.0.1:0")
        .expect("bind");
    let mut clients: Vec<_> = (0..3).map(|_| open(server.addr(), "/ws/echo")).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        assert_echo(client, &format!("before {i}"));
    }
    let started = Instant::now();
    let stopping = std::thread::spawn(move || server.shutdown());
    for client in &mut clients {
        assert_eq!(close_code(client), Some(1001));
    }
    stopping.join().expect("shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn open_sockets_hold_no_worker_turn() {
    // Two worker turns and a queue of one: were sockets to hold turns, the third socket and
    // every plain request would wait or get 503.
    let mut settings = Settings::default();
    settings.workers = 2;
    settings.queue_capacity = 1;
    let server = TestServer::start(echo_app(settings));
    let mut clients: Vec<_> = (0..20).map(|_| open(server.addr, "/ws/echo")).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        assert_echo(client, &format!("socket {i}"));
    }
    for _ in 0..5 {
        let reply = server.get("/");
        assert_eq!((reply.status, reply.text().as_str()), (200, "hello"));
    }
    assert_echo(&mut clients[0], "still open");
}
