//! Access log formats (JSON and human) carry the request id and the model.

use serde_json::{json, Value};

use super::{agent, call, header, iris_case, serve, BOUND};

#[test]
fn access_log_json_and_human_carry_the_request_id_and_model() {
    let server = serve(&["--log-format", "json"]);
    let agent = agent();
    let (body, _) = iris_case();
    let (status, _, health_body) = call(
        &agent,
        "GET",
        &server.url("/healthz"),
        &[("X-Request-ID", "prod-json-healthz-1")],
        "",
    );
    assert_eq!(status, 200);
    let (status, headers, predict_body) = call(
        &agent,
        "POST",
        &server.url("/models/iris/predict"),
        &[
            ("X-Request-ID", "prod-json-predict-2"),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "X-Request-ID"),
        Some("prod-json-predict-2")
    );

    let stderr = server.wait_for_stderr(BOUND, "both access lines", |t| {
        t.contains("prod-json-healthz-1") && t.contains("prod-json-predict-2")
    });
    let line_of = |id: &str| -> Value {
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(id)).collect();
        assert_eq!(lines.len(), 1, "one line per request for {id}:\n{stderr}");
        serde_json::from_str(lines[0])
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {}", lines[0]))
    };
    let health = line_of("prod-json-healthz-1");
    let predict = line_of("prod-json-predict-2");
    for (line, method, path, bytes, model) in [
        (&health, "GET", "/healthz", health_body.len(), Value::Null),
        (
            &predict,
            "POST",
            "/models/iris/predict",
            predict_body.len(),
            json!("iris"),
        ),
    ] {
        let time = line["time"].as_str().unwrap_or_default();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
            "RFC 3339 UTC time: {line}"
        );
        assert_eq!(line["client"], "127.0.0.1", "{line}");
        assert_eq!(line["method"], method, "{line}");
        assert_eq!(line["path"], path, "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["bytes"], bytes, "{line}");
        assert!(
            line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "{line}"
        );
        assert_eq!(line["model"], model, "{line}");
    }
    assert_eq!(health["request_id"], "prod-json-healthz-1");
    assert_eq!(predict["request_id"], "prod-json-predict-2");

    // The human format, the default.
    let server = serve(&[]);
    let (status, _, _) = call(
        &agent,
        "POST",
        &server.url("/models/iris/predict"),
        &[
            ("X-Request-ID", "prod-human-3"),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(status, 200);
    let stderr = server.wait_for_stderr(BOUND, "the access line", |t| t.contains("prod-human-3"));
    let line = stderr
        .lines()
        .find(|l| l.contains("prod-human-3"))
        .unwrap_or_default();
    assert!(
        line.contains("\"POST /models/iris/predict\" 200 ")
            && line.contains("rid=prod-human-3")
            && line.contains("model=iris"),
        "{line}"
    );
}
