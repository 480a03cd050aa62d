//! A custom API over a loaded model: `cargo run --example predict`, then
//! `curl localhost:8000/classify -H 'Content-Type: application/json' -d '[[5.1, 3.5, 1.4, 0.2]]'`.
//!
//! Models load once, before the server starts; each handler captures a cheap clone of the
//! registry, and `?` turns every failure into the right JSON error.

use tinyserve::{model::ModelRegistry, App, Json, Request};

fn main() -> tinyserve::Result<()> {
    let models = ModelRegistry::load_dir("models")?; // every NAME.onnx, loaded once
    App::new()
        .get("/hello/<name>", |req: &Request| {
            format!("Hello, {}!", req.param("name").unwrap_or("you"))
        })
        .post(
            "/classify",
            move |req: &Request| -> tinyserve::Result<Json<serde_json::Value>> {
                let iris = models.get("iris")?; // 404 model_not_found if absent
                let body: serde_json::Value = req.json()?; // 415 / 400 / 422 as appropriate
                Ok(Json(tinyserve::protocol::predict(&iris, body)?))
            },
        )
        .with_workers(8)
        // Every example reads PORT (default 8000), so two can run at once.
        .run(format!(
            "127.0.0.1:{}",
            std::env::var("PORT").as_deref().unwrap_or("8000")
        ))
}
