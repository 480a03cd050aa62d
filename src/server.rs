//! The running server: one accept thread and one thread per open connection (capped).
//!
//! A connection thread reads a request under limits, runs its handler, and writes the answer:
//! no hand-off to another thread, so a request costs no context switch. At most `workers`
//! handlers run at once (a counting semaphore); up to `queue_capacity` more wait for a turn, and
//! beyond that the connection thread answers 503 at once, so latency cannot grow without bound.
//! A streamed body's producer runs on a thread of its own, holding its worker turn, and writes
//! its chunks to the socket itself while the connection thread watches (see [`crate::stream`]).
//!
//! Which connections may be open is up to [`crate::slots`]; a connection on a reserved slot
//! serves only the health probes, so a server that is merely full still looks alive.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::app::App;
use crate::framing;
use crate::response::Body;
use crate::slots::{Slot, Slots};
use crate::stream::{self, BodyOut, ConnectionEnd, Stream};
use crate::wire::{self, Connection, Limits, Peer, ReadError};
use crate::{forwarded, Error, Request, Response, Result, ServerMetrics};

/// A handler's answer, ready to write.
/// Each carries the route template the request matched, for metrics.
enum Answer {
    Full(u16, Vec<(String, String)>, Vec<u8>, Option<String>),
    /// A streamed body: chunks arrive on the receiver while another thread runs the producer.
    Stream {
        status: u16,
        headers: Vec<(String, String)>,
        body: ConnectionEnd,
        keep_alive: Option<(Duration, Vec<u8>)>,
        route: Option<String>,
    },
}

impl Answer {
    fn error(err: &Error, route: Option<String>) -> Answer {
        let body = err.to_json().to_string().into_bytes();
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        headers.extend(err.headers().iter().cloned());
        Answer::Full(err.status(), headers, body, route)
    }

    /// A response whose body is whole (an error, a preflight); a streamed one is refused.
    fn from_response(response: Response, route: Option<String>) -> Answer {
        match response.into_parts() {
            (status, headers, Body::Full(body)) => Answer::Full(status, headers, body, route),
            (_, _, Body::Stream(_)) => Answer::error(
                &Error::internal("a streamed answer to a request settled on its head"),
                route,
            ),
        }
    }
}

/// One of the limited slots for concurrent streams, released when dropped.
struct StreamSlot(Arc<ServerMetrics>);

impl StreamSlot {
    fn take(metrics: &Arc<ServerMetrics>, max: usize) -> Option<StreamSlot> {
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        metrics
            .active_streams
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| StreamSlot(Arc::clone(metrics)))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.active_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Shared {
    app: App,
    limits: Limits,
    /// The limits on a reserved slot: a health probe sends its request at once.
    reserved_limits: Limits,
    workers: Workers,
    stopping: AtomicBool,
    metrics: Arc<ServerMetrics>,
    /// The open connections, so a new one can take an idle one's slot and a shutdown can close
    /// idle connections at once and let busy ones finish.
    slots: Slots,
}

/// How long a connection on a reserved slot may take to send its request head: a health
/// probe sends it at once.
const RESERVED_HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept thread, which drains the connections once a shutdown starts.
    accept: JoinHandle<()>,
}

/// Stops a running server from anywhere (another thread, a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Server {
    pub(crate) fn start(app: App, addr: impl ToSocketAddrs) -> Result<Server> {
        let listener = listen(addr)?;
        let addr = listener.local_addr()?;
        let settings = app.settings().clone();
        let app_metrics = app.metrics();
        let limits = Limits {
            max_head_bytes: settings.max_head_bytes,
            max_headers: settings.max_headers,
            max_body_bytes: settings.max_body_bytes,
            head_timeout: settings.head_timeout,
            request_timeout: settings.request_timeout,
            read_timeout: settings.io_timeout,
            keep_alive_timeout: settings.keep_alive_timeout,
        };
        let reserved_limits = Limits {
            head_timeout: limits.head_timeout.min(RESERVED_HEAD_TIMEOUT),
            ..limits.clone()
        };
        let shared = Arc::new(Shared {
            app,
            limits,
            reserved_limits,
            workers: Workers::new(settings.workers.max(1), settings.queue_capacity.max(1)),
            stopping: AtomicBool::new(false),
            metrics: app_metrics,
            slots: Slots::new(
                settings.max_connections,
                settings.max_connections_per_ip,
                settings.trusted_proxies.clone(),
            ),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("tinyserve-accept".into())
            .spawn(move || accept(&accept_shared, listener))?;
        Ok(Server {
            addr,
            shared,
            accept,
        })
    }

    /// The address the server listens on (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that stops this server; cheap to clone and send to other threads.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: Arc::clone(&self.shared),
            addr: self.addr,
        }
    }

    /// Stops accepting, lets requests in flight finish, and waits until their connections have
    /// closed (or the drain timeout cut them off).
    pub fn shutdown(self) {
        self.shutdown_handle().shutdown();
        self.join();
    }

    /// Blocks until the server has been shut down (through a [`ShutdownHandle`]) and has stopped.
    pub fn join(self) {
        let _ = self.accept.join();
    }
}

