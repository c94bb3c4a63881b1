//! The current value of every live aggregate row, kept up to date from the differential output and
//! read by the API; with the changes since a version, for persisting rows to ClickHouse.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::definition::{Interval, Measure};
use super::engine::{Agg, RowKey, SUM_SCALE};
use super::{Clock, LiveConfig};

/// Most deleted rows remembered for [`LiveStore::changes_since`]; beyond it the oldest are forgotten.
pub const MAX_TOMBSTONES: usize = 1_000_000;

/// A row's value: an integer for `count` and `unique_distinct_ids`, a float for `sum`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LiveValue {
    /// Events counted, or different distinct ids.
    Int(i64),
    /// Sum of the property (exact to 1e-9: values are added as fixed-point numbers).
    Float(f64),
}

impl LiveValue {
    /// The value as a float.
    pub fn as_f64(self) -> f64 {
        match self {
            LiveValue::Int(n) => n as f64,
            LiveValue::Float(x) => x,
        }
    }
}

/// One live aggregate row: the value of a definition for one bucket, event name and group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveRow {
    /// The definition's id.
    pub definition: String,
    /// The definition's measure.
    pub measure: Measure,
    /// The definition's interval.
    pub interval: Interval,
    /// Start of the bucket, ms since the Unix epoch (UTC).
    pub bucket_start_ms: i64,
    /// Start of the bucket, RFC 3339 UTC with milliseconds.
    pub bucket: String,
    /// Event name.
    pub event: String,
    /// Values of the `group_by` properties, in order: strings as they are, other JSON values as
    /// their JSON text (`42`, `true`, `{"a":1}`); `None` when the property is missing or null.
    pub groups: Vec<Option<String>>,
    /// The aggregate.
    pub value: LiveValue,
    /// Events counted (`count`), different distinct ids (`unique_distinct_ids`), or events whose
    /// property was added (`sum`).
    pub count: u64,
    /// `sum` only: events of the group whose property was missing, not a number, or beyond ±1e18.
    pub skipped: u64,
    /// Increases with every change of any row (microseconds since the Unix epoch, or more): the
    /// version column of a ReplacingMergeTree.
    pub version: u64,
    /// The row no longer exists (its definition changed or was removed). Only
    /// [`LiveStore::changes_since`] returns deleted rows.
    pub deleted: bool,
    /// The bucket began before this process's live state did: it holds only the events seen
    /// since (see [`LiveStore::started_at_ms`]).
    pub partial: bool,
}

type Slot = (i64, String, Vec<Option<String>>);

#[derive(Debug, Clone)]
struct Row {
    measure: Measure,
    interval: Interval,
    agg: Agg,
    version: u64,
    deleted: bool,
}

#[derive(Default)]
struct Rows {
    by_definition: HashMap<String, BTreeMap<Slot, Row>>,
    by_version: BTreeMap<u64, (String, Slot)>,
    tombstones: BTreeMap<u64, (String, Slot)>,
    version: u64,
}

/// Every live aggregate row, shared between the dataflow (which writes it, one epoch at a time)
/// and the API (which reads it). Rows of buckets past their interval's retention disappear.
pub struct LiveStore {
    rows: RwLock<Rows>,
    latest: Mutex<u64>,
    changed: Condvar,
    config: LiveConfig,
    clock: Arc<dyn Clock>,
    started_at_ms: AtomicI64,
}

impl std::fmt::Debug for LiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveStore").field("started_at_ms", &self.started_at_ms()).finish_non_exhaustive()
    }
}

fn now_micros() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

impl Rows {
    fn next_version(&mut self) -> u64 {
        self.version = (self.version + 1).max(now_micros());
        self.version
    }

    fn forget(&mut self, definition: &str, slot: &Slot) {
        let Some(rows) = self.by_definition.get_mut(definition) else { return };
        if let Some(row) = rows.remove(slot) {
            self.by_version.remove(&row.version);
            if row.deleted {
                self.tombstones.remove(&row.version);
            }
        }
        if rows.is_empty() {
            self.by_definition.remove(definition);
        }
    }

