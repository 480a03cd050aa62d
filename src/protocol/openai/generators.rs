//! [`Generators`]: the text generators of the loaded models, by name; and
//! `CurrentGenerators`, those of a repository's models of the moment.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::model::{Generator, ModelRegistry, ModelRepository};
use crate::{Error, ErrorKind};

/// The generators of every model that can generate text, by model name.
#[derive(Clone, Default)]
pub struct Generators(Arc<BTreeMap<String, Generator>>);

impl Generators {
    /// A generator for each model of `models` whose signature is a byte-level language model,
    /// and for each decoder folder.
    pub fn from_registry(models: &ModelRegistry) -> Generators {
        #[cfg_attr(not(feature = "language-models"), allow(unused_mut))]
        let mut generators: BTreeMap<String, Generator> = models
            .iter()
            .filter(|model| Generator::fits(model))
            .filter_map(|model| {
                Some((
                    model.name().to_string(),
                    Generator::new(model.clone()).ok()?,
                ))
            })
            .collect();
        #[cfg(feature = "language-models")]
        for decoder in models.decoders() {
            generators.insert(
                decoder.name().to_string(),
                Generator::for_decoder(decoder.clone()),
            );
        }
        Generators(Arc::new(generators))
    }

    /// [`Generators::from_registry`], keeping each generator of `old` whose model is still
    /// the one served (so its counters go on).
    fn from_registry_after(models: &ModelRegistry, old: &Generators) -> Generators {
        let mut fresh = Generators::from_registry(models);
        let all = Arc::make_mut(&mut fresh.0);
        for (name, generator) in all.iter_mut() {
            if let Some(kept) = old.0.get(name).filter(|o| o.is_same_model(generator)) {
                *generator = kept.clone();
            }
        }
        fresh
    }

    /// The generators, in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Generator> {
        self.0.values()
    }

    /// The generator called `name`; a 400 for a model that cannot generate text (an encoder
    /// folder, a plain ONNX model), a 404 for a name nothing is loaded under.
    pub(super) fn get(&self, models: &ModelRegistry, name: &str) -> Result<Generator, Error> {
        if let Some(generator) = self.0.get(name) {
            return Ok(generator.clone());
        }
        if models.encoder_names().any(|encoder| encoder == name) {
            return Err(Error::invalid_input(format!(
                "`{name}` is an embedding model: it answers POST /v1/embeddings, not \
                 completions or chat (models that generate text: {})",
                self.names()
            )));
        }
        Err(match models.get(name) {
            Ok(model) => Generator::new(model).err().unwrap_or_else(|| {
                Error::bad_request(format!("model \"{name}\" cannot generate text"))
            }),
            Err(err) => Error::new(
                ErrorKind::ModelNotFound,
                format!("The model `{name}` does not exist"),
            )
            .with_source(err),
        })
    }

    /// The generators' names, comma-separated (`none` when there is none).
    fn names(&self) -> String {
        match self.0.is_empty() {
            true => "none".to_string(),
            false => self
                .0
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The generators of a repository's models of the moment: rebuilt when the models change,
/// keeping each generator (and its counters) whose model did not.
#[derive(Clone)]
pub(crate) struct CurrentGenerators {
    repository: ModelRepository,
    /// The generators of the registry numbered so (see `ModelRepository::numbered_registry`).
    last: Arc<Mutex<(u64, Generators)>>,
}

impl CurrentGenerators {
    pub(crate) fn new(repository: &ModelRepository) -> CurrentGenerators {
        let (number, models) = repository.numbered_registry();
        let generators = Generators::from_registry(&models);
        CurrentGenerators {
            repository: repository.clone(),
            last: Arc::new(Mutex::new((number, generators))),
        }
    }

    /// The models of the moment and their generators: a request takes them once and keeps
    /// them to its end.
    pub(crate) fn snapshot(&self) -> (ModelRegistry, Generators) {
        // The registry is read under the lock, so that a request holding an older one cannot
        // put its generators back after a newer request replaced them.
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let (number, models) = self.repository.numbered_registry();
        if last.0 != number {
            let generators = Generators::from_registry_after(&models, &last.1);
            *last = (number, generators);
        }
        (models, last.1.clone())
    }
}
