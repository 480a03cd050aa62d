//! Loading models into a [`ModelRepository`]: every version of each model side by side, a
//! warm-up run before a model replaces one being served, then one swap of the registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::super::onnx::Model;
use super::super::registry::{load_files, load_folder, Folder, Served, Versions};
use super::super::tensor::Tensor;
use super::scan::{fingerprint, Source};
use super::{ModelRepository, Status};
use crate::{ErrorKind, Result};

/// The most elements a warm-up input may have; a model whose fixed input shapes are larger
/// is served without a warm-up run.
const MAX_WARM_UP_ELEMENTS: usize = 1 << 20;

impl ModelRepository {
    /// Loads `chosen` models (each one's versions, or its folder); with `warm`, each loaded
    /// model answers a warm-up run first. Then swaps them in and records what failed.
    pub(super) fn load_all(&self, chosen: Vec<(String, Source)>, warm: bool) {
        let options = &self.0.options;
        let mut files = Vec::new();
        let mut outcomes: BTreeMap<String, Status> = BTreeMap::new();
        {
            let mut status = self.status();
            for (name, source) in &chosen {
                let st = status.entry(name.clone()).or_default();
                st.loading = true;
                let mut next = Status {
                    wanted: st.wanted,
                    folder: matches!(source, Source::Folder { .. }),
                    loaded: Some(fingerprint(source)),
                    ..Status::default()
                };
                match source.selected() {
                    Ok(selected) => {
                        files.extend(selected.into_iter().map(|(v, p)| (name.clone(), v, p)));
                    }
                    Err(why) => next.problem = Some(why),
                }
                outcomes.insert(name.clone(), next);
            }
        }
        let mut loaded: BTreeMap<String, Versions> = BTreeMap::new();
        for (name, version, model) in load_files(&files, options) {
            let model = model.and_then(|model| match warm {
                true => warm_up(&model).map(|()| model),
                false => Ok(model),
            });
            match model {
                Ok(model) => {
                    if warm {
                        log::info!("model \"{name}\" version {version} loaded");
                    }
                    let versions = loaded.entry(name).or_default();
                    versions.insert(version, Served::new(model));
                }
                Err(err) => {
                    // At start-up the caller reports failures (or exits on the first).
                    if warm {
                        log::warn!("model \"{name}\" version {version}: {}", err.chain());
                    }
                    if let Some(st) = outcomes.get_mut(&name) {
                        st.failed.insert(version, err.message().to_string());
                    }
                }
            }
        }
        for (name, source) in &chosen {
            if let Source::Folder { path, version, .. } = source {
                let folder = load_folder(name, path, options).and_then(|folder| match warm {
                    true => warm_up_folder(&folder).map(|()| folder),
                    false => Ok(folder),
                });
                match folder {
                    Ok(folder) => {
                        self.swap(|registry| registry.with_folder(name, *version, folder));
                    }
                    Err(err) => {
                        if warm {
                            log::warn!("model folder \"{name}\": {}", err.chain());
                        }
                        if let Some(st) = outcomes.get_mut(name) {
                            st.problem = Some(err.message().to_string());
                        }
                    }
                }
            }
        }
        for (name, st) in outcomes {
            if !st.folder {
                let fresh = loaded.remove(&name).unwrap_or_default();
                self.swap(|registry| {
                    let old = registry.versions_of(&name);
                    registry.with_versions(&name, merge(&old, fresh, &st))
                });
            }
            self.status().insert(name, st);
        }
    }
}

/// The versions to serve: those just loaded (keeping the statistics of a version served
/// before), and, for a version that failed to load, the one served before (so that a broken
/// copy never replaces a working model). A model-wide problem serves nothing.
fn merge(old: &Versions, fresh: Versions, status: &Status) -> Versions {
    if status.problem.is_some() {
        return Versions::new();
    }
    let mut next = Versions::new();
    for (version, served) in fresh {
        let stats = old.get(&version).map(|o| Arc::clone(&o.stats));
        next.insert(
            version,
            Served {
                model: served.model,
                stats: stats.unwrap_or(served.stats),
            },
        );
    }
    for version in status.failed.keys() {
        if let Some(served) = old.get(version) {
            next.insert(*version, served.clone());
        }
    }
    next
}

/// Runs a decoder (one token after a short prompt) or an encoder (one short text) once, as
/// [`warm_up`] does a model.
fn warm_up_folder(folder: &Folder) -> Result<()> {
    #[cfg(not(feature = "language-models"))]
    match *folder {}
    #[cfg(feature = "language-models")]
    let ran: Result<()> = match folder {
        Folder::Decoder(decoder) => decoder
            .completion_prompt("Hello")
            .and_then(|prompt| decoder.greedy(&prompt, 1))
            .map(drop),
        Folder::Encoder(encoder) => encoder
            .tokenize("Hello", true)
            .and_then(|ids| encoder.embed(&[ids], false))
            .map(drop),
    };
    #[cfg(feature = "language-models")]
    ran.map_err(|err| {
        crate::Error::new(
            ErrorKind::Internal,
            format!("warm-up run failed: {}", err.message()),
        )
        .with_source(err)
    })
}

/// Runs `model` once on inputs of ones (a dynamic dimension taken as 1), so that the first
/// request does not pay for ONNX Runtime's first run. A run that ONNX Runtime refuses for
/// these values (a 400 for a request) still shows the model answers; any other failure fails
/// the load.
fn warm_up(model: &Model) -> Result<()> {
    let mut inputs = Vec::new();
    for spec in &model.signature().inputs {
        let shape: Vec<usize> = spec
            .shape
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(1))
            .collect();
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let Some(count) = count.filter(|&n| n <= MAX_WARM_UP_ELEMENTS) else {
            log::debug!(
                "model \"{}\": no warm-up run (inputs too large)",
                model.name()
            );
            return Ok(());
        };
        let one = match spec.datatype.as_str() {
            "BOOL" => Value::Bool(true),
            _ => Value::from(1),
        };
        let data = Value::Array(vec![one; count]);
        inputs.push(Tensor::from_json(spec, &data, Some(&shape), None)?);
    }
    match model.infer(inputs) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == ErrorKind::InvalidInput => {
            log::debug!(
                "model \"{}\": warm-up run refused: {}",
                model.name(),
                err.message()
            );
            Ok(())
        }
        Err(err) => Err(crate::Error::new(
            ErrorKind::Internal,
            format!("warm-up run failed: {}", err.message()),
        )
        .with_source(err)),
    }
}
