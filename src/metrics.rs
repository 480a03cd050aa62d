//! Server metrics for `GET /metrics` (Prometheus text format). Labels are route templates,
//! never raw paths, so the number of series stays bounded.

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

/// What is recorded of one route template.
#[derive(Debug, Default)]
struct RouteStats {
    /// Requests by method and status: a handful per route, so a list.
    answered: Vec<(String, u16, u64)>,
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
    /// Records a finished request.
    pub(crate) fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
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
        match stats
            .answered
            .iter_mut()
            .find(|(m, s, _)| *s == status && m == method)
        {
            Some((_, _, count)) => *count += 1,
            None => stats.answered.push((method.to_string(), status, 1)),
        }
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
            let mut answered = stats.answered.clone();
            answered.sort();
            for (method, status, count) in answered {
                let _ = writeln!(
                    out,
                    "tinyserve_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
                    label(&method),
                    label(route)
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
        let rss = resident_bytes();
        let _ = writeln!(out, "# HELP process_resident_memory_bytes Resident memory of the process.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}");
    }
}

/// The process's resident set size, from /proc (0 where unavailable).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

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
