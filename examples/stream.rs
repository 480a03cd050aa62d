//! A chunked text stream: `cargo run --example stream`, then `curl -N localhost:8000/count`.
//!
//! The producer is a plain loop on a worker thread. Each `send` reaches the client at once
//! (one HTTP chunk, flushed), and fails when the client has gone, so the loop stops instead
//! of counting for nobody.

use std::time::Duration;

use tinyserve::{App, Response};

fn main() -> tinyserve::Result<()> {
    App::new()
        .get("/count", |_| {
            Response::stream("text/plain; charset=utf-8", |body| {
                for n in 1..=10 {
                    body.send(format!("{n}\n"))?;
                    std::thread::sleep(Duration::from_millis(300));
                }
                Ok(())
            })
        })
        // Every example reads PORT (default 8000), so two can run at once.
        .run(format!(
            "127.0.0.1:{}",
            std::env::var("PORT").as_deref().unwrap_or("8000")
        ))
}
