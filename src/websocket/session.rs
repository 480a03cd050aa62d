//! [`WebSocket`]: the blocking socket a handler reads and writes, over tungstenite's framing,
//! and [`serve`], which runs a handler on a connection taken over after `101`.
//!
//! One thread (the connection's) does everything: `recv` blocks on the socket with a read
//! timeout that falls when the next ping is due; `send` first reads what the client already
//! sent without blocking (a ping to answer, a close, a message kept for `recv`), so a handler
//! that only sends (a generation) still sees the client leave at its next `send`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::error::{Error as WsError, ProtocolError};
use tungstenite::protocol::frame::{coding::CloseCode, Frame};
use tungstenite::protocol::{Role, WebSocketConfig};

use super::{CloseFrame, Limits, Message, Permit, Sockets, Upgrade};
use crate::{Disconnected, ServerMetrics};

/// Messages read ahead by `send` and kept for `recv`, at most (and at most a message's limit
/// in bytes): past that the client's bytes wait in the kernel, which slows the client down.
const MAX_PENDING: usize = 16;
/// How long a closed socket waits for the client's last bytes and its end of stream, so that
/// closing does not reset the connection before the client has read the close frame.
const LINGER: Duration = Duration::from_secs(2);
/// The bytes tungstenite reads at a time (its buffer grows for a larger frame, up to the
/// frame limit).
const READ_CHUNK: usize = 4096;
/// The most bytes of a close reason (a control frame carries at most 125: 2 of them the code).
const MAX_REASON: usize = 123;

/// An open WebSocket, as its handler sees it: [`WebSocket::recv`] and [`WebSocket::send`]
/// block; both fail with [`Disconnected`] once the socket is closed, by either side.
///
/// # Example
/// ```no_run
/// use tinyserve::websocket::Message;
///
/// tinyserve::App::new()
///     .websocket("/ws/count", |_req, socket| {
///         let Message::Text(text) = socket.recv()? else { return Ok(()) };
///         let n: u32 = text.trim().parse().unwrap_or(3);
///         for i in 1..=n {
///             socket.send(i.to_string())?; // Err(Disconnected) once the client left
///         }
///         Ok(())
///     })
///     .run("127.0.0.1:8000")?;
/// # Ok::<(), tinyserve::Error>(())
/// ```
pub struct WebSocket {
    ws: tungstenite::WebSocket<Wire>,
    /// Messages `send` read ahead, with their total bytes.
    pending: VecDeque<Message>,
    pending_bytes: usize,
    limits: Limits,
    sockets: Arc<Sockets>,
    metrics: Arc<ServerMetrics>,
    /// When the client last sent a frame (any: a pong too), and whether a ping awaits it.
    last_heard: Instant,
    ping_sent: bool,
    close_sent: bool,
    peer_closed: bool,
    /// Nothing more can be read or written.
    ended: bool,
    received: u64,
    sent: u64,
    bytes_sent: u64,
}

