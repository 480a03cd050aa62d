//! Server metrics for `GET /metrics`, kept in and written by the official Prometheus client
//! library, [`prometheus_client`].
//!
//! Every label takes its value from a fixed set, never from what a client wrote, so the number
//! of series is bounded by the application's routes, whatever clients send: `method` is one of
//! the standard methods or `OTHER`, `route` is a registered route template or `(unmatched)`,
//! and `status` a status code from 100 to 599 (anything else counts as 599, which no handler
//! sends on purpose).

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets: a plain value, kept under its owner's lock (each
/// model keeps one of its inferences) and encoded as a Prometheus histogram.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); those above the last bound count only in
    /// `count`.
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
            self.counts[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> fmt::Result {
        let buckets: Vec<(f64, u64)> = BUCKETS.iter().copied().zip(self.counts).collect();
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The `method` label values; any other method token is counted as `OTHER`.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// The `method` label for a request method: itself if standard, else `OTHER`.
fn method_label(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("OTHER")
}

/// The `status` label for a status code: within 100..=599, else 599.
fn status_label(status: u16) -> u16 {
    if (100..=599).contains(&status) {
        status
    } else {
        599
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The reasons a request is refused for capacity.
const REJECT_REASONS: [&str; 4] = ["queue_full", "connections", "streams", "websockets"];

type DurationFamily = Family<RouteLabels, histogram::Histogram, fn() -> histogram::Histogram>;

fn duration_histogram() -> histogram::Histogram {
    histogram::Histogram::new(BUCKETS)
}

/// The HTTP server's own metrics. Shared by the server and the `/metrics` route; add them to
/// a [`Registry`] with [`ServerMetrics::register`].
#[derive(Debug)]
pub struct ServerMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: DurationFamily,
    rejected: Family<ReasonLabels, Counter>,
    pub(crate) in_flight: AtomicI64,
    pub(crate) queued: AtomicI64,
    pub(crate) open_connections: AtomicI64,
    pub(crate) active_streams: AtomicI64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) open_websockets: AtomicI64,
    pub(crate) websocket_messages_received: AtomicU64,
    pub(crate) websocket_messages_sent: AtomicU64,
}

impl Default for ServerMetrics {
    fn default() -> ServerMetrics {
        let rejected = Family::default();
        for reason in REJECT_REASONS {
            let _ = rejected.get_or_create(&ReasonLabels { reason });
        }
        ServerMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            rejected,
            in_flight: AtomicI64::new(0),
            queued: AtomicI64::new(0),
            open_connections: AtomicI64::new(0),
            active_streams: AtomicI64::new(0),
            bytes_sent: AtomicU64::new(0),
            open_websockets: AtomicI64::new(0),
            websocket_messages_received: AtomicU64::new(0),
            websocket_messages_sent: AtomicU64::new(0),
        }
    }
}

impl ServerMetrics {
    /// Records a finished request. `route` is a route template or `(unmatched)`; the method
    /// and status are reduced to their label values first.
    pub(crate) fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels {
            method: method_label(method),
            route: route.to_string(),
            status: status_label(status),
        };
        self.requests.get_or_create(&labels).inc();
        let route = RouteLabels {
            route: labels.route,
        };
        self.durations
            .get_or_create(&route)
            .observe(elapsed.as_secs_f64());
    }

    /// Records a request refused for capacity: `queue_full`, `connections`, `streams` or
    /// `websockets`.
    pub(crate) fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Adds the server's metrics to `registry`: requests by method, route template and status,
    /// their durations by route template, requests in flight, queued and refused, open
    /// connections, active streams, response bytes, and the process's resident memory. A
    /// family with labels appears with its first series (no requests yet: no
    /// `tinyserve_requests_total`).
    ///
    /// # Example
    ///
    /// ```
    /// use prometheus_client::registry::Registry;
    ///
    /// let app = tinyserve::App::new();
    /// let mut registry = Registry::default();
    /// app.metrics().register(&mut registry);
    /// let mut text = String::new();
    /// prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    /// assert!(text.contains("tinyserve_rejected_total{reason=\"queue_full\"} 0\n"));
    /// # Ok::<(), std::fmt::Error>(())
    /// ```
    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        registry.register(
            "tinyserve_requests",
            "Requests answered, by method, route template and status",
            self.requests.clone(),
        );
        registry.register(
            "tinyserve_request_duration_seconds",
            "Time from request head to last byte written, by route template",
            self.durations.clone(),
        );
        registry.register(
            "tinyserve_rejected",
            "Requests refused for capacity, by reason",
            self.rejected.clone(),
        );
        registry.register_collector(Box::new(Live(Arc::clone(self))));
    }
}

