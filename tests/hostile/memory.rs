//! Memory per request (issue #12, cases 1, 3, 8 and 10): answers that would amplify a small
//! body, empty tensors with huge shapes, JSON that inflates when decoded, prompts past what the
//! model can use, and generation for clients that left. Each case is resent against the real
//! binary; it gets a 4xx naming the limit, the server stays up, and the peak RSS stays within
//! the per-request budget docs/deployment.md documents.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::process::wait_until;
use crate::support::serve::ServeChild;
use crate::support::wire::Conn;

const MIB: u64 = 1024;

/// The documented budget of one request at the default limits, in KiB: the body B (10 MiB),
/// its decoded inputs (at most 4 B: 8 bytes per element, 2 bytes of text each), the outputs
/// ONNX Runtime returns and their copy (each at most 4 R: half an element per byte of the
/// response limit R = 16 MiB, 8 bytes each) and the answer (R): 5 B + 9 R = 194 MiB.
const REQUEST_BUDGET_KIB: u64 = (5 * 10 + 9 * 16) * MIB;

/// How long a client waits for an answer. The debug binary decoding three 10 MB bodies at once
/// on a busy machine needs far more than the 20 s of `wire::READ_LIMIT`; this only keeps a hung
/// server from hanging the test.
const ANSWER_LIMIT: Duration = Duration::from_secs(600);

/// Writes `request` on a fresh connection and reads the response head; the connection is
/// positioned at the body.
fn send(server: &ServeChild, request: &[u8]) -> Conn {
    let mut conn = Conn::open_with(server.addr, ANSWER_LIMIT);
    conn.send(request);
    conn.read_head();
    conn
}

/// `POST path` with `body` on a fresh connection (closed after the answer); the status and the
/// JSON body.
fn post(server: &ServeChild, path: &str, headers: &str, body: &[u8]) -> (u16, Value) {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\
         {headers}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut conn = send(server, &request);
    (conn.status, conn.json())
}

fn post_json(server: &ServeChild, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    post(
        server,
        path,
        "Content-Type: application/json\r\n",
        body.as_bytes(),
    )
}

/// Asserts a 400 `invalid_input` whose message contains `needle`.
fn assert_refused(answer: (u16, Value), needle: &str) {
    let (status, body) = answer;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_input", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "{message:?} should name {needle:?}"
    );
}

/// Asserts the server still answers an ordinary inference.
fn assert_still_serving(server: &mut ServeChild) {
    assert!(server.is_running(), "the server died: {}", server.stderr());
    let answer = server.ok("/models/iris/predict", &json!([[5.1, 3.5, 1.4, 0.2]]));
    assert!(answer["outputs"]["label"].is_array(), "{answer}");
}

/// Asserts the peak RSS grew by at most `budget` KiB over `idle`.
fn assert_peak_within(server: &ServeChild, idle: u64, budget: u64, what: &str) {
    let (now, peak) = server.rss_kib();
    assert!(
        peak <= idle + budget,
        "{what}: peak RSS {peak} KiB (now {now}), over idle {idle} KiB + {budget} KiB"
    );
}

fn ids(n: usize) -> Value {
    json!({"inputs": [{"name": "input_ids", "shape": [1, n], "datatype": "INT64", "data": vec![65; n]}]})
}

#[test]
fn output_amplification_is_refused_before_the_model_runs() {
    let mut server = ServeChild::start(&[]);
    let (idle, _) = server.rss_kib();
    // 156 KB and 390 KB bodies whose logits would be 104 MB and 260 MB of JSON.
    for n in [40_000, 100_000] {
        let answer = post_json(&server, "/v2/models/bytelm/infer", &ids(n));
        assert_refused(
            answer,
            "over the response limit of 16777216 bytes (--max-response-bytes)",
        );
    }
    let predict = json!({"inputs": {"input_ids": [vec![65; 40_000]]}});
    let answer = post_json(&server, "/models/bytelm/predict", &predict);
    assert_refused(answer, "shape [1, 40000, 256]");
    // The check comes from the shapes, before the run: nothing near one answer was allocated.
    assert_peak_within(&server, idle, 64 * MIB, "refused amplification");
    assert_still_serving(&mut server);

    // Under a lower limit, the same check holds where the outputs' shapes are only known after
    // the run (iris's, whose batch dimension is unnamed), and on binary answers.
    let mut small = ServeChild::start(&["--max-response-bytes", "1000"]);
    let rows = vec![[5.1, 3.5, 1.4, 0.2]; 200];
    let answer = post_json(&small, "/models/iris/predict", &json!(rows));
    assert_refused(answer, "over the response limit of 1000 bytes");
    let fits = small.ok("/models/iris/predict", &json!([[5.1, 3.5, 1.4, 0.2]]));
    assert!(fits["outputs"]["probabilities"].is_array());
    assert_still_serving(&mut small);
}

