//! The ASCII form of BERT's tokenizer: the folder's own WordPiece model and post-processor,
//! with the normalizer and pre-tokenizer done as plain string operations on ASCII text (and
//! the curly quotes and dashes of typeset English).
//!
//! BERT's tokenizer (`BertNormalizer`, `BertPreTokenizer`) rewrites the text five times
//! (control characters, Chinese characters, NFD, accents, lower case) and splits it on
//! whitespace and punctuation, tracking every byte's offset through each step in a
//! `NormalizedString`, and looks every character up in Unicode's punctuation tables. On
//! ASCII text all but two of those steps change nothing: what is left is lower-casing and
//! splitting on whitespace and punctuation, which `str` does in place. The words go to the
//! folder's WordPiece model (`tokenizers`' `Model::tokenize`) and the pieces through the
//! folder's post-processor and truncation (`Tokenizer::post_process`): the same ids, in 13
//! against 49 µs per text of 39 tokens (30 µs with the crate's `Lowercase` normalizer and
//! `Split` pre-tokenizer in its pipeline: tracking offsets is most of the cost). Any other
//! text goes through the folder's pipeline as it is.

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Model, ModelWrapper, Token, Tokenizer};

/// What the ASCII form needs of a BERT tokenizer: its WordPiece model, whether it lowercases,
/// and its added tokens (texts holding one go the whole way, which matches them).
pub(super) struct AsciiForm {
    wordpiece: WordPiece,
    lowercase: bool,
    /// The added tokens' contents, lower-cased (a text holding one in any case is not taken).
    added: Vec<String>,
}

/// The ASCII form of `tokenizer`, when it is BERT's (`BertNormalizer`, `BertPreTokenizer`,
/// a WordPiece model). It gives the ids `tokenizer` gives for every text it
/// [takes](AsciiForm::pieces). `None` for any other tokenizer, which then always runs as it is.
pub(super) fn configure(tokenizer: &Tokenizer) -> Option<AsciiForm> {
    let Some(NormalizerWrapper::BertNormalizer(bert)) = tokenizer.get_normalizer() else {
        return None;
    };
    if !matches!(
        tokenizer.get_pre_tokenizer(),
        Some(PreTokenizerWrapper::BertPreTokenizer(_))
    ) {
        return None;
    }
    let ModelWrapper::WordPiece(wordpiece) = tokenizer.get_model() else {
        return None;
    };
    Some(AsciiForm {
        wordpiece: wordpiece.clone(),
        // Of BertNormalizer's steps only lower-casing changes ASCII text without control
        // characters (which `pieces` turns away): Chinese characters and accents are not
        // ASCII, and NFD leaves ASCII as it is.
        lowercase: bert.lowercase,
        added: tokenizer
            .get_added_tokens_decoder()
            .values()
            .map(|token| token.content.to_ascii_lowercase())
            .collect(),
    })
}

impl AsciiForm {
    /// The word pieces of `text`, before special tokens and truncation (for
    /// `Tokenizer::post_process`); `None` when this form does not take the text: anything but
    /// printable ASCII, spaces, tabs, line breaks (`BertNormalizer` drops other control
    /// characters) and [`TYPOGRAPHIC_PUNCTUATION`], or a text that holds an added token.
    pub(super) fn pieces(&self, text: &str) -> Option<tokenizers::Result<Vec<Token>>> {
        if !takes(text) {
            return None;
        }
        let lower = text.to_ascii_lowercase();
        if self
            .added
            .iter()
            .any(|token| lower.contains(token.as_str()))
        {
            return None;
        }
        Some(self.split_and_tokenize(if self.lowercase { &lower } else { text }))
    }

    /// `BertPreTokenizer` on the text this form takes (split on whitespace, each punctuation
    /// character a word of its own), each word through WordPiece.
    fn split_and_tokenize(&self, text: &str) -> tokenizers::Result<Vec<Token>> {
        let mut pieces = Vec::new();
        let mut word = |word: &str| -> tokenizers::Result<()> {
            pieces.extend(self.wordpiece.tokenize(word)?);
            Ok(())
        };
        for chunk in text.split_ascii_whitespace() {
            let mut start = 0;
            for (i, c) in chunk.char_indices() {
                if c.is_ascii_punctuation() || TYPOGRAPHIC_PUNCTUATION.contains(&c) {
                    if start < i {
                        word(&chunk[start..i])?;
                    }
                    let end = i + c.len_utf8();
                    word(&chunk[i..end])?;
                    start = end;
                }
            }
            if start < chunk.len() {
                word(&chunk[start..])?;
            }
        }
        Ok(pieces)
    }
}

/// The punctuation of typeset English text, which this form takes besides ASCII: curly
/// quotes, dashes and the ellipsis. `BertNormalizer` leaves them as they are (they have no
/// case, no accents and no canonical decomposition; NFD keeps `…` whole) and
/// `BertPreTokenizer` isolates them (Unicode's punctuation categories).
const TYPOGRAPHIC_PUNCTUATION: [char; 7] = ['‘', '’', '“', '”', '–', '—', '…'];

