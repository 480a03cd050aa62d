//! Tensors as JSON text, without a `serde_json::Value` tree in between.
//!
//! A `Value` costs 72 bytes per number (and an allocation per array) where the text spent two:
//! a 10 MB body of `[[0,0,0,0],...]` took 1.2 GB to decode. [`decode`] reads the nested arrays
//! straight from the deserializer into the typed elements (at most 8 bytes per element, and
//! every element costs at least 2 bytes of text), checking nesting, raggedness and each
//! element on the way. [`write`] writes elements straight into the answer's bytes and stops as
//! soon as they pass the answer's byte limit.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::element::{elements, truncate, Element, Reject, Scalar};

/// The deepest JSON nesting (and so the highest inferred rank) a tensor may have.
pub(crate) const MAX_DEPTH: usize = 32;

/// Elements and shape read from nested arrays.
pub(super) struct Decoded<T> {
    pub(super) shape: Vec<usize>,
    pub(super) elements: Vec<T>,
}

/// Reads nested arrays of `T` (or one scalar, rank 0) from `deserializer`. The shape is that
/// of the first element at each level; every other array must match it. The message of an
/// `Err` is the reason, without the input's name.
pub(super) fn decode<'de, T: Element, D: de::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Decoded<T>, String> {
    let mut state = State {
        elements: Vec::new(),
        dims: Vec::new(),
        rank: None,
        path: Vec::new(),
        failure: None,
    };
    let outcome = Level {
        state: &mut state,
        depth: 0,
    }
    .deserialize(deserializer);
    if let Some(failure) = state.failure {
        return Err(failure);
    }
    outcome.map_err(|err| err.to_string())?;
    let rank = state.rank.unwrap_or(0);
    let shape = state
        .dims
        .iter()
        .take(rank)
        .map(|d| d.unwrap_or(0))
        .collect();
    Ok(Decoded {
        shape,
        elements: state.elements,
    })
}

struct State<T> {
    elements: Vec<T>,
    /// The length of each level, fixed by the first array to close at that level (the one on
    /// the first-element chain: every later array of that level comes after it).
    dims: Vec<Option<usize>>,
    /// The level of the elements, fixed by the first scalar or the first empty array.
    rank: Option<usize>,
    /// Indices of the array or element being read.
    path: Vec<usize>,
    /// Why decoding stopped; the deserializer's own error then carries no message.
    failure: Option<String>,
}

impl<T> State<T> {
    fn fail<E: de::Error>(&mut self, message: String) -> E {
        self.failure = Some(message);
        E::custom("invalid tensor")
    }

    fn dim(&self, depth: usize) -> Option<usize> {
        self.dims.get(depth).copied().flatten()
    }

    fn set_dim(&mut self, depth: usize, len: usize) {
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, None);
        }
        self.dims[depth] = Some(len);
    }
}

/// One nesting level: an array of deeper levels, or an element.
struct Level<'s, T> {
    state: &'s mut State<T>,
    depth: usize,
}

impl<'de, T: Element> DeserializeSeed<'de> for Level<'_, T> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<T: Element> Level<'_, T> {
    fn scalar<E: de::Error>(self, scalar: Scalar<'_>) -> Result<(), E> {
        let state = self.state;
        let rank = *state.rank.get_or_insert(self.depth);
        if self.depth < rank {
            let expected = elements(state.dim(self.depth).unwrap_or(0));
            let path = &state.path;
            return Err(state.fail(format!(
                "ragged array at {path:?}: expected {expected}, got a scalar"
            )));
        }
        match T::from_scalar(&scalar) {
            Ok(element) => {
                state.elements.push(element);
                Ok(())
            }
            Err(reject) => {
                let index = state.elements.len();
                let message = format!(
                    "element {index} is {}, {}",
                    describe(&scalar),
                    why::<T>(reject)
                );
                Err(state.fail(message))
            }
        }
    }
}

