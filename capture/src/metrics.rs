//! Capture's counters and histograms, rendered in Prometheus text format at `/metrics`.
//!
//! Names follow `hogpipe_<component>_<noun>_<verb>`:
//! - `hogpipe_capture_requests_received_total{endpoint, status}`
//! - `hogpipe_capture_events_accepted_total`
//! - `hogpipe_capture_events_rejected_total{reason}`
//! - `hogpipe_capture_bytes_received_total`
//! - `hogpipe_capture_log_append_duration_seconds` (histogram)

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the append-latency histogram buckets.
pub const APPEND_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; APPEND_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = APPEND_BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in APPEND_BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// All of capture's metrics. Cheap to update from request handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    events_accepted: AtomicU64,
    bytes_received: AtomicU64,
    /// Time from handing records to the log until they are durable.
    pub append_latency: Histogram,
}

impl Metrics {
    /// Counts a finished request.
    pub fn request(&self, endpoint: &'static str, status: u16) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((endpoint, status)).or_default() += 1;
        }
    }

    /// Counts events acknowledged.
    pub fn accepted(&self, events: usize) {
        self.events_accepted.fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Counts events refused, by reason code.
    pub fn rejected(&self, reason: &'static str, events: usize) {
        if let Ok(mut map) = self.rejected.lock() {
            *map.entry(reason).or_default() += events as u64;
        }
    }

    /// Counts request body bytes as received (before decompression).
    pub fn bytes(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Events accepted so far.
    pub fn events_accepted(&self) -> u64 {
        self.events_accepted.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str(
            "# HELP hogpipe_capture_requests_received_total Capture requests by endpoint and response status.\n",
        );
        out.push_str("# TYPE hogpipe_capture_requests_received_total counter\n");
        if let Ok(map) = self.requests.lock() {
            for ((endpoint, status), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "hogpipe_capture_requests_received_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP hogpipe_capture_events_accepted_total Events made durable in the event log.\n");
        out.push_str("# TYPE hogpipe_capture_events_accepted_total counter\n");
        let _ = writeln!(out, "hogpipe_capture_events_accepted_total {}", self.events_accepted());
        out.push_str("# HELP hogpipe_capture_events_rejected_total Events refused, by reason.\n");
        out.push_str("# TYPE hogpipe_capture_events_rejected_total counter\n");
        if let Ok(map) = self.rejected.lock() {
            for (reason, n) in map.iter() {
                let _ = writeln!(out, "hogpipe_capture_events_rejected_total{{reason=\"{reason}\"}} {n}");
            }
        }
        out.push_str("# HELP hogpipe_capture_bytes_received_total Request body bytes received, before decoding.\n");
        out.push_str("# TYPE hogpipe_capture_bytes_received_total counter\n");
        let _ = writeln!(out, "hogpipe_capture_bytes_received_total {}", self.bytes_received.load(Ordering::Relaxed));
        self.append_latency.render(
            "hogpipe_capture_log_append_duration_seconds",
            "Time from handing a request's events to the log until they are durable.",
            &mut out,
        );
        out
    }
}
