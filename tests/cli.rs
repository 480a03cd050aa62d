//! The `tinyserve` binary: `inspect`, `predict` and `serve`, run as a user would.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fixtures::{assert_close, fixture, flatten};
use crate::support::process::{run, tinyserve};
use crate::support::serve::{assert_refuses_to_serve, ServeChild};
use crate::support::{agent, repo, scratch_dir};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn inspect_prints_the_signature() {
    let mut command = tinyserve();
    command.arg("inspect").arg(repo("models/iris.onnx"));
    let out = run(command, LIMIT);
    assert!(out.success, "exit {:?}; stderr: {}", out.code, out.stderr);
    // Compare whitespace-normalized lines, so column widths are free to change.
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        lines[0].starts_with("model iris"),
        "first line names the model: {}",
        out.stdout
    );
    let position = |wanted: &str| {
        lines
            .iter()
            .position(|l| l == wanted)
            .unwrap_or_else(|| panic!("no line {wanted:?} in:\n{}", out.stdout))
    };
    let inputs = position("inputs:");
    let input = position("input FP32 [-1, 4]");
    let outputs = position("outputs:");
    let probabilities = position("probabilities FP32 [-1, 3]");
    let label = position("label INT64 [-1]");
    assert!(
        inputs < input && input < outputs && outputs < probabilities && probabilities < label,
        "sections in order:\n{}",
        out.stdout
    );
}

#[test]
fn inspect_of_a_broken_file_names_it() {
    let mut command = tinyserve();
    command
        .arg("inspect")
        .arg(repo("models/tests/broken/not_a_model.onnx"));
    let out = run(command, LIMIT);
    assert!(!out.success, "inspecting garbage succeeded: {}", out.stdout);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("not_a_model.onnx"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn predict_prints_the_outputs_as_json() {
    let case = &fixture("iris")[0];
    let mut command = tinyserve();
    command
        .arg("predict")
        .arg(repo("models/iris.onnx"))
        .args(["--input", "[[5.1,3.5,1.4,0.2]]"]);
    let out = run(command, LIMIT);
    assert!(out.success, "exit {:?}; stderr: {}", out.code, out.stderr);
    assert_eq!(
        case["input"],
        json!([[5.1, 3.5, 1.4, 0.2]]),
        "fixture case 0"
    );
    let body: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {}", out.stdout));
    assert_eq!(body["outputs"]["label"], case["label"]);
    assert_eq!(body["outputs"]["label"], json!([0]));
    assert_close(
        &body["outputs"]["probabilities"],
        &case["probabilities"],
        1e-5,
        "CLI probabilities",
    );

    // The named form works too, for several rows.
    let case = &fixture("iris")[1];
    let mut command = tinyserve();
    command
        .arg("predict")
        .arg(repo("models/iris.onnx"))
        .arg("--input")
        .arg(json!({"inputs": {"input": case["input"]}}).to_string());
    let out = run(command, LIMIT);
    assert!(out.success, "exit {:?}; stderr: {}", out.code, out.stderr);
    let body: Value = serde_json::from_str(out.stdout.trim()).expect("stdout is JSON");
    assert_eq!(body["outputs"]["label"], case["label"]);
}

#[test]
fn predict_with_bad_input_fails_with_a_clear_message() {
    let predict = |input: &str| {
        let mut command = tinyserve();
        command
            .arg("predict")
            .arg(repo("models/iris.onnx"))
            .args(["--input", input]);
        run(command, LIMIT)
    };

    let out = predict("[[1,2,3]]");
    assert!(!out.success, "bad shape succeeded: {}", out.stdout);
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stdout, "", "nothing on stdout on failure");
    assert!(
        out.stderr
            .starts_with(r#"error: input "input": expected shape [-1, 4], got [1, 3]"#),
        "stderr: {}",
        out.stderr
    );

    let out = predict("[[1,2,3,\"x\"]]");
    assert!(!out.success);
    assert!(
        out.stderr
            .starts_with(r#"error: input "input": element 3 is "x", expected a number for FP32"#),
        "stderr: {}",
        out.stderr
    );

    let out = predict("[[1,2,3,");
    assert!(!out.success);
    assert!(
        out.stderr.starts_with("error: invalid JSON body"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn serve_listens_and_answers() {
    let server = ServeChild::start(&[]);
    let agent = agent(Duration::from_secs(60));

    let mut response = agent
        .get(server.url("/v2/health/ready"))
        .call()
        .expect("GET /v2/health/ready");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.body_mut().read_json().expect("JSON");
    assert_eq!(body, json!({"ready": true}));

    let case = &fixture("iris")[1];
    let mut response = agent
        .post(server.url("/v2/models/iris/infer"))
        .send_json(json!({
            "id": "cli",
            "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": flatten(&case["input"])}],
        }))
        .expect("POST infer");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.body_mut().read_json().expect("JSON");
    assert_eq!(body["id"], "cli");
    let outputs = body["outputs"].as_array().expect("outputs");
    let label = outputs
        .iter()
        .find(|o| o["name"] == "label")
        .expect("label output");
    assert_eq!(label["data"], case["label"]);
    let probabilities = outputs
        .iter()
        .find(|o| o["name"] == "probabilities")
        .expect("probabilities output");
    assert_close(
        &probabilities["data"],
        &case["probabilities"],
        1e-5,
        "served probabilities",
    );

    // The Flask-style route, as a demo script would call it.
    let mut response = agent
        .post(server.url("/models/iris/predict"))
        .send_json(json!([[5.1, 3.5, 1.4, 0.2]]))
        .expect("POST /models/iris/predict");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.body_mut().read_json().expect("JSON");
    assert_eq!(body["outputs"]["label"], json!([0]));
}

#[test]
fn serve_with_a_broken_model_and_exit_on_error_exits_naming_it() {
    // Without --exit-on-error the broken model is UNAVAILABLE and the others serve
    // (tests/repository.rs).
    let mut command = tinyserve();
    command
        .args(["serve", "--port", "0", "--exit-on-error", "--models"])
        .arg(repo("models/tests/broken"));
    let out = assert_refuses_to_serve(command, "serving a broken folder succeeded");
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("not_a_model.onnx"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn serve_with_an_empty_folder_exits_saying_so() {
    let dir = scratch_dir("cli-empty");
    let mut command = tinyserve();
    command.args(["serve", "--port", "0", "--models"]).arg(&dir);
    let out = run(command, LIMIT);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.success, "serving an empty folder succeeded");
    assert!(
        out.stderr.contains("no .onnx files"),
        "stderr: {}",
        out.stderr
    );
}
