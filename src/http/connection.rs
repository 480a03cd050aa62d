//! The connection loop: one thread per open connection reads a request under limits, runs
//! its handler during a worker turn, and writes the answer; then the next request, while the
//! client keeps the connection alive.
//!
//! No hand-off to another thread, so a plain request costs no context switch. A streamed
//! body's producer runs on a thread of its own, holding its worker turn, and writes its chunks
//! to the socket itself while the connection thread watches (see [`crate::stream`]). A
//! WebSocket's `101` hands the connection to its handler, on this thread and without a worker
//! turn, until the socket closes (see [`crate::websocket`]).

use std::net::{Shutdown, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::admission::{Admission, WorkerTurn};
use super::forwarded;
use super::framing;
use super::slots::{Slot, Slots};
use super::wire::{Connection, Limits, Peer, ReadError};
// The connection runs the app's handlers, and `App::bind` starts the server: the cycle
// app <-> http is the one between the handler API and the transport that serves it.
use crate::app::App;
use crate::response::Body;
use crate::stream::{self, BodyOut, ConnectionEnd, Stream};
use crate::websocket::{self, Upgrade};
use crate::{Error, Headers, Request, Response, ServerMetrics};

/// What the accept thread and every connection thread share.
pub(super) struct Shared {
    pub(super) app: App,
    pub(super) limits: Limits,
    /// The limits on a reserved slot: a health probe sends its request at once.
    pub(super) reserved_limits: Limits,
    pub(super) admission: Arc<Admission>,
    pub(super) stopping: AtomicBool,
    pub(super) metrics: Arc<ServerMetrics>,
    /// The open connections, so a new one can take an idle one's slot and a shutdown can close
    /// idle connections at once and let busy ones finish.
    pub(super) slots: Slots,
    /// The open WebSockets: their cap, and a shutdown that closes them with 1001.
    pub(super) websockets: Arc<websocket::Sockets>,
}

/// A handler's answer, ready to write.
/// Each carries the route template the request matched, for metrics.
enum Answer {
    Full(u16, Headers, Vec<u8>, Option<String>),
    /// A streamed body: another thread runs the producer, which writes once the head is out.
    Stream {
        status: u16,
        headers: Headers,
        body: ConnectionEnd,
        keep_alive: Option<(Duration, Vec<u8>)>,
        route: Option<String>,
    },
    /// `101 Switching Protocols`, then the connection runs a WebSocket handler until it closes.
    Upgrade {
        headers: Headers,
        upgrade: Box<Upgrade>,
        permit: websocket::Permit,
        route: Option<String>,
    },
}

/// What writing an answer did: the status, the route template, the body bytes written (an
/// error when the connection must close) and a WebSocket's messages in and out.
struct Written {
    status: u16,
    route: Option<String>,
    bytes: std::io::Result<u64>,
    messages: Option<(u64, u64)>,
}

impl Answer {
    /// The error response for `err` ([`Response::from_error`]).
    fn error(err: &Error, route: Option<String>) -> Answer {
        Answer::from_response(Response::from_error(err), route)
    }

    /// A response whose body is whole (an error, a preflight); a streamed one is refused.
    fn from_response(response: Response, route: Option<String>) -> Answer {
        match response.into_parts() {
            (status, headers, Body::Full(body)) => Answer::Full(status, headers, body, route),
            // An error response is whole: this does not come back here.
            (_, _, Body::Stream(_) | Body::Upgrade(_)) => Answer::error(
                &Error::internal("a streamed answer to a request settled on its head"),
                route,
            ),
        }
    }
}

/// Runs the handler on this thread, during a worker turn. A streamed body's producer goes to a
/// thread of its own, which keeps the turn until the stream ends. A health probe on a reserved
/// slot (`probe`) runs without a turn: it must answer while the server is full.
fn run(shared: &Arc<Shared>, request: Request, probe: bool) -> Answer {
    let turn = match probe {
        true => None,
        false => match shared.admission.turn() {
            Ok(turn) => Some(turn),
            Err(err) => return Answer::error(&err, None),
        },
    };
    let id = request.request_id().to_string();
    let (response, route) = crate::log::with_request_id(&id, || shared.app.dispatch(request));
    match response.into_parts() {
        // Only a WebSocket route can switch protocols: it takes the connection over.
        (status @ 100..=199, _, Body::Full(_) | Body::Stream(_)) => {
            let message =
                format!("a handler answered {status}: switching protocols takes App::websocket");
            Answer::error(&Error::internal(message), route)
        }
        (status, headers, Body::Full(body)) => Answer::Full(status, headers, body, route),
        (status, headers, Body::Stream(stream)) => {
            produce(shared, turn, (status, headers, route), stream, id)
        }
        // The socket runs without the worker turn, which ends here; it holds a place among
        // the open WebSockets instead.
        (_, headers, Body::Upgrade(upgrade)) => {
            let origins = &shared.app.settings().cors_origins;
            match websocket::admit(&shared.websockets, &upgrade, origins) {
                Ok(permit) => Answer::Upgrade {
                    headers,
                    upgrade,
                    permit,
                    route,
                },
                Err(err) => Answer::error(&err, route),
            }
        }
    }
}

/// Starts a stream's producer on a thread of its own, which keeps the worker turn, and returns
/// the answer whose chunks it sends; or a 503 when the stream cap is reached.
fn produce(
    shared: &Arc<Shared>,
    turn: Option<WorkerTurn>,
    (status, headers, route): (u16, Headers, Option<String>),
    stream: Stream,
    id: String,
) -> Answer {
    let slot = match shared.admission.stream_slot() {
        Ok(slot) => slot,
        Err(err) => return Answer::error(&err, route),
    };
    let (mut sender, producer_end, body) = stream::link();
    let producer = stream.producer;
    let spawned = thread::Builder::new()
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
        });
    if spawned.is_err() {
        let err = Error::overloaded("cannot start a thread for the stream");
        return Answer::error(&err, route);
    }
    Answer::Stream {
        status,
        headers,
        body,
        keep_alive: stream.keep_alive,
        route,
    }
}

