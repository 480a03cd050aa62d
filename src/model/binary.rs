//! Tensors as raw little-endian bytes: the KServe v2 binary tensor data extension.

use super::signature::{DataType, TensorSpec};
use super::tensor::{check_empty_shape, shape_fits, Tensor, TensorData};
use crate::{Error, Result};

/// Bytes per element of `datatype` in the binary encoding.
pub(super) fn element_size(datatype: DataType) -> usize {
    match datatype {
        DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
        DataType::Uint16 | DataType::Int16 | DataType::Fp16 => 2,
        DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
        DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
    }
}

/// Decodes fixed-size little-endian elements.
fn decode<const N: usize, T>(bytes: &[u8], from: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut array = [0u8; N];
            array.copy_from_slice(chunk);
            from(array)
        })
        .collect()
}

impl Tensor {
    /// Reads an input sent as raw little-endian bytes, checked like [`Tensor::from_json`]:
    /// declared datatype, shape against the spec, byte count against the shape, BOOL bytes 0 or 1.
    pub fn from_le_bytes(
        spec: &TensorSpec,
        shape: &[usize],
        declared: &str,
        bytes: &[u8],
    ) -> Result<Tensor> {
        let invalid = |msg: String| Error::invalid_input(format!("input \"{}\": {msg}", spec.name));
        if declared != spec.datatype.as_str() {
            return Err(invalid(format!(
                "expected datatype {}, got {declared:.32}",
                spec.datatype
            )));
        }
        if !shape_fits(&spec.shape, shape) {
            return Err(invalid(format!(
                "expected shape {}, got {shape:?}",
                spec.shape_text()
            )));
        }
        let size = element_size(spec.datatype);
        let needed = shape
            .iter()
            .try_fold(size, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n == bytes.len());
        if needed.is_none() {
            return Err(invalid(format!(
                "shape {shape:?} of {} needs {size} bytes per element, got {} bytes",
                spec.datatype,
                bytes.len()
            )));
        }
        if bytes.is_empty() {
            check_empty_shape(shape).map_err(invalid)?;
        }
        let data = match spec.datatype {
            DataType::Bool => {
                if let Some(pos) = bytes.iter().position(|&b| b > 1) {
                    return Err(invalid(format!(
                        "element {pos} is byte {}, expected 0 or 1 for BOOL",
                        bytes[pos]
                    )));
                }
                TensorData::Bool(bytes.iter().map(|&b| b == 1).collect())
            }
            DataType::Uint8 => TensorData::Uint8(bytes.to_vec()),
            DataType::Int8 => TensorData::Int8(decode(bytes, i8::from_le_bytes)),
            DataType::Uint16 => TensorData::Uint16(decode(bytes, u16::from_le_bytes)),
            DataType::Int16 => TensorData::Int16(decode(bytes, i16::from_le_bytes)),
            DataType::Fp16 => TensorData::Fp16(decode(bytes, half::f16::from_le_bytes)),
            DataType::Uint32 => TensorData::Uint32(decode(bytes, u32::from_le_bytes)),
            DataType::Int32 => TensorData::Int32(decode(bytes, i32::from_le_bytes)),
            DataType::Fp32 => TensorData::Fp32(decode(bytes, f32::from_le_bytes)),
            DataType::Uint64 => TensorData::Uint64(decode(bytes, u64::from_le_bytes)),
            DataType::Int64 => TensorData::Int64(decode(bytes, i64::from_le_bytes)),
            DataType::Fp64 => TensorData::Fp64(decode(bytes, f64::from_le_bytes)),
        };
        Ok(Tensor {
            name: spec.name.clone(),
            shape: shape.to_vec(),
            data,
        })
    }

