//! [`Runner`]: one model's sessions and signature, running inputs that passed the checks.
//! Shared by the [`Model`](super::Model) and its batch runners.

use std::sync::Mutex;

use super::sessions::SessionPool;
use super::signature::{Signature, TensorSpec};
use super::tensor::Tensor;
use crate::{Error, Histogram, Result};

/// Runs a model: its name (for messages), signature, sessions and the time each run took.
pub(crate) struct Runner {
    pub(crate) name: String,
    pub(crate) signature: Signature,
    pub(crate) sessions: SessionPool,
    pub(crate) inferences: Mutex<Histogram>,
}

impl Runner {
    /// Runs one inference; outputs whose shapes cannot fit in `limit` bytes are refused before
    /// they are copied out of ONNX Runtime.
    pub(crate) fn run(&self, inputs: Vec<Tensor>, limit: usize) -> Result<Vec<Tensor>> {
        let mut queued = std::time::Duration::ZERO;
        self.run_queued(inputs, limit, &mut queued)
    }

    /// [`Runner::run`], adding the time spent waiting for a free session to `queued`.
    pub(crate) fn run_queued(
        &self,
        inputs: Vec<Tensor>,
        limit: usize,
        queued: &mut std::time::Duration,
    ) -> Result<Vec<Tensor>> {
        let mut values = Vec::with_capacity(inputs.len());
        for tensor in inputs {
            values.push((tensor.name.clone(), tensor.into_ort()?));
        }
        let waiting = std::time::Instant::now();
        let mut session = self.sessions.take();
        *queued += waiting.elapsed();
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
                check_answer_size(shapes.iter().map(|(s, d)| (*s, d.as_slice())), limit)?;
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
}

/// A 400 when outputs of these shapes cannot be answered within the limit, even at their
/// smallest encoding: one byte per element of a one-byte type, else two (JSON's `0,`; the
/// binary encoding takes at least two).
pub(crate) fn check_answer_size<'a>(
    outputs: impl Iterator<Item = (&'a TensorSpec, &'a [usize])>,
    limit: usize,
) -> Result<()> {
    let mut total = 0usize;
    for (spec, shape) in outputs {
        let elements = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let per_element = if spec.datatype.size() == 1 { 1 } else { 2 };
        let bytes = elements.and_then(|n| n.checked_mul(per_element));
        total = total.saturating_add(bytes.unwrap_or(usize::MAX));
        if total > limit {
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
                limit
            )));
        }
    }
    Ok(())
}
