//! Validation: invalid inputs are 400 naming the input, multi-input names and static dimensions are
//! checked, malformed bodies are rejected, unknown models and versions are 404.

use serde_json::json;

use crate::support::{Reply, TestApp};

use super::{infer_one, ok_json, output};

#[test]
fn invalid_inputs_are_400_naming_the_input() {
    let client = TestApp::models("models/tests/dtypes");
    let cases: Vec<(&str, Reply, &str)> = vec![
        (
            "unknown input name",
            client.post_json(
                "/v2/models/echo_fp32/infer",
                &json!({"inputs": [{"name": "z", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}),
            ),
            r#"unknown input "z": model "echo_fp32" has inputs "x""#,
        ),
        (
            "wrong rank",
            infer_one(&client, "echo_fp32", "FP32", json!([6]), json!([1, 2, 3, 4, 5, 6])),
            r#"input "x": expected shape [-1, 3], got [6]"#,
        ),
        (
            "wrong rank, nested without shape (predict)",
            client.post_json(
                "/models/echo_fp32/predict",
                &json!({"inputs": {"x": [1, 2, 3]}}),
            ),
            r#"input "x": expected shape [-1, 3], got [3]"#,
        ),
        (
            "element count does not match the shape",
            infer_one(&client, "echo_fp32", "FP32", json!([2, 3]), json!([1, 2, 3, 4, 5])),
            r#"input "x": shape [2, 3] needs 6 elements, got 5"#,
        ),
        (
            "declared datatype differs from the model's",
            infer_one(&client, "echo_fp32", "FP64", json!([1, 3]), json!([1, 2, 3])),
            r#"input "x": expected datatype FP32, got FP64"#,
        ),
        (
            "UINT8 above range",
            infer_one(&client, "echo_uint8", "UINT8", json!([1, 3]), json!([1, 2, 300])),
            r#"input "x": element 2 is 300, out of range for UINT8 (0 to 255)"#,
        ),
        (
            "INT8 below range",
            infer_one(&client, "echo_int8", "INT8", json!([1, 3]), json!([-129, 0, 0])),
            r#"input "x": element 0 is -129, out of range for INT8 (-128 to 127)"#,
        ),
        (
            "non-integral INT32",
            infer_one(&client, "echo_int32", "INT32", json!([1, 3]), json!([1, 1.5, 2])),
            r#"input "x": element 1 is 1.5, expected an integer for INT32"#,
        ),
        (
            "BOOL given as a number",
            infer_one(&client, "echo_bool", "BOOL", json!([1, 3]), json!([true, 1, false])),
            r#"input "x": element 1 is 1, expected true or false for BOOL"#,
        ),
        (
            "BOOL given as a string",
            infer_one(&client, "echo_bool", "BOOL", json!([1, 3]), json!([true, false, "true"])),
            r#"input "x": element 2 is "true", expected true or false for BOOL"#,
        ),
        (
            "string in FP32",
            infer_one(&client, "echo_fp32", "FP32", json!([1, 3]), json!([1.0, "2", 3.0])),
            r#"input "x": element 1 is "2", expected a number for FP32"#,
        ),
        (
            "ragged nested array",
            infer_one(&client, "echo_fp32", "FP32", json!([2, 3]), json!([[1, 2, 3], [4, 5]])),
            r#"input "x": ragged array at [1]: expected 3 elements, got 2"#,
        ),
        (
            "ragged nested array (predict)",
            client.post_json(
                "/models/echo_fp32/predict",
                &json!([[1, 2, 3], [4, 5, 6], [7, 8]]),
            ),
            r#"input "x": ragged array at [2]: expected 3 elements, got 2"#,
        ),
        (
            "negative dimension in shape",
            infer_one(&client, "echo_fp32", "FP32", json!([-1, 3]), json!([1, 2, 3])),
            r#"input "x": shape [-1, 3] has a negative dimension"#,
        ),
        (
            "unknown requested output",
            client.post_json(
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

    // The client is unharmed: a valid request still gets the right answer.
    let reply = infer_one(
        &client,
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
    let client = TestApp::models("models/tests/multi");
    let a = json!([1, 2, 3, 4, 5, 6]);

    let reply = client.post_json(
        "/v2/models/add_mul/infer",
        &json!({"inputs": [{"name": "a", "shape": [2, 3], "datatype": "FP32", "data": a}]}),
    );
    reply.assert_error(
        400,
        "invalid_input",
        r#"missing input "b": model "add_mul" has inputs "a", "b""#,
    );

    let reply = client.post_json(
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

    let reply = client.post_json(
        "/models/add_mul/predict",
        &json!({"inputs": {"a": [[1, 2, 3], [4, 5, 6]]}}),
    );
    reply.assert_error(400, "invalid_input", r#"missing input "b""#);

    let reply = client.post_json("/models/add_mul/predict", &json!([[1, 2, 3], [4, 5, 6]]));
    reply.assert_error(
        400,
        "invalid_input",
        r#"model "add_mul" has inputs "a", "b""#,
    );
}

#[test]
fn malformed_bodies_are_rejected_and_the_server_keeps_working() {
    let client = TestApp::models("models");
    let headers = [("Content-Type", "application/json")];

    let reply = client.request("POST", "/v2/models/iris/infer", &headers, b"{\"inputs\": [");
    reply.assert_error(400, "invalid_json", "invalid JSON body");
    let reply = client.request("POST", "/models/iris/predict", &headers, b"[[5.1, 3.5,");
    reply.assert_error(400, "invalid_json", "invalid JSON body");

    let reply = client.post_json("/v2/models/iris/infer", &json!({"id": "no-inputs"}));
    assert_eq!(reply.status, 400, "{}", reply.text());
    reply.assert_error(400, "invalid_body", "inputs");
    let reply = client.post_json("/models/iris/predict", &json!({"input": [[1, 2, 3, 4]]}));
    reply.assert_error(400, "invalid_input", "inputs");

    let reply = client.post_json(
        "/models/iris/predict",
        &json!({"inputs": {"input": [[1, 2, 3]]}}),
    );
    reply.assert_error(
        400,
        "invalid_input",
        r#"input "input": expected shape [-1, 4], got [1, 3]"#,
    );

    let reply = client.post_json("/models/iris/predict", &json!([[5.1, 3.5, 1.4, 0.2]]));
    assert_eq!(ok_json(&reply)["outputs"]["label"], json!([0]));
}

#[test]
fn unknown_models_and_versions_are_404() {
    let client = TestApp::models("models");
    let infer = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]});

    client
        .post_json("/v2/models/nope/infer", &infer)
        .assert_error(404, "model_not_found", r#"model "nope""#);
    client
        .get("/v2/models/nope")
        .assert_error(404, "model_not_found", r#"model "nope""#);
    client
        .post_json("/models/nope/predict", &json!([[5.1, 3.5, 1.4, 0.2]]))
        .assert_error(404, "model_not_found", r#"model "nope""#);
    client
        .post_json("/v2/models/iris/versions/2/infer", &infer)
        .assert_error(404, "model_not_found", r#"version "2""#);

    let body = ok_json(&client.post_json("/v2/models/iris/versions/1/infer", &infer));
    assert_eq!(body["model_version"], "1");
    assert_eq!(output(&body, "label")["data"], json!([0]));
}
