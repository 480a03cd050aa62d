//! The elements of a tensor: [`TensorData`] (one vector per [`DataType`], generated from
//! the datatype table) and the [`Element`] trait that reads, checks and writes each Rust element
//! type.

use std::fmt::Debug;

use half::f16;
use ort::value::PrimitiveTensorElementType;
use serde_json::{json, Value};

use super::datatype::{for_each_datatype, with_type, DataType};

macro_rules! define_tensor_data {
    ($($variant:ident $rust:ty, $name:literal, $ort:ident, $size:literal;)*) => {
        /// The elements of a tensor, flat in row-major order, one variant per [`DataType`].
        #[derive(Debug, Clone, PartialEq)]
        pub enum TensorData {
            $(
                #[doc = concat!("`", $name, "` elements.")]
                $variant(Vec<$rust>),
            )*
        }

        impl TensorData {
            /// The element type.
            pub fn datatype(&self) -> DataType {
                match self {
                    $(TensorData::$variant(_) => DataType::$variant,)*
                }
            }
        }

        $(
            impl Stored for $rust {
                const TYPE: DataType = DataType::$variant;
                fn wrap(elements: Vec<Self>) -> TensorData {
                    TensorData::$variant(elements)
                }
                fn unwrap(data: &TensorData) -> Option<&[Self]> {
                    match data {
                        TensorData::$variant(v) => Some(v),
                        _ => None,
                    }
                }
            }
        )*
    };
}

for_each_datatype!(define_tensor_data);

/// Runs `$body` with `$v` bound to the vector inside any [`TensorData`] variant.
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        $crate::model::datatype::for_each_datatype!(with_data @table ($data, $v, $body))
    };
    (@table ($data:expr, $v:ident, $body:expr)
        $($variant:ident $rust:ty, $name:literal, $ort:ident, $size:literal;)*) => {
        match $data {
            $($crate::model::TensorData::$variant($v) => $body,)*
        }
    };
}
pub(crate) use with_data;

/// The Rust element type stored in one [`TensorData`] variant.
pub(crate) trait Stored: Sized {
    /// The datatype of the variant.
    const TYPE: DataType;
    /// The [`TensorData`] variant holding `elements`.
    fn wrap(elements: Vec<Self>) -> TensorData;
    /// The elements, when `data` is this type's variant.
    fn unwrap(data: &TensorData) -> Option<&[Self]>;
}

impl TensorData {
    /// The number of elements.
    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as JSON values, in order.
    pub(super) fn json_elements(&self) -> Vec<Value> {
        with_data!(self, v => v.iter().map(|x| x.to_json()).collect())
    }

    /// The elements in `range`, as data of the same type.
    pub(crate) fn slice(&self, range: std::ops::Range<usize>) -> TensorData {
        with_data!(self, v => Stored::wrap(v[range].to_vec()))
    }

    /// Appends the elements of `other`, when it has the same type (else does nothing).
    pub(crate) fn extend_from(&mut self, other: &TensorData) {
        with_data!(self, v => {
            if let Some(more) = Stored::unwrap(other) {
                v.extend_from_slice(more);
            }
        })
    }
}

/// The JSON Schema of one element of `datatype` (for the generated API documentation).
pub(crate) fn schema(datatype: DataType) -> Value {
    with_type!(datatype, T => T::schema())
}

/// A scalar as the JSON deserializer hands it over.
pub(super) enum Scalar<'a> {
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    /// A string, `null` or an object: never an element, described for the message.
    Other(&'a str),
}

/// `"1 element"`, `"3 elements"`.
pub(super) fn elements(n: usize) -> String {
    if n == 1 {
        "1 element".to_owned()
    } else {
        format!("{n} elements")
    }
}

