//! Production deployment as `deploy/` and the README describe it: tinyserve behind the repo's
//! own nginx configuration, the real binary's production flags (`--root-path`,
//! `--shutdown-grace` / `--drain-timeout` with SIGTERM, `--cors-origin`, `--api-key-env`,
//! `--log-format`) and `GET /metrics` read by the official Prometheus parser.
//!
//! The nginx under test runs the shipped file, `deploy/nginx/tinyserve.conf`: the test reads
//! it, substitutes the listen port and the two upstream addresses (failing if those lines ever
//! change shape, so the substitution cannot silently miss), and wraps it in the `events {}` /
//! `http {}` blocks and private temp paths a standalone nginx needs. Whatever the shipped file
//! says about the `/api/` location (prefix stripping, forwarding headers, request ids,
//! retries) is what these tests exercise.
//!
//! Ordering, not sleeps: every wait is a bounded poll for something observable (a log line, a
//! status, a refused connection), and the proxied stream is driven by the test's acks.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::fixtures::fixture;
use crate::support::nginx::Nginx;
use crate::support::serve::ServeChild;
use crate::support::{self, repo, send};

mod access_log;
mod addresses;
mod cors_and_key;
mod metrics;
mod rolling_restart;
mod root_path;
mod sigterm;
mod sse;

pub(crate) use addresses::{get_with, whoami_app};

/// Longest any single wait may take; reaching it means a hang (or a lost event) and fails.
const BOUND: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The shipped nginx configuration, run for real

/// The shipped config with `listen 80;` and the two `server 127.0.0.1:800x` upstream lines
/// pointed at the test's addresses. Panics if any of those lines is not there exactly once.
fn shipped_config(port: u16, upstreams: [SocketAddr; 2]) -> String {
    let path = repo("deploy/nginx/tinyserve.conf");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let substitute = |text: String, from: &str, to: &str| {
        assert_eq!(
            text.matches(from).count(),
            1,
            "{} must contain {from:?} exactly once: the test substitutes it",
            path.display()
        );
        text.replacen(from, to, 1)
    };
    let text = substitute(text, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    let text = substitute(
        text,
        "server 127.0.0.1:8000 ",
        &format!("server {} ", upstreams[0]),
    );
    substitute(
        text,
        "server 127.0.0.1:8001 ",
        &format!("server {} ", upstreams[1]),
    )
}

/// nginx running `deploy/nginx/tinyserve.conf` with the test's ports (see [`Nginx::run`]) in
/// front of `upstreams`; `extra_http` goes into the wrapping `http {}` block (so it applies to
/// the shipped server without editing it). Returns once a request through this very nginx came
/// back.
///
/// `Nginx::start` runs a fixed, generic proxy configuration; these tests need the repo's file
/// instead: the same runner, another config.
pub(crate) fn shipped_nginx(upstreams: [SocketAddr; 2], extra_http: &str) -> Nginx {
    Nginx::run("production-nginx", BOUND, 1024, |dir, port, token| {
        format!(
            r#"    # Test instrumentation, outside the shipped file: which request id nginx generated and
    # which replica(s) each request went to (a retried request lists two).
    log_format tinyserve_test '$request_id $status "$request" '
                              'upstream=$upstream_addr upstream_status=$upstream_status';
    access_log {dir}/access.log tinyserve_test;
    add_header X-Test-Proxy "{token}" always;
{extra_http}
# ---- deploy/nginx/tinyserve.conf, with the test's listen port and upstream addresses ----
{shipped}
"#,
            dir = dir.display(),
            shipped = shipped_config(port, upstreams),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// `tinyserve serve --port 0 --workers 4 ARGS` on the default models folder (the bundled
/// `iris` and `bytelm`); stderr is collected line by line; killed on drop.
fn serve(args: &[&str]) -> ServeChild {
    ServeChild::builder().args(args).start()
}

/// A blocking HTTP client that reports every status as a response (no pooling across tests).
fn agent() -> ureq::Agent {
    support::agent(Duration::from_secs(60))
}

/// Status, headers (lower-case names) and body of one request through `agent`.
fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let reply = send(agent, method, url, headers, body.as_bytes());
    let text = reply.text();
    (reply.status, reply.headers, text)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A predict body for the first iris fixture case, and the label it must get.
fn iris_case() -> (String, Value) {
    let case = &fixture("iris")[0];
    (
        json!({"inputs": {"input": case["input"]}}).to_string(),
        case["label"].clone(),
    )
}

/// Access-log lines (human format) of successful iris predictions.
fn predict_lines(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("\"POST /models/iris/predict\" 200 "))
        .count()
}
