//! The seam between the transport and what it serves. The transport reads a request under its
//! limits and hands it to a [`Service`]; the service answers with a [`Reply`], which the
//! transport writes. The transport knows no routes, hooks or handlers (the app implements
//! `Service`); the service touches no socket but the one a [`Takeover`] is given.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::forwarded::Origin;
use super::head::Head;
use crate::stream::Stream;
use crate::{Error, Headers};

/// What the transport serves: the app.
pub(crate) trait Service: Send + Sync + 'static {
    /// The answer to a request settled by its head alone (a CORS preflight, a missing API key,
    /// a before hook's refusal), asked before the body is read or `100 Continue` sent, so a
    /// refusal costs no upload; `request.body` is empty. `None`: go on to
    /// [`Service::respond`].
    fn screen(&self, request: &Incoming) -> Option<Reply>;

    /// The answer to a request whose body is read, on its connection's thread during a worker
    /// turn.
    fn respond(&self, request: Incoming) -> Reply;

    /// The answer to a request the transport refuses after reading its head (no worker turn
    /// is free): `err`'s, as the app writes errors and logs requests.
    fn refuse(&self, request: &Incoming, err: &Error) -> Reply;

    /// The server is shutting down: close what the service keeps open on taken-over
    /// connections (WebSockets, with 1001).
    fn shutdown(&self);
}

/// A request as the transport read it.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The request line and header fields.
    pub(crate) head: Head,
    /// The address of the socket's peer (a proxy's, behind one).
    pub(crate) peer: Option<SocketAddr>,
    /// Who the client is, after believing what trusted proxies say.
    pub(crate) origin: Origin,
    /// The client's `X-Request-ID` (sanitized) or a generated one; the transport echoes it.
    pub(crate) request_id: String,
    /// Empty until the body is read ([`Service::respond`]).
    pub(crate) body: Vec<u8>,
    /// The client's socket, once the body is read: a handler may check whether its client
    /// has gone.
    pub(crate) socket: Option<Arc<TcpStream>>,
    /// The connection holds one of the reserved slots, which serve only the health probes
    /// (every other slot is busy): [`Service::screen`] refuses anything else with 503.
    pub(crate) reserved: bool,
}

/// What the transport writes back: a status, headers and a body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Headers,
    pub(crate) body: ReplyBody,
    /// The route template the request matched, for the metrics (`None`: unmatched).
    pub(crate) route: Option<String>,
    /// Called once, when the reply has been written or writing it failed, with what was
    /// written: how the app's access log learns the bytes and the time.
    pub(crate) on_written: Option<OnWritten>,
}

/// The call of [`Reply::on_written`].
pub(crate) type OnWritten = Box<dyn FnOnce(&Written)>;

/// A reply's body.
pub(crate) enum ReplyBody {
    /// In memory, written with `Content-Length`.
    Whole(Vec<u8>),
    /// Produced piece by piece on a thread of its own, written chunked (close-delimited to an
    /// HTTP/1.0 client).
    Stream(Stream),
    /// `101 Switching Protocols`, then the connection belongs to the takeover until it
    /// returns; the connection closes after.
    Switch(Takeover),
}

/// Runs a connection after `101 Switching Protocols`: the socket, and the bytes the client
/// sent after its request head, read already.
pub(crate) type Takeover = Box<dyn FnOnce(&Arc<TcpStream>, Vec<u8>) -> Switched>;

/// What a taken-over connection did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Switched {
    pub(crate) bytes_sent: u64,
    /// Messages received and sent.
    pub(crate) messages: (u64, u64),
}

/// What the transport wrote for one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub(crate) status: u16,
    /// Body bytes written (0 when writing failed before the body).
    pub(crate) bytes: u64,
    /// From the request's first byte to the answer's last.
    pub(crate) duration: Duration,
    /// A taken-over connection's messages received and sent.
    pub(crate) messages: Option<(u64, u64)>,
}

impl Reply {
    /// A reply with a whole body.
    pub(crate) fn whole(status: u16, headers: Headers, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers,
            body: ReplyBody::Whole(body),
            route: None,
            on_written: None,
        }
    }

    /// `err`'s JSON answer (as `Response::from_error` builds it).
    pub(crate) fn error(err: &Error) -> Reply {
        let body = err.to_json().to_string().into_bytes();
        Reply::whole(err.status(), err.answer_headers(), body)
    }
}
