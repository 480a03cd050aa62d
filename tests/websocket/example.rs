//! `examples/websocket.rs` as a user runs it (`PORT=0`), against Python's `websockets` client:
//! tests/python/websocket_check.py. The example's stderr (its access lines and log) shows what
//! the client cannot see: the session's messages in and out, and the generation that stopped
//! when the client left.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::process::{build_example, run, wait_until};
use crate::support::python::{assert_checks_passed, python_env};
use crate::support::repo;

use super::BOUND;

/// The example, killed when dropped, with its output lines (stdout's and stderr's) as they come.
struct Example {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    addr: SocketAddr,
}

impl Example {
    fn start() -> Example {
        let exe = build_example("websocket");
        let mut child = Command::new(&exe)
            .current_dir(repo("."))
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("start {exe}: {err}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        // The `listening on` line comes on stdout, the access lines and the log on stderr.
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let pipes: [Box<dyn std::io::Read + Send>; 2] = [Box::new(stdout), Box::new(stderr)];
        for pipe in pipes {
            let sink = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    sink.lock().expect("lines").push(line);
                }
            });
        }
        let mut example = Example {
            child,
            lines,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let listening = wait_until(BOUND, || {
            let found = example.find("listening on http://");
            let addr = found.and_then(|l| l.rsplit("http://").next()?.trim().parse().ok());
            addr.map(|addr| example.addr = addr).is_some()
        });
        assert!(
            listening,
            "the example did not start:\n{}",
            example.stderr()
        );
        example
    }

    fn find(&self, needle: &str) -> Option<String> {
        let lines = self.lines.lock().expect("lines");
        lines.iter().find(|l| l.contains(needle)).cloned()
    }

    fn stderr(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn python_websockets_against_the_example() {
    let example = Example::start();
    let mut command = Command::new(python_env());
    command
        .arg(repo("tests/python/websocket_check.py"))
        .arg(format!("http://{}", example.addr))
        .arg("all");
    let out = run(command, Duration::from_secs(300));
    let report = format!("{}\nexample:\n{}", out.report(), example.stderr());
    assert_checks_passed(
        &out,
        "websocket_check.py",
        &report,
        &[
            "ok    limits: 5 fragments of 256 KiB: close 1009",
            "ok    the 257th socket",
            "left mid-generation",
        ],
    );
    // The first echo session sent 4 messages and closed: one access line with both counts.
    let echo = "\"GET /ws/echo\" 101 ";
    assert!(
        wait_until(BOUND, || example
            .find(echo)
            .is_some_and(|l| l.contains("messages_in=4 messages_out=4"))),
        "no access line for the echo session:\n{}",
        example.stderr()
    );
    // The client left after the first token of 4096: the generation stopped there.
    let stopped = "generation stopped after ";
    assert!(
        wait_until(BOUND, || example.find(stopped).is_some()),
        "the generation did not stop:\n{}",
        example.stderr()
    );
    let line = example.find(stopped).unwrap_or_default();
    let tokens: usize = line
        .split(stopped)
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(tokens < 4096, "{line}");
}
