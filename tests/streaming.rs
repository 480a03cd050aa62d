//! Streamed responses (`Response::stream`, `Sse`) on in-process servers, directly and behind a
//! real nginx.
//!
//! Incremental delivery is proven by ordering, never by timing: the producer sends chunk k only
//! after the test has read chunk k-1 and said so on a channel. A server (or proxy) that held
//! the body back would deadlock such a test, so every client read has a timeout and the test
//! fails instead of hanging. Producers wait on their channels with a timeout too, and end as
//! soon as the test drops its end, so a failing test still lets the server shut down.
//!
//! [`Conn`] (a raw HTTP/1.1 client that decodes chunked framing itself), the SSE parser and
//! the [`Nginx`] runner live in `tests/support/`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tinyserve::{App, Disconnected, Event, Response, Settings, Sse};

use crate::support::nginx::Nginx;
use crate::support::wire::{Conn, ResponseFraming, SseEvent};
use crate::support::TestServer;

/// How long a producer waits for the test's go-ahead; longer than [`READ_LIMIT`], so a client
/// timeout is what reports a failure. A producer also ends when the test drops its sender.
const GATE_LIMIT: Duration = Duration::from_secs(60);
/// How long the test waits for something a producer reports.
const REPORT_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Apps under test

/// Hands the test one go-ahead sender per running producer, in the order they start.
#[derive(Clone)]
struct Gates(Arc<Mutex<Sender<Sender<()>>>>);

impl Gates {
    fn new() -> (Gates, Receiver<Sender<()>>) {
        let (tx, rx) = mpsc::channel();
        (Gates(Arc::new(Mutex::new(tx))), rx)
    }

    /// A new gate: the test gets its sender, the producer waits on the receiver.
    fn open(&self) -> Receiver<()> {
        let (tx, rx) = mpsc::channel();
        let _ = self.0.lock().unwrap_or_else(|p| p.into_inner()).send(tx);
        rx
    }
}

/// Waits for the test's go-ahead; false when the test gave up (dropped it) or never sent it.
fn wait(gate: &Receiver<()>) -> bool {
    gate.recv_timeout(GATE_LIMIT).is_ok()
}

const CHUNKS: usize = 5;

fn chunk_text(k: usize) -> String {
    format!("chunk {k} of {CHUNKS}\n")
}

/// The SSE event k of the ordered stream: typed, with an id, a retry and multi-line data.
fn event(k: usize) -> Event {
    Event::data(format!("line one of {k}\nline two of {k}"))
        .with_event("tick")
        .with_id(k.to_string())
        .with_retry(1000 + k as u64)
}

/// Routes:
/// - `/ordered`: `CHUNKS` chunks, chunk k only after the test's go-ahead for it (k > 0);
/// - `/ordered-sse`: the same as SSE events;
/// - `/ping`: a plain answer.
fn ordered_app(settings: Settings) -> (App, Receiver<Sender<()>>) {
    let (gates, go) = Gates::new();
    let sse_gates = gates.clone();
    let app = App::new()
        .with_settings(settings)
        .get("/ping", |_| "pong")
        .get("/ordered", move |_| {
            let gate = gates.open();
            Response::stream("text/plain; charset=utf-8", move |body| {
                for k in 0..CHUNKS {
                    if k > 0 && !wait(&gate) {
                        return Ok(());
                    }
                    body.send(chunk_text(k))?;
                }
                Ok(())
            })
        })
        .get("/ordered-sse", move |_| {
            let gate = sse_gates.open();
            Sse::new(move |events| {
                for k in 0..CHUNKS {
                    if k > 0 && !wait(&gate) {
                        return Ok(());
                    }
                    events.send(event(k))?;
                }
                Ok(())
            })
        });
    (app, go)
}

fn small_settings() -> Settings {
    let mut settings = Settings::default();
    settings.workers = 4;
    settings.max_streams = Some(2);
    settings
}

fn gate_of(go: &Receiver<Sender<()>>) -> Sender<()> {
    go.recv_timeout(REPORT_LIMIT)
        .expect("the handler ran and handed out its gate")
}

