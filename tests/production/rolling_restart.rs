//! A rolling restart behind the shipped nginx loses no request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use serde_json::{json, Value};

use crate::support::fixtures::fixture;
use crate::support::process::wait_until;

use super::{agent, predict_lines, serve, shipped_nginx, BOUND};

/// Sets the flag when dropped: load threads stop even when the test panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn sigterm_to_one_replica_behind_the_shipped_nginx_loses_no_request() {
    const CLIENTS: usize = 8;
    let args = ["--shutdown-grace", "1", "--drain-timeout", "10"];
    let mut first = serve(&args);
    let mut second = serve(&args);
    let nginx = shipped_nginx([first.addr, second.addr], "");

    let cases: Arc<Vec<(String, Value)>> = Arc::new(
        fixture("iris")
            .iter()
            .map(|c| {
                let body = json!({"inputs": {"input": c["input"]}}).to_string();
                (body, c["label"].clone())
            })
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(Arc::clone(&stop));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = format!("http://{}/api/models/iris/predict", nginx.addr);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let (cases, stop, ok, failures, url) = (
                Arc::clone(&cases),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failures),
                url.clone(),
            );
            thread::spawn(move || {
                // One agent per client: a keep-alive connection to nginx, reused.
                let agent = agent();
                let mut i = n;
                while !stop.load(Ordering::SeqCst) {
                    let (body, label) = &cases[i % cases.len()];
                    i += 1;
                    let outcome = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(body.as_bytes());
                    let failure = match outcome {
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
                    if let Ok(mut failures) = failures.lock() {
                        failures.push(failure);
                    }
                }
            })
        })
        .collect();

    // Both replicas take traffic before the signal.
    let started = Instant::now();
    assert!(
        wait_until(BOUND, || predict_lines(&first.stderr()) >= 500
            && predict_lines(&second.stderr()) >= 500),
        "both replicas should serve requests; first:\n{}\nsecond:\n{}\nnginx:\n{}",
        first.stderr(),
        second.stderr(),
        nginx.log()
    );
    first.terminate();
    let at_signal = ok.load(Ordering::SeqCst);
    let status = first.wait_exit(BOUND);
    let at_exit = ok.load(Ordering::SeqCst);
    // Keep the load on after the replica is gone: its share now fails over to the other.
    assert!(
        wait_until(BOUND, || ok.load(Ordering::SeqCst) >= at_exit + 1500),
        "the surviving replica should take all the traffic"
    );
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().expect("client thread");
    }
    let elapsed = started.elapsed();
    // Stop the survivor the same way, so its access log is complete.
    second.terminate();
    let second_status = second.wait_exit(BOUND);

    let total = ok.load(Ordering::SeqCst);
    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    let (first_log, second_log) = (first.stderr(), second.stderr());
    let (served_first, served_second) = (predict_lines(&first_log), predict_lines(&second_log));
    let after_signal = first_log
        .split_once("signal 15")
        .map_or(0, |(_, after)| predict_lines(after));
    let access = nginx.access_log();
    let retried = access
        .lines()
        .filter(|l| l.contains("/api/models/iris/predict") && l.contains(", "))
        .count();
    println!(
        "zero-loss run: {CLIENTS} clients, {total} requests OK and {} failed in {elapsed:.1?} \
         ({at_signal} before SIGTERM, {} until the replica exited, {} after); \
         terminated replica served {served_first} ({after_signal} after the signal), \
         surviving replica served {served_second}; nginx retried {retried} on the other replica",
        failures.len(),
        at_exit - at_signal,
        total - at_exit,
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed; first ones: {:#?}\nnginx error log:\n{}",
        failures.len(),
        total + failures.len(),
        &failures[..failures.len().min(10)],
        nginx.log()
    );
    assert!(
        status.success(),
        "the terminated replica exits 0, got {status}; stderr tail:\n{}",
        &first_log[first_log.len().saturating_sub(2000)..]
    );
    assert!(
        second_status.success(),
        "the survivor exits 0 too: {second_status}"
    );
    assert!(served_first > 0 && served_second > 0);
    assert!(
        served_first + served_second >= total,
        "every OK answer came from a replica: {served_first} + {served_second} < {total}"
    );
}
