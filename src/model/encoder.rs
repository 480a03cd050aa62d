//! Sentence encoders: a folder in the layout sentence-transformers and Optimum's
//! `feature-extraction` export give (`model.onnx` with a `last_hidden_state` output,
//! `tokenizer.json`, and optionally `modules.json`, `1_Pooling/config.json`,
//! `sentence_bert_config.json`, `config.json`), served as an embedding model.
//!
//! Texts are tokenized with the folder's `tokenizer.json` (its special tokens added),
//! truncated to the model's maximum length, sorted by length and run in runs of similar
//! lengths, each padded to its longest with an attention mask, pooled as `1_Pooling/config.json` says and L2-normalized when
//! `modules.json` has a `Normalize` module.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ort::session::Session;
use serde_json::Value;

use super::batch::Batcher;
use super::datatype::DataType;
use super::decoder_dir::{missing_files, REQUIRED_FILES};
use super::runtime;
use super::sessions::SessionPool;
use super::tokenizer::read_json;
use super::{ModelOptions, Signature};
use crate::{Error, ErrorKind, Result};

mod ascii;
mod pooling;
mod runner;
pub use pooling::Pooling;
use runner::{EncoderRunner, Rows};

/// Padded tokens (rows × the longest row) one ONNX run takes at most, so that a request of
/// 2,048 long texts does not build one huge attention tensor.
pub const MAX_RUN_TOKENS: usize = 16_384;

/// The maximum length when no config of the folder names one.
const DEFAULT_MAX_LENGTH: usize = 512;

/// The output that holds the token vectors: Optimum's name, then sentence-transformers' own
/// ONNX export's.
const OUTPUTS: [&str; 2] = ["last_hidden_state", "token_embeddings"];

/// An embedding model loaded from an encoder folder.
///
/// # Example
/// ```no_run
/// use tinyserve::model::Encoder;
/// let encoder = Encoder::load("tinyembed", "models/tinyembed".as_ref())?;
/// let ids = encoder.tokenize("What is a class?", true)?;
/// let vectors = encoder.embed(&[ids], encoder.normalizes())?;
/// assert_eq!(vectors[0].len(), encoder.dimension());
/// # Ok::<(), tinyserve::Error>(())
/// ```
pub struct Encoder {
    name: String,
    dir: PathBuf,
    /// `tokenizer.json` as the folder gives it.
    tokenizer: Tokenizers,
    /// Its [ASCII form](ascii), for texts it takes: BERT's tokenizer only.
    ascii: Option<ascii::AsciiForm>,
    max_length: usize,
    vocab_size: usize,
    normalize: bool,
    /// The sessions and pooling, shared with the batch runners.
    runner: Arc<EncoderRunner>,
    /// Concurrent requests' texts embedded together: on unless an override of
    /// [`ModelOptions::max_batch_size`] for this model is 0 or 1 (see
    /// [`ENCODER_BATCH_TEXTS`](crate::model::ENCODER_BATCH_TEXTS)).
    batcher: Option<Batcher<Rows>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("max_length", &self.max_length)
            .field("dimension", &self.dimension())
            .field("pooling", &self.runner.pooling)
            .field("normalize", &self.normalize)
            .finish()
    }
}

/// A tokenizer without its own padding or truncation, and the same truncating to the
/// model's maximum length (special tokens kept).
struct Tokenizers {
    whole: tokenizers::Tokenizer,
    truncating: tokenizers::Tokenizer,
}

impl Tokenizers {
    fn new(whole: tokenizers::Tokenizer, max_length: usize) -> tokenizers::Result<Tokenizers> {
        let mut truncating = whole.clone();
        truncating.with_truncation(Some(tokenizers::TruncationParams {
            max_length,
            ..Default::default()
        }))?;
        Ok(Tokenizers { whole, truncating })
    }
}

/// The ids `tokenizer` gives `text`, with its special tokens.
fn encode_ids(tokenizer: &tokenizers::Tokenizer, text: &str) -> tokenizers::Result<Vec<u32>> {
    tokenizer
        .encode_fast(text, true)
        .map(|encoding| encoding.get_ids().to_vec())
}

impl Encoder {
    /// Whether the folder `dir` is an encoder folder rather than a decoder folder: it has
    /// `modules.json`, `1_Pooling/config.json` or `sentence_bert_config.json`
    /// (sentence-transformers), or its `config.json` names only base-model architectures
    /// (such as `BertModel`, as an Optimum `feature-extraction` export keeps; a decoder's are
    /// `...ForCausalLM` or `...LMHeadModel`).
    pub fn is_encoder_dir(dir: &Path) -> bool {
        let sentence_transformers = [
            "modules.json",
            "1_Pooling/config.json",
            "sentence_bert_config.json",
        ]
        .iter()
        .any(|f| dir.join(f).is_file());
        sentence_transformers
            || read_json(dir, "config.json").is_ok_and(|config| {
                let names = config.get("architectures").and_then(Value::as_array);
                names.is_some_and(|names| {
                    !names.is_empty()
                        && names.iter().all(|n| {
                            n.as_str().is_some_and(|n| {
                                n.ends_with("Model") && !n.ends_with("LMHeadModel")
                            })
                        })
                })
            })
    }

