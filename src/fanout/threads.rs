//! The threads outbound calls run on: started on demand, reused, parked when idle.
//!
//! A blocking call holds a thread while it waits, so the number of threads follows the calls
//! in flight: a call takes an idle thread (one futex wake), or starts a new one while there
//! are fewer than the bound, or waits in a queue for the next thread that frees up. An idle
//! thread is parked (no CPU at all) and exits after [`IDLE_EXIT`] without work; the most
//! recently parked thread is reused first, so under a steady load the surplus ones age out.
//!
//! Not rayon: rayon's idle workers look for work in every other worker's queue before they
//! sleep, which for hundreds of threads that mostly wait on sockets costs more CPU than the
//! calls themselves (see the README's design decisions).

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a thread stays parked without work before it exits.
pub(crate) const IDLE_EXIT: Duration = Duration::from_secs(10);
/// Stack of a call thread: a blocking HTTP call (with name resolution) needs little of it.
const STACK_BYTES: usize = 256 * 1024;

/// Work for a thread: one outbound call, which delivers its own result.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads for blocking work that grow with demand up to `max`.
pub(crate) struct Threads {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    max: usize,
    /// Jobs that found every thread busy at the bound and waited in the queue.
    queued: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Parked threads, the most recently parked last.
    idle: Vec<Arc<Slot>>,
    /// Threads alive (busy or parked).
    live: usize,
    /// Jobs waiting for a thread (only when `live` is at the bound).
    waiting: VecDeque<Job>,
}

/// Where a parked thread receives its next job.
struct Slot {
    job: Mutex<Option<Job>>,
    thread: Thread,
}

/// A poisoned lock only means a thread panicked while holding it; the state stays usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Threads {
    /// No threads yet; at most `max` at once.
    pub(crate) fn new(max: usize) -> Threads {
        Threads {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                max: max.max(1),
                queued: AtomicU64::new(0),
            }),
        }
    }

    /// Runs `job` on an idle thread, a new one, or the next one to free up.
    pub(crate) fn submit(&self, job: Job) {
        let mut state = lock(&self.shared.state);
        if let Some(slot) = state.idle.pop() {
            drop(state);
            *lock(&slot.job) = Some(job);
            slot.thread.unpark();
            return;
        }
        state.waiting.push_back(job);
        if state.live >= self.shared.max {
            self.shared.queued.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.live += 1;
        drop(state);
        let shared = Arc::clone(&self.shared);
        let started = thread::Builder::new()
            .name("tinyserve-call".to_string())
            .stack_size(STACK_BYTES)
            .spawn(move || work(&shared));
        if started.is_err() {
            // The system refuses more threads: the job waits for a running one, or runs here
            // when there is none (so that it always runs).
            let mut state = lock(&self.shared.state);
            state.live -= 1;
            if state.live == 0 {
                let job = state.waiting.pop_back();
                drop(state);
                if let Some(job) = job {
                    job();
                }
            }
        }
    }

    /// Threads alive now (busy or parked).
    pub(crate) fn live(&self) -> usize {
        lock(&self.shared.state).live
    }

    /// Threads parked now.
    pub(crate) fn idle(&self) -> usize {
        lock(&self.shared.state).idle.len()
    }

    /// Jobs so far that waited for a thread because all `max` were busy.
    pub(crate) fn queued(&self) -> u64 {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// The bound.
    pub(crate) fn max(&self) -> usize {
        self.shared.max
    }
}

/// A thread's life: queued jobs first, else park until handed one, exit after IDLE_EXIT.
fn work(shared: &Shared) {
    let slot = Arc::new(Slot {
        job: Mutex::new(None),
        thread: thread::current(),
    });
    loop {
        let queued = {
            let mut state = lock(&shared.state);
            let job = state.waiting.pop_front();
            if job.is_none() {
                state.idle.push(Arc::clone(&slot));
            }
            job
        };
        let job = match queued {
            Some(job) => job,
            None => match wait(shared, &slot) {
                Some(job) => job,
                None => return,
            },
        };
        // A panicking call loses only its own result (a 504 at its deadline), not the thread.
        if panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            crate::log::error("an outbound call panicked");
        }
    }
}

/// Parks until a job arrives in `slot`; `None` once the thread has been idle for IDLE_EXIT
/// (and has left the idle list, so no job can arrive any more).
fn wait(shared: &Shared, slot: &Arc<Slot>) -> Option<Job> {
    let parked = Instant::now();
    let mut leaving = true;
    loop {
        if let Some(job) = lock(&slot.job).take() {
            return Some(job);
        }
        let left = IDLE_EXIT.saturating_sub(parked.elapsed());
        if leaving && left.is_zero() {
            let mut state = lock(&shared.state);
            match state.idle.iter().position(|s| Arc::ptr_eq(s, slot)) {
                Some(i) => {
                    state.idle.remove(i);
                    state.live -= 1;
                    return None;
                }
                // A submitter has just taken this thread off the list: its job is on the way.
                None => leaving = false,
            }
        }
        match leaving {
            true => thread::park_timeout(left),
            false => thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn threads_are_reused_and_bounded() {
        let threads = Threads::new(2);
        // Every job holds its thread until the test releases it: the first two start threads,
        // the other four find both busy at the bound and wait.
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (done, results) = mpsc::channel();
        for _ in 0..6 {
            let (gate, done) = (Arc::clone(&gate), done.clone());
            threads.submit(Box::new(move || {
                let _ = lock(&gate).recv();
                let _ = done.send(thread::current().id());
            }));
        }
        assert_eq!(threads.queued(), 4, "four jobs waited for a thread");
        for _ in 0..6 {
            let _ = release.send(());
        }
        let mut ids = Vec::new();
        for _ in 0..6 {
            let id = results
                .recv_timeout(Duration::from_secs(10))
                .expect("job ran");
            ids.push(format!("{id:?}"));
        }
        ids.sort();
        ids.dedup();
        // Two threads started; a busy machine may let the first run every job before the
        // second is scheduled.
        assert!(
            ids.len() <= 2,
            "six jobs ran on the two threads allowed: {ids:?}"
        );
        assert_eq!(threads.live(), 2);
    }
}
