//! The server `bench/fanout.sh` measures: `cargo run --release --example fanout_bench [PORT]`.
//!
//! Starts an upstream on 127.0.0.1:0 whose `GET /item/<i>` answers after 100 ms (simulated
//! latency), and a handler app whose `GET /fanout` makes 8 calls to it through a `FanOut`
//! (in about 100 ms) and `GET /sequential` the same 8 calls one after another (about 800 ms),
//! for comparison. Prints `listening on http://ADDR` on stdout once it accepts connections.
//!
//! The fan-out is `FanOut::shared()`, unsized: each handler's thread makes its 8 calls itself
//! on pooled connections. The server has 128 handler workers (each request holds one while it
//! waits) and the upstream 640 (each simulated call holds one for 100 ms).

use std::io::Write;
use std::thread::sleep;
use std::time::Duration;

use serde_json::json;
use tinyserve::{App, FanOut, Request, Upstream};

const CALLS: usize = 8;
const DEADLINE: Duration = Duration::from_secs(1);

fn main() -> tinyserve::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let upstream = App::new()
        .get("/item/<i>", |req: &Request| {
            sleep(Duration::from_millis(100));
            req.param("i").unwrap_or_default().to_string()
        })
        .with_workers(640)
        .bind("127.0.0.1:0")?;
    let items = Upstream::new("items", &format!("http://{}", upstream.addr()));
    let sequential = items.clone();
    let server = App::new()
        .get("/fanout", move |req: &Request| -> tinyserve::Result<_> {
            let calls = (0..CALLS)
                .map(|i| items.get(&format!("/item/{i}")))
                .collect();
            let mut answers = Vec::with_capacity(CALLS);
            for result in FanOut::shared()?.run_for(req, calls, DEADLINE) {
                answers.push(result?.text());
            }
            Ok(json!({ "items": answers }))
        })
        .get("/sequential", move |_: &Request| -> tinyserve::Result<_> {
            let mut answers = Vec::with_capacity(CALLS);
            for i in 0..CALLS {
                let reply = sequential.get(&format!("/item/{i}")).send()?;
                answers.push(reply.text());
            }
            Ok(json!({ "items": answers }))
        })
        .with_workers(128)
        .bind(("127.0.0.1", port))?;
    println!("listening on http://{}", server.addr());
    std::io::stdout().flush()?;
    server.join();
    Ok(())
}
