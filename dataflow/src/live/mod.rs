//! Live aggregates: count, unique distinct ids and sums of the processed events per minute, hour
//! or day, grouped by event name and up to two properties, kept current by differential dataflow
//! inside the graph and read by the API from a [`LiveStore`].
//!
//! # Semantics
//!
//! - **Which events.** Every event the event sink took (after the project's transformations), once
//!   per time it was processed: a replay after a crash starts from an empty live state (the state
//!   is in memory), so nothing is counted twice within one run; duplicates captured twice with the
//!   same uuid count twice, as in the events table before merges.
//! - **Buckets.** An event's time is its `timestamp` (RFC 3339); buckets are UTC-aligned. An event
//!   whose timestamp is missing or not a time is skipped and counted in
//!   [`LiveCounters::bad_timestamp`]; one more than `max_future_secs` ahead of the clock is skipped
//!   and counted in [`LiveCounters::future`].
//! - **Groups.** Every row is keyed by the event name and the `group_by` properties' values:
//!   strings as they are, other JSON values as their compact JSON text (`42`, `true`,
//!   `{"a":1}`, with the keys in the event's order), missing or null as `None`. A string `"42"` and
//!   the number `42` fall into the same group.
//! - **Sums.** A JSON number, or a string holding a finite number (`"9.99"`), is added; anything
//!   else (missing, null, booleans, objects, other text, beyond ±1e18) is skipped and counted in the
//!   row's `skipped`. Values are added as fixed-point numbers of 1e-9 units: exact and
//!   order-independent at that resolution.
//! - **Retention.** Each interval keeps a window ([`LiveConfig`]; defaults: minutes 24 h, hours
//!   30 days, days 400 days) measured from the bucket's start: a bucket of start `s` exists while
//!   `s + window > now`. An event enters only while some interval still keeps it
//!   ([`LiveCounters::too_old`] otherwise) and is retracted from each interval when that window
//!   passes (at the first graph round after), so memory stays bounded by the windows. Expired rows
//!   vanish from the store without a deletion: the warehouse keeps them.
//! - **Definitions are data.** They form a differential collection (keyed by project) joined with
//!   the retained events. Adding a definition therefore computes it over every event still within
//!   its interval's window, changing one recomputes it, removing one deletes its rows (reported
//!   as deleted by [`LiveStore::changes_since`]). Changes go through the [`LiveRegistry`] and take
//!   effect at the first worker's next round, for every worker's events at once.
//! - **Consistency.** The store applies one epoch at a time, atomically: a reader sees the results
//!   of whole batches. Results of epoch `e` are in the store when the graph's probe passes `e`
//!   (the worker waits for that before reading more), so a captured event is visible one graph
//!   round after it is read from the log. [`Live::progress`] says how far the store is.
//! - **Restarts.** The state lives in memory; a restarted process begins empty, so buckets that
//!   began before [`LiveStore::started_at_ms`] are `partial`. Another [`crate::graph::run`] with
//!   the same `Live` starts over the same way (the store is emptied).
//! - **Cluster mode.** Results are exchanged by row and then sent to worker 0: the store of
//!   process 0 is complete, the others stay empty; definitions are read from process 0's
//!   registry. [`Live::progress`] counts the events of its own process.
//!
//! The computation itself is in `engine.rs`, the rows in [`store`], and [`mod@bench`] measures the delay
//! from capture to visibility.

pub mod bench;
pub mod definition;
mod engine;
pub mod store;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use definition::{AggregateDef, DefinitionError, DefinitionSet, Interval, LiveRegistry, Measure};
pub use store::{LiveRow, LiveStore, LiveValue};

/// Wall-clock time as the live computation sees it (retention, future events).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told (tests, replays of old data).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock showing `now_ms`.
    pub fn new(now_ms: i64) -> ManualClock {
        ManualClock { now: AtomicI64::new(now_ms) }
    }

    /// Sets the time.
    pub fn set(&self, now_ms: i64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// Retention and limits (`[live]` in hogpipe.toml). Windows are in seconds, from a bucket's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// How long minute buckets are kept (default 24 h).
    pub minute_retention_secs: u64,
    /// How long hour buckets are kept (default 30 days).
    pub hour_retention_secs: u64,
    /// How long day buckets are kept (default 400 days).
    pub day_retention_secs: u64,
    /// Events further ahead of the clock are skipped (default 24 h; capture already moves events
    /// more than 23 h ahead to the capture time).
    pub max_future_secs: u64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            minute_retention_secs: 24 * 3600,
            hour_retention_secs: 30 * 86_400,
            day_retention_secs: 400 * 86_400,
            max_future_secs: 24 * 3600,
        }
    }
}