/// Printable ASCII, spaces, tabs, line breaks and [`TYPOGRAPHIC_PUNCTUATION`].
fn takes(text: &str) -> bool {
    text.chars().all(|c| {
        (' '..='~').contains(&c)
            || matches!(c, '\t' | '\n' | '\r')
            || TYPOGRAPHIC_PUNCTUATION.contains(&c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(folder: &str) -> Tokenizer {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
        Tokenizer::from_file(path.join("tokenizer.json")).expect("tokenizer.json")
    }

    fn ids(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
        tokenizer
            .encode_fast(text, true)
            .expect("encode")
            .get_ids()
            .to_vec()
    }

    /// The ids of the ASCII form: its pieces through `tokenizer`'s post-processor, as
    /// `Encoder::tokenize` does; `None` when it does not take `text`.
    fn ascii_ids(form: &AsciiForm, tokenizer: &Tokenizer, text: &str) -> Option<Vec<u32>> {
        let pieces = form.pieces(text)?.expect("word pieces");
        let encoding = tokenizer
            .post_process(tokenizers::Encoding::from_tokens(pieces, 0), None, true)
            .expect("post-process");
        Some(encoding.get_ids().to_vec())
    }

    /// Texts of every printable ASCII character, whitespace and special token in many
    /// combinations: a fixed pseudo-random sequence, plus the awkward cases written out.
    fn ascii_texts() -> Vec<String> {
        let alphabet: Vec<char> = (b' '..=b'~')
            .map(char::from)
            .chain(['\t', '\n', '\r'])
            .chain(TYPOGRAPHIC_PUNCTUATION)
            .collect();
        let words = [
            "[CLS]",
            "[SEP]",
            "[MASK]",
            "[PAD]",
            "[UNK]",
            "Hello",
            "WORLD",
            "don't",
            "x=1;",
            "__init__",
            "e.g.",
            "3.14",
            "a-b_c",
            "(x)",
            "##ing",
            "unaffable",
        ];
        let mut texts: Vec<String> = vec![
            String::new(),
            " ".into(),
            "\t\r\n".into(),
            alphabet.iter().collect(),
            "What is a class?".into(),
            "hello [MASK] world [SEP][CLS]".into(),
            "a".repeat(150),
            "Supercalifragilisticexpialidocious antidisestablishmentarianism".into(),
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..next(24) {
                if next(4) == 0 {
                    text.push_str(words[next(words.len())]);
                } else {
                    text.push(alphabet[next(alphabet.len())]);
                }
                if next(3) == 0 {
                    text.push(' ');
                }
            }
            texts.push(text);
        }
        texts
    }

    #[test]
    fn ascii_texts_get_the_ids_of_the_folders_own_tokenizer() {
        for folder in ["models/tinyembed", "models/tests/encoders/clsraw"] {
            let bert = load(folder);
            let form = configure(&bert).expect("a BERT tokenizer has an ASCII form");
            let mut taken = 0;
            for text in ascii_texts() {
                let lower = text.to_ascii_lowercase();
                let holds_special = ["[pad]", "[unk]", "[cls]", "[sep]", "[mask]"]
                    .iter()
                    .any(|token| lower.contains(token));
                match ascii_ids(&form, &bert, &text) {
                    Some(ids) => {
                        taken += 1;
                        assert_eq!(ids, self::ids(&bert, &text), "{folder}: {text:?}");
                    }
                    // Only texts holding a special token go the whole way.
                    None => assert!(holds_special, "{folder}: {text:?} not taken"),
                }
            }
            assert!(taken > 1000, "{folder}: {taken} taken");
        }
    }

    #[test]
    fn texts_holding_an_added_token_in_any_case_are_not_taken() {
        let bert = load("models/tinyembed");
        let form = configure(&bert).expect("an ASCII form");
        for text in ["hello [MASK] world", "[cls]", "x[SEP]y", "[Pad]"] {
            assert!(form.pieces(text).is_none(), "{text:?}");
        }
        assert!(form.pieces("[ mask ]").is_some());
    }

    #[test]
    fn other_text_is_not_taken() {
        let form = configure(&load("models/tinyembed")).expect("an ASCII form");
        for text in [
            "naïve",
            "日本",
            "a\u{0}b",
            "bell\u{7}",
            "del\u{7f}",
            "😀",
            "ＡＢＣ",
            "form\u{c}feed",
            "a\u{2028}b",
            "«quoted»",
            "dagger†",
        ] {
            assert!(form.pieces(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn a_tokenizer_that_is_not_berts_has_no_ascii_form() {
        // tinychat's tokenizer is byte-level BPE.
        assert!(configure(&load("models/tinychat")).is_none());
    }
}
