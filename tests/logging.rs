//! Logging through the `log` facade: an application that installs `env_logger`
//! (examples/logging.rs, run as a child process) sees tinyserve's access lines in
//! env_logger's own format.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::process::{run, wait_until};
use crate::support::repo;
use crate::support::wire::Conn;

/// Builds an example with the cargo running the tests; the path of its executable.
pub(crate) fn build_example(name: &str) -> String {
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(repo("."))
        .args(["build", "--example", name, "--message-format=json"]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let out = run(command, Duration::from_secs(600));
    assert!(
        out.success,
        "cargo build --example {name}: {}",
        out.report()
    );
    out.stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .and_then(|m| m["executable"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no executable for example {name}: {}", out.report()))
}

/// The example killed when dropped.
pub(crate) struct Example(pub(crate) Child);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn env_logger_sees_the_access_line_of_each_request() {
    let exe = build_example("logging");
    let mut child = Example(
        Command::new(&exe)
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "info")
            .env("RUST_LOG_STYLE", "never")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {exe}: {err}")),
    );
    let (lines, stderr) = mpsc::channel();
    let pipe = child.0.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut stdout = BufReader::new(child.0.stdout.take().expect("piped stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("the example's stdout");
    let addr: SocketAddr = first
        .trim_end()
        .strip_prefix("listening on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not `listening on http://ADDR`: {first:?}"));
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));

    let mut http = Conn::get(addr, "/hello");
    assert_eq!(http.status, 200);
    assert_eq!(http.read_to_end(), b"Hello, world!");
    let id = http
        .header("x-request-id")
        .expect("X-Request-ID")
        .to_string();

    // env_logger's format: `[TIME LEVEL TARGET] MESSAGE key=value ...`.
    let mut seen = Vec::new();
    let found = wait_until(Duration::from_secs(30), || {
        seen.extend(stderr.try_iter());
        seen.iter().any(|l| l.contains(&format!("id={id}")))
    });
    let line = seen.iter().find(|l| l.contains(&format!("id={id}")));
    assert!(
        found,
        "no access line for request {id} on stderr:\n{seen:#?}"
    );
    let line = line.map(String::as_str).unwrap_or_default();
    assert!(line.starts_with('['), "not env_logger's format: {line:?}");
    assert!(
        line.contains(" INFO  tinyserve::access] GET /hello 200 "),
        "method, path and status through env_logger: {line:?}"
    );
    for field in ["method=GET", "path=/hello", "status=200", "bytes=13"] {
        assert!(line.contains(field), "{field} as a key-value: {line:?}");
    }
    assert!(line.contains(&format!("request_id={id}")), "{line:?}");
    // Nothing written around the facade: every stderr line is env_logger's.
    assert!(
        seen.iter().all(|l| l.starts_with('[')),
        "lines not from env_logger:\n{seen:#?}"
    );
    drop(child);
}
