//! The OpenAI-compatible API of the real `tinyserve serve` binary over `models/` (bytelm, a
//! byte-level language model, and iris, which is not generative): response shapes, greedy
//! output against the reference generator `models/lm_reference.py`, the SSE chunk format,
//! errors, cancellation when the client leaves, the stream cap, nginx in front, and the
//! official `openai` Python client (directly and through `--upstream`). At the end, the
//! decoder folder `models/tinychat` (issue #15) through the `openai` client against
//! `models/decoder_reference.py`, its context limit, and a folder that fails start-up.
//!
//! Each test starts its own server (a child process, killed when the test ends) so counters in
//! `/metrics` belong to that test alone; the tests of errors, the model list and the context
//! limit check only JSON and statuses, and call an app of their own through its test client. Generated text is never written down here: the model
//! file may be regenerated, so expectations come from the reference generator at run time.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::nginx::Nginx;
use crate::support::process::run;
use crate::support::python::{assert_checks_passed, python_env};
use crate::support::repo;
use crate::support::serve::ServeChild;
use crate::support::wire::Conn;
use crate::support::{Reply, TestApp};

/// Tokens asked for when a test needs a stream that runs for seconds (the server's maximum).
const LONG: u64 = 4096;
/// How long a bounded poll (of `/metrics`, or for a freed slot) may take.
const POLL_LIMIT: Duration = Duration::from_secs(20);

const TOKENS: &str = "tinyserve_generated_tokens_total{model=\"bytelm\"}";
const CANCELLED: &str = "tinyserve_generations_cancelled_total{model=\"bytelm\"}";

