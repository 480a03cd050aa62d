//! A model's ONNX Runtime sessions, each behind its own lock: a run takes the first free one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use ort::session::Session;

/// The sessions of one model. With one lock per session there is no second lock on waking, and
/// a run that panicked leaves its session usable (ONNX Runtime keeps no state between runs),
/// so a poisoned lock is taken anyway.
pub(crate) struct SessionPool {
    sessions: Vec<Mutex<Session>>,
    /// Where the next search starts, so that runs spread over the sessions.
    next: AtomicUsize,
}

impl SessionPool {
    /// A pool of `sessions`; there must be at least one.
    pub(crate) fn new(sessions: Vec<Session>) -> SessionPool {
        SessionPool {
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// A free session, or the next one in turn once it comes free.
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

    /// How many sessions there are.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }
}
