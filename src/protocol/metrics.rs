//! `GET /metrics` in the Prometheus text format: the server's requests, every model's
//! inferences, generation, and outbound calls by upstream and outcome.

use std::fmt::Write;
use std::sync::Arc;

use super::Generators;
use crate::metrics::label;
use crate::model::ModelRegistry;
use crate::{App, Response, RouteDoc, ServerMetrics, Upstream};

pub(super) fn mount(
    app: App,
    models: &ModelRegistry,
    generators: &Generators,
    upstreams: &[Upstream],
) -> App {
    let server = app.metrics();
    let (models, generators, upstreams) = (models.clone(), generators.clone(), upstreams.to_vec());
    app.get("/metrics", move |_| {
        let text = render(&server, &models, &generators, &upstreams);
        Response::new(200, "text/plain; version=0.0.4; charset=utf-8", text)
    })
    .document(
        "GET",
        "/metrics",
        RouteDoc::new("Prometheus metrics")
            .with_description("Requests, inferences, generation and outbound calls, in the Prometheus text format.")
            .with_tag("Metrics")
            .with_response(serde_json::json!({"type": "string", "contentMediaType": "text/plain; version=0.0.4"}))
            .with_errors(&[]),
    )
}

fn render(
    server: &Arc<ServerMetrics>,
    models: &ModelRegistry,
    generators: &Generators,
    upstreams: &[Upstream],
) -> String {
    let mut out = String::new();
    server.render(&mut out);
    let _ = writeln!(out, "# HELP tinyserve_inference_duration_seconds ONNX Runtime inferences and their duration, by model.");
    let _ = writeln!(out, "# TYPE tinyserve_inference_duration_seconds histogram");
    for model in models.iter() {
        let labels = format!("model=\"{}\"", label(model.name()));
        model
            .inference_stats()
            .render(&mut out, "tinyserve_inference_duration_seconds", &labels);
    }
    let _ = writeln!(
        out,
        "# HELP tinyserve_inferences_total ONNX Runtime inferences, by model."
    );
    let _ = writeln!(out, "# TYPE tinyserve_inferences_total counter");
    for model in models.iter() {
        let _ = writeln!(
            out,
            "tinyserve_inferences_total{{model=\"{}\"}} {}",
            label(model.name()),
            model.inference_stats().count()
        );
    }
    let _ = writeln!(
        out,
        "# HELP tinyserve_batches_total Dynamic batches run, by model and size in rows."
    );
    let _ = writeln!(out, "# TYPE tinyserve_batches_total counter");
    for model in models.iter() {
        for (size, count) in model.batch_sizes() {
            let name = label(model.name());
            let _ = writeln!(
                out,
                "tinyserve_batches_total{{model=\"{name}\",size=\"{size}\"}} {count}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP tinyserve_generated_tokens_total Tokens generated, by model."
    );
    let _ = writeln!(out, "# TYPE tinyserve_generated_tokens_total counter");
    for generator in generators.iter() {
        let name = label(generator.name());
        let _ = writeln!(
            out,
            "tinyserve_generated_tokens_total{{model=\"{name}\"}} {}",
            generator.tokens_generated()
        );
    }
    let _ = writeln!(out, "# HELP tinyserve_generations_cancelled_total Generations stopped because the client went away, by model.");
    let _ = writeln!(out, "# TYPE tinyserve_generations_cancelled_total counter");
    for generator in generators.iter() {
        let name = label(generator.name());
        let _ = writeln!(
            out,
            "tinyserve_generations_cancelled_total{{model=\"{name}\"}} {}",
            generator.generations_cancelled()
        );
    }
    let _ = writeln!(
        out,
        "# HELP tinyserve_upstream_calls_total Outbound calls, by upstream and outcome."
    );
    let _ = writeln!(out, "# TYPE tinyserve_upstream_calls_total counter");
    for upstream in upstreams {
        for (outcome, count) in upstream.outcomes() {
            let _ = writeln!(
                out,
                "tinyserve_upstream_calls_total{{upstream=\"{}\",outcome=\"{outcome}\"}} {count}",
                label(upstream.name())
            );
        }
    }
    out
}
