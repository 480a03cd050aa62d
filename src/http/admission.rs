//! Admission: who may run a handler now, who waits, and who gets 503 at once.
//!
//! At most `workers` handlers run at once (a counting semaphore: a [`WorkerTurn`]); up to
//! `queue_capacity` more requests wait for a turn, and beyond that a request is answered 503
//! at once, so latency cannot grow without bound. A streamed body's producer keeps its turn
//! until the stream ends, and at most `max_streams` streams run at once (a [`StreamSlot`]),
//! so streams cannot take every turn from plain requests.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use crate::{Error, ServerMetrics};

/// The worker turns and stream slots of one server.
pub(super) struct Admission {
    count: Mutex<WorkerCount>,
    freed: Condvar,
    max_running: usize,
    max_waiting: usize,
    max_streams: usize,
    metrics: Arc<ServerMetrics>,
}

#[derive(Default)]
struct WorkerCount {
    running: usize,
    waiting: usize,
}

/// One worker turn, given back when dropped.
pub(super) struct WorkerTurn(Arc<Admission>);

/// One of the limited slots for concurrent streams, released when dropped.
pub(super) struct StreamSlot(Arc<ServerMetrics>);

impl Admission {
    /// `max_running` turns (at least 1), `max_waiting` requests waiting for one (at least 1),
    /// `max_streams` streams at once.
    pub(super) fn new(
        max_running: usize,
        max_waiting: usize,
        max_streams: usize,
        metrics: Arc<ServerMetrics>,
    ) -> Admission {
        Admission {
            count: Mutex::new(WorkerCount::default()),
            freed: Condvar::new(),
            max_running: max_running.max(1),
            max_waiting: max_waiting.max(1),
            max_streams,
            metrics,
        }
    }

    /// Waits for a worker turn; a 503 at once when the queue of waiting requests is full.
    pub(super) fn turn(self: &Arc<Self>) -> Result<WorkerTurn, Error> {
        match self.enter() {
            true => Ok(WorkerTurn(Arc::clone(self))),
            false => {
                self.metrics.reject("queue_full");
                Err(Error::overloaded(
                    "server is at capacity: request queue is full",
                ))
            }
        }
    }

    /// A slot for one more stream; a 503 when `max_streams` are already running.
    pub(super) fn stream_slot(&self) -> Result<StreamSlot, Error> {
        let max = i64::try_from(self.max_streams).unwrap_or(i64::MAX);
        let taken =
            self.metrics
                .active_streams
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n < max).then_some(n + 1)
                });
        match taken {
            Ok(_) => Ok(StreamSlot(Arc::clone(&self.metrics))),
            Err(_) => {
                self.metrics.reject("streams");
                Err(Error::overloaded(format!(
                    "too many concurrent streams (limit {})",
                    self.max_streams
                )))
            }
        }
    }

    /// Waits for a turn; false at once when `max_waiting` requests are already waiting.
    fn enter(&self) -> bool {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        if count.running >= self.max_running {
            if count.waiting >= self.max_waiting {
                return false;
            }
            count.waiting += 1;
            self.metrics.queued.fetch_add(1, Ordering::Relaxed);
            while count.running >= self.max_running {
                count = self.freed.wait(count).unwrap_or_else(|e| e.into_inner());
            }
            count.waiting -= 1;
            self.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        }
        count.running += 1;
        true
    }

    fn leave(&self) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        count.running -= 1;
        if count.waiting > 0 {
            self.freed.notify_one();
        }
    }
}

impl Drop for WorkerTurn {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.active_streams.fetch_sub(1, Ordering::SeqCst);
    }
}
