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

/// Asserts that `out` succeeded, with its whole output (and the server's log) if not.
pub(crate) fn assert_ok(out: &Finished, what: &str, server_log: &str) {
    assert!(
        out.success,
        "{what} failed (exit {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- server ---\n{}",
        out.code, out.stdout, out.stderr, server_log
    );
}

/// What follows `label` in a report: the rest of its line, or the next line if none.
pub(crate) fn after<'a>(report: &'a str, label: &str) -> &'a str {
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
        "ok    every operation lists each status it answers, every error with its JSON body",
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

/// What schemathesis checks: every status, content type, header and body the server answers
/// must be one the document gives for the operation, and no answer may be a 5xx.
pub(crate) const CHECKS: &str =
    "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_schema_conformance,response_headers_conformance";

/// A models folder for the fuzzer: the bundled iris, bytelm and tinychat, and the ONNX backend node test
/// cases tests/python/node_cases.py picks (varied datatypes, 0-d outputs, outputs whose size
/// depends on the values, dynamic dimensions).
fn fuzz_models() -> PathBuf {
    let dir = repo("target/schemathesis/models");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create target/schemathesis/models");
    let mut command = Command::new(python_env());
    command.arg(repo("tests/python/node_cases.py")).arg(&dir);
    let out = run(command, Duration::from_secs(300));
    assert_ok(&out, "node_cases.py", "");
    println!("{}", out.stdout.lines().next().unwrap_or(""));
    for file in ["iris.onnx", "iris.example.json", "bytelm.onnx"] {
        std::fs::copy(repo(&format!("models/{file}")), dir.join(file)).expect("copy a model");
    }
    // A decoder folder (issue #15): /v1 serves it as model "tinychat".
    let tinychat = dir.join("tinychat");
    std::fs::create_dir_all(&tinychat).expect("create tinychat/");
    for entry in std::fs::read_dir(repo("models/tinychat")).expect("read models/tinychat") {
        let path = entry.expect("an entry").path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, tinychat.join(name)).expect("copy tinychat");
        }
    }
    dir
}

#[test]
fn schemathesis_finds_no_failure_in_any_operation() {
    let st = python_env().with_file_name("st");
    let models = fuzz_models();
    let count = std::fs::read_dir(&models).map_or(0, |d| d.count());
    assert!(count >= 30, "only {count} files in {}", models.display());
    let server = ServeChild::builder().models(&models).start();
    let base = server.url("");
    let doc: serde_json::Value = ureq::get(&format!("{base}/openapi.json"))
        .call()
        .expect("GET /openapi.json")
        .body_mut()
        .read_json()
        .expect("the document is JSON");
    let operations: usize = doc["paths"].as_object().map_or(0, |paths| {
        paths
            .values()
            .filter_map(|p| p.as_object())
            .map(|p| p.len())
            .sum()
    });
    // schemathesis keeps its Hypothesis database in the working directory.
    let workdir = repo("target/schemathesis");
    let mut command = Command::new(&st);
    command
        .current_dir(&workdir)
        // Keeps generated `max_tokens` small without touching the document (see the file).
        .env(
            "SCHEMATHESIS_HOOKS",
            repo("tests/python/schemathesis_hooks.py"),
        )
        .args(["--no-color", "run"])
        .arg(format!("{base}/openapi.json"))
        .args(["--url", &base, "--checks", CHECKS]);
    command.args(["--mode", "all", "--max-examples", "20", "--seed", "7"]);
    // One worker: with several, Hypothesis' threads race on the recursion limit, and CPython
    // 3.11's ast.parse (used to describe a strategy) fails now and then with "AST
    // constructor recursion depth mismatch", a runtime error of the tool, not the API.
    command.args(["--workers", "1", "--request-timeout", "30"]);
    // Unloading changes what every later operation finds: a fuzzed unload of `iris` would make
    // the rest of the run a series of 404s. tests/repository.rs tests it.
    command.args(["--exclude-path-regex", "/unload$"]);
    let out = run(command, Duration::from_secs(900));
    assert_ok(&out, "st run", &server.stderr());
    let cases = after(&out.stdout, "Test cases:");
    assert!(
        cases.contains("generated") && !cases.contains("fail") && !cases.contains("error"),
        "test cases {cases:?}:\n{}",
        out.stdout
    );
    let tested: usize = after(&out.stdout, "Tested:").parse().unwrap_or(0);
    println!("schemathesis: {tested} of {operations} operations, {cases}");
    // schemathesis leaves out the operation it loads the document from, GET /openapi.json,
    // and the unload operation is excluded.
    assert_eq!(
        tested + 2,
        operations,
        "every other operation is tested:\n{}",
        out.stdout
    );
    // Generation was exercised, not only refused: both routes answered 200 at least once.
    let log = server.stderr();
    for route in ["/v1/completions", "/v1/chat/completions"] {
        let line = format!("\"POST {route}\" 200 ");
        assert!(
            log.contains(&line),
            "no 200 for {route} in the server's log"
        );
    }
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
    for name in ["index", "iris", "iris-error", "chat", "embed", "docs"] {
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
