//! Dynamic batching (Triton's `max_batch_size` / `max_queue_delay_microseconds`): concurrent
//! requests for a model are run together and each gets back its own share, so a busy model
//! runs fewer, larger inferences. The queue is the same for every kind of model ([`Job`]):
//! tensors of a model whose first dimension is dynamic are concatenated along it and split
//! back ([`merged`]); an encoder's texts are embedded in one run.
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

/// A request the batcher can run together with others.
pub(crate) trait Job: Send + 'static {
    /// What the request gets back.
    type Answer: Send + 'static;
    /// Whether `self` and `other` can run together.
    fn fits_with(&self, other: &Self) -> bool;
}

/// What a batch runner calls to run one batch: the requests, in order; each one's answer, in
/// the same order.
pub(crate) type Run<J> = dyn Fn(&[J]) -> Result<Vec<<J as Job>::Answer>> + Send + Sync;

/// A model's inputs, batched along their first dimension.
impl Job for Vec<Tensor> {
    type Answer = Vec<Tensor>;

    fn fits_with(&self, other: &Self) -> bool {
        compatible(self, other)
    }
}

/// A batch run for tensors from `run`, which runs one request: the requests' inputs
/// concatenated along the first dimension, run once, the outputs split back.
pub(crate) fn merged(
    run: impl Fn(Vec<Tensor>) -> Result<Vec<Tensor>> + Send + Sync + 'static,
) -> Arc<Run<Vec<Tensor>>> {
    Arc::new(move |requests: &[Vec<Tensor>]| {
        let counts: Vec<usize> = requests.iter().map(|r| rows(r).unwrap_or(0)).collect();
        let inputs: Vec<&[Tensor]> = requests.iter().map(Vec::as_slice).collect();
        run(concat(&inputs)).and_then(|outputs| split(outputs, &counts))
    })
}

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
struct Pending<J: Job> {
    job: J,
    rows: usize,
    arrived: Instant,
    reply: mpsc::SyncSender<Result<J::Answer>>,
}

/// One model's batcher: the queue its runner threads take batches from. Dropping it stops
/// the runners (within a second, when they next find the queue idle).
pub(crate) struct Batcher<J: Job> {
    queue: Arc<Queue<J>>,
}

/// The requests waiting for a batch, and the batch sizes run so far.
struct Queue<J: Job> {
    waiting: Mutex<VecDeque<Pending<J>>>,
    wake: Condvar,
    max_rows: usize,
    delay: Duration,
    sizes: Mutex<BTreeMap<usize, u64>>,
}

impl<J: Job> Batcher<J> {
    /// Starts `threads` batch runners (one per session, so batches run in parallel) that merge
    /// up to `max_rows` rows, waiting at most `delay` after the first request, and run each
    /// batch with `run`.
    pub(crate) fn start(
        max_rows: usize,
        delay: Duration,
        threads: usize,
        run: Arc<Run<J>>,
    ) -> Batcher<J> {
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
    pub(crate) fn submit(&self, job: J, rows: usize) -> Result<J::Answer> {
        let (reply, answer) = mpsc::sync_channel(1);
        let pending = Pending {
            job,
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

impl<J: Job> Queue<J> {
    /// Waits for the next batch: the oldest request, plus compatible ones that arrive within
    /// the delay after it, up to `max_rows` rows. `None` after a second with no request, so
    /// that the runner can see whether its model is gone.
    fn next_batch(&self) -> Option<Vec<Pending<J>>> {
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
            let fits =
                rows + queue[i].rows <= self.max_rows && batch[0].job.fits_with(&queue[i].job);
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
fn run_batches<J: Job>(queue: &Weak<Queue<J>>, run: &Run<J>) {
    loop {
        let Some(queue) = queue.upgrade() else { return };
        let Some(batch) = queue.next_batch() else {
            continue;
        };
        if let Ok(mut sizes) = queue.sizes.lock() {
            *sizes.entry(batch.iter().map(|p| p.rows).sum()).or_default() += 1;
        }
        drop(queue);
        let jobs: Vec<J>;
        let replies: Vec<_>;
        (jobs, replies) = batch.into_iter().map(|p| (p.job, p.reply)).unzip();
        let outcome = run(&jobs).and_then(|answers| match answers.len() == jobs.len() {
            true => Ok(answers),
            false => Err(Error::internal(format!(
                "a batch of {} requests got {} answers",
                jobs.len(),
                answers.len()
            ))),
        });
        match outcome {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(err) if jobs.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(err));
                }
            }
            Err(_) => run_alone(run, jobs, replies),
        }
    }
}

/// Runs each request of a failed batch on its own, so each gets the answer it would have got
/// without batching: the request at fault its own error, the others their answers.
fn run_alone<J: Job>(
    run: &Run<J>,
    jobs: Vec<J>,
    replies: Vec<mpsc::SyncSender<Result<J::Answer>>>,
) {
    for (job, reply) in jobs.into_iter().zip(replies) {
        let answer = run(std::slice::from_ref(&job)).and_then(|answers| {
            answers
                .into_iter()
                .next()
                .ok_or_else(|| Error::internal("a request run alone got no answer"))
        });
        let _ = reply.send(answer);
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
