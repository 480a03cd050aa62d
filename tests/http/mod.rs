//! The HTTP contract, on real servers bound to port 0: routing, handler return types, JSON
//! errors, overload, abuse (limits and timeouts), protocol details and shutdown.
//!
//! Every test checks what a client relies on (status, Content-Type, JSON `code` and message)
//! and that the server still answers the next request. Synchronization is by ordering
//! (channels, responses), never by sleeping.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use tinyserve::{App, Request, Settings};

use crate::support::wire::Conn;
use crate::support::{Reply, TestServer};

mod body_limits;
mod connections;
mod handlers;
mod header_limits;
mod hello;
mod memory;
mod overload;
mod panics;
mod protocol;
mod routing;
mod shutdown;
mod timeouts;

/// How long a client waits for the server before the test gives up.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Serializes the tests that load the whole process (1000 connections) or measure it (RSS).
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The app most tests serve: a greeting, an echo of a path parameter, a query parameter and
/// the request body.
fn app() -> App {
    App::new()
        .get("/", |_| "Hello, world!")
        .get("/echo/<text>", |req| {
            req.param("text").unwrap_or("<missing>").to_string()
        })
        .get("/query", |req| json!({"q": req.query_param("q")}))
        .post("/body", |req| {
            String::from_utf8_lossy(req.body()).into_owned()
        })
        .post("/len", |req| req.body().len().to_string())
}

fn serve(settings: Settings) -> TestServer {
    TestServer::start(app().with_settings(settings))
}

/// The server answers a plain request: it survived whatever the test did before.
fn assert_serving(server: &TestServer) {
    let reply = server.get("/");
    assert_eq!(
        reply.status,
        200,
        "server should still serve: {}",
        reply.text()
    );
    assert_eq!(reply.text(), "Hello, world!");
}

/// A handler that blocks until the test releases it, and tells the test when it has started.
/// The handler never blocks longer than 30 s, so a failing test still lets the server stop.
struct Gate {
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

fn gate() -> (
    Gate,
    impl Fn(&Request) -> &'static str + Send + Sync + 'static,
) {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let handler = move |_: &Request| {
        let _ = entered_tx.send(());
        let release = release_rx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = release.recv_timeout(Duration::from_secs(30));
        "released"
    };
    let gate = Gate {
        entered: entered_rx,
        release: release_tx,
    };
    (gate, handler)
}

impl Gate {
    fn wait_entered(&self) {
        self.entered
            .recv_timeout(CLIENT_TIMEOUT)
            .expect("the blocking handler should start");
    }

    fn release(&self) {
        self.release.send(()).expect("release the blocking handler");
    }
}

/// A connection on which the client waits [`CLIENT_TIMEOUT`] for the server.
fn open(addr: SocketAddr) -> Conn {
    Conn::open_with(addr, CLIENT_TIMEOUT)
}

/// Sends `bytes` on a new connection and reads one response.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut conn = open(addr);
    conn.send(bytes);
    conn.response()
}
