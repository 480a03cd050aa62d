//! tinyserve's log lines through the application's own logger, here `env_logger`.
//!
//! tinyserve logs through the `log` facade: the access line of each request on target
//! `tinyserve::access` (its fields as key-values), errors and warnings on target `tinyserve`.
//! Whatever logger `main` installs receives them; without one nothing is written.
//!
//! Run: `RUST_LOG=info cargo run --example logging`, then `curl localhost:8000/hello`:
//! `[2026-12-05T18:31:32Z INFO  tinyserve::access] GET /hello 200 0.083ms id=... client=...`

use tinyserve::{App, Settings};

fn main() -> tinyserve::Result<()> {
    env_logger::init();
    let mut settings = Settings::default();
    settings.access_log = true;
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8000".into());
    let server = App::new()
        .with_settings(settings)
        .get("/hello", |_| "Hello, world!")
        .bind(addr.as_str())?;
    println!("listening on http://{}", server.addr());
    server.join();
    Ok(())
}
