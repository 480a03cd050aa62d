//! Unit tests of tensor parsing and writing.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::model::element::shortest_f32;
use crate::model::json::MAX_DEPTH;
use half::f16;
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

fn parse_shaped(ty: DataType, spec_shape: &[i64], data: Value, shape: &[usize]) -> Result<Tensor> {
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
    let flat = parse_shaped(DataType::Int64, &[2, 3], json!([1, 2, 3, 4, 5, 6]), &[2, 3]).unwrap();
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
    let data: Value = serde_json::from_str("[18446744073709551615, 9223372036854775807]").unwrap();
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
