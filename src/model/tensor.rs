//! Tensors: parsed from JSON against a model's signature, converted to and from ONNX Runtime
//! values, and written back as JSON.
//!
//! Parsing never coerces silently: a wrong datatype, a shape that does not fit the spec, a
//! ragged array, a fractional or out-of-range integer, a non-boolean for `BOOL` or a float that
//! overflows its type is an [`Error::invalid_input`] whose message names the input and says what
//! was expected and what was received.

use std::fmt::Debug;

use half::f16;
use ort::value::{DynValue, PrimitiveTensorElementType, ValueType};
use serde_json::Value;

pub use super::json::OverLimit;
use super::json::{self, Scalar};
use super::signature::{DataType, TensorSpec};
use crate::{Error, ErrorKind, Result};

/// The deepest JSON nesting (and so the highest inferred rank) [`Tensor::from_json`] accepts.
pub const MAX_DEPTH: usize = 32;

/// The most nested arrays a client-given shape of an empty tensor may describe.
///
/// A non-empty tensor's nested JSON form is bounded by its element count, but an empty one is
/// not: `[1000000000000, 0]` holds no elements yet nests as a trillion empty arrays. Such shapes
/// are rejected so that writing the (possibly echoed) tensor back as JSON stays bounded.
pub const MAX_EMPTY_ARRAYS: usize = 1 << 16;

/// The elements of a tensor, flat in row-major order, one variant per [`DataType`].
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// `BOOL` elements.
    Bool(Vec<bool>),
    /// `UINT8` elements.
    Uint8(Vec<u8>),
    /// `UINT16` elements.
    Uint16(Vec<u16>),
    /// `UINT32` elements.
    Uint32(Vec<u32>),
    /// `UINT64` elements.
    Uint64(Vec<u64>),
    /// `INT8` elements.
    Int8(Vec<i8>),
    /// `INT16` elements.
    Int16(Vec<i16>),
    /// `INT32` elements.
    Int32(Vec<i32>),
    /// `INT64` elements.
    Int64(Vec<i64>),
    /// `FP16` elements.
    Fp16(Vec<f16>),
    /// `FP32` elements.
    Fp32(Vec<f32>),
    /// `FP64` elements.
    Fp64(Vec<f64>),
}

/// Runs `$body` with `$v` bound to the vector inside any [`TensorData`] variant.
macro_rules! with_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
        }
    };
}

/// Runs `$body` with the type alias `$t` set to the Rust element type of a [`DataType`].
macro_rules! with_type {
    ($ty:expr, $t:ident => $body:expr) => {
        match $ty {
            DataType::Bool => {
                type $t = bool;
                $body
            }
            DataType::Uint8 => {
                type $t = u8;
                $body
            }
            DataType::Uint16 => {
                type $t = u16;
                $body
            }
            DataType::Uint32 => {
                type $t = u32;
                $body
            }
            DataType::Uint64 => {
                type $t = u64;
                $body
            }
            DataType::Int8 => {
                type $t = i8;
                $body
            }
            DataType::Int16 => {
                type $t = i16;
                $body
            }
            DataType::Int32 => {
                type $t = i32;
                $body
            }
            DataType::Int64 => {
                type $t = i64;
                $body
            }
            DataType::Fp16 => {
                type $t = f16;
                $body
            }
            DataType::Fp32 => {
                type $t = f32;
                $body
            }
            DataType::Fp64 => {
                type $t = f64;
                $body
            }
        }
    };
}

impl TensorData {
    /// The element type.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        with_data!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as JSON values, in order.
    fn json_elements(&self) -> Vec<Value> {
        with_data!(self, v => v.iter().map(|x| x.to_json()).collect())
    }
}

/// A named tensor: a shape and its elements, flat in row-major order.
///
/// The element count of `data` is the product of `shape` for every tensor this module builds.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The input or output name.
    pub name: String,
    /// The dimensions; empty for a scalar.
    pub shape: Vec<usize>,
    /// The elements, flat in row-major order.
    pub data: TensorData,
}

impl Tensor {
    /// The element type.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements (some dimension is 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Parses one input against its spec.
    ///
    /// - `data` is either nested arrays, whose shape is inferred from the nesting and must be
    ///   rectangular, or, when `shape` is `Some`, flat (or nested, rectangular) data whose
    ///   element count must equal the product of `shape`. A JSON value that is not an array is
    ///   a scalar (rank 0). Nesting deeper than [`MAX_DEPTH`] is rejected.
    /// - `declared` is the client's datatype name (KServe v2); when `Some`, it must equal
    ///   `spec.datatype.as_str()` exactly.
    /// - The given or inferred shape must have the spec's rank and match each static
    ///   dimension; `-1` in the spec accepts any size.
    /// - Each element must fit the spec's type exactly: `BOOL` takes only `true`/`false`;
    ///   integer types take integral numbers in range (`2.0` counts as `2`); float types take
    ///   any number that stays finite in the type.
    ///
    /// Every failure is an [`Error::invalid_input`] naming the input. No memory is allocated
    /// from a client-given shape: the element count of the data is checked against it first.
    ///
    /// # Example
    /// ```
    /// use serde_json::json;
    /// use tinyserve::model::{DataType, Tensor, TensorData, TensorSpec};
    ///
    /// let spec = TensorSpec { name: "x".into(), datatype: DataType::Fp32, shape: vec![-1, 2] };
    /// let t = Tensor::from_json(&spec, &json!([[1, 2], [3, 4.5]]), None, Some("FP32"))?;
    /// assert_eq!(t.shape, vec![2, 2]);
    /// assert_eq!(t.data, TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.5]));
    ///
    /// let flat = Tensor::from_json(&spec, &json!([1, 2, 3, 4]), Some(&[2, 2]), None)?;
    /// assert_eq!(flat.to_nested_json(), json!([[1.0, 2.0], [3.0, 4.0]]));
    ///
    /// let err = Tensor::from_json(&spec, &json!([1, 2, 3]), None, None).unwrap_err();
    /// assert_eq!(err.message(), r#"input "x": expected shape [-1, 2], got [3]"#);
    /// # Ok::<(), tinyserve::Error>(())
    /// ```
    pub fn from_json(
        spec: &TensorSpec,
        data: &Value,
        shape: Option<&[usize]>,
        declared: Option<&str>,
    ) -> Result<Tensor> {
        Tensor::decode(spec, data, shape, declared)
    }

