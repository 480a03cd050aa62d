//! Past one machine (issue #25): the manifests in `deploy/` checked without a cluster, the
//! KServe runtime's own command run as KServe runs it, the container image's steps replayed in
//! a plain folder, and three replicas behind nginx losing only what a crash must lose.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::process::{run, Finished};
use crate::support::python::python_env;
use crate::support::repo;

mod image;
mod manifests;
mod replicas;
mod runtime;

/// Longest any single wait may take; reaching it means a hang and fails.
const BOUND: Duration = Duration::from_secs(60);

/// Every document of a YAML file, as JSON (read by PyYAML in the test environment).
fn yaml_documents(rel: &str) -> Vec<Value> {
    let mut command = Command::new(python_env());
    command.args([
        "-c",
        "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
    ]);
    command.arg(repo(rel));
    let out = run(command, BOUND);
    assert!(out.success, "reading {rel}: {}", out.report());
    serde_json::from_str(&out.stdout).unwrap_or_else(|err| panic!("{rel} as JSON: {err}"))
}

/// Runs `tests/python/NAME` in the test environment with `args`.
fn python_check(name: &str, args: &[&std::ffi::OsStr], limit: Duration) -> Finished {
    let mut command = Command::new(python_env());
    command
        .arg(repo(&format!("tests/python/{name}")))
        .args(args);
    run(command, limit)
}
