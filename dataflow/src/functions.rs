//! Hog functions the dataflow runs, the registry that hot-reloads them, and per-function
//! metrics and logs.
//!
//! The registry holds immutable, versioned [`FunctionSet`]s. A worker takes a snapshot at the start
//! of each batch, so a change takes effect at a batch boundary: every event of a batch sees the
//! same versions, and the log says from which offset of which partition the new set applied.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// What a function does with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionKind {
    /// Returns the (edited) event to keep, or `null` to drop it. Runs in `order` per project.
    Transformation,
    /// Receives the events its filter matches (delivery is the destinations engine's job).
    Destination,
}

/// One configured function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// Stable id.
    pub id: String,
    /// The project it belongs to.
    pub project_id: u64,
    /// Display name.
    pub name: String,
    /// Transformation or destination.
    pub kind: FunctionKind,
    /// Off means skipped, as if absent.
    pub enabled: bool,
    /// Position in the project's transformation chain (lower first; ties by id).
    pub order: i32,
    /// HogVM bytecode (`["_H", 1, …]`).
    pub bytecode: Json,
    /// Filter bytecode (an expression); `None` matches every event.
    pub filter: Option<Json>,
    /// The function's inputs (`inputs` global).
    pub inputs: Map<String, Json>,
}

/// An immutable set of functions with a version number.
#[derive(Debug, Default)]
pub struct FunctionSet {
    /// Increases with every change.
    pub version: u64,
    /// Every function, enabled or not.
    pub functions: Vec<FunctionSpec>,
}

/// The live set of functions, replaced atomically.
#[derive(Debug, Default)]
pub struct Registry {
    current: RwLock<Arc<FunctionSet>>,
}

impl Registry {
    /// A registry holding `functions` as version 1.
    pub fn new(functions: Vec<FunctionSpec>) -> Registry {
        Registry { current: RwLock::new(Arc::new(FunctionSet { version: 1, functions })) }
    }

    /// The current set.
    pub fn snapshot(&self) -> Arc<FunctionSet> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces every function; returns the new version.
    pub fn replace(&self, functions: Vec<FunctionSpec>) -> u64 {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let version = guard.version + 1;
        *guard = Arc::new(FunctionSet { version, functions });
        version
    }

    /// Adds or replaces one function (by id); returns the new version.
    pub fn upsert(&self, spec: FunctionSpec) -> u64 {
        let mut functions = self.snapshot().functions.clone();
        match functions.iter_mut().find(|f| f.id == spec.id) {
            Some(existing) => *existing = spec,
            None => functions.push(spec),
        }
        self.replace(functions)
    }

    /// Removes a function; returns the new version.
    pub fn remove(&self, id: &str) -> u64 {
        let functions = self.snapshot().functions.iter().filter(|f| f.id != id).cloned().collect();
        self.replace(functions)
    }
}

/// Counters for one function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FunctionCounters {
    /// Times the function ran (transformation) or its filter was evaluated (destination).
    pub invocations: u64,
    /// Runs that finished without error.
    pub succeeded: u64,
    /// Runs that failed (the event went on unchanged for a transformation).
    pub failed: u64,
    /// Events a destination's filter did not match.
    pub filtered: u64,
    /// Events a transformation dropped (returned `null`).
    pub dropped: u64,
    /// Events routed to a destination.
    pub routed: u64,
    /// Total time spent in the function, microseconds.
    pub micros: u64,
    /// Invocations by duration: `durations[i]` counts those of at most
    /// [`DURATION_BUCKETS_MICROS`]`[i]` (and more than the bucket before); the last counts the rest.
    pub durations: [u64; DURATION_BUCKETS_MICROS.len() + 1],
    /// Time under a microsecond not yet counted in `micros` (most invocations take less than
    /// one, so truncating each would count nothing).
    #[serde(skip)]
    pub carried_nanos: u64,
}

/// Upper bounds of the duration histogram's buckets, microseconds (10 µs … 1 s).
pub const DURATION_BUCKETS_MICROS: [u64; 6] = [10, 100, 1_000, 10_000, 100_000, 1_000_000];

impl FunctionCounters {
    /// Counts one invocation that took `micros`.
    pub fn record_duration(&mut self, micros: u64) {
        self.micros += micros;
        let i = DURATION_BUCKETS_MICROS.iter().position(|&b| micros <= b).unwrap_or(DURATION_BUCKETS_MICROS.len());
        self.durations[i] += 1;
    }

    /// Adds another set of counters to these (the carried fraction stays where it is).
    pub fn add(&mut self, d: &FunctionCounters) {
        self.invocations += d.invocations;
        self.succeeded += d.succeeded;
        self.failed += d.failed;
        self.filtered += d.filtered;
        self.dropped += d.dropped;
        self.routed += d.routed;
        self.micros += d.micros;
        for (a, b) in self.durations.iter_mut().zip(d.durations.iter()) {
            *a += b;
        }
    }

