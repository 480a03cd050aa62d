//! [`Watcher`]: polls a repository's folder and applies what changed. A model's files must be
//! the same at two polls in a row before it loads, so a folder still being copied is never
//! loaded half-way; a folder moved in with one rename loads at the second poll that sees it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::scan::{fingerprint, scan};
use super::{ControlMode, ModelRepository, Status};

/// A thread polling a [`ModelRepository`]'s folder; dropping it stops the thread.
///
/// # Example
/// ```no_run
/// use std::time::Duration;
/// use tinyserve::model::{ControlMode, ModelOptions, ModelRepository, Watcher};
/// let repository = ModelRepository::open("models", &ModelOptions::default(), ControlMode::All, &[])?;
/// let _watcher = Watcher::start(&repository, Duration::from_secs(1))?;
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watcher {
    /// Polls `repository` every `interval` on a thread of its own.
    pub fn start(repository: &ModelRepository, interval: Duration) -> crate::Result<Watcher> {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, repository) = (Arc::clone(&stop), repository.clone());
        let thread = std::thread::Builder::new()
            .name("tinyserve-watch".into())
            .spawn(move || {
                let mut next = Instant::now() + interval;
                while !flag.load(Ordering::SeqCst) {
                    // Short sleeps, so that a drop does not wait a whole interval.
                    std::thread::sleep(Duration::from_millis(50).min(interval));
                    if Instant::now() >= next {
                        repository.poll();
                        next = Instant::now() + interval;
                    }
                }
            })?;
        Ok(Watcher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ModelRepository {
    /// One look at the folder: models whose files are new or changed, and unchanged since
    /// the previous poll, are loaded (with a warm-up run) if they should be;
    /// models whose files are gone stop being served. Decoder and encoder folders are
    /// watched as the other models are.
    pub fn poll(&self) {
        let Some(dir) = self.dir().map(std::path::Path::to_path_buf) else {
            return;
        };
        let _change = self.change();
        let sources = match scan(&dir) {
            Ok(sources) => sources,
            Err(err) => {
                log::warn!("watching {}: {err}", dir.display());
                return;
            }
        };
        let gone: Vec<String> = {
            let status = self.status();
            let gone = status.iter().filter(|(name, st)| {
                (st.loaded.is_some() || !st.wanted) && !sources.contains_key(*name)
            });
            gone.map(|(name, _)| name.clone()).collect()
        };
        for name in gone {
            self.swap(|registry| registry.without(&name));
            self.status().remove(&name);
            log::info!("model \"{name}\" removed from {}", dir.display());
        }
        let mut ready = Vec::new();
        {
            let mut status = self.status();
            for (name, source) in sources {
                let seen = fingerprint(&source);
                let st = status.entry(name.clone()).or_insert_with(|| Status {
                    wanted: self.mode() == ControlMode::All,
                    ..Status::default()
                });
                if st.loaded.as_ref() == Some(&seen) {
                    st.pending = None;
                } else if st.pending.as_ref() != Some(&seen) {
                    st.pending = Some(seen);
                } else if st.wanted {
                    st.pending = None;
                    ready.push((name, source));
                } else {
                    st.pending = None;
                    st.loaded = Some(seen);
                }
            }
        }
        if !ready.is_empty() {
            self.load_all(ready, true);
        }
    }
}
