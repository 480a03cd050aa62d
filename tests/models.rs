//! Models through the real server: every datatype, every validation error, the Iris and add_mul
//! fixtures, the binary tensor data extension, the registry and the session pool under load.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use tinyserve::model::ModelRegistry;
use tinyserve::App;

use crate::support::fixtures::{assert_close, fixture, flatten, floats};
use crate::support::{repo, scratch_dir, Reply, TestServer};

/// The shape of a rectangular nested array.
fn shape_of(value: &Value) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut current = value;
    while let Value::Array(items) = current {
        shape.push(items.len());
        match items.first() {
            Some(first) => current = first,
            None => break,
        }
    }
    shape
}

/// Asserts a 200 JSON reply and returns its body.
fn ok_json(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "status; body: {}", reply.text());
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/json"),
        "content type; body: {}",
        reply.text()
    );
    reply.json()
}

/// The output called `name` of a v2 infer response.
fn output<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["outputs"]
        .as_array()
        .expect("outputs is an array")
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name:?} in {body}"))
}

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
    let server = TestServer::models("models/tests/dtypes");
    let samples = echo_samples();
    assert_eq!(samples.len(), 12, "one sample per supported datatype");
    for (suffix, datatype, nested) in samples {
        let model = format!("echo_{suffix}");
        let flat = Value::Array(flatten(&nested));
        let is_float = datatype.starts_with("FP");

        // The model's metadata reports the datatype and the dynamic batch dimension.
        let meta = ok_json(&server.get(&format!("/v2/models/{model}")));
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
            let reply = server.post_json(
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
            let reply = server.post_json(&format!("/models/{model}/predict"), &request);
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
    let server = TestServer::models("models/tests/dtypes");
    let sent = [
        2.699038309416696e-307,
        8.405388530316562e52,
        9.576160393037559e85,
        1e-45,
        0.30000000000000004,
        1.0000000000000002,
    ];
    let reply = infer_one(&server, "echo_fp64", "FP64", json!([2, 3]), json!(sent));
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_exact_floats(&reply.text(), "\"data\":", &sent, "FP64 through v2");
    let reply = server.post_json(
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
    let server = TestServer::models("models/tests/dtypes");
    let sent = [
        6.103515625e-05,
        5.960464477539063e-08,
        0.1,
        -1e-4,
        1.0009765625,
        1000.0,
    ];
    let reply = infer_one(&server, "echo_fp16", "FP16", json!([2, 3]), json!(sent));
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
        &server,
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
    let server = TestServer::models("models/tests/dtypes");
    let body = r#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"INT64","data":[9007199254740993,-9007199254740993,-9223372036854775808]}]}"#;
    let reply = server.request(
        "POST",
        "/v2/models/echo_int64/infer",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("[9007199254740993,-9007199254740993,-9223372036854775808]"),
        "{}",
        reply.text()
    );
    let body = r#"{"inputs":[{"name":"x","shape":[1,3],"datatype":"UINT64","data":[18446744073709551615,9007199254740993,0]}]}"#;
    let reply = server.request(
        "POST",
        "/v2/models/echo_uint64/infer",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains("[18446744073709551615,9007199254740993,0]"),
        "{}",
        reply.text()
    );
}

/// `POST /v2/models/<model>/infer` with one input.
fn infer_one(server: &TestServer, model: &str, datatype: &str, shape: Value, data: Value) -> Reply {
    server.post_json(
        &format!("/v2/models/{model}/infer"),
        &json!({"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}),
    )
}

#[test]
fn invalid_inputs_are_400_naming_the_input() {
    let server = TestServer::models("models/tests/dtypes");
    let cases: Vec<(&str, Reply, &str)> = vec![
        (
            "unknown input name",
            server.post_json(
                "/v2/models/echo_fp32/infer",
                &json!({"inputs": [{"name": "z", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
            ),
            r#"unknown input "z": model "echo_fp32" has inputs "x""#,
        ),
        (
            "wrong rank",
            infer_one(&server, "echo_fp32", "FP32", json!([6]), json!([1, 2, 3, 4, 5, 6])),
            r#"input "x": expected shape [-1, 3], got [6]"#,
        ),
        (
            "wrong rank, nested without shape (predict)",
            server.post_json(
                "/models/echo_fp32/predict",
                &json!({"inputs": {"x": [1, 2, 3]}}),
            ),
            r#"input "x": expected shape [-1, 3], got [3]"#,
        ),
        (
            "element count does not match the shape",
            infer_one(&server, "echo_fp32", "FP32", json!([2, 3]), json!([1, 2, 3, 4, 5])),
            r#"input "x": shape [2, 3] needs 6 elements, got 5"#,
        ),
        (
            "declared datatype differs from the model's",
            infer_one(&server, "echo_fp32", "FP64", json!([1, 3]), json!([1, 2, 3])),
            r#"input "x": expected datatype FP32, got FP64"#,
        ),
        (
            "UINT8 above range",
            infer_one(&server, "echo_uint8", "UINT8", json!([1, 3]), json!([1, 2, 300])),
            r#"input "x": element 2 is 300, out of range for UINT8 (0 to 255)"#,
        ),
        (
            "INT8 below range",
            infer_one(&server, "echo_int8", "INT8", json!([1, 3]), json!([-129, 0, 0])),
            r#"input "x": element 0 is -129, out of range for INT8 (-128 to 127)"#,
        ),
        (
            "non-integral INT32",
            infer_one(&server, "echo_int32", "INT32", json!([1, 3]), json!([1, 1.5, 2])),
            r#"input "x": element 1 is 1.5, expected an integer for INT32"#,
        ),
        (
            "BOOL given as a number",
            infer_one(&server, "echo_bool", "BOOL", json!([1, 3]), json!([true, 1, false])),
            r#"input "x": element 1 is 1, expected true or false for BOOL"#,
        ),
        (
            "BOOL given as a string",
            infer_one(&server, "echo_bool", "BOOL", json!([1, 3]), json!([true, false, "true"])),
            r#"input "x": element 2 is "true", expected true or false for BOOL"#,
        ),
        (
            "string in FP32",
            infer_one(&server, "echo_fp32", "FP32", json!([1, 3]), json!([1.0, "2", 3.0])),
            r#"input "x": element 1 is "2", expected a number for FP32"#,
        ),
        (
            "ragged nested array",
            infer_one(&server, "echo_fp32", "FP32", json!([2, 3]), json!([[1, 2, 3], [4, 5]])),
            r#"input "x": ragged array at [1]: expected 3 elements, got 2"#,
        ),
        (
            "ragged nested array (predict)",
            server.post_json(
                "/models/echo_fp32/predict",
                &json!([[1, 2, 3], [4, 5, 6], [7, 8]]),
            ),
            r#"input "x": ragged array at [2]: expected 3 elements, got 2"#,
        ),
        (
            "negative dimension in shape",
            infer_one(&server, "echo_fp32", "FP32", json!([-1, 3]), json!([1, 2, 3])),
            r#"input "x": shape [-1, 3] has a negative dimension"#,
        ),
        (
            "unknown requested output",
            server.post_json(
                "/v2/models/echo_fp32/infer",
                &json!({
                    "inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}],
                    "outputs": [{"name": "nope"}],
                }),
            ),
            r#"unknown output "nope": model "echo_fp32" has outputs "y""#,
        ),
    ];
    for (what, reply, needle) in &cases {
        eprintln!("case: {what}");
        reply.assert_error(400, "invalid_input", needle);
    }

    // The server is unharmed: a valid request still gets the right answer.
    let reply = infer_one(
        &server,
        "echo_fp32",
        "FP32",
        json!([1, 3]),
        json!([1.5, -2.0, 0.25]),
    );
    assert_eq!(
        output(&ok_json(&reply), "y")["data"],
        json!([1.5, -2.0, 0.25])
    );
}

#[test]
fn multi_input_model_checks_names_and_static_dims() {
    let server = TestServer::models("models/tests/multi");
    let a = json!([1, 2, 3, 4, 5, 6]);

    let reply = server.post_json(
        "/v2/models/add_mul/infer",
        &json!({"inputs": [{"name": "a", "shape": [2, 3], "datatype": "FP32", "data": a}]}),
    );
    reply.assert_error(
        400,
        "invalid_input",
        r#"missing input "b": model "add_mul" has inputs "a", "b""#,
    );

    let reply = server.post_json(
        "/v2/models/add_mul/infer",
        &json!({"inputs": [
            {"name": "a", "shape": [3, 2], "datatype": "FP32", "data": a},
            {"name": "b", "shape": [2, 3], "datatype": "FP32", "data": a},
        ]}),
    );
    reply.assert_error(
        400,
        "invalid_input",
        r#"input "a": expected shape [2, 3], got [3, 2]"#,
    );

    let reply = server.post_json(
        "/models/add_mul/predict",
        &json!({"inputs": {"a": [[1, 2, 3], [4, 5, 6]]}}),
    );
    reply.assert_error(400, "invalid_input", r#"missing input "b""#);

    let reply = server.post_json("/models/add_mul/predict", &json!([[1, 2, 3], [4, 5, 6]]));
    reply.assert_error(
        400,
        "invalid_input",
        r#"model "add_mul" has inputs "a", "b""#,
    );
}

#[test]
fn malformed_bodies_are_rejected_and_the_server_keeps_working() {
    let server = TestServer::models("models");
    let headers = [("Content-Type", "application/json")];

    let reply = server.request("POST", "/v2/models/iris/infer", &headers, b"{\"inputs\": [");
    reply.assert_error(400, "invalid_json", "invalid JSON body");
    let reply = server.request("POST", "/models/iris/predict", &headers, b"[[5.1, 3.5,");
    reply.assert_error(400, "invalid_json", "invalid JSON body");

    let reply = server.post_json("/v2/models/iris/infer", &json!({"id": "no-inputs"}));
    assert_eq!(reply.status, 400, "{}", reply.text());
    reply.assert_error(400, "invalid_body", "inputs");
    let reply = server.post_json("/models/iris/predict", &json!({"input": [[1, 2, 3, 4]]}));
    reply.assert_error(400, "invalid_input", "inputs");

    let reply = server.post_json(
        "/models/iris/predict",
        &json!({"inputs": {"input": [[1, 2, 3]]}}),
    );
    reply.assert_error(
        400,
        "invalid_input",
        r#"input "input": expected shape [-1, 4], got [1, 3]"#,
    );

    let reply = server.post_json("/models/iris/predict", &json!([[5.1, 3.5, 1.4, 0.2]]));
    assert_eq!(ok_json(&reply)["outputs"]["label"], json!([0]));
}

#[test]
fn unknown_models_and_versions_are_404() {
    let server = TestServer::models("models");
    let infer = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});

    server
        .post_json("/v2/models/nope/infer", &infer)
        .assert_error(404, "model_not_found", r#"model "nope""#);
    server
        .get("/v2/models/nope")
        .assert_error(404, "model_not_found", r#"model "nope""#);
    server
        .post_json("/models/nope/predict", &json!([[5.1, 3.5, 1.4, 0.2]]))
        .assert_error(404, "model_not_found", r#"model "nope""#);
    server
        .post_json("/v2/models/iris/versions/2/infer", &infer)
        .assert_error(404, "model_not_found", r#"version "2""#);

    let body = ok_json(&server.post_json("/v2/models/iris/versions/1/infer", &infer));
    assert_eq!(body["model_version"], "1");
    assert_eq!(output(&body, "label")["data"], json!([0]));
}

#[test]
fn iris_fixture_through_predict_and_v2() {
    let server = TestServer::models("models");
    let cases = fixture("iris");
    assert_eq!(cases.len(), 5, "iris.json has 5 cases");
    for (i, case) in cases.iter().enumerate() {
        let input = &case["input"];
        let rows = shape_of(input)[0];
        let what = format!("case {i} ({rows} rows)");

        // Predict: nested arrays in, nested arrays out.
        let body = ok_json(
            &server.post_json("/models/iris/predict", &json!({"inputs": {"input": input}})),
        );
        let outputs = &body["outputs"];
        assert_eq!(outputs["label"], case["label"], "{what}: predict label");
        assert_eq!(shape_of(&outputs["probabilities"]), vec![rows, 3], "{what}");
        assert_close(
            &outputs["probabilities"],
            &case["probabilities"],
            1e-5,
            &format!("{what}: predict probabilities"),
        );

        // v2: flat data with a shape in, flat data with a shape out.
        let body = ok_json(&server.post_json(
            "/v2/models/iris/infer",
            &json!({"inputs": [{
                "name": "input",
                "shape": [rows, 4],
                "datatype": "FP32",
                "data": flatten(input),
            }]}),
        ));
        assert_eq!(body["model_name"], "iris");
        assert_eq!(body["model_version"], "1");
        assert!(body.get("id").is_none(), "no id was sent: {body}");
        let probabilities = output(&body, "probabilities");
        assert_eq!(probabilities["datatype"], "FP32");
        assert_eq!(probabilities["shape"], json!([rows, 3]));
        assert_close(
            &probabilities["data"],
            &case["probabilities"],
            1e-5,
            &format!("{what}: v2 probabilities"),
        );
        let label = output(&body, "label");
        assert_eq!(label["datatype"], "INT64");
        assert_eq!(label["shape"], json!([rows]));
        assert_eq!(label["data"], case["label"], "{what}: v2 label");
    }

    // `POST /predict` works when exactly one model is loaded: a folder holding only iris.
    let dir = scratch_dir("single");
    std::fs::copy(repo("models/iris.onnx"), dir.join("iris.onnx")).expect("copy iris");
    let models = ModelRegistry::load_dir(&dir).expect("load the single model");
    let ready = tinyserve::protocol::Readiness::new(true);
    let single = TestServer::start(tinyserve::protocol::mount(App::new(), &models, &ready));
    let body = ok_json(&single.post_json("/predict", &cases[1]["input"]));
    assert_eq!(body["outputs"]["label"], cases[1]["label"]);
    // With iris and bytelm loaded, /predict cannot guess.
    server
        .post_json("/predict", &cases[1]["input"])
        .assert_error(404, "not_found", "exactly one loaded model, 2 are loaded");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn requested_outputs_select_what_is_returned() {
    let server = TestServer::models("models");
    let case = &fixture("iris")[1];
    let reply = server.post_json(
        "/v2/models/iris/infer",
        &json!({
            "id": "only-label",
            "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": flatten(&case["input"])}],
            "outputs": [{"name": "label"}],
        }),
    );
    let body = ok_json(&reply);
    assert_eq!(body["id"], "only-label");
    assert_eq!(
        body["outputs"],
        json!([{"name": "label", "datatype": "INT64", "shape": [3], "data": case["label"]}])
    );
}

#[test]
fn add_mul_fixture_is_exact() {
    let server = TestServer::models("models/tests/multi");
    for case in fixture("add_mul") {
        let body = ok_json(&server.post_json(
            "/models/add_mul/predict",
            &json!({"inputs": {"a": case["a"], "b": case["b"]}}),
        ));
        assert_eq!(
            body,
            json!({"outputs": {"sum": case["sum"], "product": case["product"]}})
        );

        let body = ok_json(&server.post_json(
            "/v2/models/add_mul/infer",
            &json!({"inputs": [
                {"name": "b", "shape": [2, 3], "datatype": "FP32", "data": flatten(&case["b"])},
                {"name": "a", "shape": [2, 3], "datatype": "FP32", "data": flatten(&case["a"])},
            ]}),
        ));
        assert_eq!(
            output(&body, "sum"),
            &json!({"name": "sum", "datatype": "FP32", "shape": [2, 3], "data": flatten(&case["sum"])})
        );
        assert_eq!(
            output(&body, "product"),
            &json!({"name": "product", "datatype": "FP32", "shape": [2, 3], "data": flatten(&case["product"])})
        );
    }

    // Two models are loaded, so `POST /predict` cannot pick one.
    server
        .post_json("/predict", &json!([[1, 2]]))
        .assert_error(404, "not_found", "exactly one");
}

// ---- binary tensor data extension ----

const BINARY_HEADER: &str = "Inference-Header-Content-Length";

/// A binary-extension request: `header` as JSON, then `data`.
fn binary_request(server: &TestServer, path: &str, header: &Value, data: &[u8]) -> Reply {
    let json = serde_json::to_vec(header).expect("serialize header");
    let len = json.len().to_string();
    let mut body = json;
    body.extend_from_slice(data);
    server.request(
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
    let server = TestServer::models("models");
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
        let reply = binary_request(&server, "/v2/models/iris/infer", &header, &data);
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
    let server = TestServer::models("models");
    let case = &fixture("iris")[1];
    let data = f32_bytes(&floats(&case["input"]));

    // Binary in, JSON out (no output asks for binary): a plain JSON response.
    let header = json!({"inputs": [{
        "name": "input", "shape": [3, 4], "datatype": "FP32",
        "parameters": {"binary_data_size": data.len()},
    }]});
    let reply = binary_request(&server, "/v2/models/iris/infer", &header, &data);
    let body = ok_json(&reply);
    assert!(reply.header(BINARY_HEADER).is_none(), "JSON-only response");
    assert_eq!(output(&body, "label")["data"], case["label"]);

    // JSON in, every output binary via the request-level parameter.
    let reply = server.post_json(
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
    let reply = binary_request(&server, "/v2/models/iris/infer", &header, &data);
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
    let server = TestServer::models("models/tests/dtypes");
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
            &server,
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
    let server = TestServer::models("models");
    let data = f32_bytes(&[5.1, 3.5, 1.4, 0.2]);
    let input = |size: usize| {
        json!({"inputs": [{
            "name": "input", "shape": [1, 4], "datatype": "FP32",
            "parameters": {"binary_data_size": size},
        }]})
    };

    // The declared size fits the body but not the shape.
    let reply = binary_request(&server, "/v2/models/iris/infer", &input(12), &data[..12]);
    reply.assert_error(
        400,
        "invalid_input",
        r#"input "input": shape [1, 4] of FP32 needs 4 bytes per element, got 12 bytes"#,
    );
    // The declared size is more than the body holds.
    let reply = binary_request(&server, "/v2/models/iris/infer", &input(16), &data[..12]);
    reply.assert_error(
        400,
        "invalid_input",
        r#"input "input": binary_data_size is 16 but only 12 bytes remain"#,
    );
    // Bytes that no input claims.
    let mut long = data.clone();
    long.extend_from_slice(&[0; 4]);
    let reply = binary_request(&server, "/v2/models/iris/infer", &input(16), &long);
    reply.assert_error(
        400,
        "invalid_input",
        "4 bytes of binary data are not claimed",
    );

    // And the same request with the right size works.
    let reply = binary_request(&server, "/v2/models/iris/infer", &input(16), &data);
    assert_eq!(output(&ok_json(&reply), "label")["data"], json!([0]));
}

// ---- the registry ----

#[test]
fn broken_model_folder_fails_naming_the_file() {
    let err =
        ModelRegistry::load_dir(repo("models/tests/broken")).expect_err("broken folder loads");
    assert!(
        err.message().contains("not_a_model.onnx"),
        "message should name the file: {}",
        err.message()
    );
}

/// A fresh empty directory under the system temp dir, removed on drop.
struct EmptyDir(PathBuf);

impl EmptyDir {
    fn new() -> EmptyDir {
        EmptyDir(scratch_dir("empty"))
    }
}

impl Drop for EmptyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn empty_model_folder_fails_saying_so() {
    let dir = EmptyDir::new();
    // A file that is not .onnx does not count as a model.
    std::fs::write(dir.0.join("README.md"), "not a model").expect("write file");
    let err = ModelRegistry::load_dir(&dir.0).expect_err("empty folder loads");
    assert!(
        err.message().contains("no .onnx files"),
        "message: {}",
        err.message()
    );
    assert!(
        err.message().contains(&*dir.0.to_string_lossy()),
        "message should name the folder: {}",
        err.message()
    );

    let missing = dir.0.join("missing");
    let err = ModelRegistry::load_dir(&missing).expect_err("missing folder loads");
    assert!(
        err.message().contains(&*missing.to_string_lossy()),
        "message should name the folder: {}",
        err.message()
    );
}

#[test]
fn registry_clones_share_models() {
    let models = ModelRegistry::load_dir(repo("models")).expect("load models");
    let names: Vec<&str> = models.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["bytelm", "iris"]);
    assert_eq!(models.len(), 2);
    let clone = models.clone();
    let a = models.get("iris").expect("iris");
    let b = clone.get("iris").expect("iris in clone");
    assert!(Arc::ptr_eq(&a, &b), "clones share the loaded model");
    let err = clone.get("nope").expect_err("unknown model");
    assert_eq!(err.status(), 404);
    assert!(err.message().contains("\"nope\""), "{}", err.message());
}

// ---- the session pool under load ----

#[test]
fn concurrent_predictions_are_all_correct() {
    let server = TestServer::models("models");
    // Every (row, label) pair of the fixture; each thread cycles through them from its own offset.
    let rows: Vec<(Value, Value)> = fixture("iris")
        .iter()
        .flat_map(|case| {
            let inputs = case["input"].as_array().expect("rows").clone();
            let labels = case["label"].as_array().expect("labels").clone();
            inputs.into_iter().zip(labels)
        })
        .collect();
    let url = server.url("/models/iris/predict");
    let rows = &rows;
    let url = &url;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                scope.spawn(move || {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .timeout_global(Some(std::time::Duration::from_secs(60)))
                        .build()
                        .into();
                    for i in 0..50 {
                        let (row, label) = &rows[(t * 7 + i) % rows.len()];
                        let mut response = agent
                            .post(url)
                            .send_json(json!({"inputs": {"input": [row]}}))
                            .expect("request");
                        assert_eq!(response.status().as_u16(), 200, "thread {t} request {i}");
                        let body: Value = response.body_mut().read_json().expect("JSON");
                        assert_eq!(
                            body["outputs"]["label"],
                            json!([label]),
                            "thread {t} request {i}: row {row}"
                        );
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("client thread panicked");
        }
    });
}

/// Each model of models/tests/rejects (written by onnx 1.23 at IR version 14) with an input that
/// passes the signature check but that ONNX Runtime rejects when it runs, and what it says.
fn rejected_inputs() -> Vec<(&'static str, Value, &'static str)> {
    let v2 = |inputs: Value| json!({ "inputs": inputs });
    vec![
        (
            "int_div",
            v2(
                json!([{"name": "a", "shape": [1], "datatype": "INT32", "data": [1]},
                      {"name": "b", "shape": [1], "datatype": "INT32", "data": [0]}]),
            ),
            "divi",
        ),
        (
            "gather",
            v2(json!([{"name": "indices", "shape": [1], "datatype": "INT64", "data": [7]}])),
            "out of data bounds",
        ),
        (
            "reshape",
            v2(
                json!([{"name": "x", "shape": [6], "datatype": "FP32", "data": [0, 0, 0, 0, 0, 0]},
                      {"name": "shape", "shape": [2], "datatype": "INT64", "data": [4, 4]}]),
            ),
            "shape",
        ),
        (
            "split",
            v2(
                json!([{"name": "x", "shape": [6], "datatype": "FP32", "data": [0, 0, 0, 0, 0, 0]},
                      {"name": "sizes", "shape": [2], "datatype": "INT64", "data": [2, 2]}]),
            ),
            "split",
        ),
        (
            "squeeze",
            v2(
                json!([{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [0, 0, 0, 0, 0, 0]}]),
            ),
            "queeze",
        ),
    ]
}

#[test]
fn run_time_rejections_by_onnx_runtime_are_400_naming_the_model_and_the_reason() {
    let server = TestServer::models("models/tests/rejects");
    for (model, body, reason) in rejected_inputs() {
        let reply = server.post_json(&format!("/v2/models/{model}/infer"), &body);
        let named = format!("model \"{model}\" rejected the input: ");
        reply.assert_error(400, "invalid_input", &named);
        let message = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.to_lowercase().contains(reason),
            "{model}: the message should give ONNX Runtime's reason ({reason:?}): {message}"
        );
        // The server keeps serving the same model.
        let health = server.get("/healthz");
        assert_eq!(health.status, 200, "after {model}");
    }
}
