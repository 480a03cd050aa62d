//! The Iris and add_mul fixtures through `/predict` and v2, and requested outputs.

use serde_json::json;
use tinyserve::model::ModelRegistry;
use tinyserve::App;

use crate::support::fixtures::{assert_close, fixture, flatten};
use crate::support::{repo, scratch_dir, TestApp};

use super::{ok_json, output, shape_of};

#[test]
fn iris_fixture_through_predict_and_v2() {
    let client = TestApp::models("models");
    let cases = fixture("iris");
    assert_eq!(cases.len(), 5, "iris.json has 5 cases");
    for (i, case) in cases.iter().enumerate() {
        let input = &case["input"];
        let rows = shape_of(input)[0];
        let what = format!("case {i} ({rows} rows)");

        // Predict: nested arrays in, nested arrays out.
        let body = ok_json(
            &client.post_json("/models/iris/predict", &json!({"inputs": {"input": input}})),
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
        let body = ok_json(&client.post_json(
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
    let single = TestApp(tinyserve::protocol::mount(App::new(), &models, &ready));
    let body = ok_json(&single.post_json("/predict", &cases[1]["input"]));
    assert_eq!(body["outputs"]["label"], cases[1]["label"]);
    // With iris and bytelm loaded, /predict cannot guess.
    client
        .post_json("/predict", &cases[1]["input"])
        .assert_error(404, "not_found", "exactly one loaded model, 2 are loaded");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn requested_outputs_select_what_is_returned() {
    let client = TestApp::models("models");
    let case = &fixture("iris")[1];
    let reply = client.post_json(
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
    let client = TestApp::models("models/tests/multi");
    for case in fixture("add_mul") {
        let body = ok_json(&client.post_json(
            "/models/add_mul/predict",
            &json!({"inputs": {"a": case["a"], "b": case["b"]}}),
        ));
        assert_eq!(
            body,
            json!({"outputs": {"sum": case["sum"], "product": case["product"]}})
        );

        let body = ok_json(&client.post_json(
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
    client
        .post_json("/predict", &json!([[1, 2]]))
        .assert_error(404, "not_found", "exactly one");
}