/// Longest retention accepted (100 years).
pub const MAX_RETENTION_SECS: u64 = 100 * 366 * 86_400;

/// Why a [`LiveConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A window shorter than one bucket would drop buckets before they are complete.
    #[error("live: {interval}_retention_secs = {secs} is shorter than one {interval} ({min} s)")]
    RetentionTooShort {
        /// Which interval.
        interval: &'static str,
        /// The value given.
        secs: u64,
        /// One bucket, in seconds.
        min: u64,
    },
    /// A window beyond [`MAX_RETENTION_SECS`].
    #[error("live: {interval}_retention_secs = {secs} is more than 100 years ({MAX_RETENTION_SECS} s)")]
    RetentionTooLong {
        /// Which interval.
        interval: &'static str,
        /// The value given.
        secs: u64,
    },
}

impl LiveConfig {
    /// The retention window of `interval`, in seconds.
    pub fn retention_secs(&self, interval: Interval) -> u64 {
        match interval {
            Interval::Minute => self.minute_retention_secs,
            Interval::Hour => self.hour_retention_secs,
            Interval::Day => self.day_retention_secs,
        }
    }

    /// The retention window of `interval`, in ms.
    pub fn retention_ms(&self, interval: Interval) -> i64 {
        self.retention_secs(interval).min(MAX_RETENTION_SECS) as i64 * 1000
    }

    /// Checks every window: at least one bucket, at most 100 years.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for interval in Interval::ALL {
            let secs = self.retention_secs(interval);
            let min = interval.millis() as u64 / 1000;
            if secs < min {
                return Err(ConfigError::RetentionTooShort { interval: interval.name(), secs, min });
            }
            if secs > MAX_RETENTION_SECS {
                return Err(ConfigError::RetentionTooLong { interval: interval.name(), secs });
            }
        }
        Ok(())
    }
}

/// Why live aggregates could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// A definition is invalid.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Totals since start (for `/metrics`: `hogpipe_live_events_entered_total`, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LiveCounters {
    /// Events taken into the live computation.
    pub entered: u64,
    /// Events skipped because their timestamp is missing or not a time.
    pub bad_timestamp: u64,
    /// Events skipped because every interval's retention had already passed them.
    pub too_old: u64,
    /// Events skipped because they lie more than `max_future_secs` ahead.
    pub future: u64,
    /// Events retracted once every interval's retention passed them.
    pub expired: u64,
}

#[derive(Debug, Default)]
struct Counters {
    entered: AtomicU64,
    bad_timestamp: AtomicU64,
    too_old: AtomicU64,
    future: AtomicU64,
    expired: AtomicU64,
}

