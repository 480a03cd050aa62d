//! [`FastWordPiece`]: BERT's tokenizer for ASCII text, giving the ids Hugging Face's
//! `tokenizers` gives, several times faster.
//!
//! Most embedding models (BERT, MiniLM, BGE, E5, ...) ship a `tokenizer.json` of one shape:
//! `BertNormalizer`, `BertPreTokenizer`, a `WordPiece` model and `[CLS] ... [SEP]` added by a
//! `TemplateProcessing` or `BertProcessing` post-processor. `tokenizers` runs it through its
//! general machinery (a normalized string that tracks every character's offsets, a token
//! struct with its own string per piece, Unicode tables searched per character): for the
//! bundled encoder that was a third of the CPU of an embeddings request. For ASCII text the
//! same steps are simple: lowercase, split on spaces and around punctuation, greedy longest
//! match in the vocabulary. Text this path does not handle exactly (any non-ASCII byte, a
//! control character, an added token such as `[SEP]` written in the text) goes to
//! `tokenizers` instead, and a tokenizer of another shape never takes this path.

use std::collections::HashMap;

use serde_json::Value;

/// A WordPiece tokenizer for ASCII text, read from a `tokenizer.json` of BERT's shape.
#[derive(Debug)]
pub(super) struct FastWordPiece {
    lowercase: bool,
    /// Pieces that start a word.
    starts: HashMap<Box<str>, u32>,
    /// Pieces that continue a word, without their prefix (`##`).
    continues: HashMap<Box<str>, u32>,
    unknown: u32,
    max_word_chars: usize,
    /// The ids the post-processor puts before and after the text.
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    /// The added tokens' contents, lowercased: text holding one goes to `tokenizers`.
    added: Vec<String>,
}

impl FastWordPiece {
    /// The fast path for `tokenizer.json` (parsed), or `None` when it is not of BERT's shape.
    pub(super) fn from_json(json: &Value) -> Option<FastWordPiece> {
        let normalizer = json.get("normalizer")?;
        let bert_normalizer = normalizer.get("type")?.as_str()? == "BertNormalizer"
            && normalizer.get("clean_text")?.as_bool()?;
        let pre_tokenizer = json.get("pre_tokenizer")?.get("type")?.as_str()?;
        let model = json.get("model")?;
        if !bert_normalizer || pre_tokenizer != "BertPreTokenizer" {
            return None;
        }
        if model.get("type")?.as_str()? != "WordPiece" {
            return None;
        }
        let prefix_text = model.get("continuing_subword_prefix")?.as_str()?;
        let mut starts = HashMap::new();
        let mut continues = HashMap::new();
        for (piece, id) in model.get("vocab")?.as_object()? {
            let id = u32::try_from(id.as_u64()?).ok()?;
            starts.insert(piece.as_str().into(), id);
            if let Some(rest) = piece.strip_prefix(prefix_text) {
                continues.insert(rest.into(), id);
            }
        }
        let unknown = *starts.get(model.get("unk_token")?.as_str()?)?;
        let max_word_chars =
            usize::try_from(model.get("max_input_chars_per_word")?.as_u64()?).ok()?;
        let (prefix, suffix) = specials(json.get("post_processor")?)?;
        let added = json
            .get("added_tokens")?
            .as_array()?
            .iter()
            .map(|t| Some(t.get("content")?.as_str()?.to_ascii_lowercase()))
            .collect::<Option<Vec<String>>>()?;
        Some(FastWordPiece {
            lowercase: normalizer.get("lowercase")?.as_bool()?,
            starts,
            continues,
            unknown,
            max_word_chars,
            prefix,
            suffix,
            added,
        })
    }

    /// The ids of `text` with the special tokens, as `tokenizers` gives them; `None` for text
    /// this path does not handle.
    pub(super) fn encode(&self, text: &str) -> Option<Vec<u32>> {
        let handled = text
            .bytes()
            .all(|b| b.is_ascii() && (!b.is_ascii_control() || matches!(b, b'\t' | b'\n' | b'\r')));
        if !handled {
            return None;
        }
        let lowered = text.to_ascii_lowercase();
        if self.added.iter().any(|t| lowered.contains(t.as_str())) {
            return None;
        }
        let text = if self.lowercase { &lowered } else { text };
        let mut ids = self.prefix.clone();
        for word in text.split_ascii_whitespace() {
            // Each punctuation character is a word of its own.
            let mut start = 0;
            for (i, b) in word.bytes().enumerate() {
                if b.is_ascii_punctuation() {
                    self.word(&word[start..i], &mut ids);
                    self.word(&word[i..=i], &mut ids);
                    start = i + 1;
                }
            }
            self.word(&word[start..], &mut ids);
        }
        ids.extend_from_slice(&self.suffix);
        Some(ids)
    }

    /// Cuts ids from [`FastWordPiece::encode`] to `max_length`, the special tokens kept, as
    /// `tokenizers`' truncation does; `false` when they alone are longer.
    pub(super) fn truncate(&self, ids: &mut Vec<u32>, max_length: usize) -> bool {
        let specials = self.prefix.len() + self.suffix.len();
        let Some(keep) = max_length.checked_sub(specials) else {
            return false;
        };
        if ids.len() > max_length {
            ids.truncate(self.prefix.len() + keep);
            ids.extend_from_slice(&self.suffix);
        }
        true
    }

