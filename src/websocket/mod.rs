//! WebSockets (RFC 6455), sync style: a route whose handler gets a blocking [`WebSocket`].
//!
//! ```no_run
//! use tinyserve::websocket::Message;
//! use tinyserve::App;
//!
//! App::new()
//!     .websocket("/ws/echo", |_req, socket| loop {
//!         match socket.recv()? {
//!             Message::Close(_) => return Ok(()),
//!             message => socket.send(message)?, // text as text, binary as binary
//!         }
//!     })
//!     .run("127.0.0.1:8000")?;
//! # Ok::<(), tinyserve::Error>(())
//! ```
//!
//! The upgrade goes through the same pipeline as any request: the API key and the CORS
//! preflight are checked on its head, the access log writes one line when the socket closes
//! (with its duration and the messages in and out), and `/metrics` counts open sockets and
//! messages. A browser's `Origin` must be the server's own host or one of the
//! [`Settings::cors_origins`](crate::Settings::cors_origins) (else 403), a plain `GET` without
//! `Upgrade: websocket` gets 426, and past [`Limits::max_open`] sockets a new one gets 503, all
//! before the upgrade.
//!
//! After the `101`, the connection's thread runs the handler, holding no worker turn: open
//! sockets cannot starve plain requests, and their number has its own cap. The framing is
//! `tungstenite`'s: masking, fragments reassembled, UTF-8 of text and the control-frame rules
//! are checked there; pings are answered without the handler. What the handler returns closes
//! the socket ([`IntoClose`]): `Ok(())` with 1000, a [`CloseFrame`] with its code, a panic with
//! 1011 (logged). A message or frame over its limit closes with 1009, a protocol error with 1002,
//! text that is not UTF-8 with 1007, a client silent through a ping with 1011, and a graceful
//! shutdown closes every socket with 1001.

use std::sync::Arc;
use std::time::Duration;

use crate::{App, Disconnected, Error, Request};

mod handshake;
mod registry;
mod session;

pub(crate) use handshake::Upgrade;
pub(crate) use registry::{Permit, Sockets};
pub(crate) use session::serve;
pub use session::WebSocket;

/// The limits of a server's WebSockets: [`Settings::websockets`](crate::Settings::websockets).
///
/// # Example
/// ```
/// let mut settings = tinyserve::Settings::default();
/// assert_eq!(settings.websockets.max_open, 256);
/// assert_eq!(settings.websockets.max_message_bytes, 1024 * 1024);
/// settings.websockets.max_open = 1000;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// WebSockets open at once; past it an upgrade gets 503 `overloaded`. Default 256.
    pub max_open: usize,
    /// Largest message (all its fragments together); a larger one closes the socket with 1009.
    /// Default 1 MiB.
    pub max_message_bytes: usize,
    /// Largest frame; a larger one closes with 1009 before its payload is read. Default 1 MiB,
    /// so a message up to the limit may come in one frame.
    pub max_frame_bytes: usize,
    /// After half of it without a frame from the client, the server pings; after all of it,
    /// the socket closes with 1011. Default 60 s.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_open: 256,
            max_message_bytes: 1024 * 1024,
            max_frame_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A WebSocket message: what [`WebSocket::recv`] gives and [`WebSocket::send`] takes.
/// Pings and pongs are answered and read by the socket itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8, checked).
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// The client started the closing handshake (the answer is sent already); nothing more
    /// will come. Sending one closes the socket with its code.
    Close(Option<CloseFrame>),
}