    /// Loads the folder `dir` as model `name` with the default [`ModelOptions`].
    pub fn load(name: &str, dir: &Path) -> Result<Encoder> {
        Encoder::load_with(name, dir, &ModelOptions::default())
    }

    /// Loads the folder `dir` as model `name`: the tokenizer, the pooling and normalization
    /// from `modules.json` and `1_Pooling/config.json`, the maximum length (the smallest of
    /// `sentence_bert_config.json`'s `max_seq_length`, `tokenizer_config.json`'s
    /// `model_max_length` and `config.json`'s `max_position_embeddings`; 512 when none is
    /// given), and `model.onnx` with the sessions `options` give for its size. The model must
    /// take `input_ids` and `attention_mask` (and optionally `token_type_ids`), INT64, and give
    /// `last_hidden_state` (or `token_embeddings`) FP32 [batch, sequence, hidden]. Every
    /// failure names the folder.
    pub fn load_with(name: &str, dir: &Path, options: &ModelOptions) -> Result<Encoder> {
        let fail = |reason: String| {
            Error::new(
                ErrorKind::Internal,
                format!("cannot load model folder {}: {reason}", dir.display()),
            )
        };
        let missing = missing_files(dir);
        if !missing.is_empty() {
            return Err(fail(format!(
                "missing {} (an encoder folder holds {}, and optionally modules.json, \
                 1_Pooling/config.json, sentence_bert_config.json and config.json)",
                missing.join(" and "),
                REQUIRED_FILES.join(", ")
            )));
        }
        let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|err| fail(format!("tokenizer.json: {err}")))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|err| fail(format!("tokenizer.json: {err}")))?;
        let config = read_json(dir, "config.json")?;
        let max_length = max_length(
            &read_json(dir, "sentence_bert_config.json")?,
            &read_json(dir, "tokenizer_config.json")?,
            &config,
        );
        let ascii = ascii::configure(&tokenizer);
        let vocab_size = tokenizer.get_vocab_size(true);
        let modules = read_json(dir, "modules.json")?;
        let modules = modules.as_array().map(Vec::as_slice).unwrap_or_default();
        let module_of = |kind: &str| {
            modules.iter().find(|m| {
                m.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.ends_with(kind))
            })
        };
        let pooling_dir = module_of(".Pooling")
            .and_then(|m| m.get("path")?.as_str())
            .unwrap_or("1_Pooling");
        let pooling = Pooling::from_config(&read_json(&dir.join(pooling_dir), "config.json")?)
            .map_err(|err| fail(format!("{pooling_dir}/config.json: {err}")))?;
        let normalize = module_of(".Normalize").is_some();
        let pad_id = read_json(dir, "tokenizer_config.json")?
            .get("pad_token")
            .and_then(Value::as_str)
            .and_then(|t| tokenizer.token_to_id(t))
            .unwrap_or(0);

        let path = dir.join(REQUIRED_FILES[0]);
        let bytes = std::fs::metadata(&path).map_or(u64::MAX, |m| m.len());
        let (count, intra_threads) = options.sessions_for(bytes);
        let environment = runtime::environment()?;
        let mut sessions = Vec::with_capacity(count);
        for _ in 0..count {
            let session = Session::builder(environment)
                .and_then(|b| b.with_intra_threads(intra_threads).map_err(Into::into))
                .and_then(|b| {
                    // With the arena, a run reuses what the previous one allocated (without
                    // it, every run's tensors were allocated and faulted in anew); a run of
                    // over ARENA_RUN_TOKENS gives back what it took when it ends
                    // (EncoderRunner::run), so the arena keeps what small runs need.
                    let cpu = ort::ep::CPU::default().with_arena_allocator(true).build();
                    b.with_execution_providers([cpu]).map_err(Into::into)
                })
                .and_then(|mut b| b.commit_from_file(&path))
                .map_err(|err| fail(format!("model.onnx: {err}")))?;
            sessions.push(session);
        }
        let session = sessions
            .first()
            .ok_or_else(|| fail("model.onnx: no session".into()))?;
        let signature = Signature::from_session(session)
            .map_err(|err| fail(format!("model.onnx: {}", err.message())))?;
        let (output, hidden, token_type_ids) =
            check_signature(&signature).map_err(|reason| fail(format!("model.onnx: {reason}")))?;
        let hidden = match hidden {
            Some(width) => width,
            None => config
                .get("hidden_size")
                .and_then(Value::as_u64)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    fail(format!(
                        "model.onnx: the last dimension of \"{output}\" is dynamic and \
                         config.json has no hidden_size"
                    ))
                })?,
        };
        let runner = Arc::new(EncoderRunner {
            name: name.to_string(),
            pad_id,
            hidden,
            pooling,
            token_type_ids,
            output,
            sessions: SessionPool::new(sessions),
        });
        let (max_rows, wait) = options.encoder_batch_for(name);
        let batcher = (max_rows > 1).then(|| {
            Batcher::start(
                max_rows,
                wait,
                runner.sessions.len(),
                EncoderRunner::batched(Arc::clone(&runner)),
            )
        });
        Ok(Encoder {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            vocab_size,
            tokenizer: Tokenizers::new(tokenizer, max_length)
                .map_err(|err| fail(format!("tokenizer.json: {err}")))?,
            ascii,
            max_length,
            normalize,
            runner,
            batcher,
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

    /// The most tokens one input may have, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// The length of an embedding: the hidden width times the pooling modes.
    pub fn dimension(&self) -> usize {
        self.runner.hidden * self.runner.pooling.len()
    }

    /// How token vectors become one vector.
    pub fn pooling(&self) -> &[Pooling] {
        &self.runner.pooling
    }

    /// Batches run so far, as (texts, count), while dynamic batching is on (by default; see
    /// [`ENCODER_BATCH_TEXTS`](crate::model::ENCODER_BATCH_TEXTS)): concurrent requests'
    /// texts embedded together.
    pub fn batch_sizes(&self) -> Vec<(usize, u64)> {
        self.batcher
            .as_ref()
            .map(Batcher::sizes)
            .unwrap_or_default()
    }

    /// Whether `modules.json` has a `Normalize` module (the embeddings have length 1).
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// How many ids the tokenizer knows; a token id must be below it.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The ids of `text`, with the special tokens the tokenizer adds (`[CLS] ... [SEP]`).
    /// Longer than [`Encoder::max_length`]: cut to it when `truncate`, else a 413
    /// `payload_too_large` naming both lengths.
    pub fn tokenize(&self, text: &str, truncate: bool) -> Result<Vec<u32>> {
        let failed = |err| Error::invalid_input(format!("cannot tokenize the input: {err}"));
        // Cutting leaves a text that fits as it is, so with `truncate` every text is cut to
        // the maximum length in the one pass.
        let cut = truncate.then_some(self.max_length);
        let ids = match self.ascii.as_ref().and_then(|ascii| ascii.ids(text, cut)) {
            Some(ids) => ids,
            // Without offsets: the ids are all an embedding needs, and tracking the
            // character offsets of every token costs time for nothing.
            None if truncate => encode_ids(&self.tokenizer.truncating, text),
            None => encode_ids(&self.tokenizer.whole, text),
        }
        .map_err(failed)?;
        if ids.len() > self.max_length {
            return Err(self.too_long(ids.len()));
        }
        Ok(ids)
    }

    /// The 413 for a text of `length` tokens, over the model's maximum.
    fn too_long(&self, length: usize) -> Error {
        Error::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "the input has {length} tokens, over model \"{}\"'s maximum of {} (send \
                 \"truncate\": true to cut it)",
                self.name, self.max_length
            ),
        )
    }

    /// Checks token ids given by a client: each below [`Encoder::vocab_size`], at least one;
    /// longer than [`Encoder::max_length`] they are cut to it when `truncate`, else 413.
    pub fn check_ids(&self, mut ids: Vec<u32>, truncate: bool) -> Result<Vec<u32>> {
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(Error::invalid_input(format!(
                "token id {bad} is out of range for model \"{}\" (vocabulary of {})",
                self.name, self.vocab_size
            )));
        }
        if ids.len() > self.max_length {
            if !truncate {
                return Err(Error::new(
                    ErrorKind::PayloadTooLarge,
                    format!(
                        "the input has {} tokens, over model \"{}\"'s maximum of {}",
                        ids.len(),
                        self.name,
                        self.max_length
                    ),
                ));
            }
            ids.truncate(self.max_length);
        }
        Ok(ids)
    }

    /// The embedding of each row of ids (from [`Encoder::tokenize`] or
    /// [`Encoder::check_ids`]), in order, L2-normalized when `normalize`. Rows are sorted by
    /// length and cut into the runs that pad the fewest tokens, each padded to its longest row
    /// with an attention mask (at most [`MAX_RUN_TOKENS`] padded tokens). With dynamic
    /// batching on, the rows of concurrent calls run together
    /// (see [`Encoder::batch_sizes`]). A row without ids is a 400.
    pub fn embed(&self, rows: &[Vec<u32>], normalize: bool) -> Result<Vec<Vec<f32>>> {
        if let Some(i) = rows.iter().position(Vec::is_empty) {
            return Err(Error::invalid_input(format!(
                "input {i} has no tokens: model \"{}\" cannot embed it",
                self.name
            )));
        }
        if let Some(row) = rows.iter().find(|r| r.len() > self.max_length) {
            return Err(Error::invalid_input(format!(
                "an input has {} tokens, over model \"{}\"'s maximum of {}",
                row.len(),
                self.name,
                self.max_length
            )));
        }
        let mut vectors = match &self.batcher {
            Some(batcher) => batcher.submit(Rows(rows.to_vec()), rows.len())?,
            None => self
                .runner
                .embed(&rows.iter().map(Vec::as_slice).collect::<Vec<_>>())?,
        };
        if normalize {
            vectors.iter_mut().for_each(|v| pooling::normalize(v));
        }
        Ok(vectors)
    }
}

