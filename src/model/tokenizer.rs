//! The tokenizer of a Hugging Face model folder: `tokenizer.json` read by Hugging Face's own
//! `tokenizers` crate, special tokens from `tokenizer_config.json`, end-of-sequence ids from
//! `generation_config.json`, and a streaming detokenizer that only ever emits whole characters.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::{Error, ErrorKind, Result};

/// A model's tokenizer and the special tokens its configs name.
///
/// # Example
/// ```no_run
/// use tinyserve::model::Tokenizer;
/// let tokenizer = Tokenizer::from_dir("models/tinychat".as_ref())?;
/// let ids = tokenizer.encode("What is a class?", false)?;
/// assert_eq!(tokenizer.decode(&ids, true)?, "What is a class?");
/// # Ok::<(), tinyserve::Error>(())
/// ```
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
    chat_template: Option<String>,
    model_max_length: Option<usize>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("eos_ids", &self.eos_ids)
            .finish()
    }
}

impl Tokenizer {
    /// Reads `tokenizer.json` (required) and, when present, `tokenizer_config.json`,
    /// `generation_config.json`, `config.json` and `chat_template.jinja` from `dir`.
    ///
    /// The end-of-sequence ids are the union of `generation_config.json`'s `eos_token_id` (a
    /// number or a list), `config.json`'s, and the id of `tokenizer_config.json`'s `eos_token`.
    /// The chat template is `chat_template.jinja` if that file exists, else
    /// `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}`
    /// of which the one named `default` is used).
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(load_error(dir, "missing tokenizer.json".into()));
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|err| load_error(dir, format!("tokenizer.json: {err}")))?;
        let config = read_json(dir, "tokenizer_config.json")?;
        let generation = read_json(dir, "generation_config.json")?;
        let model_config = read_json(dir, "config.json")?;
        let bos_token = config.get("bos_token").and_then(token_text);
        let eos_token = config.get("eos_token").and_then(token_text);

        let mut eos_ids = BTreeSet::new();
        for source in [&generation, &model_config] {
            match source.get("eos_token_id") {
                Some(Value::Number(n)) => eos_ids.extend(n.as_u64().and_then(id_of)),
                Some(Value::Array(list)) => {
                    eos_ids.extend(list.iter().filter_map(Value::as_u64).filter_map(id_of))
                }
                _ => {}
            }
        }
        if let Some(id) = eos_token.as_deref().and_then(|t| inner.token_to_id(t)) {
            eos_ids.insert(id);
        }
        let chat_template = match std::fs::read_to_string(dir.join("chat_template.jinja")) {
            Ok(text) => Some(text),
            Err(_) => template_of(&config),
        };
        let model_max_length = config
            .get("model_max_length")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok());
        Ok(Tokenizer {
            inner,
            bos_token,
            eos_token,
            eos_ids: eos_ids.into_iter().collect(),
            chat_template,
            model_max_length,
        })
    }

    /// The ids of `text`; `add_special_tokens` lets the tokenizer's post-processor add what it
    /// adds (a BOS, for some models). Special tokens written in the text (such as `<|end|>`)
    /// become their ids.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|err| Error::invalid_input(format!("cannot tokenize the prompt: {err}")))
    }

    /// The text of `ids`, leaving out special tokens when `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|err| Error::internal(format!("cannot decode token ids: {err}")))
    }

    /// How many ids the tokenizer knows, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token, such as `"<|end|>"`.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The ids that end a generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `id` ends a generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }

    /// `tokenizer_config.json`'s `bos_token`, as text.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// `tokenizer_config.json`'s `eos_token`, as text.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The Jinja chat template's source, if the folder has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// `tokenizer_config.json`'s `model_max_length`, if it names one.
    pub fn model_max_length(&self) -> Option<usize> {
        self.model_max_length
    }
}

/// Turns generated ids into text as they come, emitting only whole characters.
///
/// A byte-level tokenizer can split one character over several tokens (an emoji is often four
/// byte tokens); decoding each token alone would give replacement characters. This keeps the
/// ids since the last emitted piece and emits the new text only once it no longer ends in an
/// incomplete character (text-generation-inference's method, which also works for tokenizers
/// whose decoders join tokens with spaces). Special tokens are skipped.
///
/// # Example
/// ```no_run
/// use tinyserve::model::{Detokenizer, Tokenizer};
/// let tokenizer = Tokenizer::from_dir("models/tinychat".as_ref())?;
/// let mut detokenizer = Detokenizer::new();
/// let mut text = String::new();
/// for id in tokenizer.encode("naïve 😀", false)? {
///     text += &detokenizer.push(&tokenizer, id)?;
/// }
/// text += &detokenizer.finish(&tokenizer)?;
/// assert_eq!(text, "naïve 😀");
/// # Ok::<(), tinyserve::Error>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Detokenizer {
    /// Ids from the start of the text already emitted that the next piece is decoded after
    /// (the decoder may need one token of context), then the ids not yet emitted.
    ids: Vec<u32>,
    /// `ids[..read]` have been emitted.
    read: usize,
}

impl Detokenizer {
    /// A detokenizer with nothing pushed.
    pub fn new() -> Detokenizer {
        Detokenizer::default()
    }

