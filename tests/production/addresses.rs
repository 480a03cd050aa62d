//! Client address, scheme, host, prefix and request id behind the shipped nginx.

use std::net::SocketAddr;

use serde_json::{json, Value};
use tinyserve::http::TrustedProxies;
use tinyserve::{App, Request, Settings};

use crate::support::process::wait_until;
use crate::support::wire::Conn;
use crate::support::TestServer;

use super::{shipped_nginx, BOUND};

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
pub(crate) fn get_with(addr: SocketAddr, path: &str, extra: &str) -> (Conn, Value) {
    let request = format!("GET {path} HTTP/1.1\r\n{extra}Connection: close\r\n\r\n");
    let mut http = Conn::request(addr, request.as_bytes());
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
    let spoofed = |addr| {
        let (http, who) = get_with(addr, "/whoami", spoof);
        assert_eq!(http.status, 200);
        assert_eq!(
            who,
            json!({"peer": "127.0.0.1", "client": "127.0.0.1", "scheme": "http",
                   "host": "direct.example", "root_path": "", "base_url": "http://direct.example",
                   "request_id": "direct-1"})
        );
        http
    };
    let http = spoofed(server.addr);
    assert_eq!(http.header("X-Request-ID"), Some("direct-1"));

    // An app that trusts nobody ignores them as well.
    let untrusting = TestServer::start(whoami_app(TrustedProxies::none()));
    spoofed(untrusting.addr);
}
