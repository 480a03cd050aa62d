//! Unit tests of tensor parsing: datatypes, shapes, nesting and element checks.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::model::json::MAX_DEPTH;
use half::f16;
use serde_json::json;

pub(super) fn spec(datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: "x".into(),
        datatype,
        shape: shape.to_vec(),
    }
}

pub(super) fn parse(ty: DataType, shape: &[i64], data: Value) -> Result<Tensor> {
    Tensor::from_json(&spec(ty, shape), &data, None, None)
}

pub(super) fn parse_shaped(
    ty: DataType,
    spec_shape: &[i64],
    data: Value,
    shape: &[usize],
) -> Result<Tensor> {
    Tensor::from_json(&spec(ty, spec_shape), &data, Some(shape), None)
}

#[track_caller]
pub(super) fn assert_invalid(result: Result<Tensor>, message: &str) {
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
