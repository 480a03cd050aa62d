//! The running server: one accept thread, one thread per open connection (capped), and a
//! fixed pool of workers fed by a bounded queue.
//!
//! Connection threads do all the socket I/O (reading requests under limits, writing responses),
//! so a slow client never holds a worker. Workers only run handlers. When the queue is full the
//! connection thread answers 503 at once: latency cannot grow without bound.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::app::App;
use crate::response::Body;
use crate::stream::Stream;
use crate::wire::{self, Connection, Limits, ReadError};
use crate::{Error, Request, Result};

/// A request handed to a worker, with the channel its answer goes back on.
enum Job {
    Run(Request, mpsc::Sender<Answer>),
    Stop,
}

/// What a worker hands back to the connection thread.
enum Answer {
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// A streamed body: chunks arrive on the receiver while the worker runs the producer.
    Stream {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: Receiver<Vec<u8>>,
        keep_alive: Option<(Duration, Vec<u8>)>,
    },
}

impl Answer {
    fn error(err: &Error) -> Answer {
        let body = err.to_json().to_string().into_bytes();
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        headers.extend(err.headers().iter().cloned());
        Answer::Full(err.status(), headers, body)
    }
}

/// One of the limited slots for concurrent streams, released when dropped.
struct StreamSlot<'a>(&'a AtomicUsize);

impl<'a> StreamSlot<'a> {
    fn take(open: &'a AtomicUsize, max: usize) -> Option<StreamSlot<'a>> {
        open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| StreamSlot(open))
    }
}

impl Drop for StreamSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Shared {
    app: App,
    limits: Limits,
    queue: SyncSender<Job>,
    stopping: AtomicBool,
    open: AtomicUsize,
    streams: AtomicUsize,
    next_id: AtomicU64,
    /// Clones of open sockets, so shutdown can wake connections idling in a read.
    sockets: Mutex<HashMap<u64, TcpStream>>,
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Stops a running server from anywhere (another thread, a signal handler thread).
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Server {
    pub(crate) fn start(app: App, addr: impl ToSocketAddrs) -> Result<Server> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let settings = app.settings().clone();
        let (queue, jobs) = mpsc::sync_channel(settings.queue_capacity.max(1));
        let limits = Limits {
            max_head_bytes: settings.max_head_bytes,
            max_headers: settings.max_headers,
            max_body_bytes: settings.max_body_bytes,
            head_timeout: settings.head_timeout,
            read_timeout: settings.io_timeout,
            keep_alive_timeout: settings.keep_alive_timeout,
        };
        let shared = Arc::new(Shared {
            app,
            limits,
            queue,
            stopping: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            sockets: Mutex::new(HashMap::new()),
        });
        let jobs = Arc::new(Mutex::new(jobs));
        let mut threads = Vec::new();
        for n in 0..settings.workers.max(1) {
            let (shared, jobs) = (Arc::clone(&shared), Arc::clone(&jobs));
            threads.push(
                thread::Builder::new()
                    .name(format!("tinyserve-worker-{n}"))
                    .spawn(move || work(&shared, &jobs))?,
            );
        }
        let accept_shared = Arc::clone(&shared);
        threads.push(
            thread::Builder::new()
                .name("tinyserve-accept".into())
                .spawn(move || accept(&accept_shared, &listener))?,
        );
        Ok(Server {
            addr,
            shared,
            threads,
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

    /// Stops accepting, lets requests in flight finish, and waits for every thread to end.
    pub fn shutdown(self) {
        self.shutdown_handle().shutdown();
        self.join();
    }

    /// Blocks until the server has been shut down (through a [`ShutdownHandle`]) and has stopped.
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

impl ShutdownHandle {
    /// Starts the shutdown and returns at once: no new connections; idle connections close;
    /// requests in flight are answered, then their connections close.
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
        if let Ok(sockets) = self.shared.sockets.lock() {
            for socket in sockets.values() {
                let _ = socket.shutdown(Shutdown::Read);
            }
        }
    }
}

fn accept(shared: &Arc<Shared>, listener: &TcpListener) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else {
            // Out of file descriptors or a connection reset before accept: keep serving.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        if shared.open.load(Ordering::SeqCst) >= shared.app.settings().max_connections {
            let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
            let err = Error::overloaded("too many open connections");
            let _ = wire::write_error(&stream, &err);
            let _ = stream.shutdown(Shutdown::Write);
            continue;
        }
        shared.open.fetch_add(1, Ordering::SeqCst);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        if let (Ok(clone), Ok(mut sockets)) = (stream.try_clone(), shared.sockets.lock()) {
            sockets.insert(id, clone);
        }
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("tinyserve-conn".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                serve_connection(&conn_shared, stream);
                conn_shared.forget(id);
            });
        if spawned.is_err() {
            shared.forget(id);
        }
    }
    drain(shared);
}

