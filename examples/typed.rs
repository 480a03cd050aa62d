//! A typed route: the body's schema is written once, as Rust types, and it both checks every
//! request and documents the route. `cargo run --example typed` (port: `PORT`, default 8000),
//! then:
//!
//! ```text
//! curl -s localhost:8000/score -H 'Content-Type: application/json' \
//!      -d '{"items": [{"text": "a cat"}, {"text": "", "weight": -1}], "top_k": 0, "extra": 1}'
//! ```
//!
//! answers 400 `invalid_body` with all four mistakes, each at its path (`items[1].text`,
//! `items[1].weight`, `top_k`, `extra`), and <http://127.0.0.1:8000/docs> shows the request and
//! response schemas, constraints included, with no `RouteDoc` written by hand.
//!
//! Why it works: `Deserialize` reads the body, `JsonSchema` (schemars) describes it; the
//! `#[schemars(...)]` constraints land in the schema, which the server checks before serde
//! runs, and which `/openapi.json` publishes. `#[serde(deny_unknown_fields)]` turns an unknown
//! field into a mistake; `#[serde(default = ...)]` makes a field optional, with its default
//! documented.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tinyserve::{pages, App, Json, Request};

/// Texts to score; the `top_k` best scores come back, best first.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = example())]
pub struct Score {
    /// The texts, each with its weight.
    pub items: Vec<Item>,
    /// How many scores to answer.
    #[schemars(range(min = 1, max = 100))]
    pub top_k: u32,
}

/// One text to score.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// 1 to 1000 characters (not bytes).
    #[schemars(length(min = 1, max = 1000))]
    pub text: String,
    /// Multiplies the text's score; 1 when absent.
    #[serde(default = "one")]
    #[schemars(range(min = 0.0))]
    pub weight: f64,
}

/// The scores, best first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Scores {
    /// At most `top_k` of them.
    pub scores: Vec<f64>,
}

fn one() -> f64 {
    1.0
}

fn example() -> serde_json::Value {
    serde_json::json!({"items": [{"text": "a cat sat"}, {"text": "42!", "weight": 2.5}], "top_k": 2})
}

/// The app: `main` serves it, and the tests serve the same one on port 0.
pub fn app() -> App {
    let app = App::new().post_typed("/score", score);
    pages::mount_openapi(app)
}

/// A text's score is its share of letters, times its weight: the same body always gets the
/// same answer, and a finite weight a finite score.
fn score(_: &Request, body: Score) -> Json<Scores> {
    let mut scores: Vec<f64> = body
        .items
        .iter()
        .map(|item| {
            let letters = item.text.chars().filter(|c| c.is_alphabetic()).count();
            // The share first: `weight * letters` could overflow to infinity, which JSON
            // cannot write (schemathesis found it).
            let share = letters as f64 / item.text.chars().count().max(1) as f64;
            item.weight * share
        })
        .collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    scores.truncate(body.top_k as usize);
    Json(Scores { scores })
}

fn main() -> tinyserve::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".to_string());
    app().run(format!("127.0.0.1:{port}"))
}