    /// Parses one input from its JSON text, checked exactly like [`Tensor::from_json`], without
    /// building a `serde_json::Value` first: the elements go straight into their typed vector,
    /// so the memory taken is at most 8 bytes per element (at least 2 bytes of text each).
    ///
    /// # Example
    /// ```
    /// use tinyserve::model::{DataType, Tensor, TensorData, TensorSpec};
    ///
    /// let spec = TensorSpec { name: "x".into(), datatype: DataType::Int64, shape: vec![-1, 2] };
    /// let t = Tensor::from_json_text(&spec, "[[1, 2], [3, 4]]", None, None)?;
    /// assert_eq!(t.data, TensorData::Int64(vec![1, 2, 3, 4]));
    /// # Ok::<(), tinyserve::Error>(())
    /// ```
    pub fn from_json_text(
        spec: &TensorSpec,
        text: &str,
        shape: Option<&[usize]>,
        declared: Option<&str>,
    ) -> Result<Tensor> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let tensor = Tensor::decode(spec, &mut deserializer, shape, declared)?;
        deserializer.end().map_err(Error::from_json)?;
        Ok(tensor)
    }

    /// [`Tensor::from_json`] on any JSON deserializer.
    fn decode<'de>(
        spec: &TensorSpec,
        data: impl serde::Deserializer<'de>,
        shape: Option<&[usize]>,
        declared: Option<&str>,
    ) -> Result<Tensor> {
        let name = spec.name.as_str();
        let invalid = |msg: String| Error::invalid_input(format!("input \"{name}\": {msg}"));

        if let Some(declared) = declared {
            if declared != spec.datatype.as_str() {
                return Err(invalid(format!(
                    "expected datatype {}, got {}",
                    spec.datatype,
                    truncate(declared)
                )));
            }
        }

        let decoded = with_type!(spec.datatype, T => {
            json::decode::<T, _>(data).map(|d| (d.shape, T::wrap(d.elements)))
        });
        let (nesting, data) = decoded.map_err(invalid)?;
        let shape = match shape {
            None => nesting,
            Some(shape) => {
                check_given_shape(shape, data.len()).map_err(invalid)?;
                shape.to_vec()
            }
        };

        if !shape_fits(&spec.shape, &shape) {
            return Err(invalid(format!(
                "expected shape {}, got {shape:?}",
                spec.shape_text()
            )));
        }

        Ok(Tensor {
            name: name.to_owned(),
            shape,
            data,
        })
    }

    /// Copies the tensor into an ONNX Runtime value (see [`Tensor::into_ort`] to avoid the copy).
    ///
    /// Fails with an [`ErrorKind::Internal`] error (keeping ONNX Runtime's error as the source)
    /// if ONNX Runtime rejects it, such as when `data` does not fit `shape`.
    pub fn to_ort(&self) -> Result<DynValue> {
        self.clone().into_ort()
    }

    /// Moves the tensor into an ONNX Runtime value without copying the elements.
    ///
    /// Fails like [`Tensor::to_ort`].
    pub fn into_ort(self) -> Result<DynValue> {
        let Tensor { name, shape, data } = self;
        with_data!(data, v => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("tensor \"{name}\": cannot create an ONNX Runtime value"),
                )
                .with_source(e)
            })
    }

    /// Copies an ONNX Runtime value (such as `outputs[name]` from `Session::run`, a
    /// `&DynValue`) into a tensor named `name`.
    ///
    /// Accepts a tensor of any of the twelve [`DataType`]s in CPU-accessible memory; anything
    /// else is an [`ErrorKind::Internal`] error naming the output.
    pub fn from_ort(name: &str, value: &DynValue) -> Result<Tensor> {
        let internal =
            |msg: String| Error::new(ErrorKind::Internal, format!("output \"{name}\": {msg}"));
        let datatype = match value.dtype() {
            ValueType::Tensor { ty, .. } => DataType::from_ort(*ty),
            _ => None,
        }
        .ok_or_else(|| internal(format!("unsupported type {}", value.dtype())))?;

        let (shape, data) = with_type!(datatype, T => {
            let (shape, elements) = value
                .try_extract_tensor::<T>()
                .map_err(|e| internal("cannot read the tensor".into()).with_source(e))?;
            (shape.to_vec(), T::wrap(elements.to_vec()))
        });
        let shape = shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|_| internal(format!("negative dimension in shape {shape:?}")))?;
        Ok(Tensor {
            name: name.to_owned(),
            shape,
            data,
        })
    }

    /// The elements as one flat JSON array in row-major order.
    ///
    /// Integers and booleans are written exactly. `FP32` and `FP16` elements are written in
    /// the shortest decimal form that reads back as the same value (`0.1`, not
    /// `0.10000000149011612`). NaN and infinities, which JSON cannot represent, are `null`.
    pub fn to_flat_json(&self) -> Value {
        Value::Array(self.data.json_elements())
    }

    /// The elements as JSON arrays nested by `shape` (a bare value for rank 0), written like
    /// [`Tensor::to_flat_json`].
    pub fn to_nested_json(&self) -> Value {
        let mut elements = self.data.json_elements().into_iter();
        nest(&mut elements, &self.shape)
    }

    /// Appends the elements to `out` as JSON text, flat or nested by the shape (written like
    /// [`Tensor::to_flat_json`] and [`Tensor::to_nested_json`], without building a `Value`).
    /// Stops with [`OverLimit`] as soon as `out` is longer than `limit` bytes.
    ///
    /// # Example
    /// ```
    /// use tinyserve::model::{Tensor, TensorData};
    ///
    /// let t = Tensor { name: "y".into(), shape: vec![2, 2], data: TensorData::Int8(vec![1, 2, 3, 4]) };
    /// let mut out = Vec::new();
    /// t.write_json(true, &mut out, 100).expect("under the limit");
    /// assert_eq!(out, b"[[1,2],[3,4]]");
    /// assert!(t.write_json(false, &mut Vec::new(), 4).is_err());
    /// ```
    pub fn write_json(
        &self,
        nested: bool,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> std::result::Result<(), OverLimit> {
        let shape = nested.then_some(self.shape.as_slice());
        with_data!(&self.data, v => json::write(v, shape, out, limit))
    }
}

