//! `deploy/Dockerfile` without a container engine: `tests/python/dockerfile_check.py` lints
//! it with hadolint, checks its `USER`, `ENTRYPOINT` and port against the manifests, and replays
//! its steps in a plain folder to show that the runtime stage holds what the binary needs.

use crate::support::python::assert_checks_passed;
use crate::support::repo;

use super::{python_check, BOUND};

#[test]
fn the_dockerfile_lints_clean_and_its_runtime_stage_runs_from_a_plain_folder() {
    let root = repo(".");
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_tinyserve"));
    let out = python_check(
        "dockerfile_check.py",
        &[root.as_os_str(), binary.as_os_str()],
        BOUND * 5,
    );
    println!("{}", out.stdout);
    assert_checks_passed(
        &out,
        "dockerfile_check.py",
        &out.report(),
        &[
            "hadolint",
            "USER is the manifests' runAsUser",
            "ENTRYPOINT is the manifests' command",
            "the runtime stage's binary loads a model",
        ],
    );
}
