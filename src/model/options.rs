//! [`ModelOptions`]: how each model's sessions, batching and limits are set up.

use std::collections::BTreeMap;
use std::time::Duration;

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
    /// Applies to models whose inputs and outputs all have a dynamic first dimension, and to
    /// embedding models, whose rows are texts. Embedding models batch without it being set
    /// ([`ENCODER_BATCH_TEXTS`]); an override of 0 or 1 turns that off for one.
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

/// An embedding model's batch when neither [`ModelOptions::max_batch_size`] nor an override
/// sets one: concurrent requests' texts run together, up to this many, taken as soon as one
/// of the model's sessions is free (no wait: a lone request runs at once). This is
/// text-embeddings-inference's way; on the bundled encoder at 16 connections it spends 14%
/// less CPU per request (fewer, fuller ONNX runs, padded less).
pub const ENCODER_BATCH_TEXTS: usize = 256;

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
    pub(crate) fn batch_size_for(&self, name: &str) -> usize {
        self.batch_overrides
            .get(name)
            .copied()
            .unwrap_or(self.max_batch_size)
    }

    /// The batch size and wait for the embedding model called `name`: as set, else
    /// [`ENCODER_BATCH_TEXTS`] without a wait.
    #[cfg(feature = "language-models")]
    pub(crate) fn encoder_batch_for(&self, name: &str) -> (usize, Duration) {
        match self.batch_overrides.get(name) {
            Some(&rows) => (rows, self.batch_timeout),
            None if self.max_batch_size > 1 => (self.max_batch_size, self.batch_timeout),
            None => (ENCODER_BATCH_TEXTS, Duration::ZERO),
        }
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

    #[test]
    #[cfg(feature = "language-models")]
    fn embedding_models_batch_unless_turned_off() {
        let mut options = ModelOptions::default();
        assert_eq!(
            options.encoder_batch_for("e"),
            (ENCODER_BATCH_TEXTS, Duration::ZERO),
            "on by default, without a wait"
        );
        options.max_batch_size = 64;
        assert_eq!(options.encoder_batch_for("e"), (64, options.batch_timeout));
        options.batch_overrides.insert("e".into(), 1);
        assert_eq!(options.encoder_batch_for("e").0, 1, "MODEL=1 turns it off");
        assert_eq!(options.batch_size_for("other"), 64);
    }
}
