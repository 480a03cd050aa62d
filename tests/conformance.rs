//! The ONNX backend node test suite through the HTTP API (issue #11).
//!
//! `tests/python/conformance.py prepare` takes every node test case of the pinned `onnx`
//! package and decides in-process, with the pinned onnxruntime (the version tinyserve fetches),
//! which ones ONNX Runtime passes and the v2 protocol can carry; it writes those models as
//! `CASE.onnx` into one folder (a model that does not load would stop the whole server, so the
//! others are left out with their reason). One `tinyserve serve` serves the folder, and
//! `conformance.py check` sends every case's inputs through `POST /v2/models/CASE/infer`, as
//! JSON and as binary tensor data, comparing the outputs at the case's own tolerances.

use std::process::Command;
use std::time::Duration;

use crate::support::process::run;
use crate::support::python::python_env;
use crate::support::repo;
use crate::support::serve::ServeChild;

/// Fewest cases that must be served: a little under the 1,544 that onnx 1.23.2 and
/// onnxruntime 1.32.0 give today, so cases cannot silently vanish from the run.
const SERVED_FLOOR: usize = 1500;
/// Generous bounds for each step (about 40 s, 10 s and 70 s on a busy 2-core machine).
const STEP_LIMIT: Duration = Duration::from_secs(900);

#[test]
fn onnx_backend_node_cases_pass_through_the_v2_api() {
    let python = python_env();
    let folder = repo("target/conformance").join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&folder);

    let mut prepare = Command::new(&python);
    prepare
        .arg(repo("tests/python/conformance.py"))
        .arg("prepare")
        .arg("--out")
        .arg(&folder);
    let prepared = run(prepare, STEP_LIMIT);
    assert!(prepared.success, "prepare failed: {}", prepared.report());
    // The list of cases ONNX Runtime passes was decided with the runtime the server uses.
    let manifest = std::fs::read(folder.join("manifest.json")).expect("read manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).expect("manifest JSON");
    assert_eq!(
        manifest["onnxruntime"],
        tinyserve::model::runtime::ORT_VERSION,
        "the pinned onnxruntime of tests/python/requirements.txt"
    );

    // One session per model and no intra-op thread pool: ~1,500 models then load in seconds
    // and about 240 MB (with `--sessions-per-model 1` alone, each session's two-thread pool
    // makes it ~1,500 threads and a minute of CPU).
    let server = ServeChild::builder()
        .models(folder.join("models"))
        .args([
            "--sessions-per-model",
            "1",
            "--intra-threads",
            "1",
            "--log-level",
            "warn",
        ])
        .start();
    let mut check = Command::new(&python);
    check
        .arg(repo("tests/python/conformance.py"))
        .arg("check")
        .args(["--url", &server.addr.to_string()])
        .arg("--cases")
        .arg(&folder);
    let out = run(check, STEP_LIMIT);
    let report = format!(
        "{}\n--- prepare ---\n{}\n--- server stderr ---\n{}",
        out.report(),
        prepared.stdout,
        server.stderr()
    );
    println!("{}", out.stdout);

    let count = |label: &str| -> usize {
        out.stdout
            .lines()
            .find_map(|line| line.strip_prefix(label)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{label} N` line: {report}"))
    };
    let (served, passed) = (count("served "), count("passed "));
    assert!(out.success && !out.stdout.contains("FAIL"), "{report}");
    assert_eq!(passed, served, "every served case passes: {report}");
    assert!(
        served >= SERVED_FLOOR,
        "{served} cases served, expected at least {SERVED_FLOOR}: {report}"
    );
    assert!(server.stderr().is_empty(), "{report}");
    drop(server);
    let _ = std::fs::remove_dir_all(&folder);
}
