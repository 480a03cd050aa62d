//! [`ModelRepository`]: the model folder while the server runs. It hands each request the
//! [`ModelRegistry`] of the moment, loads and unloads models on request (Triton's model
//! repository extension), and with a [`Watcher`] picks up models added, changed or removed
//! on disk. A change builds the new models first and then swaps one registry for another:
//! requests in flight keep the registry (and the models) they started with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::options::ModelOptions;
use super::registry::{empty_folder, ModelRegistry};
use crate::{Error, ErrorKind, Result};

mod load;
pub(crate) mod policy;
pub(crate) mod scan;
pub(crate) mod stats;
mod watch;

pub use policy::VersionPolicy;
pub use stats::{ModelStats, Timings};
pub use watch::Watcher;

use scan::{Fingerprint, Source};

/// Which models a repository loads, as Triton's `--model-control-mode` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ControlMode {
    /// Every model of the folder (Triton's `none`).
    #[default]
    All,
    /// Only the models named at start-up and those loaded through the API (`explicit`).
    Explicit,
}

/// The state of a model (or of one version) in the repository index, as Triton names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// Loaded and served.
    Ready,
    /// Not served: unloaded, or it failed to load (the entry's reason says why).
    Unavailable,
    /// Being loaded.
    Loading,
}

impl ModelState {
    /// `READY`, `UNAVAILABLE` or `LOADING`.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelState::Ready => "READY",
            ModelState::Unavailable => "UNAVAILABLE",
            ModelState::Loading => "LOADING",
        }
    }
}

/// One row of the repository index: a model, or one version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The model's name.
    pub name: String,
    /// The version, when the row is about one.
    pub version: Option<u64>,
    /// Its state.
    pub state: ModelState,
    /// Why it is not ready (empty when it is).
    pub reason: String,
}

/// What the repository knows of one model of the folder besides what is served.
#[derive(Debug, Clone, Default)]
struct Status {
    /// Whether it should be loaded (every model in [`ControlMode::All`] until unloaded).
    wanted: bool,
    loading: bool,
    /// Why the model as a whole cannot be served (a bad `config.pbtxt`, a name clash...).
    problem: Option<String>,
    /// Versions that failed to load, with the reason.
    failed: BTreeMap<u64, String>,
    /// A decoder or encoder folder (no ONNX versions).
    folder: bool,
    /// The files as they were when last loaded.
    loaded: Option<Fingerprint>,
    /// The files as the last poll saw them, when they differ from `loaded`.
    pending: Option<Fingerprint>,
}

struct Inner {
    /// `None` for a fixed set of models ([`ModelRepository::from_registry`]).
    dir: Option<PathBuf>,
    options: ModelOptions,
    mode: ControlMode,
    /// The registry served, with the number of swaps that made it.
    current: RwLock<(u64, ModelRegistry)>,
    status: Mutex<BTreeMap<String, Status>>,
    /// Held while models load or unload: one change at a time.
    changes: Mutex<()>,
}

/// The model folder while the server runs: cheap to clone, clones share it.
///
/// # Example
/// ```no_run
/// use tinyserve::model::{ControlMode, ModelOptions, ModelRepository};
/// let repository = ModelRepository::open("models", &ModelOptions::default(), ControlMode::All, &[])?;
/// for entry in repository.index(false) {
///     println!("{} {:?} {}", entry.name, entry.version, entry.state.as_str());
/// }
/// let iris = repository.registry().get("iris")?;
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Clone)]
pub struct ModelRepository(Arc<Inner>);

impl std::fmt::Debug for ModelRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelRepository")
            .field("dir", &self.0.dir)
            .field("mode", &self.0.mode)
            .finish_non_exhaustive()
    }
}

