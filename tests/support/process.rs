//! Child processes: the binary under test, and commands run to completion with a time limit.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::repo;

/// The binary under test, run from the repository root.
pub fn tinyserve() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tinyserve"));
    command.current_dir(repo("."));
    command
}

/// What a finished process printed.
pub struct Finished {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The exit code and both outputs, for a failure message.
    pub fn report(&self) -> String {
        format!(
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `command` to completion with captured output (no stdin); kills it and panics after
/// `limit`.
pub fn run(mut command: Command, limit: Duration) -> Finished {
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

/// Polls `done` every 10 ms until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Builds an example with the cargo running the tests; the path of its executable.
pub fn build_example(name: &str) -> String {
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
