//! Header limits: heads over the size or count limit are 431.

use std::io::Write;
use std::thread;

use tinyserve::Settings;

use crate::support::TestServer;

use super::{app, assert_serving, exchange, open, serve};

#[test]
fn one_mebibyte_header_is_431() {
    let server = TestServer::start(app());
    let mut conn = open(server.addr);
    let mut writer = conn.writer();
    // The server stops reading and closes early: write from another thread, ignoring errors.
    let sender = thread::spawn(move || {
        let mut request = b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        request.extend_from_slice(b"\r\n\r\n");
        let _ = writer.write_all(&request);
    });
    conn.response()
        .assert_error(431, "headers_too_large", "16384 bytes");
    sender.join().expect("writer thread");
    assert_serving(&server);
}

/// A GET request whose head (request line, headers, blank line) is exactly `total` bytes.
fn head_of_size(total: usize) -> Vec<u8> {
    let mut head = b"GET / HTTP/1.1\r\nHost: test\r\nX-Pad: ".to_vec();
    let pad = total - head.len() - 4;
    head.extend(std::iter::repeat_n(b'p', pad));
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(head.len(), total);
    head
}

#[test]
fn head_limit_is_exact() {
    let mut settings = Settings::default();
    settings.max_head_bytes = 1024;
    let server = serve(settings);
    // Each head arrives in one read: the limit must hold for complete heads too.
    let reply = exchange(server.addr, &head_of_size(1024));
    assert_eq!(reply.status, 200, "{}", reply.text());
    exchange(server.addr, &head_of_size(1025)).assert_error(431, "headers_too_large", "1024 bytes");
    exchange(server.addr, &head_of_size(4000)).assert_error(431, "headers_too_large", "1024 bytes");
    assert_serving(&server);
}

#[test]
fn too_many_headers_is_431() {
    let server = TestServer::start(app());
    let mut request = String::from("GET / HTTP/1.1\r\nHost: test\r\n");
    for i in 0..200 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    exchange(server.addr, request.as_bytes()).assert_error(431, "headers_too_large", "100 headers");

    // One over the limit of 100 (with Host).
    let mut request = String::from("GET / HTTP/1.1\r\nHost: test\r\n");
    for i in 0..100 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    exchange(server.addr, request.as_bytes()).assert_error(431, "headers_too_large", "100 headers");

    // 99 extra headers (100 with Host) are fine.
    let mut request = String::from("GET / HTTP/1.1\r\nHost: test\r\n");
    for i in 0..99 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let reply = exchange(server.addr, request.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_serving(&server);
}
