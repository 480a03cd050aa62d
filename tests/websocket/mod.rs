//! WebSockets (issue #22): Python's `websockets` client against `examples/websocket.rs` (echo,
//! limits, ping, close codes, 200 open sockets, the cap, generation and leaving it), the
//! pipeline before the upgrade (API key, origin, cap, 426, metrics), pings and the idle timeout,
//! a graceful shutdown's 1001, arbitrary bytes into the server's frame reader, and the same echo
//! through the shipped nginx.
//!
//! The raw client here writes the handshake itself and hands the socket to tungstenite in the
//! client role, so a test sees the exact status and headers of a refused upgrade.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tungstenite::protocol::Role;

use crate::support::wire::find;

mod example;
mod frames;
mod nginx;
mod server;

/// Longest any single wait may take; reaching it means a hang and fails.
const BOUND: Duration = Duration::from_secs(30);

/// The client's side of an open WebSocket.
type Client = tungstenite::WebSocket<TcpStream>;

/// An upgrade request for `path` with `extra` header lines (each ending in `\r\n`).
fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Writes `request` on a new connection and reads the response head; returns the head, the
/// socket, and the bytes read past the head.
fn exchange(addr: SocketAddr, request: &[u8]) -> (String, TcpStream, Vec<u8>) {
    let mut socket = TcpStream::connect(addr).expect("connect");
    socket.set_read_timeout(Some(BOUND)).expect("timeout");
    socket.set_write_timeout(Some(BOUND)).expect("timeout");
    socket.write_all(request).expect("write the request");
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(at) = find(&raw, b"\r\n\r\n") {
            break at + 4;
        }
        let n = socket.read(&mut chunk).expect("read the response head");
        assert!(n > 0, "closed before a response head: {raw:?}");
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    (head, socket, raw[end..].to_vec())
}

/// Opens a WebSocket on `path`; panics unless the server answers 101.
fn open(addr: SocketAddr, path: &str) -> Client {
    let (head, socket, rest) = exchange(addr, upgrade_request(path, "").as_bytes());
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
    tungstenite::WebSocket::from_partially_read(socket, rest, Role::Client, None)
}

/// A refused upgrade: the status, the head and the JSON body.
fn refused(addr: SocketAddr, request: &str) -> (u16, String, serde_json::Value) {
    let (head, mut socket, mut body) = exchange(addr, request.as_bytes());
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head}"));
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        let n = socket.read(&mut chunk).expect("read the body");
        assert!(n > 0, "closed inside the body");
        body.extend_from_slice(&chunk[..n]);
    }
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}", String::from_utf8_lossy(&body)));
    (status, head, json)
}

/// Reads until the server's close frame; its code (None: the connection ended without one).
fn close_code(client: &mut Client) -> Option<u16> {
    loop {
        match client.read() {
            Ok(tungstenite::Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// Sends `text` and expects it back.
fn assert_echo(client: &mut Client, text: &str) {
    client
        .send(tungstenite::Message::text(text))
        .expect("send a message");
    match client.read() {
        Ok(tungstenite::Message::Text(echoed)) => assert_eq!(echoed.as_str(), text),
        other => panic!("expected the echo of {text:?}, got {other:?}"),
    }
}

/// The echo route of `examples/websocket.rs`, in this process, with `settings`.
fn echo_app(settings: tinyserve::Settings) -> tinyserve::App {
    use tinyserve::websocket::Message;
    tinyserve::App::new()
        .with_settings(settings)
        .get("/", |_| "hello")
        .websocket("/ws/echo", |_req, socket| loop {
            match socket.recv()? {
                Message::Close(_) => return Ok(()),
                message => socket.send(message)?,
            }
        })
}
