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
//! folder's WordPiece model (`tokenizers`' `Model::tokenize`), and the pieces get the special
//! tokens the folder's post-processor gives a probe at start-up (`[CLS] … [SEP]`), cut from
//! the end as the crate's truncation cuts: the same ids, in 13 against 49 µs per text of 39
//! tokens (30 µs with the crate's `Lowercase` normalizer and `Split` pre-tokenizer in its
//! pipeline: tracking offsets is most of the cost). Any other text goes through the folder's
//! pipeline as it is.

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Encoding, Model, ModelWrapper, NormalizedString, Normalizer, Token, Tokenizer};

/// What the ASCII form needs of a BERT tokenizer: its WordPiece model, whether it lowercases,
/// and its added tokens (texts holding one go the whole way, which matches them).
pub(super) struct AsciiForm {
    wordpiece: WordPiece,
    lowercase: bool,
    /// The added tokens' contents as written and normalized, lower-cased (a text holding one
    /// in any case is not taken).
    added: Vec<String>,
    /// The ids the folder's post-processor puts before a text's pieces and after them
    /// (`[CLS]`, `[SEP]`), as it does to a probe ([`special_ids`]).
    before: Vec<u32>,
    after: Vec<u32>,
}

/// The ASCII form of `tokenizer`, when it is BERT's (`BertNormalizer`, `BertPreTokenizer`,
/// a WordPiece model, no whitespace in an added token). It gives the ids `tokenizer` gives for
/// every text it [takes](AsciiForm::ids). `None` for any other tokenizer, which then always
/// runs as it is.
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
    // What a text is searched for: each added token as written, and as the normalizer
    // writes it (a normalized added token is looked for in the normalized text: `Écho`
    // is found in "echo").
    let mut added = Vec::new();
    for token in tokenizer.get_added_tokens_decoder().values() {
        let mut normalized = NormalizedString::from(token.content.as_str());
        bert.normalize(&mut normalized).ok()?;
        added.push(token.content.to_ascii_lowercase());
        added.push(normalized.get().to_ascii_lowercase());
    }
    added.sort_unstable();
    added.dedup();
    // `BertNormalizer` turns tabs and line breaks into spaces before added tokens are
    // looked for; this form does not, so an added token with whitespace would be missed.
    if added
        .iter()
        .any(|token| token.chars().any(char::is_whitespace))
    {
        return None;
    }
    let (before, after) = special_ids(tokenizer)?;
    Some(AsciiForm {
        before,
        after,
        wordpiece: wordpiece.clone(),
        // Of BertNormalizer's steps only lower-casing changes ASCII text without control
        // characters (which `pieces` turns away): Chinese characters and accents are not
        // ASCII, and NFD leaves ASCII as it is.
        lowercase: bert.lowercase,
        added,
    })
}

/// What `tokenizer`'s post-processor puts before and after the pieces of one text: it is
/// given two probe pieces with ids no vocabulary has, and must give them back side by side.
/// `None` when it does anything else (then the tokenizer has no ASCII form).
fn special_ids(tokenizer: &Tokenizer) -> Option<(Vec<u32>, Vec<u32>)> {
    let mut plain = tokenizer.clone();
    plain.with_padding(None);
    plain.with_truncation(None).ok()?;
    let (first, second) = (u32::MAX, u32::MAX - 1);
    let probe = |id| Token::new(id, String::new(), (0, 0));
    let encoding = plain
        .post_process(
            Encoding::from_tokens(vec![probe(first), probe(second)], 0),
            None,
            true,
        )
        .ok()?;
    let ids = encoding.get_ids();
    let at = ids.iter().position(|&id| id == first)?;
    let probes = ids
        .iter()
        .filter(|&&id| id == first || id == second)
        .count();
    (ids.get(at + 1) == Some(&second) && probes == 2)
        .then(|| (ids[..at].to_vec(), ids[at + 2..].to_vec()))
}

impl AsciiForm {
    /// The ids of `text` with the special tokens; with `max_length`, at most that many (the
    /// last pieces cut, as the crate's truncation does). `None` when this form does not take
    /// the text.
    pub(super) fn ids(
        &self,
        text: &str,
        max_length: Option<usize>,
    ) -> Option<tokenizers::Result<Vec<u32>>> {
        let pieces = match self.pieces(text)? {
            Ok(pieces) => pieces,
            Err(err) => return Some(Err(err)),
        };
        let specials = self.before.len() + self.after.len();
        let kept = max_length.map_or(pieces.len(), |max| {
            pieces.len().min(max.saturating_sub(specials))
        });
        let mut ids = Vec::with_capacity(kept + specials);
        ids.extend_from_slice(&self.before);
        ids.extend(pieces[..kept].iter().map(|piece| piece.id));
        ids.extend_from_slice(&self.after);
        Some(Ok(ids))
    }

    /// The word pieces of `text`, before special tokens and truncation; `None` when this
    /// form does not take the text: anything but printable ASCII, spaces, tabs, line breaks
    /// (`BertNormalizer` drops other control characters) and [`TYPOGRAPHIC_PUNCTUATION`], or
    /// a text that holds an added token.
    fn pieces(&self, text: &str) -> Option<tokenizers::Result<Vec<Token>>> {
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
            assert_eq!(
                (form.before.len(), form.after.len()),
                (1, 1),
                "[CLS] and [SEP]"
            );
            let mut cut_at_8 = bert.clone();
            cut_at_8
                .with_truncation(Some(tokenizers::TruncationParams {
                    max_length: 8,
                    ..Default::default()
                }))
                .expect("truncation");
            let mut taken = 0;
            for text in ascii_texts() {
                let lower = text.to_ascii_lowercase();
                let holds_special = ["[pad]", "[unk]", "[cls]", "[sep]", "[mask]"]
                    .iter()
                    .any(|token| lower.contains(token));
                match form.ids(&text, None) {
                    Some(ids) => {
                        taken += 1;
                        let ids = ids.expect("ids");
                        assert_eq!(ids, self::ids(&bert, &text), "{folder}: {text:?}");
                        let cut = form.ids(&text, Some(8)).expect("taken").expect("ids");
                        assert_eq!(cut, self::ids(&cut_at_8, &text), "{folder}: {text:?} cut");
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
            assert!(form.ids(text, None).is_none(), "{text:?}");
        }
        assert!(form.ids("[ mask ]", None).is_some());
    }

    #[test]
    fn added_tokens_are_looked_for_as_the_normalizer_writes_them() {
        let mut bert = load("models/tinyembed");
        bert.add_tokens([tokenizers::AddedToken::from("Écho", false)])
            .expect("add a token");
        let form = configure(&bert).expect("an ASCII form");
        let text = "an echo here";
        assert!(
            form.ids(text, None).is_none(),
            "{text:?} holds the added token"
        );
        let added = bert.token_to_id("Écho").expect("the added token's id");
        assert!(self::ids(&bert, text).contains(&added));

        let mut spaced = load("models/tinyembed");
        spaced
            .add_tokens([tokenizers::AddedToken::from("new line", false)])
            .expect("add a token");
        assert!(configure(&spaced).is_none(), "an added token with a space");
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
            assert!(form.ids(text, None).is_none(), "{text:?}");
        }
    }

    #[test]
    fn a_tokenizer_that_is_not_berts_has_no_ascii_form() {
        // tinychat's tokenizer is byte-level BPE.
        assert!(configure(&load("models/tinychat")).is_none());
    }
}