impl ShutdownHandle {
    /// Starts the shutdown and returns at once: no new connections; idle connections close;
    /// requests in flight (streams included) are answered, then their connections close. What
    /// is still running after [`Settings::drain_timeout`](crate::Settings) is cut off.
    pub fn shutdown(&self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept thread, blocked in accept(), with a throwaway connection.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        self.shared.slots.close_idle();
    }
}

/// Connections the kernel queues before `accept`: a burst of clients waits there instead of
/// being refused or retried after a second.
const LISTEN_BACKLOG: i32 = 1024;

/// Binds the first address that works, with SO_REUSEADDR and a deep accept queue.
fn listen(addr: impl ToSocketAddrs) -> std::io::Result<TcpListener> {
    let mut last = std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind");
    for addr in addr.to_socket_addrs()? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        let bound = socket
            .set_reuse_address(true)
            .and_then(|()| socket.bind(&addr.into()))
            .and_then(|()| socket.listen(LISTEN_BACKLOG));
        match bound {
            Ok(()) => return Ok(socket.into()),
            Err(err) => last = err,
        }
    }
    Err(last)
}

fn accept(shared: &Arc<Shared>, listener: TcpListener) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors or a connection reset before accept: keep serving.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let slot = match shared.slots.admit(&stream) {
            Ok(slot) => slot,
            Err(err) => {
                shared.metrics.reject("connections");
                let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                let _ = wire::write_error(&stream, &err);
                let _ = stream.shutdown(Shutdown::Write);
                continue;
            }
        };
        shared
            .metrics
            .open_connections
            .fetch_add(1, Ordering::SeqCst);
        let conn_shared = Arc::clone(shared);
        let slot_of_thread = Arc::clone(&slot);
        // Handlers run on this thread: it gets the standard 2 MiB stack (address space; only
        // the pages a handler touches take memory).
        let spawned = thread::Builder::new()
            .name("tinyserve-conn".into())
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                serve_connection(&conn_shared, stream, &slot_of_thread);
                conn_shared.forget(&slot_of_thread);
            });
        if spawned.is_err() {
            shared.forget(&slot);
        }
    }
    // Close the listening socket before draining: new connections are refused at once (a
    // proxy retries them on another replica) instead of waiting in the backlog, unanswered,
    // until the drain ends.
    drop(listener);
    drain(shared);
}

