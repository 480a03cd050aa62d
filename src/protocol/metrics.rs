//! `GET /metrics` in the Prometheus text format.

use std::fmt::Write;

use super::Generators;
use crate::{App, Response};

pub(super) fn mount(app: App, generators: &Generators) -> App {
    let generators = generators.clone();
    app.get("/metrics", move |_| {
        Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            render(&generators),
        )
    })
}

fn render(generators: &Generators) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP tinyserve_generated_tokens_total Tokens generated, by model."
    );
    let _ = writeln!(out, "# TYPE tinyserve_generated_tokens_total counter");
    for generator in generators.iter() {
        let _ = writeln!(
            out,
            "tinyserve_generated_tokens_total{{model=\"{}\"}} {}",
            generator.model().name(),
            generator.tokens_generated()
        );
    }
    let _ = writeln!(out, "# HELP tinyserve_generations_cancelled_total Generations stopped because the client went away, by model.");
    let _ = writeln!(out, "# TYPE tinyserve_generations_cancelled_total counter");
    for generator in generators.iter() {
        let _ = writeln!(
            out,
            "tinyserve_generations_cancelled_total{{model=\"{}\"}} {}",
            generator.model().name(),
            generator.generations_cancelled()
        );
    }
    out
}
