//! Text generation, with two kinds of language models:
//!
//! - byte-level models: any model whose single input is INT64 token ids `[batch, sequence]`
//!   and whose output is FP32 logits `[batch, sequence, 256]`. Tokens are the UTF-8 bytes of
//!   the text. Each step runs the model on the sequence so far (the last [`CONTEXT_BYTES`]
//!   bytes of it) and samples the next byte from the logits of the last position.
//! - decoders with a KV cache ([`Decoder`], a Hugging Face Optimum folder): the prompt's
//!   tokens run once, then one token per step with the cache fed back, so a step's work does
//!   not grow with the sequence (beyond attention reading the cached keys).
//!
//! Either way the same sampling, stop strings, `max_tokens` and cancellation apply; text is
//! handed out only as whole UTF-8 characters, and never a piece of a stop string.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::datatype::DataType;
#[cfg(feature = "language-models")]
use super::decoder::Decoder;
use super::element::TensorData;
use super::tensor::Tensor;
#[cfg(feature = "language-models")]
use super::tokenizer::Detokenizer;
use super::Model;
use crate::{Disconnected, Error, Result};

mod sampling;
mod text;
use sampling::Sampler;
pub use sampling::Sampling;
use text::TextAssembler;

/// The most bytes of context the model sees; older bytes are dropped from the left.
pub const CONTEXT_BYTES: usize = 256;

/// The longest prompt [`Generator::generate`] accepts, in bytes (UTF-8). Only its last
/// [`CONTEXT_BYTES`] reach the model, so a longer one is surely a mistake or an attack; the
/// request body limit (10 MiB by default) would otherwise be the only bound.
pub const MAX_PROMPT_BYTES: usize = 1024 * 1024;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop string (or, for a decoder, an end-of-sequence token) was produced.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The client went away; generation stopped early. Never sent to a client.
    Cancelled,
}

impl FinishReason {
    /// OpenAI's name: `stop` or `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

/// The outcome of a generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated text, without any stop string.
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Tokens of the prompt (bytes for a byte-level model).
    pub prompt_tokens: usize,
    /// Tokens generated (an end-of-sequence token is not counted).
    pub completion_tokens: usize,
}

/// A prompt made ready for one generator by [`Generator::text_prompt`] or
/// [`Generator::chat_prompt`]: text for a byte-level model, token ids for a decoder.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// The text of a byte-level model's prompt.
    Text(String),
    /// A decoder's prompt, encoded by its tokenizer (after its chat template for a chat).
    Ids(Vec<u32>),
}

impl Prompt {
    /// Its length in tokens.
    pub fn tokens(&self) -> usize {
        match self {
            Prompt::Text(text) => text.len(),
            Prompt::Ids(ids) => ids.len(),
        }
    }
}

#[cfg(feature = "language-models")]
use super::decoder::CacheReservation;

/// What [`Generator::reserve`] holds for a decoder; without the `language-models` feature
/// there are no decoders, and this type has no values.
#[cfg(not(feature = "language-models"))]
#[derive(Debug)]
pub enum CacheReservation {}

#[cfg(not(feature = "language-models"))]
impl Drop for CacheReservation {
    fn drop(&mut self) {
        match *self {}
    }
}

/// What a [`Generator`] runs.
#[derive(Debug, Clone)]
enum Engine {
    Bytes(Arc<Model>),
    #[cfg(feature = "language-models")]
    Decoder(Arc<Decoder>),
}

/// Generates text with a byte-level model or a `Decoder`.
///
/// # Example
/// ```no_run
/// use tinyserve::model::{Generator, ModelRegistry, Sampling};
/// let models = ModelRegistry::load_dir("models")?;
/// let generator = Generator::new(models.get("bytelm")?)?;
/// let sampling = Sampling { max_tokens: 40, temperature: 0.0, ..Sampling::default() };
/// let out = generator.generate("The ", &sampling, |piece| {
///     print!("{piece}");
///     Ok(())
/// })?;
/// println!(" [{}]", out.finish_reason.as_str());
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Generator {
    engine: Engine,
    tokens: Arc<AtomicU64>,
    cancelled: Arc<AtomicU64>,
}

impl Generator {
    /// Whether `self` and `other` run the same loaded model (then they are interchangeable,
    /// and the older one's counters go on).
    pub(crate) fn is_same_model(&self, other: &Generator) -> bool {
        match (&self.engine, &other.engine) {
            (Engine::Bytes(a), Engine::Bytes(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "language-models")]
            (Engine::Decoder(a), Engine::Decoder(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "language-models")]
            _ => false,
        }
    }