    /// The pieces of one word (greedy longest match first, as WordPiece does), or the unknown
    /// token when a part of it matches no piece or it is too long.
    fn word(&self, word: &str, ids: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if word.len() > self.max_word_chars {
            ids.push(self.unknown);
            return;
        }
        let before = ids.len();
        let mut start = 0;
        while start < word.len() {
            let pieces = if start == 0 {
                &self.starts
            } else {
                &self.continues
            };
            let found = (start + 1..=word.len())
                .rev()
                .find_map(|end| Some((end, *pieces.get(&word[start..end])?)));
            match found {
                Some((end, id)) => {
                    ids.push(id);
                    start = end;
                }
                None => {
                    ids.truncate(before);
                    ids.push(self.unknown);
                    return;
                }
            }
        }
    }
}

/// The ids a post-processor puts before and after a single text: `TemplateProcessing`'s
/// `single` (special tokens around one sequence), `BertProcessing`'s `cls` and `sep`, or none.
fn specials(processor: &Value) -> Option<(Vec<u32>, Vec<u32>)> {
    if processor.is_null() {
        return Some((Vec::new(), Vec::new()));
    }
    let id = |pair: &Value| u32::try_from(pair.get(1)?.as_u64()?).ok();
    match processor.get("type")?.as_str()? {
        "BertProcessing" => Some((
            vec![id(processor.get("cls")?)?],
            vec![id(processor.get("sep")?)?],
        )),
        "TemplateProcessing" => {
            let tokens = processor.get("special_tokens")?;
            let (mut prefix, mut suffix, mut seen) = (Vec::new(), Vec::new(), false);
            for piece in processor.get("single")?.as_array()? {
                if piece.get("Sequence").is_some() {
                    if seen {
                        return None;
                    }
                    seen = true;
                    continue;
                }
                let name = piece.get("SpecialToken")?.get("id")?.as_str()?;
                let ids = tokens.get(name)?.get("ids")?.as_array()?;
                let side = if seen { &mut suffix } else { &mut prefix };
                for id in ids {
                    side.push(u32::try_from(id.as_u64()?).ok()?);
                }
            }
            seen.then_some((prefix, suffix))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tinyembed() -> (FastWordPiece, tokenizers::Tokenizer) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tinyembed/tokenizer.json");
        let text = std::fs::read_to_string(&path).expect("tokenizer.json");
        let json: Value = serde_json::from_str(&text).expect("JSON");
        let fast = FastWordPiece::from_json(&json).expect("BERT's shape");
        let slow = tokenizers::Tokenizer::from_file(&path).expect("tokenizer");
        (fast, slow)
    }

    fn slow_ids(slow: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
        slow.encode_fast(text, true)
            .expect("encode")
            .get_ids()
            .to_vec()
    }

    #[test]
    fn ascii_text_gets_the_ids_tokenizers_gives() {
        let (fast, slow) = tinyembed();
        let cases = [
            "",
            "   ",
            "What is a class?",
            "UPPER and lower, Mixed-Case: x=1; y==2 (z)!",
            "tabs\tand\nnew\r\nlines",
            "a__init__ method's \"quoted\" {braces} [brackets] <angle> ~tilde` back",
            "supercalifragilisticexpialidociousxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "qqqqzzzz xkcd 12345 3.14159 1e-9",
            "trailing space ",
        ];
        for text in cases {
            assert_eq!(fast.encode(text), Some(slow_ids(&slow, text)), "{text:?}");
        }
        // Words of the vocabulary, punctuation and spaces mixed at random.
        let pieces: Vec<&str> = fast
            .starts
            .keys()
            .map(|k| &**k)
            .filter(|k| k.is_ascii())
            .collect();
        let glue = [" ", "", "  ", ".", ", ", "-", "\t", "'", "(", ")"];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..2000 {
            let mut text = String::new();
            for _ in 0..next(12) {
                let piece = pieces[next(pieces.len())].trim_start_matches("##");
                if piece.starts_with('[') {
                    continue;
                }
                text.push_str(piece);
                if next(5) == 0 {
                    text.make_ascii_uppercase();
                }
                text.push_str(glue[next(glue.len())]);
            }
            assert_eq!(fast.encode(&text), Some(slow_ids(&slow, &text)), "{text:?}");
        }
    }

    #[test]
    fn other_text_goes_to_tokenizers() {
        let (fast, _) = tinyembed();
        assert_eq!(fast.encode("café"), None);
        assert_eq!(fast.encode("a\u{0}b"), None);
        assert_eq!(fast.encode("a\u{b}b"), None);
        assert_eq!(fast.encode("a [SEP] b"), None);
        assert_eq!(fast.encode("a [sep] b"), None);
    }

    #[test]
    fn truncation_keeps_the_special_tokens() {
        let (fast, slow) = tinyembed();
        let text = "one two three four five six seven eight";
        let mut ids = fast.encode(text).expect("ascii");
        assert!(fast.truncate(&mut ids, 5));
        let mut truncating = slow.clone();
        truncating
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: 5,
                ..Default::default()
            }))
            .expect("truncation");
        assert_eq!(ids, slow_ids(&truncating, text));
        assert!(!fast.truncate(&mut ids, 1));
    }
}