    /// Adds one generated id; returns the text it completes, possibly empty.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[..self.read], true)?;
        let after = tokenizer.decode(&self.ids, true)?;
        if after.len() <= before.len() || after.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let piece = match after.strip_prefix(before.as_str()) {
            Some(piece) => piece.to_string(),
            None => after.chars().skip(before.chars().count()).collect(),
        };
        // Keep only the last emitted id as context for the next piece.
        let keep_from = self.ids.len() - 1;
        self.ids.drain(..keep_from);
        self.read = self.ids.len();
        Ok(piece)
    }

    /// The text still held back (an incomplete character at the end, decoded with a
    /// replacement character), once generation has ended.
    pub fn finish(self, tokenizer: &Tokenizer) -> Result<String> {
        let before = tokenizer.decode(&self.ids[..self.read], true)?;
        let after = tokenizer.decode(&self.ids, true)?;
        Ok(match after.strip_prefix(before.as_str()) {
            Some(rest) => rest.to_string(),
            None => after.chars().skip(before.chars().count()).collect(),
        })
    }
}

fn load_error(dir: &Path, reason: String) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("cannot load model folder {}: {reason}", dir.display()),
    )
}

/// The JSON object in `dir/name`, or an empty object when the file does not exist.
pub(crate) fn read_json(dir: &Path, name: &str) -> Result<Value> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|err| load_error(dir, format!("{name} is not valid JSON: {err}"))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            Ok(Value::Object(Default::default()))
        }
        Err(err) => Err(load_error(dir, format!("cannot read {name}: {err}"))),
    }
}

fn id_of(n: u64) -> Option<u32> {
    u32::try_from(n).ok()
}

/// A special token in `tokenizer_config.json`: a string, or an `AddedToken` object.
fn token_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Object(object) => object.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `chat_template`: a string, or a list of named templates (then the `default` one).
fn template_of(config: &Value) -> Option<String> {
    match config.get("chat_template")? {
        Value::String(text) => Some(text.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tinychat() -> Tokenizer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tinychat");
        Tokenizer::from_dir(&dir).unwrap()
    }

    #[test]
    fn reads_the_special_tokens_and_eos_ids_from_the_configs() {
        let tokenizer = tinychat();
        assert_eq!(tokenizer.vocab_size(), 1024);
        assert_eq!(tokenizer.bos_token(), Some("<|begin|>"));
        assert_eq!(tokenizer.eos_token(), Some("<|end|>"));
        assert_eq!(tokenizer.eos_ids(), &[1]);
        assert!(tokenizer.is_eos(1) && !tokenizer.is_eos(0));
        assert_eq!(tokenizer.model_max_length(), Some(1024));
        assert!(tokenizer
            .chat_template()
            .unwrap()
            .contains("add_generation_prompt"));
    }

    #[test]
    fn encodes_special_tokens_in_the_text_and_round_trips() {
        let tokenizer = tinychat();
        let ids = tokenizer
            .encode("<|user|>\nWhat is a class?<|end|>", false)
            .unwrap();
        assert_eq!(ids.first(), Some(&4));
        assert_eq!(ids.last(), Some(&1));
        assert_eq!(tokenizer.decode(&ids, true).unwrap(), "\nWhat is a class?");
        assert_eq!(
            tokenizer.decode(&ids, false).unwrap(),
            "<|user|>\nWhat is a class?<|end|>"
        );
    }

    #[test]
    fn the_detokenizer_emits_whole_characters_only() {
        let tokenizer = tinychat();
        let text = "naïve → 😀 日本 ok";
        let ids = tokenizer.encode(text, false).unwrap();
        // The emoji alone is several byte tokens: some pushes must hold text back.
        assert!(tokenizer.encode("😀", false).unwrap().len() > 1);
        let mut detokenizer = Detokenizer::new();
        let mut pieces = Vec::new();
        for &id in &ids {
            pieces.push(detokenizer.push(&tokenizer, id).unwrap());
        }
        pieces.push(detokenizer.finish(&tokenizer).unwrap());
        assert!(pieces.iter().any(String::is_empty), "{pieces:?}");
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn the_detokenizer_skips_special_tokens_and_flushes_a_broken_character() {
        let tokenizer = tinychat();
        let emoji = tokenizer.encode("😀", false).unwrap();
        let mut detokenizer = Detokenizer::new();
        let mut text = detokenizer.push(&tokenizer, 1).unwrap();
        text += &detokenizer.push(&tokenizer, emoji[0]).unwrap();
        assert_eq!(text, "");
        assert_eq!(detokenizer.finish(&tokenizer).unwrap(), "\u{FFFD}");
    }

    #[test]
    fn special_tokens_may_be_added_token_objects_and_templates_lists() {
        let config = json!({
            "eos_token": {"content": "</s>", "special": true},
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]
        });
        assert_eq!(token_text(&config["eos_token"]).as_deref(), Some("</s>"));
        assert_eq!(template_of(&config).as_deref(), Some("D"));
        assert_eq!(template_of(&json!({})), None);
    }

    #[test]
    fn a_folder_without_tokenizer_json_fails_naming_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let err = Tokenizer::from_dir(&dir).unwrap_err();
        assert!(err.message().contains("missing tokenizer.json"), "{err}");
    }
}
