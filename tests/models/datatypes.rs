//! Every datatype round-trips through JSON exactly: fp64 keeps every bit, fp16 reads back as the same
//! half, 64-bit integers survive as JSON text.

use serde_json::{json, Value};

use crate::support::fixtures::{flatten, floats};
use crate::support::TestApp;

use super::{infer_one, ok_json, output, shape_of};

/// Each echo model's datatype with values covering its range, nested as [2, 3].
fn echo_samples() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "bool",
            "BOOL",
            json!([[true, false, true], [false, true, false]]),
        ),
        ("uint8", "UINT8", json!([[0, 1, 127], [128, 254, 255]])),
        (
            "uint16",
            "UINT16",
            json!([[0, 1, 255], [256, 40000, 65535]]),
        ),
        (
            "uint32",
            "UINT32",
            json!([
                [0, 1, 65536],
                [2147483648_u32, 4000000000_u32, 4294967295_u32]
            ]),
        ),
        (
            "uint64",
            "UINT64",
            json!([
                [0, 1, 4294967296_u64],
                [
                    9007199254740993_u64,
                    9223372036854775808_u64,
                    18446744073709551615_u64
                ]
            ]),
        ),
        ("int8", "INT8", json!([[-128, -1, 0], [1, 100, 127]])),
        ("int16", "INT16", json!([[-32768, -1, 0], [1, 1000, 32767]])),
        (
            "int32",
            "INT32",
            json!([[-2147483648_i32, -1, 0], [1, 100000, 2147483647_i32]]),
        ),
        (
            "int64",
            "INT64",
            json!([
                [-9223372036854775808_i64, -9007199254740993_i64, -1],
                [0, 9007199254740993_i64, 9223372036854775807_i64]
            ]),
        ),
        (
            "fp16",
            "FP16",
            json!([[0.5, -2.25, 65504.0], [-65504.0, 0.0, 3.140625]]),
        ),
        (
            "fp32",
            "FP32",
            json!([[0.1, -1.5, 3.4028235e38], [-3.4028235e38, 1e-45, 0.0]]),
        ),
        (
            "fp64",
            "FP64",
            json!([[0.1, -1.5, f64::MAX], [f64::MIN, 5e-324, 1e300]]),
        ),
    ]
}

