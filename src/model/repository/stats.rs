//! Per-version inference statistics in the shape of Triton's statistics extension
//! (`GET /v2/models/NAME/stats`): success and failure counts, queue and compute times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// A count and the nanoseconds spent, as Triton's `StatisticDuration`.
#[derive(Debug, Default)]
struct Tally {
    count: AtomicU64,
    ns: AtomicU64,
}

impl Tally {
    fn add(&self, took: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn to_json(&self) -> Value {
        json!({"count": self.count.load(Ordering::Relaxed), "ns": self.ns.load(Ordering::Relaxed)})
    }
}

/// The times of one successful request, as the v2 infer route measures them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Waiting for a free ONNX Runtime session.
    pub queue: Duration,
    /// Decoding the request's inputs.
    pub compute_input: Duration,
    /// The model's run (with dynamic batching, the wait for the batch included).
    pub compute_infer: Duration,
    /// Writing the answer.
    pub compute_output: Duration,
}

/// The statistics of one version of one model, shared by the requests that use it. Counters
/// only: the memory is the same whatever the traffic.
///
/// # Example
/// ```
/// use std::time::Duration;
/// use tinyserve::model::{ModelStats, Timings};
/// let stats = ModelStats::default();
/// stats.record_success(Duration::from_millis(2), 1, Timings::default());
/// stats.record_failure(Duration::from_millis(1));
/// let json = stats.to_json("iris", 1);
/// assert_eq!(json["inference_stats"]["success"]["count"], 1);
/// assert_eq!(json["inference_stats"]["fail"]["count"], 1);
/// ```
#[derive(Debug, Default)]
pub struct ModelStats {
    success: Tally,
    fail: Tally,
    queue: Tally,
    compute_input: Tally,
    compute_infer: Tally,
    compute_output: Tally,
    inference_count: AtomicU64,
    execution_count: AtomicU64,
    /// Milliseconds since the Unix epoch of the last request, 0 before the first.
    last_inference: AtomicU64,
}

impl ModelStats {
    /// Counts a request answered in `total`, for `rows` inferences (the batch's first
    /// dimension, 1 for an unbatched input), with its phases.
    pub fn record_success(&self, total: Duration, rows: u64, timings: Timings) {
        self.success.add(total);
        self.queue.add(timings.queue);
        self.compute_input.add(timings.compute_input);
        self.compute_infer.add(timings.compute_infer);
        self.compute_output.add(timings.compute_output);
        self.inference_count.fetch_add(rows, Ordering::Relaxed);
        self.execution_count.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// Counts a request that failed after `total` (a bad input, a run ONNX Runtime refused).
    pub fn record_failure(&self, total: Duration) {
        self.fail.add(total);
        self.touch();
    }

    fn touch(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.last_inference.store(now, Ordering::Relaxed);
    }

    /// One entry of Triton's `model_stats` array for version `version` of `name`.
    pub fn to_json(&self, name: &str, version: u64) -> Value {
        let zero = json!({"count": 0, "ns": 0});
        json!({
            "name": name,
            "version": version.to_string(),
            "last_inference": self.last_inference.load(Ordering::Relaxed),
            "inference_count": self.inference_count.load(Ordering::Relaxed),
            "execution_count": self.execution_count.load(Ordering::Relaxed),
            "inference_stats": {
                "success": self.success.to_json(),
                "fail": self.fail.to_json(),
                "queue": self.queue.to_json(),
                "compute_input": self.compute_input.to_json(),
                "compute_infer": self.compute_infer.to_json(),
                "compute_output": self.compute_output.to_json(),
                "cache_hit": zero.clone(),
                "cache_miss": zero,
            },
            "batch_stats": [],
        })
    }
}
