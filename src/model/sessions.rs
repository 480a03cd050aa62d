//! `SessionPool`: the ONNX Runtime sessions of one model, each behind its own lock.
//!
//! (This file was missing from commit b0009a4, which uses it; restored from the loop that
//! commit removed from registry.rs and decoder.rs.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use ort::session::Session;

/// Sessions of one model. A run takes the first free one, or waits on one: a release wakes at
/// most one waiter, with no second lock to win on waking, and a run that panics cannot lose its
/// session.
pub(crate) struct SessionPool {
    sessions: Vec<Mutex<Session>>,
    /// Where the next run starts looking, so waiters spread over the sessions.
    next: AtomicUsize,
}

impl SessionPool {
    /// A pool of `sessions` (at least one, or [`SessionPool::take`] panics).
    pub(crate) fn new(sessions: Vec<Session>) -> SessionPool {
        SessionPool {
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// How many sessions the pool has.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// A free session, or the next one in turn once it is free. A run that panicked leaves its
    /// session usable (ONNX Runtime keeps no state between runs), so a poisoned lock is taken
    /// anyway.
    pub(crate) fn take(&self) -> MutexGuard<'_, Session> {
        let count = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..count {
            match self.sessions[(start + i) % count].try_lock() {
                Ok(session) => return session,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.sessions[start % count]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
