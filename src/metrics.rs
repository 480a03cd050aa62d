//! Server metrics for `GET /metrics` (Prometheus text format).
//!
//! Every label takes its value from a fixed set, never from what a client wrote, so the number
//! of series is bounded by the application's routes, whatever clients send: `method` is one of
//! the standard methods or `OTHER`, `route` is a registered route template or `(unmatched)`,
//! and `status` a status code from 100 to 599 (anything else counts as 599, which no handler
//! sends on purpose).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if secs <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Writes the `_bucket`, `_sum` and `_count` series of `name` with `labels` (`k="v",...`).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// Escapes a label value.
pub(crate) fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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

/// What is recorded of one route template.
#[derive(Debug, Default)]
struct RouteStats {
    /// Requests by method label and status.
    answered: BTreeMap<(&'static str, u16), u64>,
    durations: Histogram,
}

/// The HTTP server's own metrics. Shared by the server and the `/metrics` route.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// By route template: one lock per request, and no allocation once a series exists.
    routes: Mutex<BTreeMap<String, RouteStats>>,
    pub(crate) in_flight: AtomicI64,
    pub(crate) queued: AtomicI64,
    pub(crate) open_connections: AtomicI64,
    pub(crate) active_streams: AtomicI64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) bytes_sent: AtomicU64,
}

impl ServerMetrics {
    /// Records a finished request. `route` is a route template or `(unmatched)`; the method
    /// and status are reduced to their label values first.
    pub(crate) fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let key = (method_label(method), status_label(status));
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        if !routes.contains_key(route) {
            routes.insert(route.to_string(), RouteStats::default());
        }
        let Some(stats) = routes.get_mut(route) else {
            return;
        };
        stats.durations.observe(elapsed);
        *stats.answered.entry(key).or_default() += 1;
    }

    /// Records a request refused for capacity: `queue_full`, `connections` or `streams`.
    pub(crate) fn reject(&self, reason: &'static str) {
        if let Ok(mut rejected) = self.rejected.lock() {
            *rejected.entry(reason).or_default() += 1;
        }
    }

    /// Appends the server's series to `out`.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP tinyserve_requests_total Requests answered, by method, route template and status.");
        let _ = writeln!(out, "# TYPE tinyserve_requests_total counter");
        let routes = self.routes.lock();
        let routes = routes.as_deref().ok();
        for (route, stats) in routes.into_iter().flatten() {
            let route = label(route);
            for ((method, status), count) in &stats.answered {
                let _ = writeln!(
                    out,
                    "tinyserve_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        let _ = writeln!(out, "# HELP tinyserve_request_duration_seconds Time from request head to last byte written, by route template.");
        let _ = writeln!(out, "# TYPE tinyserve_request_duration_seconds histogram");
        for (route, stats) in routes.into_iter().flatten() {
            let labels = format!("route=\"{}\"", label(route));
            stats
                .durations
                .render(out, "tinyserve_request_duration_seconds", &labels);
        }
        let gauges = [
            (
                "tinyserve_requests_in_flight",
                "Requests being handled or written.",
                &self.in_flight,
            ),
            (
                "tinyserve_queue_depth",
                "Requests waiting for a worker.",
                &self.queued,
            ),
            (
                "tinyserve_open_connections",
                "Open client connections.",
                &self.open_connections,
            ),
            (
                "tinyserve_active_streams",
                "Streamed responses in progress.",
                &self.active_streams,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tinyserve_rejected_total Requests refused for capacity, by reason."
        );
        let _ = writeln!(out, "# TYPE tinyserve_rejected_total counter");
        if let Ok(rejected) = self.rejected.lock() {
            for reason in ["queue_full", "connections", "streams"] {
                let count = rejected.get(reason).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "tinyserve_rejected_total{{reason=\"{reason}\"}} {count}"
                );
            }
        }
        let _ = writeln!(out, "# HELP tinyserve_response_bytes_total Response bytes written.\n# TYPE tinyserve_response_bytes_total counter\ntinyserve_response_bytes_total {}", self.bytes_sent.load(Ordering::Relaxed));
        // Only where the kernel tells (Linux's /proc, as Prometheus' own process collector): a
        // made-up 0 on macOS would read as a real value on a dashboard.
        if let Some(rss) = resident_bytes() {
            let _ = writeln!(out, "# HELP process_resident_memory_bytes Resident memory of the process.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}");
        }
    }
}

/// The process's resident set size, from /proc; None where there is no /proc (macOS).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_method_token_is_one_of_ten_label_values() {
        let metrics = ServerMetrics::default();
        for i in 0..10_000 {
            let method = format!("M{i}{}", "X".repeat(100));
            metrics.record(&method, "(unmatched)", 405, Duration::from_micros(10));
        }
        metrics.record("get", "/healthz", 200, Duration::from_micros(10));
        metrics.record("GET", "/healthz", 200, Duration::from_micros(10));
        metrics.record("GET", "/healthz", 1000, Duration::from_micros(10));
        let mut out = String::new();
        metrics.render(&mut out);
        let series: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("tinyserve_requests_total{"))
            .collect();
        assert_eq!(
            series,
            [
                "tinyserve_requests_total{method=\"OTHER\",route=\"(unmatched)\",status=\"405\"} 10000",
                "tinyserve_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 2",
                "tinyserve_requests_total{method=\"GET\",route=\"/healthz\",status=\"599\"} 1",
            ]
        );
        assert!(out.len() < 8 * 1024, "{} bytes", out.len());
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(20));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0001\"} 1\n"));
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.025\"} 2\n"));
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 2\n"));
        assert!(out.contains("x_count{a=\"b\"} 2\n"));
    }
}
