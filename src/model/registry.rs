//! `ModelRegistry`: every `NAME.onnx` of a folder, loaded once at startup and shared by handlers.

use rayon::prelude::*;

use super::sessions::SessionPool;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ort::session::Session;

use super::batch::{self, Batcher};
use super::decoder::Decoder;
use super::runtime;
use super::signature::{Signature, TensorSpec};
use super::tensor::Tensor;
use crate::{Error, ErrorKind, Histogram, Result};

/// How each model's sessions are set up.
///
/// ONNX Runtime's `Session::run` needs exclusive access (`&mut`), so concurrent requests for one
/// model either wait on a lock or take one of several sessions. The default depends on the
/// model's size (see [`SMALL_MODEL_BYTES`] and the README's design notes): a small model gets a
/// session per core, each with one intra-op thread (its operators are too small to split, and
/// requests run side by side); a larger one gets one session, whose runs use a thread per core
/// (one copy of the weights stays in cache: the benchmark's MLP serves twice the requests this
/// way).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelOptions {
    /// Sessions per model; 1 means one lock per model. Default (`None`): one per core for a
    /// model file under [`SMALL_MODEL_BYTES`], else 1.
    pub sessions: Option<usize>,
    /// ONNX Runtime intra-op threads per session. Default (`None`): the cores divided among
    /// the sessions.
    pub intra_threads: Option<usize>,
    /// Dynamic batching: most rows in one batch (Triton's `max_batch_size`); 0 or 1 = off.
    /// Applies to models whose inputs and outputs all have a dynamic first dimension.
    pub max_batch_size: usize,
    /// How long the first request of a batch waits for others (Triton's
    /// `max_queue_delay_microseconds`). Default 500 µs.
    pub batch_timeout: Duration,
    /// Per-model overrides of `max_batch_size`, by model name.
    pub batch_overrides: BTreeMap<String, usize>,
    /// The largest answer a request may get, in bytes (`--max-response-bytes`); default
    /// [`MAX_RESPONSE_BYTES`]. Checked before the run when the outputs' shapes follow from the
    /// inputs', again from the shapes ONNX Runtime returns before they are copied, and while
    /// the answer is written: a request over it gets a 400 naming the limit.
    pub max_response_bytes: usize,
    /// Decoder folders: the bytes of KV cache all of one decoder's generations may hold
    /// together (`--kv-cache-bytes`). Each generation reserves (prompt + `max_tokens`) ×
    /// layers × kv_heads × head_size × 4 × 2 bytes before it starts: 400 when it alone needs
    /// more, 503 while the others hold too much. Default `None`: each generation is bounded by
    /// its context only (and their number by the worker turns).
    pub kv_cache_bytes: Option<u64>,
}

/// The default [`ModelOptions::max_response_bytes`]: 16 MiB, over 1.6 times the default request
/// body limit, so no answer to a request that fits can be larger by surprise (a million FP32
/// numbers as JSON, or 4 million in binary).
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

impl Default for ModelOptions {
    fn default() -> ModelOptions {
        ModelOptions {
            sessions: None,
            intra_threads: None,
            max_batch_size: 0,
            batch_timeout: Duration::from_micros(500),
            batch_overrides: BTreeMap::new(),
            max_response_bytes: MAX_RESPONSE_BYTES,
            kv_cache_bytes: None,
        }
    }
}

/// Model files smaller than this get a session per core by default. The bundled iris (1 KB)
/// serves 45,000–49,000 requests/s at 256 connections with two single-threaded sessions and
/// about 31,000 with one two-threaded session; the 21 MB MLP the other way round.
pub const SMALL_MODEL_BYTES: u64 = 1024 * 1024;

impl ModelOptions {
    /// Sessions and intra-op threads per session for a model file of `bytes` bytes.
    pub fn sessions_for(&self, bytes: u64) -> (usize, usize) {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let small = bytes < SMALL_MODEL_BYTES;
        let sessions = self
            .sessions
            .unwrap_or(if small { cores } else { 1 })
            .max(1);
        let threads = self.intra_threads.unwrap_or(cores / sessions).max(1);
        (sessions, threads)
    }

