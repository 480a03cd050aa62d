//! Standard Python clients against a real `tinyserve serve`: the official Triton HTTP client.
//!
//! The tests set up their own Python environment ([`python_env`]) so `cargo test` works on a
//! fresh machine with only `python3` (and its `venv` module) installed.

use std::process::Command;
use std::time::Duration;

use crate::support::process::run;
use crate::support::python::{assert_checks_passed, python_env};
use crate::support::repo;
use crate::support::serve::ServeChild;

#[test]
fn triton_client_talks_to_tinyserve() {
    let python = python_env();
    let server = ServeChild::start(&[]);
    let mut command = Command::new(&python);
    command
        .arg(repo("tests/python/triton_check.py"))
        .args(["--url", &server.addr.to_string()])
        .arg("--fixtures")
        .arg(repo("models/tests/fixtures/iris.json"));
    let out = run(command, Duration::from_secs(120));
    let report = format!(
        "{}\n--- server stderr ---\n{}",
        out.report(),
        server.stderr()
    );
    // The script really exercised each mode on every fixture case.
    assert_checks_passed(
        &out,
        "triton_check.py",
        &report,
        &[
            "ok    is_server_live() is True",
            "ok    is_server_ready() is True",
            "ok    model metadata of iris",
            "ok    [default] case 4 (3 rows): labels",
            "ok    [requested outputs, default binary] case 4 (3 rows): labels",
            "ok    [binary_data=False] case 4 (3 rows): probabilities within 1e-5 of the fixture",
            "ok    a wrong shape is reported with the input's name",
            "ok    a bad input is a 400 InferenceServerException, as Triton answers",
        ],
    );
}
