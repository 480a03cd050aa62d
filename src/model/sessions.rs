//! A model's ONNX Runtime sessions, each behind its own lock: a run takes the first free one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};

use ort::session::Session;

#[cfg(feature = "language-models")]
use super::turnstile::{Permit, Turnstile};

/// The sessions of one model. With one lock per session there is no second lock on waking, and
/// a run that panicked leaves its session usable (ONNX Runtime keeps no state between runs),
/// so a poisoned lock is taken anyway.
pub(crate) struct SessionPool {
    sessions: Vec<Mutex<Session>>,
    /// Where the next search starts, so that runs spread over the sessions.
    next: AtomicUsize,
    /// The queue of `SessionPool::take_in_turn`.
    #[cfg(feature = "language-models")]
    turns: Turnstile,
}

impl SessionPool {
    /// A pool of `sessions`; there must be at least one.
    pub(crate) fn new(sessions: Vec<Session>) -> SessionPool {
        #[cfg(feature = "language-models")]
        let count = sessions.len();
        SessionPool {
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
            #[cfg(feature = "language-models")]
            turns: Turnstile::new(count),
        }
    }

    /// A free session, or the next one in turn once it comes free. Not fair: a thread that
    /// has just given a session back may take it again before a waiting one wakes, which is
    /// what a burst of short runs wants (no session idles while a waiter is woken).
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

    #[cfg(feature = "language-models")]
    /// A session, first come first served: for loops that run step after step (a token
    /// stream), where [`SessionPool::take`] would let a running stream take its session back
    /// again and again while a new stream's prompt waits. Every user of this pool's sessions
    /// must come through here for the order to hold.
    pub(crate) fn take_in_turn(&self) -> InTurn<'_> {
        let permit = self.turns.enter();
        InTurn {
            session: self.take(),
            _permit: permit,
        }
    }

    /// How many sessions there are.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(feature = "language-models")]
/// A session taken in turn; gives its turn to the next in line when dropped.
pub(crate) struct InTurn<'a> {
    // Dropped first: the session is free before the next in line is let in.
    session: MutexGuard<'a, Session>,
    _permit: Permit<'a>,
}

#[cfg(feature = "language-models")]
impl std::ops::Deref for InTurn<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

#[cfg(feature = "language-models")]
impl std::ops::DerefMut for InTurn<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}