impl ModelRepository {
    /// Opens the folder `dir` and loads its models: all of them in [`ControlMode::All`], the
    /// ones named in `load` in [`ControlMode::Explicit`]. A model that fails to load does not
    /// fail the call: it is `UNAVAILABLE` in the [index](ModelRepository::index) with its
    /// reason ([`ModelRepository::failures`] lists them, for a strict start-up). Fails when
    /// the folder cannot be read, or holds no model in [`ControlMode::All`].
    pub fn open(
        dir: impl AsRef<Path>,
        options: &ModelOptions,
        mode: ControlMode,
        load: &[String],
    ) -> Result<ModelRepository> {
        let dir = dir.as_ref();
        let sources = scan::scan(dir).map_err(|err| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot read model folder {}: {err}", dir.display()),
            )
        })?;
        if sources.is_empty() && mode == ControlMode::All {
            return Err(empty_folder(dir));
        }
        let repository = ModelRepository(Arc::new(Inner {
            dir: Some(dir.to_path_buf()),
            options: options.clone(),
            mode,
            current: RwLock::default(),
            status: Mutex::default(),
            changes: Mutex::default(),
        }));
        let wanted = |name: &str| mode == ControlMode::All || load.iter().any(|n| n == name);
        {
            let mut status = repository.status();
            for (name, source) in &sources {
                status.insert(
                    name.clone(),
                    Status {
                        wanted: wanted(name),
                        folder: matches!(source, Source::Folder { .. }),
                        ..Status::default()
                    },
                );
            }
            for name in load.iter().filter(|n| !sources.contains_key(*n)) {
                let problem = format!("no model \"{name}\" in the model folder {}", dir.display());
                status.insert(
                    name.clone(),
                    Status {
                        wanted: true,
                        problem: Some(problem),
                        ..Status::default()
                    },
                );
            }
        }
        let chosen: Vec<(String, Source)> = sources
            .into_iter()
            .filter(|(name, _)| wanted(name))
            .collect();
        repository.load_all(chosen, false);
        Ok(repository)
    }

    /// A repository that serves `registry` and never changes: loading and unloading are
    /// refused.
    pub fn from_registry(registry: ModelRegistry) -> ModelRepository {
        ModelRepository(Arc::new(Inner {
            dir: None,
            options: ModelOptions::default(),
            mode: ControlMode::All,
            current: RwLock::new((0, registry)),
            status: Mutex::default(),
            changes: Mutex::default(),
        }))
    }

    /// The models as they are now. A request takes this once and keeps it to its end.
    pub fn registry(&self) -> ModelRegistry {
        self.numbered_registry().1
    }

    /// [`ModelRepository::registry`] with its number, which grows by one at each change: the
    /// same number means the same models.
    pub(crate) fn numbered_registry(&self) -> (u64, ModelRegistry) {
        self.0
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The folder, unless the repository serves a fixed set of models.
    pub fn dir(&self) -> Option<&Path> {
        self.0.dir.as_deref()
    }

    /// The control mode.
    pub fn mode(&self) -> ControlMode {
        self.0.mode
    }

    /// Every model of the folder, one row per served or failed version (or one for the model,
    /// when it is unloaded, loading or cannot be served at all); `ready_only` keeps the
    /// `READY` rows.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        let registry = self.registry();
        let status = self.status();
        let mut names: Vec<&str> = status.keys().map(String::as_str).collect();
        names.extend(registry.iter().map(|m| m.name()));
        names.extend(registry.decoder_names());
        names.extend(registry.encoder_names());
        names.sort_unstable();
        names.dedup();
        let everywhere = Status {
            wanted: true,
            ..Status::default()
        };
        let mut rows = Vec::new();
        for name in names {
            let st = status.get(name).unwrap_or(&everywhere);
            rows.extend(entries(name, st, &registry));
        }
        rows.retain(|row| !ready_only || row.state == ModelState::Ready);
        rows
    }

    /// Whether every model that should be loaded is, with every version it should serve.
    pub fn is_ready(&self) -> bool {
        self.failures().is_empty()
    }

    /// The models that should be loaded and are not (or not wholly), with the reason.
    pub fn failures(&self) -> Vec<(String, String)> {
        let registry = self.registry();
        let status = self.status();
        let mut failures = Vec::new();
        for (name, st) in status.iter().filter(|(_, st)| st.wanted) {
            let served = !registry.versions(name).is_empty() || is_folder_model(&registry, name);
            let reason = match (&st.problem, st.failed.iter().next()) {
                (Some(problem), _) => Some(problem.clone()),
                (None, Some((version, why))) => Some(format!("version {version}: {why}")),
                (None, None) if !served && st.loading => Some("loading".to_string()),
                (None, None) if !served => Some("not loaded".to_string()),
                (None, None) => None,
            };
            failures.extend(reason.map(|r| (name.clone(), r)));
        }
        failures
    }

    /// Loads (or reloads) `name` from the folder: its versions (or its decoder or encoder
    /// folder) load and answer a warm-up run, and then they replace what is served.
    /// Fails when the folder has no such model, or when nothing of it loads (the model is then
    /// `UNAVAILABLE` with the reason).
    pub fn load(&self, name: &str) -> Result<()> {
        let dir = self.fixed_or_dir()?;
        let _change = self.change();
        let sources = scan::scan(&dir).map_err(|err| {
            Error::internal(format!("cannot read model folder {}: {err}", dir.display()))
        })?;
        let Some(source) = sources.get(name).cloned() else {
            return Err(Error::new(
                ErrorKind::ModelNotFound,
                format!("no model \"{name}\" in the model folder {}", dir.display()),
            ));
        };
        self.status().entry(name.to_string()).or_default().wanted = true;
        self.load_all(vec![(name.to_string(), source)], true);
        let status = self.status().get(name).cloned().unwrap_or_default();
        let failed = status
            .problem
            .or_else(|| status.failed.values().next().cloned());
        let registry = self.registry();
        let served = !registry.versions(name).is_empty() || is_folder_model(&registry, name);
        match (failed, served) {
            (Some(why), false) => Err(Error::bad_request(format!(
                "failed to load \"{name}\": {why}"
            ))),
            _ => Ok(()),
        }
    }

    /// Stops serving `name`: requests in flight finish on it, new ones get a 404. The model
    /// stays `UNAVAILABLE` (reason `unloaded`) until loaded again, even if its files change.
    pub fn unload(&self, name: &str) -> Result<()> {
        self.fixed_or_dir()?;
        let _change = self.change();
        {
            let mut status = self.status();
            let Some(st) = status.get_mut(name) else {
                return Err(Error::model_not_found(name));
            };
            st.wanted = false;
            st.problem = None;
            st.failed.clear();
        }
        self.swap(|registry| registry.without(name));
        log::info!("model \"{name}\" unloaded");
        Ok(())
    }

    fn fixed_or_dir(&self) -> Result<PathBuf> {
        self.0.dir.clone().ok_or_else(|| {
            Error::bad_request(
                "this server serves a fixed set of models (--model-name): models cannot be \
                 loaded or unloaded",
            )
        })
    }

    fn status(&self) -> MutexGuard<'_, BTreeMap<String, Status>> {
        self.0.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn change(&self) -> MutexGuard<'_, ()> {
        self.0
            .changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the registry by `f` of it.
    fn swap(&self, f: impl FnOnce(&ModelRegistry) -> ModelRegistry) {
        let mut current = self
            .0
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let next = f(&current.1);
        *current = (current.0 + 1, next);
    }
}