    /// The batch size for the model called `name`.
    fn batch_size_for(&self, name: &str) -> usize {
        self.batch_overrides
            .get(name)
            .copied()
            .unwrap_or(self.max_batch_size)
    }
}

/// One loaded model: its name, signature and a pool of ONNX Runtime sessions.
pub struct Model {
    name: String,
    path: PathBuf,
    signature: Signature,
    /// Each session behind its own lock: a request takes the first free one, or waits on one.
    /// A release wakes at most one waiter, with no second lock to win on waking (as a shared
    /// pool's condition variable needs), and a run that panics cannot lose its session.
    sessions: SessionPool,
    inferences: Mutex<Histogram>,
    batcher: Option<Batcher>,
    max_response_bytes: usize,
    /// The dimension names of each input and output, as the ONNX file gives them (`""` for a
    /// static or unnamed dimension): an output dimension named like an input one has its size.
    input_symbols: Vec<Vec<String>>,
    output_symbols: Vec<Vec<String>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("signature", &self.signature)
            .finish()
    }
}

impl Model {
    /// Loads `path` as a model called `name`, with the sessions `options` gives for its size.
    pub fn load(name: &str, path: &Path, options: &ModelOptions) -> Result<Model> {
        let environment = runtime::environment()?;
        let fail = |reason: String| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot load model {}: {reason}", path.display()),
            )
        };
        let mut sessions = Vec::new();
        let bytes = std::fs::metadata(path).map_or(u64::MAX, |m| m.len());
        let (session_count, intra_threads) = options.sessions_for(bytes);
        for _ in 0..session_count {
            let session = Session::builder(environment)
                .and_then(|b| b.with_intra_threads(intra_threads).map_err(Into::into))
                .and_then(|b| {
                    // Without the arena, what a large request's run allocates is freed when it
                    // ends instead of being kept for the life of the session (three 10 MB iris
                    // bodies: 381 MB peak and 169 MB kept, against 589 MB and 579 MB), at no
                    // measurable cost (iris 27 µs of CPU per request, bytelm 3.3 ms per token,
                    // either way).
                    let cpu = ort::ep::CPU::default().with_arena_allocator(false).build();
                    b.with_execution_providers([cpu]).map_err(Into::into)
                })
                .and_then(|mut b| b.commit_from_file(path))
                .map_err(|err| fail(err.to_string()))?;
            sessions.push(session);
        }
        let signature = match sessions.first() {
            Some(session) => {
                Signature::from_session(session).map_err(|err| fail(err.to_string()))?
            }
            None => return Err(fail("no session".into())),
        };
        let symbols = |outlets: &[ort::value::Outlet]| -> Vec<Vec<String>> {
            outlets
                .iter()
                .map(|o| match o.dtype() {
                    ort::value::ValueType::Tensor {
                        dimension_symbols, ..
                    } => dimension_symbols.to_vec(),
                    _ => Vec::new(),
                })
                .collect()
        };
        let (input_symbols, output_symbols) = match sessions.first() {
            Some(session) => (symbols(session.inputs()), symbols(session.outputs())),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Model {
            name: name.to_string(),
            path: path.to_path_buf(),
            signature,
            sessions: SessionPool::new(sessions),
            inferences: Mutex::new(Histogram::default()),
            batcher: None,
            max_response_bytes: options.max_response_bytes,
            input_symbols,
            output_symbols,
        })
    }

    /// The model's name (its file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inputs and outputs with their datatypes and shapes.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Runs the model. `inputs` must name each of the model's inputs exactly once (already
    /// validated against their specs by [`Tensor::from_json`]); returns every output, in the
    /// signature's order.
    ///
    /// With dynamic batching on, concurrent requests are run together and each gets back
    /// exactly its own rows.
    ///
    /// Outputs that cannot fit in [`Model::max_response_bytes`] are a 400 naming the limit:
    /// before the run when their shapes follow from the inputs' (static dimensions, and
    /// dimensions named like an input's), else from the shapes ONNX Runtime returns, before
    /// the outputs are copied.
    pub fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.check_names(&inputs)?;
        let predicted = self.predicted_output_shapes(&inputs);
        let shapes = predicted
            .iter()
            .map(|(spec, shape)| (*spec, shape.as_slice()));
        self.check_answer_size(shapes)?;
        if let (Some(batcher), Some(rows)) = (&self.batcher, batch::rows(&inputs)) {
            if rows > 0 {
                let outputs = batcher.submit(inputs, rows)?;
                let shapes = self.signature.outputs.iter().zip(&outputs);
                self.check_answer_size(shapes.map(|(spec, t)| (spec, t.shape.as_slice())))?;
                return Ok(outputs);
            }
        }
        self.run_within(inputs, self.max_response_bytes)
    }

    /// The largest answer a request may get, in bytes ([`ModelOptions::max_response_bytes`]).
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// The shape of each output whose every dimension is static or named like a dimension of
    /// an input (such as `batch` and `sequence` of a language model's logits).
    fn predicted_output_shapes(&self, inputs: &[Tensor]) -> Vec<(&TensorSpec, Vec<usize>)> {
        let size_of = |symbol: &str| {
            self.signature
                .inputs
                .iter()
                .zip(&self.input_symbols)
                .find_map(|(spec, names)| {
                    let at = names.iter().position(|n| !n.is_empty() && n == symbol)?;
                    let tensor = inputs.iter().find(|t| t.name == spec.name)?;
                    tensor.shape.get(at).copied()
                })
        };
        let mut predicted = Vec::new();
        for (spec, names) in self.signature.outputs.iter().zip(&self.output_symbols) {
            let shape = spec
                .shape
                .iter()
                .enumerate()
                .map(|(i, &d)| match usize::try_from(d) {
                    Ok(d) => Some(d),
                    Err(_) => names.get(i).and_then(|n| size_of(n)),
                });
            if let Some(shape) = shape.collect::<Option<Vec<usize>>>() {
                predicted.push((spec, shape));
            }
        }
        predicted
    }

    /// A 400 when outputs of these shapes cannot be answered within the limit, even at their
    /// smallest encoding: one byte per element of a one-byte type, else two (JSON's `0,`; the
    /// binary encoding takes at least two).
    fn check_answer_size<'a>(
        &self,
        outputs: impl Iterator<Item = (&'a TensorSpec, &'a [usize])>,
    ) -> Result<()> {
        let mut total = 0usize;
        for (spec, shape) in outputs {
            let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            let per_element = if super::binary::element_size(spec.datatype) == 1 {
                1
            } else {
                2
            };
            let bytes = elements.and_then(|n| n.checked_mul(per_element));
            total = total.saturating_add(bytes.unwrap_or(usize::MAX));
            if total > self.max_response_bytes {
                return Err(Error::invalid_input(format!(
                    "output \"{}\" would have shape {shape:?} ({} elements of {}): the answer \
                     would need at least {} bytes, over the response limit of {} bytes \
                     (--max-response-bytes)",
                    spec.name,
                    elements.map_or_else(|| "too many".to_owned(), |n| n.to_string()),
                    spec.datatype,
                    if total == usize::MAX {
                        "more than usize::MAX".to_owned()
                    } else {
                        total.to_string()
                    },
                    self.max_response_bytes
                )));
            }
        }
        Ok(())
    }

    /// Runs one inference on a session from the pool (batches: the limit is checked on each
    /// request's share).
    pub(crate) fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>> {
        self.run_within(inputs, usize::MAX)
    }

    /// Runs one inference; outputs whose shapes cannot fit in `limit` bytes are refused before
    /// they are copied out of ONNX Runtime.
    fn run_within(&self, inputs: Vec<Tensor>, limit: usize) -> Result<Vec<Tensor>> {
        let mut values = Vec::with_capacity(inputs.len());
        for tensor in inputs {
            values.push((tensor.name.clone(), tensor.into_ort()?));
        }
        let mut session = self.sessions.take();
        let started = std::time::Instant::now();
        let result = (|| {
            let outputs = session.run(values).map_err(|err| self.run_error(&err))?;
            if limit < usize::MAX {
                let mut shapes = Vec::new();
                for spec in &self.signature.outputs {
                    if let Some(ort::value::ValueType::Tensor { shape, .. }) =
                        outputs.get(&spec.name).map(|v| v.dtype())
                    {
                        let dims = shape
                            .iter()
                            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX));
                        shapes.push((spec, dims.collect::<Vec<usize>>()));
                    }
                }
                self.check_answer_size(shapes.iter().map(|(s, d)| (*s, d.as_slice())))?;
            }
            self.signature
                .outputs
                .iter()
                .map(|spec| match outputs.get(&spec.name) {
                    Some(value) => Tensor::from_ort(&spec.name, value),
                    None => Err(Error::internal(format!(
                        "model \"{}\" did not produce output \"{}\"",
                        self.name, spec.name
                    ))),
                })
                .collect::<Result<Vec<Tensor>>>()
        })();
        drop(session);
        if let Ok(mut inferences) = self.inferences.lock() {
            inferences.observe(started.elapsed());
        }
        result
    }

    /// ONNX Runtime failing a run on inputs that passed the signature check is the values' fault
    /// (an index out of range in a Gather, an integer division by zero, a Reshape or Split that
    /// does not add up): a 400 that names the model and says what ONNX Runtime said. A failure
    /// to allocate, or a code that points at the runtime itself, stays ours: 500, logged.
    fn run_error(&self, err: &ort::Error) -> Error {
        use ort::error::ErrorCode;
        let message = err.message();
        let ours = message.contains("bad_alloc") || message.contains("Failed to allocate");
        match err.code() {
            ErrorCode::InvalidArgument
            | ErrorCode::GenericFailure
            | ErrorCode::RuntimeException
                if !ours =>
            {
                Error::invalid_input(format!(
                    "model \"{}\" rejected the input: {}",
                    self.name,
                    message.trim()
                ))
            }
            _ => Error::internal(format!("model \"{}\": {err}", self.name)),
        }
    }

    pub(crate) fn batcher(&self) -> Option<&Batcher> {
        self.batcher.as_ref()
    }

    /// Batches run so far, as (rows, count), when dynamic batching is on.
    pub fn batch_sizes(&self) -> Vec<(usize, u64)> {
        self.batcher
            .as_ref()
            .map(Batcher::sizes)
            .unwrap_or_default()
    }

    /// Whether every input and output has a dynamic first dimension, so requests can be batched.
    pub fn is_batchable(&self) -> bool {
        let dynamic_first = |specs: &[TensorSpec]| {
            !specs.is_empty()
                && specs
                    .iter()
                    .all(|s| s.shape.first().is_some_and(|&d| d < 0))
        };
        dynamic_first(&self.signature.inputs) && dynamic_first(&self.signature.outputs)
    }

    /// The time each inference took (ONNX Runtime's run and the output conversion).
    pub fn inference_stats(&self) -> Histogram {
        self.inferences
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// The spec of input `name`, or a 400 naming the inputs the model has.
    pub fn input_spec(&self, name: &str) -> Result<&TensorSpec> {
        self.signature.input(name).ok_or_else(|| {
            Error::invalid_input(format!(
                "unknown input \"{name}\": model \"{}\" has inputs {}",
                self.name,
                quoted(self.signature.inputs.iter().map(|s| s.name.as_str()))
            ))
        })
    }

    /// The output names, quoted and comma-separated, for error messages.
    pub(crate) fn output_names(&self) -> String {
        quoted(self.signature.outputs.iter().map(|s| s.name.as_str()))
    }

    fn check_names(&self, inputs: &[Tensor]) -> Result<()> {
        for (i, tensor) in inputs.iter().enumerate() {
            self.input_spec(&tensor.name)?;
            if inputs[..i].iter().any(|t| t.name == tensor.name) {
                return Err(Error::invalid_input(format!(
                    "input \"{}\" is given twice",
                    tensor.name
                )));
            }
        }
        for spec in &self.signature.inputs {
            if !inputs.iter().any(|t| t.name == spec.name) {
                return Err(Error::invalid_input(format!(
                    "missing input \"{}\": model \"{}\" has inputs {}",
                    spec.name,
                    self.name,
                    quoted(self.signature.inputs.iter().map(|s| s.name.as_str()))
                )));
            }
        }
        Ok(())
    }

    /// How many sessions the model has.
    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|n| format!("\"{n}\"")).collect();
    names.join(", ")
}

