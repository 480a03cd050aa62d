//! The real binary as a user runs it: `tinyserve serve --port 0 --workers 4 ...` as a child
//! process, its address taken from the `listening on http://ADDR` line (a bounded wait), its
//! stderr collected line by line, killed when dropped.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::{run, tinyserve, wait_until, Finished};
use super::repo;
use super::wire::Conn;

/// How long the server may take to print its `listening on` line.
const START_LIMIT: Duration = Duration::from_secs(120);

/// Runs `command`, a `tinyserve serve` that must refuse to start, to completion (bounded) and
/// asserts that it failed (`what` says what succeeding would mean) without ever listening.
/// Returns its output for the test's own checks of the error.
pub fn assert_refuses_to_serve(command: Command, what: &str) -> Finished {
    let out = run(command, START_LIMIT);
    assert!(!out.success, "{what}: {}", out.stdout);
    assert!(
        !out.stdout.contains("listening"),
        "it must not listen: {}",
        out.stdout
    );
    out
}

/// What to start: `tinyserve serve --port 0 --workers 4 [--models DIR] ARGS`, with extra
/// environment variables.
pub struct ServeBuilder {
    models: Option<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
}

impl ServeBuilder {
    /// `--models dir` (without it, the binary's default folder).
    pub fn models(mut self, dir: impl Into<PathBuf>) -> ServeBuilder {
        self.models = Some(dir.into());
        self
    }

    /// More arguments, after `--models`.
    pub fn args<I, S>(mut self, args: I) -> ServeBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// An environment variable for the server.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> ServeBuilder {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Starts the server and waits (bounded) for its `listening on http://ADDR` line.
    pub fn start(self) -> ServeChild {
        let mut command: Command = tinyserve();
        command.args(["serve", "--port", "0", "--workers", "4"]);
        if let Some(models) = &self.models {
            command.arg("--models").arg(models);
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("tinyserve serve {:?}", self.args);
        let mut child = command.spawn().expect("start tinyserve serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stderr_closed = Arc::new(AtomicBool::new(false));
        if let Some(pipe) = child.stderr.take() {
            let (stderr, closed) = (Arc::clone(&stderr), Arc::clone(&stderr_closed));
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut text) = stderr.lock() {
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
                closed.store(true, Ordering::SeqCst);
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
            stderr_closed,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = match first.recv_timeout(START_LIMIT) {
            Ok(Ok(line)) => line,
            Ok(Err(err)) => panic!("reading the server's stdout: {err}"),
            Err(_) => panic!(
                "{what} printed nothing on stdout within {START_LIMIT:?}; stderr:\n{}",
                guard.stderr()
            ),
        };
        guard.addr = line
            .trim_end()
            .strip_prefix("listening on http://")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| {
                let status = guard.child.try_wait().ok().flatten();
                panic!(
                    "first stdout line {line:?} of {what} is not `listening on http://ADDR` \
                     (exit: {status:?}); stderr:\n{}",
                    guard.stderr()
                )
            });
        guard
    }
}

/// A running `tinyserve serve` child process, killed when dropped.
pub struct ServeChild {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stderr_closed: Arc<AtomicBool>,
    /// From the `listening on http://...` line.
    pub addr: SocketAddr,
}

impl ServeChild {
    /// A server to configure: `tinyserve serve --port 0 --workers 4`.
    pub fn builder() -> ServeBuilder {
        ServeBuilder {
            models: None,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `tinyserve serve --port 0 --workers 4 --models models ARGS`: the bundled models.
    pub fn start(args: &[&str]) -> ServeChild {
        ServeChild::builder()
            .models(repo("models"))
            .args(args)
            .start()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `http://ADDR`.
    pub fn base(&self) -> String {
        self.url("")
    }

    /// What the server printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// POSTs JSON, expects 200 JSON, returns the body.
    pub fn ok(&self, path: &str, body: &Value) -> Value {
        let mut http = Conn::post_json(self.addr, path, body);
        let status = http.status;
        let answer = http.json();
        assert_eq!(status, 200, "POST {path} {body}: {answer}");
        answer
    }

    /// `GET /metrics`, the whole text.
    pub fn metrics_text(&self) -> String {
        let mut http = Conn::get(self.addr, "/metrics");
        assert_eq!(http.status, 200);
        String::from_utf8(http.read_to_end()).expect("metrics are UTF-8")
    }

    /// A counter or gauge of `/metrics` (the whole series, e.g. `name{model="bytelm"}`).
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text();
        text.lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse().expect("a number"))
            })
            .unwrap_or_else(|| panic!("no series {series} in /metrics:\n{text}"))
    }

    /// Waits (at most `limit`) until stderr satisfies `done`; panics with `what` and stderr
    /// otherwise.
    pub fn wait_for_stderr(
        &self,
        limit: Duration,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let mut text = String::new();
        if !wait_until(limit, || {
            text = self.stderr();
            done(&text)
        }) {
            panic!("waited {limit:?} for {what}; stderr:\n{text}");
        }
        text
    }

    /// The server's resident memory now and at its peak so far, in KiB (`VmRSS` and `VmHWM` of
    /// `/proc/PID/status`): what the hostile-client tests hold against the documented bound.
    pub fn rss_kib(&self) -> (u64, u64) {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {path}:\n{status}"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// The CPU time the server has used so far (user + system, `utime` and `stime` of
    /// `/proc/PID/stat`), in seconds: what the hostile-client tests hold a request's work to.
    pub fn cpu_seconds(&self) -> f64 {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"));
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| -> f64 {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no field {i} in {path}: {stat}"))
        };
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        (ticks(11) + ticks(12)) / clock_ticks_per_second()
    }

    /// Whether the process is still running (it has not exited or been killed).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM, as a process supervisor (systemd, Kubernetes) does to stop a replica.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}: {status}", self.child.id());
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits (at most `limit` each) for the process to exit, and for its stderr to be read to
    /// the end.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let status = loop {
            match self.child.try_wait().expect("wait for tinyserve") {
                Some(status) => break status,
                None if Instant::now() >= deadline => panic!(
                    "tinyserve did not exit within {limit:?}; stderr:\n{}",
                    self.stderr()
                ),
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let closed = Arc::clone(&self.stderr_closed);
        assert!(
            wait_until(limit, || closed.load(Ordering::SeqCst)),
            "stderr of the exited tinyserve never closed"
        );
        status
    }
}

/// `getconf CLK_TCK`: the unit of `/proc/PID/stat`'s times (100 on Linux unless configured).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
