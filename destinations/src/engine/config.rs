//! The engine's settings: engine-wide limits and per-destination delivery settings (concurrency,
//! rate limit, timeout, attempts, backoff, `Retry-After` cap, in-memory queue bound).

use std::collections::HashMap;
use std::time::Duration;

/// A token bucket: at most `per_second` requests per second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Average requests per second (must be > 0; a non-positive or non-finite rate means no limit).
    pub per_second: f64,
    /// Requests that may leave back to back after an idle period (at least 1).
    pub burst: u32,
}

/// How requests to one destination (one function id) are sent and retried.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationSettings {
    /// Requests in flight at once (at least 1).
    pub concurrency: usize,
    /// Optional rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Whole-request timeout: connecting, sending, and reading the response body.
    pub timeout: Duration,
    /// Attempts before a job becomes a dead letter (at least 1; the first try counts).
    pub max_attempts: u32,
    /// Backoff before retry `n` is a uniformly random delay in `[0, min(backoff_max, backoff_base * 2^(n-1))]`
    /// ("full jitter").
    pub backoff_base: Duration,
    /// Upper bound of the backoff window.
    pub backoff_max: Duration,
    /// The longest `Retry-After` honoured. A service asking for longer is never retried sooner
    /// than it said: the job becomes a dead letter at once (with that reason), to be replayed.
    pub max_retry_after: Duration,
    /// Jobs of this destination pending on disk beyond which new ones go straight to the dead
    /// letters (with that reason) instead of the queue: a destination that stays down cannot fill
    /// the shared queue and make [`super::Engine::enqueue`] push back on every destination.
    pub max_queued: u64,
    /// Jobs of this destination held in memory (queued, waiting for a retry, or in flight); the
    /// rest stay on disk only and are loaded as room frees up.
    pub memory_queue: usize,
}

impl Default for DestinationSettings {
    fn default() -> Self {
        DestinationSettings {
            concurrency: 16,
            rate_limit: None,
            timeout: Duration::from_secs(10),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(600),
            max_queued: 100_000,
            memory_queue: 1000,
        }
    }
}

impl DestinationSettings {
    /// The settings with every bound raised to its minimum (concurrency, attempts, queue ≥ 1).
    pub(crate) fn sanitized(mut self) -> Self {
        self.concurrency = self.concurrency.max(1);
        self.max_attempts = self.max_attempts.max(1);
        self.memory_queue = self.memory_queue.max(1);
        if let Some(rl) = &mut self.rate_limit {
            rl.burst = rl.burst.max(1);
            if !(rl.per_second.is_finite() && rl.per_second > 0.0) {
                self.rate_limit = None;
            }
        }
        self
    }
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Settings for destinations without an entry in `destinations`.
    pub defaults: DestinationSettings,
    /// Settings per function id.
    pub destinations: HashMap<String, DestinationSettings>,
    /// Pending jobs on disk (all destinations) above which [`super::Engine::enqueue`] answers
    /// [`super::EngineError::Full`].
    pub max_pending: u64,
    /// Threads of the engine's own tokio runtime (HTTP, timers, and the `Resume` calls).
    pub worker_threads: usize,
    /// Response bodies are cut after this many bytes.
    pub max_response_body: usize,
    /// How often the engine looks for jobs added by another process (a dead-letter replay from
    /// the CLI).
    pub poll_interval: Duration,
    /// `User-Agent` sent when a request sets none.
    pub user_agent: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            defaults: DestinationSettings::default(),
            destinations: HashMap::new(),
            max_pending: 1_000_000,
            worker_threads: 2,
            max_response_body: 1 << 20,
            poll_interval: Duration::from_millis(250),
            user_agent: concat!("hogpipe/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

impl EngineConfig {
    /// The settings for one function id.
    pub fn settings_for(&self, function_id: &str) -> DestinationSettings {
        self.destinations.get(function_id).unwrap_or(&self.defaults).clone().sanitized()
    }
}