impl Message {
    /// The payload's length in bytes (0 for `Close`).
    pub fn len(&self) -> usize {
        match self {
            Message::Text(text) => text.len(),
            Message::Binary(data) => data.len(),
            Message::Close(_) => 0,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<String> for Message {
    fn from(text: String) -> Message {
        Message::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Message {
        Message::Text(text.to_string())
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Message {
        Message::Binary(data)
    }
}

impl From<&[u8]> for Message {
    fn from(data: &[u8]) -> Message {
        Message::Binary(data.to_vec())
    }
}

impl From<serde_json::Value> for Message {
    fn from(value: serde_json::Value) -> Message {
        Message::Text(value.to_string())
    }
}

/// A close frame's status code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code: 1000 normal, 1001 going away, 1008 policy, 1009 too big, 1011 error...
    pub code: u16,
    /// Why, for people; at most 123 bytes are sent.
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with `code` and `reason`.
    pub fn new(code: u16, reason: impl Into<String>) -> CloseFrame {
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }
}

/// What a WebSocket handler returns: the close frame that ends the socket (unless it is
/// closed already).
///
/// # Example
/// ```
/// use tinyserve::websocket::{CloseFrame, IntoClose};
/// use tinyserve::Disconnected;
/// assert_eq!(().into_close().code, 1000);
/// assert_eq!(Ok::<_, Disconnected>(CloseFrame::new(1008, "no prompt")).into_close().code, 1008);
/// assert_eq!(Err::<(), _>(Disconnected).into_close().code, 1000);
/// ```
pub trait IntoClose {
    /// The close frame.
    fn into_close(self) -> CloseFrame;
}

impl IntoClose for () {
    fn into_close(self) -> CloseFrame {
        CloseFrame::new(1000, "")
    }
}

impl IntoClose for CloseFrame {
    fn into_close(self) -> CloseFrame {
        self
    }
}

/// `Err(Disconnected)`: the socket is closed already; the frame is not sent.
impl<T: IntoClose> IntoClose for Result<T, Disconnected> {
    fn into_close(self) -> CloseFrame {
        match self {
            Ok(value) => value.into_close(),
            Err(Disconnected) => CloseFrame::new(1000, ""),
        }
    }
}

/// The handler of a WebSocket route, as the router keeps it.
pub(crate) type Handler = Arc<dyn Fn(&Request, &mut WebSocket) -> CloseFrame + Send + Sync>;

impl App {
    /// Registers a WebSocket route: a `GET` on `pattern` with `Upgrade: websocket` is answered
    /// `101 Switching Protocols`, then `handler` runs with the request and the open socket, on
    /// the connection's thread, until it returns; what it returns closes the socket
    /// ([`IntoClose`]). A `GET` without the upgrade gets 426. See [`crate::websocket`].
    ///
    /// # Example
    /// ```no_run
    /// use tinyserve::websocket::Message;
    ///
    /// tinyserve::App::new()
    ///     .websocket("/ws/shout", |_req, socket| loop {
    ///         match socket.recv()? {
    ///             Message::Text(text) => socket.send(text.to_uppercase())?,
    ///             Message::Binary(_) => socket.close(1003, "text only"),
    ///             Message::Close(_) => return Ok(()),
    ///         }
    ///     })
    ///     .run("127.0.0.1:8000")?;
    /// # Ok::<(), tinyserve::Error>(())
    /// ```
    pub fn websocket<F, R>(self, pattern: &str, handler: F) -> App
    where
        F: Fn(&Request, &mut WebSocket) -> R + Send + Sync + 'static,
        R: IntoClose,
    {
        self.get(pattern, upgrade_handler(handler))
    }
}

/// The `GET` handler of a WebSocket route: the handshake, then `handler` on the socket.
pub(crate) fn upgrade_handler<F, R>(
    handler: F,
) -> impl Fn(&Request) -> crate::Response + Send + Sync + 'static
where
    F: Fn(&Request, &mut WebSocket) -> R + Send + Sync + 'static,
    R: IntoClose,
{
    let handler: Handler = Arc::new(move |req, socket| handler(req, socket).into_close());
    move |req: &Request| handshake::answer(req, &handler)
}

/// Whether an upgrade may go ahead: the origin is allowed and a socket is free. The permit
/// keeps its place among the open sockets until dropped.
pub(crate) fn admit(
    sockets: &Arc<Sockets>,
    upgrade: &Upgrade,
    cors_origins: &[String],
) -> Result<Permit, Error> {
    handshake::check_origin(&upgrade.request, cors_origins)?;
    sockets.admit()
}
