//! Tensors: parsed from JSON against a model's signature, converted to and from ONNX Runtime
//! values, and written back as JSON.
//!
//! Parsing never coerces silently: a wrong datatype, a shape that does not fit the spec, a
//! ragged array, a fractional or out-of-range integer, a non-boolean for `BOOL` or a float that
//! overflows its type is an [`Error::invalid_input`] whose message names the input and says what
//! was expected and what was received.

use ort::value::{DynValue, ValueType};
use serde_json::Value;

use super::datatype::{with_type, DataType};
use super::element::{elements, truncate, with_data, Stored, TensorData};
use super::json::{self, OverLimit};
use super::signature::TensorSpec;
use crate::{Error, ErrorKind, Result};

/// The most nested arrays a client-given shape of an empty tensor may describe.
///
/// A non-empty tensor's nested JSON form is bounded by its element count, but an empty one is
/// not: `[1000000000000, 0]` holds no elements yet nests as a trillion empty arrays. Such shapes
/// are rejected so that writing the (possibly echoed) tensor back as JSON stays bounded.
pub(crate) const MAX_EMPTY_ARRAYS: usize = 1 << 16;

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
    ///   a scalar (rank 0). Nesting deeper than 32 levels is rejected.
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

#[cfg(test)]
mod round_trips;
#[cfg(test)]
mod tests;