impl Shared {
    /// Frees a closed connection's slot.
    fn forget(&self, slot: &Slot) {
        self.slots.release(slot);
        self.metrics.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// After accepting stops: wait for open connections to finish, up to the drain timeout; then
/// cut off what remains and stop the workers.
fn drain(shared: &Shared) {
    let deadline = Instant::now() + shared.app.settings().drain_timeout;
    while shared.metrics.open_connections.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    shared.slots.close_all();
}

/// Limits how many handlers run at once, with a bounded number of requests waiting for a turn.
struct Workers {
    count: Mutex<WorkerCount>,
    freed: Condvar,
    max_running: usize,
    max_waiting: usize,
}

#[derive(Default)]
struct WorkerCount {
    running: usize,
    waiting: usize,
}

/// One worker turn, given back when dropped.
struct WorkerTurn(Arc<Shared>);

impl Workers {
    fn new(max_running: usize, max_waiting: usize) -> Workers {
        Workers {
            count: Mutex::new(WorkerCount::default()),
            freed: Condvar::new(),
            max_running,
            max_waiting,
        }
    }

    /// Waits for a turn; false at once when `max_waiting` requests are already waiting.
    fn enter(&self, metrics: &ServerMetrics) -> bool {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        if count.running >= self.max_running {
            if count.waiting >= self.max_waiting {
                return false;
            }
            count.waiting += 1;
            metrics.queued.fetch_add(1, Ordering::Relaxed);
            while count.running >= self.max_running {
                count = self.freed.wait(count).unwrap_or_else(|e| e.into_inner());
            }
            count.waiting -= 1;
            metrics.queued.fetch_sub(1, Ordering::Relaxed);
        }
        count.running += 1;
        true
    }

    fn leave(&self) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        count.running -= 1;
        if count.waiting > 0 {
            self.freed.notify_one();
        }
    }
}

impl WorkerTurn {
    fn take(shared: &Arc<Shared>) -> Option<WorkerTurn> {
        let entered = shared.workers.enter(&shared.metrics);
        entered.then(|| WorkerTurn(Arc::clone(shared)))
    }
}

impl Drop for WorkerTurn {
    fn drop(&mut self) {
        self.0.workers.leave();
    }
}

/// Runs the handler on this thread, during a worker turn. A streamed body's producer goes to a
/// thread of its own, which keeps the turn until the stream ends. A health probe on a reserved
/// slot (`probe`) runs without a turn: it must answer while the server is full.
fn run(shared: &Arc<Shared>, request: Request, probe: bool) -> Answer {
    let turn = match probe {
        true => None,
        false => match WorkerTurn::take(shared) {
            Some(turn) => Some(turn),
            None => {
                shared.metrics.reject("queue_full");
                let err = Error::overloaded("server is at capacity: request queue is full");
                return Answer::error(&err, None);
            }
        },
    };
    let id = request.request_id().to_string();
    let (response, route) = crate::log::with_request_id(&id, || shared.app.dispatch(request));
    match response.into_parts() {
        (status, headers, Body::Full(body)) => Answer::Full(status, headers, body, route),
        (status, headers, Body::Stream(stream)) => {
            produce(shared, turn, (status, headers, route), stream, id)
        }
    }
}

/// Starts a stream's producer on a thread of its own, which keeps the worker turn, and returns
/// the answer whose chunks it sends; or a 503 when the stream cap is reached.
fn produce(
    shared: &Arc<Shared>,
    turn: Option<WorkerTurn>,
    (status, headers, route): (u16, Vec<(String, String)>, Option<String>),
    stream: Stream,
    id: String,
) -> Answer {
    let max = shared.app.settings().max_streams;
    let Some(slot) = StreamSlot::take(&shared.metrics, max) else {
        shared.metrics.reject("streams");
        let err = Error::overloaded(format!("too many concurrent streams (limit {max})"));
        return Answer::error(&err, route);
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

fn serve_connection(shared: &Arc<Shared>, stream: TcpStream, slot: &Slot) {
    let peer = stream.peer_addr().ok();
    let settings = shared.app.settings();
    let limits = match slot.is_reserved() {
        true => &shared.reserved_limits,
        false => &shared.limits,
    };
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(settings.io_timeout));
    let mut conn = Connection::new(stream);
    let mut first = true;
    loop {
        slot.set_idle();
        // Checked after marking the slot idle: a shutdown either sees the mark or is seen here.
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let head = match conn.read_head(limits, first, || slot.set_busy()) {
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
        let mut request = Request::new(&head.method, &head.target);
        for (name, value) in &head.headers {
            request = request.with_header(name, value);
        }
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
                    request.set_socket(conn.stream());
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
        let (status, route, written) = write_answer(
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
            });
        }
        if unread_body {
            linger(conn.stream());
        }
        if written.is_err() || !keep_alive || shared.stopping.load(Ordering::SeqCst) {
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

/// Writes a worker's answer; returns the status, the route template and the body bytes
/// written (an error when the connection must close).
fn write_answer(
    conn: &mut Connection,
    answer: Answer,
    id: &str,
    keep_alive: bool,
    head_only: bool,
    minor_version: u8,
) -> (u16, Option<String>, std::io::Result<u64>) {
    let with_id = |mut headers: Vec<(String, String)>| {
        headers.push(("X-Request-ID".to_string(), id.to_string()));
        headers
    };
    match answer {
        Answer::Full(status, headers, body, route) => {
            let written = conn
                .write_response(status, &with_id(headers), &body, keep_alive, head_only)
                .map(|()| body.len() as u64);
            (status, route, written)
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
                        let out = BodyOut::new(Arc::clone(conn.stream()), chunked);
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
            (status, route, written)
        }
    }
}

/// Answers a request that could not be read, then closes: the rest of its bytes are unread.
fn reject(conn: &mut Connection, err: &Error) {
    let _ = wire::write_error(conn.stream(), err);
    linger(conn.stream());
}

/// Ends a connection whose client may still be sending: the answer is written; stop writing,
/// and read what the client already sent (briefly, bounded) so closing does not reset the
/// connection before the client has read the answer.
fn linger(mut stream: &TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 8192];
    for _ in 0..16 {
        match std::io::Read::read(&mut stream, &mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