#[test]
fn empty_binary_tensors_with_huge_shapes_are_refused_as_in_json() {
    let mut server = ServeChild::start(&[]);
    let (idle, _) = server.rss_kib();
    let header = json!({"inputs": [{"name": "input_ids", "shape": [4_194_304, 0],
        "datatype": "INT64", "parameters": {"binary_data_size": 0}}]})
    .to_string();
    let headers = format!(
        "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {}\r\n",
        header.len()
    );
    let answer = post(
        &server,
        "/v2/models/bytelm/infer",
        &headers,
        header.as_bytes(),
    );
    assert_refused(answer, "too large for an empty tensor");
    let json = json!({"inputs": [{"name": "input_ids", "shape": [4_194_304, 0],
        "datatype": "INT64", "data": []}]});
    assert_refused(
        post_json(&server, "/v2/models/bytelm/infer", &json),
        "too large for an empty tensor",
    );
    assert_peak_within(&server, idle, 32 * MIB, "huge empty tensors");
    assert_still_serving(&mut server);
}

#[test]
fn json_bodies_do_not_inflate_and_prompts_are_capped() {
    let mut server = ServeChild::start(&[]);
    let (idle, _) = server.rss_kib();
    // Three 10 MB bodies of [[0,0,0,0],...] at once: a million rows each, whose answer is
    // over the response limit; they cost their budget, not the 1.2 GB each that a Value tree took.
    let rows = 10 * 1024 * 1024 / 10 - 1;
    let mut body = Vec::with_capacity(rows * 10 + 2);
    body.push(b'[');
    for i in 0..rows {
        body.extend_from_slice(if i == 0 { b"[0,0,0,0]" } else { b",[0,0,0,0]" });
    }
    body.push(b']');
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    post(
                        &server,
                        "/models/iris/predict",
                        "Content-Type: application/json\r\n",
                        &body,
                    )
                })
            })
            .collect();
        clients.into_iter().filter_map(|c| c.join().ok()).collect()
    });
    assert_eq!(answers.len(), 3);
    for answer in answers {
        assert_refused(answer, "over the response limit");
    }
    assert_peak_within(&server, idle, 3 * REQUEST_BUDGET_KIB, "three 10 MB bodies");

    // 800,000 distinct input names (9.6 MB): refused at the first one the model lacks, not
    // collected first.
    let mut names = b"{\"inputs\":{".to_vec();
    for i in 0..800_000 {
        names.extend_from_slice(format!("\"a{i}\":0,").as_bytes());
    }
    names.extend_from_slice(b"\"input\":[[0,0,0,0]]}}");
    let answer = post(
        &server,
        "/models/iris/predict",
        "Content-Type: application/json\r\n",
        &names,
    );
    assert_refused(answer, "unknown input \"a0\"");

    // A 10 MB prompt: the model sees 256 bytes of it, so past 1 MiB it is refused.
    let prompt = "a".repeat(10 * 1024 * 1024 - 200);
    let body = json!({"model": "bytelm", "prompt": prompt, "max_tokens": 1});
    let (status, answer) = post_json(&server, "/v1/completions", &body);
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("over the limit of 1048576 bytes"),
        "{message}"
    );
    // Streamed, it is refused with the status, before the 200 of an event stream.
    let body = json!({"model": "bytelm", "prompt": prompt, "max_tokens": 1, "stream": true});
    let (status, answer) = post_json(&server, "/v1/completions", &body);
    assert_eq!(status, 400, "{answer}");
    // Just under the cap, only the last 256 bytes reach the model, and usage counts them all.
    let prompt = "b".repeat(1024 * 1024 - 1);
    let body = json!({"model": "bytelm", "prompt": prompt, "max_tokens": 2, "temperature": 0});
    let answer = server.ok("/v1/completions", &body);
    assert_eq!(
        answer["usage"]["prompt_tokens"],
        1024 * 1024 - 1,
        "{answer}"
    );
    assert_peak_within(&server, idle, 3 * REQUEST_BUDGET_KIB, "large prompts");
    assert_still_serving(&mut server);
}

