//! `ModelRegistry`: the models of a folder as they are at one moment — each version of each
//! ONNX model, and the decoder and encoder folders — shared by handlers. A
//! [`ModelRepository`](super::ModelRepository) swaps in a new registry when models change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;

#[cfg(feature = "language-models")]
use super::decoder::Decoder;
use super::decoder_dir::is_decoder_dir;
#[cfg(not(feature = "language-models"))]
use super::decoder_dir::REQUIRED_FILES;
#[cfg(feature = "language-models")]
use super::encoder::Encoder;
use super::onnx::Model;
use super::options::ModelOptions;
use super::repository::scan::{scan, Source};
use super::repository::stats::ModelStats;
use crate::{Error, ErrorKind, Result};

/// One served version of a model: the loaded model and its statistics.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub(crate) model: Arc<Model>,
    pub(crate) stats: Arc<ModelStats>,
}

/// The versions of one model, by number.
pub(crate) type Versions = BTreeMap<u64, Served>;

/// A decoder or an encoder folder, loaded.
#[derive(Debug, Clone)]
pub(crate) enum Folder {
    #[cfg(feature = "language-models")]
    Decoder(Arc<Decoder>),
    #[cfg(feature = "language-models")]
    Encoder(Arc<Encoder>),
}

/// Every model of a folder, by name: each `NAME.onnx` file (version 1), each folder
/// `NAME/VERSION/model.onnx` in Triton's layout (the versions its `config.pbtxt` selects, all
/// without one), and each subfolder `NAME/` in Hugging Face Optimum's decoder layout (a
/// `Decoder`, served through the `/v1` API only) or sentence-transformers' encoder layout (an
/// `Encoder`: `/v1/embeddings` and `/embed`). A name without a version means its highest.
/// Cheap to clone: clones share the loaded models. A registry never changes; a
/// [`ModelRepository`](super::ModelRepository) hands out a new one when models change.
///
/// # Example
/// ```no_run
/// use tinyserve::model::ModelRegistry;
/// let models = ModelRegistry::load_dir("models")?;
/// let iris = models.get("iris")?;
/// println!("{:?} {:?}", iris.signature().inputs, models.versions("iris"));
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    versions: Arc<BTreeMap<String, Versions>>,
    #[cfg(feature = "language-models")]
    decoders: Arc<BTreeMap<String, Arc<Decoder>>>,
    #[cfg(feature = "language-models")]
    encoders: Arc<BTreeMap<String, Arc<Encoder>>>,
    /// The version each decoder or encoder folder serves (1 for a flat `NAME/` folder).
    #[cfg(feature = "language-models")]
    folder_versions: Arc<BTreeMap<String, u64>>,
}

