//! What a model folder holds: each model's source (a flat `NAME.onnx`, a decoder or encoder
//! folder, or Triton's `NAME/VERSION/model.onnx` layout) and a fingerprint of its files, so a
//! change is seen by comparing two scans.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::super::decoder_dir::is_decoder_dir;
use super::policy::VersionPolicy;

/// Where one model of the folder comes from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Source {
    /// `NAME.onnx`: version 1.
    File(PathBuf),
    /// A decoder or encoder folder, served through `/v1` (and `/embed`): `NAME/` itself
    /// (version 1), or the highest version folder `NAME/VERSION/` the version policy selects
    /// in Triton's layout. `root` is `NAME/`, whose files make the fingerprint.
    Folder {
        root: PathBuf,
        path: PathBuf,
        version: u64,
    },
    /// `NAME/` in Triton's layout: each version folder's `model.onnx`, the versions the
    /// policy selects (the policy is an error when `config.pbtxt` cannot be read).
    Versioned {
        dir: PathBuf,
        versions: BTreeMap<u64, PathBuf>,
        policy: Result<VersionPolicy, String>,
    },
    /// A model that cannot be served, with the reason: its name is taken by both a file and
    /// a folder, or its version folders hold decoder or encoder folders and the version
    /// policy selects none of them.
    Unservable(String),
}

impl Source {
    /// The version files this source serves, or why it cannot be served. `Folder` has none.
    pub(crate) fn selected(&self) -> Result<Vec<(u64, PathBuf)>, String> {
        match self {
            Source::File(path) => Ok(vec![(1, path.clone())]),
            Source::Folder { .. } => Ok(Vec::new()),
            Source::Unservable(why) => Err(why.clone()),
            Source::Versioned {
                versions, policy, ..
            } => {
                let policy = policy.clone()?;
                let available: Vec<u64> = versions.keys().copied().collect();
                let chosen = policy.select(&available);
                if chosen.is_empty() {
                    return Err(format!(
                        "no version folder to serve (found {available:?}, version policy {policy:?})"
                    ));
                }
                Ok(chosen
                    .into_iter()
                    .filter_map(|v| Some((v, versions.get(&v)?.join("model.onnx"))))
                    .collect())
            }
        }
    }
}

/// The sources of every model directly inside `dir`, by name. Folders that are neither a
/// decoder or encoder folder nor in Triton's layout (no `config.pbtxt`, no all-digit
/// subfolder) are not models and are left out, as are hidden entries (`.NAME`).
pub(crate) fn scan(dir: &Path) -> std::io::Result<BTreeMap<String, Source>> {
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(file_name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let (name, source) = if path.extension().is_some_and(|e| e == "onnx") && path.is_file() {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            (stem.unwrap_or_default(), Source::File(path))
        } else if is_decoder_dir(&path) {
            let root = path.clone();
            (
                file_name,
                Source::Folder {
                    root,
                    path,
                    version: 1,
                },
            )
        } else if let Some(source) = versioned(&path) {
            (file_name, source)
        } else {
            continue;
        };
        let why = format!(
            "model folder {}/{name} and model file {name}.onnx have the same name \"{name}\": \
             rename one",
            dir.display()
        );
        match sources.entry(name) {
            std::collections::btree_map::Entry::Occupied(mut taken) => {
                taken.insert(Source::Unservable(why));
            }
            std::collections::btree_map::Entry::Vacant(free) => {
                free.insert(source);
            }
        }
    }
    Ok(sources)
}

/// `path` in Triton's layout: all-digit subfolders, and maybe `config.pbtxt`.
fn versioned(path: &Path) -> Option<Source> {
    if !path.is_dir() {
        return None;
    }
    let mut versions = BTreeMap::new();
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        let sub = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if sub.is_dir() && !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(version) = name.parse::<u64>() {
                versions.insert(version, sub);
            }
        }
    }
    let config = path.join("config.pbtxt");
    if versions.is_empty() && !config.is_file() {
        return None;
    }
    let policy = match std::fs::read_to_string(&config) {
        Ok(text) => VersionPolicy::from_config(&text).map_err(|e| e.message().to_string()),
        Err(_) if !config.exists() => Ok(VersionPolicy::All),
        Err(err) => Err(format!("cannot read {}: {err}", config.display())),
    };
    if versions.values().any(|v| is_language_dir(v)) {
        return Some(versioned_folder(path, &versions, policy));
    }
    Some(Source::Versioned {
        dir: path.to_path_buf(),
        versions,
        policy,
    })
}

/// Whether a version folder holds a decoder or encoder folder rather than a plain
/// `model.onnx`: it has a tokenizer.
fn is_language_dir(dir: &Path) -> bool {
    dir.join("tokenizer.json").is_file()
}

/// A model in Triton's layout whose versions are decoder or encoder folders: its highest
/// version the policy selects, the one `/v1` serves under the model's name.
fn versioned_folder(
    root: &Path,
    versions: &BTreeMap<u64, PathBuf>,
    policy: Result<VersionPolicy, String>,
) -> Source {
    let policy = match policy {
        Ok(policy) => policy,
        Err(why) => return Source::Unservable(why),
    };
    let available: Vec<u64> = versions.keys().copied().collect();
    let chosen = policy.select(&available).into_iter().max();
    match chosen.and_then(|v| Some((v, versions.get(&v)?))) {
        Some((version, path)) => Source::Folder {
            root: root.to_path_buf(),
            path: path.clone(),
            version,
        },
        None => Source::Unservable(format!(
            "no version folder to serve (found {available:?}, version policy {policy:?})"
        )),
    }
}

/// The most files a fingerprint looks at: a folder with more is fingerprinted by its first ones.
const MAX_FILES: usize = 4096;

/// Every file under a model's source with its size and modification time (and inode, where
/// there is one): two equal fingerprints mean nothing was written in between.
pub(crate) type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>, u64)>;

/// The fingerprint of `source`.
pub(crate) fn fingerprint(source: &Source) -> Fingerprint {
    let mut files = Vec::new();
    match source {
        Source::File(path) => add(path, &mut files),
        Source::Folder { root, .. } => walk(root, 0, &mut files),
        Source::Versioned { dir, versions, .. } => {
            add(&dir.join("config.pbtxt"), &mut files);
            for dir in versions.values() {
                walk(dir, 0, &mut files);
            }
        }
        Source::Unservable(_) => {}
    }
    files.sort();
    files
}

fn walk(dir: &Path, depth: usize, files: &mut Fingerprint) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if files.len() >= MAX_FILES {
            return;
        }
        let path = entry.path();
        if path.is_dir() {
            if depth < 4 {
                walk(&path, depth + 1, files);
            }
        } else {
            add(&path, files);
        }
    }
}

fn add(path: &Path, files: &mut Fingerprint) {
    if let Ok(meta) = std::fs::metadata(path) {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        files.push((path.to_path_buf(), meta.len(), meta.modified().ok(), inode));
    }
}