/// Every model of a folder, by name: each `NAME.onnx` file, and each subfolder `NAME/` in
/// Hugging Face Optimum's decoder layout (a [`Decoder`], served through the `/v1` API only).
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
    decoders: Arc<BTreeMap<String, Arc<Decoder>>>,
}

impl ModelRegistry {
    /// Loads every `NAME.onnx` and decoder folder `NAME/` directly inside `dir` with default
    /// options.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<ModelRegistry> {
        ModelRegistry::load_dir_with(dir, &ModelOptions::default())
    }

    /// Loads every `NAME.onnx` directly inside `dir`, and every subfolder that holds
    /// `model.onnx` or `tokenizer.json` as a decoder called by the folder's name
    /// ([`Decoder::load_with`]). Fails on the first file or folder that does not load, naming
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
            } else if Decoder::is_decoder_dir(&path) {
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
            let mut model = model?;
            let batch = options.batch_size_for(&name);
            let batching = batch > 1 && model.is_batchable();
            if batching {
                model.batcher = Some(Batcher::new(batch, options.batch_timeout));
            }
            let model = Arc::new(model);
            if batching {
                Batcher::start(&model, model.session_count());
            }
            models.insert(name, model);
        }
        let mut decoders = BTreeMap::new();
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
            let decoder = Decoder::load_with(&name, &folder, options)?;
            decoders.insert(name, Arc::new(decoder));
        }
        Ok(ModelRegistry {
            models: Arc::new(models),
            decoders: Arc::new(decoders),
        })
    }

    /// The decoder folder model called `name`, if there is one.
    pub fn decoder(&self, name: &str) -> Option<Arc<Decoder>> {
        self.decoders.get(name).cloned()
    }

    /// The decoder folder models, in name order.
    pub fn decoders(&self) -> impl Iterator<Item = &Arc<Decoder>> {
        self.decoders.values()
    }

    /// The model called `name`, or a 404 `model_not_found` error (which says so when `name`
    /// is a decoder folder, served through `/v1` only).
    pub fn get(&self, name: &str) -> Result<Arc<Model>> {
        self.models.get(name).cloned().ok_or_else(|| {
            if self.decoders.contains_key(name) {
                Error::new(
                    ErrorKind::ModelNotFound,
                    format!(
                        "model \"{name}\" is a decoder folder: it is served through \
                         /v1/completions and /v1/chat/completions only"
                    ),
                )
            } else {
                Error::model_not_found(name)
            }
        })
    }

    /// The `.onnx` file models in name order (decoders: [`ModelRegistry::decoders`]).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_follow_the_model_size_unless_set() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut options = ModelOptions::default();
        assert_eq!(
            options.sessions_for(1_000),
            (cores, 1),
            "small: a session per core"
        );
        assert_eq!(
            options.sessions_for(SMALL_MODEL_BYTES),
            (1, cores),
            "large: one lock"
        );
        options.sessions = Some(2);
        assert_eq!(options.sessions_for(u64::MAX), (2, (cores / 2).max(1)));
        options.intra_threads = Some(3);
        assert_eq!(options.sessions_for(1_000), (2, 3));
        options.sessions = Some(0);
        options.intra_threads = Some(0);
        assert_eq!(options.sessions_for(1_000), (1, 1), "at least one of each");
    }
}
