//! Shutdown: prompt with idle keep-alive connections, and the request in flight is answered.

use std::thread;
use std::time::{Duration, Instant};

use crate::support::wire::{get_request, End};

use super::{app, gate, open};

#[test]
fn shutdown_returns_promptly_with_an_idle_keep_alive_connection() {
    let server = app().bind("127.0.0.1:0").expect("bind");
    let mut idle = open(server.addr());
    idle.send(get_request("/echo/idle").as_bytes());
    assert_eq!(idle.response().text(), "idle");
    // The connection now idles in keep-alive (75 s by default).
    let started = Instant::now();
    server.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    idle.assert_closed();
}

#[test]
fn shutdown_answers_the_request_in_flight() {
    let (gate, handler) = gate();
    let server = app()
        .with_workers(1)
        .get("/block", handler)
        .bind("127.0.0.1:0")
        .expect("bind");
    let gate = gate;
    let addr = server.addr();
    let mut idle = open(addr);
    idle.send(get_request("/echo/idle").as_bytes());
    assert_eq!(idle.response().text(), "idle");

    let in_flight = thread::spawn(move || {
        let mut conn = open(addr);
        conn.send(get_request("/block").as_bytes());
        let reply = conn.response();
        let end = conn.finish();
        (reply, (end, conn.unread().to_vec()))
    });
    gate.wait_entered();

    let started = Instant::now();
    server.shutdown_handle().shutdown();
    // Shutdown has started; only now does the handler finish.
    gate.release();
    server.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");

    let (reply, (end, rest)) = in_flight.join().expect("request in flight");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), "released");
    assert_eq!(
        end,
        End::Eof,
        "the connection closes after the last response"
    );
    assert!(rest.is_empty());
    idle.assert_closed();
}
