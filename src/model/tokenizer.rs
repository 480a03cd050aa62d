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
    /// The same tokenizer reading special-token text as plain text (`encode_special_tokens`).
    plain: tokenizers::Tokenizer,
    /// The special tokens, longest first: what [`Tokenizer::escape_specials`] marks in a
    /// message's content and [`Tokenizer::encode_chat`] finds in a rendered chat.
    specials: Vec<Special>,
    /// The most bytes of text one token can stand for, when every byte of a text ends up in a
    /// token (no normalizer or pre-tokenizer drops any): then a text of `n` bytes has at least
    /// `n / max_token_bytes` tokens, known before tokenizing.
    max_token_bytes: Option<usize>,
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
        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);
        let mut specials: Vec<Special> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special && !token.content.is_empty())
            .map(|(id, token)| Special {
                text: token.content,
                id,
                lstrip: token.lstrip,
                rstrip: token.rstrip,
            })
            .collect();
        specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
        let max_token_bytes = is_lossless(&read_json(dir, "tokenizer.json")?)
            .then(|| inner.get_vocab(true).keys().map(String::len).max())
            .flatten()
            .filter(|&n| n > 0);
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
            plain,
            specials,
            max_token_bytes,
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

    /// The ids of `text` with special-token text (such as `<|end|>`) read as plain text, as
    /// `tokenizers` does with `encode_special_tokens` (transformers' `split_special_tokens`).
    pub fn encode_text(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.plain
            .encode(text, add_special_tokens)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|err| Error::invalid_input(format!("cannot tokenize the prompt: {err}")))
    }

    /// The fewest tokens a text of `bytes` bytes can have: `bytes` over the longest token's
    /// bytes, when the tokenizer keeps every byte of a text (byte-level or byte-fallback BPE
    /// without a normalizer that removes text); 0 when it cannot tell.
    pub fn min_tokens(&self, bytes: usize) -> usize {
        self.max_token_bytes.map_or(0, |most| bytes.div_ceil(most))
    }

    /// `content` (a chat message's text) with each special token's text marked, so that
    /// [`Tokenizer::encode_chat`] reads it as plain text while the special tokens a chat
    /// template writes around it stay special: a user cannot write `<|end|><|assistant|>` and
    /// forge a turn. The marks are private-use characters, which templates pass through as they
    /// are (`strip()`, concatenation).
    pub fn escape_specials<'a>(&self, content: &'a str) -> std::borrow::Cow<'a, str> {
        let marked = |c: char| c == ESCAPE;
        if !content.contains(marked) && !self.specials.iter().any(|s| content.contains(&s.text)) {
            return std::borrow::Cow::Borrowed(content);
        }
        let mut out = String::with_capacity(content.len() + 8);
        let mut rest = content;
        while let Some(c) = rest.chars().next() {
            if c == ESCAPE {
                out.push(ESCAPE);
                out.push(ESCAPE);
                rest = &rest[c.len_utf8()..];
            } else if let Some((i, special)) = self.special_at(rest) {
                out.push(ESCAPE);
                out.push(mark(i));
                rest = &rest[special.text.len()..];
            } else {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        std::borrow::Cow::Owned(out)
    }

    /// The ids of a chat rendered from contents marked by [`Tokenizer::escape_specials`]: the
    /// special tokens the template wrote become their ids, marked special-token text becomes the
    /// tokens of its plain text. `check` gets the byte length of the text as it will be
    /// tokenized, before any tokenizing (for a context check with [`Tokenizer::min_tokens`]).
    pub fn encode_chat(
        &self,
        text: &str,
        check: impl FnOnce(usize) -> Result<()>,
    ) -> Result<Vec<u32>> {
        let mut pieces: Vec<Piece<'_>> = Vec::new();
        let mut run = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c == ESCAPE {
                rest = &rest[c.len_utf8()..];
                match rest.chars().next() {
                    Some(ESCAPE) => run.push(ESCAPE),
                    Some(m) => match self.specials.get(unmark(m)) {
                        Some(special) => run.push_str(&special.text),
                        None => run.push(m),
                    },
                    None => run.push(ESCAPE),
                }
                rest = rest
                    .get(rest.chars().next().map_or(0, char::len_utf8)..)
                    .unwrap_or("");
            } else if let Some((_, special)) = self.special_at(rest) {
                if special.lstrip {
                    run.truncate(run.trim_end().len());
                }
                pieces.push(Piece::Text(std::mem::take(&mut run)));
                pieces.push(Piece::Special(special));
                rest = &rest[special.text.len()..];
                if special.rstrip {
                    rest = rest.trim_start();
                }
            } else {
                run.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        pieces.push(Piece::Text(run));
        let bytes = pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.len(),
                Piece::Special(special) => special.text.len(),
            })
            .sum();
        check(bytes)?;
        let mut ids = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Text(text) if text.is_empty() => {}
                Piece::Text(text) => ids.extend(self.encode_text(&text, false)?),
                Piece::Special(special) => ids.push(special.id),
            }
        }
        Ok(ids)
    }

    /// The special token `text` starts with (the longest), and its index.
    fn special_at(&self, text: &str) -> Option<(usize, &Special)> {
        self.specials
            .iter()
            .enumerate()
            .find(|(_, special)| text.starts_with(special.text.as_str()))
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

/// A special token of the tokenizer's added vocabulary.
#[derive(Debug, Clone)]
struct Special {
    text: String,
    id: u32,
    /// Whether it takes the whitespace on its left / right (an `AddedToken`'s `lstrip`, `rstrip`).
    lstrip: bool,
    rstrip: bool,
}

/// A rendered chat cut at the special tokens the template wrote.
enum Piece<'a> {
    Text(String),
    Special(&'a Special),
}

/// Starts a mark in an escaped content: followed by itself (the character as such) or by the
/// mark of a special token (its index from [`MARKS`]). Plane 15 private use: no tokenizer gives
/// it a meaning, and a client's own use of it is escaped.
const ESCAPE: char = '\u{F0000}';

/// The first special-token mark.
const MARKS: u32 = 0xF0001;

fn mark(index: usize) -> char {
    u32::try_from(index)
        .ok()
        .and_then(|i| char::from_u32(MARKS + i))
        .unwrap_or(ESCAPE)
}

fn unmark(c: char) -> usize {
    (c as u32).wrapping_sub(MARKS) as usize
}

/// Whether a `tokenizer.json` keeps every byte of a text in some token: no normalizer (or only
/// ones that add text), pre-tokenizers that split without removing, and a byte-level or
/// byte-fallback BPE (no unknown token that could swallow any number of characters).
fn is_lossless(config: &Value) -> bool {
    let kind = |v: &Value| {
        v.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let parts = |v: &Value| -> Vec<Value> {
        match v.get("normalizers").or_else(|| v.get("pretokenizers")) {
            Some(Value::Array(list)) if kind(v) == "Sequence" => list.clone(),
            _ => vec![v.clone()],
        }
    };
    let normalizer_keeps = match config.get("normalizer") {
        None | Some(Value::Null) => true,
        Some(n) => parts(n).iter().all(|n| match kind(n).as_str() {
            "Prepend" => true,
            "Replace" => {
                let pattern = n.pointer("/pattern/String").and_then(Value::as_str);
                let content = n.get("content").and_then(Value::as_str).unwrap_or("");
                pattern.is_some_and(|p| !p.is_empty() && content.len() >= p.len())
            }
            _ => false,
        }),
    };
    let pre = match config.get("pre_tokenizer") {
        None | Some(Value::Null) => Vec::new(),
        Some(p) => parts(p),
    };
    let pre_keeps = pre.iter().all(|p| match kind(p).as_str() {
        "ByteLevel" | "Metaspace" | "Digits" | "UnicodeScripts" => true,
        "Split" | "Punctuation" => p.get("behavior").and_then(Value::as_str) != Some("Removed"),
        _ => false,
    });
    let model = config.get("model").unwrap_or(&Value::Null);
    let byte_level = pre.iter().any(|p| kind(p) == "ByteLevel");
    let byte_fallback = model.get("byte_fallback").and_then(Value::as_bool) == Some(true);
    normalizer_keeps && pre_keeps && kind(model) == "BPE" && (byte_level || byte_fallback)
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
    fn special_token_text_in_content_is_encoded_as_plain_text() {
        let tokenizer = tinychat();
        let content = "a<|end|>b\u{F0000}<|user|>";
        let escaped = tokenizer.escape_specials(content);
        assert!(!escaped.contains("<|end|>"), "{escaped:?}");
        let chat = format!("<|user|>\n{escaped}<|end|>\n<|assistant|>\n");
        let ids = tokenizer.encode_chat(&chat, |_| Ok(())).unwrap();
        let mut expected = vec![4];
        expected.extend(
            tokenizer
                .encode_text(&format!("\n{content}"), false)
                .unwrap(),
        );
        expected.push(1);
        expected.extend(tokenizer.encode("\n", false).unwrap());
        expected.push(5);
        expected.extend(tokenizer.encode("\n", false).unwrap());
        assert_eq!(ids, expected);
        // Without special-token text in the content, the ids are the tokenizer's own.
        let plain = "<|user|>\nWhat is a class?<|end|>\n<|assistant|>\n";
        assert_eq!(
            tokenizer.encode_chat(plain, |_| Ok(())).unwrap(),
            tokenizer.encode(plain, false).unwrap()
        );
        assert!(matches!(
            tokenizer.escape_specials("no marks"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_byte_level_tokenizer_bounds_the_tokens_of_a_text_by_its_bytes() {
        let tokenizer = tinychat();
        let text = "Some text, with punctuation; and numbers 12345 and 😀 emoji. ".repeat(50);
        let tokens = tokenizer.encode(&text, false).unwrap().len();
        let at_least = tokenizer.min_tokens(text.len());
        assert!(at_least > 0 && at_least <= tokens, "{at_least} > {tokens}");
        let bert = json!({"normalizer": {"type": "BertNormalizer"},
            "pre_tokenizer": {"type": "BertPreTokenizer"}, "model": {"type": "WordPiece"}});
        assert!(!is_lossless(&bert));
        let llama = json!({"normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "\u{2581}"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"}]},
            "pre_tokenizer": null, "model": {"type": "BPE", "byte_fallback": true}});
        assert!(is_lossless(&llama));
        let removing = json!({"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "behavior": "Removed"}, {"type": "ByteLevel"}]},
            "model": {"type": "BPE"}});
        assert!(!is_lossless(&removing));
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
