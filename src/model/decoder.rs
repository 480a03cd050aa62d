//! Decoders exported by Hugging Face Optimum (`--task text-generation-with-past`): a folder
//! with `model.onnx`, `tokenizer.json` and its configs, run with a KV cache.
//!
//! The layout is recognised from the session's input and output names: `input_ids`,
//! `attention_mask`, optionally `position_ids`, and `past_key_values.{i}.key` / `.value`
//! [batch, kv_heads, past, head_size] in; `logits` [batch, seq, vocab] and `present.{i}.key` /
//! `.value` [batch, kv_heads, past + seq, head_size] out. [`KvCache`] holds one stream's
//! presents: the prompt runs once, then each step feeds one token and the previous presents as
//! the past, so the tokens fed per step do not grow with the position.

use super::sessions::SessionPool;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor as OrtTensor};
use serde_json::Value;

use super::chat_template::ChatTemplate;
use super::decoder_dir::{missing_files, REQUIRED_FILES};
use super::logits::argmax;
use super::runtime;
use super::tokenizer::{read_json, Tokenizer};
use super::{ModelOptions, Signature};
use crate::{Error, ErrorKind, Result};

mod layout;
use layout::CONTEXT_KEYS;
pub use layout::{DecoderLayout, DEFAULT_CONTEXT};

/// One stream's cache: the presents of the last run, to be fed as the next past.
///
/// Made by [`Decoder::cache`], advanced by [`Decoder::forward`]. Holds at most
/// [`DecoderLayout::cache_bytes`] (the presents grow by one position per token, up to the
/// context).
#[derive(Debug)]
pub struct KvCache {
    /// `past_key_values.{i}.key`, `.value` for each layer, in that order.
    past: Vec<DynValue>,
    /// Positions held (the tokens run so far).
    len: usize,
    /// Tokens fed to the last run.
    last_fed: usize,
    /// Runs so far.
    runs: usize,
}

impl KvCache {
    /// The positions the cache holds: the tokens run so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been run yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many tokens the last run fed to the model: the prompt's length for the first run,
    /// 1 for each step after it.
    pub fn last_fed(&self) -> usize {
        self.last_fed
    }

    /// How many times the model has run on this cache.
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// The shape of each past tensor the next run will get, [1, kv_heads, len, head_size].
    pub fn past_shapes(&self) -> Vec<Vec<i64>> {
        self.past
            .iter()
            .filter_map(|v| match v.dtype() {
                ort::value::ValueType::Tensor { shape, .. } => Some(shape.to_vec()),
                _ => None,
            })
            .collect()
    }
}

/// A language model loaded from a Hugging Face decoder folder: the ONNX session, its cache
/// layout, the tokenizer and the chat template.
///
/// # Example
/// ```no_run
/// use tinyserve::model::Decoder;
/// let decoder = Decoder::load("tinychat", "models/tinychat".as_ref())?;
/// let prompt = decoder.tokenizer().encode("The ", false)?;
/// let tokens = decoder.greedy(&prompt, 16)?;
/// println!("{}", decoder.tokenizer().decode(&tokens, true)?);
/// # Ok::<(), tinyserve::Error>(())
/// ```
pub struct Decoder {
    name: String,
    dir: PathBuf,
    layout: DecoderLayout,
    tokenizer: Tokenizer,
    chat_template: ChatTemplate,
    /// Each run locks one session; several let streams step side by side.
    sessions: SessionPool,
    /// Prompts waiting for a session, which steps let go first.
    prompts: PromptsFirst,
    /// [`ModelOptions::kv_cache_bytes`]: the bytes of cache all generations may reserve.
    cache_budget: Option<u64>,
    /// The bytes of cache reserved by the generations running now ([`Decoder::reserve`]).
    cache_reserved: AtomicU64,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("layout", &self.layout)
            .finish()
    }
}

