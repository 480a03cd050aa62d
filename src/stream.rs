//! Streaming bodies: a producer runs on a thread of its own (holding the request's worker turn)
//! and hands chunks to the connection's thread, which writes each one as an HTTP chunk the
//! moment it arrives.
//!
//! The hand-off is a small bounded channel, so a slow reader slows the producer down instead
//! of letting chunks pile up, and the connection thread can notice a client that left (the
//! socket reads EOF) while the producer is busy: the producer's next `send` then fails with
//! [`Disconnected`] and it stops.

use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

/// Chunks in flight between a producer and the socket: one, so a producer learns of a
/// disconnect within a chunk or two and never runs far ahead of a slow client.
const CHANNEL_CHUNKS: usize = 1;

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
    chunks: SyncSender<Vec<u8>>,
}

impl BodySender {
    /// Sends one chunk; it is written and flushed as soon as the connection thread takes it.
    /// Blocks while a chunk already waits for a slow client.
    pub fn send(&mut self, chunk: impl AsRef<[u8]>) -> Result<(), Disconnected> {
        let chunk = chunk.as_ref();
        if chunk.is_empty() {
            // An empty chunk would end a chunked body early.
            return Ok(());
        }
        self.chunks.send(chunk.to_vec()).map_err(|_| Disconnected)
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

    /// Starts the hand-off: the receiver goes to the connection thread, the sender to the producer.
    pub(crate) fn channel() -> (BodySender, Receiver<Vec<u8>>) {
        let (chunks, receiver) = std::sync::mpsc::sync_channel(CHANNEL_CHUNKS);
        (BodySender { chunks }, receiver)
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("keep_alive", &self.keep_alive)
            .finish_non_exhaustive()
    }
}