/// Client text quoted in a message, cut to a readable length.
pub(super) fn truncate(text: &str) -> String {
    const LIMIT: usize = 40;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Why a JSON value does not fit an element type.
pub(super) enum Reject {
    NotBool,
    NotNumber,
    NotInteger,
    OutOfRange,
}

/// A Rust element type of one [`DataType`].
pub(super) trait Element: Stored + PrimitiveTensorElementType + Copy + Debug {
    /// The element for a JSON scalar, or why it does not fit.
    fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject>;
    /// The JSON value for the element.
    fn to_json(self) -> Value;
    /// Appends the element's JSON text (the same text as [`Element::to_json`]'s) to `out`.
    fn write_json(self, out: &mut Vec<u8>);
    /// The JSON Schema of one element: booleans, integers with the type's range, numbers
    /// that stay finite in the type.
    fn schema() -> Value;
    /// The inclusive range, for integer types.
    fn range() -> Option<(String, String)> {
        None
    }
}

/// The exact integer a JSON scalar denotes: integers as they are (full `i64`/`u64` range), and
/// floats only when integral.
fn integral(value: &Scalar<'_>) -> std::result::Result<i128, Reject> {
    match *value {
        Scalar::I64(i) => Ok(i128::from(i)),
        Scalar::U64(u) => Ok(i128::from(u)),
        // `as` saturates beyond i128, which is out of range for every element type anyway.
        Scalar::F64(f) if f.is_finite() && f.fract() == 0.0 => Ok(f as i128),
        _ => Err(Reject::NotInteger),
    }
}

/// Any JSON number as an `f64`.
fn number(value: &Scalar<'_>) -> std::result::Result<f64, Reject> {
    match *value {
        Scalar::I64(i) => Ok(i as f64),
        Scalar::U64(u) => Ok(u as f64),
        Scalar::F64(f) => Ok(f),
        _ => Err(Reject::NotNumber),
    }
}

/// Appends `value` as serde_json writes it.
fn write_serde(out: &mut Vec<u8>, value: impl serde::Serialize) {
    // Writing a number or a bool into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &value);
}

/// The shortest decimal form of a finite `f32` that reads back as the same `f32`, as JSON.
pub(super) fn shortest_f32(x: f32) -> Value {
    shortest_f32_as_f64(x).map_or(Value::Null, Value::from)
}

/// The `f64` of the shortest decimal form of a finite `f32` (Rust's, which breaks ties to
/// even digits): written as JSON, it gives that form. `None` for NaN and infinities.
fn shortest_f32_as_f64(x: f32) -> Option<f64> {
    use std::io::Write;
    if !x.is_finite() {
        return None;
    }
    // Rust writes a finite f32 in at most 48 characters (`-0.000...0001` for the least
    // subnormal), so the text never leaves the stack.
    let mut buffer = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    write!(cursor, "{x}").ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    std::str::from_utf8(&buffer[..len]).ok()?.parse().ok()
}

macro_rules! integer_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject> {
                <$t>::try_from(integral(value)?).map_err(|_| Reject::OutOfRange)
            }
            fn to_json(self) -> Value {
                Value::from(self)
            }
            fn write_json(self, out: &mut Vec<u8>) {
                write_serde(out, self);
            }
            fn schema() -> Value {
                json!({"type": "integer", "minimum": <$t>::MIN, "maximum": <$t>::MAX})
            }
            fn range() -> Option<(String, String)> {
                Some((<$t>::MIN.to_string(), <$t>::MAX.to_string()))
            }
        }
    )*};
}

integer_element!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Element for bool {
    fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject> {
        match *value {
            Scalar::Bool(b) => Ok(b),
            _ => Err(Reject::NotBool),
        }
    }
    fn schema() -> Value {
        json!({"type": "boolean"})
    }
    fn to_json(self) -> Value {
        Value::Bool(self)
    }
    fn write_json(self, out: &mut Vec<u8>) {
        write_serde(out, self);
    }
}

impl Element for f16 {
    fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject> {
        let x = f16::from_f64(number(value)?);
        if x.is_infinite() {
            return Err(Reject::OutOfRange);
        }
        Ok(x)
    }
    fn schema() -> Value {
        json!({"type": "number", "minimum": -65504, "maximum": 65504})
    }
    fn to_json(self) -> Value {
        // Every f16 is an f32, and the shortest f32 text reads back as the same f16.
        shortest_f32(self.to_f32())
    }
    fn write_json(self, out: &mut Vec<u8>) {
        self.to_f32().write_json(out);
    }
}

impl Element for f32 {
    fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject> {
        let x = number(value)? as f32;
        if x.is_infinite() {
            return Err(Reject::OutOfRange);
        }
        Ok(x)
    }
    fn schema() -> Value {
        let max = f64::from(f32::MAX);
        json!({"type": "number", "minimum": -max, "maximum": max})
    }
    fn to_json(self) -> Value {
        shortest_f32(self)
    }
    fn write_json(self, out: &mut Vec<u8>) {
        // The same text as `to_json` (serde_json's own f32 form breaks ties differently).
        match shortest_f32_as_f64(self) {
            Some(x) => write_serde(out, x),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl Element for f64 {
    fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject> {
        let x = number(value)?;
        if !x.is_finite() {
            return Err(Reject::OutOfRange);
        }
        Ok(x)
    }
    fn schema() -> Value {
        json!({"type": "number"})
    }
    fn to_json(self) -> Value {
        Value::from(self)
    }
    fn write_json(self, out: &mut Vec<u8>) {
        write_serde(out, self);
    }
}
