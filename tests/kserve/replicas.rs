//! Three replicas behind the shipped nginx configuration under steady load: SIGTERM to one (the
//! rolling-update path: `/readyz` 503, the listener closes after the grace, requests in flight
//! drain) loses no request; SIGKILL to one (a crash) fails at most the requests that were in
//! flight on it, and nginx's `proxy_next_upstream ... non_idempotent` retries even most of
//! those. Each phase starts from three fresh replicas, so that one replica is down at a time,
//! as in a rolling update (`maxUnavailable: 0`, `maxSurge: 1`) or a single crash: the shipped
//! `proxy_next_upstream_tries 2` covers one replica down, not two (docs/scaling.md).
//!
//! Ordering, not timing: each step waits (bounded) for something observable: every replica's
//! access log shows traffic, the replica exits, the survivors have answered N more requests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::fixtures::fixture;
use crate::support::nginx::Nginx;
use crate::support::process::wait_until;
use crate::support::repo;
use crate::support::serve::ServeChild;

use super::BOUND;

/// Clients sending back to back, each on its own keep-alive connection to nginx.
const CLIENTS: usize = 8;
/// Requests each replica must have answered before the signal.
const WARM: usize = 300;
/// Requests the survivors must answer after the replica is gone.
const AFTER: usize = 1500;

/// `deploy/nginx/tinyserve.conf` with the test's listen port and its two upstream lines
/// replaced by the three replicas (panics if those lines change shape).
fn three_replica_nginx(replicas: [SocketAddr; 3]) -> Nginx {
    let path = repo("deploy/nginx/tinyserve.conf");
    let shipped = std::fs::read_to_string(&path).expect("read the nginx config");
    let two = "    server 127.0.0.1:8000 max_fails=0;\n    server 127.0.0.1:8001 max_fails=0;\n";
    assert_eq!(
        shipped.matches(two).count(),
        1,
        "{} changed shape",
        path.display()
    );
    assert_eq!(shipped.matches("listen 80;").count(), 1);
    let three: String = replicas
        .iter()
        .map(|addr| format!("    server {addr} max_fails=0;\n"))
        .collect();
    Nginx::run("kserve-replicas", BOUND, 1024, |dir, port, token| {
        let config = shipped.replacen(two, &three, 1).replacen(
            "listen 80;",
            &format!("listen 127.0.0.1:{port};"),
            1,
        );
        format!(
            "    log_format replicas '$status upstream=$upstream_addr upstream_status=$upstream_status';\n\
             \x20   access_log {dir}/access.log replicas;\n\
             \x20   add_header X-Test-Proxy \"{token}\" always;\n{config}\n",
            dir = dir.display()
        )
    })
}

/// Sets the flag when dropped: load threads stop even when the test panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A failed request: when it started and ended, and what came back.
#[derive(Clone, Debug)]
struct Failure {
    started: Instant,
    ended: Instant,
    what: String,
}