impl ModelRegistry {
    /// Loads every model directly inside `dir` with default options.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<ModelRegistry> {
        ModelRegistry::load_dir_with(dir, &ModelOptions::default())
    }

    /// Loads every `NAME.onnx` directly inside `dir`, every folder in Triton's layout
    /// `NAME/VERSION/model.onnx`, and every subfolder that holds `model.onnx` or
    /// `tokenizer.json` as a decoder (or encoder) called by the folder's name
    /// (`Decoder::load_with`). Fails on the first file or folder that does not load, naming
    /// it and the reason (a folder that half-matches the layout names what is missing); fails
    /// when the folder holds no model, or a file and a folder of the same name.
    /// [`ModelRepository::open`](super::ModelRepository::open) is the lenient form.
    pub fn load_dir_with(dir: impl AsRef<Path>, options: &ModelOptions) -> Result<ModelRegistry> {
        let dir = dir.as_ref();
        let sources = scan(dir).map_err(|err| unreadable(dir, &err))?;
        if sources.is_empty() {
            return Err(empty_folder(dir));
        }
        let mut files = Vec::new();
        let mut folders = Vec::new();
        for (name, source) in &sources {
            match source {
                Source::Folder { path, version, .. } => {
                    folders.push((name.clone(), *version, path.clone()));
                }
                other => {
                    let selected = other.selected().map_err(|why| {
                        Error::new(ErrorKind::Internal, format!("model \"{name}\": {why}"))
                    })?;
                    files.extend(
                        selected
                            .into_iter()
                            .map(|(v, path)| (name.clone(), v, path)),
                    );
                }
            }
        }
        let mut registry = ModelRegistry::default();
        for (name, version, model) in load_files(&files, options) {
            let mut versions = registry.versions_of(&name);
            versions.insert(version, Served::new(model?));
            registry = registry.with_versions(&name, versions);
        }
        for (name, version, path) in folders {
            let folder = load_folder(&name, &path, options)?;
            registry = registry.with_folder(&name, version, folder);
        }
        Ok(registry)
    }

    /// Loads one model named `name` from `path`, whatever its file is called: what KServe's
    /// storage initializer put at `/mnt/models` for `tinyserve serve --model-name NAME`.
    /// `path` may be a `.onnx` file; a decoder folder (it holds `tokenizer.json`); a folder
    /// holding exactly one `.onnx` file; or a folder holding no `.onnx` file and exactly one
    /// decoder folder. Anything else fails, naming what the folder holds.
    ///
    /// # Example
    /// ```no_run
    /// use tinyserve::model::{ModelOptions, ModelRegistry};
    /// let models = ModelRegistry::load_one_with("/mnt/models", "iris", &ModelOptions::default())?;
    /// assert!(models.get("iris").is_ok());
    /// # Ok::<(), tinyserve::Error>(())
    /// ```
    pub fn load_one_with(
        path: impl AsRef<Path>,
        name: &str,
        options: &ModelOptions,
    ) -> Result<ModelRegistry> {
        let path = path.as_ref();
        let fail = |why: String| {
            Error::new(
                ErrorKind::Internal,
                format!("model \"{name}\" at {}: {why}", path.display()),
            )
        };
        if path.is_file() {
            return Ok(ModelRegistry::of_model(Model::load(name, path, options)?));
        }
        if path.join("tokenizer.json").is_file() {
            return ModelRegistry::of_decoder(name, path, options);
        }
        let mut files = Vec::new();
        let mut folders = Vec::new();
        let entries = std::fs::read_dir(path).map_err(|err| fail(format!("cannot read: {err}")))?;
        for entry in entries {
            let entry = entry
                .map_err(|err| fail(format!("cannot read: {err}")))?
                .path();
            if entry.extension().is_some_and(|ext| ext == "onnx") && entry.is_file() {
                files.push(entry);
            } else if is_decoder_dir(&entry) {
                folders.push(entry);
            }
        }
        files.sort();
        match (files.as_slice(), folders.as_slice()) {
            ([file], _) => Ok(ModelRegistry::of_model(Model::load(name, file, options)?)),
            ([], [folder]) => ModelRegistry::of_decoder(name, folder, options),
            ([], []) => Err(fail(
                "expected one .onnx file or one decoder folder, found neither".into(),
            )),
            _ => {
                let found: Vec<String> = files
                    .iter()
                    .chain(&folders)
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                Err(fail(format!(
                    "expected one model, found {}: serve the folder without --model-name to \
                     serve each under its own name",
                    found.join(", ")
                )))
            }
        }
    }

    /// A registry holding `model` alone, as version 1.
    fn of_model(model: Model) -> ModelRegistry {
        let mut versions = Versions::new();
        let name = model.name().to_string();
        versions.insert(1, Served::new(model));
        ModelRegistry::default().with_versions(&name, versions)
    }

    /// A registry holding the decoder (or encoder) folder `dir` alone, called `name`.
    fn of_decoder(name: &str, dir: &Path, options: &ModelOptions) -> Result<ModelRegistry> {
        Ok(ModelRegistry::default().with_folder(name, 1, load_folder(name, dir, options)?))
    }

    /// This registry with `name` serving `versions` (and no folder model of that name); none
    /// removes the model.
    pub(crate) fn with_versions(&self, name: &str, versions: Versions) -> ModelRegistry {
        let mut next = self.without(name);
        if !versions.is_empty() {
            let mut all = (*next.versions).clone();
            all.insert(name.to_string(), versions);
            next.versions = Arc::new(all);
        }
        next
    }

    /// This registry with the folder model `folder` called `name`, serving as `version`.
    pub(crate) fn with_folder(&self, name: &str, version: u64, folder: Folder) -> ModelRegistry {
        #[cfg(not(feature = "language-models"))]
        {
            let _ = (name, version);
            match folder {}
        }
        #[cfg(feature = "language-models")]
        {
            let mut next = self.without(name);
            let mut versions = (*next.folder_versions).clone();
            versions.insert(name.to_string(), version);
            next.folder_versions = Arc::new(versions);
            match folder {
                Folder::Decoder(decoder) => {
                    let mut all = (*next.decoders).clone();
                    all.insert(name.to_string(), decoder);
                    next.decoders = Arc::new(all);
                }
                Folder::Encoder(encoder) => {
                    let mut all = (*next.encoders).clone();
                    all.insert(name.to_string(), encoder);
                    next.encoders = Arc::new(all);
                }
            }
            next
        }
    }

    /// This registry without any model called `name`.
    pub(crate) fn without(&self, name: &str) -> ModelRegistry {
        let mut next = self.clone();
        if next.versions.contains_key(name) {
            let mut all = (*next.versions).clone();
            all.remove(name);
            next.versions = Arc::new(all);
        }
        #[cfg(feature = "language-models")]
        {
            if next.decoders.contains_key(name) {
                let mut all = (*next.decoders).clone();
                all.remove(name);
                next.decoders = Arc::new(all);
            }
            if next.encoders.contains_key(name) {
                let mut all = (*next.encoders).clone();
                all.remove(name);
                next.encoders = Arc::new(all);
            }
            if next.folder_versions.contains_key(name) {
                let mut all = (*next.folder_versions).clone();
                all.remove(name);
                next.folder_versions = Arc::new(all);
            }
        }
        next
    }

    /// The served versions of `name` (empty when it has none).
    pub(crate) fn versions_of(&self, name: &str) -> Versions {
        self.versions.get(name).cloned().unwrap_or_default()
    }

    /// The version numbers of the ONNX model `name`, in increasing order (empty when no such
    /// model is served).
    pub fn versions(&self, name: &str) -> Vec<u64> {
        self.versions
            .get(name)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Version `version` of the ONNX model `name`, or a 404 `model_not_found` error that says
    /// which versions there are.
    pub fn version(&self, name: &str, version: u64) -> Result<Arc<Model>> {
        self.served(name, Some(version))
            .map(|(_, served)| served.model)
    }

    /// The statistics of version `version` of `name`.
    pub fn stats(&self, name: &str, version: u64) -> Option<Arc<ModelStats>> {
        let served = self.versions.get(name)?.get(&version)?;
        Some(Arc::clone(&served.stats))
    }

    /// Version `version` of `name` (its highest without one), with its number.
    pub(crate) fn served(&self, name: &str, version: Option<u64>) -> Result<(u64, Served)> {
        let versions = self.versions.get(name);
        let found = match (versions, version) {
            (Some(all), Some(v)) => all.get(&v).map(|s| (v, s.clone())),
            (Some(all), None) => all.iter().next_back().map(|(v, s)| (*v, s.clone())),
            (None, _) => None,
        };
        match (found, versions, version) {
            (Some(found), _, _) => Ok(found),
            (None, Some(all), Some(v)) => {
                let list: Vec<String> = all.keys().map(|v| format!("\"{v}\"")).collect();
                Err(Error::new(
                    ErrorKind::ModelNotFound,
                    format!(
                        "model \"{name}\" has no version \"{v}\" (versions: {})",
                        list.join(", ")
                    ),
                ))
            }
            _ => Err(self.not_found(name)),
        }
    }

    /// The version the decoder or encoder folder model `name` serves, if there is one.
    pub fn folder_version(&self, name: &str) -> Option<u64> {
        #[cfg(feature = "language-models")]
        return self.folder_versions.get(name).copied();
        #[cfg(not(feature = "language-models"))]
        {
            let _ = name;
            None
        }
    }

    /// The names of the decoder folder models, in name order (none without the
    /// `language-models` feature).
    pub fn decoder_names(&self) -> impl Iterator<Item = &str> {
        #[cfg(feature = "language-models")]
        return self.decoders.keys().map(String::as_str);
        #[cfg(not(feature = "language-models"))]
        return std::iter::empty();
    }

    /// The decoder folder model called `name`, if there is one.
    #[cfg(feature = "language-models")]
    pub fn decoder(&self, name: &str) -> Option<Arc<Decoder>> {
        self.decoders.get(name).cloned()
    }

    /// The decoder folder models, in name order.
    #[cfg(feature = "language-models")]
    pub fn decoders(&self) -> impl Iterator<Item = &Arc<Decoder>> {
        self.decoders.values()
    }

    /// The names of the encoder folder models (embedding models), in name order (none without
    /// the `language-models` feature).
    pub fn encoder_names(&self) -> impl Iterator<Item = &str> {
        #[cfg(feature = "language-models")]
        return self.encoders.keys().map(String::as_str);
        #[cfg(not(feature = "language-models"))]
        return std::iter::empty();
    }

    /// The encoder folder model (embedding model) called `name`, if there is one.
    #[cfg(feature = "language-models")]
    pub fn encoder(&self, name: &str) -> Option<Arc<Encoder>> {
        self.encoders.get(name).cloned()
    }

    /// The encoder folder models, in name order.
    #[cfg(feature = "language-models")]
    pub fn encoders(&self) -> impl Iterator<Item = &Arc<Encoder>> {
        self.encoders.values()
    }

    /// The model called `name` (its highest version), or a 404 `model_not_found` error
    /// (which says so when `name` is a decoder folder, served through `/v1` only).
    pub fn get(&self, name: &str) -> Result<Arc<Model>> {
        self.served(name, None).map(|(_, served)| served.model)
    }

    /// The error for a name no ONNX model has.
    fn not_found(&self, name: &str) -> Error {
        if self.decoder_names().any(|decoder| decoder == name) {
            Error::new(
                ErrorKind::ModelNotFound,
                format!(
                    "model \"{name}\" is a decoder folder: it is served through \
                     /v1/completions and /v1/chat/completions only"
                ),
            )
        } else if self.encoder_names().any(|encoder| encoder == name) {
            Error::new(
                ErrorKind::ModelNotFound,
                format!(
                    "model \"{name}\" is an embedding model: it is served through \
                     /v1/embeddings and /embed only"
                ),
            )
        } else {
            Error::model_not_found(name)
        }
    }

    /// The ONNX models (each at its highest version) in name order (decoders:
    /// `ModelRegistry::decoders`).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.versions
            .values()
            .filter_map(|versions| versions.values().next_back())
            .map(|served| &served.model)
    }

    /// Number of ONNX models (decoders not counted; versions of one model count once).
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Whether no ONNX model is loaded.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

