//! Connections: a thousand at once, the idle-longest eviction, the per-address cap and the reserved
//! slots for health probes.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use tinyserve::http::TrustedProxies;
use tinyserve::Settings;

use crate::support::wire::{get_request, Conn, End};
use crate::support::TestServer;

use super::{app, assert_serving, exchange, gate, heavy, open, serve, Gate};

#[test]
fn thousand_concurrent_connections_are_all_served() {
    let _heavy = heavy();
    assert!(Settings::default().max_connections >= 1000);
    let server = TestServer::start(app());
    let started = Instant::now();
    let mut conns: Vec<Conn> = (0..1000).map(|_| open(server.addr)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(get_request(&format!("/echo/{i}")).as_bytes());
    }
    // Every connection is still open here: all 1000 are served at the same time.
    for (i, conn) in conns.iter_mut().enumerate() {
        let reply = conn.response();
        assert_eq!(reply.status, 200, "connection {i}: {}", reply.text());
        assert_eq!(reply.text(), i.to_string(), "connection {i}");
    }
    // And each stays usable (keep-alive).
    for (i, conn) in conns.iter_mut().enumerate().step_by(97) {
        conn.send(get_request(&format!("/echo/again{i}")).as_bytes());
        assert_eq!(conn.response().text(), format!("again{i}"));
    }
    drop(conns);
    assert_serving(&server);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "1000 connections took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_new_connection_takes_the_slot_of_the_one_idle_longest() {
    let mut settings = Settings::default();
    settings.max_connections = 10;
    let server = serve(settings);
    let mut conns: Vec<Conn> = (0..10).map(|_| open(server.addr)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(get_request(&format!("/echo/{i}")).as_bytes());
        assert_eq!(conn.response().text(), i.to_string());
    }
    // All 10 slots are open and idle between requests: an 11th connection is served, and the
    // connection idle longest is closed for it. (Which one that is depends on when each
    // connection thread marked itself idle after answering, so the test does not name it.)
    let mut extra = open(server.addr);
    extra.send(get_request("/echo/extra").as_bytes());
    assert_eq!(extra.response().text(), "extra");
    // The server closed it before answering the newcomer: its end of stream is already here.
    let closed: Vec<usize> = conns
        .iter()
        .enumerate()
        .filter(|(_, conn)| conn.is_closed_by_server())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(closed.len(), 1, "closed: {closed:?}");
    conns.remove(closed[0]).assert_closed();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(get_request(&format!("/echo/again{i}")).as_bytes());
        assert_eq!(conn.response().text(), format!("again{i}"));
    }
    assert_serving(&server);
}

#[test]
fn one_address_holds_at_most_max_connections_per_ip_unless_it_is_a_trusted_proxy() {
    let mut settings = Settings::default();
    settings.max_connections_per_ip = 3;
    settings.trusted_proxies = TrustedProxies::none();
    let server = serve(settings.clone());
    let mut conns: Vec<Conn> = (0..3).map(|_| open(server.addr)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(get_request(&format!("/echo/{i}")).as_bytes());
        assert_eq!(conn.response().text(), i.to_string());
    }
    let mut fourth = open(server.addr);
    fourth
        .response()
        .assert_error(503, "overloaded", "from one address (limit 3)");
    assert_eq!(fourth.finish(), End::Eof);
    // A closed connection gives its slot back (noticed asynchronously: poll, bounded).
    drop(conns.pop());
    wait_until_served(server.addr, "/echo/again");

    // Behind a trusted proxy (loopback by default) the cap does not apply.
    settings.trusted_proxies = TrustedProxies::default();
    let proxied = serve(settings);
    let mut conns: Vec<Conn> = (0..6).map(|_| open(proxied.addr)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(get_request(&format!("/echo/{i}")).as_bytes());
        assert_eq!(conn.response().text(), i.to_string());
    }
    assert_serving(&proxied);
}

/// Asks for `path` on new connections until one is served: the server notices closed
/// connections asynchronously, so this polls (500 tries, 10 ms apart); fails with the last refusal.
fn wait_until_served(addr: SocketAddr, path: &str) {
    let mut last = None;
    for _ in 0..500 {
        let reply = exchange(addr, get_request(path).as_bytes());
        if reply.status == 200 {
            last = None;
            break;
        }
        last = Some(reply);
        thread::sleep(Duration::from_millis(10));
    }
    assert!(last.is_none(), "still refused: {last:?}");
}

/// A server with 10 connection slots whose `/held` handler blocks until released; `/held`
/// and `/healthz` are the health probe paths, served on the reserved slots too.
fn held_server() -> (Gate, TestServer) {
    let (gate, held) = gate();
    let mut settings = Settings::default();
    settings.max_connections = 10;
    settings.public_paths = vec!["/healthz".to_string(), "/held".to_string()];
    let app = app()
        .get("/healthz", |_| "ok")
        .get("/held", held)
        .with_settings(settings);
    (gate, TestServer::start(app))
}

/// `n` connections, each with a request in the blocked handler.
fn hold(server: &TestServer, gate: &Gate, n: usize) -> Vec<Conn> {
    (0..n)
        .map(|_| {
            let mut conn = open(server.addr);
            conn.send(get_request("/held").as_bytes());
            gate.wait_entered();
            conn
        })
        .collect()
}

/// Releases every held handler (in whatever order they take the releases), then reads their
/// answers.
fn release_all(gate: &Gate, held: Vec<Conn>) {
    for _ in &held {
        gate.release();
    }
    for mut conn in held {
        assert_eq!(conn.response().text(), "released");
    }
}

#[test]
fn when_every_slot_is_busy_a_reserved_slot_answers_health_probes() {
    let (gate, server) = held_server();
    let held = hold(&server, &gate, 10);
    let mut probe = open(server.addr);
    probe.send(get_request("/healthz").as_bytes());
    let reply = probe.response();
    assert_eq!((reply.status, reply.text().as_str()), (200, "ok"));
    assert_eq!(reply.header("Connection"), Some("close"));
    probe.assert_closed();
    let mut other = open(server.addr);
    other.send(get_request("/echo/x").as_bytes());
    let reply = other.response();
    reply.assert_error(503, "overloaded", "answers only the health probes");
    other.assert_closed();
    release_all(&gate, held);
    assert_serving(&server);
}

#[test]
fn when_the_reserved_slots_are_busy_too_new_connections_get_503_at_once() {
    let (gate, server) = held_server();
    let held = hold(&server, &gate, 10 + 16);
    let mut extra = open(server.addr);
    let reply = extra.response();
    reply.assert_error(503, "overloaded", "too many open connections");
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert_eq!(extra.finish(), End::Eof);
    release_all(&gate, held);
    // The slots free up as the connections close (the reserved ones after one request), which
    // the server notices asynchronously: poll, bounded.
    wait_until_served(server.addr, "/echo/back");
    assert_serving(&server);
}
