//! The echo through the shipped nginx (`deploy/nginx/tinyserve.conf`, whose `map` passes an
//! upgrade on and keeps other requests on pooled connections), with Python's client.

use std::process::Command;
use std::time::Duration;

use tinyserve::Settings;

use super::echo_app;
use crate::production::shipped_nginx;
use crate::support::process::run;
use crate::support::python::{assert_checks_passed, python_env};
use crate::support::{repo, TestServer};

#[test]
fn the_echo_passes_the_shipped_nginx() {
    let server = TestServer::start(echo_app(Settings::default()));
    let nginx = shipped_nginx([server.addr, server.addr], "");
    let mut command = Command::new(python_env());
    command
        .arg(repo("tests/python/websocket_check.py"))
        .arg(format!("http://{}/api", nginx.addr))
        .arg("echo");
    let out = run(command, Duration::from_secs(120));
    let report = format!("{}\nnginx:\n{}", out.report(), nginx.log());
    assert_checks_passed(&out, "websocket_check.py", &report, &["ok    echo: text"]);
    // Plain requests still go through on the same configuration.
    let reply = crate::support::send(
        &crate::support::agent(Duration::from_secs(30)),
        "GET",
        &format!("http://{}/api/", nginx.addr),
        &[],
        b"",
    );
    assert_eq!((reply.status, reply.text().as_str()), (200, "hello"));
}
