//! A fan-out to real services over HTTPS: every URL of `UPSTREAMS` (comma-separated) is called
//! at once by `GET /all?path=/p`, which answers each upstream's status and body, or its error.
//!
//! `UPSTREAMS=https://api.github.com,https://example.com PORT=8000 cargo run --example
//! fanout_https`, then `curl 'localhost:8000/all?path=/'`. HTTPS trusts the platform's root
//! certificates, or those of `SSL_CERT_FILE` / `SSL_CERT_DIR` when set; `HTTPS_PROXY` and
//! `NO_PROXY` choose a forward proxy, as with curl. Prints `listening on http://ADDR` once it
//! accepts connections (`PORT=0` picks a free port).

use std::time::Duration;

use serde_json::{json, Value};
use tinyserve::{App, FanOut, Json, Request, Upstream};

fn main() -> tinyserve::Result<()> {
    let upstreams: Vec<Upstream> = std::env::var("UPSTREAMS")
        .unwrap_or_default()
        .split(',')
        .filter(|url| !url.is_empty())
        .enumerate()
        .map(|(i, url)| Upstream::new(&format!("u{i}"), url))
        .collect();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    let all = move |req: &Request| -> tinyserve::Result<Json<Value>> {
        let path = req.query_param("path").unwrap_or_else(|| "/".to_string());
        let calls = upstreams.iter().map(|u| u.get(&path)).collect();
        let results = FanOut::shared()?.run_for(req, calls, Duration::from_secs(5));
        let answers: Vec<Value> = results
            .into_iter()
            .map(|result| match result {
                Ok(reply) => json!({"status": reply.status, "body": reply.text()}),
                Err(err) => json!({"error": err.public_message(), "status": err.status()}),
            })
            .collect();
        // One TLS handshake per kept-alive connection, not per call.
        let handshakes: u64 = upstreams.iter().map(Upstream::tls_handshakes).sum();
        Ok(Json(
            json!({"answers": answers, "tls_handshakes": handshakes}),
        ))
    };
    let server = App::new().get("/all", all).bind(("127.0.0.1", port))?;
    println!("listening on http://{}", server.addr());
    server.join();
    Ok(())
}
