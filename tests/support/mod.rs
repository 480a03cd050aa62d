//! Test support: a real server on port 0, an HTTP client, the raw HTTP client, repository paths.
//!
//! - [`process`]: the binary under test, and commands run to completion with a time limit;
//! - [`serve`]: `tinyserve serve --port 0` as a child process;
//! - [`wire`]: the raw HTTP/1.1 client every test writes exact bytes with ([`wire::Conn`]),
//!   and a Server-Sent Events parser;
//! - [`nginx`]: a real nginx in front of a server;
//! - [`python`]: the Python environment of the tests that run Python clients and tools;
//! - [`fixtures`]: the model fixtures, and comparing numbers in nested JSON arrays.

#![allow(dead_code)]

pub mod fixtures;
pub mod nginx;
pub mod process;
pub mod python;
pub mod serve;
pub mod tls;
pub mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use tinyserve::model::ModelRegistry;
use tinyserve::{protocol, App, Request, Server, TestResponse};

/// A path inside the repository.
pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A fresh private directory under the system temp dir, `tinyserve-<what>-...`; removing it is
/// up to its owner.
pub fn scratch_dir(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "tinyserve-{what}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
    dir
}

/// A blocking HTTP client that reports every status as a response (no pooling across tests);
/// each call gives up after `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// One request through `agent`.
pub fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut builder = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(body.to_vec()).expect("build request");
    let mut response = agent
        .run(request)
        .unwrap_or_else(|err| panic!("{method} {url}: {err}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_vec()
        .unwrap_or_else(|err| panic!("{method} {url}: reading the body: {err}"));
    Reply {
        status,
        headers,
        body,
    }
}

/// A server running in this process on 127.0.0.1:0; shut down when dropped.
pub struct TestServer {
    server: Option<Server>,
    pub addr: SocketAddr,
}

impl TestServer {
    /// Starts `app` on a free port. `bind` returns once the socket listens: no sleeps needed.
    pub fn start(app: App) -> TestServer {
        let server = app.bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = server.addr();
        TestServer {
            server: Some(server),
            addr,
        }
    }

    /// Serves the models of `dir` (relative to the repository) with the built-in routes.
    pub fn models(dir: &str) -> TestServer {
        TestServer::models_with(dir, App::new())
    }

    /// Like [`TestServer::models`], on an app with custom settings.
    pub fn models_with(dir: &str, app: App) -> TestServer {
        let models = ModelRegistry::load_dir(repo(dir)).expect("load models");
        let ready = protocol::Readiness::new(true);
        TestServer::start(protocol::mount(app, &models, &ready))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        let body = body.to_string();
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// One request on a fresh connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        send(
            &agent(Duration::from_secs(60)),
            method,
            &self.url(path),
            headers,
            body,
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
        }
    }
}

/// An app called through its test client ([`App::test_client`]), with [`TestServer`]'s
/// helpers: for the tests of routing, status and JSON, where a socket adds nothing.
pub struct TestApp(pub App);

impl TestApp {
    /// The built-in routes over the models of `dir`: what [`TestServer::models`] serves.
    pub fn models(dir: &str) -> TestApp {
        TestApp::models_with(dir, App::new())
    }

    /// Like [`TestApp::models`], on an app with custom settings.
    pub fn models_with(dir: &str, app: App) -> TestApp {
        let models = ModelRegistry::load_dir(repo(dir)).expect("load models");
        let ready = protocol::Readiness::new(true);
        TestApp(protocol::mount(app, &models, &ready))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.0.test_client().get(path).into()
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.0.test_client().post_json(path, body).into()
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut req = Request::new(method, path).with_body(body.to_vec());
        for (name, value) in headers {
            req = req.with_header(*name, *value);
        }
        self.0.test_client().send(req).into()
    }
}

impl TestApp {
    /// `POST path` with a JSON body that must answer 200; the answer's JSON.
    pub fn ok(&self, path: &str, body: &Value) -> Value {
        let reply = self.post_json(path, body);
        assert_eq!(reply.status, 200, "POST {path} {body}: {}", reply.text());
        reply.json()
    }

    /// A counter or gauge of `/metrics` (the whole series, e.g. `name{model="bytelm"}`).
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse().expect("a number"))
            })
            .unwrap_or_else(|| panic!("no series {series} in /metrics:\n{text}"))
    }
}

impl From<TestResponse> for Reply {
    fn from(res: TestResponse) -> Reply {
        Reply {
            status: res.status(),
            headers: res
                .headers()
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
            body: res.body().to_vec(),
        }
    }
}

/// A response as the test saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {}", self.text()))
    }

    /// Asserts a JSON error response with `status` and `code` whose message contains `needle`.
    pub fn assert_error(&self, status: u16, code: &str, needle: &str) {
        assert_eq!(self.status, status, "status; body: {}", self.text());
        assert_eq!(
            self.header("Content-Type"),
            Some("application/json"),
            "errors are JSON"
        );
        let body = self.json();
        assert_eq!(body["code"], code, "code; body: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "message {message:?} should contain {needle:?}"
        );
    }
}
