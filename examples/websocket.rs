//! WebSockets, sync style: `cargo run --example websocket` (port 8000, or `PORT`), then talk to
//! it with any WebSocket client, for instance Python's `websockets`:
//!
//! ```text
//! python3 -m websockets ws://localhost:8000/ws/echo
//! python3 -m websockets ws://localhost:8000/ws/generate
//! > {"prompt": "The ", "max_tokens": 40}
//! ```
//!
//! - `GET /` answers "hello" (health checks, the proxy test).
//! - `GET /ws/echo` sends every message back: text as text, binary as binary. A message over
//!   1 MiB, in one frame or in fragments, closes the socket with 1009 (the server's limit,
//!   `Settings::websockets`). A plain `GET` without the upgrade gets 426.
//! - `GET /ws/generate` takes `{"prompt": "...", "max_tokens": N}` and answers with the tokens
//!   of the bundled byte-level language model `models/bytelm.onnx`, one text message per
//!   token (a byte that ends inside a UTF-8 character rides with the next), then
//!   `{"done": true, ...}`. The generation is the library's (`Generator`, the one behind
//!   `/v1/completions`): when the client closes mid-generation, the next `send` fails and the
//!   generation stops there.
//!
//! The handler is a plain blocking function on the connection's thread: `recv` waits for the
//! next message, `send` returns once the socket took it, and returning closes the socket.

use serde_json::{json, Value};
use tinyserve::log::{LogFormat, LogLevel, Logger};
use tinyserve::model::{FinishReason, Generator, ModelRegistry, Sampling};
use tinyserve::websocket::{Message, WebSocket};
use tinyserve::{App, Disconnected, Error, Request, Settings};

/// The most tokens one prompt may ask for (as `/v1/completions`).
const MAX_TOKENS: u64 = 4096;

fn main() -> tinyserve::Result<()> {
    // One access line per request, and per WebSocket when it closes (messages in and out).
    let _ = Logger::new(LogLevel::Info, LogFormat::Human).install();
    let mut settings = Settings::default();
    settings.access_log = true;
    let generator = Generator::new(ModelRegistry::load_dir("models")?.get("bytelm")?)?;
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".into());
    App::new()
        .with_settings(settings)
        .get("/", |_| "hello")
        .websocket("/ws/echo", |_req, socket| loop {
            match socket.recv()? {
                Message::Close(_) => return Ok(()),
                message => socket.send(message)?,
            }
        })
        .websocket(
            "/ws/generate",
            move |_req: &Request, socket: &mut WebSocket| loop {
                let text = match socket.recv()? {
                    Message::Text(text) => text,
                    Message::Binary(_) => {
                        socket.send(error(&Error::bad_request("send JSON as text")))?;
                        continue;
                    }
                    Message::Close(_) => return Ok(()),
                };
                generate(&generator, &text, socket)?;
            },
        )
        .run(format!("127.0.0.1:{port}"))
}

/// Answers one prompt: its tokens, then `{"done": true, ...}`; a mistake is answered with a
/// JSON error message, and the socket stays open for the next prompt.
fn generate(generator: &Generator, text: &str, socket: &mut WebSocket) -> Result<(), Disconnected> {
    let (prompt, sampling) = match parse(text) {
        Ok(parsed) => parsed,
        Err(err) => return socket.send(error(&err)),
    };
    let generation = generator.generate(&prompt, &sampling, |piece| socket.send(piece));
    match generation {
        Ok(done) if done.finish_reason == FinishReason::Cancelled => {
            tinyserve::log::info(&format!(
                "generation stopped after {} of {} tokens: the client left",
                done.completion_tokens, sampling.max_tokens
            ));
            Err(Disconnected)
        }
        Ok(done) => socket.send(json!({
            "done": true,
            "finish_reason": done.finish_reason.as_str(),
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
        })),
        Err(err) => socket.send(error(&err)),
    }
}

/// `{"prompt": string, "max_tokens": 1 to 4096 (default 64)}`, greedy sampling.
fn parse(text: &str) -> tinyserve::Result<(String, Sampling)> {
    let body: Value = serde_json::from_str(text)?;
    let prompt = body["prompt"]
        .as_str()
        .ok_or_else(|| Error::bad_request("\"prompt\" must be a string"))?;
    let max_tokens = match &body["max_tokens"] {
        Value::Null => 64,
        value => value
            .as_u64()
            .filter(|n| (1..=MAX_TOKENS).contains(n))
            .ok_or_else(|| {
                Error::bad_request(format!("\"max_tokens\" must be 1 to {MAX_TOKENS}"))
            })?,
    };
    let sampling = Sampling {
        max_tokens: max_tokens as usize,
        temperature: 0.0,
        ..Sampling::default()
    };
    Ok((prompt.to_string(), sampling))
}

/// An error as a JSON message: `{"error": ..., "code": ...}`, as the HTTP routes answer.
fn error(err: &Error) -> Value {
    err.to_json()
}