/// Serves one connection until it closes: its client's, a shutdown's, or an error's doing.
pub(super) fn serve_connection(shared: &Arc<Shared>, socket: TcpStream, slot: &Slot) {
    let peer = socket.peer_addr().ok();
    let settings = shared.app.settings();
    let limits = match slot.is_reserved() {
        true => &shared.reserved_limits,
        false => &shared.limits,
    };
    let _ = socket.set_nodelay(true);
    let _ = socket.set_write_timeout(Some(settings.io_timeout));
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
        let mut request =
            Request::new(&head.method, &head.target).with_headers(head.headers.clone());
        if let Some(peer) = peer {
            request = request.with_remote_addr(peer);
        }
        let origin = forwarded::resolve(peer, &head.headers, &settings.trusted_proxies);
        let id = crate::ids::request_id(head.header("X-Request-ID"));
        request.set_context(origin, &settings.root_path, id.clone());
        // Settled on the head alone, before any body byte is read or `100 Continue` sent: a
        // reserved slot serves only the health probes, and the API key and CORS preflight
        // are checked here. The body is left unread, so the connection closes after.
        let early = if slot.is_reserved() && !shared.app.is_public(request.path()) {
            let err = Error::overloaded(
                "too many open connections: this reserved connection answers only the health probes",
            );
            Some(Response::from_error(&err))
        } else {
            shared.app.screen(&request)
        };
        let unread_body = early.is_some() && framing.has_body();
        let keep_alive = head.wants_keep_alive()
            && !slot.is_reserved()
            && !unread_body
            && !shared.stopping.load(Ordering::SeqCst);
        let head_only = head.method == "HEAD";
        let (client, path) = (request.client_addr(), request.path().to_string());
        let model = settings
            .access_log
            .then(|| request_model(&request))
            .flatten();
        shared.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let answer = match early {
            Some(response) => Answer::from_response(response, None),
            None => match conn.read_body(&head, framing, limits) {
                Ok(body) => {
                    let mut request = request.with_body(body);
                    request.set_socket(conn.socket(), head.minor_version > 0);
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
        let Written {
            status,
            route,
            bytes: written,
            messages,
        } = write_answer(
            shared,
            &mut conn,
            answer,
            &id,
            keep_alive,
            head_only,
            head.minor_version,
        );
        shared.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        let route = route.unwrap_or_else(|| "(unmatched)".to_string());
        shared
            .metrics
            .record(&head.method, &route, status, started.elapsed());
        let bytes = *written.as_ref().unwrap_or(&0);
        shared
            .metrics
            .bytes_sent
            .fetch_add(bytes, Ordering::Relaxed);
        if settings.access_log {
            crate::log::access(&crate::log::Access {
                client,
                method: &head.method,
                path: &path,
                status,
                bytes,
                duration: started.elapsed(),
                request_id: &id,
                model: model.as_deref(),
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

/// The model a request is about, for the access log: the `<name>` of model routes.
fn request_model(request: &Request) -> Option<String> {
    let path = request.path();
    ["/models/", "/v2/models/"].iter().find_map(|prefix| {
        let rest = path.strip_prefix(prefix)?;
        let name = rest.split('/').next().filter(|n| !n.is_empty())?;
        Some(crate::request::percent_decode(name))
    })
}

/// Writes a handler's answer (for a WebSocket: runs it until it closes).
fn write_answer(
    shared: &Shared,
    conn: &mut Connection,
    answer: Answer,
    id: &str,
    keep_alive: bool,
    head_only: bool,
    minor_version: u8,
) -> Written {
    let with_id = |mut headers: Headers| {
        headers.append("X-Request-ID", id);
        headers
    };
    match answer {
        Answer::Full(status, headers, body, route) => {
            let written = conn
                .write_response(status, &with_id(headers), &body, keep_alive, head_only)
                .map(|()| body.len() as u64);
            Written::new(status, route, written)
        }
        Answer::Stream {
            status,
            headers,
            body,
            keep_alive: comments,
            route,
        } => {
            // HTTP/1.0 has no chunked encoding: the body ends when the connection closes.
            let chunked = minor_version >= 1;
            let keep_alive = keep_alive && chunked;
            let written = conn
                .write_stream_head(status, &with_id(headers), keep_alive, chunked)
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
            Written::new(status, route, written)
        }
        Answer::Upgrade {
            headers,
            upgrade,
            permit,
            route,
        } => {
            if let Err(err) = conn.write_switch_head(&with_id(headers)) {
                return Written::new(101, route, Err(err));
            }
            let buffered = conn.take_buffered();
            let report = websocket::serve(
                conn.socket(),
                buffered,
                *upgrade,
                permit,
                &shared.app.settings().websockets,
                Arc::clone(&shared.metrics),
                Arc::clone(&shared.websockets),
            );
            Written {
                status: 101,
                route,
                bytes: Ok(report.bytes_sent),
                messages: Some((report.received, report.sent)),
            }
        }
    }
}

impl Written {
    fn new(status: u16, route: Option<String>, bytes: std::io::Result<u64>) -> Written {
        Written {
            status,
            route,
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
