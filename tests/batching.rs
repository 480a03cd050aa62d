//! Dynamic batching: concurrent requests run together, and each gets exactly the answer it
//! would get alone.

use std::sync::{Arc, Barrier};

use serde_json::{json, Value};
use tinyserve::model::{Model, ModelOptions, ModelRegistry, Tensor};
use tinyserve::{protocol, App};

use crate::support::{repo, TestServer};

fn server(max_batch_size: usize) -> (TestServer, ModelRegistry) {
    let mut options = ModelOptions::default();
    options.max_batch_size = max_batch_size;
    // Long enough that concurrent requests really meet in one batch on a busy 2-core machine.
    options.batch_timeout = std::time::Duration::from_millis(20);
    let models = ModelRegistry::load_dir_with(repo("models"), &options).expect("load models");
    let ready = protocol::Readiness::new(true);
    let app = protocol::mount(App::new().with_workers(32), &models, &ready);
    (TestServer::start(app), models)
}

/// Distinct inputs of 1 to 3 rows each.
fn cases() -> Vec<Value> {
    (0..24)
        .map(|i| {
            let rows: Vec<Value> = (0..(i % 3 + 1))
                .map(|r| {
                    let f = f64::from(i * 3 + r);
                    json!([
                        4.3 + f * 0.07,
                        2.0 + f * 0.05,
                        1.0 + f * 0.11,
                        0.1 + f * 0.04
                    ])
                })
                .collect();
            json!({"inputs": {"input": rows}})
        })
        .collect()
}

/// Batch sizes `(rows, count)` show that some of `requests` requests (of 1 to 3 rows each) ran
/// together: a batch of more than 3 rows, and fewer batches than requests.
fn assert_requests_shared_batches(sizes: &[(usize, u64)], requests: usize) {
    let batches: u64 = sizes.iter().map(|(_, n)| n).sum();
    assert!(
        sizes.iter().any(|(rows, _)| *rows > 3),
        "no batch held more than one request: {sizes:?}"
    );
    assert!(
        batches < requests as u64,
        "every request ran alone: {sizes:?}"
    );
}

#[test]
fn batched_answers_equal_answers_alone() {
    let (batched, models) = server(8);
    let (alone, _) = server(0);
    let cases = cases();
    let barrier = Arc::new(Barrier::new(cases.len()));
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = cases
            .iter()
            .map(|case| {
                let (barrier, batched) = (Arc::clone(&barrier), &batched);
                scope.spawn(move || {
                    barrier.wait();
                    let reply = batched.post_json("/models/iris/predict", case);
                    assert_eq!(reply.status, 200, "{}", reply.text());
                    reply.json()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    for (case, answer) in cases.iter().zip(&answers) {
        let expected = alone.post_json("/models/iris/predict", case).json();
        assert_eq!(answer, &expected, "batched answer differs for {case}");
        let rows = case["inputs"]["input"].as_array().map_or(0, Vec::len);
        assert_eq!(
            answer["outputs"]["label"].as_array().map_or(0, Vec::len),
            rows
        );
    }
    let iris = models.get("iris").expect("iris");
    assert_requests_shared_batches(&iris.batch_sizes(), cases.len());
    let metrics = batched.get("/metrics").text();
    assert!(
        metrics.contains("tinyserve_batches_total{model=\"iris\",size=\""),
        "{metrics}"
    );
}

#[test]
fn models_with_a_static_first_dimension_are_not_batched() {
    let mut options = ModelOptions::default();
    options.max_batch_size = 8;
    let models = ModelRegistry::load_dir_with(repo("models/tests/multi"), &options).expect("load");
    let add_mul = models.get("add_mul").expect("add_mul");
    assert!(!add_mul.is_batchable());
    assert!(models.get("scale").expect("scale").is_batchable());
}

#[test]
fn a_model_loaded_alone_batches_too() {
    let mut options = ModelOptions::default();
    options.max_batch_size = 8;
    options.batch_timeout = std::time::Duration::from_millis(20);
    let path = repo("models/iris.onnx");
    let model = Model::load("iris", &path, &options).expect("load iris");
    let alone = Model::load("iris", &path, &ModelOptions::default()).expect("load iris");
    assert!(alone.batch_sizes().is_empty(), "batching is off by default");
    let spec = model.input_spec("input").expect("input").clone();
    let inputs: Vec<Tensor> = cases()
        .iter()
        .map(|case| {
            Tensor::from_json(&spec, &case["inputs"]["input"], None, None).expect("valid case")
        })
        .collect();
    let barrier = Barrier::new(inputs.len());
    let answers: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|input| {
                let (barrier, model) = (&barrier, &model);
                scope.spawn(move || {
                    barrier.wait();
                    model.infer(vec![input.clone()]).expect("infer")
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    });
    for (input, answer) in inputs.iter().zip(&answers) {
        let expected = alone.infer(vec![input.clone()]).expect("infer alone");
        assert_eq!(answer, &expected, "batched answer differs for {input:?}");
    }
    assert_requests_shared_batches(&model.batch_sizes(), inputs.len());
}