impl Decoder {
    /// Whether `dir` looks like a decoder folder (it has any of [`REQUIRED_FILES`]), so that a
    /// registry should load it with [`Decoder::load`] and report what is missing.
    pub fn is_decoder_dir(dir: &Path) -> bool {
        super::decoder_dir::is_decoder_dir(dir)
    }

    /// Loads the folder `dir` as model `name` with the default [`ModelOptions`]; see
    /// [`Decoder::load_with`].
    pub fn load(name: &str, dir: &Path) -> Result<Decoder> {
        Decoder::load_with(name, dir, &ModelOptions::default())
    }

    /// Loads the folder `dir` as model `name`: checks that [`REQUIRED_FILES`] exist (naming the
    /// missing ones), reads the tokenizer and its configs, compiles the chat template, opens
    /// `model.onnx` with the sessions and threads `options` give for its size
    /// ([`ModelOptions::sessions_for`]) and reads its [`DecoderLayout`]. Every failure names the
    /// folder.
    pub fn load_with(name: &str, dir: &Path, options: &ModelOptions) -> Result<Decoder> {
        let fail = |reason: String| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot load model folder {}: {reason}", dir.display()),
            )
        };
        let missing = missing_files(dir);
        if !missing.is_empty() {
            return Err(fail(format!(
                "missing {} (a decoder folder holds {}, and optionally tokenizer_config.json, \
                 generation_config.json and config.json)",
                missing.join(" and "),
                REQUIRED_FILES.join(", ")
            )));
        }
        let tokenizer = Tokenizer::from_dir(dir)?;
        let chat_template = ChatTemplate::new(
            tokenizer.chat_template(),
            tokenizer.bos_token(),
            tokenizer.eos_token(),
        )
        .map_err(|err| fail(err.message().to_string()))?;
        let config = read_json(dir, "config.json")?;
        let path = dir.join(REQUIRED_FILES[0]);
        let bytes = std::fs::metadata(&path).map_or(u64::MAX, |m| m.len());
        let (count, intra_threads) = options.sessions_for(bytes);
        let environment = runtime::environment()?;
        let mut sessions = Vec::with_capacity(count);
        for _ in 0..count {
            let session = Session::builder(environment)
                .and_then(|b| b.with_intra_threads(intra_threads).map_err(Into::into))
                // A token step is a chain of small operators, between which the server has
                // work of its own (sampling, detokenizing, writing the stream): idle intra-op
                // threads that spin for the next operator take the cores from it.
                .and_then(|b| b.with_intra_op_spinning(false).map_err(Into::into))
                .and_then(|mut b| b.commit_from_file(&path))
                .map_err(|err| fail(format!("model.onnx: {err}")))?;
            sessions.push(session);
        }
        let session = sessions
            .first()
            .ok_or_else(|| fail("model.onnx: no session".into()))?;
        let signature = Signature::from_session(session)
            .map_err(|err| fail(format!("model.onnx: {}", err.message())))?;
        let mut layout = DecoderLayout::from_signature(&signature, &config)
            .map_err(|err| fail(format!("model.onnx: {}", err.message())))?;
        if CONTEXT_KEYS.iter().all(|key| config.get(key).is_none()) {
            if let Some(n) = tokenizer.model_max_length().filter(|&n| n < 1 << 24) {
                layout.context = n;
            }
        }
        Ok(Decoder {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            layout,
            tokenizer,
            chat_template,
            sessions: SessionPool::new(sessions),
            prompts: PromptsFirst::default(),
            cache_budget: options.kv_cache_bytes,
            cache_reserved: AtomicU64::new(0),
        })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Layers, heads, head size and context.
    pub fn layout(&self) -> &DecoderLayout {
        &self.layout
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template (the plain format when the folder has none).
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.chat_template
    }

    /// The prompt of a chat: the chat template rendered with `add_generation_prompt`, and its
    /// ids. The special tokens the template writes become their ids (the text is encoded
    /// without adding any, as transformers' `apply_chat_template` does); special-token text
    /// inside a message's `content` is encoded as plain text ([`Tokenizer::escape_specials`]).
    /// A text too long for the context is a 400 before it is tokenized.
    pub fn chat_prompt(&self, messages: &[Value]) -> Result<(String, Vec<u32>)> {
        let escaped: Vec<Value> = messages
            .iter()
            .map(|message| {
                let mut message = message.clone();
                if let Some(Value::String(content)) = message.get_mut("content") {
                    if let std::borrow::Cow::Owned(marked) = self.tokenizer.escape_specials(content)
                    {
                        *content = marked;
                    }
                }
                message
            })
            .collect();
        let text = self.chat_template.render(&escaped, true)?;
        let ids = self
            .tokenizer
            .encode_chat(&text, |bytes| self.check_prompt_bytes(bytes))?;
        Ok((text, ids))
    }

    /// The ids of a completion's prompt: `text` with the special tokens the tokenizer's
    /// post-processor adds (a BOS for Llama-style tokenizers; nothing for GPT-2-style ones), as
    /// a transformers pipeline encodes it. A text too long for the context is a 400 before it
    /// is tokenized.
    pub fn completion_prompt(&self, text: &str) -> Result<Vec<u32>> {
        self.check_prompt_bytes(text.len())?;
        self.tokenizer.encode(text, true)
    }

    /// A 400 naming the context when a text of `bytes` bytes surely has more tokens than the
    /// context holds ([`Tokenizer::min_tokens`]): tokenizing a 1 MiB prompt to find out took
    /// a third of a second of CPU.
    pub fn check_prompt_bytes(&self, bytes: usize) -> Result<()> {
        let at_least = self.tokenizer.min_tokens(bytes);
        let context = self.layout.context;
        if at_least > context {
            return Err(Error::invalid_input(format!(
                "the prompt is {bytes} bytes, at least {at_least} tokens of model \"{}\", over \
                 its context of {context} tokens",
                self.name
            )));
        }
        Ok(())
    }

    /// A 400 naming the limit when `prompt_tokens + max_tokens` exceeds the context; check it
    /// before a stream starts, so its cache stays within [`DecoderLayout::cache_bytes`].
    pub fn check_fits(&self, prompt_tokens: usize, max_tokens: usize) -> Result<()> {
        let context = self.layout.context;
        if prompt_tokens.saturating_add(max_tokens) > context {
            return Err(Error::invalid_input(format!(
                "the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceed \
                 model \"{}\"'s context of {context} tokens (the limit that bounds a stream's \
                 KV cache to {} bytes)",
                self.name,
                self.layout.cache_bytes()
            )));
        }
        Ok(())
    }

    /// The cache bytes one token position takes: layers × kv_heads × head_size × 4 × 2.
    pub fn cache_bytes_per_token(&self) -> u64 {
        let layout = &self.layout;
        [layout.layers, layout.kv_heads, layout.head_size, 4, 2]
            .iter()
            .map(|&n| n as u64)
            .product()
    }

    /// The budget of cache bytes for all generations together
    /// ([`ModelOptions::kv_cache_bytes`]); `None`: no budget beyond each generation's context.
    pub fn cache_budget(&self) -> Option<u64> {
        self.cache_budget
    }

    /// The cache bytes reserved by the generations running now.
    pub fn cache_reserved(&self) -> u64 {
        self.cache_reserved.load(Ordering::Relaxed)
    }

    /// Reserves the most cache a generation of `prompt_tokens + max_tokens` can hold, before
    /// it starts, until the returned reservation is dropped: after [`Decoder::check_fits`], a
    /// 400 naming the budget when this generation alone needs more than
    /// [`Decoder::cache_budget`], a 503 (overloaded, retry) when the generations running now
    /// hold too much of it. Without a budget, only the context bounds it.
    pub fn reserve(
        self: &Arc<Self>,
        prompt_tokens: usize,
        max_tokens: usize,
    ) -> Result<CacheReservation> {
        self.check_fits(prompt_tokens, max_tokens)?;
        let tokens = prompt_tokens.saturating_add(max_tokens) as u64;
        let bytes = tokens.saturating_mul(self.cache_bytes_per_token());
        if let Some(budget) = self.cache_budget {
            if bytes > budget {
                return Err(Error::invalid_input(format!(
                    "the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) need \
                     {bytes} bytes of KV cache, over model \"{}\"'s budget of {budget} bytes \
                     (--kv-cache-bytes)",
                    self.name
                )));
            }
            let reserved =
                self.cache_reserved
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                        held.checked_add(bytes).filter(|&total| total <= budget)
                    });
            if reserved.is_err() {
                return Err(Error::overloaded(format!(
                    "model \"{}\"'s KV cache budget ({budget} bytes, --kv-cache-bytes) is held \
                     by the generations running now; this one needs {bytes} bytes",
                    self.name
                )));
            }
        } else {
            self.cache_reserved.fetch_add(bytes, Ordering::AcqRel);
        }
        Ok(CacheReservation {
            decoder: Arc::clone(self),
            bytes,
        })
    }

    /// An empty cache for one stream: past tensors of length 0.
    pub fn cache(&self) -> Result<KvCache> {
        let shape = [1, self.layout.kv_heads, 0, self.layout.head_size];
        let mut past = Vec::with_capacity(self.layout.layers * 2);
        for _ in 0..self.layout.layers * 2 {
            let empty = OrtTensor::from_array((shape, Vec::<f32>::new()))
                .map_err(|err| Error::internal(format!("cannot create an empty cache: {err}")))?;
            past.push(empty.into_dyn());
        }
        Ok(KvCache {
            past,
            len: 0,
            last_fed: 0,
            runs: 0,
        })
    }

    /// Runs `ids` (the prompt on an empty cache, then one token per step) after what `cache`
    /// holds; stores the presents in `cache` and returns the logits of the last position.
    ///
    /// A run that fails leaves the cache unusable (its past went into the failed run): the
    /// stream ends there, and a later `forward` on it fails.
    pub fn forward(&self, cache: &mut KvCache, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err(Error::invalid_input("the prompt has no tokens"));
        }
        if cache.past.len() != self.layout.layers * 2 {
            return Err(Error::internal(format!(
                "model \"{}\": the cache is unusable after a failed run",
                self.name
            )));
        }
        let total = cache.len + ids.len();
        if total > self.layout.context {
            return Err(Error::invalid_input(format!(
                "{total} tokens exceed model \"{}\"'s context of {} tokens",
                self.name, self.layout.context
            )));
        }
        let tensor = |name: &str, data: Vec<i64>| {
            let len = data.len();
            OrtTensor::from_array(([1, len], data))
                .map(|t| t.into_dyn())
                .map_err(|err| Error::internal(format!("input \"{name}\": {err}")))
        };
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = vec![
            (
                "input_ids".into(),
                tensor("input_ids", ids.iter().map(|&id| i64::from(id)).collect())?.into(),
            ),
            (
                "attention_mask".into(),
                tensor("attention_mask", vec![1; total])?.into(),
            ),
        ];
        if self.layout.has_position_ids {
            let positions = (cache.len as i64..total as i64).collect();
            inputs.push((
                "position_ids".into(),
                tensor("position_ids", positions)?.into(),
            ));
        }
        let past = std::mem::take(&mut cache.past);
        for (i, value) in past.into_iter().enumerate() {
            let kind = if i % 2 == 0 { "key" } else { "value" };
            inputs.push((format!("past_key_values.{}.{kind}", i / 2), value.into()));
        }
        // Steps take whichever session is free (a lock's barging: a running stream may take
        // its session back before a waiting one wakes), but not while a prompt waits, so a new
        // stream's first token does not wait behind the running ones. Measured with 16 streams
        // on two sessions (bench/decoder.py): handing sessions over first come first served
        // gave 9,600 tokens/s against 15,400 with barging, as every step then waits for a
        // sleeping thread to wake.
        let mut session = match cache.len {
            0 => self.prompts.prompt(|| self.sessions.take()),
            _ => {
                self.prompts.wait_for_prompts();
                self.sessions.take()
            }
        };
        let mut outputs = session
            .run(inputs)
            .map_err(|err| Error::internal(format!("model \"{}\": {err}", self.name)))?;
        let missing = |name: &str| {
            Error::internal(format!(
                "model \"{}\" did not produce \"{name}\"",
                self.name
            ))
        };
        let mut presents = Vec::with_capacity(self.layout.layers * 2);
        for i in 0..self.layout.layers {
            for kind in ["key", "value"] {
                let name = format!("present.{i}.{kind}");
                presents.push(outputs.remove(&name).ok_or_else(|| missing(&name))?);
            }
        }
        let logits = outputs.get("logits").ok_or_else(|| missing("logits"))?;
        let (shape, data) = logits
            .try_extract_tensor::<f32>()
            .map_err(|err| Error::internal(format!("output \"logits\": {err}")))?;
        let vocab = shape
            .last()
            .and_then(|&d| usize::try_from(d).ok())
            .unwrap_or(0);
        let last = data
            .len()
            .checked_sub(vocab)
            .filter(|_| vocab > 0)
            .ok_or_else(|| Error::internal(format!("output \"logits\": shape {shape:?}")))?;
        let row = data[last..].to_vec();
        drop(outputs);
        drop(session);
        cache.past = presents;
        cache.len = total;
        cache.last_fed = ids.len();
        cache.runs += 1;
        Ok(row)
    }

    /// Greedy generation: the prompt once, then one token per step; stops before an EOS id or
    /// after `max_tokens`. Returns the generated ids. (The server's loop adds sampling, stop
    /// strings and cancellation around [`Decoder::forward`].)
    pub fn greedy(&self, prompt: &[u32], max_tokens: usize) -> Result<Vec<u32>> {
        self.check_fits(prompt.len(), max_tokens)?;
        let mut cache = self.cache()?;
        let mut tokens = Vec::new();
        let mut logits = self.forward(&mut cache, prompt)?;
        while tokens.len() < max_tokens {
            let next = argmax(&logits);
            if self.tokenizer.is_eos(next) {
                break;
            }
            tokens.push(next);
            if tokens.len() == max_tokens {
                break;
            }
            logits = self.forward(&mut cache, &[next])?;
        }
        Ok(tokens)
    }
}

/// Cache bytes held for one generation by [`Decoder::reserve`]; dropping it gives them back.
#[derive(Debug)]
pub struct CacheReservation {
    decoder: Arc<Decoder>,
    bytes: u64,
}

impl CacheReservation {
    /// The bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for CacheReservation {
    fn drop(&mut self) {
        self.decoder
            .cache_reserved
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Prompts before steps: while a prompt waits for a session, steps wait for the prompts.
#[derive(Default)]
struct PromptsFirst {
    waiting: Mutex<usize>,
    none_waiting: Condvar,
}

impl PromptsFirst {
    /// Takes a session for a prompt with `take`, steps holding back meanwhile.
    fn prompt<T>(&self, take: impl FnOnce() -> T) -> T {
        *self.count() += 1;
        let session = take();
        let mut waiting = self.count();
        *waiting -= 1;
        if *waiting == 0 {
            self.none_waiting.notify_all();
        }
        session
    }

    /// Returns once no prompt waits for a session.
    fn wait_for_prompts(&self) {
        let mut waiting = self.count();
        while *waiting > 0 {
            waiting = self
                .none_waiting
                .wait(waiting)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn count(&self) -> MutexGuard<'_, usize> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
