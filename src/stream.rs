//! Streaming bodies: a producer runs on a thread of its own and writes each chunk to the
//! client's socket itself, the moment it has it.
//!
//! Writing from the producer's thread, rather than handing each chunk to the connection thread,
//! saves a thread wake-up per chunk: a token stream of a language model pays it per token, and on
//! a busy machine each wake-up waits for a core (issue #15). The connection thread writes the head
//! before the producer's first chunk and the last chunk after it ends; in between it only
//! watches: every `DISCONNECT_CHECK` (50 ms) it looks whether the client left (then the producer's next
//! `send` fails with [`Disconnected`]) and writes the keep-alive comments of an idle stream. A
//! slow reader slows the producer down: its write blocks once the socket's buffer is full.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the connection thread of a stream checks whether its client left, and whether an
/// idle stream is due a keep-alive comment.
pub(crate) const DISCONNECT_CHECK: Duration = Duration::from_millis(50);

/// The client has gone: stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

impl std::fmt::Display for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("client disconnected")
    }
}

impl std::error::Error for Disconnected {}

/// What a streaming handler writes its body into.
///
/// # Example
/// ```
/// use tinyserve::Response;
/// let res = Response::stream("text/plain", |body| {
///     for word in ["one ", "two ", "three"] {
///         body.send(word)?; // fails once the client has gone
///     }
///     Ok(())
/// });
/// assert_eq!(res.header("Content-Type"), Some("text/plain"));
/// ```
pub struct BodySender {
    target: Target,
}

/// Where a [`BodySender`]'s chunks go.
enum Target {
    /// The head is not written yet: the first send waits for the connection thread to hand
    /// over the socket, so a producer does its first work (a prompt) while the head is written.
    Waiting(Receiver<Arc<BodyOut>>),
    Open(Arc<BodyOut>),
    /// The body will never be written (a HEAD request, a head that failed to write).
    Closed,
    /// No socket: the chunks are kept ([`collect`], for the test client).
    Memory(Vec<u8>),
}

impl BodySender {
    /// Writes one chunk to the client and returns once the socket has taken it; blocks while
    /// the socket's buffer is full (a slow client). Fails once the client has gone.
    pub fn send(&mut self, chunk: impl AsRef<[u8]>) -> Result<(), Disconnected> {
        let chunk = chunk.as_ref();
        if chunk.is_empty() {
            // An empty chunk would end a chunked body early.
            return Ok(());
        }
        if let Target::Waiting(handed) = &self.target {
            self.target = match handed.recv() {
                Ok(out) => Target::Open(out),
                Err(_) => Target::Closed,
            };
        }
        match &mut self.target {
            Target::Open(out) => out.write(chunk),
            Target::Memory(kept) => {
                kept.extend_from_slice(chunk);
                Ok(())
            }
            Target::Waiting(_) | Target::Closed => Err(Disconnected),
        }
    }
}

/// The client's socket as a stream's body sees it, shared by the producer and the connection
/// thread; the lock keeps a keep-alive comment from landing inside a chunk.
pub(crate) struct BodyOut {
    socket: Arc<TcpStream>,
    /// HTTP/1.1 frames each piece as a chunk; an HTTP/1.0 body ends when the connection closes.
    chunked: bool,
    writing: Mutex<()>,
    gone: AtomicBool,
    /// Bytes of the body written (the producer's, not keep-alive comments).
    bytes: AtomicU64,
    started: Instant,
    /// Nanoseconds after `started` of the last write.
    last_write: AtomicU64,
}

impl BodyOut {
    pub(crate) fn new(socket: Arc<TcpStream>, chunked: bool) -> Arc<BodyOut> {
        Arc::new(BodyOut {
            socket,
            chunked,
            writing: Mutex::new(()),
            gone: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            last_write: AtomicU64::new(0),
        })
    }

    /// Writes `data` framed as one chunk.
    fn write(&self, data: &[u8]) -> Result<(), Disconnected> {
        if self.is_gone() {
            return Err(Disconnected);
        }
        let framed = self.frame(data);
        let written = {
            let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
            (&*self.socket).write_all(&framed)
        };
        if written.is_err() {
            self.mark_gone();
            return Err(Disconnected);
        }
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let since = self.started.elapsed().as_nanos() as u64;
        self.last_write.store(since, Ordering::Relaxed);
        Ok(())
    }

    /// `data` as one chunk of a chunked body, or as it is.
    fn frame(&self, data: &[u8]) -> Vec<u8> {
        if !self.chunked {
            return data.to_vec();
        }
        let mut framed = Vec::with_capacity(data.len() + 12);
        framed.extend_from_slice(format!("{:X}\r\n", data.len()).as_bytes());
        framed.extend_from_slice(data);
        framed.extend_from_slice(b"\r\n");
        framed
    }