/// The smallest maximum length the configs give, or [`DEFAULT_MAX_LENGTH`].
fn max_length(sentence_bert: &Value, tokenizer_config: &Value, config: &Value) -> usize {
    [
        sentence_bert.get("max_seq_length"),
        tokenizer_config.get("model_max_length"),
        config.get("max_position_embeddings"),
    ]
    .into_iter()
    .flatten()
    .filter_map(Value::as_u64)
    // transformers writes a huge model_max_length (1e30) when it does not know one.
    .filter(|&n| n > 0 && n < 1 << 24)
    .filter_map(|n| usize::try_from(n).ok())
    .min()
    .unwrap_or(DEFAULT_MAX_LENGTH)
}

/// The output to pool and its width (if static), and whether there is a `token_type_ids`
/// input; or what does not fit, every problem named.
fn check_signature(
    signature: &Signature,
) -> std::result::Result<(String, Option<usize>, bool), String> {
    let mut problems = Vec::new();
    for name in ["input_ids", "attention_mask"] {
        match signature.input(name) {
            None => problems.push(format!("no input \"{name}\"")),
            Some(spec) if spec.datatype != DataType::Int64 => problems.push(format!(
                "input \"{name}\" is {}, expected INT64",
                spec.datatype
            )),
            Some(_) => {}
        }
    }
    let token_type_ids = signature.input("token_type_ids").is_some();
    for spec in &signature.inputs {
        if !["input_ids", "attention_mask", "token_type_ids"].contains(&spec.name.as_str()) {
            problems.push(format!(
                "unexpected input \"{}\" (an encoder takes input_ids, attention_mask and \
                 optionally token_type_ids)",
                spec.name
            ));
        }
    }
    let output = OUTPUTS.iter().find_map(|name| signature.output(name));
    let (name, width) = match output {
        None => {
            problems.push(format!(
                "no output \"last_hidden_state\" (nor \"token_embeddings\"); it has {}",
                signature
                    .outputs
                    .iter()
                    .map(|o| format!("\"{}\"", o.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            (String::new(), None)
        }
        Some(spec) => {
            if spec.datatype != DataType::Fp32 || spec.shape.len() != 3 {
                problems.push(format!(
                    "output \"{}\" is {} {}, expected FP32 [batch, sequence, hidden]",
                    spec.name,
                    spec.datatype,
                    spec.shape_text()
                ));
            }
            let width = spec.shape.last().and_then(|&d| usize::try_from(d).ok());
            (spec.name.clone(), width.filter(|&w| w > 0))
        }
    };
    match problems.is_empty() {
        true => Ok((name, width, token_type_ids)),
        false => Err(problems.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encoder_folders_are_told_from_decoder_folders() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        assert!(Encoder::is_encoder_dir(&models.join("tinyembed")));
        assert!(Encoder::is_encoder_dir(
            &models.join("tests/encoders/clsraw")
        ));
        assert!(!Encoder::is_encoder_dir(&models.join("tinychat")));
        assert!(!Encoder::is_encoder_dir(
            &models.join("tests/decoders/minimal")
        ));
    }

    #[test]
    fn the_maximum_length_is_the_smallest_the_configs_give() {
        let none = json!({});
        assert_eq!(max_length(&none, &none, &none), DEFAULT_MAX_LENGTH);
        let huge = json!({"model_max_length": 1_000_000_000_000_000_000_000_000_000_000f64});
        assert_eq!(max_length(&none, &huge, &none), DEFAULT_MAX_LENGTH);
        assert_eq!(
            max_length(
                &json!({"max_seq_length": 128}),
                &json!({"model_max_length": 512}),
                &json!({"max_position_embeddings": 514})
            ),
            128
        );
        assert_eq!(
            max_length(&none, &none, &json!({"max_position_embeddings": 64})),
            64
        );
    }
}
