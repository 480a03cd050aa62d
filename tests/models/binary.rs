//! The binary tensor data extension: binary in, JSON out and the reverse, every datatype, byte counts.

use serde_json::{json, Value};

use crate::support::fixtures::{assert_close, fixture, flatten, floats};
use crate::support::{Reply, TestApp};

use super::{ok_json, output};

const BINARY_HEADER: &str = "Inference-Header-Content-Length";

/// A binary-extension request: `header` as JSON, then `data`.
fn binary_request(client: &TestApp, path: &str, header: &Value, data: &[u8]) -> Reply {
    let json = serde_json::to_vec(header).expect("serialize header");
    let len = json.len().to_string();
    let mut body = json;
    body.extend_from_slice(data);
    client.request(
        "POST",
        path,
        &[
            ("Content-Type", "application/octet-stream"),
            (BINARY_HEADER, &len),
        ],
        &body,
    )
}

/// Splits a binary-extension response into its JSON header and the bytes of each output,
/// checking that every output is binary and the sizes add up.
fn split_binary(reply: &Reply) -> (Value, Vec<Vec<u8>>) {
    assert_eq!(reply.status, 200, "status; body: {}", reply.text());
    let len: usize = reply
        .header(BINARY_HEADER)
        .unwrap_or_else(|| panic!("no {BINARY_HEADER} header: {:?}", reply.headers))
        .parse()
        .expect("header length is a number");
    assert!(len <= reply.body.len(), "header longer than the body");
    let header: Value = serde_json::from_slice(&reply.body[..len]).expect("JSON header");
    let mut rest = &reply.body[len..];
    let mut chunks = Vec::new();
    for out in header["outputs"].as_array().expect("outputs") {
        if let Some(size) = out["parameters"]["binary_data_size"].as_u64() {
            assert!(
                out.get("data").is_none(),
                "binary output has no JSON data: {out}"
            );
            let size = usize::try_from(size).expect("size fits usize");
            assert!(
                size <= rest.len(),
                "output {} overruns the body",
                out["name"]
            );
            let (chunk, tail) = rest.split_at(size);
            chunks.push(chunk.to_vec());
            rest = tail;
        }
    }
    assert!(
        rest.is_empty(),
        "{} unclaimed bytes after the outputs",
        rest.len()
    );
    (header, chunks)
}

fn f32_bytes(values: &[f64]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| (v as f32).to_le_bytes())
        .collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn i64s(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            i64::from_le_bytes(b)
        })
        .collect()
}

#[test]
fn binary_tensor_data_for_iris() {
    let client = TestApp::models("models");
    for case in fixture("iris") {
        let input = floats(&case["input"]);
        let rows = input.len() / 4;
        let data = f32_bytes(&input);
        let header = json!({
            "id": "bin",
            "inputs": [{
                "name": "input",
                "shape": [rows, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": data.len()},
            }],
            "outputs": [
                {"name": "probabilities", "parameters": {"binary_data": true}},
                {"name": "label", "parameters": {"binary_data": true}},
            ],
        });
        let reply = binary_request(&client, "/v2/models/iris/infer", &header, &data);
        assert_eq!(
            reply.header("Content-Type"),
            Some("application/octet-stream")
        );
        let (json, chunks) = split_binary(&reply);
        assert_eq!(json["id"], "bin");
        assert_eq!(json["model_name"], "iris");
        let outputs = json["outputs"].as_array().expect("outputs");
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs[0]["name"], "probabilities");
        assert_eq!(outputs[0]["datatype"], "FP32");
        assert_eq!(outputs[0]["shape"], json!([rows, 3]));
        assert_eq!(
            outputs[0]["parameters"]["binary_data_size"],
            json!(rows * 3 * 4)
        );
        assert_eq!(outputs[1]["name"], "label");
        assert_eq!(outputs[1]["datatype"], "INT64");
        assert_eq!(outputs[1]["shape"], json!([rows]));
        assert_eq!(
            outputs[1]["parameters"]["binary_data_size"],
            json!(rows * 8)
        );

        let probabilities: Vec<Value> = f32s(&chunks[0])
            .into_iter()
            .map(|p| json!(f64::from(p)))
            .collect();
        assert_close(
            &Value::Array(probabilities),
            &case["probabilities"],
            1e-5,
            "binary probabilities",
        );
        assert_eq!(json!(i64s(&chunks[1])), case["label"], "binary labels");
    }
}

