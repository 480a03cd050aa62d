//! CORS and the API key guard the binary.

use serde_json::Value;

use crate::support::process::tinyserve;
use crate::support::serve::{assert_refuses_to_serve, ServeChild};

use super::{agent, call, header, iris_case, BOUND};

#[test]
fn cors_and_api_key_guard_the_binary() {
    const KEY: &str = "ts-secret-6f1d2c9a";
    let server = ServeChild::builder()
        .args([
            "--cors-origin",
            "http://demo.local",
            "--api-key-env",
            "TS_KEY",
        ])
        .env("TS_KEY", KEY)
        .start();
    let agent = agent();
    let url = server.url("/models/iris/predict");
    let (body, label) = iris_case();
    let json_type = ("Content-Type", "application/json");
    let bearer = format!("Bearer {KEY}");

    // A browser's preflight carries no credentials; it is answered before the key check.
    let (status, headers, _) = call(
        &agent,
        "OPTIONS",
        &url,
        &[
            ("Origin", "http://demo.local"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        "",
    );
    assert_eq!(status, 204);
    assert_eq!(
        header(&headers, "Access-Control-Allow-Origin"),
        Some("http://demo.local")
    );
    assert!(header(&headers, "Access-Control-Allow-Methods").is_some_and(|m| m.contains("POST")));
    assert!(header(&headers, "Access-Control-Allow-Headers")
        .is_some_and(|h| h.to_ascii_lowercase().contains("authorization")));

    // The allowed origin gets the header, on success and on a 401 alike (so the page can
    // read the error); another origin gets none.
    let auth = [
        ("Origin", "http://demo.local"),
        ("Authorization", bearer.as_str()),
        json_type,
    ];
    let (status, headers, text) = call(&agent, "POST", &url, &auth, &body);
    assert_eq!(status, 200, "{text}");
    let got: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(got["outputs"]["label"], label);
    assert_eq!(
        header(&headers, "Access-Control-Allow-Origin"),
        Some("http://demo.local")
    );
    let models = server.url("/models");
    for (headers, status, allowed) in [
        (
            vec![("Origin", "http://demo.local")],
            401,
            Some("http://demo.local"),
        ),
        (
            vec![("Origin", "http://evil.local"), ("Authorization", &bearer)],
            200,
            None,
        ),
    ] {
        let (got, headers, _) = call(&agent, "GET", &models, &headers, "");
        assert_eq!(got, status);
        assert_eq!(header(&headers, "Access-Control-Allow-Origin"), allowed);
    }
    let (status, headers, _) = call(
        &agent,
        "OPTIONS",
        &url,
        &[
            ("Origin", "http://evil.local"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    );
    assert_ne!(status, 204, "no preflight approval for another origin");
    assert_eq!(header(&headers, "Access-Control-Allow-Origin"), None);

    // The key: missing or wrong is 401 with a Bearer challenge; right is 200.
    let wrong = "Bearer ts-wrong-key-0000";
    for headers in [vec![json_type], vec![json_type, ("Authorization", wrong)]] {
        let (status, got_headers, text) = call(&agent, "POST", &url, &headers, &body);
        assert_eq!(status, 401, "{headers:?}: {text}");
        assert_eq!(header(&got_headers, "WWW-Authenticate"), Some("Bearer"));
        let error: Value = serde_json::from_str(&text).expect("JSON error");
        assert_eq!(error["code"], "unauthorized", "{text}");
    }
    let (status, _, text) = call(
        &agent,
        "POST",
        &url,
        &[json_type, ("Authorization", &bearer)],
        &body,
    );
    assert_eq!(status, 200, "{text}");
    // The probes stay public: orchestrators have no key.
    for path in ["/healthz", "/readyz"] {
        let (status, _, _) = call(&agent, "GET", &server.url(path), &[], "");
        assert_eq!(status, 200, "{path} without a key");
    }

    // The access log recorded those requests, and never a key.
    let stderr = server.wait_for_stderr(BOUND, "the access line of GET /readyz", |t| {
        t.contains("\"GET /readyz\" 200")
    });
    assert!(
        stderr.contains("\"POST /models/iris/predict\" 401"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(KEY),
        "the key leaked into stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("ts-wrong-key-0000"),
        "a presented key leaked into stderr:\n{stderr}"
    );

    // The variable unset: serve refuses to start, naming it.
    let mut command = tinyserve();
    command
        .args([
            "serve",
            "--port",
            "0",
            "--api-key-env",
            "TS_KEY_NOT_SET_ANYWHERE",
        ])
        .env_remove("TS_KEY_NOT_SET_ANYWHERE");
    let out = assert_refuses_to_serve(command, "serve started without its key");
    assert!(
        out.stderr.contains("TS_KEY_NOT_SET_ANYWHERE"),
        "the error names the variable: {}",
        out.stderr
    );
}