    fn delete(&mut self, key: &RowKey, slot: Slot) {
        let version = self.next_version();
        let Some(row) = self.by_definition.get_mut(&key.definition).and_then(|rows| rows.get_mut(&slot)) else {
            return;
        };
        if row.deleted {
            return;
        }
        self.by_version.remove(&row.version);
        row.deleted = true;
        row.version = version;
        self.by_version.insert(version, (key.definition.clone(), slot.clone()));
        self.tombstones.insert(version, (key.definition.clone(), slot));
        while self.tombstones.len() > MAX_TOMBSTONES {
            let Some((_, (definition, slot))) = self.tombstones.pop_first() else { break };
            self.forget(&definition, &slot);
        }
    }

    fn set(&mut self, key: &RowKey, slot: Slot, agg: Agg) {
        let version = self.next_version();
        let rows = self.by_definition.entry(key.definition.clone()).or_default();
        let new = Row { measure: key.measure, interval: key.interval, agg, version, deleted: false };
        if let Some(old) = rows.insert(slot.clone(), new) {
            self.by_version.remove(&old.version);
            if old.deleted {
                self.tombstones.remove(&old.version);
            }
        }
        self.by_version.insert(version, (key.definition.clone(), slot));
    }
}

impl LiveStore {
    /// An empty store; rows expire by `config`'s retention, measured with `clock`.
    pub fn new(config: LiveConfig, clock: Arc<dyn Clock>) -> LiveStore {
        let started_at_ms = AtomicI64::new(clock.now_ms());
        LiveStore {
            rows: RwLock::new(Rows::default()),
            latest: Mutex::new(0),
            changed: Condvar::new(),
            config,
            clock,
            started_at_ms,
        }
    }

    /// When this store (the process's live state) started, ms since the Unix epoch. Buckets that
    /// began earlier are partial: they miss the events processed before. A persister should not
    /// overwrite a stored row with a partial one, and the API may prefer the warehouse for them.
    pub fn started_at_ms(&self) -> i64 {
        self.started_at_ms.load(Ordering::Relaxed)
    }

    /// Starts over empty, as after a process restart (a new run of the graph has a new, empty
    /// differential state). Rows are dropped without deletions: the warehouse keeps them.
    pub(crate) fn restart(&self) {
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        let version = rows.version;
        *rows = Rows { version, ..Rows::default() };
        self.started_at_ms.store(self.clock.now_ms(), Ordering::Relaxed);
    }

