//! `/metrics`, parsed by the official Prometheus client, counts the requests made.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fixtures::fixture;
use crate::support::process::run;
use crate::support::python::python_env;
use crate::support::repo;
use crate::support::wire::Conn;

use super::serve;

#[test]
fn metrics_parse_with_prometheus_client_and_count_the_requests_made() {
    const HEALTHZ: usize = 5;
    const PREDICTS: usize = 3;
    let python = python_env();
    let server = serve(&[]);
    for _ in 0..HEALTHZ {
        let mut http = Conn::get(server.addr, "/healthz");
        assert_eq!(http.status, 200);
        http.read_to_end();
    }
    let case = &fixture("iris")[0];
    for _ in 0..PREDICTS {
        let body = json!({"inputs": {"input": case["input"]}});
        let mut http = Conn::post_json(server.addr, "/models/iris/predict", &body);
        assert_eq!(http.status, 200);
        assert_eq!(http.json()["outputs"]["label"], case["label"]);
    }
    let mut http = Conn::get(server.addr, "/no/such/path");
    assert_eq!(http.status, 404);
    http.read_to_end();

    let mut command = Command::new(&python);
    command
        .arg(repo("tests/python/metrics_check.py"))
        .args(["--url", &server.url("/metrics")]);
    let out = run(command, Duration::from_secs(120));
    assert!(
        out.success,
        "metrics_check.py failed (exit {:?}):\n{}\n{}",
        out.code, out.stdout, out.stderr
    );
    let parsed: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|err| {
        panic!(
            "metrics_check.py output is not JSON ({err}): {}",
            out.stdout
        )
    });
    assert!(
        parsed["content_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{}",
        parsed["content_type"]
    );
    let families = parsed["families"].as_array().expect("families");
    let family_type = |name: &str| {
        families
            .iter()
            .find(|f| f["name"] == name)
            .map(|f| f["type"].as_str().unwrap_or("").to_string())
    };
    for (name, kind) in [
        ("tinyserve_requests", "counter"),
        ("tinyserve_request_duration_seconds", "histogram"),
        ("tinyserve_inferences", "counter"),
        ("process_resident_memory_bytes", "gauge"),
    ] {
        assert_eq!(family_type(name).as_deref(), Some(kind), "{name}");
    }
    // The value of the one sample called `name` with exactly `labels`.
    let sample = |name: &str, labels: Value| -> f64 {
        let found: Vec<f64> = families
            .iter()
            .flat_map(|f| f["samples"].as_array().cloned().unwrap_or_default())
            .filter(|s| s["name"] == name && s["labels"] == labels)
            .filter_map(|s| s["value"].as_f64())
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one sample {name}{labels}; parsed: {}",
            out.stdout
        );
        found[0]
    };
    let requests = |method: &str, route: &str, status: &str| {
        sample(
            "tinyserve_requests_total",
            json!({"method": method, "route": route, "status": status}),
        )
    };
    assert_eq!(requests("GET", "/healthz", "200"), HEALTHZ as f64);
    assert_eq!(
        requests("POST", "/models/<name>/predict", "200"),
        PREDICTS as f64
    );
    assert_eq!(requests("GET", "(unmatched)", "404"), 1.0);
    assert_eq!(
        sample("tinyserve_inferences_total", json!({"model": "iris"})),
        PREDICTS as f64
    );
    let route = json!({"route": "/models/<name>/predict"});
    assert_eq!(
        sample("tinyserve_request_duration_seconds_count", route.clone()),
        PREDICTS as f64
    );
    assert_eq!(
        sample(
            "tinyserve_request_duration_seconds_bucket",
            json!({"route": "/models/<name>/predict", "le": "+Inf"}),
        ),
        PREDICTS as f64
    );
    assert!(sample("tinyserve_request_duration_seconds_sum", route) > 0.0);
    assert!(sample("process_resident_memory_bytes", json!({})) > 0.0);
}