/// Reads `/ordered` chunk by chunk, allowing chunk k+1 only after chunk k arrived.
fn assert_ordered_chunks(addr: SocketAddr, go: &Receiver<Sender<()>>) {
    let mut http = Conn::get(addr, "/ordered");
    assert_eq!(http.status, 200);
    assert_eq!(
        http.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        http.framing,
        ResponseFraming::Chunked,
        "an HTTP/1.1 stream is chunked"
    );
    let gate = gate_of(go);
    for k in 0..CHUNKS {
        // Chunk k can only be here if the server sent it before the body was complete:
        // chunk k+1 does not exist until the next line.
        http.expect_body(chunk_text(k).as_bytes());
        if k + 1 < CHUNKS {
            gate.send(()).expect("the producer waits for the go-ahead");
        }
    }
    assert!(http.at_end(), "the body ends after the last chunk");
}

/// Reads `/ordered-sse` event by event, allowing event k+1 only after event k arrived, and
/// checks the SSE headers (`proxied`: nginx consumes `X-Accel-Buffering`).
fn assert_ordered_events(addr: SocketAddr, go: &Receiver<Sender<()>>, proxied: bool) {
    let mut http = Conn::get(addr, "/ordered-sse");
    assert_eq!(http.status, 200);
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    assert_eq!(http.header("Cache-Control"), Some("no-cache"));
    if proxied {
        assert!(
            http.header("Server")
                .is_some_and(|s| s.starts_with("nginx")),
            "through nginx: {:?}",
            http.headers
        );
    } else {
        assert_eq!(http.header("X-Accel-Buffering"), Some("no"));
    }
    let gate = gate_of(go);
    for k in 0..CHUNKS {
        let got = http.next_data_event().expect("another event");
        assert_eq!(
            got,
            SseEvent {
                event: Some("tick".into()),
                id: Some(k.to_string()),
                retry: Some(1000 + k as u64),
                data: Some(format!("line one of {k}\nline two of {k}")),
                comments: Vec::new(),
            },
            "event {k}"
        );
        if k + 1 < CHUNKS {
            gate.send(()).expect("the producer waits for the go-ahead");
        }
    }
    assert!(http.next_data_event().is_none(), "the stream ends");
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn stream_chunks_arrive_one_by_one() {
    let (app, go) = ordered_app(small_settings());
    let server = TestServer::start(app);
    assert_ordered_chunks(server.addr, &go);
    // Twice, on the same server: the stream's worker and slot were given back.
    assert_ordered_chunks(server.addr, &go);
    assert_eq!(server.get("/ping").text(), "pong");
}

#[test]
fn sse_events_arrive_one_by_one_with_their_fields() {
    let (app, go) = ordered_app(small_settings());
    let server = TestServer::start(app);
    assert_ordered_events(server.addr, &go, false);

    // The exact wire format of one event: fields, then one `data:` line per line of data.
    let (gates, go2) = Gates::new();
    let app = App::new().get("/one", move |_| {
        let gate = gates.open();
        Sse::new(move |events| {
            if wait(&gate) {
                events.send(Event::data("a\nb").with_event("e").with_id("1"))?;
            }
            Ok(())
        })
    });
    let server = TestServer::start(app);
    let mut http = Conn::get(server.addr, "/one");
    gate_of(&go2).send(()).expect("producer waiting");
    assert_eq!(
        http.next_event_text().as_deref(),
        Some("event: e\nid: 1\ndata: a\ndata: b\n\n")
    );
    assert!(http.next_event_text().is_none());
}

#[test]
fn a_client_that_leaves_stops_the_producer() {
    const LIMIT: usize = 1_000_000;
    let sent = Arc::new(AtomicUsize::new(0));
    let (report_tx, report) = mpsc::channel::<Result<(), Disconnected>>();
    let report_tx = Mutex::new(report_tx);
    let counter = Arc::clone(&sent);
    let app = App::new()
        .get("/ping", |_| "pong")
        .get("/endless", move |_| {
            let sent = Arc::clone(&counter);
            let report = report_tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
            Response::stream("text/plain", move |body| {
                let mut outcome = Ok(());
                for i in 0..LIMIT {
                    if let Err(err) = body.send(format!("line {i:07}\n")) {
                        outcome = Err(err);
                        break;
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                let _ = report.send(outcome);
                outcome
            })
        });
    let server = TestServer::start(app);
    let mut http = Conn::get(server.addr, "/endless");
    assert_eq!(http.status, 200);
    http.expect_body(b"line 0000000\n");
    http.expect_body(b"line 0000001\n");
    let at_drop = sent.load(Ordering::SeqCst);
    drop(http);

    let outcome = report
        .recv_timeout(REPORT_LIMIT)
        .expect("the producer ended within 10 s of the client leaving");
    assert_eq!(
        outcome,
        Err(Disconnected),
        "send fails once the client has gone"
    );
    let total = sent.load(Ordering::SeqCst);
    // Whatever the socket buffers absorbed was sent before the drop; after it, the producer
    // learns within a chunk or two (one in the hand-off channel, one being written).
    assert!(
        total - at_drop <= 16,
        "the producer sent {} chunks after the client left (at drop: {at_drop}, total: {total})",
        total - at_drop
    );
    assert!(total < LIMIT / 10, "stopped long before its limit: {total}");
    assert_eq!(
        server.get("/ping").text(),
        "pong",
        "the server still answers"
    );
}

#[test]
fn the_stream_cap_answers_503_and_plain_requests_still_work() {
    let (gates, go) = Gates::new();
    let app = App::new()
        .with_settings(small_settings())
        .get("/ping", |_| "pong")
        .get("/held", move |_| {
            let gates = gates.clone();
            Response::stream("text/plain", move |body| {
                // Only a producer that got a stream slot runs, so only it hands out a gate.
                let gate = gates.open();
                body.send("start\n")?;
                if wait(&gate) {
                    body.send("end\n")?;
                }
                Ok(())
            })
        });
    let server = TestServer::start(app);

    // One after the other, so each gate is known to belong to its stream: a producer hands
    // out its gate before it sends "start".
    let open_held = || {
        let mut held = Conn::get(server.addr, "/held");
        assert_eq!(held.status, 200);
        held.expect_body(b"start\n");
        (held, gate_of(&go))
    };
    let (mut first, first_gate) = open_held();
    let (mut second, second_gate) = open_held();

    // Both slots are held (their producers wait for the test): a third stream is refused at
    // once, as JSON, while plain requests are served by the free workers.
    let third = Conn::get(server.addr, "/held").reply();
    third.assert_error(503, "overloaded", "streams");
    assert_eq!(third.header("Retry-After"), Some("1"));
    for _ in 0..3 {
        let reply = server.get("/ping");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "pong");
    }

    // Release one: its stream completes, and the next stream gets the freed slot.
    first_gate.send(()).expect("producer waiting");
    first.expect_body(b"end\n");
    assert!(first.at_end());
    let mut fourth = Conn::get(server.addr, "/held");
    assert_eq!(fourth.status, 200, "a slot is free again");
    fourth.expect_body(b"start\n");
    gate_of(&go).send(()).expect("producer waiting");
    fourth.expect_body(b"end\n");
    assert!(fourth.at_end());
    second_gate.send(()).expect("producer waiting");
    second.expect_body(b"end\n");
    assert!(second.at_end());
}

#[test]
fn a_finished_stream_frees_its_slot_before_the_client_sees_the_end() {
    // With one slot, stream after stream: each starts right after the previous one ended, so
    // the slot must be free by the time the client reads the end of the previous body.
    let mut settings = Settings::default();
    settings.workers = 2;
    settings.max_streams = Some(1);
    let app = App::new().with_settings(settings).get("/short", |_| {
        Response::stream("text/plain", |body| {
            body.send("a")?;
            body.send("b")
        })
    });
    let server = TestServer::start(app);
    for round in 0..200 {
        let mut http = Conn::get(server.addr, "/short");
        let status = http.status;
        let body = String::from_utf8_lossy(&http.read_to_end()).into_owned();
        assert_eq!((status, body.as_str()), (200, "ab"), "round {round}");
    }
}

#[test]
fn sse_keep_alive_comments_flow_while_the_producer_is_idle() {
    let (gates, go) = Gates::new();
    let app = App::new().get("/quiet", move |_| {
        let gate = gates.open();
        Sse::new(move |events| {
            if wait(&gate) {
                events.send(Event::data("finally"))?;
            }
            Ok(())
        })
        .with_keep_alive(Duration::from_millis(200))
    });
    let server = TestServer::start(app);
    let mut http = Conn::get(server.addr, "/quiet");
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    let gate = gate_of(&go);
    // The producer sends nothing until the test has seen a keep-alive comment.
    let first = http.next_event().expect("a keep-alive comment");
    assert!(
        first.data.is_none() && !first.comments.is_empty(),
        "a comment comes first: {first:?}"
    );
    gate.send(()).expect("producer waiting");
    let event = http.next_data_event().expect("the event");
    assert_eq!(event.data.as_deref(), Some("finally"));
    assert!(http.next_event().is_none());
}

/// `/three`: a stream of three pieces; reports how many the producer sent, or that it was
/// told the client had gone.
fn three_app() -> (App, Receiver<Result<usize, Disconnected>>) {
    let (report_tx, report) = mpsc::channel();
    let report_tx = Mutex::new(report_tx);
    let app = App::new().get("/ping", |_| "pong").get("/three", move |_| {
        let report = report_tx.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Response::stream("text/plain", move |body| {
            let outcome = ["one ", "two ", "three"]
                .iter()
                .try_for_each(|piece| body.send(piece));
            let _ = report.send(outcome.map(|()| 3));
            outcome
        })
    });
    (app, report)
}

#[test]
fn http_1_0_gets_a_close_delimited_stream() {
    let (app, report) = three_app();
    let server = TestServer::start(app);
    let mut http = Conn::request(server.addr, b"GET /three HTTP/1.0\r\n\r\n");
    assert_eq!(http.status, 200);
    assert_eq!(
        http.header("Transfer-Encoding"),
        None,
        "HTTP/1.0 has no chunked encoding"
    );
    assert_eq!(http.header("Content-Length"), None);
    assert_eq!(http.framing, ResponseFraming::Close);
    assert_eq!(
        String::from_utf8_lossy(&http.read_to_end()),
        "one two three",
        "the raw body, unframed, ends when the server closes"
    );
    assert_eq!(
        report.recv_timeout(REPORT_LIMIT).expect("producer ended"),
        Ok(3)
    );
}

#[test]
fn head_on_a_stream_route_sends_the_head_only() {
    let (app, report) = three_app();
    let server = TestServer::start(app);
    let mut conn = Conn::request(
        server.addr,
        b"HEAD /three HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n",
    );
    assert_eq!((conn.version.as_str(), conn.status), ("HTTP/1.1", 200));
    assert!(
        conn.header("Content-Type")
            .is_some_and(|t| t.eq_ignore_ascii_case("text/plain")),
        "{:?}",
        conn.headers
    );
    // No body after the head: the server closes the connection.
    conn.assert_closed();
    // Nobody reads the body: the producer is told at once and stops.
    assert_eq!(
        report.recv_timeout(REPORT_LIMIT).expect("producer ended"),
        Err(Disconnected)
    );
    assert_eq!(server.get("/ping").text(), "pong");
}

#[test]
fn streams_pass_through_nginx_event_by_event() {
    let (app, go) = ordered_app(small_settings());
    let server = TestServer::start(app);
    let nginx = Nginx::start(&server.addr.to_string());

    // A plain request through the proxy.
    let mut http = Conn::get(nginx.addr, "/ping");
    assert_eq!(http.status, 200, "{}", nginx.log());
    assert_eq!(http.read_to_end(), b"pong");

    // nginx runs with its defaults (`proxy_buffering on`); the server's
    // `X-Accel-Buffering: no` asks it not to buffer this response. Whatever nginx does, an
    // event it held back would never arrive: the producer sends event k+1 only after the
    // test has read event k through the proxy.
    assert_ordered_events(nginx.addr, &go, true);
}
