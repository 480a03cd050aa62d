//! The connection loop: one thread per open connection reads a request under limits, runs
//! its handler during a worker turn, and writes the answer; then the next request, while the
//! client keeps the connection alive.
//!
//! No hand-off to another thread, so a plain request costs no context switch. A streamed
//! body's producer runs on a thread of its own, holding its worker turn, and writes its chunks
//! to the socket itself while the connection thread watches (see [`crate::stream`]). A `101`
//! hands the connection to the service's takeover (a WebSocket), on this thread and without a
//! worker turn, until the socket closes.

use std::net::{Shutdown, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::admission::{Admission, WorkerTurn};
use super::forwarded::{Origin, TrustedProxies};
use super::framing;
use super::peer::Peer;
use super::service::{Incoming, OnWritten, Reply, ReplyBody, Service, Takeover, Written};
use super::slots::{Slot, Slots};
use super::wire::{Connection, Limits, ReadError};
use crate::stream::{self, BodyOut, ConnectionEnd, Stream};
use crate::{Error, Headers, ServerMetrics};

/// What the accept thread and every connection thread share.
pub(super) struct Shared {
    pub(super) service: Box<dyn Service>,
    pub(super) limits: Limits,
    /// The limits on a reserved slot: a health probe sends its request at once.
    pub(super) reserved_limits: Limits,
    /// Longest pause while the client reads a response.
    pub(super) write_timeout: Duration,
    /// How long a shutdown waits for the open connections.
    pub(super) drain_timeout: Duration,
    pub(super) trusted_proxies: TrustedProxies,
    pub(super) admission: Arc<Admission>,
    pub(super) stopping: AtomicBool,
    pub(super) metrics: Arc<ServerMetrics>,
    /// The open connections, so a new one can take an idle one's slot and a shutdown can close
    /// idle connections at once and let busy ones finish.
    pub(super) slots: Slots,
}

/// A reply ready to write: a stream's producer is already running.
struct Answer {
    status: u16,
    headers: Headers,
    body: Ready,
    route: Option<String>,
    on_written: Option<OnWritten>,
}

enum Ready {
    Whole(Vec<u8>),
    /// Another thread runs the producer, which writes once the head is out.
    Stream {
        body: ConnectionEnd,
        keep_alive: Option<(Duration, Vec<u8>)>,
    },
    /// `101 Switching Protocols`, then the takeover runs the connection until it closes.
    Switch(Takeover),
}

/// What writing an answer did: the body bytes written (an error when the connection must
/// close) and a taken-over connection's messages in and out.
struct Outcome {
    bytes: std::io::Result<u64>,
    messages: Option<(u64, u64)>,
}

impl Answer {
    /// `err`'s answer in place of a reply's, which keeps its route and its call once written.
    fn error(err: &Error, route: Option<String>, on_written: Option<OnWritten>) -> Answer {
        Answer {
            route,
            on_written,
            ..Answer::settled(Reply::error(err))
        }
    }

    /// A reply settled without a worker turn (on the head, or refused): its body is whole.
    fn settled(reply: Reply) -> Answer {
        let Reply {
            status,
            headers,
            body,
            route,
            on_written,
        } = reply;
        match body {
            ReplyBody::Whole(body) => Answer {
                status,
                headers,
                body: Ready::Whole(body),
                route,
                on_written,
            },
            ReplyBody::Stream(_) | ReplyBody::Switch(_) => {
                let message = "a streamed answer to a request settled on its head";
                crate::log::error(message);
                Answer::error(&Error::internal(message), route, on_written)
            }
        }
    }
}

/// Runs the service on this thread, during a worker turn. A streamed body's producer goes to a
/// thread of its own, which keeps the turn until the stream ends. A health probe on a reserved
/// slot (`probe`) runs without a turn: it must answer while the server is full.
fn run(shared: &Arc<Shared>, request: Incoming, probe: bool) -> Answer {
    let turn = match probe {
        true => None,
        false => match shared.admission.turn() {
            Ok(turn) => Some(turn),
            Err(err) => return Answer::settled(shared.service.refuse(&request, &err)),
        },
    };
    let id = request.request_id.clone();
    let Reply {
        status,
        headers,
        body,
        route,
        on_written,
    } = crate::log::with_request_id(&id, || shared.service.respond(request));
    let body = match body {
        ReplyBody::Whole(body) => Ready::Whole(body),
        ReplyBody::Stream(stream) => match produce(shared, turn, stream, id) {
            Ok(ready) => ready,
            Err(err) => return Answer::error(&err, route, on_written),
        },
        // The connection runs without the worker turn, which ends here.
        ReplyBody::Switch(takeover) => Ready::Switch(takeover),
    };
    Answer {
        status,
        headers,
        body,
        route,
        on_written,
    }
}

/// Starts a stream's producer on a thread of its own, which keeps the worker turn, and returns
/// the body whose chunks it sends; or a 503 when the stream cap is reached.
fn produce(
    shared: &Arc<Shared>,
    turn: Option<WorkerTurn>,
    stream: Stream,
    id: String,
) -> Result<Ready, Error> {
    let slot = shared.admission.stream_slot()?;
    let (mut sender, producer_end, body) = stream::link();
    let producer = stream.producer;
    thread::Builder::new()
        .name("tinyserve-stream".into())
        .spawn(move || {
            let panicked = crate::log::with_request_id(&id, || {
                catch_unwind(AssertUnwindSafe(|| producer(&mut sender))).is_err()
            });
            // Free the slot and the turn before the producer's end goes: that ends the body,
            // and a client that has read the end may start its next stream at once, which
            // must find them free.
            drop((slot, turn));
            drop((sender, producer_end));
            if panicked {
                crate::log::error("a stream producer panicked; the stream was cut short");
            }
        })
        .map_err(|_| Error::overloaded("cannot start a thread for the stream"))?;
    Ok(Ready::Stream {
        body,
        keep_alive: stream.keep_alive,
    })
}

/// Serves one connection until it closes: its client's, a shutdown's, or an error's doing.
pub(super) fn serve_connection(shared: &Arc<Shared>, socket: TcpStream, slot: &Slot) {
    let peer = socket.peer_addr().ok();
    let limits = match slot.is_reserved() {
        true => &shared.reserved_limits,
        false => &shared.limits,
    };
    let _ = socket.set_nodelay(true);
    let _ = socket.set_write_timeout(Some(shared.write_timeout));
    let mut conn = Connection::new(socket);
    let mut first = true;
    loop {
        slot.set_idle();
        // Checked after marking the slot idle: a shutdown either sees the mark or is seen here.
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let head = match conn.read_head(limits, first, || slot.set_reading_head()) {
            Ok(head) => head,
            Err(ReadError::Closed) => return,
            Err(ReadError::Reject(err)) => return reject(&mut conn, &err),
        };
        first = false;
        slot.set_busy();
        let started = Instant::now();
        let framing = match framing::framing(&head) {
            Ok(framing) => framing,
            Err(err) => return reject(&mut conn, &err),
        };
        let mut request = Incoming {
            origin: Origin::resolve(peer, &head.headers, &shared.trusted_proxies),
            request_id: crate::ids::request_id(head.header("X-Request-ID")),
            head,
            peer,
            body: Vec::new(),
            socket: None,
            reserved: slot.is_reserved(),
        };
        // Settled on the head alone, before any body byte is read or `100 Continue` sent. The
        // body is left unread, so the connection closes after.
        let early = shared.service.screen(&request);
        let unread_body = early.is_some() && framing.has_body();
        let keep_alive = request.head.wants_keep_alive()
            && !slot.is_reserved()
            && !unread_body
            && !shared.stopping.load(Ordering::SeqCst);
        let head_only = request.head.method == "HEAD";
        let minor_version = request.head.minor_version;
        let (method, id) = (request.head.method.clone(), request.request_id.clone());
        shared.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let answer = match early {
            Some(reply) => Answer::settled(reply),
            None => match conn.read_body(&request.head, framing, limits) {
                Ok(body) => {
                    request.body = body;
                    request.socket = Some(Arc::clone(conn.socket()));
                    run(shared, request, slot.is_reserved())
                }
                Err(err) => {
                    shared.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
                    if let ReadError::Reject(err) = err {
                        reject(&mut conn, &err);
                    }
                    return;
                }
            },
        };
        let Answer {
            status,
            headers,
            body,
            route,
            on_written,
        } = answer;
        let Outcome {
            bytes: written,
            messages,
        } = write_answer(
            &mut conn,
            (status, headers, body),
            &id,
            keep_alive,
            head_only,
            minor_version,
        );
        shared.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        let route = route.as_deref().unwrap_or("(unmatched)");
        shared
            .metrics
            .record(&method, route, status, started.elapsed());
        let bytes = *written.as_ref().unwrap_or(&0);
        shared
            .metrics
            .bytes_sent
            .fetch_add(bytes, Ordering::Relaxed);
        if let Some(on_written) = on_written {
            on_written(&Written {
                status,
                bytes,
                duration: started.elapsed(),
                messages,
            });
        }
        if unread_body {
            linger(conn.socket());
        }
        if written.is_err()
            || messages.is_some()
            || !keep_alive
            || shared.stopping.load(Ordering::SeqCst)
        {
            return;
        }
    }
}

/// Writes an answer (for a takeover: runs it until the connection closes).
fn write_answer(
    conn: &mut Connection,
    (status, mut headers, body): (u16, Headers, Ready),
    id: &str,
    keep_alive: bool,
    head_only: bool,
    minor_version: u8,
) -> Outcome {
    headers.append("X-Request-ID", id);
    match body {
        Ready::Whole(body) => {
            let written = conn
                .write_response(status, &headers, &body, keep_alive, head_only)
                .map(|()| body.len() as u64);
            Outcome::new(written)
        }
        Ready::Stream {
            body,
            keep_alive: comments,
        } => {
            // HTTP/1.0 has no chunked encoding: the body ends when the connection closes.
            let chunked = minor_version >= 1;
            let keep_alive = keep_alive && chunked;
            let written = conn
                .write_stream_head(status, &headers, keep_alive, chunked)
                .and_then(|()| match head_only {
                    true => Ok(0),
                    false => {
                        let out = BodyOut::new(Arc::clone(conn.socket()), chunked);
                        // A client that shut down only its writing side (a half-close) still
                        // reads: its end of stream is not a departure. One that closed the
                        // socket resets the connection at the next chunk.
                        body.watch(out, comments.as_ref(), || conn.peer() == Peer::Gone)
                    }
                })
                .and_then(|bytes| match keep_alive {
                    true => Ok(bytes),
                    false => Err(std::io::Error::other("stream ends the connection")),
                });
            Outcome::new(written)
        }
        Ready::Switch(takeover) => {
            if let Err(err) = conn.write_switch_head(&headers) {
                return Outcome::new(Err(err));
            }
            let buffered = conn.take_buffered();
            let switched = takeover(conn.socket(), buffered);
            Outcome {
                bytes: Ok(switched.bytes_sent),
                messages: Some(switched.messages),
            }
        }
    }
}

impl Outcome {
    fn new(bytes: std::io::Result<u64>) -> Outcome {
        Outcome {
            bytes,
            messages: None,
        }
    }
}

/// Answers a request that could not be read, then closes: the rest of its bytes are unread.
fn reject(conn: &mut Connection, err: &Error) {
    let _ = super::write::write_error(conn.socket(), err);
    linger(conn.socket());
}

/// Ends a connection whose client may still be sending: the answer is written; stop writing,
/// and read what the client already sent (briefly, bounded) so closing does not reset the
/// connection before the client has read the answer.
fn linger(mut socket: &TcpStream) {
    let _ = socket.shutdown(Shutdown::Write);
    let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 8192];
    for _ in 0..16 {
        match std::io::Read::read(&mut socket, &mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
