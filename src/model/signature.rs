//! A model's signature: the name, element type and shape of each input and output.

use std::fmt;

use ort::value::{TensorElementType, ValueType};
use serde::{Serialize, Serializer};

use crate::{Error, ErrorKind, Result};

/// A tensor element type the server accepts and returns, named as in the KServe v2 protocol.
///
/// Serializes as its v2 name (`"FP32"`, `"INT64"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `bool`, v2 name `BOOL`.
    Bool,
    /// `u8`, v2 name `UINT8`.
    Uint8,
    /// `u16`, v2 name `UINT16`.
    Uint16,
    /// `u32`, v2 name `UINT32`.
    Uint32,
    /// `u64`, v2 name `UINT64`.
    Uint64,
    /// `i8`, v2 name `INT8`.
    Int8,
    /// `i16`, v2 name `INT16`.
    Int16,
    /// `i32`, v2 name `INT32`.
    Int32,
    /// `i64`, v2 name `INT64`.
    Int64,
    /// IEEE half precision ([`half::f16`]), v2 name `FP16`.
    Fp16,
    /// `f32`, v2 name `FP32`.
    Fp32,
    /// `f64`, v2 name `FP64`.
    Fp64,
}

impl DataType {
    /// Every supported element type, in declaration order.
    pub const ALL: [DataType; 12] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
    ];

    /// The KServe v2 name, such as `"FP32"`.
    ///
    /// ```
    /// use tinyserve::model::DataType;
    /// assert_eq!(DataType::Uint8.as_str(), "UINT8");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
        }
    }

    /// The type with this exact (case-sensitive) KServe v2 name, or `None`.
    ///
    /// ```
    /// use tinyserve::model::DataType;
    /// assert_eq!(DataType::from_v2("FP32"), Some(DataType::Fp32));
    /// assert_eq!(DataType::from_v2("fp32"), None);
    /// ```
    pub fn from_v2(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|ty| ty.as_str() == name)
    }

    /// The type matching an ONNX Runtime element type, or `None` for the ones the server
    /// does not support (string, bfloat16, complex, 8/4/2-bit types...).
    pub fn from_ort(ty: TensorElementType) -> Option<DataType> {
        Some(match ty {
            TensorElementType::Bool => DataType::Bool,
            TensorElementType::Uint8 => DataType::Uint8,
            TensorElementType::Uint16 => DataType::Uint16,
            TensorElementType::Uint32 => DataType::Uint32,
            TensorElementType::Uint64 => DataType::Uint64,
            TensorElementType::Int8 => DataType::Int8,
            TensorElementType::Int16 => DataType::Int16,
            TensorElementType::Int32 => DataType::Int32,
            TensorElementType::Int64 => DataType::Int64,
            TensorElementType::Float16 => DataType::Fp16,
            TensorElementType::Float32 => DataType::Fp32,
            TensorElementType::Float64 => DataType::Fp64,
            _ => return None,
        })
    }

    /// The ONNX Runtime element type for this type.
    pub fn to_ort(self) -> TensorElementType {
        match self {
            DataType::Bool => TensorElementType::Bool,
            DataType::Uint8 => TensorElementType::Uint8,
            DataType::Uint16 => TensorElementType::Uint16,
            DataType::Uint32 => TensorElementType::Uint32,
            DataType::Uint64 => TensorElementType::Uint64,
            DataType::Int8 => TensorElementType::Int8,
            DataType::Int16 => TensorElementType::Int16,
            DataType::Int32 => TensorElementType::Int32,
            DataType::Int64 => TensorElementType::Int64,
            DataType::Fp16 => TensorElementType::Float16,
            DataType::Fp32 => TensorElementType::Float32,
            DataType::Fp64 => TensorElementType::Float64,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DataType {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One input or output of a model: its name, element type and shape.
///
/// Serializes as `{"name": "x", "datatype": "FP32", "shape": [-1, 4]}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorSpec {
    /// The input or output name in the ONNX graph.
    pub name: String,
    /// The element type.
    pub datatype: DataType,
    /// The dimensions; `-1` marks a dynamic dimension that accepts any size.
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// The shape as text, such as `"[-1, 4]"` (`"[]"` for a scalar).
    ///
    /// ```
    /// use tinyserve::model::{DataType, TensorSpec};
    /// let spec = TensorSpec { name: "x".into(), datatype: DataType::Fp32, shape: vec![-1, 4] };
    /// assert_eq!(spec.shape_text(), "[-1, 4]");
    /// ```
    pub fn shape_text(&self) -> String {
        format!("{:?}", self.shape)
    }

    /// The spec of one session input or output; fails for anything that is not a tensor of a
    /// supported element type. `kind` is `"input"` or `"output"`, for the message.
    fn from_outlet(kind: &str, name: &str, dtype: &ValueType) -> Result<TensorSpec> {
        let unsupported = || {
            Error::new(
                ErrorKind::Internal,
                format!("{kind} \"{name}\": unsupported type {dtype}"),
            )
        };
        match dtype {
            ValueType::Tensor { ty, shape, .. } => {
                let datatype = DataType::from_ort(*ty).ok_or_else(unsupported)?;
                // ONNX Runtime reports unknown dimensions as -1; keep exactly one marker.
                let shape = shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect();
                Ok(TensorSpec {
                    name: name.to_owned(),
                    datatype,
                    shape,
                })
            }
            _ => Err(unsupported()),
        }
    }
}

/// The inputs and outputs of a loaded model, in the session's order.
#[derive(Debug, Clone, Default)]
pub struct Signature {
    /// The model's inputs.
    pub inputs: Vec<TensorSpec>,
    /// The model's outputs.
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// Reads the session's inputs and outputs.
    ///
    /// Fails with an [`ErrorKind::Internal`] error such as
    /// `input "x": unsupported type Tensor<String>(dyn)` when an input or output is not a
    /// tensor (sequence, map, optional) or has an unsupported element type (string,
    /// bfloat16...), so loading such a model fails with a clear message.
    pub fn from_session(session: &ort::session::Session) -> Result<Signature> {
        let read = |kind: &str, outlets: &[ort::value::Outlet]| {
            outlets
                .iter()
                .map(|o| TensorSpec::from_outlet(kind, o.name(), o.dtype()))
                .collect::<Result<Vec<_>>>()
        };
        Ok(Signature {
            inputs: read("input", session.inputs())?,
            outputs: read("output", session.outputs())?,
        })
    }

    /// The input named `name`, if any.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|spec| spec.name == name)
    }

    /// The output named `name`, if any.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|spec| spec.name == name)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ort::value::{Shape, SymbolicDimensions};

    #[test]
    fn v2_names_round_trip_and_are_case_sensitive() {
        for ty in DataType::ALL {
            assert_eq!(DataType::from_v2(ty.as_str()), Some(ty));
            assert_eq!(ty.to_string(), ty.as_str());
            assert_eq!(DataType::from_v2(&ty.as_str().to_lowercase()), None);
            assert_eq!(DataType::from_ort(ty.to_ort()), Some(ty));
        }
        assert_eq!(DataType::from_v2("BYTES"), None);
        assert_eq!(DataType::from_v2("BF16"), None);
        assert_eq!(DataType::from_v2(""), None);
    }

    #[test]
    fn all_lists_each_type_once() {
        let mut names: Vec<_> = DataType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 12);
    }

    #[test]
    fn unsupported_ort_types_map_to_none() {
        for ty in [
            TensorElementType::String,
            TensorElementType::Bfloat16,
            TensorElementType::Complex64,
            TensorElementType::Float8E4M3FN,
            TensorElementType::Int4,
            TensorElementType::Undefined,
        ] {
            assert_eq!(DataType::from_ort(ty), None, "{ty:?}");
        }
    }

    #[test]
    fn spec_serializes_with_v2_datatype() {
        let spec = TensorSpec {
            name: "x".into(),
            datatype: DataType::Fp16,
            shape: vec![-1, 4],
        };
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"name": "x", "datatype": "FP16", "shape": [-1, 4]})
        );
        assert_eq!(spec.shape_text(), "[-1, 4]");
        let scalar = TensorSpec {
            shape: vec![],
            ..spec
        };
        assert_eq!(scalar.shape_text(), "[]");
    }

    #[test]
    fn outlet_types_are_read_or_rejected() {
        let tensor = |ty, dims: &[i64]| ValueType::Tensor {
            ty,
            shape: Shape::new(dims.iter().copied()),
            dimension_symbols: SymbolicDimensions::empty(dims.len()),
        };
        let spec =
            TensorSpec::from_outlet("input", "x", &tensor(TensorElementType::Int64, &[-1, 3]))
                .unwrap();
        assert_eq!(spec.datatype, DataType::Int64);
        assert_eq!(spec.shape, vec![-1, 3]);

        let err = TensorSpec::from_outlet("input", "s", &tensor(TensorElementType::String, &[-1]))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(
            err.message(),
            "input \"s\": unsupported type Tensor<String>(dyn)"
        );

        let map = ValueType::Map {
            key: TensorElementType::Int64,
            value: TensorElementType::Float32,
        };
        let err = TensorSpec::from_outlet("output", "m", &map).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(
            err.message(),
            "output \"m\": unsupported type Map<i64, f32>"
        );
    }

    #[test]
    fn lookup_by_name() {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            datatype: DataType::Fp32,
            shape: vec![1],
        };
        let sig = Signature {
            inputs: vec![spec("a"), spec("b")],
            outputs: vec![spec("y")],
        };
        assert_eq!(sig.input("b").map(|s| s.name.as_str()), Some("b"));
        assert!(sig.input("y").is_none());
        assert_eq!(sig.output("y").map(|s| s.name.as_str()), Some("y"));
    }
}
