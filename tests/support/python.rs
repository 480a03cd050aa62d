//! The Python test environment `target/pyenv`: the official clients and tools the tests run
//! (tests/python/requirements.txt), so `cargo test` works on a fresh machine with only
//! `python3` (and its `venv` module) installed.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::{run, Finished};
use super::repo;

/// The requirements installed into the environment.
const REQUIREMENTS: &str = "tests/python/requirements.txt";
/// Modules that must import for the environment to count as ready.
const IMPORTS: &str = "import tritonclient.http, numpy";
/// How long creating the venv and installing the requirements may take.
const SETUP_LIMIT: Duration = Duration::from_secs(900);

/// The Python interpreter of the test environment `target/pyenv`, created on first use.
///
/// The venv is made with `python3 -m venv` and gets `pip install -r tests/python/requirements.txt`,
/// unless it already has exactly those requirements (a copy of the file is kept in the venv) and
/// imports its packages. Setup runs once per test process (a `OnceLock`) and under a file lock,
/// so concurrent tests and concurrent test processes never install at the same time. A failed
/// setup panics with pip's output: the calling test fails, it is never skipped.
///
/// To use another package in a Python test, add it (pinned) to the requirements file.
pub fn python_env() -> PathBuf {
    static ENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match ENV.get_or_init(set_up) {
        Ok(python) => python.clone(),
        Err(message) => panic!("setting up the Python test environment failed:\n{message}"),
    }
}

fn set_up() -> Result<PathBuf, String> {
    let venv = repo("target/pyenv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("tinyserve-requirements.txt");
    let requirements = std::fs::read_to_string(repo(REQUIREMENTS))
        .map_err(|err| format!("cannot read {REQUIREMENTS}: {err}"))?;

    std::fs::create_dir_all(repo("target"))
        .map_err(|err| format!("cannot create target/: {err}"))?;
    let lock_path = repo("target/pyenv.lock");
    let lock = File::create(&lock_path)
        .map_err(|err| format!("cannot create {}: {err}", lock_path.display()))?;
    lock.lock()
        .map_err(|err| format!("cannot lock {}: {err}", lock_path.display()))?;

    let ready = || {
        python.is_file()
            && std::fs::read_to_string(&stamp).is_ok_and(|s| s == requirements)
            && imports_work(&python).is_ok()
    };
    if ready() {
        return Ok(python);
    }

    if !python.is_file() || !pip_works(&python) {
        let mut venv_cmd = Command::new("python3");
        venv_cmd.args(["-m", "venv", "--clear"]).arg(&venv);
        succeed(venv_cmd, "python3 -m venv --clear target/pyenv")?;
    }
    let _ = std::fs::remove_file(&stamp);
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "-r",
    ])
    .arg(repo(REQUIREMENTS));
    succeed(
        pip,
        &format!("target/pyenv/bin/python -m pip install -r {REQUIREMENTS}"),
    )?;
    imports_work(&python)
        .map_err(|output| format!("the packages do not import after pip install:\n{output}"))?;
    std::fs::write(&stamp, &requirements)
        .map_err(|err| format!("cannot write {}: {err}", stamp.display()))?;
    Ok(python)
}

/// Runs `command`; an error holds the command line, exit status and full output.
fn succeed(command: Command, line: &str) -> Result<(), String> {
    let out = run(command, SETUP_LIMIT);
    if out.success {
        Ok(())
    } else {
        Err(format!(
            "`{line}` failed (exit {:?})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.code, out.stdout, out.stderr
        ))
    }
}

fn imports_work(python: &PathBuf) -> Result<(), String> {
    let mut command = Command::new(python);
    command.args(["-c", IMPORTS]);
    succeed(command, &format!("python -c {IMPORTS:?}"))
}

fn pip_works(python: &PathBuf) -> bool {
    let mut command = Command::new(python);
    command.args(["-m", "pip", "--version"]);
    succeed(command, "python -m pip --version").is_ok()
}

/// Asserts that the check script `script` (one of `tests/python/*_check.py`) passed: it exited
/// 0, reported no `FAIL`, ended with `all checks passed` and printed each of `needles`.
/// `report` (its output, and the server logs) goes into every failure message.
pub fn assert_checks_passed(out: &Finished, script: &str, report: &str, needles: &[&str]) {
    assert!(out.success, "{script} failed: {report}");
    assert!(!out.stdout.contains("FAIL"), "{report}");
    assert!(
        out.stdout.trim_end().ends_with("all checks passed"),
        "{report}"
    );
    for needle in needles {
        assert!(out.stdout.contains(needle), "missing {needle:?}: {report}");
    }
}
