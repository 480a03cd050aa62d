//! The `tinyserve` binary: `inspect`, `predict` and `serve`, run as a user would.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::models::{assert_close, fixture, flatten};
use crate::support::repo;

/// The binary under test.
pub(crate) fn tinyserve() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tinyserve"));
    command.current_dir(repo("."));
    command
}

/// What a finished process printed.
pub(crate) struct Finished {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to completion with captured output; kills it and panics after `limit`.
pub(crate) fn run(mut command: Command, limit: Duration) -> Finished {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {what}: {err}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait().expect("wait for child") {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let out = stdout.join().unwrap_or_default();
                let err = stderr.join().unwrap_or_default();
                panic!("{what} did not finish within {limit:?}\nstdout:\n{out}\nstderr:\n{err}");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Finished {
        success: status.success(),
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// A `tinyserve serve` child process, killed when dropped.
pub(crate) struct ServeChild {
    child: Child,
    stderr: Arc<Mutex<String>>,
    /// `host:port` from the `listening on http://...` line.
    pub addr: String,
}

impl ServeChild {
    /// Starts `tinyserve serve --port 0 --models <dir>` and waits (bounded) for its
    /// `listening on http://ADDR` line.
    pub(crate) fn start(models: &Path) -> ServeChild {
        let mut command = tinyserve();
        command
            .args(["serve", "--port", "0", "--workers", "4", "--models"])
            .arg(models)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start tinyserve serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut text) = stderr.lock() {
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
            });
        }
        let (lines, first) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = lines.send(reader.read_line(&mut line).map(|_| line));
            // Keep reading so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        // From here on the guard kills the child whatever happens.
        let mut guard = ServeChild {
            child,
            stderr,
            addr: String::new(),
        };
        let line = match first.recv_timeout(Duration::from_secs(120)) {
            Ok(Ok(line)) => line,
            Ok(Err(err)) => panic!("reading the server's stdout: {err}"),
            Err(_) => panic!(
                "tinyserve serve printed nothing on stdout within 120 s; stderr:\n{}",
                guard.stderr()
            ),
        };
        let addr = line
            .trim_end()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                let status = guard.child.try_wait().ok().flatten();
                panic!(
                    "first stdout line {line:?} is not `listening on http://ADDR` (exit: {status:?}); stderr:\n{}",
                    guard.stderr()
                )
            });
        assert!(
            addr.parse::<std::net::SocketAddr>().is_ok(),
            "{addr:?} is not a socket address"
        );
        guard.addr = addr.to_string();
        guard
    }

    /// What the server printed on stderr so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn inspect_prints_the_signature() {
    let mut command = tinyserve();
    command.arg("inspect").arg(repo("models/iris.onnx"));
    let out = run(command, LIMIT);
    assert!(out.success, "exit {:?}; stderr: {}", out.code, out.stderr);
    // Compare whitespace-normalized lines, so column widths are free to change.
    let lines: Vec<String> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        lines[0].starts_with("model iris"),
        "first line names the model: {}",
        out.stdout
    );
    let position = |wanted: &str| {
        lines
            .iter()
            .position(|l| l == wanted)
            .unwrap_or_else(|| panic!("no line {wanted:?} in:\n{}", out.stdout))
    };
    let inputs = position("inputs:");
    let input = position("input FP32 [-1, 4]");
    let outputs = position("outputs:");
    let probabilities = position("probabilities FP32 [-1, 3]");
    let label = position("label INT64 [-1]");
    assert!(
        inputs < input && input < outputs && outputs < probabilities && probabilities < label,
        "sections in order:\n{}",
        out.stdout
    );
}