impl Counters {
    fn count(&self, entry: &engine::Entry) {
        let counter = match entry {
            engine::Entry::Kept(..) => &self.entered,
            engine::Entry::BadTimestamp => &self.bad_timestamp,
            engine::Entry::TooOld => &self.too_old,
            engine::Entry::Future => &self.future,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How far the store is: everything of the first `epochs` graph epochs is in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LiveProgress {
    /// Epochs whose results are all in the store.
    pub epochs: u64,
    /// Events of those epochs offered to the live computation (entered or skipped), this process.
    pub events: u64,
    /// The latest definitions version in effect for those epochs (0 before the first).
    pub version: u64,
}

#[derive(Debug, Default)]
struct ProgressState {
    published: LiveProgress,
    seen: BTreeMap<u64, u64>,
    versions: BTreeMap<u64, u64>,
}

/// Live aggregates: the definitions, the store and the settings, shared by the graph's workers
/// (through [`crate::graph::Pipeline::live`]) and the API.
pub struct Live {
    config: LiveConfig,
    clock: Arc<dyn Clock>,
    registry: Arc<LiveRegistry>,
    store: Arc<LiveStore>,
    counters: Counters,
    progress: Mutex<ProgressState>,
    progressed: Condvar,
    hosts_leader: AtomicBool,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("config", &self.config).field("progress", &self.progress()).finish_non_exhaustive()
    }
}

impl Live {
    /// Live aggregates over `definitions`, on the system clock.
    pub fn new(config: LiveConfig, definitions: Vec<AggregateDef>) -> Result<Live, LiveError> {
        Live::with_clock(config, definitions, Arc::new(SystemClock))
    }

    /// Live aggregates on another clock (tests, replays).
    pub fn with_clock(
        config: LiveConfig,
        definitions: Vec<AggregateDef>,
        clock: Arc<dyn Clock>,
    ) -> Result<Live, LiveError> {
        config.validate()?;
        let registry = Arc::new(LiveRegistry::new(definitions)?);
        let store = Arc::new(LiveStore::new(config.clone(), clock.clone()));
        Ok(Live {
            config,
            clock,
            registry,
            store,
            counters: Counters::default(),
            progress: Mutex::new(ProgressState::default()),
            progressed: Condvar::new(),
            hosts_leader: AtomicBool::new(false),
        })
    }

    /// The definitions; change them here while the graph runs.
    pub fn registry(&self) -> &Arc<LiveRegistry> {
        &self.registry
    }

    /// The rows.
    pub fn store(&self) -> &Arc<LiveStore> {
        &self.store
    }

    /// The settings.
    pub fn config(&self) -> &LiveConfig {
        &self.config
    }

    /// Totals since start.
    pub fn counters(&self) -> LiveCounters {
        let c = &self.counters;
        LiveCounters {
            entered: c.entered.load(Ordering::Relaxed),
            bad_timestamp: c.bad_timestamp.load(Ordering::Relaxed),
            too_old: c.too_old.load(Ordering::Relaxed),
            future: c.future.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProgressState> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How far the store is.
    pub fn progress(&self) -> LiveProgress {
        self.state().published
    }

    /// Waits until `done(progress)` holds or `timeout` passes; the progress if it held. The API
    /// can answer a definition change once `version` reached the new one (read your writes).
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&LiveProgress) -> bool) -> Option<LiveProgress> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state();
        loop {
            if done(&state.published) {
                return Some(state.published);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self.progressed.wait_timeout(state, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn note_seen(&self, epoch: u64, events: u64) {
        *self.state().seen.entry(epoch).or_default() += events;
    }

    fn note_version(&self, epoch: u64, version: u64) {
        self.state().versions.insert(epoch, version);
    }

    /// A new run of the graph: epochs count from 0 again and the store starts empty.
    fn restart(&self) {
        self.store.restart();
        self.state().published.epochs = 0;
    }

    /// Epochs before `upto` are complete in the store.
    fn publish(&self, upto: u64) {
        let mut state = self.state();
        if upto <= state.published.epochs {
            return;
        }
        let later_seen = state.seen.split_off(&upto);
        let done_seen = std::mem::replace(&mut state.seen, later_seen);
        state.published.events += done_seen.values().sum::<u64>();
        let later_versions = state.versions.split_off(&upto);
        let done_versions = std::mem::replace(&mut state.versions, later_versions);
        if let Some(&version) = done_versions.values().last() {
            state.published.version = state.published.version.max(version);
        }
        state.published.epochs = upto;
        drop(state);
        self.progressed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        assert_eq!(LiveConfig::default().validate(), Ok(()));
        let short = LiveConfig { hour_retention_secs: 60, ..LiveConfig::default() };
        let err = short.validate().unwrap_err();
        assert_eq!(err.to_string(), "live: hour_retention_secs = 60 is shorter than one hour (3600 s)");
        let long = LiveConfig { day_retention_secs: u64::MAX, ..LiveConfig::default() };
        assert!(matches!(long.validate(), Err(ConfigError::RetentionTooLong { .. })));
        let toml_like: LiveConfig = serde_json::from_str(r#"{"minute_retention_secs": 7200}"#).unwrap();
        assert_eq!(toml_like.minute_retention_secs, 7200);
        assert_eq!(toml_like.day_retention_secs, 400 * 86_400);
    }

    #[test]
    fn progress_publishes_whole_epochs() {
        let live = Live::new(LiveConfig::default(), vec![]).unwrap();
        live.note_seen(0, 3);
        live.note_version(0, 1);
        live.note_seen(1, 2);
        live.publish(1);
        assert_eq!(live.progress(), LiveProgress { epochs: 1, events: 3, version: 1 });
        live.publish(1);
        live.note_version(2, 2);
        assert!(live.wait_for(Duration::ZERO, |p| p.events == 5).is_none());
        live.publish(3);
        assert_eq!(
            live.wait_for(Duration::ZERO, |p| p.events == 5),
            Some(LiveProgress { epochs: 3, events: 5, version: 2 })
        );
    }
}