fn completion(prompt: &str, max_tokens: u64) -> Value {
    json!({"model": "bytelm", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
}

fn chat(content: &str, max_tokens: u64) -> Value {
    json!({
        "model": "bytelm",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": content},
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

/// `body` with `"stream": true` (and more fields).
fn streaming(mut body: Value, more: Value) -> Value {
    body["stream"] = json!(true);
    if let (Some(body), Some(more)) = (body.as_object_mut(), more.as_object()) {
        body.extend(more.clone());
    }
    body
}

/// Reads an OpenAI stream to `data: [DONE]` and returns its JSON chunks; checks that
/// `[DONE]` is the last thing in the body.
fn read_stream(http: &mut Conn) -> Vec<Value> {
    let mut chunks = Vec::new();
    loop {
        let event = http
            .next_data_event()
            .unwrap_or_else(|| panic!("the stream ended without data: [DONE]: {chunks:?}"));
        if event.data.as_deref() == Some("[DONE]") {
            break;
        }
        chunks.push(event.json());
    }
    assert!(http.at_end(), "nothing follows data: [DONE]");
    chunks
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn assert_created_now(answer: &Value) {
    let created = answer["created"].as_u64().expect("created is a Unix time");
    assert!(
        created.abs_diff(now()) < 600,
        "created {created} is not about now"
    );
}

#[test]
fn completions_and_chat_have_the_openai_shapes() {
    let server = ServeChild::start(&[]);

    // Bytes, not characters: "é" is two tokens.
    let prompt = "Café au lait, ";
    let answer = server.ok("/v1/completions", &completion(prompt, 40));
    assert!(answer["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(answer["object"], "text_completion");
    assert_created_now(&answer);
    assert_eq!(answer["model"], "bytelm");
    let choices = answer["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 1, "{answer}");
    assert_eq!(choices[0]["index"], 0);
    assert!(choices[0]["text"].is_string(), "{answer}");
    // No stop strings for plain completions: generation runs to max_tokens.
    assert_eq!(choices[0]["finish_reason"], "length");
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": prompt.len(), "completion_tokens": 40, "total_tokens": prompt.len() + 40}),
        "usage counts bytes"
    );
    assert_ne!(prompt.len(), prompt.chars().count());

    let answer = server.ok("/v1/chat/completions", &chat("What is a list?", 40));
    let other = server.ok("/v1/chat/completions", &chat("What is a list?", 40));
    assert_ne!(answer["id"], other["id"], "every completion has its own id");
    assert_eq!(answer["object"], "chat.completion");
    assert_created_now(&answer);
    assert_eq!(answer["model"], "bytelm");
    let choice = &answer["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    let content = choice["message"]["content"].as_str().expect("content");
    // The documented chat template: one `Role: content` line per message, then `Assistant:`.
    let template = "System: Answer briefly.\nUser: What is a list?\nAssistant:";
    let usage = &answer["usage"];
    assert_eq!(usage["prompt_tokens"], template.len(), "{answer}");
    let completion_tokens = usage["completion_tokens"]
        .as_u64()
        .expect("completion_tokens");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(template.len() as u64 + completion_tokens)
    );
    match choice["finish_reason"].as_str() {
        Some("length") => assert_eq!(completion_tokens, 40, "{answer}"),
        // Chat stops before the model writes the user's next turn.
        Some("stop") => assert!(
            completion_tokens < 40 && !content.contains("\nUser:"),
            "{answer}"
        ),
        other => panic!("finish_reason {other:?}: {answer}"),
    }

    let mut http = Conn::get(server.addr, "/v1/models");
    assert_eq!(http.status, 200);
    let list = http.json();
    assert_eq!(list["object"], "list");
    let bytelm = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|m| m["id"] == "bytelm")
        .unwrap_or_else(|| panic!("bytelm is listed: {list}"));
    assert_eq!(bytelm["object"], "model");
}

/// What the server's completion text must be for generated `tokens` (bytes): the bytes
/// decoded as UTF-8 with invalid sequences replaced by U+FFFD (as the reference does), except
/// that an unfinished multi-byte character at the very end is left out: the server hands out
/// whole characters only, while Python's `decode(errors="replace")` turns the cut character
/// into one more U+FFFD.
fn expected_text(tokens: &[u8]) -> String {
    let mut end = tokens.len();
    // Back from the end over continuation bytes to the last character's first byte.
    for start in (tokens.len().saturating_sub(3)..tokens.len()).rev() {
        if (0x80..0xC0).contains(&tokens[start]) {
            continue;
        }
        if let Err(err) = std::str::from_utf8(&tokens[start..]) {
            if err.valid_up_to() == 0 && err.error_len().is_none() {
                end = start;
            }
        }
        break;
    }
    String::from_utf8_lossy(&tokens[..end]).into_owned()
}

#[test]
fn expected_text_drops_only_an_unfinished_last_character() {
    assert_eq!(expected_text(b"ab"), "ab");
    assert_eq!(expected_text("a€".as_bytes()), "a€");
    assert_eq!(expected_text(&[b'a', 0xE2, 0x82]), "a");
    assert_eq!(expected_text(&[b'a', 0xF0]), "a");
    assert_eq!(expected_text(&[b'a', 0xFF]), "a\u{FFFD}");
    assert_eq!(expected_text(&[0xE2, b'a']), "\u{FFFD}a");
    assert_eq!(expected_text(&[b'a', 0x82]), "a\u{FFFD}");
    assert_eq!(expected_text(&[0xC3, b'a', 0xE2]), "\u{FFFD}a");
    assert_eq!(expected_text(&[0xE2, 0xE2, 0x82]), "\u{FFFD}");
}

/// `models/lm_reference.py` on `models/bytelm.onnx`: (text, generated tokens).
fn reference(prompt: &str, max_tokens: u64) -> (String, Vec<u8>) {
    let mut command = Command::new(python_env());
    command
        .arg(repo("models/lm_reference.py"))
        .arg(repo("models/bytelm.onnx"))
        .args(["--prompt", prompt, "--max-tokens", &max_tokens.to_string()]);
    let out = run(command, Duration::from_secs(120));
    assert!(
        out.success,
        "lm_reference.py failed ({:?}):\n{}\n{}",
        out.code, out.stdout, out.stderr
    );
    let answer: Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|err| panic!("reference output is not JSON ({err}): {}", out.stdout));
    let tokens: Vec<u8> = answer["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .map(|t| u8::try_from(t.as_u64().expect("a token id")).expect("a byte"))
        .collect();
    let text = answer["text"].as_str().expect("text").to_string();
    (text, tokens)
}

fn text_of(answer: &Value) -> String {
    answer["choices"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text: {answer}"))
        .to_string()
}

#[test]
fn greedy_completions_match_the_reference_generator() {
    let server = ServeChild::start(&[]);
    for prompt in ["The ", "def ", "Naïve → "] {
        let (reference_text, tokens) = reference(prompt, 40);
        assert_eq!(tokens.len(), 40);
        let expected = expected_text(&tokens);
        // Python decodes the same bytes; it differs only by one U+FFFD for a cut character.
        assert!(
            reference_text == expected || reference_text == format!("{expected}\u{FFFD}"),
            "decoding disagrees with the reference: {reference_text:?} vs {expected:?}"
        );
        let first = server.ok("/v1/completions", &completion(prompt, 40));
        assert_eq!(
            text_of(&first),
            expected,
            "prompt {prompt:?}: the server's greedy text differs from lm_reference.py \
             (tokens {tokens:?})"
        );
        assert_eq!(first["usage"]["completion_tokens"], 40);
        let second = server.ok("/v1/completions", &completion(prompt, 40));
        assert_eq!(text_of(&second), expected, "greedy is deterministic");
    }

    // Sampling at temperature 0.8 is reproducible with a seed, and the seed matters.
    let sampled = |seed: u64| {
        let body = json!({"model": "bytelm", "prompt": "The ", "max_tokens": 40,
                          "temperature": 0.8, "seed": seed});
        text_of(&server.ok("/v1/completions", &body))
    };
    assert_eq!(sampled(1234), sampled(1234), "same seed, same text");
    let texts: std::collections::BTreeSet<String> = (1..=5).map(sampled).collect();
    assert!(
        texts.len() > 1,
        "five seeds gave one text at temperature 0.8: {texts:?}"
    );

    // `stop` cuts the text before the stop string. It is taken from the greedy text itself.
    let greedy = text_of(&server.ok("/v1/completions", &completion("The ", 40)));
    let chars: Vec<char> = greedy.chars().collect();
    assert!(chars.len() >= 20, "greedy text too short: {greedy:?}");
    let stop: String = chars[15..18].iter().collect();
    let cut = greedy.find(&stop).expect("the stop string occurs");
    let mut body = completion("The ", 40);
    body["stop"] = json!([stop]);
    let answer = server.ok("/v1/completions", &body);
    assert_eq!(
        text_of(&answer),
        &greedy[..cut],
        "text before the stop string {stop:?}"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
}

#[test]
fn streams_use_the_openai_chunk_format() {
    let server = ServeChild::start(&[]);

    // Completions.
    let plain = server.ok("/v1/completions", &completion("def ", 40));
    let mut http = Conn::post_json(
        server.addr,
        "/v1/completions",
        &streaming(completion("def ", 40), json!({})),
    );
    assert_eq!(http.status, 200);
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    assert_eq!(http.header("Cache-Control"), Some("no-cache"));
    assert_eq!(http.header("X-Accel-Buffering"), Some("no"));
    let chunks = read_stream(&mut http);
    assert!(chunks.len() > 2, "several chunks: {chunks:?}");
    let id = &chunks[0]["id"];
    let mut text = String::new();
    for (i, chunk) in chunks.iter().enumerate() {
        assert_eq!(chunk["object"], "text_completion", "{chunk}");
        assert_eq!(&chunk["id"], id, "one id per stream");
        assert_eq!(chunk["model"], "bytelm");
        assert_created_now(chunk);
        assert!(
            chunk.get("usage").is_none(),
            "no usage unless asked: {chunk}"
        );
        let choice = &chunk["choices"][0];
        text.push_str(choice["text"].as_str().expect("text"));
        let last = i + 1 == chunks.len();
        let expected_reason = if last { json!("length") } else { Value::Null };
        assert_eq!(
            choice["finish_reason"], expected_reason,
            "chunk {i}: {chunk}"
        );
    }
    assert_eq!(text, text_of(&plain), "the pieces make the plain text");

    // Chat, with the usage chunk.
    let plain = server.ok("/v1/chat/completions", &chat("What is a dict?", 40));
    let mut http = Conn::post_json(
        server.addr,
        "/v1/chat/completions",
        &streaming(
            chat("What is a dict?", 40),
            json!({"stream_options": {"include_usage": true}}),
        ),
    );
    assert_eq!(http.status, 200);
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    let chunks = read_stream(&mut http);
    let id = &chunks[0]["id"];
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert_eq!(&chunk["id"], id, "one id per stream");
        assert_eq!(chunk["model"], "bytelm");
    }
    let (first, rest) = chunks.split_first().expect("chunks");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant", "{first}");
    assert_eq!(first["choices"][0]["finish_reason"], Value::Null);
    let (usage, rest) = rest.split_last().expect("a usage chunk");
    let (last, pieces) = rest.split_last().expect("a final chunk");
    assert_eq!(usage["choices"], json!([]), "{usage}");
    assert_eq!(usage["usage"], plain["usage"], "the plain answer's usage");
    assert_eq!(last["choices"][0]["delta"], json!({}), "{last}");
    assert_eq!(
        last["choices"][0]["finish_reason"],
        plain["choices"][0]["finish_reason"]
    );
    assert!(!pieces.is_empty());
    let mut content = first["choices"][0]["delta"]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    for piece in pieces {
        let choice = &piece["choices"][0];
        assert!(
            choice["delta"].get("role").is_none(),
            "role only first: {piece}"
        );
        assert_eq!(choice["finish_reason"], Value::Null, "{piece}");
        content.push_str(choice["delta"]["content"].as_str().expect("content"));
    }
    assert_eq!(
        content,
        plain["choices"][0]["message"]["content"]
            .as_str()
            .expect("content"),
        "the deltas make the plain message"
    );
}

/// Asserts an OpenAI-shaped JSON error with `status` and `code`.
fn assert_openai_error(mut http: Conn, status: u16, code: &str, needle: &str) {
    let body = http.json();
    let reply = Reply {
        status: http.status,
        headers: vec![(
            "Content-Type".to_string(),
            http.header("Content-Type").unwrap_or_default().to_string(),
        )],
        body: body.to_string().into_bytes(),
    };
    assert_openai_reply(&reply, status, code, needle);
}

/// [`assert_openai_error`] on an answer of the test client.
fn assert_openai_reply(reply: &Reply, status: u16, code: &str, needle: &str) {
    let body = reply.json();
    assert_eq!(reply.status, status, "{body}");
    assert_eq!(
        reply.header("Content-Type"),
        Some("application/json"),
        "errors come before any streaming, as JSON"
    );
    let error = &body["error"];
    let message = error["message"].as_str().unwrap_or("");
    assert!(
        message.contains(needle),
        "message {message:?} should contain {needle:?}: {body}"
    );
    assert_eq!(error["type"], "invalid_request_error", "{body}");
    assert!(
        error.as_object().is_some_and(|e| e.contains_key("param")),
        "{body}"
    );
    assert_eq!(error["code"], code, "{body}");
}

#[test]
fn errors_are_openai_shaped_with_the_right_status() {
    // Routing, parsing and the error bodies: the test client, no socket.
    let app = TestApp::models("models");
    let with = |mut body: Value, field: &str, value: Value| {
        body[field] = value;
        body
    };
    let json_body = |body: Value| streaming(body, json!({})).to_string().into_bytes();
    let cases = [
        (
            "/v1/completions",
            json_body(with(completion("x", 4), "model", json!("no-such-model"))),
            404,
            "model_not_found",
            "no-such-model",
        ),
        (
            "/v1/completions",
            json_body(with(completion("x", 4), "model", json!("iris"))),
            400,
            "bad_request",
            "cannot generate",
        ),
        (
            "/v1/chat/completions",
            b"{\"model\":".to_vec(),
            400,
            "invalid_json",
            "",
        ),
        (
            "/v1/chat/completions",
            json_body(with(chat("hi", 4), "temperature", json!(5))),
            400,
            "invalid_input",
            "temperature",
        ),
        (
            "/v1/chat/completions",
            json_body(json!({"model": "bytelm", "max_tokens": 4})),
            400,
            "invalid_input",
            "messages",
        ),
        (
            "/v1/chat/completions",
            json_body(with(chat("hi", 4), "n", json!(2))),
            400,
            "invalid_input",
            "n = 1",
        ),
        // An encoder folder is served by /v1/embeddings: naming it for text is the client's
        // mistake (400), not a model that does not exist (404).
        (
            "/v1/chat/completions",
            json_body(with(chat("hi", 4), "model", json!("tinyembed"))),
            400,
            "invalid_input",
            "`tinyembed` is an embedding model",
        ),
        (
            "/v1/completions",
            json_body(with(completion("x", 4), "model", json!("tinyembed"))),
            400,
            "invalid_input",
            "POST /v1/embeddings",
        ),
    ];
    for (path, body, status, code, needle) in cases {
        let reply = app.request("POST", path, &[("Content-Type", "application/json")], &body);
        assert_openai_reply(&reply, status, code, needle);
    }
    // The next request is still served.
    assert_eq!(app.get("/v1/models").status, 200);
}

#[test]
fn v1_models_lists_the_models_v1_runs() {
    let app = TestApp::models("models");
    let listed = app.get("/v1/models").json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    // Language models for completions and chat, the encoder folder for /v1/embeddings; iris,
    // a plain ONNX classifier, is served by /models/iris/predict and /v2 only.
    assert_eq!(ids, ["bytelm", "tinychat", "tinyembed"], "{listed}");
    for model in listed["data"].as_array().into_iter().flatten() {
        assert_eq!(model["object"], "model", "{model}");
        assert_eq!(model["owned_by"], "tinyserve", "{model}");
    }
    // Each listed model answers its route.
    let embedded = app.post_json(
        "/v1/embeddings",
        &json!({"model": "tinyembed", "input": "a listed model runs"}),
    );
    assert_eq!(embedded.status, 200, "{}", embedded.text());
    let chat = app.post_json(
        "/v1/chat/completions",
        &json!({"model": "tinychat", "max_tokens": 2, "temperature": 0,
            "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(chat.status, 200, "{}", chat.text());
    assert_eq!(
        app.post_json(
            "/models/iris/predict",
            &json!({"inputs": {"input": [[5.1, 3.5, 1.4, 0.2]]}})
        )
        .status,
        200
    );
}

/// Waits (bounded) until the cancelled counter passes `before`, then until the token counter
/// stops moving; returns the final token count.
fn wait_for_cancellation(server: &ServeChild, cancelled_before: f64) -> f64 {
    let deadline = Instant::now() + POLL_LIMIT;
    while server.metric(CANCELLED) <= cancelled_before {
        assert!(
            Instant::now() < deadline,
            "the generation was not cancelled within {POLL_LIMIT:?} of the client leaving; \
             stderr:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Cancelled generations count their last token before the counter moves; check anyway
    // that nothing keeps generating.
    let mut last = server.metric(TOKENS);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = server.metric(TOKENS);
        if now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "tokens are still being generated: {last} then {now}"
        );
        last = now;
    }
}

#[test]
fn a_client_that_leaves_stops_the_generation() {
    let server = ServeChild::start(&[]);
    let tokens_before = server.metric(TOKENS);
    let cancelled_before = server.metric(CANCELLED);
    let mut http = Conn::post_json(
        server.addr,
        "/v1/chat/completions",
        &streaming(chat("Tell me everything.", LONG), json!({})),
    );
    assert_eq!(http.status, 200);
    for _ in 0..3 {
        let event = http.next_data_event().expect("an event");
        assert_ne!(event.data.as_deref(), Some("[DONE]"));
    }
    drop(http);

    let tokens = wait_for_cancellation(&server, cancelled_before);
    assert_eq!(server.metric(CANCELLED), cancelled_before + 1.0);
    let generated = tokens - tokens_before;
    assert!(
        generated >= 2.0 && generated < (LONG / 4) as f64,
        "the request generated {generated} of its {LONG} tokens before it was stopped"
    );
}

/// Opens a long chat stream; returns the exchange (status and head read).
fn open_long_stream(addr: SocketAddr) -> Conn {
    Conn::post_json(
        addr,
        "/v1/chat/completions",
        &streaming(chat("Go on and on.", LONG), json!({})),
    )
}

#[test]
fn streams_beyond_the_cap_get_503_while_plain_requests_are_served() {
    const CAP: usize = 2;
    let server = ServeChild::start(&["--max-streams", "2"]);
    let addr = server.addr;

    // CAP + 2 streams at once; nobody reads them.
    let barrier = Arc::new(Barrier::new(CAP + 2));
    let openers: Vec<_> = (0..CAP + 2)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                open_long_stream(addr)
            })
        })
        .collect();
    let mut streams: Vec<Conn> = openers
        .into_iter()
        .map(|t| t.join().expect("opener thread"))
        .collect();
    let (open, refused): (Vec<Conn>, Vec<Conn>) = streams.drain(..).partition(|h| h.status == 200);
    assert_eq!(open.len(), CAP, "exactly the cap's worth of streams run");
    assert_eq!(refused.len(), 2);
    for mut http in refused {
        // The server's own overload answer (it is decided after the handler, by the server),
        // not the OpenAI error shape.
        let reply = http.reply();
        reply.assert_error(503, "overloaded", "streams");
        assert_eq!(reply.header("Retry-After"), Some("1"));
    }

    // Plain requests are still answered while the streams hold their workers.
    for _ in 0..5 {
        let mut http = Conn::get(addr, "/v2/health/ready");
        assert_eq!(http.status, 200);
        http.read_to_end();
        let answer = server.ok(
            "/v2/models/iris/infer",
            &json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                               "data": [5.1, 3.5, 1.4, 0.2]}]}),
        );
        let label = answer["outputs"]
            .as_array()
            .and_then(|o| o.iter().find(|o| o["name"] == "label"))
            .unwrap_or_else(|| panic!("a label output: {answer}"));
        assert_eq!(label["data"], json!([0]));
    }
    // The slots were held all along: one more stream is still refused.
    let extra = open_long_stream(addr);
    assert_eq!(extra.status, 503, "the cap still holds");

    // The running streams are real: each delivers its events.
    for mut http in open {
        let first = http.next_data_event().expect("an event");
        assert_eq!(first.json()["choices"][0]["delta"]["role"], "assistant");
    }
    // (Dropped above: their generations are cancelled.) Slots come back once the server has
    // noticed; a new stream then runs.
    let deadline = Instant::now() + POLL_LIMIT;
    loop {
        let mut http = open_long_stream(addr);
        if http.status == 200 {
            assert!(http.next_data_event().is_some());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stream slot came back within {POLL_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_model_stream_passes_through_nginx_as_it_is_generated() {
    let server = ServeChild::start(&[]);
    let nginx = Nginx::start(&server.addr.to_string());

    let mut http = Conn::get(nginx.addr, "/v1/models");
    assert_eq!(http.status, 200, "{}", nginx.log());
    assert!(http.json()["data"].to_string().contains("bytelm"));

    let tokens_before = server.metric(TOKENS);
    let cancelled_before = server.metric(CANCELLED);
    let mut http = Conn::post_json(
        nginx.addr,
        "/v1/chat/completions",
        &streaming(chat("Tell me everything.", LONG), json!({})),
    );
    assert_eq!(http.status, 200, "{}", nginx.log());
    assert!(http
        .header("Server")
        .is_some_and(|s| s.starts_with("nginx")));
    assert_eq!(http.header("Content-Type"), Some("text/event-stream"));
    // The first events arrive while the generation is still running (a proxy that buffered
    // the response would hold them for seconds, until all 4096 tokens exist; the client's read
    // timeout then fails the test).
    let first = http
        .next_data_event()
        .expect("the first event through nginx");
    assert_eq!(first.json()["choices"][0]["delta"]["role"], "assistant");
    let second = http
        .next_data_event()
        .expect("a content event through nginx");
    assert!(second.json()["choices"][0]["delta"]["content"].is_string());
    let generated = server.metric(TOKENS) - tokens_before;
    assert!(
        generated < LONG as f64,
        "the events came only after the generation ended ({generated} tokens)"
    );
    // Leaving nginx ends the upstream request, and the generation with it.
    drop(http);
    wait_for_cancellation(&server, cancelled_before);
}

pub(crate) fn run_openai_check(urls: &[String], stderr: &dyn Fn() -> String) -> String {
    let python = python_env();
    let mut command = Command::new(python);
    command.arg(repo("tests/python/openai_check.py")).args(urls);
    let out = run(command, Duration::from_secs(120));
    let report = format!("{}\n--- servers' stderr ---\n{}", out.report(), stderr());
    assert_checks_passed(
        &out,
        "openai_check.py",
        &report,
        &[
            "ok    models.list() contains bytelm",
            "ok    streamed completion pieces",
            "ok    streamed chat pieces",
            "ok    the first chat chunk has role assistant",
            "ok    include_usage",
            "ok    an unknown model raises openai.NotFoundError",
            "ok    a negative temperature raises openai.BadRequestError (400, invalid_request_error)",
            "ok    max_tokens past the limit raises openai.BadRequestError (400, invalid_request_error)",
        ],
    );
    out.stdout
}

#[test]
fn the_official_openai_client_works() {
    let server = ServeChild::start(&[]);
    let stdout = run_openai_check(&[server.base()], &|| server.stderr());
    assert!(!stdout.contains("through the proxy"), "no proxy given");
}

#[test]
fn the_official_openai_client_streams_identically_through_an_upstream_proxy() {
    let direct = ServeChild::start(&[]);
    let upstream = format!("local={}/v1", direct.base());
    let proxy = ServeChild::start(&["--upstream", &upstream]);
    let stdout = run_openai_check(&[direct.base(), proxy.base()], &|| {
        format!("direct:\n{}\nproxy:\n{}", direct.stderr(), proxy.stderr())
    });
    assert_proxied_identically(&stdout);
}

/// The checks of openai_check.py that compare the proxy's answers with the direct ones.
pub(crate) fn assert_proxied_identically(stdout: &str) {
    for needle in [
        "ok    the proxy lists local/bytelm",
        "ok    completion stream through the proxy has the same",
        "ok    chat stream through the proxy has the same",
        "ok    plain chat through the proxy has the same text",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?}:\n{stdout}");
    }
}

// Decoder folders (issue #15): `models/tinychat`, in Hugging Face Optimum's layout, is served
// as model `tinychat` by the default `tinyserve serve`.

#[test]
fn the_official_openai_client_gets_the_reference_greedy_output_from_a_decoder_folder() {
    let server = ServeChild::start(&[]);
    let mut command = Command::new(python_env());
    command
        .arg(repo("tests/python/decoder_openai_check.py"))
        .arg(server.base())
        .arg(repo("models/tinychat"));
    let out = run(command, Duration::from_secs(300));
    let report = format!(
        "{}\n--- server's stderr ---\n{}",
        out.report(),
        server.stderr()
    );
    assert_checks_passed(
        &out,
        "decoder_openai_check.py",
        &report,
        &[
            "ok    models.list() contains tinychat",
            "ok    completion 'The ': text equals the reference's",
            "ok    streamed completion 'The ': 40 streamed pieces are the reference's tokens one by one",
            "ok    chat 'What is assert?': text equals the reference's",
            "ok    chat 'What is assert?': usage counts the reference's tokens (13 + 40)",
            "ok    streamed chat 'What is assert?': 40 streamed pieces are the reference's tokens one by one",
        ],
    );
}

#[test]
fn a_decoder_request_beyond_its_context_is_a_400_before_any_stream() {
    let app = TestApp::models("models");
    let tokens = "tinyserve_generated_tokens_total{model=\"tinychat\"}";
    let body = json!({"model": "tinychat", "prompt": "The class", "max_tokens": 1023});
    assert_openai_reply(
        &app.post_json("/v1/completions", &streaming(body, json!({}))),
        400,
        "invalid_input",
        "context of 1024 tokens",
    );
    let body = json!({"model": "tinychat", "max_tokens": 1020,
        "messages": [{"role": "user", "content": "What is assert?"}]});
    assert_openai_reply(
        &app.post_json("/v1/chat/completions", &body),
        400,
        "invalid_input",
        "the prompt (13 tokens) plus max_tokens (1020)",
    );
    let big = "x".repeat(1024 * 1024 + 1);
    let body = json!({"model": "tinychat", "max_tokens": 4,
        "messages": [{"role": "user", "content": big}]});
    assert_openai_reply(
        &app.post_json("/v1/chat/completions", &body),
        400,
        "invalid_input",
        "the prompt limit",
    );
    let body = json!({"model": "tinychat", "prompt": "", "max_tokens": 4});
    assert_openai_reply(
        &app.post_json("/v1/completions", &streaming(body, json!({}))),
        400,
        "invalid_input",
        "no tokens",
    );
    assert_eq!(app.metric(tokens), 0.0, "nothing was generated");
    // One token less fits: the limit is the context, not a guess.
    let body = json!({"model": "tinychat", "max_tokens": 1011, "temperature": 0,
        "stop": ["\n"], "messages": [{"role": "user", "content": "What is assert?"}]});
    let answer = app.ok("/v1/chat/completions", &body);
    assert_eq!(answer["usage"]["prompt_tokens"], 13, "{answer}");
    // The template's own errors are the client's: 400 with the template's message.
    let body = json!({"model": "tinychat", "max_tokens": 4, "messages": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]});
    assert_openai_reply(
        &app.post_json("/v1/chat/completions", &body),
        400,
        "invalid_input",
        "roles must alternate",
    );
    // A decoder is served through /v1 only.
    let listed = app.get("/v1/models").json();
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .map(|d| d.iter().filter_map(|m| m["id"].as_str()).collect())
        .unwrap_or_default();
    assert!(ids.contains(&"tinychat"), "{listed}");
    let http = app.get("/v2/models/tinychat");
    let body = http.json();
    assert_eq!(http.status, 404, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.contains("decoder folder") && m.contains("/v1/chat/completions")),
        "{body}"
    );
}

#[test]
fn a_decoder_folder_missing_tokenizer_json_stops_start_up_naming_it() {
    let dir = crate::support::scratch_dir("serve-no-tokenizer");
    let folder = dir.join("mychat");
    std::fs::create_dir_all(&folder).expect("mkdir");
    for name in ["model.onnx", "tokenizer_config.json", "config.json"] {
        std::fs::copy(repo("models/tinychat").join(name), folder.join(name)).expect("copy");
    }
    std::fs::copy(repo("models/iris.onnx"), dir.join("iris.onnx")).expect("copy iris");
    let mut command = crate::support::process::tinyserve();
    // Without --exit-on-error the folder is UNAVAILABLE and the rest serves (tests/repository.rs).
    command
        .args(["serve", "--port", "0", "--exit-on-error", "--models"])
        .arg(&dir);
    let out = crate::support::serve::assert_refuses_to_serve(
        command,
        "serving a decoder folder without tokenizer.json succeeded",
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.stderr.starts_with("error: ")
            && out.stderr.contains(&folder.display().to_string())
            && out.stderr.contains("missing tokenizer.json"),
        "stderr: {}",
        out.stderr
    );
}

#[test]
fn a_decoder_generation_over_the_kv_cache_budget_is_a_400_naming_it() {
    // tinychat: 2 layers × 2 key/value heads × 32 × 4 B × 2 = 1024 bytes per position.
    let server = ServeChild::start(&["--kv-cache-bytes", "102400"]);
    let body = json!({"model": "tinychat", "prompt": "The ", "max_tokens": 99});
    assert_openai_error(
        Conn::post_json(server.addr, "/v1/completions", &streaming(body, json!({}))),
        400,
        "invalid_input",
        "need 103424 bytes of KV cache, over model \"tinychat\"'s budget of 102400 bytes (--kv-cache-bytes)",
    );
    let body = json!({"model": "tinychat", "prompt": "The ", "max_tokens": 98, "temperature": 0});
    let answer = server.ok("/v1/completions", &body);
    assert_eq!(answer["usage"]["prompt_tokens"], 2, "{answer}");
}
