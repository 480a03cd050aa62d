//! `--root-path`: routes answer with and without the prefix.

use serde_json::{json, Value};
use tinyserve::{App, Request, Settings};

use crate::support::TestServer;

use super::{agent, call, get_with, iris_case, serve};

#[test]
fn root_path_routes_with_and_without_the_prefix() {
    let server = serve(&["--root-path", "/api"]);
    let agent = agent();
    for path in ["/api/healthz", "/healthz"] {
        let (status, _, body) = call(&agent, "GET", &server.url(path), &[], "");
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"ok"}"#),
            "{path}"
        );
    }
    let (body, label) = iris_case();
    for path in ["/api/models/iris/predict", "/models/iris/predict"] {
        let (status, _, text) = call(
            &agent,
            "POST",
            &server.url(path),
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(status, 200, "{path}: {text}");
        let got: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(got["outputs"]["label"], label, "{path}");
    }
    // The prefix is a whole path segment: /apix is not /api.
    let (status, _, _) = call(&agent, "GET", &server.url("/apix/healthz"), &[], "");
    assert_eq!(status, 404);
    // Metrics label both spellings with the route template.
    let (_, _, metrics) = call(&agent, "GET", &server.url("/api/metrics"), &[], "");
    assert!(
        metrics.contains(
            "tinyserve_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2\n"
        ),
        "{metrics}"
    );

    // What handlers see: the library with the same setting.
    let mut settings = Settings::default();
    settings.root_path = "/api".to_string();
    settings.workers = 2;
    let app = App::new().with_settings(settings).get("/whoami", |req: &Request| {
        json!({"path": req.path(), "root_path": req.root_path(), "base_url": req.base_url()})
    });
    let lib = TestServer::start(app);
    for path in ["/api/whoami", "/whoami"] {
        let (http, who) = get_with(lib.addr, path, "Host: models.example.com\r\n");
        assert_eq!(http.status, 200, "{path}");
        assert_eq!(
            who,
            json!({"path": "/whoami", "root_path": "/api",
                   "base_url": "http://models.example.com/api"}),
            "{path}"
        );
    }
}