    /// Ends a chunked body (nothing to write for HTTP/1.0: closing the connection ends it).
    fn finish(&self) -> std::io::Result<()> {
        if self.is_gone() {
            return Err(std::io::ErrorKind::ConnectionAborted.into());
        }
        if !self.chunked {
            return Ok(());
        }
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        (&*self.socket).write_all(b"0\r\n\r\n")
    }

    /// The client has gone: every later write fails at once.
    fn mark_gone(&self) {
        self.gone.store(true, Ordering::Relaxed);
    }

    /// Stops the body: later writes fail, and a write blocked on a client that stopped reading
    /// returns (the socket is shut down).
    fn abort(&self) {
        self.mark_gone();
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    /// Writes a keep-alive comment unless a chunk is being written (a producer blocked on a
    /// slow reader holds the lock; the comment would only wait behind it).
    fn comment(&self, comment: &[u8]) {
        let Ok(_writing) = self.writing.try_lock() else {
            return;
        };
        match (&*self.socket).write_all(&self.frame(comment)) {
            Ok(()) => {
                let since = self.started.elapsed().as_nanos() as u64;
                self.last_write.store(since, Ordering::Relaxed);
            }
            Err(_) => self.mark_gone(),
        }
    }

    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// How long since the last write (or since the body started).
    fn idle(&self) -> Duration {
        let last = Duration::from_nanos(self.last_write.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }
}

type Producer = Box<dyn FnOnce(&mut BodySender) -> Result<(), Disconnected> + Send>;

/// A streamed body: the producer, and what to send while it is idle (SSE keep-alive comments).
pub(crate) struct Stream {
    pub(crate) producer: Producer,
    pub(crate) keep_alive: Option<(Duration, Vec<u8>)>,
}

impl Stream {
    pub(crate) fn new(producer: Producer) -> Stream {
        Stream {
            producer,
            keep_alive: None,
        }
    }
}

/// Runs a stream's producer on this thread to its end and returns the body it sent (a
/// producer that panics ends the body there).
pub(crate) fn collect(stream: Stream) -> Vec<u8> {
    let mut sender = BodySender {
        target: Target::Memory(Vec::new()),
    };
    let producer = stream.producer;
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| producer(&mut sender)));
    match sender.target {
        Target::Memory(kept) => kept,
        _ => Vec::new(),
    }
}

/// Joins a stream's producer and its connection thread: the connection thread hands the
/// producer's [`BodySender`] the socket once the head is written, and learns that the producer
/// has ended when the [`ProducerEnd`] is dropped.
pub(crate) fn link() -> (BodySender, ProducerEnd, ConnectionEnd) {
    let (out_tx, out_rx) = std::sync::mpsc::sync_channel(1);
    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
    let sender = BodySender {
        target: Target::Waiting(out_rx),
    };
    let connection = ConnectionEnd {
        out: out_tx,
        done: done_rx,
    };
    (sender, ProducerEnd { _done: done_tx }, connection)
}

/// Held by the producer's thread; dropping it says the producer has ended.
pub(crate) struct ProducerEnd {
    _done: SyncSender<()>,
}

/// The connection thread's end of [`link`]; dropping it unused closes the body.
pub(crate) struct ConnectionEnd {
    out: SyncSender<Arc<BodyOut>>,
    done: Receiver<()>,
}

impl ConnectionEnd {
    /// Lets the producer write to `out` and watches until it ends: writes keep-alive comments
    /// while it is idle, and stops it when `gone` says the client left. Returns the body's
    /// bytes, or an error when the client has gone.
    pub(crate) fn watch(
        self,
        out: Arc<BodyOut>,
        keep_alive: Option<&(Duration, Vec<u8>)>,
        gone: impl Fn() -> bool,
    ) -> std::io::Result<u64> {
        let aborted = || std::io::Error::from(std::io::ErrorKind::ConnectionAborted);
        // Fails only when the producer has ended without sending: `done` then says so at once.
        let _ = self.out.send(Arc::clone(&out));
        loop {
            match self.done.recv_timeout(DISCONNECT_CHECK) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if gone() || out.is_gone() {
                        out.abort();
                        return Err(aborted());
                    }
                    if let Some((every, comment)) = keep_alive {
                        if out.idle() >= *every {
                            out.comment(comment);
                        }
                    }
                }
                _ => return out.finish().map(|()| out.bytes()),
            }
        }
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}