/// The values the server keeps as atomics, read at each scrape.
#[derive(Debug)]
struct Live(Arc<ServerMetrics>);

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let metrics = &self.0;
        let gauges = [
            (
                "tinyserve_requests_in_flight",
                "Requests being handled or written.",
                &metrics.in_flight,
            ),
            (
                "tinyserve_queue_depth",
                "Requests waiting for a worker.",
                &metrics.queued,
            ),
            (
                "tinyserve_open_connections",
                "Open client connections.",
                &metrics.open_connections,
            ),
            (
                "tinyserve_active_streams",
                "Streamed responses in progress.",
                &metrics.active_streams,
            ),
            (
                "tinyserve_open_websockets",
                "Open WebSockets.",
                &metrics.open_websockets,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value.load(Ordering::Relaxed));
            gauge.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
        }
        let messages = [
            (
                "tinyserve_websocket_messages_received",
                "WebSocket messages received (text and binary).",
                &metrics.websocket_messages_received,
            ),
            (
                "tinyserve_websocket_messages_sent",
                "WebSocket messages sent (text and binary).",
                &metrics.websocket_messages_sent,
            ),
        ];
        for (name, help, value) in messages {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            counter.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        let bytes = ConstCounter::new(metrics.bytes_sent.load(Ordering::Relaxed));
        bytes.encode(encoder.encode_descriptor(
            "tinyserve_response_bytes",
            "Response bytes written.",
            None,
            MetricType::Counter,
        )?)?;
        // Only where the kernel tells (Linux's /proc, as Prometheus' own process collector): a
        // made-up 0 on macOS would read as a real value on a dashboard.
        if let Some(rss) = resident_bytes() {
            ConstGauge::new(rss).encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory of the process.",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// The process's resident set size, from /proc; None where there is no /proc (macOS).
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<i64>().ok())
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::prometheus_text::encode;

    use super::*;

    fn render(metrics: &Arc<ServerMetrics>) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap_or_default();
        out
    }

    #[test]
    fn any_method_token_is_one_of_ten_label_values() {
        let metrics = Arc::new(ServerMetrics::default());
        for i in 0..10_000 {
            let method = format!("M{i}{}", "X".repeat(100));
            metrics.record(&method, "(unmatched)", 405, Duration::from_micros(10));
        }
        metrics.record("get", "/healthz", 200, Duration::from_micros(10));
        metrics.record("GET", "/healthz", 200, Duration::from_micros(10));
        metrics.record("GET", "/healthz", 1000, Duration::from_micros(10));
        let out = render(&metrics);
        let mut series: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("tinyserve_requests_total{"))
            .collect();
        series.sort_unstable();
        assert_eq!(
            series,
            [
                "tinyserve_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2",
                "tinyserve_requests_total{method=\"GET\",route=\"/healthz\",status=\"599\"} 1",
                "tinyserve_requests_total{method=\"OTHER\",route=\"(unmatched)\",status=\"405\"} 10000",
            ]
        );
        assert!(out.len() < 8 * 1024, "{} bytes", out.len());
        for reason in REJECT_REASONS {
            let line = format!("tinyserve_rejected_total{{reason=\"{reason}\"}} 0\n");
            assert!(out.contains(&line), "{line} in {out}");
        }
        assert!(out.contains("# HELP tinyserve_requests_total Requests answered, by method, route template and status.\n"));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(9));
        #[derive(Debug)]
        struct One(Histogram);
        impl Collector for One {
            fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
                let mut metric =
                    encoder.encode_descriptor("x", "X.", None, MetricType::Histogram)?;
                self.0.encode(metric.encode_family(&[("a", "b")])?)
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(One(h)));
        let mut out = String::new();
        encode(&mut out, &registry).unwrap_or_default();
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.025\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
    }
}