/// Builds nested arrays of `shape` from `elements`; missing elements (only possible when a
/// caller built an inconsistent tensor by hand) become `null`.
fn nest(elements: &mut impl Iterator<Item = Value>, shape: &[usize]) -> Value {
    match shape.split_first() {
        None => elements.next().unwrap_or(Value::Null),
        Some((&len, rest)) => Value::Array((0..len).map(|_| nest(elements, rest)).collect()),
    }
}

/// Checks a client-given shape against the number of elements actually sent, without
/// allocating anything from the shape.
fn check_given_shape(shape: &[usize], count: usize) -> std::result::Result<(), String> {
    let needed = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match needed {
        None => {
            return Err(format!(
                "shape {shape:?} needs more than {} elements, got {count}",
                usize::MAX
            ))
        }
        Some(needed) if needed != count => {
            return Err(format!(
                "shape {shape:?} needs {}, got {count}",
                elements(needed)
            ))
        }
        Some(_) => {}
    }
    if count == 0 {
        check_empty_shape(shape)?;
    }
    Ok(())
}

/// The arrays in the nested JSON form of `shape`: 1 at the top, then one per slot of each
/// outer level (saturating).
pub(super) fn nested_arrays(shape: &[usize]) -> usize {
    let mut arrays = 0usize;
    let mut outer = 1usize;
    for &d in shape {
        arrays = arrays.saturating_add(outer);
        outer = outer.saturating_mul(d);
    }
    arrays
}

/// Rejects the shape of an empty tensor whose nested form would exceed [`MAX_EMPTY_ARRAYS`]
/// arrays: it holds no elements, so nothing else bounds it, and ONNX Runtime and the JSON
/// answer both pay for its outer dimensions.
pub(super) fn check_empty_shape(shape: &[usize]) -> std::result::Result<(), String> {
    let arrays = nested_arrays(shape);
    if arrays > MAX_EMPTY_ARRAYS {
        return Err(format!(
            "shape {shape:?} is too large for an empty tensor: expected at most \
             {MAX_EMPTY_ARRAYS} nested arrays, got {}",
            if arrays == usize::MAX {
                format!("more than {}", usize::MAX - 1)
            } else {
                arrays.to_string()
            }
        ));
    }
    Ok(())
}