#[test]
fn non_streaming_generation_stops_when_the_client_leaves() {
    let mut server = ServeChild::start(&[]);
    let body = json!({"model": "bytelm", "prompt": "Hello", "max_tokens": 4096,
        "temperature": 0})
    .to_string();
    let request = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    for _ in 0..6 {
        Conn::open_with(server.addr, Duration::from_secs(10)).send(request.as_bytes());
    }
    let series = "tinyserve_generations_cancelled_total{model=\"bytelm\"}";
    assert!(
        wait_until(Duration::from_secs(120), || server.metric(series) >= 6.0),
        "six generations should be cancelled; stderr:\n{}",
        server.stderr()
    );
    // Each stopped at its first piece of text after the client was seen gone, far from the
    // 6 × 4096 tokens nobody would have read.
    let tokens = server.metric("tinyserve_generated_tokens_total{model=\"bytelm\"}");
    assert!(tokens < 6.0 * 64.0, "{tokens} tokens generated for nobody");
    assert_still_serving(&mut server);
}

#[test]
fn slow_readers_hold_no_more_than_their_answers() {
    let mut server = ServeChild::start(&[]);
    let (idle, _) = server.rss_kib();
    // 370,000 rows: a 15.5 MB answer, just under the response limit.
    let rows = vec![[5.1, 3.5, 1.4, 0.2]; 370_000];
    let body = json!(rows).to_string();
    let request = format!(
        "POST /models/iris/predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Four clients read the status line and then nothing: each answer waits whole on its
    // connection (the head goes out with the first bytes of the body).
    let readers: Vec<Conn> = (0..4).map(|_| send(&server, request.as_bytes())).collect();
    for reader in &readers {
        assert_eq!(reader.status, 200);
    }
    assert_peak_within(&server, idle, 4 * REQUEST_BUDGET_KIB, "four slow readers");
    assert_still_serving(&mut server);
    drop(readers);
}

/// Issue #23: what the process keeps after bursts of large requests. glibc's malloc kept what
/// they freed (+400 MB after four bursts, as long as the process lived: its mmap threshold grows
/// with each large free); the binary fixes the threshold at start, and gives it back.
#[test]
fn memory_freed_after_bursts_of_large_requests_goes_back_to_the_system() {
    let mut server = ServeChild::start(&[]);
    let (idle, _) = server.rss_kib();
    // 370,000 rows (6.3 MB) with a 15.5 MB answer, four at once, twice.
    let rows = vec![[5.1, 3.5, 1.4, 0.2]; 370_000];
    let body = json!(rows).to_string();
    for _ in 0..2 {
        std::thread::scope(|scope| {
            let clients: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        post(
                            &server,
                            "/models/iris/predict",
                            "Content-Type: application/json\r\n",
                            body.as_bytes(),
                        )
                    })
                })
                .collect();
            for client in clients {
                let (status, _) = client.join().expect("client thread");
                assert_eq!(status, 200);
            }
        });
    }
    std::thread::sleep(Duration::from_secs(1));
    let (kept, peak) = server.rss_kib();
    assert!(
        kept <= idle + 64 * MIB,
        "RSS {kept} KiB 1 s after the bursts, idle {idle} KiB (peak {peak} KiB)"
    );
    assert_still_serving(&mut server);
}