/// The socket under tungstenite. In `poll` mode a read that would wait says `WouldBlock`
/// instead: it checks, without blocking, that bytes are there before reading them.
struct Wire {
    socket: Arc<TcpStream>,
    poll: bool,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.poll && crate::http::peek(&self.socket)? == 0 {
            return Ok(0);
        }
        (&*self.socket).read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.socket).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WebSocket {
    /// The next text or binary message; [`Message::Close`] once when the client closes (the
    /// answer is sent). Pings are answered meanwhile, and the client is pinged when it has
    /// been silent for half the idle timeout. Fails once the socket is closed: by the client,
    /// for a message over the limit (1009), a protocol error, the idle timeout or a shutdown.
    pub fn recv(&mut self) -> Result<Message, Disconnected> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                self.pending_bytes -= message.len();
                return Ok(message);
            }
            if self.ended {
                return Err(Disconnected);
            }
            let Some(wait) = self.keep_alive() else {
                continue;
            };
            self.ws.get_mut().poll = false;
            let _ = self
                .ws
                .get_ref()
                .socket
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))));
            match self.ws.read() {
                Ok(message) => {
                    if let Some(message) = self.take(message) {
                        return Ok(message);
                    }
                }
                Err(err) => self.fail(err),
            }
        }
    }

    /// Sends a text (`String`, `&str`, a JSON value) or binary (`Vec<u8>`, `&[u8]`) message,
    /// returning once the socket has taken it; a [`Message::Close`] closes the socket. Fails
    /// once the socket is closed, so a loop of sends stops when the client leaves.
    pub fn send(&mut self, message: impl Into<Message>) -> Result<(), Disconnected> {
        let message = match message.into() {
            Message::Close(frame) => {
                let frame = frame.unwrap_or_else(|| CloseFrame::new(1000, ""));
                self.close(frame.code, &frame.reason);
                return Ok(());
            }
            message => message,
        };
        self.poll();
        if self.ended || self.close_sent || self.peer_closed {
            return Err(Disconnected);
        }
        let size = message.len() as u64;
        let frame = match message {
            Message::Text(text) => tungstenite::Message::Text(text.into()),
            Message::Binary(data) => tungstenite::Message::Binary(data.into()),
            Message::Close(_) => return Ok(()),
        };
        match self.ws.send(frame) {
            Ok(()) => {
                self.sent += 1;
                self.bytes_sent += size;
                self.metrics
                    .websocket_messages_sent
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(err) => {
                self.fail(err);
                self.ended = true;
                Err(Disconnected)
            }
        }
    }

    /// Starts the closing handshake with `code` (1000 normal, 1008 policy, 1011 error...) and
    /// `reason` (cut to 123 bytes); later sends fail. Returning from the handler closes with
    /// 1000 anyway.
    pub fn close(&mut self, code: u16, reason: &str) {
        if !self.close_sent && !self.peer_closed {
            let mut cut = reason.len().min(MAX_REASON);
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            let frame = tungstenite::protocol::CloseFrame {
                code: CloseCode::from(code),
                reason: reason[..cut].into(),
            };
            if self.ws.can_write() {
                let _ = self.ws.close(Some(frame));
            } else {
                // tungstenite saw the connection end (a shutdown stopped its reads): write
                // the frame on the socket itself.
                let mut bytes = Vec::with_capacity(2 + MAX_REASON + 4);
                if Frame::close(Some(frame)).format(&mut bytes).is_ok() {
                    let _ = (&*self.ws.get_ref().socket).write_all(&bytes);
                }
            }
            self.close_sent = true;
        }
        self.ended = true;
    }

    /// Messages received and sent so far.
    pub fn messages(&self) -> (u64, u64) {
        (self.received, self.sent)
    }

    /// The time `recv` may wait for the next frame, after the keep-alive duties: `None` when
    /// it just pinged or closed (look again).
    fn keep_alive(&mut self) -> Option<Duration> {
        if self.sockets.is_stopping() {
            self.close(1001, "server shutting down");
            return None;
        }
        let silence = self.last_heard.elapsed();
        let idle = self.limits.idle_timeout;
        if silence >= idle {
            self.close(1011, "ping timeout");
            return None;
        }
        if !self.ping_sent && silence >= idle / 2 {
            self.ping_sent = true;
            if let Err(err) = self.ws.send(tungstenite::Message::Ping(Default::default())) {
                self.fail(err);
            }
            return None;
        }
        let next = if self.ping_sent { idle } else { idle / 2 };
        Some(next - silence)
    }

    /// Reads, without blocking, what the client has sent: answers pings, notices a close, and
    /// keeps messages for `recv` (a bounded number).
    fn poll(&mut self) {
        if self.keep_alive().is_none() {
            return;
        }
        self.ws.get_mut().poll = true;
        while !self.ended
            && self.pending.len() < MAX_PENDING
            && self.pending_bytes < self.limits.max_message_bytes
        {
            match self.ws.read() {
                Ok(message) => {
                    if let Some(message) = self.take(message) {
                        self.pending_bytes += message.len();
                        self.pending.push_back(message);
                    }
                }
                Err(err) => {
                    self.fail(err);
                    break;
                }
            }
        }
        self.ws.get_mut().poll = false;
    }

    /// What a frame read means for the handler: a message, or nothing (a ping or pong).
    fn take(&mut self, message: tungstenite::Message) -> Option<Message> {
        self.last_heard = Instant::now();
        self.ping_sent = false;
        let message = match message {
            tungstenite::Message::Text(text) => Message::Text(text.as_str().to_string()),
            tungstenite::Message::Binary(data) => Message::Binary(data.to_vec()),
            tungstenite::Message::Close(frame) => {
                self.peer_closed = true;
                self.ended = true;
                // Sends the answer tungstenite queued; it then reports the connection closed.
                let _ = self.ws.flush();
                let frame = frame.map(|f| CloseFrame::new(u16::from(f.code), f.reason.as_str()));
                return Some(Message::Close(frame));
            }
            _ => return None,
        };
        self.received += 1;
        self.metrics
            .websocket_messages_received
            .fetch_add(1, Ordering::Relaxed);
        Some(message)
    }

    /// Ends the socket after a failed read or write, with the close code the failure calls for
    /// (none when the connection itself is gone). A read that would block (or was interrupted
    /// by a signal) is no failure: tungstenite keeps what it read, and the next read goes on.
    fn fail(&mut self, err: WsError) {
        match err {
            WsError::Io(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            WsError::Capacity(_) => {
                let limit = self
                    .limits
                    .max_message_bytes
                    .min(self.limits.max_frame_bytes);
                self.close(
                    1009,
                    &format!("message too big: the limit is {limit} bytes"),
                );
            }
            WsError::Utf8(_) => self.close(1007, "a text message is not valid UTF-8"),
            WsError::AttackAttempt => self.close(1008, "attack attempt"),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
                if self.sockets.is_stopping() =>
            {
                self.close(1001, "server shutting down");
            }
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => self.ended = true,
            WsError::Protocol(err) => self.close(1002, &format!("protocol error: {err}")),
            _ => self.ended = true,
        }
    }
}

/// What a session did, for the access log.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Report {
    pub(crate) received: u64,
    pub(crate) sent: u64,
    pub(crate) bytes_sent: u64,
}