    /// A generator for `model`, or a 400 error saying why the model cannot generate text.
    pub fn new(model: Arc<Model>) -> Result<Generator> {
        check_signature(&model)?;
        Ok(Generator {
            engine: Engine::Bytes(model),
            tokens: Arc::new(AtomicU64::new(0)),
            cancelled: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A generator for a decoder folder's model: token-level, with its KV cache.
    #[cfg(feature = "language-models")]
    pub fn for_decoder(decoder: Arc<Decoder>) -> Generator {
        Generator {
            engine: Engine::Decoder(decoder),
            tokens: Arc::new(AtomicU64::new(0)),
            cancelled: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        match &self.engine {
            Engine::Bytes(model) => model.name(),
            #[cfg(feature = "language-models")]
            Engine::Decoder(decoder) => decoder.name(),
        }
    }

    /// The decoder, when this generator runs one.
    #[cfg(feature = "language-models")]
    pub fn decoder(&self) -> Option<&Arc<Decoder>> {
        match &self.engine {
            #[cfg(feature = "language-models")]
            Engine::Decoder(decoder) => Some(decoder),
            Engine::Bytes(_) => None,
        }
    }

    /// Whether this generator runs a decoder folder's model (token-level, with a KV cache).
    pub fn is_decoder(&self) -> bool {
        match &self.engine {
            Engine::Bytes(_) => false,
            #[cfg(feature = "language-models")]
            Engine::Decoder(_) => true,
        }
    }

    /// Whether chats are rendered by the model's own chat template (a decoder folder whose
    /// tokenizer config has one), rather than the plain `Role: content` lines.
    pub fn has_chat_template(&self) -> bool {
        match &self.engine {
            Engine::Bytes(_) => false,
            #[cfg(feature = "language-models")]
            Engine::Decoder(decoder) => !decoder.chat_template().is_plain(),
        }
    }

    /// The prompt of a completion: the text itself for a byte-level model (a 400 over
    /// [`MAX_PROMPT_BYTES`]); for a decoder, its ids with the tokenizer's special tokens
    /// (`Decoder::completion_prompt`).
    pub fn text_prompt(&self, text: String) -> Result<Prompt> {
        match &self.engine {
            Engine::Bytes(_) => {
                Generator::check_prompt(&text)?;
                Ok(Prompt::Text(text))
            }
            #[cfg(feature = "language-models")]
            Engine::Decoder(decoder) => {
                Generator::check_prompt(&text)?;
                Ok(Prompt::Ids(decoder.completion_prompt(&text)?))
            }
        }
    }

    /// The prompt of a chat, for a decoder: its chat template rendered with the generation
    /// prompt and encoded (`Decoder::chat_prompt`); `None` for a byte-level model (whose
    /// plain chat format the caller writes).
    #[cfg_attr(not(feature = "language-models"), allow(unused_variables))]
    pub fn chat_prompt(&self, messages: &[serde_json::Value]) -> Result<Option<Prompt>> {
        match &self.engine {
            Engine::Bytes(_) => Ok(None),
            #[cfg(feature = "language-models")]
            Engine::Decoder(decoder) => {
                let (text, ids) = decoder.chat_prompt(messages)?;
                Generator::check_prompt(&text)?;
                Ok(Some(Prompt::Ids(ids)))
            }
        }
    }

    /// What a handler checks before it answers 200: for a decoder, that the prompt has tokens
    /// and that with `max_tokens` it fits in the context (so the stream's cache stays within
    /// `DecoderLayout::cache_bytes`), a 400 naming the limit otherwise.
    #[cfg_attr(not(feature = "language-models"), allow(unused_variables))]
    pub fn check(&self, prompt: &Prompt, sampling: &Sampling) -> Result<()> {
        match (&self.engine, prompt) {
            #[cfg(feature = "language-models")]
            (Engine::Decoder(_), Prompt::Ids(ids)) if ids.is_empty() => Err(Error::invalid_input(
                "the prompt has no tokens: give some text",
            )),
            #[cfg(feature = "language-models")]
            (Engine::Decoder(decoder), Prompt::Ids(ids)) => {
                decoder.check_fits(ids.len(), sampling.max_tokens)
            }
            (Engine::Bytes(_), Prompt::Text(text)) => Generator::check_prompt(text),
            _ => Err(Error::internal(format!(
                "model \"{}\": a prompt made for another kind of model",
                self.name()
            ))),
        }
    }

    /// A 400 for a prompt over [`MAX_PROMPT_BYTES`], naming the limit (what
    /// [`Generator::generate`] checks first; a handler that streams checks it before its 200).
    pub fn check_prompt(prompt: &str) -> Result<()> {
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(Error::invalid_input(format!(
                "the prompt is {} bytes, over the limit of {MAX_PROMPT_BYTES} bytes \
                 (the model sees only the last {CONTEXT_BYTES})",
                prompt.len()
            )));
        }
        Ok(())
    }

    /// Whether `model` has the signature of a byte-level language model.
    pub fn fits(model: &Model) -> bool {
        check_signature(model).is_ok()
    }

    /// [`Generator::check`], and for a decoder the reservation of the most KV cache the
    /// generation can hold (`Decoder::reserve`: a 503 while other generations hold the
    /// budget); keep it until the generation ends. `None` for a byte-level model.
    pub fn reserve(
        &self,
        prompt: &Prompt,
        sampling: &Sampling,
    ) -> Result<Option<CacheReservation>> {
        self.check(prompt, sampling)?;
        match &self.engine {
            #[cfg(feature = "language-models")]
            Engine::Decoder(decoder) => {
                Ok(Some(decoder.reserve(prompt.tokens(), sampling.max_tokens)?))
            }
            Engine::Bytes(_) => Ok(None),
        }
    }

    /// The byte-level model, when this generator runs one.
    pub fn model(&self) -> Option<&Arc<Model>> {
        match &self.engine {
            Engine::Bytes(model) => Some(model),
            #[cfg(feature = "language-models")]
            Engine::Decoder(_) => None,
        }
    }

    /// Tokens this generator (and its clones) have generated so far.
    pub fn tokens_generated(&self) -> u64 {
        self.tokens.load(Ordering::Relaxed)
    }

    /// Generations this generator (and its clones) stopped because the client went away.
    pub fn generations_cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Generates from `prompt`, handing each new piece of text to `on_text` as soon as it is
    /// complete. When `on_text` fails (the client has gone), generation stops at once and the
    /// result says [`FinishReason::Cancelled`].
    ///
    /// A prompt longer than [`MAX_PROMPT_BYTES`] is a 400; of a shorter one only the last
    /// [`CONTEXT_BYTES`] are kept.
    ///
    /// For a decoder, `prompt` is encoded as a completion's ([`Generator::text_prompt`]).
    pub fn generate(
        &self,
        prompt: &str,
        sampling: &Sampling,
        on_text: impl FnMut(&str) -> Result<(), Disconnected>,
    ) -> Result<Generation> {
        let prompt = self.text_prompt(prompt.to_owned())?;
        self.generate_from(&prompt, sampling, on_text)
    }

    /// Generates from a prompt made by [`Generator::text_prompt`] or
    /// [`Generator::chat_prompt`], as [`Generator::generate`] does.
    pub fn generate_from(
        &self,
        prompt: &Prompt,
        sampling: &Sampling,
        on_text: impl FnMut(&str) -> Result<(), Disconnected>,
    ) -> Result<Generation> {
        self.check(prompt, sampling)?;
        let generation = match (&self.engine, prompt) {
            (Engine::Bytes(model), Prompt::Text(text)) => {
                self.generate_bytes(model, text, sampling, on_text)
            }
            #[cfg(feature = "language-models")]
            (Engine::Decoder(decoder), Prompt::Ids(ids)) => {
                self.generate_tokens(decoder, ids, sampling, on_text)
            }
            _ => unreachable_prompt(self.name()),
        }?;
        if generation.finish_reason == FinishReason::Cancelled {
            self.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(generation)
    }

    /// The token-level loop: the prompt once, then one token per step with the cache.
    #[cfg(feature = "language-models")]
    fn generate_tokens(
        &self,
        decoder: &Decoder,
        ids: &[u32],
        sampling: &Sampling,
        mut on_text: impl FnMut(&str) -> Result<(), Disconnected>,
    ) -> Result<Generation> {
        let tokenizer = decoder.tokenizer();
        let mut cache = decoder.cache()?;
        let mut logits = decoder.forward(&mut cache, ids)?;
        let mut sampler = Sampler::new(sampling);
        let mut text = TextAssembler::new(&sampling.stop);
        let mut detokenizer = Detokenizer::new();
        let mut finish_reason = FinishReason::Length;
        let mut generated = 0;
        while generated < sampling.max_tokens {
            let token = sampler.pick(&logits);
            if tokenizer.is_eos(token) {
                finish_reason = FinishReason::Stop;
                break;
            }
            generated += 1;
            self.tokens.fetch_add(1, Ordering::Relaxed);
            let piece = detokenizer.push(tokenizer, token)?;
            let (piece, stopped) = text.push_text(&piece);
            if let Some(reason) = deliver(&piece, stopped, &mut on_text) {
                finish_reason = reason;
                break;
            }
            if generated == sampling.max_tokens {
                break;
            }
            logits = decoder.forward(&mut cache, &[token])?;
        }
        // The cache (up to the context's worth of keys and values) is freed here, before the
        // last pieces are sent.
        drop(cache);
        if finish_reason != FinishReason::Cancelled && !text.stopped() {
            let (mut rest, stopped) = text.push_text(&detokenizer.finish(tokenizer)?);
            if stopped {
                finish_reason = FinishReason::Stop;
            } else {
                rest.push_str(&text.finish());
            }
            if !rest.is_empty() && on_text(&rest).is_err() {
                finish_reason = FinishReason::Cancelled;
            }
        }
        Ok(Generation {
            text: text.into_text(),
            finish_reason,
            prompt_tokens: ids.len(),
            completion_tokens: generated,
        })
    }

    fn generate_bytes(
        &self,
        model: &Model,
        prompt: &str,
        sampling: &Sampling,
        mut on_text: impl FnMut(&str) -> Result<(), Disconnected>,
    ) -> Result<Generation> {
        let prompt_tokens = prompt.len();
        let tail = &prompt.as_bytes()[prompt_tokens.saturating_sub(CONTEXT_BYTES)..];
        let mut ids: Vec<i64> = tail.iter().copied().map(i64::from).collect();
        let mut sampler = Sampler::new(sampling);
        let mut text = TextAssembler::new(&sampling.stop);
        let mut finish_reason = FinishReason::Length;
        let mut generated = 0;
        while generated < sampling.max_tokens {
            let logits = next_logits(model, &ids)?;
            let token = sampler.pick(&logits) as u8;
            if ids.len() == CONTEXT_BYTES {
                ids.remove(0);
            }
            ids.push(i64::from(token));
            generated += 1;
            self.tokens.fetch_add(1, Ordering::Relaxed);
            let (piece, stopped) = text.push(token);
            if let Some(reason) = deliver(&piece, stopped, &mut on_text) {
                finish_reason = reason;
                break;
            }
        }
        let rest = text.finish();
        if finish_reason != FinishReason::Cancelled && !rest.is_empty() && on_text(&rest).is_err() {
            finish_reason = FinishReason::Cancelled;
        }
        Ok(Generation {
            text: text.into_text(),
            finish_reason,
            prompt_tokens,
            completion_tokens: generated,
        })
    }
}

/// Sends one piece of generated text; why generation ends here, if it does: the sink failed
/// (the client left) or a stop string was reached. The step both generation loops share.
fn deliver(
    piece: &str,
    stopped: bool,
    on_text: &mut impl FnMut(&str) -> Result<(), Disconnected>,
) -> Option<FinishReason> {
    if !piece.is_empty() && on_text(piece).is_err() {
        return Some(FinishReason::Cancelled);
    }
    stopped.then_some(FinishReason::Stop)
}

fn unreachable_prompt(name: &str) -> Result<Generation> {
    Err(Error::internal(format!(
        "model \"{name}\": a prompt made for another kind of model"
    )))
}

/// Logits of the last position for the last [`CONTEXT_BYTES`] ids.
fn next_logits(model: &Model, ids: &[i64]) -> Result<Vec<f32>> {
    let window = &ids[ids.len().saturating_sub(CONTEXT_BYTES)..];
    if window.is_empty() {
        return Err(Error::invalid_input("the prompt is empty"));
    }
    let input = Tensor {
        name: model.signature().inputs[0].name.clone(),
        shape: vec![1, window.len()],
        data: TensorData::Int64(window.to_vec()),
    };
    let outputs = model.infer(vec![input])?;
    match outputs.into_iter().next().map(|t| t.data) {
        Some(TensorData::Fp32(logits)) if logits.len() >= 256 => {
            Ok(logits[logits.len() - 256..].to_vec())
        }
        _ => Err(Error::internal(format!(
            "model \"{}\" did not return [1, sequence, 256] logits",
            model.name()
        ))),
    }
}

fn check_signature(model: &Model) -> Result<()> {
    let signature = model.signature();
    let fits = match (signature.inputs.as_slice(), signature.outputs.as_slice()) {
        ([input], [output, ..]) => {
            input.datatype == DataType::Int64
                && input.shape.len() == 2
                && output.datatype == DataType::Fp32
                && output.shape.len() == 3
                && (output.shape[2] == 256 || output.shape[2] < 0)
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(Error::bad_request(format!(
            "model \"{}\" cannot generate text: it needs one INT64 input [batch, sequence] \
             and FP32 logits [batch, sequence, 256]",
            model.name()
        )))
    }
}

#[cfg(test)]
mod tests;
