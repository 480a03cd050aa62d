//! Values ONNX Runtime rejects at run time are a 400 naming the model and the reason.

use serde_json::{json, Value};

use crate::support::TestApp;

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
    let client = TestApp::models("models/tests/rejects");
    for (model, body, reason) in rejected_inputs() {
        let reply = client.post_json(&format!("/v2/models/{model}/infer"), &body);
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
        // The client keeps serving the same model.
        let health = client.get("/healthz");
        assert_eq!(health.status, 200, "after {model}");
    }
}