#[test]
fn binary_input_json_output_and_the_reverse() {
    let client = TestApp::models("models");
    let case = &fixture("iris")[1];
    let data = f32_bytes(&floats(&case["input"]));

    // Binary in, JSON out (no output asks for binary): a plain JSON response.
    let header = json!({"inputs": [{
        "name": "input", "shape": [3, 4], "datatype": "FP32",
        "parameters": {"binary_data_size": data.len()},
    }]});
    let reply = binary_request(&client, "/v2/models/iris/infer", &header, &data);
    let body = ok_json(&reply);
    assert!(reply.header(BINARY_HEADER).is_none(), "JSON-only response");
    assert_eq!(output(&body, "label")["data"], case["label"]);

    // JSON in, every output binary via the request-level parameter.
    let reply = client.post_json(
        "/v2/models/iris/infer",
        &json!({
            "parameters": {"binary_data_output": true},
            "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": flatten(&case["input"])}],
        }),
    );
    let (json, chunks) = split_binary(&reply);
    assert_eq!(chunks.len(), 2, "{json}");
    assert_eq!(json!(i64s(&chunks[1])), case["label"]);

    // Mixed: probabilities as JSON, label binary.
    let header = json!({
        "inputs": [{
            "name": "input", "shape": [3, 4], "datatype": "FP32",
            "parameters": {"binary_data_size": data.len()},
        }],
        "outputs": [{"name": "probabilities"}, {"name": "label", "parameters": {"binary_data": true}}],
    });
    let reply = binary_request(&client, "/v2/models/iris/infer", &header, &data);
    let (json, chunks) = split_binary(&reply);
    assert_close(
        &output(&json, "probabilities")["data"],
        &case["probabilities"],
        1e-5,
        "JSON probabilities",
    );
    assert_eq!(chunks.len(), 1);
    assert_eq!(json!(i64s(&chunks[0])), case["label"]);
}

#[test]
fn binary_round_trip_for_every_datatype() {
    let client = TestApp::models("models/tests/dtypes");
    let bytes: Vec<(&str, &str, Vec<u8>)> = vec![
        ("bool", "BOOL", vec![1, 0, 1, 0, 0, 1]),
        ("uint8", "UINT8", vec![0, 1, 127, 128, 254, 255]),
        (
            "int8",
            "INT8",
            [-128i8, -1, 0, 1, 100, 127]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "uint16",
            "UINT16",
            [0u16, 1, 255, 256, 40000, 65535]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "int16",
            "INT16",
            [i16::MIN, -1, 0, 1, 1000, i16::MAX]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "fp16",
            "FP16",
            [0.5f32, -2.25, 65504.0, -65504.0, 0.0, 1.0]
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        ),
        (
            "uint32",
            "UINT32",
            [0u32, 1, 65536, 1 << 31, 4_000_000_000, u32::MAX]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "int32",
            "INT32",
            [i32::MIN, -1, 0, 1, 100_000, i32::MAX]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "fp32",
            "FP32",
            [0.1f32, -1.5, f32::MAX, f32::MIN, 1e-45, 0.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "uint64",
            "UINT64",
            [0u64, 1, 1 << 32, 9_007_199_254_740_993, 1 << 63, u64::MAX]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        (
            "int64",
            "INT64",
            [
                i64::MIN,
                -9_007_199_254_740_993,
                -1,
                0,
                9_007_199_254_740_993,
                i64::MAX,
            ]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        ),
        (
            "fp64",
            "FP64",
            [0.1f64, -1.5, f64::MAX, f64::MIN, 5e-324, 1e300]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
    ];
    for (suffix, datatype, data) in bytes {
        let header = json!({
            "inputs": [{"name": "x", "shape": [2, 3], "datatype": datatype,
                        "parameters": {"binary_data_size": data.len()}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": true}}],
        });
        let reply = binary_request(
            &client,
            &format!("/v2/models/echo_{suffix}/infer"),
            &header,
            &data,
        );
        let (json, chunks) = split_binary(&reply);
        assert_eq!(json["outputs"][0]["datatype"], datatype, "{suffix}");
        assert_eq!(json["outputs"][0]["shape"], json!([2, 3]), "{suffix}");
        assert_eq!(chunks, vec![data], "{suffix}: bytes out equal bytes in");
    }
}

#[test]
fn binary_byte_count_mismatches_are_400() {
    let client = TestApp::models("models");
    let data = f32_bytes(&[5.1, 3.5, 1.4, 0.2]);
    let input = |size: usize| {
        json!({"inputs": [{
            "name": "input", "shape": [1, 4], "datatype": "FP32",
            "parameters": {"binary_data_size": size},
        }]})
    };

    // The declared size fits the body but not the shape.
    let reply = binary_request(&client, "/v2/models/iris/infer", &input(12), &data[..12]);
    reply.assert_error(
        400,
        "invalid_input",
        r#"input "input": shape [1, 4] of FP32 needs 4 bytes per element, got 12 bytes"#,
    );
    // The declared size is more than the body holds.
    let reply = binary_request(&client, "/v2/models/iris/infer", &input(16), &data[..12]);
    reply.assert_error(
        400,
        "invalid_input",
        r#"input "input": binary_data_size is 16 but only 12 bytes remain"#,
    );
    // Bytes that no input claims.
    let mut long = data.clone();
    long.extend_from_slice(&[0; 4]);
    let reply = binary_request(&client, "/v2/models/iris/infer", &input(16), &long);
    reply.assert_error(
        400,
        "invalid_input",
        "4 bytes of binary data are not claimed",
    );

    // And the same request with the right size works.
    let reply = binary_request(&client, "/v2/models/iris/infer", &input(16), &data);
    assert_eq!(output(&ok_json(&reply), "label")["data"], json!([0]));
}