/// Whether `shape` has the rank of `spec` and matches each of its static dimensions.
pub(super) fn shape_fits(spec: &[i64], shape: &[usize]) -> bool {
    spec.len() == shape.len()
        && spec
            .iter()
            .zip(shape)
            .all(|(&s, &d)| s < 0 || usize::try_from(s).is_ok_and(|s| s == d))
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
pub(super) trait Element: PrimitiveTensorElementType + Copy + Debug + Sized {
    const TYPE: DataType;
    /// The element for a JSON scalar, or why it does not fit.
    fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject>;
    /// The JSON value for the element.
    fn to_json(self) -> Value;
    /// Appends the element's JSON text (the same text as [`Element::to_json`]'s) to `out`.
    fn write_json(self, out: &mut Vec<u8>);
    /// The inclusive range, for integer types.
    fn range() -> Option<(String, String)> {
        None
    }
    /// The [`TensorData`] variant holding `elements`.
    fn wrap(elements: Vec<Self>) -> TensorData;
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
fn shortest_f32(x: f32) -> Value {
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
    ($($t:ty => $ty:ident, $variant:ident;)*) => {$(
        impl Element for $t {
            const TYPE: DataType = DataType::$ty;
            fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject> {
                <$t>::try_from(integral(value)?).map_err(|_| Reject::OutOfRange)
            }
            fn to_json(self) -> Value {
                Value::from(self)
            }
            fn write_json(self, out: &mut Vec<u8>) {
                write_serde(out, self);
            }
            fn range() -> Option<(String, String)> {
                Some((<$t>::MIN.to_string(), <$t>::MAX.to_string()))
            }
            fn wrap(elements: Vec<Self>) -> TensorData {
                TensorData::$variant(elements)
            }
        }
    )*};
}

integer_element! {
    u8 => Uint8, Uint8;
    u16 => Uint16, Uint16;
    u32 => Uint32, Uint32;
    u64 => Uint64, Uint64;
    i8 => Int8, Int8;
    i16 => Int16, Int16;
    i32 => Int32, Int32;
    i64 => Int64, Int64;
}

impl Element for bool {
    const TYPE: DataType = DataType::Bool;
    fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject> {
        match *value {
            Scalar::Bool(b) => Ok(b),
            _ => Err(Reject::NotBool),
        }
    }
    fn to_json(self) -> Value {
        Value::Bool(self)
    }
    fn write_json(self, out: &mut Vec<u8>) {
        write_serde(out, self);
    }
    fn wrap(elements: Vec<Self>) -> TensorData {
        TensorData::Bool(elements)
    }
}

impl Element for f16 {
    const TYPE: DataType = DataType::Fp16;
    fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject> {
        let x = f16::from_f64(number(value)?);
        if x.is_infinite() {
            return Err(Reject::OutOfRange);
        }
        Ok(x)
    }
    fn to_json(self) -> Value {
        // Every f16 is an f32, and the shortest f32 text reads back as the same f16.
        shortest_f32(self.to_f32())
    }
    fn write_json(self, out: &mut Vec<u8>) {
        self.to_f32().write_json(out);
    }
    fn wrap(elements: Vec<Self>) -> TensorData {
        TensorData::Fp16(elements)
    }
}

impl Element for f32 {
    const TYPE: DataType = DataType::Fp32;
    fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject> {
        let x = number(value)? as f32;
        if x.is_infinite() {
            return Err(Reject::OutOfRange);
        }
        Ok(x)
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
    fn wrap(elements: Vec<Self>) -> TensorData {
        TensorData::Fp32(elements)
    }
}

impl Element for f64 {
    const TYPE: DataType = DataType::Fp64;
    fn from_scalar(value: &Scalar<'_>) -> std::result::Result<Self, Reject> {
        let x = number(value)?;
        if !x.is_finite() {
            return Err(Reject::OutOfRange);
        }
        Ok(x)
    }
    fn to_json(self) -> Value {
        Value::from(self)
    }
    fn write_json(self, out: &mut Vec<u8>) {
        write_serde(out, self);
    }
    fn wrap(elements: Vec<Self>) -> TensorData {
        TensorData::Fp64(elements)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(datatype: DataType, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            datatype,
            shape: shape.to_vec(),
        }
    }

    fn parse(ty: DataType, shape: &[i64], data: Value) -> Result<Tensor> {
        Tensor::from_json(&spec(ty, shape), &data, None, None)
    }

    fn parse_shaped(
        ty: DataType,
        spec_shape: &[i64],
        data: Value,
        shape: &[usize],
    ) -> Result<Tensor> {
        Tensor::from_json(&spec(ty, spec_shape), &data, Some(shape), None)
    }

    #[track_caller]
    fn assert_invalid(result: Result<Tensor>, message: &str) {
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.status(), 400);
        assert_eq!(err.message(), message);
    }

    // ---- datatype ----

    #[test]
    fn declared_datatype_must_match_exactly() {
        let s = spec(DataType::Fp32, &[-1]);
        let data = json!([1.0]);
        assert!(Tensor::from_json(&s, &data, None, Some("FP32")).is_ok());
        assert_invalid(
            Tensor::from_json(&s, &data, None, Some("INT64")),
            r#"input "x": expected datatype FP32, got INT64"#,
        );
        assert_invalid(
            Tensor::from_json(&s, &data, None, Some("fp32")),
            r#"input "x": expected datatype FP32, got fp32"#,
        );
        let long = "X".repeat(100);
        let err = Tensor::from_json(&s, &data, None, Some(&long)).unwrap_err();
        assert!(err
            .message()
            .ends_with(&format!("got {}...", "X".repeat(40))));
    }

    // ---- shape ----

    #[test]
    fn nested_shape_is_inferred() {
        let t = parse(DataType::Int32, &[-1, 3], json!([[1, 2, 3], [4, 5, 6]])).unwrap();
        assert_eq!(t.shape, vec![2, 3]);
        assert_eq!(t.data, TensorData::Int32(vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(t.len(), 6);
        assert!(!t.is_empty());
        assert_eq!(t.datatype(), DataType::Int32);
        assert_eq!(t.name, "x");
    }

    #[test]
    fn scalar_is_rank_zero() {
        let t = parse(DataType::Fp64, &[], json!(2.5)).unwrap();
        assert_eq!(t.shape, Vec::<usize>::new());
        assert_eq!(t.data, TensorData::Fp64(vec![2.5]));
        assert_eq!(t.to_nested_json(), json!(2.5));
        assert_eq!(t.to_flat_json(), json!([2.5]));
        assert_invalid(
            parse(DataType::Fp64, &[-1], json!(2.5)),
            r#"input "x": expected shape [-1], got []"#,
        );
        assert_invalid(
            parse(DataType::Fp64, &[], json!([2.5])),
            r#"input "x": expected shape [], got [1]"#,
        );
        // With a given shape, a scalar is one element.
        let t = parse_shaped(DataType::Fp64, &[1], json!(2.5), &[1]).unwrap();
        assert_eq!(t.shape, vec![1]);
    }

    #[test]
    fn shape_must_fit_spec() {
        assert_invalid(
            parse(DataType::Fp32, &[-1, 4], json!([[1, 2, 3]])),
            r#"input "x": expected shape [-1, 4], got [1, 3]"#,
        );
        assert_invalid(
            parse(DataType::Fp32, &[-1, 4], json!([1, 2, 3, 4])),
            r#"input "x": expected shape [-1, 4], got [4]"#,
        );
        assert_invalid(
            parse_shaped(DataType::Fp32, &[-1, 4], json!([1, 2, 3]), &[1, 3]),
            r#"input "x": expected shape [-1, 4], got [1, 3]"#,
        );
        assert_invalid(
            parse_shaped(DataType::Fp32, &[2, 2], json!([1, 2, 3, 4]), &[1, 2, 2]),
            r#"input "x": expected shape [2, 2], got [1, 2, 2]"#,
        );
        // -1 accepts any size, including 0.
        assert!(parse(DataType::Fp32, &[-1, -1], json!([[1], [2], [3]])).is_ok());
        let empty = parse(DataType::Fp32, &[-1, 4], json!([])).unwrap_err();
        assert_eq!(
            empty.message(),
            r#"input "x": expected shape [-1, 4], got [0]"#
        );
        let t = parse_shaped(DataType::Fp32, &[-1, 4], json!([]), &[0, 4]).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.to_nested_json(), json!([]));
    }

    #[test]
    fn given_shape_takes_flat_or_nested_data() {
        let flat =
            parse_shaped(DataType::Int64, &[2, 3], json!([1, 2, 3, 4, 5, 6]), &[2, 3]).unwrap();
        let nested = parse_shaped(
            DataType::Int64,
            &[2, 3],
            json!([[1, 2, 3], [4, 5, 6]]),
            &[2, 3],
        )
        .unwrap();
        assert_eq!(flat, nested);
        assert_eq!(flat.shape, vec![2, 3]);
        // Nesting need not follow the given shape, only the element count must match.
        let other = parse_shaped(
            DataType::Int64,
            &[2, 3],
            json!([[1, 2], [3, 4], [5, 6]]),
            &[2, 3],
        )
        .unwrap();
        assert_eq!(other, flat);
    }

    #[test]
    fn given_shape_element_count_must_match() {
        assert_invalid(
            parse_shaped(DataType::Fp32, &[-1, 3], json!([1, 2, 3, 4, 5]), &[2, 3]),
            r#"input "x": shape [2, 3] needs 6 elements, got 5"#,
        );
        assert_invalid(
            parse_shaped(DataType::Fp32, &[-1], json!([1, 2]), &[1]),
            r#"input "x": shape [1] needs 1 element, got 2"#,
        );
        assert_invalid(
            parse_shaped(DataType::Fp32, &[], json!([]), &[]),
            r#"input "x": shape [] needs 1 element, got 0"#,
        );
    }

    #[test]
    fn huge_given_shape_is_a_clean_error() {
        assert_invalid(
            parse_shaped(
                DataType::Fp32,
                &[-1],
                json!([1, 2, 3]),
                &[1_000_000_000_000],
            ),
            r#"input "x": shape [1000000000000] needs 1000000000000 elements, got 3"#,
        );
        let max = usize::MAX;
        assert_invalid(
            parse_shaped(DataType::Fp32, &[-1, -1], json!([1, 2, 3]), &[max, max]),
            &format!(r#"input "x": shape [{max}, {max}] needs more than {max} elements, got 3"#),
        );
        // An empty tensor whose nested form would be enormous.
        assert_invalid(
            parse_shaped(
                DataType::Fp32,
                &[-1, -1],
                json!([]),
                &[1_000_000_000_000, 0],
            ),
            r#"input "x": shape [1000000000000, 0] is too large for an empty tensor: expected at most 65536 nested arrays, got 1000000000001"#,
        );
        let t = parse_shaped(DataType::Fp32, &[-1, -1], json!([]), &[3, 0]).unwrap();
        assert_eq!(t.to_nested_json(), json!([[], [], []]));
        let t = parse_shaped(DataType::Fp32, &[-1, -1], json!([]), &[0, max]).unwrap();
        assert_eq!(t.to_nested_json(), json!([]));
    }

    #[test]
    fn ragged_arrays_are_rejected() {
        assert_invalid(
            parse(DataType::Fp32, &[-1, 4], json!([[1, 2, 3, 4], [1, 2, 3]])),
            r#"input "x": ragged array at [1]: expected 4 elements, got 3"#,
        );
        assert_invalid(
            parse(
                DataType::Fp32,
                &[-1, -1, -1],
                json!([[[1, 2], [3, 4]], [[5, 6], [7]]]),
            ),
            r#"input "x": ragged array at [1, 1]: expected 2 elements, got 1"#,
        );
        assert_invalid(
            parse(DataType::Fp32, &[-1, -1], json!([[1, 2], 3])),
            r#"input "x": ragged array at [1]: expected 2 elements, got a scalar"#,
        );
        assert_invalid(
            parse(DataType::Fp32, &[-1], json!([1, [2, 3]])),
            r#"input "x": ragged array at [1]: expected a scalar, got an array of 2 elements"#,
        );
        assert_invalid(
            parse(DataType::Fp32, &[-1, -1], json!([[], [1]])),
            r#"input "x": ragged array at [1]: expected 0 elements, got 1"#,
        );
        // Flat data with a given shape must still hold only scalars.
        assert_invalid(
            parse_shaped(DataType::Fp32, &[-1], json!([1, [2], 3]), &[3]),
            r#"input "x": ragged array at [1]: expected a scalar, got an array of 1 element"#,
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        let rank32 = vec![-1; MAX_DEPTH];
        let t = parse(DataType::Int8, &rank32, deep.clone()).unwrap();
        assert_eq!(t.shape, vec![1; MAX_DEPTH]);
        assert_eq!(t.to_nested_json(), deep);

        let deeper = json!([deep]);
        assert_invalid(
            parse(DataType::Int8, &[-1], deeper),
            r#"input "x": expected at most 32 levels of nesting, got more"#,
        );
    }

    #[test]
    fn empty_arrays_infer_zero_dims() {
        let t = parse(DataType::Uint8, &[-1, -1], json!([[], []])).unwrap();
        assert_eq!(t.shape, vec![2, 0]);
        assert!(t.is_empty());
        assert_eq!(t.to_nested_json(), json!([[], []]));
        assert_eq!(t.to_flat_json(), json!([]));
    }

    // ---- elements ----

    #[test]
    fn integers_reject_fractions_and_accept_integral_floats() {
        assert_invalid(
            parse(DataType::Int32, &[-1], json!([1, 2, 3, 4, 1.5])),
            r#"input "x": element 4 is 1.5, expected an integer for INT32"#,
        );
        let t = parse(DataType::Int32, &[-1], json!([2.0, -3.0, 0.0])).unwrap();
        assert_eq!(t.data, TensorData::Int32(vec![2, -3, 0]));
        assert_invalid(
            parse(DataType::Int64, &[-1], json!(["7"])),
            r#"input "x": element 0 is "7", expected an integer for INT64"#,
        );
        assert_invalid(
            parse(DataType::Uint8, &[-1], json!([null])),
            r#"input "x": element 0 is null, expected an integer for UINT8"#,
        );
        assert_invalid(
            parse(DataType::Int16, &[-1], json!([true])),
            r#"input "x": element 0 is true, expected an integer for INT16"#,
        );
    }

    #[test]
    fn integers_must_be_in_range() {
        assert_invalid(
            parse(DataType::Uint8, &[-1], json!([0, 255, 300])),
            r#"input "x": element 2 is 300, out of range for UINT8 (0 to 255)"#,
        );
        assert_invalid(
            parse(DataType::Uint8, &[-1], json!([-1])),
            r#"input "x": element 0 is -1, out of range for UINT8 (0 to 255)"#,
        );
        assert_invalid(
            parse(DataType::Int8, &[-1], json!([-129])),
            r#"input "x": element 0 is -129, out of range for INT8 (-128 to 127)"#,
        );
        assert_invalid(
            parse(DataType::Int32, &[-1], json!([1e300])),
            r#"input "x": element 0 is 1e300, out of range for INT32 (-2147483648 to 2147483647)"#,
        );
        assert_invalid(
            parse(DataType::Uint16, &[-1], json!([65536.0])),
            r#"input "x": element 0 is 65536.0, out of range for UINT16 (0 to 65535)"#,
        );
        assert_invalid(
            parse(DataType::Int64, &[-1], json!([u64::MAX])),
            r#"input "x": element 0 is 18446744073709551615, out of range for INT64 (-9223372036854775808 to 9223372036854775807)"#,
        );
        assert_invalid(
            parse(DataType::Uint64, &[-1], json!([i64::MIN])),
            r#"input "x": element 0 is -9223372036854775808, out of range for UINT64 (0 to 18446744073709551615)"#,
        );
        assert_invalid(
            parse(DataType::Uint32, &[-1], json!([4294967296_u64])),
            r#"input "x": element 0 is 4294967296, out of range for UINT32 (0 to 4294967295)"#,
        );
    }

    #[test]
    fn sixty_four_bit_integers_keep_full_precision() {
        let t = parse(
            DataType::Int64,
            &[-1],
            json!([i64::MIN, i64::MAX, 9007199254740993_i64]),
        )
        .unwrap();
        assert_eq!(
            t.data,
            TensorData::Int64(vec![i64::MIN, i64::MAX, 9_007_199_254_740_993])
        );
        assert_eq!(
            t.to_flat_json(),
            json!([i64::MIN, i64::MAX, 9007199254740993_i64])
        );
        let t = parse(
            DataType::Uint64,
            &[-1],
            json!([0, u64::MAX, 18446744073709551613_u64]),
        )
        .unwrap();
        assert_eq!(
            t.data,
            TensorData::Uint64(vec![0, u64::MAX, 18_446_744_073_709_551_613])
        );
        assert_eq!(
            t.to_flat_json(),
            json!([0, u64::MAX, 18446744073709551613_u64])
        );
        // Parsed from text, not built in Rust.
        let data: Value =
            serde_json::from_str("[18446744073709551615, 9223372036854775807]").unwrap();
        let t = parse(DataType::Uint64, &[-1], data).unwrap();
        assert_eq!(t.data, TensorData::Uint64(vec![u64::MAX, i64::MAX as u64]));
    }

    #[test]
    fn bool_accepts_only_true_and_false() {
        let t = parse(DataType::Bool, &[-1], json!([true, false])).unwrap();
        assert_eq!(t.data, TensorData::Bool(vec![true, false]));
        assert_invalid(
            parse(DataType::Bool, &[-1], json!([1])),
            r#"input "x": element 0 is 1, expected true or false for BOOL"#,
        );
        assert_invalid(
            parse(DataType::Bool, &[-1], json!([true, "true"])),
            r#"input "x": element 1 is "true", expected true or false for BOOL"#,
        );
        assert_invalid(
            parse(DataType::Bool, &[-1], json!([false, false, 0.0])),
            r#"input "x": element 2 is 0.0, expected true or false for BOOL"#,
        );
    }

    #[test]
    fn floats_accept_any_number_but_not_other_values() {
        let t = parse(DataType::Fp32, &[-1], json!([1, -2, 0.5, u64::MAX])).unwrap();
        assert_eq!(
            t.data,
            TensorData::Fp32(vec![1.0, -2.0, 0.5, u64::MAX as f32])
        );
        assert_invalid(
            parse(DataType::Fp32, &[-1], json!([1, "a"])),
            r#"input "x": element 1 is "a", expected a number for FP32"#,
        );
        assert_invalid(
            parse(DataType::Fp64, &[-1], json!([true])),
            r#"input "x": element 0 is true, expected a number for FP64"#,
        );
        assert_invalid(
            parse(DataType::Fp16, &[-1], json!([{"a": 1}])),
            r#"input "x": element 0 is an object, expected a number for FP16"#,
        );
        assert_invalid(
            parse(DataType::Fp32, &[-1], json!([null])),
            r#"input "x": element 0 is null, expected a number for FP32"#,
        );
    }

    #[test]
    fn floats_that_overflow_their_type_are_rejected() {
        assert_invalid(
            parse(DataType::Fp32, &[-1], json!([1e300])),
            r#"input "x": element 0 is 1e300, out of range for FP32"#,
        );
        assert_invalid(
            parse(DataType::Fp32, &[-1], json!([1.0, -1e39])),
            r#"input "x": element 1 is -1e39, out of range for FP32"#,
        );
        assert_invalid(
            parse(DataType::Fp16, &[-1], json!([70000])),
            r#"input "x": element 0 is 70000, out of range for FP16"#,
        );
        let t = parse(DataType::Fp16, &[-1], json!([65504, -65504, 1e-10])).unwrap();
        assert_eq!(
            t.data,
            TensorData::Fp16(vec![f16::MAX, f16::MIN, f16::from_f64(1e-10)])
        );
        let t = parse(DataType::Fp32, &[-1], json!([f32::MAX, 1e-50])).unwrap();
        assert_eq!(t.data, TensorData::Fp32(vec![f32::MAX, 0.0]));
        let t = parse(DataType::Fp64, &[-1], json!([1e300, f64::MIN])).unwrap();
        assert_eq!(t.data, TensorData::Fp64(vec![1e300, f64::MIN]));
    }

    #[test]
    fn long_element_text_is_truncated() {
        let long = "y".repeat(200);
        let err = parse(DataType::Fp32, &[-1], json!([long])).unwrap_err();
        let expected = format!(
            r#"input "x": element 0 is "{}..., expected a number for FP32"#,
            "y".repeat(39)
        );
        assert_eq!(err.message(), expected);
    }

    // ---- JSON output ----

    #[test]
    fn floats_are_written_in_shortest_form() {
        let t = parse(DataType::Fp32, &[-1], json!([0.1, 1.5, 3])).unwrap();
        assert_eq!(
            serde_json::to_string(&t.to_flat_json()).unwrap(),
            "[0.1,1.5,3.0]"
        );
        let t = parse(DataType::Fp16, &[-1], json!([0.1])).unwrap();
        let back = t.to_flat_json();
        assert_eq!(
            parse(DataType::Fp16, &[-1], back).unwrap().data,
            TensorData::Fp16(vec![f16::from_f64(0.1)])
        );
    }

    #[test]
    fn non_finite_outputs_are_null() {
        let t = Tensor {
            name: "y".into(),
            shape: vec![2, 2],
            data: TensorData::Fp32(vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1.0]),
        };
        assert_eq!(t.to_nested_json(), json!([[null, null], [null, 1.0]]));
        let t = Tensor {
            name: "y".into(),
            shape: vec![1],
            data: TensorData::Fp64(vec![f64::NAN]),
        };
        assert_eq!(t.to_flat_json(), json!([null]));
        let t = Tensor {
            name: "y".into(),
            shape: vec![1],
            data: TensorData::Fp16(vec![f16::INFINITY]),
        };
        assert_eq!(t.to_flat_json(), json!([null]));
    }

    #[test]
    fn inconsistent_hand_built_tensor_does_not_panic() {
        let t = Tensor {
            name: "y".into(),
            shape: vec![2, 2],
            data: TensorData::Int8(vec![1, 2, 3]),
        };
        assert_eq!(t.to_nested_json(), json!([[1, 2], [3, null]]));
    }

    /// Sample values for each type, nested as [2, 3], including each type's extremes.
    fn samples(ty: DataType) -> Value {
        match ty {
            DataType::Bool => json!([[true, false, true], [false, false, true]]),
            DataType::Uint8 => json!([[0, 1, 2], [127, 128, 255]]),
            DataType::Uint16 => json!([[0, 1, 2], [300, 40000, 65535]]),
            DataType::Uint32 => json!([[0, 1, 2], [70000, 3000000000_u32, 4294967295_u32]]),
            DataType::Uint64 => json!([
                [0, 1, 2],
                [4294967296_u64, 9223372036854775808_u64, u64::MAX]
            ]),
            DataType::Int8 => json!([[-128, -1, 0], [1, 100, 127]]),
            DataType::Int16 => json!([[-32768, -1, 0], [1, 1000, 32767]]),
            DataType::Int32 => json!([[i32::MIN, -1, 0], [1, 100000, i32::MAX]]),
            DataType::Int64 => json!([[i64::MIN, -1, 0], [1, 9007199254740993_i64, i64::MAX]]),
            DataType::Fp16 => json!([[-65504.0, -1.5, 0.0], [0.25, 0.1, 65504.0]]),
            DataType::Fp32 => json!([[-3.4028235e38, -1.5, 0.0], [0.1, 1e-45, 3.4028235e38]]),
            DataType::Fp64 => json!([[f64::MIN, -1.5, 0.0], [0.1, 5e-324, f64::MAX]]),
        }
    }

    #[test]
    fn flat_and_nested_round_trip_for_every_type() {
        for ty in DataType::ALL {
            let nested = samples(ty);
            let t = parse(ty, &[-1, 3], nested.clone()).unwrap_or_else(|e| panic!("{ty}: {e}"));
            assert_eq!(t.datatype(), ty);
            assert_eq!(t.shape, vec![2, 3], "{ty}");
            assert_eq!(t.len(), 6);

            // Nested output reads back as the same tensor, and as the same JSON.
            let again = parse(ty, &[-1, 3], t.to_nested_json()).unwrap();
            assert_eq!(again, t, "{ty}");
            assert_eq!(again.to_nested_json(), t.to_nested_json(), "{ty}");

            // Flat output with the shape reads back as the same tensor.
            let flat = t.to_flat_json();
            assert_eq!(flat.as_array().map(Vec::len), Some(6), "{ty}");
            let from_flat = parse_shaped(ty, &[-1, 3], flat, &[2, 3]).unwrap();
            assert_eq!(from_flat, t, "{ty}");

            // The declared datatype is the v2 name.
            let declared = Tensor::from_json(&spec(ty, &[2, 3]), &nested, None, Some(ty.as_str()));
            assert_eq!(declared.unwrap(), t, "{ty}");

            // Integers and booleans are written exactly as they were sent.
            if !matches!(ty, DataType::Fp16 | DataType::Fp32 | DataType::Fp64) {
                assert_eq!(t.to_nested_json(), nested, "{ty}");
            }
        }
    }

    #[test]
    fn exactly_representable_floats_are_written_as_sent() {
        for ty in [DataType::Fp16, DataType::Fp32, DataType::Fp64] {
            let sent = json!([[-1.5, 0.0, 0.25], [2.0, 1024.0, -0.125]]);
            let t = parse(ty, &[2, 3], sent.clone()).unwrap();
            assert_eq!(t.to_nested_json(), sent, "{ty}");
        }
    }

    // ---- properties: text decoding, writing, round trips ----

    /// A finite value of `ty` from raw bits (NaN and infinities, which JSON cannot carry,
    /// become 0).
    fn element(ty: DataType, bits: u64) -> Value {
        match ty {
            DataType::Bool => json!(bits & 1 == 1),
            DataType::Uint8 => json!(bits as u8),
            DataType::Uint16 => json!(bits as u16),
            DataType::Uint32 => json!(bits as u32),
            DataType::Uint64 => json!(bits),
            DataType::Int8 => json!(bits as i8),
            DataType::Int16 => json!(bits as i16),
            DataType::Int32 => json!(bits as i32),
            DataType::Int64 => json!(bits as i64),
            DataType::Fp16 => {
                let x = f16::from_bits(bits as u16);
                if x.is_finite() {
                    shortest_f32(x.to_f32())
                } else {
                    json!(0)
                }
            }
            DataType::Fp32 => {
                let x = f32::from_bits(bits as u32);
                if x.is_finite() {
                    shortest_f32(x)
                } else {
                    json!(0)
                }
            }
            DataType::Fp64 => {
                let x = f64::from_bits(bits);
                json!(if x.is_finite() { x } else { 0.0 })
            }
        }
    }

    fn arbitrary_tensor(
    ) -> impl proptest::strategy::Strategy<Value = (DataType, Vec<usize>, Vec<u64>)> {
        use proptest::prelude::*;
        (
            0..DataType::ALL.len(),
            proptest::collection::vec(0usize..4, 0..4),
        )
            .prop_flat_map(|(ty, shape)| {
                let n = shape.iter().product::<usize>();
                (
                    Just(DataType::ALL[ty]),
                    Just(shape),
                    proptest::collection::vec(any::<u64>(), n),
                )
            })
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_text_decoder(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            ty in 0..DataType::ALL.len(),
            shape in proptest::option::of(proptest::collection::vec(0usize..5, 0..4)),
        ) {
            let text = String::from_utf8_lossy(&bytes);
            let spec = spec(DataType::ALL[ty], &[-1; 3]);
            let _ = Tensor::from_json_text(&spec, &text, shape.as_deref(), None);
        }

        #[test]
        fn json_like_text_never_panics_and_agrees_with_the_value_decoder(
            tokens in proptest::collection::vec(
                proptest::sample::select(vec!["[", "]", ",", "0", "-1", "2.5", "1e300", "true",
                    "null", "\"a\"", "{}", "18446744073709551615", " "]),
                0..40,
            ),
            ty in 0..DataType::ALL.len(),
        ) {
            let text = tokens.concat();
            let spec = spec(DataType::ALL[ty], &[-1; 2]);
            let from_text = Tensor::from_json_text(&spec, &text, None, None);
            // Where the text is JSON, both decoders give the same tensor or the same message.
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                let from_value = Tensor::from_json(&spec, &value, None, None);
                proptest::prop_assert_eq!(
                    from_text.map_err(|e| e.message().to_owned()),
                    from_value.map_err(|e| e.message().to_owned())
                );
            }
        }

        #[test]
        fn valid_tensors_round_trip_through_text(
            (ty, shape, bits) in arbitrary_tensor(),
        ) {
            let elements: Vec<Value> = bits.iter().map(|&b| element(ty, b)).collect();
            let flat = Value::Array(elements);
            let dims: Vec<i64> = vec![-1; shape.len()];
            let t = Tensor::from_json(&spec(ty, &dims), &flat, Some(&shape), Some(ty.as_str()))
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            for nested in [true, false] {
                let mut text = Vec::new();
                proptest::prop_assert!(t.write_json(nested, &mut text, usize::MAX).is_ok());
                let expected = if nested { t.to_nested_json() } else { t.to_flat_json() };
                proptest::prop_assert_eq!(
                    std::str::from_utf8(&text).unwrap_or_default(),
                    serde_json::to_string(&expected).unwrap_or_default()
                );
                let given = (!nested).then_some(shape.as_slice());
                let back = Tensor::from_json_text(
                    &spec(ty, &dims), std::str::from_utf8(&text).unwrap_or_default(), given, None);
                // An empty tensor's nesting stops at its first 0: only the flat form with the
                // shape gives every dimension back.
                if nested && t.is_empty() {
                    continue;
                }
                proptest::prop_assert_eq!(back.ok(), Some(t.clone()));
            }
            // The limit stops the writer within one element of it.
            let mut text = Vec::new();
            let full = serde_json::to_vec(&t.to_flat_json()).unwrap_or_default().len();
            if full > 2 {
                proptest::prop_assert!(t.write_json(false, &mut text, full - 1).is_err());
                proptest::prop_assert!(text.len() <= full);
            }
        }
    }
}