impl Served {
    /// A new version with fresh statistics.
    pub(crate) fn new(model: Model) -> Served {
        Served {
            model: Arc::new(model),
            stats: Arc::default(),
        }
    }
}

/// The error of a folder that cannot be read.
fn unreadable(dir: &Path, err: &std::io::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("cannot read model folder {}: {err}", dir.display()),
    )
}

/// The error of a folder that holds no model.
pub(crate) fn empty_folder(dir: &Path) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!(
            "no .onnx files (or decoder folders with model.onnx and tokenizer.json, or \
             NAME/VERSION/model.onnx folders) in model folder {}",
            dir.display()
        ),
    )
}

/// Loads `(name, version, path)` files side by side: building ONNX Runtime sessions is CPU
/// work, so the files load on rayon's pool (one thread per core), and come back in the order
/// given, so the first failing file is the one reported whatever finished first.
pub(crate) fn load_files(
    files: &[(String, u64, PathBuf)],
    options: &ModelOptions,
) -> Vec<(String, u64, Result<Model>)> {
    files
        .par_iter()
        .map(|(name, version, path)| (name.clone(), *version, Model::load(name, path, options)))
        .collect()
}

/// Loads the folder `dir` as an encoder ([`Encoder::is_encoder_dir`]) or a decoder.
pub(crate) fn load_folder(name: &str, dir: &Path, options: &ModelOptions) -> Result<Folder> {
    #[cfg(feature = "language-models")]
    {
        if Encoder::is_encoder_dir(dir) {
            return Ok(Folder::Encoder(Arc::new(Encoder::load_with(
                name, dir, options,
            )?)));
        }
        Ok(Folder::Decoder(Arc::new(Decoder::load_with(
            name, dir, options,
        )?)))
    }
    #[cfg(not(feature = "language-models"))]
    {
        let _ = (name, options);
        Err(Error::new(
            ErrorKind::Internal,
            format!(
                "model folder {} is a decoder folder (it has {}), but this build of \
                 tinyserve lacks the `language-models` feature: rebuild with \
                 `--features language-models` or move the folder out",
                dir.display(),
                REQUIRED_FILES.join(" or ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A folder holding `tokenizer.json` in a fresh directory under the system's temp dir.
    fn folder_with_a_decoder() -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!(
            "tinyserve-registry-{}-{}",
            std::process::id(),
            crate::ids::new_id()
        ));
        let decoder = root.join("chat");
        std::fs::create_dir_all(&decoder).expect("create the folder");
        std::fs::write(decoder.join("tokenizer.json"), "{}").expect("write tokenizer.json");
        root
    }

    #[test]
    #[cfg(not(feature = "language-models"))]
    fn a_decoder_folder_needs_the_language_models_feature() {
        let root = folder_with_a_decoder();
        let err = ModelRegistry::load_dir(&root).expect_err("no decoders in this build");
        let _ = std::fs::remove_dir_all(&root);
        assert!(
            err.message()
                .contains("lacks the `language-models` feature"),
            "{}",
            err.message()
        );
    }

    #[test]
    #[cfg(feature = "language-models")]
    fn a_half_decoder_folder_names_what_is_missing() {
        let root = folder_with_a_decoder();
        let err = ModelRegistry::load_dir(&root).expect_err("model.onnx is missing");
        let _ = std::fs::remove_dir_all(&root);
        assert!(err.message().contains("model.onnx"), "{}", err.message());
    }
}
