//! Server-Sent Events, token by token: `cargo run --example sse`, then
//! `curl -N localhost:8000/tokens`.
//!
//! `Sse` sets `Content-Type: text/event-stream`, `Cache-Control: no-cache` and
//! `X-Accel-Buffering: no` (so nginx passes events through unbuffered), and sends a `:`
//! keep-alive comment when the producer is quiet for 15 s.

use std::time::Duration;

use tinyserve::{App, Event, Sse};

fn main() -> tinyserve::Result<()> {
    App::new()
        .get("/tokens", |_| {
            Sse::new(|events| {
                for (i, token) in ["Once", " upon", " a", " time", "..."].iter().enumerate() {
                    events.send(Event::data(*token).with_id(i.to_string()))?;
                    std::thread::sleep(Duration::from_millis(300));
                }
                events.send(Event::data("[DONE]"))
            })
        })
        // Every example reads PORT (default 8000), so two can run at once.
        .run(format!(
            "127.0.0.1:{}",
            std::env::var("PORT").as_deref().unwrap_or("8000")
        ))
}