/// Runs the handler of an upgraded connection (`101` is written) until it returns, then
/// closes: the close frame, then the socket once the client has read it. `buffered`: bytes the
/// client sent after its request head, read already.
pub(crate) fn serve(
    socket: &Arc<TcpStream>,
    buffered: Vec<u8>,
    upgrade: Upgrade,
    permit: Permit,
    limits: &Limits,
    metrics: Arc<ServerMetrics>,
    sockets: Arc<Sockets>,
) -> Report {
    permit.watch(socket);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK)
        .write_buffer_size(0)
        .max_message_size(Some(limits.max_message_bytes))
        .max_frame_size(Some(limits.max_frame_bytes));
    let wire = Wire {
        socket: Arc::clone(socket),
        poll: false,
    };
    let mut ws = WebSocket {
        ws: tungstenite::WebSocket::from_partially_read(wire, buffered, Role::Server, Some(config)),
        pending: VecDeque::new(),
        pending_bytes: 0,
        limits: limits.clone(),
        sockets,
        metrics,
        last_heard: Instant::now(),
        ping_sent: false,
        close_sent: false,
        peer_closed: false,
        ended: false,
        received: 0,
        sent: 0,
        bytes_sent: 0,
    };
    let Upgrade { request, handler } = upgrade;
    let close = crate::log::with_request_id(request.request_id(), || {
        catch_unwind(AssertUnwindSafe(|| handler(&request, &mut ws))).unwrap_or_else(|_| {
            crate::log::error(&format!(
                "the WebSocket handler for {} panicked; the socket was closed with 1011",
                request.path()
            ));
            CloseFrame::new(1011, "internal server error")
        })
    });
    // Outside the handler, but tungstenite's code all the same: a panic must not take the
    // connection's thread (and its slot) with it.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        ws.close(close.code, &close.reason);
        let _ = ws.ws.flush();
    }));
    linger(socket);
    drop(permit);
    Report {
        received: ws.received,
        sent: ws.sent,
        bytes_sent: ws.bytes_sent,
    }
}

/// Stops writing, then reads (and drops) what the client still sends until it closes or
/// [`LINGER`] passes: closing with unread bytes would reset the connection, and the client
/// could lose the close frame.
fn linger(socket: &TcpStream) {
    let _ = socket.shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*socket).read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => return,
        }
    }
}
