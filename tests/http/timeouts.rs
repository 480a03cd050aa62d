//! Timeouts: a request that stalls anywhere is closed by the server, and the defaults are bounded.

use std::time::Duration;

use tinyserve::Settings;

use crate::support::wire::End;
use crate::support::TestServer;

use super::{assert_serving, open, serve};

fn short_timeouts() -> TestServer {
    let mut settings = Settings::default();
    settings.head_timeout = Duration::from_secs(1);
    settings.io_timeout = Duration::from_secs(1);
    serve(settings)
}

/// A server with 1 s timeouts gets `stalled`, a request that stops in the middle: it closes the
/// connection by itself (the client would wait 10 s), optionally after a 408
/// `request_timeout`, and keeps serving.
fn assert_a_stall_is_closed(stalled: &[u8]) {
    let server = short_timeouts();
    let mut conn = open(server.addr);
    conn.send(stalled);
    let end = conn.finish();
    assert_ne!(
        end,
        End::ClientTimeout,
        "the server kept a stalled connection open; got {:?}",
        String::from_utf8_lossy(conn.unread())
    );
    if !conn.unread().is_empty() {
        let reply = conn.response();
        reply.assert_error(408, "request_timeout", "timed out");
        assert!(conn.unread().is_empty(), "bytes after the 408");
    }
    assert_serving(&server);
}

#[test]
fn stalled_request_line_is_closed() {
    assert_a_stall_is_closed(b"GET /ec");
}

#[test]
fn stalled_headers_are_closed() {
    assert_a_stall_is_closed(b"GET /echo/x HTTP/1.1\r\nHost: test\r\nX-Slow: ");
}

#[test]
fn stalled_body_is_closed() {
    assert_a_stall_is_closed(
        b"POST /len HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789",
    );
}

#[test]
fn default_timeouts_are_bounded() {
    let settings = Settings::default();
    assert!(settings.head_timeout > Duration::ZERO);
    assert!(settings.head_timeout <= Duration::from_secs(60));
    assert!(settings.io_timeout > Duration::ZERO);
    assert!(settings.io_timeout <= Duration::from_secs(60));
    assert!(settings.request_timeout >= settings.head_timeout);
    assert!(settings.request_timeout <= Duration::from_secs(120));
    assert!(settings.keep_alive_timeout > Duration::ZERO);
}