impl Shared {
    fn forget(&self, id: u64) {
        if let Ok(mut sockets) = self.sockets.lock() {
            sockets.remove(&id);
        }
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// After accepting stops: wait for open connections to finish (bounded), then stop the workers.
fn drain(shared: &Shared) {
    let deadline = Instant::now() + shared.app.settings().io_timeout;
    while shared.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..shared.app.settings().workers.max(1) {
        let _ = shared.queue.send(Job::Stop);
    }
}

fn work(shared: &Shared, jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        match job {
            Ok(Job::Run(request, reply)) => match shared.app.dispatch(request).into_parts() {
                (status, headers, Body::Full(body)) => {
                    let _ = reply.send(Answer::Full(status, headers, body));
                }
                (status, headers, Body::Stream(stream)) => {
                    produce(shared, status, headers, stream, &reply);
                }
            },
            Ok(Job::Stop) | Err(_) => return,
        }
    }
}

/// Runs a stream's producer on this worker while the connection thread writes its chunks.
fn produce(
    shared: &Shared,
    status: u16,
    headers: Vec<(String, String)>,
    stream: Stream,
    reply: &mpsc::Sender<Answer>,
) {
    let max = shared.app.settings().max_streams;
    let Some(_slot) = StreamSlot::take(&shared.streams, max) else {
        let err = Error::overloaded(format!("too many concurrent streams (limit {max})"));
        let _ = reply.send(Answer::error(&err));
        return;
    };
    let (mut sender, chunks) = Stream::channel();
    let answer = Answer::Stream {
        status,
        headers,
        chunks,
        keep_alive: stream.keep_alive,
    };
    if reply.send(answer).is_err() {
        return;
    }
    let producer = stream.producer;
    if catch_unwind(AssertUnwindSafe(move || producer(&mut sender))).is_err() {
        eprintln!("error: a stream producer panicked; the stream was cut short");
    }
}

fn serve_connection(shared: &Shared, stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(shared.app.settings().io_timeout));
    let mut conn = Connection::new(stream);
    let (reply_tx, reply_rx) = mpsc::channel();
    loop {
        let head = match conn.read_head(&shared.limits) {
            Ok(head) => head,
            Err(ReadError::Closed) => return,
            Err(ReadError::Reject(err)) => return reject(&mut conn, &err),
        };
        let body = match conn.read_body(&head, &shared.limits) {
            Ok(body) => body,
            Err(ReadError::Closed) => return,
            Err(ReadError::Reject(err)) => return reject(&mut conn, &err),
        };
        let keep_alive = head.wants_keep_alive() && !shared.stopping.load(Ordering::SeqCst);
        let head_only = head.method == "HEAD";
        let mut request = Request::new(&head.method, &head.target).with_body(body);
        for (name, value) in &head.headers {
            request = request.with_header(name, value);
        }
        if let Some(peer) = peer {
            request = request.with_remote_addr(peer);
        }
        let gone = request.gone_flag();
        let answer = match shared.queue.try_send(Job::Run(request, reply_tx.clone())) {
            Ok(()) => wait_for_answer(&conn, &reply_rx, &gone),
            Err(TrySendError::Full(_)) => Answer::error(&Error::overloaded(
                "server is at capacity: request queue is full",
            )),
            Err(TrySendError::Disconnected(_)) => Answer::error(&Error::new(
                crate::ErrorKind::NotReady,
                "server is stopping",
            )),
        };
        let keep_alive = match answer {
            Answer::Full(status, headers, body) => conn
                .write_response(status, &headers, &body, keep_alive, head_only)
                .map(|()| keep_alive),
            Answer::Stream {
                status,
                headers,
                chunks,
                keep_alive: comments,
            } => {
                // HTTP/1.0 has no chunked encoding: the body ends when the connection closes.
                let chunked = head.minor_version >= 1;
                let keep_alive = keep_alive && chunked;
                conn.write_stream_head(status, &headers, keep_alive, chunked)
                    .and_then(|()| match head_only {
                        true => Ok(keep_alive),
                        false => relay(&mut conn, &chunks, comments.as_ref(), chunked)
                            .map(|()| keep_alive),
                    })
            }
        };
        if !matches!(keep_alive, Ok(true)) {
            return;
        }
    }
}

/// Waits for the worker's answer, raising the request's `gone` flag if the client leaves.
fn wait_for_answer(conn: &Connection, answers: &Receiver<Answer>, gone: &AtomicBool) -> Answer {
    loop {
        match answers.recv_timeout(DISCONNECT_CHECK) {
            Ok(answer) => return answer,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !gone.load(Ordering::Relaxed) && conn.client_gone() {
                    gone.store(true, Ordering::Relaxed);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Answer::error(&Error::internal("worker ended without answering"))
            }
        }
    }
}

/// How often a connection thread waiting for a worker or for the next chunk checks whether
/// its client left.
const DISCONNECT_CHECK: Duration = Duration::from_millis(50);

/// Writes a stream's chunks as they arrive, with keep-alive comments while it is idle.
/// Returns an error when the client has gone; dropping `chunks` then tells the producer.
fn relay(
    conn: &mut Connection,
    chunks: &Receiver<Vec<u8>>,
    comments: Option<&(Duration, Vec<u8>)>,
    chunked: bool,
) -> std::io::Result<()> {
    let gone = || std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
    let mut idle_since = Instant::now();
    loop {
        match chunks.recv_timeout(DISCONNECT_CHECK) {
            Ok(chunk) => {
                conn.write_chunk(&chunk, chunked)?;
                idle_since = Instant::now();
                if conn.client_gone() {
                    return Err(gone());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if conn.client_gone() {
                    return Err(gone());
                }
                if let Some((every, comment)) = comments {
                    if idle_since.elapsed() >= *every {
                        conn.write_chunk(comment, chunked)?;
                        idle_since = Instant::now();
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) if chunked => return conn.write_last_chunk(),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

/// Answers a request that could not be read, then closes: the rest of its bytes are unread.
fn reject(conn: &mut Connection, err: &Error) {
    let mut stream = conn.stream();
    let _ = wire::write_error(stream, err);
    let _ = stream.shutdown(Shutdown::Write);
    // Read what the client already sent (briefly, bounded) so closing does not reset the
    // connection before the client has read our answer.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 8192];
    for _ in 0..16 {
        match std::io::Read::read(&mut stream, &mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
