//! The echo through the shipped nginx (`deploy/nginx/tinyserve.conf`, whose `map` passes an
//! upgrade on and keeps other requests on pooled connections), with Python's client.

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use tinyserve::Settings;

use super::{echo_app, exchange, upgrade_request};
use crate::production::shipped_nginx;
use crate::support::process::run;
use crate::support::python::{assert_checks_passed, python_env};
use crate::support::{repo, TestServer};

#[test]
fn the_echo_passes_the_shipped_nginx() {
    let server = TestServer::start(echo_app(Settings::default()));
    let nginx = shipped_nginx([server.addr, server.addr], "");
    let mut command = Command::new(python_env());
    command
        .arg(repo("tests/python/websocket_check.py"))
        .arg(format!("http://{}/api", nginx.addr))
        .arg("echo");
    let out = run(command, Duration::from_secs(120));
    let report = format!("{}\nnginx:\n{}", out.report(), nginx.log());
    assert_checks_passed(&out, "websocket_check.py", &report, &["ok    echo: text"]);
    // Plain requests still go through on the same configuration.
    let reply = crate::support::send(
        &crate::support::agent(Duration::from_secs(30)),
        "GET",
        &format!("http://{}/api/", nginx.addr),
        &[],
        b"",
    );
    assert_eq!((reply.status, reply.text().as_str()), (200, "hello"));
}

#[test]
fn behind_the_shipped_nginx_the_socket_sees_the_forwarded_client() {
    // The handler's first message: what the request knows of its client, through the proxy's
    // forwarded headers (believed from loopback, the default trusted proxy).
    let app = echo_app(Settings::default()).websocket("/ws/whoami", |req, socket| {
        socket.send(json!({
            "root_path": req.root_path(),
            "host": req.host(),
            "client": req.client_addr().map(|ip| ip.to_string()),
        }))
    });
    let server = TestServer::start(app);
    let nginx = shipped_nginx([server.addr, server.addr], "");
    // The browser's page is on the proxy's host: its Origin passes through X-Forwarded-Host.
    let request = upgrade_request("/api/ws/whoami", "Origin: http://test\r\n");
    let (head, socket, rest) = exchange(nginx.addr, request.as_bytes());
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}\n{}", nginx.log());
    let mut client = tungstenite::WebSocket::from_partially_read(
        socket,
        rest,
        tungstenite::protocol::Role::Client,
        None,
    );
    let first = match client.read() {
        Ok(tungstenite::Message::Text(text)) => text.as_str().to_string(),
        other => panic!("expected the handler's message, got {other:?}"),
    };
    let seen: serde_json::Value = serde_json::from_str(&first).expect("JSON");
    assert_eq!(
        seen,
        json!({"root_path": "/api", "host": "test", "client": "127.0.0.1"})
    );
}
