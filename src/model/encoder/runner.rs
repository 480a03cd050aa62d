//! [`EncoderRunner`]: an encoder's ONNX sessions and what turns their token vectors into
//! embeddings. Shared by the [`Encoder`](super::Encoder) and its batch runners.

use ort::session::{RunOptions, SessionInputValue};
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

    /// The pooled vector of each row, in order. Rows are sorted by length and cut into runs
    /// ([`runs`]), each padded to its longest row.
    pub(super) fn embed(&self, rows: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let lengths: Vec<usize> = order.iter().map(|&i| rows[i].len()).collect();
        let mut vectors = vec![Vec::new(); rows.len()];
        for range in runs(&lengths) {
            let chunk: Vec<&[u32]> = order[range.clone()].iter().map(|&i| rows[i]).collect();
            for (&i, vector) in order[range].iter().zip(self.run(&chunk)?) {
                vectors[i] = vector;
            }
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
        let mut options = RunOptions::new()
            .map_err(|err| Error::internal(format!("model \"{}\": {err}", self.name)))?;
        if rows.len() * width > ARENA_RUN_TOKENS {
            options
                .set("memory.enable_memory_arena_shrinkage", "cpu:0")
                .map_err(|err| Error::internal(format!("model \"{}\": {err}", self.name)))?;
        }
        let mut session = self.sessions.take();
        let outputs = session
            .run_with_options(inputs, &options)
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

/// What one more ONNX run costs, counted in padded tokens: its fixed work (launching every
/// operator, allocating its tensors) is about what a few more tokens cost on the bundled
/// encoder, and less on a larger model, whose work per token is larger.
const RUN_COST_TOKENS: usize = 16;

/// Padded tokens over which a run gives its memory back to the system when it ends; the
/// session's arena keeps what runs up to this size need, for the next run to reuse.
const ARENA_RUN_TOKENS: usize = 4096;

/// Most rows one run takes: more gains nothing, and it bounds the search in [`runs`].
const MAX_RUN_ROWS: usize = 256;

/// The runs to embed rows of these `lengths` (sorted, shortest first) in: consecutive ranges
/// whose padded tokens (rows × the longest) plus [`RUN_COST_TOKENS`] per run are the fewest,
/// each within [`MAX_RUN_TOKENS`] (a row alone always is: rows are at most the model's
/// maximum length). One run pads every row to the longest of the batch; for 32 texts of 8 to
/// 64 tokens these runs pad to a third fewer tokens, and attention, whose work grows with the
/// square of the width, costs less still.
fn runs(lengths: &[usize]) -> Vec<std::ops::Range<usize>> {
    let n = lengths.len();
    // best[j]: the least cost of the first j rows; start[j]: where the last run of it starts.
    let mut best = vec![0usize; n + 1];
    let mut start = vec![0usize; n + 1];
    for j in 1..=n {
        let width = lengths[j - 1];
        best[j] = usize::MAX;
        for i in (j.saturating_sub(MAX_RUN_ROWS)..j).rev() {
            let padded = (j - i) * width;
            if padded > MAX_RUN_TOKENS && i + 1 < j {
                break;
            }
            let cost = best[i].saturating_add(padded + RUN_COST_TOKENS);
            if cost < best[j] {
                best[j] = cost;
                start[j] = i;
            }
        }
    }
    let mut ranges = Vec::new();
    let mut end = n;
    while end > 0 {
        ranges.push(start[end]..end);
        end = start[end];
    }
    ranges.reverse();
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_one_length_run_together() {
        assert_eq!(runs(&[10; 32]), vec![(0..32)]);
        assert!(runs(&[]).is_empty());
        assert_eq!(runs(&[5]), vec![(0..1)]);
    }

    #[test]
    fn short_rows_are_not_padded_to_long_ones() {
        // Four rows of 8 and four of 64: padding the short ones costs 4 × 56 tokens, more
        // than a second run.
        let lengths = [8, 8, 8, 8, 64, 64, 64, 64];
        assert_eq!(runs(&lengths), [0..4, 4..8]);
        // Two tokens apart: not worth a run of their own.
        assert_eq!(runs(&[8, 8, 10, 10]), vec![(0..4)]);
    }

    #[test]
    fn every_run_fits_the_token_limit() {
        let lengths = vec![512; 100];
        let ranges = runs(&lengths);
        assert!(ranges.iter().all(|r| r.len() * 512 <= MAX_RUN_TOKENS));
        assert_eq!(ranges.iter().map(|r| r.len()).sum::<usize>(), 100);
        let many = vec![1; 1000];
        assert!(runs(&many).iter().all(|r| r.len() <= MAX_RUN_ROWS));
    }
}
