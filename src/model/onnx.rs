//! [`Model`]: one `.onnx` file loaded into a pool of ONNX Runtime sessions, with its
//! signature checks, answer-size limit and (when asked) dynamic batching.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::Session;

use super::batch::{self, Batcher};
use super::options::ModelOptions;
use super::runner::{check_answer_size, Runner};
use super::runtime;
use super::sessions::SessionPool;
use super::signature::{Signature, TensorSpec};
use super::tensor::Tensor;
use crate::{Error, ErrorKind, Histogram, Result};

/// One loaded model: its name, signature and a pool of ONNX Runtime sessions.
pub struct Model {
    path: PathBuf,
    /// The name, signature and sessions. Each session is behind its own lock: a request takes
    /// the first free one, or waits on one. A release wakes at most one waiter, with no second
    /// lock to win on waking (as a shared pool's condition variable needs), and a run that
    /// panics cannot lose its session. Shared with the batch runners.
    runner: Arc<Runner>,
    /// On when [`ModelOptions::max_batch_size`] (or its override for this model) is over 1 and
    /// the model [is batchable](Model::is_batchable).
    batcher: Option<Batcher<Vec<Tensor>>>,
    max_response_bytes: usize,
    /// The dimension names of each input and output, as the ONNX file gives them (`""` for a
    /// static or unnamed dimension): an output dimension named like an input one has its size.
    input_symbols: Vec<Vec<String>>,
    output_symbols: Vec<Vec<String>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.runner.name)
            .field("path", &self.path)
            .field("signature", &self.runner.signature)
            .finish()
    }
}

impl Model {
    /// Loads `path` as a model called `name`, with the sessions `options` gives for its size,
    /// and dynamic batching when `options` asks for it ([`ModelOptions::max_batch_size`] or
    /// its override for `name`) and the model [is batchable](Model::is_batchable).
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
        let runner = Arc::new(Runner {
            name: name.to_string(),
            signature,
            sessions: SessionPool::new(sessions),
            inferences: Mutex::new(Histogram::default()),
        });
        let max_rows = options.batch_size_for(name);
        let batcher = (max_rows > 1 && batchable(&runner.signature)).then(|| {
            let run = Arc::clone(&runner);
            Batcher::start(
                max_rows,
                options.batch_timeout,
                runner.sessions.len(),
                batch::merged(move |inputs| run.run(inputs, usize::MAX)),
            )
        });
        Ok(Model {
            path: path.to_path_buf(),
            runner,
            batcher,
            max_response_bytes: options.max_response_bytes,
            input_symbols,
            output_symbols,
        })
    }

    /// The model's name (its file stem).
    pub fn name(&self) -> &str {
        &self.runner.name
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Inputs and outputs with their datatypes and shapes.
    pub fn signature(&self) -> &Signature {
        &self.runner.signature
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
        let mut queued = std::time::Duration::ZERO;
        self.infer_queued(inputs, &mut queued)
    }

    /// [`Model::infer`], adding the time the run waited for a free session to `queued` (with
    /// dynamic batching on, the wait for the batch is part of the run, not of `queued`).
    pub fn infer_queued(
        &self,
        inputs: Vec<Tensor>,
        queued: &mut std::time::Duration,
    ) -> Result<Vec<Tensor>> {
        self.check_names(&inputs)?;
        let predicted = self.predicted_output_shapes(&inputs);
        let shapes = predicted
            .iter()
            .map(|(spec, shape)| (*spec, shape.as_slice()));
        check_answer_size(shapes, self.max_response_bytes)?;
        if let (Some(batcher), Some(rows)) = (&self.batcher, batch::rows(&inputs)) {
            if rows > 0 {
                let outputs = batcher.submit(inputs, rows)?;
                let shapes = self.runner.signature.outputs.iter().zip(&outputs);
                let shapes = shapes.map(|(spec, t)| (spec, t.shape.as_slice()));
                check_answer_size(shapes, self.max_response_bytes)?;
                return Ok(outputs);
            }
        }
        self.runner
            .run_queued(inputs, self.max_response_bytes, queued)
    }

    /// The largest answer a request may get, in bytes ([`ModelOptions::max_response_bytes`]).
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// The shape of each output whose every dimension is static or named like a dimension of
    /// an input (such as `batch` and `sequence` of a language model's logits).
    fn predicted_output_shapes(&self, inputs: &[Tensor]) -> Vec<(&TensorSpec, Vec<usize>)> {
        let size_of = |symbol: &str| {
            self.runner
                .signature
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
        for (spec, names) in self
            .runner
            .signature
            .outputs
            .iter()
            .zip(&self.output_symbols)
        {
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

    /// Batches run so far, as (rows, count), when dynamic batching is on.
    pub fn batch_sizes(&self) -> Vec<(usize, u64)> {
        self.batcher
            .as_ref()
            .map(Batcher::sizes)
            .unwrap_or_default()
    }

    /// Whether every input and output has a dynamic first dimension, so requests can be batched.
    pub fn is_batchable(&self) -> bool {
        batchable(&self.runner.signature)
    }

    /// The time each inference took (ONNX Runtime's run and the output conversion).
    pub fn inference_stats(&self) -> Histogram {
        self.runner
            .inferences
            .lock()
            .map(|h| h.clone())
            .unwrap_or_default()
    }

    /// The spec of input `name`, or a 400 naming the inputs the model has.
    pub fn input_spec(&self, name: &str) -> Result<&TensorSpec> {
        self.runner.signature.input(name).ok_or_else(|| {
            Error::invalid_input(format!(
                "unknown input \"{name}\": model \"{}\" has inputs {}",
                self.runner.name,
                quoted(self.runner.signature.inputs.iter().map(|s| s.name.as_str()))
            ))
        })
    }

    /// The output names, quoted and comma-separated, for error messages.
    pub(crate) fn output_names(&self) -> String {
        quoted(
            self.runner
                .signature
                .outputs
                .iter()
                .map(|s| s.name.as_str()),
        )
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
        for spec in &self.runner.signature.inputs {
            if !inputs.iter().any(|t| t.name == spec.name) {
                return Err(Error::invalid_input(format!(
                    "missing input \"{}\": model \"{}\" has inputs {}",
                    spec.name,
                    self.runner.name,
                    quoted(self.runner.signature.inputs.iter().map(|s| s.name.as_str()))
                )));
            }
        }
        Ok(())
    }
}

fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.map(|n| format!("\"{n}\"")).collect();
    names.join(", ")
}

/// Whether every input and output has a dynamic first dimension.
fn batchable(signature: &Signature) -> bool {
    let dynamic_first = |specs: &[TensorSpec]| {
        !specs.is_empty()
            && specs
                .iter()
                .all(|s| s.shape.first().is_some_and(|&d| d < 0))
    };
    dynamic_first(&signature.inputs) && dynamic_first(&signature.outputs)
}
