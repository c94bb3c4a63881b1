//! Function health, after PostHog's HogWatcher: a token bucket per function. Every invocation
//! costs tokens by the CPU time it took (up to [`HealthConfig::max_time_cost`], scaled between
//! [`HealthConfig::cheap_below`] and [`HealthConfig::expensive_above`]) plus
//! [`HealthConfig::failure_cost`] when it failed; the bucket refills at a steady rate. A function
//! whose bucket falls to [`HealthConfig::degraded_ratio`] is *degraded* (visible, still running);
//! one that empties it is *disabled* (skipped: transformations pass events on unchanged,
//! destinations receive nothing) with the reason, until someone re-enables it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

/// The watcher's knobs (defaults are PostHog's).
#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Tokens a full bucket holds.
    pub bucket_size: f64,
    /// Tokens added back per second.
    pub refill_per_second: f64,
    /// Invocations faster than this cost nothing for time.
    pub cheap_below: Duration,
    /// Invocations at least this slow cost [`HealthConfig::max_time_cost`].
    pub expensive_above: Duration,
    /// Cost of the slowest invocations.
    pub max_time_cost: f64,
    /// Extra cost of an invocation that failed (threw, timed out, ran out of memory).
    pub failure_cost: f64,
    /// Degraded at or below this fraction of the bucket.
    pub degraded_ratio: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            bucket_size: 10_000.0,
            refill_per_second: 10.0,
            cheap_below: Duration::from_millis(50),
            expensive_above: Duration::from_millis(550),
            max_time_cost: 100.0,
            failure_cost: 100.0,
            degraded_ratio: 0.8,
        }
    }
}

impl HealthConfig {
    /// Tokens one invocation costs.
    pub fn cost(&self, took: Duration, failed: bool) -> f64 {
        let span = (self.expensive_above.saturating_sub(self.cheap_below)).as_secs_f64().max(1e-9);
        let over = took.saturating_sub(self.cheap_below).as_secs_f64();
        let time = (over / span).min(1.0) * self.max_time_cost;
        time + if failed { self.failure_cost } else { 0.0 }
    }
}

/// A function's health.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Health {
    /// Running normally.
    Healthy,
    /// Running, but using its budget fast.
    Degraded,
    /// Skipped until re-enabled.
    Disabled {
        /// Why, in words.
        reason: String,
        /// When, as seconds since the Unix epoch.
        since_unix: u64,
    },
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    health: Health,
    failures: u64,
    slow: u64,
}

/// Health of every function, shared by the workers (and read by the API).
#[derive(Debug, Default)]
pub struct Watcher {
    config: HealthConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// One invocation's cost facts, summed per function over a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Tokens to take.
    pub cost: f64,
    /// Invocations that failed.
    pub failures: u64,
    /// Invocations slower than the expensive threshold.
    pub slow: u64,
}

impl Watcher {
    /// A watcher with these knobs.
    pub fn new(config: HealthConfig) -> Watcher {
        Watcher { config, buckets: Mutex::new(HashMap::new()) }
    }

    /// The knobs.
    pub fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Takes a batch's usage from the functions' buckets and updates their health.
    pub fn charge(&self, usage: &HashMap<String, Usage>) {
        let Ok(mut buckets) = self.buckets.lock() else { return };
        let now = Instant::now();
        for (id, u) in usage {
            let b = buckets.entry(id.clone()).or_insert_with(|| Bucket {
                tokens: self.config.bucket_size,
                updated: now,
                health: Health::Healthy,
                failures: 0,
                slow: 0,
            });
            let refill = now.duration_since(b.updated).as_secs_f64() * self.config.refill_per_second;
            b.tokens = (b.tokens + refill).min(self.config.bucket_size) - u.cost;
            b.updated = now;
            b.failures += u.failures;
            b.slow += u.slow;
            if matches!(b.health, Health::Disabled { .. }) {
                continue;
            }
            b.health = if b.tokens < 0.0 {
                let reason = format!(
                    "disabled by the health watcher: its budget of {} tokens ran out ({} failed and {} slow invocations so far)",
                    self.config.bucket_size, b.failures, b.slow
                );
                tracing::warn!(function = %id, "{reason}");
                let since_unix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
                Health::Disabled { reason, since_unix }
            } else if b.tokens <= self.config.bucket_size * self.config.degraded_ratio {
                Health::Degraded
            } else {
                Health::Healthy
            };
        }
    }

    /// Functions currently disabled.
    pub fn disabled(&self) -> HashSet<String> {
        let Ok(buckets) = self.buckets.lock() else { return HashSet::new() };
        buckets.iter().filter(|(_, b)| matches!(b.health, Health::Disabled { .. })).map(|(id, _)| id.clone()).collect()
    }

    /// A function's health (healthy when never seen).
    pub fn health(&self, id: &str) -> Health {
        self.buckets.lock().ok().and_then(|b| b.get(id).map(|b| b.health.clone())).unwrap_or(Health::Healthy)
    }

    /// Every function's health that is not healthy.
    pub fn unhealthy(&self) -> BTreeMap<String, Health> {
        let Ok(buckets) = self.buckets.lock() else { return BTreeMap::new() };
        buckets
            .iter()
            .filter(|(_, b)| b.health != Health::Healthy)
            .map(|(id, b)| (id.clone(), b.health.clone()))
            .collect()
    }

    /// Re-enables a function with a full bucket. Returns whether it was disabled.
    pub fn enable(&self, id: &str) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else { return false };
        match buckets.get_mut(id) {
            Some(b) => {
                let was = matches!(b.health, Health::Disabled { .. });
                b.tokens = self.config.bucket_size;
                b.updated = Instant::now();
                b.health = Health::Healthy;
                b.failures = 0;
                b.slow = 0;
                was
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_scales_with_time_and_failure() {
        let c = HealthConfig::default();
        assert_eq!(c.cost(Duration::from_millis(10), false), 0.0);
        assert_eq!(c.cost(Duration::from_millis(300), false), 50.0);
        assert_eq!(c.cost(Duration::from_secs(5), false), 100.0);
        assert_eq!(c.cost(Duration::from_millis(10), true), 100.0);
    }

    #[test]
    fn degraded_then_disabled_then_enabled() {
        let w = Watcher::new(HealthConfig { refill_per_second: 0.0, ..HealthConfig::default() });
        let fail = |n: u64| HashMap::from([("f".to_string(), Usage { cost: 100.0 * n as f64, failures: n, slow: 0 })]);
        w.charge(&fail(10));
        assert_eq!(w.health("f"), Health::Healthy);
        w.charge(&fail(15));
        assert_eq!(w.health("f"), Health::Degraded);
        w.charge(&fail(80));
        match w.health("f") {
            Health::Disabled { reason, .. } => assert!(reason.contains("105 failed"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(w.disabled().contains("f"));
        assert!(w.enable("f"));
        assert_eq!(w.health("f"), Health::Healthy);
        assert!(w.disabled().is_empty());
    }
}
