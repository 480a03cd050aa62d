//! An upstream's answer read as it comes, for the LLM proxy's streams: the same exchange and
//! pool as every other call, read with a timeout per wait and a deadline for the whole.

use std::io::{self, Read};
use std::time::{Duration, Instant};

use super::exchange::{Exchange, Stop};
use super::{Call, BODY_LIMIT};
use crate::{Error, ErrorKind, Result};

/// The answer of a call started with `Call::start`: its head, and its body as a reader.
pub(crate) struct UpstreamStream {
    exchange: Exchange,
    /// Body bytes decoded and not yet read, from `at`.
    pending: Vec<u8>,
    at: usize,
    per_read: Duration,
    until: Instant,
    stream_deadline: Duration,
}

impl UpstreamStream {
    pub(super) fn start(call: &Call, per_read: Duration, until: Instant) -> Result<UpstreamStream> {
        let head_until = until.min(Instant::now() + per_read);
        let mut exchange = Exchange::send(call, head_until, per_read)?;
        let mut pending = Vec::new();
        exchange
            .receive_head(head_until, per_read, &mut pending)
            .map_err(|stop| match stop {
                Stop::Failed(err) => err,
                _ => exchange.error(
                    ErrorKind::GatewayTimeout,
                    format!("no answer within {} ms", per_read.as_millis()),
                ),
            })?;
        let status = exchange.status();
        if (100..200).contains(&status) {
            return Err(call.upstream.status_error(&call.url(), status, b""));
        }
        Ok(UpstreamStream {
            exchange,
            pending,
            at: 0,
            per_read,
            until,
            stream_deadline: call.upstream.inner.stream_deadline,
        })
    }

    pub(crate) fn status(&self) -> u16 {
        self.exchange.status()
    }

    /// A header of the answer.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.exchange.header(name)
    }

    /// The whole body, up to the 64 MiB limit of every answer.
    pub(crate) fn into_bytes(mut self) -> Result<Vec<u8>> {
        let mut body = std::mem::take(&mut self.pending).split_off(self.at);
        while !self.exchange.is_done() {
            self.exchange
                .read_more(
                    self.until,
                    Some(self.per_read),
                    &|| false,
                    &mut body,
                    BODY_LIMIT,
                )
                .map_err(|stop| self.stop_error(stop))?;
        }
        Ok(body)
    }

    fn stop_error(&self, stop: Stop) -> Error {
        match stop {
            Stop::Failed(err) => err,
            Stop::Idle => self.exchange.error(
                ErrorKind::GatewayTimeout,
                format!(
                    "stream stalled: nothing within the {} ms read timeout",
                    self.per_read.as_millis()
                ),
            ),
            Stop::Deadline | Stop::Gone => self.exchange.error(
                ErrorKind::GatewayTimeout,
                format!(
                    "stream not finished within its {} s deadline",
                    self.stream_deadline.as_secs()
                ),
            ),
        }
    }
}

impl Read for UpstreamStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.pending.len() {
            if self.exchange.is_done() {
                return Ok(0);
            }
            self.pending.clear();
            self.at = 0;
            // One read of the connection decodes to at most its own size.
            let limit = usize::MAX;
            if let Err(stop) = self.exchange.read_more(
                self.until,
                Some(self.per_read),
                &|| false,
                &mut self.pending,
                limit,
            ) {
                let err = self.stop_error(stop);
                let kind = match err.kind() {
                    ErrorKind::GatewayTimeout => io::ErrorKind::TimedOut,
                    _ => io::ErrorKind::Other,
                };
                return Err(io::Error::new(kind, err));
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
