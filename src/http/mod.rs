//! The transport: HTTP/1.1 on blocking sockets, a part a handler author may skip.
//!
//! It is the ground floor: it reads a request and hands it to a `Service` (the app implements
//! it), then writes back the reply it gets; it knows nothing of routes, hooks or handlers.
//!
//! - `server`: the lifecycle — bind, the accept thread, a graceful shutdown that drains the
//!   connections ([`Server`], [`ShutdownHandle`]);
//! - `service`: the seam — the `Service` trait, the request as read and the reply to write;
//! - `slots`: which connections may be open, and which gives way when all are taken;
//! - `connection`: the loop of one connection's thread — read a request, have the service
//!   answer it, write the answer, again while the client keeps the connection alive;
//! - `admission`: worker turns (how many requests are answered at once), the queue waiting for
//!   one, the cap on streams, and the 503s beyond them;
//! - `head`: a parsed request head; `wire`: reading a request head and body under limits and
//!   deadlines; `write`: writing a response (whole, or chunk by chunk);
//! - `framing`: where a request body ends (RFC 9112), and the chunked decoder;
//! - `peer`: whether a client is still there, asked without blocking;
//! - `forwarded`: who the client is behind a trusted reverse proxy ([`TrustedProxies`]).
//!
//! One thread per open connection (capped by the connection slots) runs that connection's
//! requests itself, under a worker turn: a request costs no hand-off to another thread.

mod admission;
mod connection;
mod forwarded;
mod framing;
mod head;
mod peer;
mod server;
mod service;
mod slots;
mod wire;
mod write;

pub use forwarded::TrustedProxies;
pub use server::{Server, ShutdownHandle};

pub(crate) use forwarded::Origin;
pub(crate) use peer::{peek, peer_closed, peer_state, probe_with_continue, Peer};
pub(crate) use server::Config;
pub(crate) use service::{Incoming, Reply, ReplyBody, Service, Switched, Written};
pub(crate) use wire::Limits;
