//! Counters and histograms for `GET /metrics`, written in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets.
const LATENCY_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&mut self.counts) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Default)]
pub struct Metrics {
    /// Responses by (endpoint, HTTP status).
    responses: Mutex<BTreeMap<(String, u16), u64>>,
    generated_tokens: AtomicU64,
    steps: AtomicU64,
    forward_passes: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    queue_length: AtomicI64,
    latency: Mutex<Histogram>,
}

impl Metrics {
    pub fn responded(&self, endpoint: &str, status: u16) {
        if let Ok(mut map) = self.responses.lock() {
            *map.entry((endpoint.to_string(), status)).or_default() += 1;
        }
    }

    /// `change` requests joined (+) or left (-) the queue.
    pub fn queued(&self, change: i64) {
        self.queue_length.fetch_add(change, Ordering::Relaxed);
    }

    pub fn step(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    pub fn forward_passes(&self, passes: usize) {
        self.forward_passes
            .fetch_add(passes as u64, Ordering::Relaxed);
    }

    /// A request finished with `tokens` answer tokens, `latency` after it was queued.
    pub fn finished(&self, tokens: usize, latency: Duration) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.generated_tokens
            .fetch_add(tokens as u64, Ordering::Relaxed);
        if let Ok(mut histogram) = self.latency.lock() {
            histogram.observe(latency.as_secs_f64());
        }
    }

    pub fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn queue_length(&self) -> i64 {
        self.queue_length.load(Ordering::Relaxed)
    }

    /// Everything in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let _ = writeln!(
            out,
            "# HELP flowlm_http_responses_total HTTP responses by endpoint and status.\n# TYPE flowlm_http_responses_total counter"
        );
        if let Ok(map) = self.responses.lock() {
            for ((endpoint, status), count) in map.iter() {
                let _ = writeln!(
                    out,
                    "flowlm_http_responses_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {count}"
                );
            }
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "flowlm_requests_completed_total",
            "Generation requests answered in full.",
            load(&self.completed),
        );
        counter(
            &mut out,
            "flowlm_requests_failed_total",
            "Generation requests that timed out, were abandoned or failed.",
            load(&self.failed),
        );
        counter(
            &mut out,
            "flowlm_generated_tokens_total",
            "Answer tokens returned (up to end of text).",
            load(&self.generated_tokens),
        );
        counter(
            &mut out,
            "flowlm_denoising_steps_total",
            "Denoising steps run (one per batch step).",
            load(&self.steps),
        );
        counter(
            &mut out,
            "flowlm_forward_passes_total",
            "Forward passes of the model.",
            load(&self.forward_passes),
        );
        let _ = writeln!(
            out,
            "# HELP flowlm_queue_length Requests waiting for the engine.\n# TYPE flowlm_queue_length gauge\nflowlm_queue_length {}",
            self.queue_length()
        );
        let _ = writeln!(
            out,
            "# HELP flowlm_request_latency_seconds Time from queueing to the last token.\n# TYPE flowlm_request_latency_seconds histogram"
        );
        if let Ok(h) = self.latency.lock() {
            for (bound, count) in LATENCY_BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "flowlm_request_latency_seconds_bucket{{le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "flowlm_request_latency_seconds_bucket{{le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "flowlm_request_latency_seconds_sum {}", h.sum);
            let _ = writeln!(out, "flowlm_request_latency_seconds_count {}", h.count);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_the_text_names_every_series() {
        let metrics = Metrics::default();
        metrics.finished(10, Duration::from_millis(70));
        metrics.finished(5, Duration::from_secs(3));
        metrics.responded("/v1/completions", 200);
        metrics.responded("/v1/completions", 400);
        let text = metrics.render();
        assert!(text.contains("flowlm_request_latency_seconds_bucket{le=\"0.05\"} 0"));
        assert!(text.contains("flowlm_request_latency_seconds_bucket{le=\"0.1\"} 1"));
        assert!(text.contains("flowlm_request_latency_seconds_bucket{le=\"5\"} 2"));
        assert!(text.contains("flowlm_request_latency_seconds_count 2"));
        assert!(text.contains("flowlm_generated_tokens_total 15"));
        assert!(text.contains("endpoint=\"/v1/completions\",status=\"400\"} 1"));
    }
}
