//! Body limits: declared, exact and chunked bodies over the limit are 413.

use crate::support::wire::End;
use crate::support::TestServer;

use super::{app, assert_serving, exchange, open};

#[test]
fn huge_content_length_is_413_and_the_server_keeps_serving() {
    let server = TestServer::start(app());
    let mut conn = open(server.addr);
    conn.send(
        b"POST /len HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Content-Length: 1000000000000\r\n\r\n{\"a\":",
    );
    conn.response()
        .assert_error(413, "payload_too_large", "limit of 10485760 bytes");
    let end = conn.finish();
    assert_ne!(
        end,
        End::ClientTimeout,
        "the server should close after a 413"
    );
    let rest = conn.unread();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(rest));

    // Longer than any integer.
    let reply = exchange(
        server.addr,
        b"POST /len HTTP/1.1\r\nHost: test\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
    );
    reply.assert_error(413, "payload_too_large", "limit");
    assert_serving(&server);
}

#[test]
fn body_limit_is_exact() {
    let server = TestServer::start(app().with_max_body_bytes(1024));
    let post = |len: usize| {
        server.request(
            "POST",
            "/len",
            &[("Content-Type", "application/octet-stream")],
            &vec![b'x'; len],
        )
    };
    let reply = post(1024);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "1024");
    post(1025).assert_error(413, "payload_too_large", "1024");
    assert_eq!(post(0).text(), "0");
    assert_eq!(post(1024).text(), "1024");
}

#[test]
fn chunked_body_over_the_limit_is_413() {
    let server = TestServer::start(app().with_max_body_bytes(1024));
    let chunk = |len: usize| {
        let mut out = format!("{len:x}\r\n").into_bytes();
        out.extend(std::iter::repeat_n(b'x', len));
        out.extend_from_slice(b"\r\n");
        out
    };
    let head = b"POST /len HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";

    // Exactly at the limit, in two chunks: accepted.
    let mut request = head.to_vec();
    request.extend(chunk(1000));
    request.extend(chunk(24));
    request.extend_from_slice(b"0\r\n\r\n");
    let reply = exchange(server.addr, &request);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "1024");

    // One byte over: refused.
    let mut request = head.to_vec();
    request.extend(chunk(1000));
    request.extend(chunk(25));
    request.extend_from_slice(b"0\r\n\r\n");
    exchange(server.addr, &request).assert_error(413, "payload_too_large", "1024");

    // A single chunk announcing far more than the limit: refused before it is read.
    let mut request = head.to_vec();
    request.extend_from_slice(b"fffffffff\r\nxxxx");
    exchange(server.addr, &request).assert_error(413, "payload_too_large", "1024");
    assert_serving(&server);
}
