//! A model's ONNX Runtime sessions, each behind its own lock: a run takes the first free one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};

use ort::session::Session;

/// The sessions of one model. With one lock per session there is no second lock on waking, and
/// a run that panicked leaves its session usable (ONNX Runtime keeps no state between runs),
/// so a poisoned lock is taken anyway.
pub(crate) struct SessionPool {
    sessions: Vec<Mutex<Session>>,
    /// Where the next search starts, so that runs spread over the sessions.
    next: AtomicUsize,
    /// The queue of [`SessionPool::take_in_turn`].
    turns: Turnstile,
}

impl SessionPool {
    /// A pool of `sessions`; there must be at least one.
    pub(crate) fn new(sessions: Vec<Session>) -> SessionPool {
        let count = sessions.len();
        SessionPool {
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
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

/// A session taken in turn; gives its turn to the next in line when dropped.
pub(crate) struct InTurn<'a> {
    // Dropped first: the session is free before the next in line is let in.
    session: MutexGuard<'a, Session>,
    _permit: Permit<'a>,
}

impl std::ops::Deref for InTurn<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.session
    }
}

impl std::ops::DerefMut for InTurn<'_> {
    fn deref_mut(&mut self) -> &mut Session {
        &mut self.session
    }
}

/// A FIFO counting semaphore: a freed permit goes to the longest waiter, never to a newcomer.
struct Turnstile {
    state: Mutex<TurnState>,
}

struct TurnState {
    free: usize,
    waiting: VecDeque<Arc<Waiter>>,
}

#[derive(Default)]
struct Waiter {
    admitted: Mutex<bool>,
    wake: Condvar,
}

struct Permit<'a>(&'a Turnstile);

impl Turnstile {
    fn new(permits: usize) -> Turnstile {
        Turnstile {
            state: Mutex::new(TurnState {
                free: permits,
                waiting: VecDeque::new(),
            }),
        }
    }

    fn enter(&self) -> Permit<'_> {
        let waiter = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return Permit(self);
            }
            let waiter = Arc::new(Waiter::default());
            state.waiting.push_back(Arc::clone(&waiter));
            waiter
        };
        let mut admitted = waiter
            .admitted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while !*admitted {
            admitted = waiter
                .wake
                .wait(admitted)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.waiting.pop_front() {
            Some(next) => {
                *next.admitted.lock().unwrap_or_else(PoisonError::into_inner) = true;
                next.wake.notify_one();
            }
            None => state.free += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_turn_goes_to_the_longest_waiter() {
        let turns = Arc::new(Turnstile::new(1));
        let first = turns.enter();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..3 {
            let (line, order) = (Arc::clone(&turns), Arc::clone(&order));
            threads.push(std::thread::spawn(move || {
                let _permit = line.enter();
                order.lock().expect("lock").push(i);
            }));
            // Each waits in line before the next arrives.
            while turns.state.lock().expect("lock").waiting.len() < i + 1 {
                std::thread::yield_now();
            }
        }
        drop(first);
        for thread in threads {
            thread.join().expect("waiter");
        }
        assert_eq!(*order.lock().expect("lock"), vec![0, 1, 2]);
        assert_eq!(turns.state.lock().expect("lock").free, 1);
    }
}
