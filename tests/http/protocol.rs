//! Protocol details: keep-alive, pipelining, `Connection: close`, HTTP/1.0, `100 Continue`, chunked
//! request bodies, malformed request lines and conflicting lengths.

use crate::support::wire::{get_request, End};
use crate::support::TestServer;

use super::{app, assert_serving, exchange, open};

#[test]
fn keep_alive_serves_two_requests_on_one_socket() {
    let server = TestServer::start(app());
    let mut conn = open(server.addr);
    for word in ["one", "two", "three"] {
        conn.send(get_request(&format!("/echo/{word}")).as_bytes());
        let reply = conn.response();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), word);
        assert_ne!(reply.header("Connection"), Some("close"));
    }
    // An error response does not end a keep-alive connection either.
    conn.send(get_request("/missing").as_bytes());
    conn.response().assert_error(404, "not_found", "/missing");
    conn.send(b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nbody");
    assert_eq!(conn.response().text(), "body");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start(app());
    let mut conn = open(server.addr);
    let mut batch = get_request("/echo/first").into_bytes();
    batch
        .extend_from_slice(b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\n\r\nsecond");
    batch.extend(get_request("/echo/third").into_bytes());
    conn.send(&batch);
    for expected in ["first", "second", "third"] {
        let reply = conn.response();
        assert_eq!(reply.status, 200, "{expected}");
        assert_eq!(reply.text(), expected);
    }
    conn.send(get_request("/echo/fourth").as_bytes());
    assert_eq!(conn.response().text(), "fourth");
}

/// `request` (a GET of `/echo/{text}`) is answered with `Connection: close`, and the server
/// closes the connection.
fn assert_answered_then_closed(request: &[u8], text: &str) {
    let server = TestServer::start(app());
    let mut conn = open(server.addr);
    conn.send(request);
    let reply = conn.response();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), text);
    assert_eq!(reply.header("Connection"), Some("close"));
    conn.assert_closed();
    assert_serving(&server);
}

#[test]
fn connection_close_is_honored() {
    assert_answered_then_closed(
        b"GET /echo/bye HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
        "bye",
    );
}

#[test]
fn http_1_0_without_keep_alive_closes() {
    assert_answered_then_closed(b"GET /echo/old HTTP/1.0\r\n\r\n", "old");
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let server = TestServer::start(app());
    let mut conn = open(server.addr);
    conn.send(
        b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = conn.response();
    assert_eq!(interim.status, 100, "{interim:?}");
    assert!(interim.body.is_empty());
    conn.send(b"hello");
    let reply = conn.response();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello");

    // Over the limit: a 413 instead of 100 Continue, before the client sends the body.
    let server = TestServer::start(app().with_max_body_bytes(4));
    let mut conn = open(server.addr);
    conn.send(
        b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    conn.response()
        .assert_error(413, "payload_too_large", "4 bytes");
}

#[test]
fn chunked_request_body_is_decoded() {
    let server = TestServer::start(app());
    let mut conn = open(server.addr);
    conn.send(
        b"POST /body HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    let reply = conn.response();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "hello world");
    // The connection is still in sync after the chunked body.
    conn.send(get_request("/echo/next").as_bytes());
    assert_eq!(conn.response().text(), "next");

    let reply = exchange(
        server.addr,
        b"POST /body HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    reply.assert_error(400, "bad_request", "chunk size");
}

#[test]
fn malformed_request_line_is_400() {
    let server = TestServer::start(app());
    for garbage in [
        &b"THIS IS NOT HTTP\r\n\r\n"[..],
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    ] {
        let mut conn = open(server.addr);
        conn.send(garbage);
        conn.response()
            .assert_error(400, "bad_request", "malformed request");
        let end = conn.finish();
        assert_ne!(
            end,
            End::ClientTimeout,
            "the server should close after a 400"
        );
    }
    assert_serving(&server);
}

#[test]
fn conflicting_content_length_is_400() {
    let server = TestServer::start(app());
    let reply = exchange(
        server.addr,
        b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    );
    reply.assert_error(400, "bad_request", "conflicting Content-Length");
    let reply = exchange(
        server.addr,
        b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: -5\r\n\r\nhello",
    );
    reply.assert_error(400, "bad_request", "Content-Length");
    // The same length twice is not a conflict.
    let reply = exchange(
        server.addr,
        b"POST /body HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert_eq!(reply.text(), "hello");
    assert_serving(&server);
}
