//! `ModelRegistry`: every `NAME.onnx` of a folder, loaded once at startup and shared by handlers.

use std::collections::BTreeMap;
use std::path::Path;
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
use crate::{Error, ErrorKind, Result};

/// Every model of a folder, by name: each `NAME.onnx` file, and each subfolder `NAME/` in
/// Hugging Face Optimum's decoder layout (a `Decoder`, served through the `/v1` API only) or
/// sentence-transformers' encoder layout (an `Encoder`: `/v1/embeddings` and `/embed`).
/// Cheap to clone: clones share the loaded models.
///
/// # Example
/// ```no_run
/// use tinyserve::model::ModelRegistry;
/// let models = ModelRegistry::load_dir("models")?;
/// let iris = models.get("iris")?;
/// println!("{:?}", iris.signature().inputs);
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    models: Arc<BTreeMap<String, Arc<Model>>>,
    #[cfg(feature = "language-models")]
    decoders: Arc<BTreeMap<String, Arc<Decoder>>>,
    #[cfg(feature = "language-models")]
    encoders: Arc<BTreeMap<String, Arc<Encoder>>>,
}

impl ModelRegistry {
    /// Loads every `NAME.onnx` and decoder folder `NAME/` directly inside `dir` with default
    /// options.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<ModelRegistry> {
        ModelRegistry::load_dir_with(dir, &ModelOptions::default())
    }

    /// Loads every `NAME.onnx` directly inside `dir`, and every subfolder that holds
    /// `model.onnx` or `tokenizer.json` as a decoder called by the folder's name
    /// (`Decoder::load_with`). Fails on the first file or folder that does not load, naming
    /// it and the reason (a folder that half-matches the layout names what is missing); fails
    /// when the folder holds no model, or a file and a folder of the same name.
    pub fn load_dir_with(dir: impl AsRef<Path>, options: &ModelOptions) -> Result<ModelRegistry> {
        let dir = dir.as_ref();
        let unreadable = |err: std::io::Error| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot read model folder {}: {err}", dir.display()),
            )
        };
        let mut paths = Vec::new();
        let mut folders = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(unreadable)? {
            let path = entry.map_err(unreadable)?.path();
            if path.extension().is_some_and(|ext| ext == "onnx") && path.is_file() {
                paths.push(path);
            } else if is_decoder_dir(&path) {
                folders.push(path);
            }
        }
        paths.sort();
        folders.sort();
        if paths.is_empty() && folders.is_empty() {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "no .onnx files (or decoder folders with model.onnx and tokenizer.json) in \
                     model folder {}",
                    dir.display()
                ),
            ));
        }
        // Building ONNX Runtime sessions is CPU work that runs side by side: load the files
        // on rayon's pool (one thread per core), then take them in name order, so the first
        // failing file is the one reported whatever finished first.
        let loaded: Vec<(String, Result<Model>)> = paths
            .par_iter()
            .map(|path| {
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let model = Model::load(&name, path, options);
                (name, model)
            })
            .collect();
        let mut models = BTreeMap::new();
        for (name, model) in loaded {
            models.insert(name, Arc::new(model?));
        }
        #[cfg(feature = "language-models")]
        let (decoders, encoders) = load_folders(folders, &models, options)?;
        #[cfg(not(feature = "language-models"))]
        if let Some(folder) = folders.first() {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "model folder {} is a decoder folder (it has {}), but this build of \
                     tinyserve lacks the `language-models` feature: rebuild with \
                     `--features language-models` or move the folder out",
                    folder.display(),
                    REQUIRED_FILES.join(" or ")
                ),
            ));
        }
        Ok(ModelRegistry {
            models: Arc::new(models),
            #[cfg(feature = "language-models")]
            decoders: Arc::new(decoders),
            #[cfg(feature = "language-models")]
            encoders: Arc::new(encoders),
        })
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

    /// A registry holding `model` alone.
    fn of_model(model: Model) -> ModelRegistry {
        let mut models = BTreeMap::new();
        models.insert(model.name().to_string(), Arc::new(model));
        ModelRegistry {
            models: Arc::new(models),
            #[cfg(feature = "language-models")]
            decoders: Arc::default(),
            #[cfg(feature = "language-models")]
            encoders: Arc::default(),
        }
    }

    /// A registry holding the decoder folder `dir` alone, called `name`.
    fn of_decoder(name: &str, dir: &Path, options: &ModelOptions) -> Result<ModelRegistry> {
        #[cfg(feature = "language-models")]
        {
            // An encoder folder holds `tokenizer.json` too: it is served as the one model.
            let (mut decoders, mut encoders) = (BTreeMap::new(), BTreeMap::new());
            if Encoder::is_encoder_dir(dir) {
                encoders.insert(
                    name.to_string(),
                    Arc::new(Encoder::load_with(name, dir, options)?),
                );
            } else {
                decoders.insert(
                    name.to_string(),
                    Arc::new(Decoder::load_with(name, dir, options)?),
                );
            }
            Ok(ModelRegistry {
                models: Arc::default(),
                decoders: Arc::new(decoders),
                encoders: Arc::new(encoders),
            })
        }
        #[cfg(not(feature = "language-models"))]
        {
            let _ = (name, options);
            Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "model folder {} is a decoder folder, but this build of tinyserve lacks \
                     the `language-models` feature",
                    dir.display()
                ),
            ))
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

    /// The model called `name`, or a 404 `model_not_found` error (which says so when `name`
    /// is a decoder folder, served through `/v1` only).
    pub fn get(&self, name: &str) -> Result<Arc<Model>> {
        self.models.get(name).cloned().ok_or_else(|| {
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
        })
    }

    /// The `.onnx` file models in name order (decoders: `ModelRegistry::decoders`).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.models.values()
    }

    /// Number of `.onnx` file models (decoders not counted).
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether no `.onnx` file model is loaded.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}

/// The decoders and the encoders of a registry, by name.
#[cfg(feature = "language-models")]
type Folders = (
    BTreeMap<String, Arc<Decoder>>,
    BTreeMap<String, Arc<Encoder>>,
);

/// Loads each folder as an encoder ([`Encoder::is_encoder_dir`]) or a decoder, refusing one
/// named like a `.onnx` file model.
#[cfg(feature = "language-models")]
fn load_folders(
    folders: Vec<std::path::PathBuf>,
    models: &BTreeMap<String, Arc<Model>>,
    options: &ModelOptions,
) -> Result<Folders> {
    let mut decoders = BTreeMap::new();
    let mut encoders = BTreeMap::new();
    for folder in folders {
        let name = folder
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if models.contains_key(&name) {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "model folder {} and model file {}.onnx have the same name \"{name}\": \
                         rename one",
                    folder.display(),
                    name
                ),
            ));
        }
        if Encoder::is_encoder_dir(&folder) {
            let encoder = Encoder::load_with(&name, &folder, options)?;
            encoders.insert(name, Arc::new(encoder));
            continue;
        }
        let decoder = Decoder::load_with(&name, &folder, options)?;
        decoders.insert(name, Arc::new(decoder));
    }
    Ok((decoders, encoders))
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
