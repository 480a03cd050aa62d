//! Tensors as raw little-endian bytes: the KServe v2 binary tensor data extension.

use super::datatype::{with_type, DataType};
use super::element::{with_data, Stored};
use super::signature::TensorSpec;
use super::tensor::{check_empty_shape, shape_fits, Tensor};
use crate::{Error, Result};

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

/// `BOOL` travels as one byte, 0 or 1, so it reads and writes like the numeric types.
trait BoolBytes {
    fn from_le_bytes(bytes: [u8; 1]) -> bool;
    fn to_le_bytes(self) -> [u8; 1];
}

impl BoolBytes for bool {
    fn from_le_bytes(bytes: [u8; 1]) -> bool {
        bytes[0] == 1
    }
    fn to_le_bytes(self) -> [u8; 1] {
        [u8::from(self)]
    }
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
        let size = spec.datatype.size();
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
        if spec.datatype == DataType::Bool {
            if let Some(pos) = bytes.iter().position(|&b| b > 1) {
                return Err(invalid(format!(
                    "element {pos} is byte {}, expected 0 or 1 for BOOL",
                    bytes[pos]
                )));
            }
        }
        let data = with_type!(spec.datatype, T => T::wrap(decode(bytes, T::from_le_bytes)));
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
        self.len().saturating_mul(self.datatype().size())
    }

    /// Appends [`Tensor::to_le_bytes`] to `out`, without an intermediate vector.
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        fn encode<T: Copy, const N: usize>(out: &mut Vec<u8>, values: &[T], to: fn(T) -> [u8; N]) {
            for &v in values {
                out.extend_from_slice(&to(v));
            }
        }
        with_data!(&self.data, v => encode(out, v, |x| x.to_le_bytes()));
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
            let bytes: Vec<u8> = (0..4 * datatype.size()).map(|i| (i % 2) as u8).collect();
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
            let size = datatype.size();
            let bytes: Vec<u8> = seed.iter().cycle().take(rows * 2 * size).copied().collect();
            let bytes = if seed.is_empty() { vec![0; rows * 2 * size] } else { bytes };
            let t = Tensor::from_le_bytes(&spec(datatype), &[rows, 2], datatype.as_str(), &bytes);
            proptest::prop_assert_eq!(t.map(|t| t.to_le_bytes()).ok(), Some(bytes));
        }
    }
}
