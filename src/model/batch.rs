//! Dynamic batching (Triton's `max_batch_size` / `max_queue_delay_microseconds`): concurrent
//! requests for a model whose first dimension is dynamic are concatenated along it, run once,
//! and split back, so a busy model runs fewer, larger inferences.
//!
//! Batching never makes one client's request fail because of another's. A request joins the
//! queue only after it passed every check that can be made without running the model (names,
//! types and shapes against the signature); and when ONNX Runtime rejects a batch (an
//! out-of-vocabulary token in one request makes a Gather fail for all of them), each request
//! of the batch is run again alone, so only the request at fault gets the error, with its own
//! status (a 400 `invalid_input`, not a 500).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{mpsc, Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::tensor::Tensor;
use crate::{Error, Result};

/// What a batch runner calls to run one (merged) request: the model's sessions.
pub(crate) type Run = dyn Fn(Vec<Tensor>) -> Result<Vec<Tensor>> + Send + Sync;

/// Rows of a request: the common first dimension of its inputs, if they share one.
pub(crate) fn rows(inputs: &[Tensor]) -> Option<usize> {
    let first = inputs.first()?.shape.first().copied()?;
    inputs
        .iter()
        .all(|t| t.shape.first() == Some(&first))
        .then_some(first)
}

/// Whether two requests can share a batch: same inputs with the same trailing dimensions and types.
fn compatible(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| {
            b.iter().any(|y| {
                y.name == x.name
                    && y.datatype() == x.datatype()
                    && y.shape.get(1..) == x.shape.get(1..)
            })
        })
}

/// Concatenates the requests' inputs along the first dimension, input by input.
fn concat(requests: &[&[Tensor]]) -> Vec<Tensor> {
    let Some((first, rest)) = requests.split_first() else {
        return Vec::new();
    };
    let mut merged: Vec<Tensor> = first.to_vec();
    for request in rest {
        for tensor in merged.iter_mut() {
            if let Some(other) = request.iter().find(|t| t.name == tensor.name) {
                tensor.data.extend_from(&other.data);
                if let (Some(total), Some(more)) = (tensor.shape.first_mut(), other.shape.first()) {
                    *total += more;
                }
            }
        }
    }
    merged
}

/// Splits each output along its first dimension into pieces of `rows` rows.
fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>> {
    let mut pieces: Vec<Vec<Tensor>> = rows.iter().map(|_| Vec::new()).collect();
    for output in outputs {
        let total: usize = rows.iter().sum();
        if output.shape.first() != Some(&total) {
            return Err(Error::internal(format!(
                "batched output \"{}\" has shape {:?}, expected {total} rows",
                output.name, output.shape
            )));
        }
        let row_len: usize = output.shape[1..].iter().product();
        let mut start = 0;
        for (piece, &n) in pieces.iter_mut().zip(rows) {
            let range = start * row_len..(start + n) * row_len;
            let data = output.data.slice(range);
            let mut shape = output.shape.clone();
            shape[0] = n;
            piece.push(Tensor {
                name: output.name.clone(),
                shape,
                data,
            });
            start += n;
        }
    }
    Ok(pieces)
}

/// A request waiting to join a batch.
struct Pending {
    inputs: Vec<Tensor>,
    rows: usize,
    arrived: Instant,
    reply: mpsc::SyncSender<Result<Vec<Tensor>>>,
}

/// One model's batcher: the queue its runner threads take batches from. Dropping it stops
/// the runners (within a second, when they next find the queue idle).
pub(crate) struct Batcher {
    queue: Arc<Queue>,
}

/// The requests waiting for a batch, and the batch sizes run so far.
struct Queue {
    waiting: Mutex<VecDeque<Pending>>,
    wake: Condvar,
    max_rows: usize,
    delay: Duration,
    sizes: Mutex<BTreeMap<usize, u64>>,
}

impl Batcher {
    /// Starts `threads` batch runners (one per session, so batches run in parallel) that merge
    /// up to `max_rows` rows, waiting at most `delay` after the first request, and run each
    /// batch with `run`.
    pub(crate) fn start(
        max_rows: usize,
        delay: Duration,
        threads: usize,
        run: Arc<Run>,
    ) -> Batcher {
        let queue = Arc::new(Queue {
            waiting: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            max_rows,
            delay,
            sizes: Mutex::new(BTreeMap::new()),
        });
        for n in 0..threads.max(1) {
            let queue = Arc::downgrade(&queue);
            let run = Arc::clone(&run);
            let _ = std::thread::Builder::new()
                .name(format!("tinyserve-batch-{n}"))
                .spawn(move || run_batches(&queue, &*run));
        }
        Batcher { queue }
    }

