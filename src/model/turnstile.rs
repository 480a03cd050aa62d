//! A FIFO counting semaphore, for decoder steps that take sessions in turn
//! (`SessionPool::take_in_turn`).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// A FIFO counting semaphore: a freed permit goes to the longest waiter, never to a newcomer.
pub(crate) struct Turnstile {
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

pub(crate) struct Permit<'a>(&'a Turnstile);

impl Turnstile {
    pub(crate) fn new(permits: usize) -> Turnstile {
        Turnstile {
            state: Mutex::new(TurnState {
                free: permits,
                waiting: VecDeque::new(),
            }),
        }
    }

    pub(crate) fn enter(&self) -> Permit<'_> {
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
