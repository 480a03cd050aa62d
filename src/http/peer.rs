//! What a client has done with its side of a connection, seen without blocking and without
//! consuming what it sent: still there, half-closed, or gone. A request asks it for
//! `Request::is_client_gone`, a streamed body and a WebSocket while they run, the
//! outbound pool of its idle connections.

use std::io::{self, Write};
use std::net::TcpStream;

/// What a peer has done with its side of a connection, as far as can be seen without writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// It may still send: nothing to read yet, or data waiting (a pipelined request).
    Open,
    /// It sent its end of stream: it closed the socket, or only shut down its writing side
    /// (a half-close) and still reads. Only a write tells the two apart.
    ReadClosed,
    /// The connection was reset or failed: nothing written will arrive.
    Gone,
}

/// The state of `socket`'s peer, checked without blocking, without consuming anything it
/// sent, and without touching the socket's blocking mode, so another thread may check while
/// this one reads or writes.
pub(crate) fn peer_state(socket: &TcpStream) -> Peer {
    match peek(socket) {
        Ok(0) => Peer::ReadClosed,
        Ok(_) => Peer::Open,
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Peer::Open
        }
        Err(_) => Peer::Gone,
    }
}

/// Peeks at `socket` without blocking and without consuming: `Ok(0)` at the peer's end of
/// stream, `Ok(1)` when it sent something, `WouldBlock` when it is quiet. Leaves the socket's
/// blocking mode alone (std's `peek` would need it switched), so any thread may call it.
pub(crate) fn peek(socket: &TcpStream) -> io::Result<usize> {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    socket2::SockRef::from(socket).recv_with_flags(&mut byte, flags)
}

/// Tells a half-closed HTTP/1.1 client from one that left, before its answer is written: an
/// interim `100 Continue`, which every HTTP/1.1 client skips (RFC 9110 section 15.2: a client
/// parses 1xx responses it did not expect), makes a socket closed for good answer with a reset,
/// so the next [`peer_state`] says [`Peer::Gone`]. Whether the probe could be written.
pub(crate) fn probe_with_continue(socket: &TcpStream) -> bool {
    (&*socket)
        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        .is_ok()
}

/// Whether the peer has closed its side of `socket` (or reset it): see [`peer_state`].
pub(crate) fn peer_closed(socket: &TcpStream) -> bool {
    peer_state(socket) != Peer::Open
}
