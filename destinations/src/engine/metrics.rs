//! Per-destination counters and gauges: plain atomics, read as a [`DestinationMetrics`] snapshot.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// What one destination (function id) did since the engine opened, and what it holds now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DestinationMetrics {
    /// The function id.
    pub function_id: String,
    /// HTTP requests sent (every attempt).
    pub sent: u64,
    /// Final answers with a 2xx or 3xx status handed to the function.
    pub succeeded: u64,
    /// Final answers with a 4xx status (other than 429) handed to the function.
    pub failed: u64,
    /// Attempts that failed (network error, timeout, 5xx, 429) and were scheduled again.
    pub retried: u64,
    /// Jobs moved to the dead letters.
    pub dead_lettered: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Jobs pending now (on disk; includes those in memory, waiting for a retry and in flight).
    pub queued: u64,
    /// Pending jobs held in memory now (the rest wait on disk).
    pub in_memory: u64,
}

/// The live counters behind [`DestinationMetrics`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub sent: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub in_flight: AtomicI64,
    pub queued: AtomicI64,
    pub in_memory: AtomicI64,
}

impl Counters {
    pub fn snapshot(&self, function_id: &str) -> DestinationMetrics {
        let gauge = |g: &AtomicI64| u64::try_from(g.load(Relaxed)).unwrap_or(0);
        DestinationMetrics {
            function_id: function_id.to_string(),
            sent: self.sent.load(Relaxed),
            succeeded: self.succeeded.load(Relaxed),
            failed: self.failed.load(Relaxed),
            retried: self.retried.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            in_flight: gauge(&self.in_flight),
            queued: gauge(&self.queued),
            in_memory: gauge(&self.in_memory),
        }
    }
}
