//! An AI handler calling other services in parallel: `cargo run --example fanout`, then the
//! `curl` it prints. Runs offline: it starts its own fake upstreams on 127.0.0.1:0, a vector
//! store (~50 ms), a feature store (~80 ms) and an LLM (~100 ms).
//!
//! `POST /answer` embeds the input with the local ONNX model, queries both stores at once
//! (~80 ms, not 130) under a deadline, then asks the LLM with the combined context, and
//! reports per-step timings. A store that fails or misses the deadline (try `?deadline_ms=60`)
//! gives a partial answer; a failed LLM is a 502/504 naming it.

use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tinyserve::{model::ModelRegistry, protocol, App, FanOut, Json, Request, Upstream};

/// Starts a fake service answering every `POST` after `ms` milliseconds, on a free port.
fn fake(name: &str, ms: u64, answer: fn(&Value) -> Value) -> tinyserve::Result<Upstream> {
    let server = App::new()
        .post("/<op>", move |req: &Request| {
            sleep(Duration::from_millis(ms)); // simulated latency
            req.json::<Value>().map(|query| Json(answer(&query)))
        })
        .bind("127.0.0.1:0")?; // keeps running after `server` is dropped
    Ok(Upstream::new(name, &format!("http://{}", server.addr())))
}

fn millis(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 10_000.0).round() / 10.0
}

fn main() -> tinyserve::Result<()> {
    let vectors = fake(
        "vectors",
        50,
        |_| json!({"documents": ["setosa: short petals"]}),
    )?;
    let features = fake("features", 80, |_| json!({"user": {"plan": "pro"}}))?;
    let llm = fake("llm", 100, |q| {
        let n = q["context"].as_array().map_or(0, Vec::len);
        json!({"text": format!("An answer from {n} context item(s).")})
    })?;
    let models = ModelRegistry::load_dir("models")?;
    let answer = move |req: &Request| -> tinyserve::Result<Json<Value>> {
        let started = Instant::now();
        let deadline_ms = req
            .query_param("deadline_ms")
            .and_then(|ms| ms.parse().ok());
        let deadline = Duration::from_millis(deadline_ms.unwrap_or(200));
        // 1. Embedding: the local model, in-process.
        let outputs = protocol::predict(&*models.get("iris")?, req.json()?)?;
        let embedding = outputs["outputs"]["probabilities"].clone();
        let embed_ms = millis(started);
        // 2. Both stores at once; abandoned if the client leaves.
        let step = Instant::now();
        let query = json!({"embedding": embedding});
        let calls = vec![
            vectors.post_json("/search", &query),
            features.post_json("/lookup", &query),
        ];
        let (mut context, mut missing) = (Vec::new(), Vec::new());
        for result in FanOut::shared()?.run_for(req, calls, deadline) {
            match result.and_then(|reply| reply.json::<Value>()) {
                Ok(value) => context.push(value),
                Err(err) => missing.push(err.to_string()), // partial answer: the handler decides
            }
        }
        let stores_ms = millis(step);
        // 3. The LLM with the combined context: without it there is no answer (502/504).
        let step = Instant::now();
        let prompt = json!({"embedding": embedding, "context": context});
        let reply: Value = llm
            .post_json("/generate", &prompt)
            .send_within(Duration::from_secs(2))?
            .json()?;
        Ok(Json(json!({
            "answer": reply["text"],
            "label": outputs["outputs"]["label"],
            "context": context,
            "missing": missing,
            "timings_ms": {"embed": embed_ms, "stores": stores_ms, "llm": millis(step), "total": millis(started)},
        })))
    };

    let body = "-H 'Content-Type: application/json' -d '[[5.1, 3.5, 1.4, 0.2]]'";
    println!("try: curl -s localhost:8000/answer {body}");
    App::new()
        .post("/answer", answer)
        .with_workers(8)
        // Every example reads PORT (default 8000), so two can run at once.
        .run(format!(
            "127.0.0.1:{}",
            std::env::var("PORT").as_deref().unwrap_or("8000")
        ))
}
