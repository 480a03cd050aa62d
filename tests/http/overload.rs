//! Overload: a full queue answers 503 at once while accepted requests complete.

use std::sync::mpsc;
use std::thread;

use tinyserve::Settings;

use crate::support::wire::get_request;
use crate::support::TestServer;

use super::{app, assert_serving, exchange, gate, open, CLIENT_TIMEOUT};

#[test]
fn full_queue_answers_503_at_once_and_accepted_requests_complete() {
    let (gate, handler) = gate();
    let mut settings = Settings::default();
    settings.workers = 1;
    settings.queue_capacity = 1;
    let server = TestServer::start(app().with_settings(settings).get("/block", handler));
    // Dropped before `server`, so a failing test releases the handler instead of hanging.
    let gate = gate;
    let addr = server.addr;

    // A occupies the only worker.
    let a = thread::spawn(move || exchange(addr, get_request("/block").as_bytes()));
    gate.wait_entered();

    // B and C: one of them takes the only queue slot, the other must get 503 while A still
    // holds the worker. Which is which depends on which reaches the queue first.
    let (replies_tx, replies) = mpsc::channel();
    for name in ["B", "C"] {
        let mut conn = open(addr);
        conn.send(get_request(&format!("/echo/{name}")).as_bytes());
        let replies_tx = replies_tx.clone();
        thread::spawn(move || {
            let _ = replies_tx.send((name, conn.response()));
        });
    }
    let (rejected, reply) = replies
        .recv_timeout(CLIENT_TIMEOUT)
        .expect("a request beyond the queue should get an answer while the worker is busy");
    reply.assert_error(503, "overloaded", "queue");
    assert_eq!(reply.header("Retry-After"), Some("1"));

    gate.release();
    let a = a.join().expect("request A");
    assert_eq!(a.status, 200, "A: {}", a.text());
    assert_eq!(a.text(), "released");
    let (queued, reply) = replies
        .recv_timeout(CLIENT_TIMEOUT)
        .expect("the queued request should be answered");
    assert_ne!(queued, rejected);
    assert_eq!(reply.status, 200, "{queued}: {}", reply.text());
    assert_eq!(reply.text(), queued);
    assert_serving(&server);
}
