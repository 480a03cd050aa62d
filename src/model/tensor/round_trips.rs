//! Unit tests of writing tensors as JSON and reading them back.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::model::element::shortest_f32;
use half::f16;
use serde_json::json;

use super::tests::{parse, parse_shaped, spec};

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

fn arbitrary_tensor() -> impl proptest::strategy::Strategy<Value = (DataType, Vec<usize>, Vec<u64>)>
{
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