#[test]
fn inspect_of_a_broken_file_names_it() {
    let mut command = tinyserve();
    command
        .arg("inspect")
        .arg(repo("models/tests/broken/not_a_model.onnx"));
    let out = run(command, LIMIT);
    assert!(!out.success, "inspecting garbage succeeded: {}", out.stdout);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("not_a_model.onnx"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn predict_prints_the_outputs_as_json() {
    let case = &fixture("iris")[0];
    let mut command = tinyserve();
    command
        .arg("predict")
        .arg(repo("models/iris.onnx"))
        .args(["--input", "[[5.1,3.5,1.4,0.2]]"]);
    let out = run(command, LIMIT);
    assert!(out.success, "exit {:?}; stderr: {}", out.code, out.stderr);
    assert_eq!(
        case["input"],
        json!([[5.1, 3.5, 1.4, 0.2]]),
        "fixture case 0"
    );
    let body: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {}", out.stdout));
    assert_eq!(body["outputs"]["label"], case["label"]);
    assert_eq!(body["outputs"]["label"], json!([0]));
    assert_close(
        &body["outputs"]["probabilities"],
        &case["probabilities"],
        1e-5,
        "CLI probabilities",
    );

    // The named form works too, for several rows.
    let case = &fixture("iris")[1];
    let mut command = tinyserve();
    command
        .arg("predict")
        .arg(repo("models/iris.onnx"))
        .arg("--input")
        .arg(json!({"inputs": {"input": case["input"]}}).to_string());
    let out = run(command, LIMIT);
    assert!(out.success, "exit {:?}; stderr: {}", out.code, out.stderr);
    let body: Value = serde_json::from_str(out.stdout.trim()).expect("stdout is JSON");
    assert_eq!(body["outputs"]["label"], case["label"]);
}

#[test]
fn predict_with_bad_input_fails_with_a_clear_message() {
    let predict = |input: &str| {
        let mut command = tinyserve();
        command
            .arg("predict")
            .arg(repo("models/iris.onnx"))
            .args(["--input", input]);
        run(command, LIMIT)
    };

    let out = predict("[[1,2,3]]");
    assert!(!out.success, "bad shape succeeded: {}", out.stdout);
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stdout, "", "nothing on stdout on failure");
    assert!(
        out.stderr
            .starts_with(r#"error: input "input": expected shape [-1, 4], got [1, 3]"#),
        "stderr: {}",
        out.stderr
    );

    let out = predict("[[1,2,3,\"x\"]]");
    assert!(!out.success);
    assert!(
        out.stderr
            .starts_with(r#"error: input "input": element 3 is "x", expected a number for FP32"#),
        "stderr: {}",
        out.stderr
    );

    let out = predict("[[1,2,3,");
    assert!(!out.success);
    assert!(
        out.stderr.starts_with("error: invalid JSON body"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn serve_listens_and_answers() {
    let server = ServeChild::start(&repo("models"));
    let agent = agent();

    let mut response = agent
        .get(server.url("/v2/health/ready"))
        .call()
        .expect("GET /v2/health/ready");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.body_mut().read_json().expect("JSON");
    assert_eq!(body, json!({"ready": true}));

    let case = &fixture("iris")[1];
    let mut response = agent
        .post(server.url("/v2/models/iris/infer"))
        .send_json(json!({
            "id": "cli",
            "inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": flatten(&case["input"])}],
        }))
        .expect("POST infer");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.body_mut().read_json().expect("JSON");
    assert_eq!(body["id"], "cli");
    let outputs = body["outputs"].as_array().expect("outputs");
    let label = outputs
        .iter()
        .find(|o| o["name"] == "label")
        .expect("label output");
    assert_eq!(label["data"], case["label"]);
    let probabilities = outputs
        .iter()
        .find(|o| o["name"] == "probabilities")
        .expect("probabilities output");
    assert_close(
        &probabilities["data"],
        &case["probabilities"],
        1e-5,
        "served probabilities",
    );

    // The Flask-style route, as a demo script would call it.
    let mut response = agent
        .post(server.url("/models/iris/predict"))
        .send_json(json!([[5.1, 3.5, 1.4, 0.2]]))
        .expect("POST /models/iris/predict");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.body_mut().read_json().expect("JSON");
    assert_eq!(body["outputs"]["label"], json!([0]));
}

#[test]
fn serve_with_a_broken_model_exits_naming_it() {
    let mut command = tinyserve();
    command
        .args(["serve", "--port", "0", "--models"])
        .arg(repo("models/tests/broken"));
    let out = run(command, LIMIT);
    assert!(
        !out.success,
        "serving a broken folder succeeded: {}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("listening"),
        "it must not listen: {}",
        out.stdout
    );
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("not_a_model.onnx"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn serve_with_an_empty_folder_exits_saying_so() {
    let dir = std::env::temp_dir().join(format!(
        "tinyserve-cli-empty-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir(&dir).expect("create empty dir");
    let mut command = tinyserve();
    command.args(["serve", "--port", "0", "--models"]).arg(&dir);
    let out = run(command, LIMIT);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.success, "serving an empty folder succeeded");
    assert!(
        out.stderr.contains("no .onnx files"),
        "stderr: {}",
        out.stderr
    );
}