    /// Queues a request and waits for its share of a batch's outputs.
    pub(crate) fn submit(&self, inputs: Vec<Tensor>, rows: usize) -> Result<Vec<Tensor>> {
        let (reply, answer) = mpsc::sync_channel(1);
        let pending = Pending {
            inputs,
            rows,
            arrived: Instant::now(),
            reply,
        };
        self.queue
            .waiting
            .lock()
            .map_err(|_| Error::internal("batch queue lock poisoned"))?
            .push_back(pending);
        self.queue.wake.notify_all();
        answer
            .recv()
            .map_err(|_| Error::internal("the batch runner stopped"))?
    }

    /// Batches run so far, by size in rows.
    pub(crate) fn sizes(&self) -> Vec<(usize, u64)> {
        self.queue
            .sizes
            .lock()
            .map(|s| s.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }
}

impl Queue {
    /// Waits for the next batch: the oldest request, plus compatible ones that arrive within
    /// the delay after it, up to `max_rows` rows. `None` after a second with no request, so
    /// that the runner can see whether its model is gone.
    fn next_batch(&self) -> Option<Vec<Pending>> {
        let mut queue = self.waiting.lock().ok()?;
        loop {
            if queue.is_empty() {
                queue = self
                    .wake
                    .wait_timeout(queue, Duration::from_secs(1))
                    .ok()?
                    .0;
                if queue.is_empty() {
                    return None;
                }
            }
            let deadline = queue.front()?.arrived + self.delay;
            let rows: usize = queue.iter().map(|p| p.rows).sum();
            let now = Instant::now();
            if rows >= self.max_rows || now >= deadline {
                break;
            }
            queue = self.wake.wait_timeout(queue, deadline - now).ok()?.0;
        }
        let first = queue.pop_front()?;
        let mut rows = first.rows;
        let mut batch = vec![first];
        let mut i = 0;
        while i < queue.len() {
            let fits = rows + queue[i].rows <= self.max_rows
                && compatible(&batch[0].inputs, &queue[i].inputs);
            if fits {
                if let Some(pending) = queue.remove(i) {
                    rows += pending.rows;
                    batch.push(pending);
                }
            } else {
                i += 1;
            }
        }
        Some(batch)
    }
}

/// A runner thread: takes batches until the [`Batcher`] is dropped.
fn run_batches(queue: &Weak<Queue>, run: &Run) {
    loop {
        let Some(queue) = queue.upgrade() else { return };
        let Some(batch) = queue.next_batch() else {
            continue;
        };
        let rows: Vec<usize> = batch.iter().map(|p| p.rows).collect();
        if let Ok(mut sizes) = queue.sizes.lock() {
            *sizes.entry(rows.iter().sum()).or_default() += 1;
        }
        drop(queue);
        let inputs: Vec<&[Tensor]> = batch.iter().map(|p| p.inputs.as_slice()).collect();
        let outcome = run(concat(&inputs)).and_then(|outputs| split(outputs, &rows));
        match outcome {
            Ok(pieces) => {
                for (pending, piece) in batch.into_iter().zip(pieces) {
                    let _ = pending.reply.send(Ok(piece));
                }
            }
            Err(err) if batch.len() == 1 => {
                if let Some(pending) = batch.into_iter().next() {
                    let _ = pending.reply.send(Err(err));
                }
            }
            Err(_) => run_alone(run, batch),
        }
    }
}

/// Runs each request of a failed batch on its own, so each gets the answer it would have got
/// without batching: the request at fault its own error, the others their outputs.
fn run_alone(run: &Run, batch: Vec<Pending>) {
    for pending in batch {
        let _ = pending.reply.send(run(pending.inputs));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TensorData;

    fn tensor(name: &str, shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        Tensor {
            name: name.into(),
            shape,
            data: TensorData::Fp32(data),
        }
    }

    #[test]
    fn concat_then_split_gives_back_each_request() {
        let a = vec![tensor("x", vec![1, 2], vec![1.0, 2.0])];
        let b = vec![tensor("x", vec![2, 2], vec![3.0, 4.0, 5.0, 6.0])];
        assert!(compatible(&a, &b));
        let merged = concat(&[&a, &b]);
        assert_eq!(merged[0].shape, vec![3, 2]);
        let pieces = split(merged, &[1, 2]).unwrap_or_default();
        assert_eq!(pieces, vec![a, b]);
    }

    #[test]
    fn different_trailing_dims_do_not_share_a_batch() {
        let a = vec![tensor("x", vec![1, 2], vec![1.0, 2.0])];
        let b = vec![tensor("x", vec![1, 3], vec![1.0, 2.0, 3.0])];
        assert!(!compatible(&a, &b));
        assert_eq!(rows(&a), Some(1));
    }
}
