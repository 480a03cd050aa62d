//! [`EncoderRunner`]: an encoder's ONNX sessions and what turns their token vectors into
//! embeddings. Shared by the [`Encoder`](super::Encoder) and its batch runners.

use ort::session::SessionInputValue;
use ort::value::Tensor as OrtTensor;

use super::pooling::{self, Pooling};
use super::MAX_RUN_TOKENS;
use crate::model::batch::{Job, Run};
use crate::model::sessions::SessionPool;
use crate::{Error, Result};

/// Runs an encoder: rows of token ids in, one pooled (not yet normalized) vector per row out.
pub(super) struct EncoderRunner {
    pub(super) name: String,
    pub(super) pad_id: u32,
    /// The width of `last_hidden_state`.
    pub(super) hidden: usize,
    pub(super) pooling: Vec<Pooling>,
    pub(super) token_type_ids: bool,
    pub(super) output: String,
    pub(super) sessions: SessionPool,
}

/// One request's rows of token ids, for the batcher: any two requests fit together (rows are
/// padded per run, so lengths need not match).
pub(super) struct Rows(pub(super) Vec<Vec<u32>>);

impl Job for Rows {
    type Answer = Vec<Vec<f32>>;

    fn fits_with(&self, _: &Rows) -> bool {
        true
    }
}

impl EncoderRunner {
    /// The batch run of the requests' rows: all embedded together, split back per request.
    pub(super) fn batched(runner: std::sync::Arc<EncoderRunner>) -> std::sync::Arc<Run<Rows>> {
        std::sync::Arc::new(move |requests: &[Rows]| {
            let rows: Vec<&[u32]> = requests
                .iter()
                .flat_map(|r| r.0.iter().map(Vec::as_slice))
                .collect();
            let mut vectors = runner.embed(&rows)?.into_iter();
            Ok(requests
                .iter()
                .map(|r| vectors.by_ref().take(r.0.len()).collect())
                .collect())
        })
    }

    /// The pooled vector of each row, in order. Rows are sorted by length and run in chunks of
    /// up to [`MAX_RUN_TOKENS`] padded tokens, each padded to its longest row.
    pub(super) fn embed(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        // Shortest first, so each run pads its rows to a similar length.
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut vectors = vec![Vec::new(); rows.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len() && (end + 1 - start) * rows[order[end]].len() <= MAX_RUN_TOKENS
            {
                end += 1;
            }
            let chunk: Vec<&[u32]> = order[start..end].iter().map(|&i| rows[i]).collect();
            for (&i, vector) in order[start..end].iter().zip(self.run(&chunk)?) {
                vectors[i] = vector;
            }
            start = end;
        }
        Ok(vectors)
    }

    /// One ONNX run of `rows`, padded to the longest; the pooled vector of each.
    fn run(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut ids = vec![i64::from(self.pad_id); rows.len() * width];
        let mut mask = vec![0i64; rows.len() * width];
        for (i, row) in rows.iter().enumerate() {
            for (j, &id) in row.iter().enumerate() {
                ids[i * width + j] = i64::from(id);
                mask[i * width + j] = 1;
            }
        }
        let shape = [rows.len(), width];
        let tensor = |name: &str, data: Vec<i64>| {
            OrtTensor::from_array((shape, data))
                .map(|t| t.into_dyn())
                .map_err(|err| Error::internal(format!("input \"{name}\": {err}")))
        };
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = vec![
            ("input_ids".into(), tensor("input_ids", ids)?.into()),
            (
                "attention_mask".into(),
                tensor("attention_mask", mask)?.into(),
            ),
        ];
        if self.token_type_ids {
            let types = vec![0i64; rows.len() * width];
            inputs.push((
                "token_type_ids".into(),
                tensor("token_type_ids", types)?.into(),
            ));
        }
        let mut session = self.sessions.take();
        let outputs = session
            .run(inputs)
            .map_err(|err| Error::internal(format!("model \"{}\": {err}", self.name)))?;
        let hidden = outputs.get(&self.output).ok_or_else(|| {
            Error::internal(format!(
                "model \"{}\" did not produce \"{}\"",
                self.name, self.output
            ))
        })?;
        let (got, data) = hidden
            .try_extract_tensor::<f32>()
            .map_err(|err| Error::internal(format!("output \"{}\": {err}", self.output)))?;
        let expected = [rows.len() as i64, width as i64, self.hidden as i64];
        if **got != expected {
            return Err(Error::internal(format!(
                "model \"{}\": output \"{}\" has shape {got:?}, expected {expected:?}",
                self.name, self.output
            )));
        }
        let stride = width * self.hidden;
        Ok(rows
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let tokens = &data[i * stride..i * stride + row.len() * self.hidden];
                let mut vector = Vec::with_capacity(self.hidden * self.pooling.len());
                pooling::pool(tokens, self.hidden, &self.pooling, &mut vector);
                vector
            })
            .collect())
    }
}