    fn expired(&self, interval: Interval, bucket: i64, now: i64) -> bool {
        bucket.saturating_add(self.config.retention_ms(interval)) <= now
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the differential output of one epoch: `(row, value, diff)` updates. Each row gets
    /// the value with a positive diff; a row with only retractions is deleted. Rows of expired
    /// buckets are dropped without a trace (retention is not a deletion).
    pub(crate) fn apply(&self, mut updates: Vec<(RowKey, Agg, isize)>) {
        if updates.is_empty() {
            return;
        }
        updates.sort_unstable_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let mut consolidated: Vec<(RowKey, Agg, isize)> = Vec::with_capacity(updates.len());
        for (key, agg, diff) in updates {
            match consolidated.last_mut() {
                Some(last) if last.0 == key && last.1 == agg => last.2 += diff,
                _ => consolidated.push((key, agg, diff)),
            }
        }
        // Per row: the value it has now (positive diff), or none.
        let mut outcome: Vec<(RowKey, Option<Agg>)> = Vec::new();
        for (key, agg, diff) in consolidated {
            if diff == 0 {
                continue;
            }
            match outcome.last_mut() {
                Some((k, value)) if *k == key => {
                    if diff > 0 {
                        *value = Some(agg);
                    }
                }
                _ => outcome.push((key, (diff > 0).then_some(agg))),
            }
        }
        let now = self.clock.now_ms();
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        // Deletions first: a changed definition deletes rows and sets others in the same slots.
        for (key, value) in &outcome {
            let slot = (key.bucket, key.event.clone(), key.groups.clone());
            if self.expired(key.interval, key.bucket, now) {
                rows.forget(&key.definition, &slot);
            } else if value.is_none() {
                rows.delete(key, slot);
            }
        }
        for (key, value) in outcome {
            if let Some(agg) = value {
                if !self.expired(key.interval, key.bucket, now) {
                    let slot = (key.bucket, key.event.clone(), key.groups.clone());
                    rows.set(&key, slot, agg);
                }
            }
        }
        let version = rows.version;
        drop(rows);
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        *latest = version;
        self.changed.notify_all();
    }

    fn row(&self, definition: &str, slot: &Slot, row: &Row) -> LiveRow {
        let value = match row.measure {
            Measure::Sum => LiveValue::Float(row.agg.sum as f64 / SUM_SCALE),
            Measure::Count | Measure::UniqueDistinctIds => LiveValue::Int(row.agg.n),
        };
        LiveRow {
            definition: definition.to_string(),
            measure: row.measure,
            interval: row.interval,
            bucket_start_ms: slot.0,
            bucket: format_ms(slot.0),
            event: slot.1.clone(),
            groups: slot.2.clone(),
            value,
            count: row.agg.n.max(0) as u64,
            skipped: row.agg.skipped.max(0) as u64,
            version: row.version,
            deleted: row.deleted,
            partial: slot.0 < self.started_at_ms(),
        }
    }

    /// The rows of `definition` whose bucket starts in `[from_ms, to_ms)`, sorted by bucket, then
    /// event name, then group values.
    pub fn query(&self, definition: &str, from_ms: i64, to_ms: i64) -> Vec<LiveRow> {
        let now = self.clock.now_ms();
        let rows = self.read();
        let Some(def_rows) = rows.by_definition.get(definition) else { return Vec::new() };
        let start = (from_ms, String::new(), Vec::new());
        def_rows
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(|(slot, _)| slot.0 < to_ms)
            .filter(|(slot, row)| !row.deleted && !self.expired(row.interval, slot.0, now))
            .map(|(slot, row)| self.row(definition, slot, row))
            .collect()
    }

    /// Every row changed (set or deleted) after version `since`, oldest change first, and the
    /// version to pass next time. Meant for one persister: deleted rows up to `since` are
    /// forgotten by the call (the caller has them); at most [`MAX_TOMBSTONES`] are kept anyway.
    /// Rows that expire by retention are not reported: expiry is not a deletion.
    pub fn changes_since(&self, since: u64) -> (Vec<LiveRow>, u64) {
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        let seen: Vec<u64> = rows.tombstones.range(..=since).map(|(v, _)| *v).collect();
        for version in seen {
            if let Some((definition, slot)) = rows.tombstones.remove(&version) {
                rows.forget(&definition, &slot);
            }
        }
        let changed = rows
            .by_version
            .range((Bound::Excluded(since), Bound::Unbounded))
            .filter_map(|(_, (definition, slot))| {
                let row = rows.by_definition.get(definition)?.get(slot)?;
                Some(self.row(definition, slot, row))
            })
            .collect();
        (changed, rows.version.max(since))
    }

    /// The version of the latest change (0 before any).
    pub fn version(&self) -> u64 {
        self.read().version
    }

    /// Waits until a change after version `after` (or `timeout`); returns the latest version.
    /// For long polls and server-sent events.
    pub fn wait_changed(&self, after: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        while *latest <= after {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            latest = self.changed.wait_timeout(latest, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        *latest
    }

    /// Number of rows (deleted ones included until forgotten).
    pub fn len(&self) -> usize {
        self.read().by_version.len()
    }

    /// Whether the store has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Formats ms since the Unix epoch as RFC 3339 UTC with milliseconds (`2024-05-01T13:00:00.000Z`),
/// as capture writes event times. Beyond chrono's range (±262 000 years): the epoch.
pub fn format_ms(ms: i64) -> String {
    hogpipe_capture::event::format_time(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::ManualClock;

    #[test]
    fn format_ms_matches_capture() {
        for ms in [0i64, 1, 951_782_400_000, 1_709_251_199_999, 1_714_568_400_123, 4_102_444_800_000, -86_400_001] {
            let text = format_ms(ms);
            let parsed = hogpipe_capture::event::parse_time(&text).unwrap();
            assert_eq!(parsed.timestamp_millis(), ms, "{text}");
        }
        assert_eq!(format_ms(1_714_568_400_123), "2024-05-01T13:00:00.123Z");
    }

    fn key(definition: &str, bucket: i64, measure: Measure) -> RowKey {
        RowKey {
            definition: definition.into(),
            bucket,
            event: "e".into(),
            groups: vec![Some("g".into())],
            measure,
            interval: Interval::Minute,
        }
    }

    fn agg(n: i64) -> Agg {
        Agg { n, sum: 0, skipped: 0 }
    }

    #[test]
    fn apply_sets_deletes_and_reports_changes() {
        let clock = Arc::new(ManualClock::new(10 * 60_000));
        let store = LiveStore::new(LiveConfig::default(), clock.clone());
        store.apply(vec![(key("a", 0, Measure::Count), agg(2), 1), (key("a", 60_000, Measure::Count), agg(1), 1)]);
        let rows = store.query("a", 0, i64::MAX);
        assert_eq!(rows.iter().map(|r| r.value).collect::<Vec<_>>(), vec![LiveValue::Int(2), LiveValue::Int(1)]);
        let (changes, v1) = store.changes_since(0);
        assert_eq!(changes.len(), 2);
        // A new value arrives as a retraction and an insertion, in either order.
        store.apply(vec![(key("a", 0, Measure::Count), agg(3), 1), (key("a", 0, Measure::Count), agg(2), -1)]);
        assert_eq!(store.query("a", 0, 60_000)[0].value, LiveValue::Int(3));
        // A changed definition: the old measure's row goes, the new one takes its slot.
        store.apply(vec![
            (key("a", 60_000, Measure::Sum), Agg { n: 1, sum: 1_500_000_000, skipped: 2 }, 1),
            (key("a", 60_000, Measure::Count), agg(1), -1),
        ]);
        let row = &store.query("a", 60_000, 120_000)[0];
        assert_eq!((row.value, row.count, row.skipped), (LiveValue::Float(1.5), 1, 2));
        let (changes, v2) = store.changes_since(v1);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes.iter().all(|r| !r.deleted));
        // A deletion is reported once, then forgotten.
        store.apply(vec![(key("a", 0, Measure::Count), agg(3), -1)]);
        assert!(store.query("a", 0, 60_000).is_empty());
        let (changes, v3) = store.changes_since(v2);
        assert_eq!(changes.len(), 1);
        assert!(changes[0].deleted);
        assert_eq!(store.len(), 2);
        assert_eq!(store.changes_since(v3), (vec![], v3));
        assert_eq!(store.len(), 1, "the tombstone is forgotten once the persister has it");
        assert!(store.wait_changed(0, Duration::ZERO) >= v3);
    }

    #[test]
    fn expired_buckets_vanish_without_a_tombstone() {
        let clock = Arc::new(ManualClock::new(0));
        let store = LiveStore::new(LiveConfig::default(), clock.clone());
        store.apply(vec![(key("a", 0, Measure::Count), agg(5), 1)]);
        let (_, v) = store.changes_since(0);
        clock.set(LiveConfig::default().retention_ms(Interval::Minute));
        assert!(store.query("a", 0, 60_000).is_empty(), "past retention");
        // The workers' retractions then arrive, possibly in pieces.
        store.apply(vec![(key("a", 0, Measure::Count), agg(5), -1), (key("a", 0, Measure::Count), agg(2), 1)]);
        store.apply(vec![(key("a", 0, Measure::Count), agg(2), -1)]);
        assert_eq!(store.changes_since(v).0, vec![]);
        assert!(store.is_empty());
    }
}
