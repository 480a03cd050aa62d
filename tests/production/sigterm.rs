//! SIGTERM during a long stream: the stream finishes while readiness fails and the listener closes.

use std::io::ErrorKind as IoErrorKind;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use serde_json::{json, Value};

use crate::support::process::wait_until;
use crate::support::wire::Conn;

use super::{serve, BOUND};

#[test]
fn sigterm_lets_a_long_stream_finish_while_readiness_fails_and_the_listener_closes() {
    const MAX_TOKENS: u64 = 3000;
    let mut server = serve(&["--shutdown-grace", "2", "--drain-timeout", "60"]);
    let request = json!({
        "model": "bytelm", "prompt": "Once upon a time", "max_tokens": MAX_TOKENS,
        "temperature": 0, "stream": true, "stream_options": {"include_usage": true},
    });
    let mut http = Conn::post_json(server.addr, "/v1/completions", &request);
    assert_eq!(http.status, 200, "{}", server.stderr());
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    let first = http.next_data_event().expect("a first event");
    assert_eq!(first.json()["object"], "text_completion");

    // Read the rest on another thread, counting events as they arrive.
    let read = Arc::new(AtomicUsize::new(1));
    let reader = {
        let read = Arc::clone(&read);
        thread::spawn(move || {
            let mut events = vec![first];
            while let Some(event) = http.next_data_event() {
                events.push(event);
                read.fetch_add(1, Ordering::SeqCst);
            }
            events
        })
    };

    server.terminate();
    // During the grace period: not ready, still alive, still serving.
    let mut readyz = (0, Value::Null);
    assert!(
        wait_until(BOUND, || {
            let mut http = Conn::get(server.addr, "/readyz");
            readyz = (http.status, http.json());
            readyz.0 == 503
        }),
        "/readyz should turn 503 after SIGTERM: last {readyz:?}"
    );
    assert_eq!(readyz.1["code"], "not_ready", "{readyz:?}");
    let mut healthz = Conn::get(server.addr, "/healthz");
    assert_eq!(healthz.status, 200, "alive during the grace period");
    assert_eq!(healthz.json(), json!({"status": "ok"}));

    // After the grace period the listener closes: new connections are refused, while the
    // stream, still being generated, goes on.
    let mut last_error = String::new();
    assert!(
        wait_until(BOUND, || match Conn::try_open(server.addr, BOUND) {
            Ok(_) => false,
            Err(err) => {
                last_error = format!("{err}");
                err.kind() == IoErrorKind::ConnectionRefused
            }
        }),
        "new connections should be refused once the listener closes (last: {last_error:?})"
    );
    let read_at_close = read.load(Ordering::SeqCst);
    assert!(
        matches!(server.try_wait(), Ok(None)),
        "the process is still draining when the listener has closed"
    );

    let events = reader.join().expect("stream reader");
    let total = events.len();
    assert!(
        total > read_at_close,
        "the stream went on after the listener closed ({read_at_close} events by then, \
         {total} in all): generation must outlast the 2 s grace for this test to mean anything"
    );
    assert_eq!(
        events.last().and_then(|e| e.data.as_deref()),
        Some("[DONE]"),
        "the stream completes"
    );
    let usage = events[total - 2].json();
    assert_eq!(
        usage["usage"]["completion_tokens"], MAX_TOKENS,
        "every token was generated: {usage}"
    );
    assert_eq!(
        events[total - 3].json()["choices"][0]["finish_reason"],
        "length"
    );
    let status = server.wait_exit(BOUND);
    assert!(
        status.success(),
        "exit 0 after draining, got {status}; stderr:\n{}",
        server.stderr()
    );
}
