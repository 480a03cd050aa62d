//! Encoder folders served as embedding models (issue #24): `POST /v1/embeddings` through the
//! official `openai` client and text-embeddings-inference's `POST /embed`, against the Python
//! reference `models/encoder_reference.py` (onnxruntime + tokenizers + NumPy pooling, each text
//! alone), on the bundled `models/tinyembed` (mean pooling, Normalize, `token_type_ids`) and the
//! test folder `models/tests/encoders/clsraw` (CLS pooling, no Normalize, no
//! `token_type_ids`); the limits and errors; start-up errors.
//!
//! Expected vectors come from the reference at run time, never written down here, so the models
//! can be regenerated.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::process::run;
use crate::support::python::{assert_checks_passed, python_env};
use crate::support::serve::{assert_refuses_to_serve, ServeChild};
use crate::support::wire::Conn;
use crate::support::{repo, scratch_dir};

/// `tests/python/embeddings_check.py` against `server`, serving `folder`; asserts every check
/// passed and the `needles` are among them.
fn run_embeddings_check(server: &ServeChild, folder: &str, needles: &[&str]) {
    let mut command = Command::new(python_env());
    command
        .arg(repo("tests/python/embeddings_check.py"))
        .arg(server.base())
        .arg(repo(folder));
    let out = run(command, Duration::from_secs(300));
    let report = format!(
        "{}\n--- server's stderr ---\n{}",
        out.report(),
        server.stderr()
    );
    assert_checks_passed(&out, "embeddings_check.py", &report, needles);
}

#[test]
fn the_official_openai_client_gets_the_reference_embeddings() {
    let server = ServeChild::start(&[]);
    run_embeddings_check(
        &server,
        "models/tinyembed",
        &[
            "ok    models.list() contains tinyembed",
            "ok    a list, encoding_format float: 6 vectors",
            "ok    the client's default (base64, decoded): 6 vectors",
            "ok    encoding_format base64 decoded as little-endian float32: 6 vectors",
            "ok    a single string: 1 vectors",
            "ok    token-id lists: 3 vectors",
            "ok    dimensions=16: 2 vectors",
            "ok    usage counts the reference's",
            "ok    model iris raises BadRequestError",
            "ok    an empty input list raises BadRequestError",
            "ok    2049 inputs raises BadRequestError",
            "ok    50,001 characters raises BadRequestError",
            "ok    an unknown model raises NotFoundError",
            "ok    /embed a list (normalized by default): 5 vectors",
            "ok    /embed normalize false",
            "ok    /embed an input over the maximum length: 413",
            "ok    /embed truncate true",
            "ok    /embed model iris: 400",
        ],
    );
}

#[test]
fn cls_pooling_without_normalize_gets_the_reference_embeddings() {
    let server = ServeChild::builder()
        .models(repo("models/tests/encoders"))
        .start();
    run_embeddings_check(
        &server,
        "models/tests/encoders/clsraw",
        &[
            "ok    a list, encoding_format float: 6 vectors",
            "ok    /embed a string: 1 vectors",
            "ok    /embed normalize false",
        ],
    );
}

/// POSTs `body` to `path`; the status and the JSON answer.
fn post(server: &ServeChild, path: &str, body: &Value) -> (u16, Value) {
    let mut http = Conn::post_json(server.addr, path, body);
    let status = http.status;
    (status, http.json())
}

#[test]
fn embed_names_the_model_when_several_are_served_and_other_routes_refuse_encoders() {
    let dir = scratch_dir("two-encoders");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for folder in ["models/tinyembed", "models/tests/encoders/clsraw"] {
        let name = folder.rsplit('/').next().unwrap_or(folder);
        std::os::unix::fs::symlink(repo(folder), dir.join(name)).expect("symlink");
    }
    let server = ServeChild::builder().models(&dir).start();
    let (status, answer) = post(&server, "/embed", &json!({"inputs": "a class"}));
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "invalid_input", "{answer}");
    let message = answer["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("several embedding models are loaded (clsraw, tinyembed)")
            && message.contains("\"model\""),
        "{answer}"
    );
    for (model, width) in [("clsraw", 32), ("tinyembed", 64)] {
        let body = json!({"inputs": ["a class", "a loop"], "model": model});
        let (status, answer) = post(&server, "/embed", &body);
        assert_eq!(status, 200, "{answer}");
        let vectors = answer.as_array().expect("a list of vectors");
        assert_eq!(vectors.len(), 2, "{answer}");
        assert!(
            vectors
                .iter()
                .all(|v| v.as_array().map(Vec::len) == Some(width)),
            "{answer}"
        );
    }
    // An embedding model is not a v2 model, nor a text generator.
    let mut http = Conn::get(server.addr, "/v2/models/tinyembed");
    let body = http.json();
    assert_eq!(http.status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("is an embedding model") && m.contains("/v1/embeddings")),
        "{body}"
    );
    let (status, answer) = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "tinyembed", "input": "x", "encoding_format": "int8"}),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["type"], "invalid_request_error", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("encoding_format \"int8\"")),
        "{answer}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_encoder_folder_whose_model_does_not_fit_stops_start_up_naming_it() {
    let dir = scratch_dir("serve-bad-encoder");
    let folder = dir.join("myembed");
    std::fs::create_dir_all(&folder).expect("mkdir");
    for name in ["tokenizer.json", "modules.json", "config.json"] {
        std::fs::copy(repo("models/tinyembed").join(name), folder.join(name)).expect("copy");
    }
    std::fs::copy(repo("models/iris.onnx"), folder.join("model.onnx")).expect("copy iris");
    let mut command = crate::support::process::tinyserve();
    // Without --exit-on-error the folder is UNAVAILABLE and the rest serves (tests/repository.rs).
    command
        .args(["serve", "--port", "0", "--exit-on-error", "--models"])
        .arg(&dir);
    let out = assert_refuses_to_serve(command, "serving iris.onnx as an encoder succeeded");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.stderr.starts_with("error: ")
            && out.stderr.contains(&folder.display().to_string())
            && out.stderr.contains("no input \"input_ids\"")
            && out.stderr.contains("no output \"last_hidden_state\""),
        "stderr: {}",
        out.stderr
    );
}
