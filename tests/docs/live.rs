//! Real tools against a live `tinyserve serve`: the OpenAPI validator openapi-spec-validator,
//! the API fuzzer schemathesis (both pinned in tests/python/requirements.txt), and Debian's
//! Chromium driven by playwright-core through the demo pages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::process::{run, Finished};
use crate::support::python::python_env;
use crate::support::repo;
use crate::support::serve::ServeChild;

/// Generation is slow and each stream holds a worker: tests/openai.rs covers these.
const EXCLUDED: [&str; 2] = ["/v1/completions", "/v1/chat/completions"];

/// Asserts that `out` succeeded, with its whole output (and the server's log) if not.
fn assert_ok(out: &Finished, what: &str, server_log: &str) {
    assert!(
        out.success,
        "{what} failed (exit {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- server ---\n{}",
        out.code, out.stdout, out.stderr, server_log
    );
}

/// What follows `label` in a report: the rest of its line, or the next line if none.
fn after<'a>(report: &'a str, label: &str) -> &'a str {
    let mut lines = report.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix(label) {
            return match rest.trim() {
                "" => lines.next().unwrap_or(""),
                rest => rest,
            };
        }
    }
    ""
}

#[test]
fn openapi_document_passes_openapi_spec_validator() {
    let python = python_env();
    let server = ServeChild::start(&[]);
    let mut command = Command::new(&python);
    command.arg(repo("tests/python/openapi_check.py")).args([
        "--url",
        &server.url(""),
        "--server",
        "/",
    ]);
    let out = run(command, Duration::from_secs(120));
    assert_ok(&out, "openapi_check.py", &server.stderr());
    assert!(
        out.stdout.trim_end().ends_with("all checks passed"),
        "{}",
        out.stdout
    );
    for needle in [
        "ok    openapi-spec-validator: valid OpenAPI 3.1.0",
        "ok    every request and response schema is a valid JSON Schema 2020-12",
        "ok    POST /models/iris/predict: the example request fits its schema",
        "ok    POST /v2/models/iris/infer: the example request fits its schema",
    ] {
        assert!(
            out.stdout.contains(needle),
            "missing {needle:?}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    let st = python_env().with_file_name("st");
    let server = ServeChild::start(&[]);
    // schemathesis keeps its Hypothesis database in the working directory.
    let workdir = repo("target/schemathesis");
    std::fs::create_dir_all(&workdir).expect("create target/schemathesis");
    let base = server.url("");
    let fuzz = |mode: &str, filter: &str, paths: &[&str]| {
        let mut command = Command::new(&st);
        command.current_dir(&workdir).args(["--no-color", "run"]);
        command
            .arg(format!("{base}/openapi.json"))
            .args(["--url", &base]);
        command.args(["--checks", "not_a_server_error,response_schema_conformance"]);
        command.args(["--mode", mode, "--max-examples", "20", "--seed", "7"]);
        // One worker: with several, Hypothesis' threads race on the recursion limit, and CPython
        // 3.11's ast.parse (used to describe a strategy) fails now and then with "AST
        // constructor recursion depth mismatch", a runtime error of the tool, not the API.
        command.args(["--workers", "1", "--request-timeout", "30"]);
        for path in paths {
            command.args([filter, path]);
        }
        let out = run(command, Duration::from_secs(600));
        assert_ok(&out, &format!("st run --mode {mode}"), &server.stderr());
        let cases = after(&out.stdout, "Test cases:");
        assert!(
            cases.contains("generated") && !cases.contains("fail") && !cases.contains("error"),
            "test cases {cases:?}:\n{}",
            out.stdout
        );
        let tested: usize = after(&out.stdout, "Tested:").parse().unwrap_or(0);
        println!("schemathesis --mode {mode}: {tested} operations, {cases}");
        tested
    };
    // Every other operation of the document: 23 of 25 with models/ loaded (a token id out of
    // range for bytelm is a 400 from ONNX Runtime's InvalidArgument, not a 5xx).
    assert!(fuzz("all", "--exclude-path", &EXCLUDED) >= 22);
}

#[test]
fn demo_pages_work_in_headless_chromium() {
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium is missing: this test drives Debian's Chromium, which `.ci/run` \
         installs; here, run `apt-get install -y chromium`"
    );
    let node_modules = install_playwright();
    // Behind a root path: every URL the pages use must carry it.
    let server = ServeChild::start(&["--root-path", "/api"]);
    let shots = repo("target/screenshots");
    std::fs::create_dir_all(&shots).expect("create target/screenshots");
    let mut command = Command::new("node");
    command
        .env("NODE_PATH", &node_modules)
        .arg(repo("tests/browser/demo.js"))
        .arg(server.url("/api"))
        .arg(&shots);
    let out = run(command, Duration::from_secs(300));
    assert_ok(&out, "node tests/browser/demo.js", "");
    assert!(
        out.stdout.trim_end().ends_with("all checks passed"),
        "{}",
        out.stdout
    );
    println!("{}", out.stdout);
    for name in ["index", "iris", "iris-error", "chat", "docs"] {
        let size = std::fs::metadata(shots.join(format!("{name}.png"))).map_or(0, |m| m.len());
        assert!(size > 1000, "target/screenshots/{name}.png was not written");
    }
}

/// `npm ci` of tests/browser (playwright-core, pinned by its lock file) into target/browser,
/// unless the lock file there already matches. Returns the node_modules folder.
fn install_playwright() -> PathBuf {
    let dir = repo("target/browser");
    let lock = std::fs::read_to_string(repo("tests/browser/package-lock.json")).expect("lock");
    let stamp = dir.join("node_modules/.tinyserve-lock.json");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == lock) {
        return dir.join("node_modules");
    }
    std::fs::create_dir_all(&dir).expect("create target/browser");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(repo(&format!("tests/browser/{file}")), dir.join(file)).expect("copy");
    }
    let mut npm = Command::new("npm");
    npm.current_dir(&dir)
        .args(["ci", "--no-audit", "--no-fund"]);
    let out = run(npm, Duration::from_secs(300));
    assert_ok(&out, "npm ci (tests/browser)", "");
    std::fs::write(&stamp, lock).expect("write the lock stamp");
    dir.join("node_modules")
}