/// Steady load through nginx: `CLIENTS` threads predicting iris fixture cases back to back,
/// checking every label.
struct Load {
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<Failure>>>,
    stop: StopOnDrop,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Load {
    fn start(nginx: SocketAddr) -> Load {
        let cases: Arc<Vec<(String, Value)>> = Arc::new(
            fixture("iris")
                .iter()
                .map(|c| {
                    (
                        json!({"inputs": {"input": c["input"]}}).to_string(),
                        c["label"].clone(),
                    )
                })
                .collect(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let url = format!("http://{nginx}/api/models/iris/predict");
        let threads = (0..CLIENTS)
            .map(|n| {
                let (cases, stop, ok, failures, url) = (
                    Arc::clone(&cases),
                    Arc::clone(&stop),
                    Arc::clone(&ok),
                    Arc::clone(&failures),
                    url.clone(),
                );
                thread::spawn(move || {
                    let agent = crate::support::agent(Duration::from_secs(30));
                    let mut i = n;
                    while !stop.load(Ordering::SeqCst) {
                        let (body, label) = &cases[i % cases.len()];
                        i += 1;
                        let started = Instant::now();
                        let outcome = agent
                            .post(&url)
                            .header("Content-Type", "application/json")
                            .send(body.as_bytes());
                        let what = match outcome {
                            Ok(mut response) => {
                                let status = response.status().as_u16();
                                let text = response.body_mut().read_to_string().unwrap_or_default();
                                let got = serde_json::from_str::<Value>(&text)
                                    .map(|v| v["outputs"]["label"].clone())
                                    .unwrap_or(Value::Null);
                                if status == 200 && &got == label {
                                    ok.fetch_add(1, Ordering::SeqCst);
                                    continue;
                                }
                                format!("status {status}, body {text}")
                            }
                            Err(err) => format!("transport error: {err}"),
                        };
                        let failure = Failure {
                            started,
                            ended: Instant::now(),
                            what,
                        };
                        if let Ok(mut failures) = failures.lock() {
                            failures.push(failure);
                        }
                    }
                })
            })
            .collect();
        Load {
            ok,
            failures,
            stop: StopOnDrop(stop),
            threads,
            started: Instant::now(),
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits (bounded) until `more` requests beyond `from` succeeded.
    fn wait_ok(&self, from: usize, more: usize, what: &str) {
        assert!(
            wait_until(BOUND * 2, || self.ok() >= from + more),
            "{what}: only {} of {more} more requests succeeded; failures: {:?}",
            self.ok().saturating_sub(from),
            self.failures().iter().take(5).collect::<Vec<_>>()
        );
    }

    fn failures(&self) -> Vec<Failure> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Stops the clients; returns (requests OK, failures, elapsed).
    fn finish(mut self) -> (usize, Vec<Failure>, Duration) {
        self.stop.0.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            thread.join().expect("client thread");
        }
        (self.ok(), self.failures(), self.started.elapsed())
    }
}

/// Access-log lines (human format) of successful iris predictions.
fn predictions(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("\"POST /models/iris/predict\" 200 "))
        .count()
}

/// Three fresh replicas (`--shutdown-grace 1 --drain-timeout 10`) behind nginx, under load,
/// each having answered `WARM` requests.
fn three_under_load() -> ([ServeChild; 3], Nginx, Load) {
    let args = ["--shutdown-grace", "1", "--drain-timeout", "10"];
    let replicas = [
        ServeChild::start(&args),
        ServeChild::start(&args),
        ServeChild::start(&args),
    ];
    let nginx = three_replica_nginx([replicas[0].addr, replicas[1].addr, replicas[2].addr]);
    let load = Load::start(nginx.addr);
    assert!(
        wait_until(BOUND * 2, || replicas
            .iter()
            .all(|r| predictions(&r.stderr()) >= WARM)),
        "every replica should serve traffic; served {:?}; nginx:\n{}",
        replicas
            .iter()
            .map(|r| predictions(&r.stderr()))
            .collect::<Vec<_>>(),
        nginx.log()
    );
    (replicas, nginx, load)
}

/// Requests nginx sent to more than one replica (the access log lists each address tried).
fn retried(nginx: &Nginx) -> usize {
    nginx
        .access_log()
        .lines()
        .filter(|l| l.contains(", "))
        .count()
}

#[test]
fn three_replicas_behind_nginx_survive_a_rolling_restart_and_a_crash() {
    // SIGTERM: the rolling-update path loses nothing.
    let ([mut leaving, first, second], nginx, load) = three_under_load();
    let at_signal = load.ok();
    leaving.terminate();
    let status = leaving.wait_exit(BOUND);
    let at_exit = load.ok();
    load.wait_ok(
        at_exit,
        AFTER,
        "after SIGTERM the other two take the traffic",
    );
    let (term_ok, term_failures, term_elapsed) = load.finish();
    let term_retried = retried(&nginx);
    let log = leaving.stderr();
    let after_signal = log
        .split_once("signal 15")
        .map_or(0, |(_, after)| predictions(after));
    println!(
        "SIGTERM run: {CLIENTS} clients through nginx to 3 replicas, {term_ok} requests OK and \
         {} failed in {term_elapsed:.1?} ({:.0} req/s); {} answered between the signal and the \
         exit, {after_signal} of them by the terminated replica; {} after; nginx retried \
         {term_retried} on another replica",
        term_failures.len(),
        term_ok as f64 / term_elapsed.as_secs_f64(),
        at_exit - at_signal,
        term_ok - at_exit,
    );
    assert!(
        term_failures.is_empty(),
        "SIGTERM must lose no request: {} failed, first: {:#?}\nnginx:\n{}",
        term_failures.len(),
        &term_failures[..term_failures.len().min(5)],
        nginx.log()
    );
    assert!(status.success(), "the terminated replica exits 0: {status}");
    drop((first, second, nginx));

    // SIGKILL: only what was in flight on the killed replica may fail.
    let ([crashing, first, second], nginx, load) = three_under_load();
    let served_before = predictions(&crashing.stderr());
    let at_kill = load.ok();
    let killed_at = Instant::now();
    drop(crashing); // SIGKILL, then reaped
    let reaped_at = Instant::now();
    load.wait_ok(
        at_kill,
        AFTER,
        "after SIGKILL the other two take the traffic",
    );
    let (kill_ok, kill_failures, kill_elapsed) = load.finish();
    let kill_retried = retried(&nginx);
    println!(
        "SIGKILL run: {kill_ok} requests OK and {} failed in {kill_elapsed:.1?} ({:.0} req/s); \
         the killed replica had answered {served_before}; {} answered after the kill; nginx \
         retried {kill_retried} on another replica; failures: {:?}",
        kill_failures.len(),
        kill_ok as f64 / kill_elapsed.as_secs_f64(),
        kill_ok - at_kill,
        kill_failures
            .iter()
            .map(|f| f.what.as_str())
            .collect::<Vec<_>>(),
    );
    // A request in flight on the killed replica started before the kill and ended after it;
    // each client has at most one request in flight.
    let not_in_flight: Vec<&Failure> = kill_failures
        .iter()
        .filter(|f| !(f.started <= reaped_at && f.ended >= killed_at))
        .collect();
    assert!(
        not_in_flight.is_empty(),
        "only requests in flight at the kill may fail; these were not: {not_in_flight:#?}\nnginx:\n{}",
        nginx.log()
    );
    assert!(
        kill_failures.len() <= CLIENTS,
        "at most one request per client was in flight: {} failed: {kill_failures:#?}",
        kill_failures.len()
    );
    assert!(predictions(&first.stderr()) > WARM && predictions(&second.stderr()) > WARM);
}
