//! `input` (OpenAI) or `inputs` (text-embeddings-inference): a string, a list of strings, a
//! list of token ids, or a list of lists of token ids.
//!
//! Read straight into its type, without serde's untagged buffering (which keeps every value of
//! the list as a generic `Content` of 32 bytes or more: a 10 MiB body of token ids would take
//! about 200 MB before it was checked). The first item decides the list's kind; the limits
//! ([`MAX_INPUTS`], [`MAX_INPUT_CHARS`] token ids) are checked while reading.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::{MAX_INPUTS, MAX_INPUT_CHARS};

/// The inputs of one request.
#[derive(Debug, PartialEq)]
pub(super) enum Inputs {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<u32>),
    IdLists(Vec<Vec<u32>>),
}

impl Inputs {
    /// How many inputs there are.
    pub(super) fn len(&self) -> usize {
        match self {
            Inputs::Text(_) | Inputs::Ids(_) => 1,
            Inputs::Texts(list) => list.len(),
            Inputs::IdLists(list) => list.len(),
        }
    }
}

/// The first item of a list, which decides what the others must be.
enum First {
    Text(String),
    Id(u32),
    Ids(Vec<u32>),
}

impl<'de> Deserialize<'de> for First {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<First, D::Error> {
        struct FirstVisitor;
        impl<'de> Visitor<'de> for FirstVisitor {
            type Value = First;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a token id or a list of token ids")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<First, E> {
                Ok(First::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<First, E> {
                Ok(First::Text(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<First, E> {
                token_id(v).map(First::Id)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<First, A::Error> {
                IdsVisitor.visit_seq(seq).map(First::Ids)
            }
        }
        d.deserialize_any(FirstVisitor)
    }
}

fn token_id<E: de::Error>(v: u64) -> Result<u32, E> {
    u32::try_from(v).map_err(|_| E::custom(format!("token id {v} is too large")))
}

/// A list of token ids, at most [`MAX_INPUT_CHARS`].
struct Ids(Vec<u32>);

struct IdsVisitor;

impl<'de> Visitor<'de> for IdsVisitor {
    type Value = Vec<u32>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of token ids")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u32>, A::Error> {
        let mut ids = Vec::new();
        while let Some(id) = seq.next_element::<u32>()? {
            if ids.len() == MAX_INPUT_CHARS {
                return Err(de::Error::custom(format!(
                    "more than {MAX_INPUT_CHARS} token ids in one input, over the limit of \
                     {MAX_INPUT_CHARS} per input"
                )));
            }
            ids.push(id);
        }
        Ok(ids)
    }
}

impl<'de> Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ids, D::Error> {
        d.deserialize_seq(IdsVisitor).map(Ids)
    }
}

impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Inputs, D::Error> {
        d.deserialize_any(InputsVisitor)
    }
}

struct InputsVisitor;

impl InputsVisitor {
    /// The rest of a list whose first item was `first`, each item of `first`'s kind.
    fn rest<'de, A: SeqAccess<'de>, T: Deserialize<'de>>(
        mut seq: A,
        first: T,
    ) -> Result<Vec<T>, A::Error> {
        let mut items = vec![first];
        while let Some(item) = seq.next_element::<T>()? {
            if items.len() == MAX_INPUTS {
                return Err(de::Error::custom(format!(
                    "more than {MAX_INPUTS} inputs in one request, over the limit of \
                     {MAX_INPUTS}"
                )));
            }
            items.push(item);
        }
        Ok(items)
    }
}

impl<'de> Visitor<'de> for InputsVisitor {
    type Value = Inputs;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, a list of strings, a list of token ids or a list of such lists")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Inputs, E> {
        Ok(Inputs::Text(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Inputs, E> {
        Ok(Inputs::Text(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Inputs, A::Error> {
        Ok(match seq.next_element::<First>()? {
            None => Inputs::Texts(Vec::new()),
            Some(First::Text(text)) => Inputs::Texts(InputsVisitor::rest(seq, text)?),
            Some(First::Ids(ids)) => {
                let lists = InputsVisitor::rest(seq, Ids(ids))?;
                Inputs::IdLists(lists.into_iter().map(|Ids(ids)| ids).collect())
            }
            Some(First::Id(id)) => {
                let mut ids = IdsVisitor.visit_seq(seq)?;
                ids.insert(0, id);
                if ids.len() > MAX_INPUT_CHARS {
                    return Err(de::Error::custom(format!(
                        "more than {MAX_INPUT_CHARS} token ids in one input, over the limit \
                         of {MAX_INPUT_CHARS} per input"
                    )));
                }
                Inputs::Ids(ids)
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Inputs, String> {
        serde_json::from_str(json).map_err(|err| err.to_string())
    }

    #[test]
    fn each_shape_is_read_by_its_first_item() {
        assert_eq!(parse(r#""a""#), Ok(Inputs::Text("a".into())));
        assert_eq!(
            parse(r#"["a", "b"]"#),
            Ok(Inputs::Texts(vec!["a".into(), "b".into()]))
        );
        assert_eq!(parse("[2, 7, 3]"), Ok(Inputs::Ids(vec![2, 7, 3])));
        assert_eq!(
            parse("[[2, 7], [3]]"),
            Ok(Inputs::IdLists(vec![vec![2, 7], vec![3]]))
        );
        assert_eq!(parse("[]"), Ok(Inputs::Texts(Vec::new())));
        assert_eq!(parse("[[]]").unwrap().len(), 1);
    }

    #[test]
    fn mixed_lists_and_other_values_are_refused() {
        for json in [
            r#"["a", 1]"#,
            r#"[1, "a"]"#,
            r#"[[1], "a"]"#,
            "[-1]",
            "3",
            "{}",
            "[1.5]",
        ] {
            assert!(parse(json).is_err(), "{json}");
        }
        assert!(parse("[4294967296]").unwrap_err().contains("too large"));
    }

    #[test]
    fn the_limits_are_checked_while_reading() {
        let many = format!("[{}]", vec!["\"a\""; MAX_INPUTS + 1].join(","));
        let err = parse(&many).unwrap_err();
        assert!(err.contains("over the limit of 2048"), "{err}");
        let exactly = format!("[{}]", vec!["\"a\""; MAX_INPUTS].join(","));
        assert_eq!(parse(&exactly).unwrap().len(), MAX_INPUTS);
        let long = format!("[{}]", vec!["1"; MAX_INPUT_CHARS + 1].join(","));
        assert!(parse(&long).unwrap_err().contains("token ids in one input"));
        let long_list = format!("[[{}]]", vec!["1"; MAX_INPUT_CHARS + 1].join(","));
        assert!(parse(&long_list)
            .unwrap_err()
            .contains("token ids in one input"));
    }
}
