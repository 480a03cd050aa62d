//! The session pool under load: concurrent predictions are all correct.

use serde_json::{json, Value};

use crate::support::fixtures::fixture;
use crate::support::TestServer;

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