impl<'de, T: Element> Visitor<'de> for Level<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("nested arrays of numbers")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::I64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Scalar::U64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Scalar::F64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        let quoted = serde_json::to_string(v).unwrap_or_default();
        self.scalar(Scalar::Other(&truncate(&quoted)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar(Scalar::Other("null"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.scalar(Scalar::Other("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (state, depth) = (self.state, self.depth);
        if depth == MAX_DEPTH {
            return Err(state.fail(format!(
                "expected at most {MAX_DEPTH} levels of nesting, got more"
            )));
        }
        if state.rank.is_some_and(|rank| depth >= rank) {
            let got = elements(count_rest(&mut seq)?);
            let path = &state.path;
            return Err(state.fail(format!(
                "ragged array at {path:?}: expected a scalar, got an array of {got}"
            )));
        }
        let expected = state.dim(depth);
        let mut len = 0;
        loop {
            if expected == Some(len) {
                let got = len + count_rest(&mut seq)?;
                if got == len {
                    break;
                }
                let path = &state.path;
                return Err(state.fail(format!(
                    "ragged array at {path:?}: expected {}, got {got}",
                    elements(len)
                )));
            }
            state.path.push(len);
            let next = seq.next_element_seed(Level {
                state: &mut *state,
                depth: depth + 1,
            });
            state.path.pop();
            if next?.is_none() {
                break;
            }
            len += 1;
        }
        match expected {
            None => {
                state.set_dim(depth, len);
                if len == 0 {
                    state.rank.get_or_insert(depth + 1);
                }
                Ok(())
            }
            Some(expected) if expected != len => {
                let path = &state.path;
                Err(state.fail(format!(
                    "ragged array at {path:?}: expected {}, got {len}",
                    elements(expected)
                )))
            }
            Some(_) => Ok(()),
        }
    }
}

/// Skips the rest of an array, counting its items.
fn count_rest<'de, A: SeqAccess<'de>>(seq: &mut A) -> Result<usize, A::Error> {
    let mut n = 0;
    while seq.next_element::<IgnoredAny>()?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// A client's scalar as quoted in a message: numbers as JSON writes them (exponents as `1e300`,
/// not `1e+300`).
fn describe(scalar: &Scalar<'_>) -> String {
    match scalar {
        Scalar::Bool(b) => b.to_string(),
        Scalar::I64(i) => i.to_string(),
        Scalar::U64(u) => u.to_string(),
        Scalar::F64(f) => serde_json::Number::from_f64(*f)
            .map_or_else(|| f.to_string(), |n| n.to_string())
            .replace("e+", "e"),
        Scalar::Other(text) => (*text).to_owned(),
    }
}

/// Why a scalar does not fit `T`.
fn why<T: Element>(reject: Reject) -> String {
    let ty = T::TYPE;
    match reject {
        Reject::NotBool => format!("expected true or false for {ty}"),
        Reject::NotNumber => format!("expected a number for {ty}"),
        Reject::NotInteger => format!("expected an integer for {ty}"),
        Reject::OutOfRange => match T::range() {
            Some((min, max)) => format!("out of range for {ty} ({min} to {max})"),
            None => format!("out of range for {ty}"),
        },
    }
}

/// The answer grew past its byte limit while being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit;

/// Appends `elements` to `out` as JSON: one flat array, or arrays nested by `shape` (a bare
/// value for rank 0). Stops with [`OverLimit`] once `out` is longer than `limit` bytes, so
/// the answer never takes more than the limit plus one element.
pub(super) fn write<T: Element>(
    elements: &[T],
    shape: Option<&[usize]>,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), OverLimit> {
    let mut items = elements.iter();
    match shape {
        None => {
            out.push(b'[');
            for (i, element) in items.enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                element.write_json(out);
                if out.len() > limit {
                    return Err(OverLimit);
                }
            }
            out.push(b']');
        }
        Some(shape) => write_nested(&mut items, shape, out, limit)?,
    }
    if out.len() > limit {
        return Err(OverLimit);
    }
    Ok(())
}

/// Nested arrays of `shape`; missing elements (only in a tensor built inconsistently by hand)
/// are `null`.
fn write_nested<'a, T: Element + 'a>(
    items: &mut impl Iterator<Item = &'a T>,
    shape: &[usize],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), OverLimit> {
    match shape.split_first() {
        None => match items.next() {
            Some(element) => element.write_json(out),
            None => out.extend_from_slice(b"null"),
        },
        Some((&len, rest)) => {
            out.push(b'[');
            for i in 0..len {
                if i > 0 {
                    out.push(b',');
                }
                write_nested(items, rest, out, limit)?;
                if out.len() > limit {
                    return Err(OverLimit);
                }
            }
            out.push(b']');
        }
    }
    Ok(())
}