    /// Counts one invocation that took `took`, keeping the fractions of microseconds.
    #[inline]
    pub fn record(&mut self, took: std::time::Duration) {
        let nanos = self.carried_nanos + took.subsec_nanos() as u64;
        let micros = took.as_secs() * 1_000_000 + nanos / 1000;
        self.carried_nanos = nanos % 1000;
        self.micros += micros;
        let whole = took.as_micros() as u64;
        let i = DURATION_BUCKETS_MICROS.iter().position(|&b| whole <= b).unwrap_or(DURATION_BUCKETS_MICROS.len());
        self.durations[i] += 1;
    }
}

/// One line of a function's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `info` for `print` output, `error` for failures.
    pub level: &'static str,
    /// The event being processed.
    pub event_uuid: String,
    /// The text.
    pub message: String,
}

/// Lines kept per function (oldest dropped first).
pub const LOG_LINES_KEPT: usize = 1000;

/// Metrics and logs of every function, shared by the workers and read by the API.
#[derive(Debug, Default)]
pub struct FunctionStats {
    counters: Mutex<BTreeMap<String, FunctionCounters>>,
    logs: Mutex<HashMap<String, VecDeque<LogLine>>>,
    versions: Mutex<BTreeMap<usize, u64>>,
    /// Lines not yet taken by the persister ([`FunctionStats::take_new_logs`]), with the time
    /// they arrived (ms since the epoch); at most [`PENDING_LOG_LINES`], oldest dropped first.
    pending: Mutex<PendingLogs>,
}

/// Lines waiting for [`FunctionStats::take_new_logs`] at most (the oldest go first when more arrive).
pub const PENDING_LOG_LINES: usize = 20_000;

#[derive(Debug, Default)]
struct PendingLogs {
    lines: VecDeque<(String, i64, LogLine)>,
    dropped: u64,
}

impl FunctionStats {
    /// Adds a worker's batch of counters.
    pub fn merge(&self, delta: &HashMap<String, FunctionCounters>) {
        let Ok(mut all) = self.counters.lock() else { return };
        for (id, d) in delta {
            all.entry(id.clone()).or_default().add(d);
        }
    }

    /// Appends log lines of a function.
    pub fn log(&self, id: &str, lines: impl IntoIterator<Item = LogLine>) {
        let Ok(mut logs) = self.logs.lock() else { return };
        let ring = logs.entry(id.to_string()).or_default();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let Ok(mut pending) = self.pending.lock() else { return };
        for line in lines {
            if ring.len() == LOG_LINES_KEPT {
                ring.pop_front();
            }
            if pending.lines.len() == PENDING_LOG_LINES {
                pending.lines.pop_front();
                pending.dropped += 1;
            }
            pending.lines.push_back((id.to_string(), now_ms, line.clone()));
            ring.push_back(line);
        }
    }

    /// Takes the lines logged since the last call, as `(function id, ms since the epoch, line)`,
    /// and how many were dropped because nobody took them in time.
    pub fn take_new_logs(&self) -> (Vec<(String, i64, LogLine)>, u64) {
        let Ok(mut pending) = self.pending.lock() else { return (Vec::new(), 0) };
        let dropped = std::mem::take(&mut pending.dropped);
        (pending.lines.drain(..).collect(), dropped)
    }

    /// Every function's counters.
    pub fn all_counters(&self) -> BTreeMap<String, FunctionCounters> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Records which function-set version a worker runs from now on.
    pub fn worker_version(&self, worker: usize, version: u64) {
        if let Ok(mut v) = self.versions.lock() {
            v.insert(worker, version);
        }
    }

    /// The oldest function-set version any worker still runs (0 before the workers start): once it
    /// reaches a version, every event read from then on sees that version or a newer one.
    pub fn oldest_version_in_use(&self) -> u64 {
        self.versions.lock().ok().and_then(|v| v.values().min().copied()).unwrap_or(0)
    }

    /// Counters of one function.
    pub fn counters(&self, id: &str) -> FunctionCounters {
        self.counters.lock().ok().and_then(|c| c.get(id).cloned()).unwrap_or_default()
    }

    /// The kept log lines of one function, oldest first.
    pub fn logs(&self, id: &str) -> Vec<LogLine> {
        self.logs.lock().ok().and_then(|l| l.get(id).map(|r| r.iter().cloned().collect())).unwrap_or_default()
    }
}

/// Shared handle to the stats.
pub type SharedStats = Arc<FunctionStats>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sub_microsecond_invocations_add_up() {
        let mut c = FunctionCounters::default();
        for _ in 0..1000 {
            c.record(Duration::from_nanos(300));
        }
        assert_eq!(c.micros, 300, "1 000 runs of 0.3 µs are 300 µs, not 0");
        assert_eq!(c.durations[0], 1000);
        c.record(Duration::from_micros(50));
        c.record(Duration::from_secs(2));
        assert_eq!(c.micros, 300 + 50 + 2_000_000);
        assert_eq!(c.durations[1], 1, "50 µs is in the ≤ 100 µs bucket");
        assert_eq!(c.durations[DURATION_BUCKETS_MICROS.len()], 1, "2 s is past the last bound");
    }
}