    /// The elements as raw little-endian bytes, row-major (BOOL as one byte each).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.to_le_bytes_len());
        self.write_le_bytes(&mut out);
        out
    }

    /// How many bytes [`Tensor::to_le_bytes`] gives.
    pub fn to_le_bytes_len(&self) -> usize {
        self.len().saturating_mul(element_size(self.datatype()))
    }

    /// Appends [`Tensor::to_le_bytes`] to `out`, without an intermediate vector.
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        fn encode<T: Copy, const N: usize>(out: &mut Vec<u8>, values: &[T], to: fn(T) -> [u8; N]) {
            for &v in values {
                out.extend_from_slice(&to(v));
            }
        }
        match &self.data {
            TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
            TensorData::Uint8(v) => out.extend_from_slice(v),
            TensorData::Int8(v) => encode(out, v, i8::to_le_bytes),
            TensorData::Uint16(v) => encode(out, v, u16::to_le_bytes),
            TensorData::Int16(v) => encode(out, v, i16::to_le_bytes),
            TensorData::Fp16(v) => encode(out, v, half::f16::to_le_bytes),
            TensorData::Uint32(v) => encode(out, v, u32::to_le_bytes),
            TensorData::Int32(v) => encode(out, v, i32::to_le_bytes),
            TensorData::Fp32(v) => encode(out, v, f32::to_le_bytes),
            TensorData::Uint64(v) => encode(out, v, u64::to_le_bytes),
            TensorData::Int64(v) => encode(out, v, i64::to_le_bytes),
            TensorData::Fp64(v) => encode(out, v, f64::to_le_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(datatype: DataType) -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            datatype,
            shape: vec![-1, 2],
        }
    }

    #[test]
    fn every_datatype_round_trips_through_bytes() {
        for datatype in DataType::ALL {
            let bytes: Vec<u8> = (0..4 * element_size(datatype))
                .map(|i| (i % 2) as u8)
                .collect();
            let name = datatype.as_str();
            let tensor = Tensor::from_le_bytes(&spec(datatype), &[2, 2], name, &bytes);
            assert_eq!(tensor.map(|t| t.to_le_bytes()).ok(), Some(bytes), "{name}");
        }
    }

    #[test]
    fn byte_count_shape_datatype_and_bool_values_are_checked() {
        let fp32 = spec(DataType::Fp32);
        let short = Tensor::from_le_bytes(&fp32, &[2, 2], "FP32", &[0; 12]);
        assert!(short.is_err_and(|e| e.message().contains("got 12 bytes")));
        let rank = Tensor::from_le_bytes(&fp32, &[4], "FP32", &[0; 16]);
        assert!(rank.is_err_and(|e| e.message().contains("expected shape [-1, 2]")));
        let wrong = Tensor::from_le_bytes(&fp32, &[2, 2], "FP64", &[0; 16]);
        assert!(wrong.is_err_and(|e| e.message().contains("expected datatype FP32, got FP64")));
        let bools = Tensor::from_le_bytes(&spec(DataType::Bool), &[1, 2], "BOOL", &[1, 7]);
        assert!(bools.is_err_and(|e| e.message().contains("element 1 is byte 7")));
    }

    #[test]
    fn empty_tensors_with_huge_outer_dimensions_are_rejected_as_in_json() {
        let any = TensorSpec {
            name: "x".into(),
            datatype: DataType::Int64,
            shape: vec![-1, -1],
        };
        let huge = Tensor::from_le_bytes(&any, &[4_194_304, 0], "INT64", &[]);
        assert!(huge.is_err_and(|e| e.message()
            == "input \"x\": shape [4194304, 0] is too large for an empty tensor: \
                expected at most 65536 nested arrays, got 4194305"));
        let small = Tensor::from_le_bytes(&any, &[3, 0], "INT64", &[]);
        assert!(small.is_ok_and(|t| t.shape == [3, 0] && t.is_empty()));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_and_shapes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            shape in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..4),
            ty in 0..DataType::ALL.len(),
        ) {
            let datatype = DataType::ALL[ty];
            let spec = TensorSpec { name: "x".into(), datatype, shape: vec![-1; shape.len()] };
            let _ = Tensor::from_le_bytes(&spec, &shape, datatype.as_str(), &bytes);
        }

        #[test]
        fn valid_bytes_round_trip(
            ty in 0..DataType::ALL.len(),
            rows in 0usize..6,
            seed in proptest::collection::vec(0u8..2, 0..96),
        ) {
            let datatype = DataType::ALL[ty];
            let size = element_size(datatype);
            let bytes: Vec<u8> = seed.iter().cycle().take(rows * 2 * size).copied().collect();
            let bytes = if seed.is_empty() { vec![0; rows * 2 * size] } else { bytes };
            let t = Tensor::from_le_bytes(&spec(datatype), &[rows, 2], datatype.as_str(), &bytes);
            proptest::prop_assert_eq!(t.map(|t| t.to_le_bytes()).ok(), Some(bytes));
        }
    }
}