/// Whether `name` is served as a decoder or encoder folder.
fn is_folder_model(registry: &ModelRegistry, name: &str) -> bool {
    registry.decoder_names().any(|n| n == name) || registry.encoder_names().any(|n| n == name)
}

/// The index rows of one model.
fn entries(name: &str, st: &Status, registry: &ModelRegistry) -> Vec<IndexEntry> {
    let row = |version: Option<u64>, state: ModelState, reason: &str| IndexEntry {
        name: name.to_string(),
        version,
        state,
        reason: reason.to_string(),
    };
    let mut rows: Vec<IndexEntry> = registry
        .versions(name)
        .into_iter()
        .map(|v| row(Some(v), ModelState::Ready, ""))
        .collect();
    if let Some(version) = registry.folder_version(name) {
        rows.push(row(Some(version), ModelState::Ready, ""));
    }
    for (version, why) in &st.failed {
        if !rows.iter().any(|r| r.version == Some(*version)) {
            rows.push(row(Some(*version), ModelState::Unavailable, why));
        }
    }
    if rows.is_empty() {
        rows.push(match (&st.problem, st.loading, st.wanted) {
            (Some(problem), _, _) => row(None, ModelState::Unavailable, problem),
            (None, true, _) => row(None, ModelState::Loading, ""),
            (None, false, false) => row(None, ModelState::Unavailable, "unloaded"),
            (None, false, true) => row(None, ModelState::Unavailable, "not loaded"),
        });
    }
    rows.sort_by_key(|r| r.version);
    rows
}