/// The numbers of the JSON value that follows the first `marker` in `text`, read from the text
/// with Rust's correctly rounded parser (serde_json's default float parsing can be off by one
/// unit in the last place, which would hide or invent precision losses).
fn raw_numbers(text: &str, marker: &str) -> Vec<f64> {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in {text}"))
        + marker.len();
    let mut numbers = Vec::new();
    let mut token = String::new();
    let mut depth = 0usize;
    for c in text[start..].chars() {
        if c.is_ascii_digit() || "+-.eE".contains(c) {
            token.push(c);
            continue;
        }
        if !token.is_empty() {
            numbers.push(
                token
                    .parse()
                    .unwrap_or_else(|_| panic!("bad number {token}")),
            );
            token.clear();
        }
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    numbers
}

/// Asserts the floats in `text` after `marker` are exactly `expected`, bit for bit.
fn assert_exact_floats(text: &str, marker: &str, expected: &[f64], what: &str) {
    let got = raw_numbers(text, marker);
    let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(
        bits(&got),
        bits(expected),
        "{what}: got {got:?}, expected {expected:?}"
    );
}

#[test]
fn every_datatype_round_trips_exactly() {
    let client = TestApp::models("models/tests/dtypes");
    let samples = echo_samples();
    assert_eq!(samples.len(), 12, "one sample per supported datatype");
    for (suffix, datatype, nested) in samples {
        let model = format!("echo_{suffix}");
        let flat = Value::Array(flatten(&nested));
        let is_float = datatype.starts_with("FP");

        // The model's metadata reports the datatype and the dynamic batch dimension.
        let meta = ok_json(&client.get(&format!("/v2/models/{model}")));
        assert_eq!(
            meta,
            json!({
                "name": model,
                "versions": ["1"],
                "platform": "onnx_onnxv1",
                "inputs": [{"name": "x", "datatype": datatype, "shape": [-1, 3]}],
                "outputs": [{"name": "y", "datatype": datatype, "shape": [-1, 3]}],
            }),
            "{model} metadata"
        );

        // v2 infer with flat data, then with nested data; the output is always flat.
        for (how, data) in [("flat", &flat), ("nested", &nested)] {
            let what = format!("{model} with {how} data");
            let reply = client.post_json(
                &format!("/v2/models/{model}/infer"),
                &json!({
                    "id": format!("{model}-{how}"),
                    "inputs": [{"name": "x", "shape": [2, 3], "datatype": datatype, "data": data}],
                }),
            );
            let mut body = ok_json(&reply);
            let mut expected = json!({
                "model_name": model,
                "model_version": "1",
                "id": format!("{model}-{how}"),
                "outputs": [{"name": "y", "datatype": datatype, "shape": [2, 3], "data": flat}],
            });
            if is_float {
                assert_exact_floats(&reply.text(), "\"data\":", &floats(&flat), &what);
                body["outputs"][0]["data"] = Value::Null;
                expected["outputs"][0]["data"] = Value::Null;
            }
            assert_eq!(body, expected, "{what}");
        }

        // The predict route takes and returns nested arrays, with or without the input name.
        for request in [json!({"inputs": {"x": nested}}), nested.clone()] {
            let reply = client.post_json(&format!("/models/{model}/predict"), &request);
            let body = ok_json(&reply);
            assert_eq!(
                shape_of(&body["outputs"]["y"]),
                vec![2, 3],
                "{model} predict"
            );
            if is_float {
                let what = format!("{model} predict");
                assert_exact_floats(&reply.text(), "\"y\":", &floats(&flat), &what);
            } else {
                assert_eq!(body, json!({"outputs": {"y": nested}}), "{model} predict");
            }
        }
    }
}

#[test]
fn fp64_values_keep_every_bit() {
    // Shortest round-trip texts of doubles that a float parser which is not correctly rounded
    // reads one unit in the last place off. FP64 is the type whose values must not change.
    let client = TestApp::models("models/tests/dtypes");
    let sent = [
        2.699038309416696e-307,
        8.405388530316562e52,
        9.576160393037559e85,
        1e-45,
        0.30000000000000004,
        1.0000000000000002,
    ];
    let reply = infer_one(&client, "echo_fp64", "FP64", json!([2, 3]), json!(sent));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_exact_floats(&reply.text(), "\"data\":", &sent, "FP64 through v2");
    let reply = client.post_json(
        "/models/echo_fp64/predict",
        &json!([[sent[0], sent[1], sent[2]], [sent[3], sent[4], sent[5]]]),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_exact_floats(&reply.text(), "\"y\":", &sent, "FP64 through predict");
}

#[test]
fn fp16_subnormals_and_inexact_values_read_back_as_the_same_half() {
    // FP16 is written in the shortest text that reads back as the same value, which for
    // numbers with long decimal expansions is not the text that was sent.
    let client = TestApp::models("models/tests/dtypes");
    let sent = [
        6.103515625e-05,
        5.960464477539063e-08,
        0.1,
        -1e-4,
        1.0009765625,
        1000.0,
    ];
    let reply = infer_one(&client, "echo_fp16", "FP16", json!([2, 3]), json!(sent));
    let body = ok_json(&reply);
    let got = floats(&output(&body, "y")["data"]);
    assert_eq!(got.len(), sent.len());
    for (g, s) in got.iter().zip(sent) {
        assert_eq!(
            half::f16::from_f64(*g),
            half::f16::from_f64(s),
            "sent {s}, got {g}"
        );
    }
    // Values that do not fit FP16 are rejected rather than turned into infinity.
    infer_one(
        &client,
        "echo_fp16",
        "FP16",
        json!([1, 3]),
        json!([0, 70000, 0]),
    )
    .assert_error(
        400,
        "invalid_input",
        r#"input "x": element 1 is 70000, out of range for FP16"#,
    );
}

#[test]
fn sixty_four_bit_integers_survive_as_json_text() {
    // Checked on the raw bytes too, so no client-side float conversion can hide a loss.
    let client = TestApp::models("models/tests/dtypes");
    for (model, datatype, data) in [
        (
            "echo_int64",
            "INT64",
            "[9007199254740993,-9007199254740993,-9223372036854775808]",
        ),
        (
            "echo_uint64",
            "UINT64",
            "[18446744073709551615,9007199254740993,0]",
        ),
    ] {
        let body = format!(
            r#"{{"inputs":[{{"name":"x","shape":[1,3],"datatype":"{datatype}","data":{data}}}]}}"#
        );
        let reply = client.request(
            "POST",
            &format!("/v2/models/{model}/infer"),
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert!(reply.text().contains(data), "{}", reply.text());
    }
}
