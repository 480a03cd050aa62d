//! The transport: HTTP/1.1 on blocking sockets, a part a handler author may skip.
//!
//! - `server`: the lifecycle — bind, the accept thread, a graceful shutdown that drains the
//!   connections ([`Server`], [`ShutdownHandle`]);
//! - `slots`: which connections may be open, and which gives way when all are taken;
//! - `connection`: the loop of one connection's thread — read a request, run its handler,
//!   write the answer, again while the client keeps the connection alive;
//! - `admission`: worker turns (how many handlers run at once), the queue waiting for one,
//!   the cap on streams, and the 503s beyond them;
//! - `head`: a parsed request head; `wire`: reading a request head and body under limits and
//!   deadlines; `write`: writing a response (whole, or chunk by chunk);
//! - `framing`: where a request body ends (RFC 9112), and the chunked decoder;
//! - `forwarded`: who the client is behind a trusted reverse proxy ([`TrustedProxies`]).
//!
//! One thread per open connection (capped by the connection slots) runs that connection's
//! handlers itself, under a worker turn: a request costs no hand-off to another thread.

mod admission;
mod connection;
pub(crate) mod forwarded;
mod framing;
mod head;
mod server;
mod slots;
pub(crate) mod wire;
mod write;

pub use forwarded::TrustedProxies;
pub use server::{Server, ShutdownHandle};
