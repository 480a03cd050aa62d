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

/// Cosine similarity of two JSON vectors.
fn cosine(a: &Value, b: &Value) -> f64 {
    let numbers = |v: &Value| -> Vec<f64> {
        v.as_array()
            .map(|v| v.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (a, b) = (numbers(a), numbers(b));
    assert_eq!(a.len(), b.len(), "vectors of different lengths");
    let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(&a) * norm(&b))
}

/// The vectors of an answer of `/v1/embeddings` (OpenAI's shape) or `/embed` (a list).
fn vectors_of(answer: &Value) -> Vec<Value> {
    match answer.get("data") {
        Some(data) => data
            .as_array()
            .map(|d| d.iter().map(|e| e["embedding"].clone()).collect())
            .unwrap_or_default(),
        None => answer.as_array().cloned().unwrap_or_default(),
    }
}

#[test]
fn concurrent_embedding_requests_share_a_batch_when_batching_is_on() {
    // Four requests in flight at once (the server's four workers): 3 + 3 + 2 + 2 = 10 texts,
    // the batch size, so the batch runs as soon as the last one is queued; the long delay only
    // keeps the first ones waiting for it on a busy machine.
    let requests = [
        (
            "/v1/embeddings",
            json!({"model": "tinyembed", "input": ["a class", "a loop", "the list of keywords"],
                   "encoding_format": "float"}),
        ),
        (
            "/v1/embeddings",
            json!({"model": "tinyembed", "input": ["an int", "x", "while True: pass"],
                   "encoding_format": "float"}),
        ),
        (
            "/embed",
            json!({"inputs": ["lambda", "yield from a generator"]}),
        ),
        (
            "/embed",
            json!({"inputs": ["try and except", "a dict"], "normalize": false}),
        ),
    ];
    let batched = ServeChild::builder()
        .models(repo("models"))
        .args(["--max-batch-size", "tinyembed=10"])
        .args(["--batch-timeout-us", "5000000"])
        .start();
    let barrier = std::sync::Barrier::new(requests.len());
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .iter()
            .map(|(path, body)| {
                let (barrier, batched) = (&barrier, &batched);
                scope.spawn(move || {
                    barrier.wait();
                    batched.ok(path, body)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    // One batch of the 10 texts, and no other: every request ran in it.
    let series = "tinyserve_batches_total{model=\"tinyembed\",size=\"10\"}";
    assert_eq!(batched.metric(series), 1.0, "{}", batched.stderr());
    let mut http = Conn::get(batched.addr, "/metrics");
    let metrics = String::from_utf8(http.read_to_end()).expect("metrics are UTF-8");
    let batches: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("tinyserve_batches_total{model=\"tinyembed\""))
        .collect();
    assert_eq!(batches, [format!("{series} 1")], "{metrics}");
    // Each request got its own vectors, normalized or not as it asked: those a server without
    // batching gives it.
    let alone = ServeChild::start(&["--max-batch-size", "tinyembed=1"]);
    assert!(
        embedding_batches(&alone).is_empty(),
        "MODEL=1 turns an embedding model's batching off"
    );
    for ((path, body), answer) in requests.iter().zip(&answers) {
        let expected = vectors_of(&alone.ok(path, body));
        let got = vectors_of(answer);
        assert_eq!(got.len(), expected.len(), "{path} {body}: {answer}");
        for (got, expected) in got.iter().zip(&expected) {
            assert!(cosine(got, expected) > 0.99999, "{path} {body}: {answer}");
            let length = |v: &Value| {
                v.as_array()
                    .map_or(0.0, |v| {
                        v.iter()
                            .filter_map(Value::as_f64)
                            .map(|x| x * x)
                            .sum::<f64>()
                    })
                    .sqrt()
            };
            let (a, b) = (length(got), length(expected));
            assert!(
                (a - b).abs() < 1e-4 * b,
                "{path} {body}: length {a} against {b}"
            );
        }
    }
}

/// The texts each embedding batch ran, from `/metrics`: (batch size, count) pairs.
fn embedding_batches(server: &ServeChild) -> Vec<(usize, u64)> {
    server
        .metrics_text()
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("tinyserve_batches_total{model=\"tinyembed\",size=\"")?;
            let (size, rest) = rest.split_once('"')?;
            let count = rest.rsplit_once(' ')?.1;
            Some((size.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

#[test]
fn embedding_requests_are_batched_by_default_without_a_wait() {
    // No flag: the encoder's batcher runs every request (its batches count every text), a lone
    // request at once, and requests that arrive while both sessions are busy together.
    let server = ServeChild::start(&[]);
    let texts: Vec<String> = (0..32)
        .map(|i| format!("text number {i} about classes, loops and the list of keywords"))
        .collect();
    let body = json!({"model": "tinyembed", "input": texts});
    let started = std::time::Instant::now();
    server.ok(
        "/v1/embeddings",
        &json!({"model": "tinyembed", "input": "alone"}),
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a lone request does not wait for company"
    );
    assert_eq!(
        embedding_batches(&server),
        [(1, 1)],
        "{}",
        server.metrics_text()
    );
    let mut sent = 1;
    for _ in 0..5 {
        std::thread::scope(|scope| {
            for _ in 0..16 {
                scope.spawn(|| server.ok("/v1/embeddings", &body));
            }
        });
        sent += 16 * 32;
        if embedding_batches(&server)
            .iter()
            .any(|&(size, _)| size > 32)
        {
            break;
        }
    }
    let batches = embedding_batches(&server);
    let texts: u64 = batches.iter().map(|&(size, n)| size as u64 * n).sum();
    assert_eq!(texts, sent, "every text ran in a batch: {batches:?}");
    assert!(
        batches.iter().any(|&(size, _)| size > 32),
        "16 requests of 32 texts in flight on 2 sessions share batches: {batches:?}"
    );
}
