//! A model's signature: the name, element type and shape of each input and output.

use ort::value::ValueType;
use serde::Serialize;

use super::datatype::DataType;
use crate::{Error, ErrorKind, Result};

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
    use ort::value::{Shape, SymbolicDimensions, TensorElementType};

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
