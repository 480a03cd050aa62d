//! `GET /metrics` in the Prometheus text format: the server's requests, every model's
//! inferences, generation, and outbound calls by upstream and outcome, encoded by
//! [`prometheus_client`].

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text::{self, CONTENT_TYPE};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::openai::CurrentGenerators;
use crate::{App, Error, Group, Response, RouteDoc, Upstream};

/// `GET /metrics`: the server metrics of `app`, and what the built-in APIs serve.
pub(super) fn group(app: &App, current: &CurrentGenerators, upstreams: &[Upstream]) -> Group {
    let mut registry = Registry::default();
    app.metrics().register(&mut registry);
    registry.register_collector(Box::new(Served {
        current: current.clone(),
        upstreams: upstreams.to_vec(),
    }));
    Group::new().get("/metrics", move |_| {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry)
            .map_err(|err| Error::internal(format!("encoding the metrics: {err}")))?;
        Ok::<_, Error>(Response::new(200, CONTENT_TYPE, text))
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

/// What the built-in APIs serve, read at each scrape: models, generators and upstreams.
struct Served {
    current: CurrentGenerators,
    upstreams: Vec<Upstream>,
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served").finish_non_exhaustive()
    }
}

/// A counter series per item: `(labels, value)`.
fn counters<L: prometheus_client::encoding::EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (L, u64)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Served {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let (models, generators) = self.current.snapshot();
        let stats: Vec<_> = models
            .iter()
            .map(|m| (m.name().to_string(), m.inference_stats()))
            .collect();
        let mut metric = encoder.encode_descriptor(
            "tinyserve_inference_duration_seconds",
            "ONNX Runtime inferences and their duration, by model.",
            None,
            MetricType::Histogram,
        )?;
        for (name, histogram) in &stats {
            histogram.encode(metric.encode_family(&[("model", name.as_str())])?)?;
        }
        counters(
            &mut encoder,
            "tinyserve_inferences",
            "ONNX Runtime inferences, by model.",
            stats
                .iter()
                .map(|(name, h)| ([("model", name.as_str())], h.count())),
        )?;
        let model_batches = models
            .iter()
            .map(|m| (m.name().to_string(), m.batch_sizes()));
        #[cfg(feature = "language-models")]
        let encoder_batches: Vec<_> = models
            .encoders()
            .map(|e| (e.name().to_string(), e.batch_sizes()))
            .collect();
        #[cfg(not(feature = "language-models"))]
        let encoder_batches = Vec::new();
        let batches = model_batches
            .chain(encoder_batches)
            .flat_map(|(name, sizes)| {
                sizes.into_iter().map(move |(size, count)| {
                    (([("model", name.clone())], [("size", size)]), count)
                })
            });
        counters(
            &mut encoder,
            "tinyserve_batches",
            "Dynamic batches run, by model and size in rows (texts, for an embedding model).",
            batches,
        )?;
        counters(
            &mut encoder,
            "tinyserve_generated_tokens",
            "Tokens generated, by model.",
            generators
                .iter()
                .map(|g| ([("model", g.name())], g.tokens_generated())),
        )?;
        counters(
            &mut encoder,
            "tinyserve_generations_cancelled",
            "Generations stopped because the client went away, by model.",
            generators
                .iter()
                .map(|g| ([("model", g.name())], g.generations_cancelled())),
        )?;
        let calls = self.upstreams.iter().flat_map(|u| {
            u.outcomes().into_iter().map(move |(outcome, count)| {
                (([("upstream", u.name())], [("outcome", outcome)]), count)
            })
        });
        counters(
            &mut encoder,
            "tinyserve_upstream_calls",
            "Outbound calls, by upstream and outcome.",
            calls,
        )
    }
}
