//! The differential computation behind live aggregates, built into each worker's dataflow.
//!
//! ```text
//! processed events ──LiveEntry──┐ ((team, shard), LiveEvent)   definitions ─┐ ((team, shard), def)
//! aging (worker-side retractions)┴─ concat ─ arrange ── join_core ── arrange ─────┘
//!                                     │ (row, contribution)
//!            count/sum: explode to (row, Agg diff) ─────────┐
//!            unique: (row, distinct_id) ─ distinct ─ explode ┴─ count_core ─ (row, total) ±1
//!                                                 ─ exchange to worker 0 ─ LiveStore::apply
//! ```
//!
//! Events are keyed by project and a shard (a hash of distinct id and time), and each definition
//! is replicated to every shard of its project, so one large project's join is spread over the
//! workers. Counts and sums travel as the *difference* of the collection ([`Agg`]): an arrangement
//! keeps one consolidated record per row instead of one per event, and a retraction cancels
//! exactly (sums are fixed-point integers). `count_core` turns the accumulated differences into one
//! `(row, total)` record per row, exchanged by row, so totals are right with any number of
//! workers or processes.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Multiply, Semigroup};
use differential_dataflow::input::InputSession;
use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::{ProbeHandle, Scope, StreamVec};

use super::definition::{AggregateDef, DefinitionSet, Interval, Measure};
use super::{Live, LiveConfig};
use crate::event::Event;

/// Sums are added as integers of 1e-9 units, so retractions cancel exactly and the result does not
/// depend on the order events arrive in.
pub(crate) const SUM_SCALE: f64 = 1e9;

/// Largest magnitude of a summed value; larger ones are skipped (their fixed-point form would
/// leave too little room for sums).
pub(crate) const MAX_SUM_ABS: f64 = 1e18;

/// The difference type of the aggregation: events counted (or ids), their sum, events skipped.
/// Arithmetic wraps, so it is a group: a retraction always cancels its insertion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct Agg {
    /// Events (count, sum) or distinct ids (unique).
    pub n: i64,
    /// Sum in 1e-9 units.
    pub sum: i128,
    /// Events whose summed property was missing or not a number.
    pub skipped: i64,
}

impl Agg {
    const ONE: Agg = Agg { n: 1, sum: 0, skipped: 0 };
}

impl IsZero for Agg {
    fn is_zero(&self) -> bool {
        self.n == 0 && self.sum == 0 && self.skipped == 0
    }
}

impl Semigroup for Agg {
    fn plus_equals(&mut self, rhs: &Self) {
        self.n = self.n.wrapping_add(rhs.n);
        self.sum = self.sum.wrapping_add(rhs.sum);
        self.skipped = self.skipped.wrapping_add(rhs.skipped);
    }
}

impl Monoid for Agg {
    fn zero() -> Self {
        Agg::default()
    }
}

impl Abelian for Agg {
    fn negate(&mut self) {
        self.n = self.n.wrapping_neg();
        self.sum = self.sum.wrapping_neg();
        self.skipped = self.skipped.wrapping_neg();
    }
}

impl Multiply<isize> for Agg {
    type Output = Agg;
    fn multiply(self, rhs: &isize) -> Agg {
        let r = *rhs as i64;
        Agg { n: self.n.wrapping_mul(r), sum: self.sum.wrapping_mul(r as i128), skipped: self.skipped.wrapping_mul(r) }
    }
}

/// Identifies one live row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct RowKey {
    pub definition: String,
    pub bucket: i64,
    pub event: String,
    pub groups: Vec<Option<String>>,
    pub measure: Measure,
    pub interval: Interval,
}

/// An event as the live computation keeps it while some interval's retention still covers it.
/// `tiers` says which intervals (bits of [`Interval::bit`]); properties are sorted by name, each
/// value as its group text (null values are left out, like missing ones). The properties are
/// shared with the worker's expiry queue.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct LiveEvent {
    time: i64,
    event: String,
    distinct_id: String,
    tiers: u8,
    properties: Arc<[(String, String)]>,
}

impl LiveEvent {
    fn property(&self, name: &str) -> Option<&str> {
        self.properties.binary_search_by(|(k, _)| k.as_str().cmp(name)).ok().map(|i| self.properties[i].1.as_str())
    }
}

/// A definition as the dataflow carries it (keyed by project). Every field is always serialized:
/// timely's wire format (bincode) cannot skip fields as [`AggregateDef`]'s JSON form does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Def {
    id: String,
    event: Option<String>,
    group_by: Vec<String>,
    measure: Measure,
    property: Option<String>,
    interval: Interval,
}

impl From<&AggregateDef> for Def {
    fn from(d: &AggregateDef) -> Def {
        Def {
            id: d.id.clone(),
            event: d.event.clone(),
            group_by: d.group_by.clone(),
            measure: d.measure,
            property: d.property.clone(),
            interval: d.interval,
        }
    }
}

/// What one event adds to one row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Contribution {
    Add(Agg),
    Distinct(String),
}

/// The text a property value is grouped by: strings as they are, other values as compact JSON.
pub(crate) fn group_text(value: Json) -> Option<String> {
    match value {
        Json::Null => None,
        Json::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// A summed value in fixed point: JSON numbers and strings holding a finite number.
pub(crate) fn fixed_point(text: &str) -> Option<i128> {
    let v: f64 = text.parse().ok()?;
    (v.is_finite() && v.abs() <= MAX_SUM_ABS).then(|| (v * SUM_SCALE).round() as i128)
}

/// Which intervals still keep an event of `time` at `now`, and when the first of them lets it go.
pub(crate) fn tiers(time: i64, now: i64, config: &LiveConfig) -> (u8, i64) {
    let mut mask = 0;
    let mut next = i64::MAX;
    for interval in Interval::ALL {
        let expiry = interval.bucket_start(time).saturating_add(config.retention_ms(interval));
        if expiry > now {
            mask |= interval.bit();
            next = next.min(expiry);
        }
    }
    (mask, next)
}

/// Shards per project: events of one project spread over this many join keys.
pub(crate) const SHARDS: u16 = 32;

/// The join key: project and shard.
pub(crate) type EventKey = (u64, u16);

/// The shard of an event (FNV-1a: the same in every process).
fn shard(distinct_id: &str, time: i64) -> u16 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in distinct_id.as_bytes().iter().chain(&time.to_le_bytes()) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(SHARDS)) as u16
}

/// What became of an event offered to the live computation.
pub(crate) enum Entry {
    /// Kept, under the given key, until the given time (ms) at least.
    Kept(EventKey, LiveEvent, i64),
    /// Its timestamp is missing or not a time.
    BadTimestamp,
    /// Every interval's retention has already passed it.
    TooOld,
    /// It lies further in the future than `max_future_secs`.
    Future,
}

pub(crate) fn enter(event: Event, now: i64, config: &LiveConfig) -> Entry {
    let Some(time) = hogpipe_capture::event::parse_time(&event.timestamp).map(|t| t.timestamp_millis()) else {
        return Entry::BadTimestamp;
    };
    if time > now.saturating_add(config.max_future_secs.saturating_mul(1000).min(i64::MAX as u64) as i64) {
        return Entry::Future;
    }
    let (tiers, next) = tiers(time, now, config);
    if tiers == 0 {
        return Entry::TooOld;
    }
    let mut properties: Vec<(String, String)> =
        event.properties.into_iter().filter_map(|(k, v)| Some((k, group_text(v)?))).collect();
    properties.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let live =
        LiveEvent { time, event: event.event, distinct_id: event.distinct_id, tiers, properties: properties.into() };
    let key = (event.team_id, shard(&live.distinct_id, time));
    Entry::Kept(key, live, next)
}

fn contribute(event: &LiveEvent, def: &Def) -> Option<(RowKey, Contribution)> {
    if event.tiers & def.interval.bit() == 0 {
        return None;
    }
    if def.event.as_ref().is_some_and(|name| *name != event.event) {
        return None;
    }
    let key = RowKey {
        definition: def.id.clone(),
        bucket: def.interval.bucket_start(event.time),
        event: event.event.clone(),
        groups: def.group_by.iter().map(|p| event.property(p).map(str::to_string)).collect(),
        measure: def.measure,
        interval: def.interval,
    };
    let contribution = match def.measure {
        Measure::Count => Contribution::Add(Agg::ONE),
        Measure::UniqueDistinctIds => Contribution::Distinct(event.distinct_id.clone()),
        Measure::Sum => match def.property.as_deref().and_then(|p| event.property(p)).and_then(fixed_point) {
            Some(sum) => Contribution::Add(Agg { n: 1, sum, skipped: 0 }),
            None => Contribution::Add(Agg { n: 0, sum: 0, skipped: 1 }),
        },
    };
    Some((key, contribution))
}

type ExpiryQueue = BTreeMap<i64, Vec<(EventKey, LiveEvent)>>;

/// A worker's handle on its part of the live computation: the definitions input (fed by worker 0
/// only), the aging input (this worker's retractions) and its expiry queue.
pub(crate) struct LiveWorker {
    live: Arc<Live>,
    leader: bool,
    definitions: InputSession<u64, (EventKey, Def), isize>,
    aging: InputSession<u64, (EventKey, LiveEvent), isize>,
    expiry: Rc<RefCell<ExpiryQueue>>,
    applied: Option<Arc<DefinitionSet>>,
}

impl LiveWorker {
    /// Feeds what changed at the current epoch (expired events, definitions) and moves the inputs
    /// to `epoch`, alongside the graph's event input.
    pub(crate) fn advance_to(&mut self, epoch: u64) {
        let time = *self.aging.time();
        let now = self.live.clock.now_ms();
        {
            let mut queue = self.expiry.borrow_mut();
            while let Some(due) = queue.first_entry() {
                if *due.key() > now {
                    break;
                }
                for (key, event) in due.remove() {
                    let (tiers, next) = tiers(event.time, now, &self.live.config);
                    self.aging.update((key, event.clone()), -1);
                    if tiers == 0 {
                        self.live.counters.expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        let event = LiveEvent { tiers, ..event };
                        self.aging.update((key, event.clone()), 1);
                        queue.entry(next).or_default().push((key, event));
                    }
                }
            }
        }
        if self.leader {
            let set = self.live.registry.snapshot();
            if self.applied.as_ref().map(|a| a.version) != Some(set.version) {
                let old: &[AggregateDef] = self.applied.as_ref().map_or(&[], |a| &a.definitions);
                let removed = old.iter().filter(|d| !set.definitions.contains(d)).map(|d| (d, -1));
                let added = set.definitions.iter().filter(|d| !old.contains(d)).map(|d| (d, 1));
                for (def, diff) in removed.chain(added) {
                    let record = Def::from(def);
                    for shard in 0..SHARDS {
                        self.definitions.update(((def.project_id, shard), record.clone()), diff);
                    }
                }
                self.live.note_version(time, set.version);
                tracing::info!(version = set.version, epoch = time, "live aggregate definitions in effect");
                self.applied = Some(set);
            }
        }
        self.definitions.advance_to(epoch);
        self.definitions.flush();
        self.aging.advance_to(epoch);
        self.aging.flush();
    }
}

type EntryOutput = CapacityContainerBuilder<Vec<((EventKey, LiveEvent), u64, isize)>>;

impl Live {
    /// Builds this worker's part of the live computation on `processed` (the events the sinks
    /// took) and adds its output to `probe`, so the probe passes an epoch only once the store
    /// holds that epoch's results.
    pub(crate) fn attach<'scope>(
        self: &Arc<Self>,
        scope: Scope<'scope, u64>,
        processed: StreamVec<'scope, u64, (Event, Vec<String>)>,
        probe: &ProbeHandle<u64>,
        worker: usize,
    ) -> LiveWorker {
        if worker == 0 {
            // Before any frontier can move: every worker's inputs start at epoch 0.
            if self.hosts_leader.swap(true, std::sync::atomic::Ordering::Relaxed) {
                // Another run of the graph with this `Live`: its state starts empty.
                self.restart();
            }
        }
        let mut definitions = InputSession::new();
        let mut aging = InputSession::new();
        let expiry: Rc<RefCell<ExpiryQueue>> = Rc::default();

        let live = self.clone();
        let queue = expiry.clone();
        let entered = processed
            .unary::<EntryOutput, _, _, _>(Pipeline, "LiveEntry", move |_, _| {
                move |input, output| {
                    input.for_each_stamp(|cap, data| {
                        let Some(&time) = cap.least() else { return };
                        let now = live.clock.now_ms();
                        let mut session = output.session(&cap);
                        let mut queue = queue.borrow_mut();
                        let mut seen = 0;
                        for batch in data {
                            for (event, _) in batch.drain(..) {
                                seen += 1;
                                let entry = enter(event, now, &live.config);
                                live.counters.count(&entry);
                                if let Entry::Kept(key, event, next) = entry {
                                    queue.entry(next).or_default().push((key, event.clone()));
                                    session.give(((key, event), time, 1));
                                }
                            }
                        }
                        live.note_seen(time, seen);
                    });
                }
            })
            .as_collection();
        let events = entered.concat(aging.to_collection(scope));
        let definitions_by_shard = definitions.to_collection(scope);

        let contributions = events
            .arrange_by_key_named("LiveEvents")
            .join_core(definitions_by_shard.arrange_by_key_named("LiveDefinitions"), |_key, event, def| {
                contribute(event, def)
            });
        let added = contributions.clone().explode(|(key, c)| match c {
            Contribution::Add(agg) => Some((key, agg)),
            Contribution::Distinct(_) => None,
        });
        let distinct = contributions
            .flat_map(|(key, c)| match c {
                Contribution::Distinct(id) => Some((key, id)),
                Contribution::Add(_) => None,
            })
            .distinct()
            .explode(|(key, _)| Some((key, Agg::ONE)));
        // Events of one batch and row merge before they are exchanged by row.
        let totals = added.concat(distinct).consolidate_stream().count_core::<isize>();

        let live = self.clone();
        let leader = worker == 0;
        let route = Exchange::new(|_: &((RowKey, Agg), u64, isize)| 0u64);
        totals
            .inner
            .unary_frontier::<CapacityContainerBuilder<Vec<()>>, _, _, _>(route, "LiveStore", move |_, _| {
                let mut pending: BTreeMap<u64, Vec<(RowKey, Agg, isize)>> = BTreeMap::new();
                let mut held: Option<Capability<u64>> = None;
                move |(input, frontier), _output| {
                    input.for_each_stamp(|cap, data| {
                        let mut least: Option<u64> = None;
                        for batch in data {
                            for ((key, agg), time, diff) in batch.drain(..) {
                                least = Some(least.map_or(time, |l| l.min(time)));
                                pending.entry(time).or_default().push((key, agg, diff));
                            }
                        }
                        // Hold the least pending time, so the probe waits until it is applied.
                        // (Updates are never earlier than their message; `max` keeps that a fact.)
                        if let (Some(least), Some(&first)) = (least, cap.least()) {
                            let least = least.max(first);
                            if held.as_ref().is_none_or(|h| *h.time() > least) {
                                held = Some(cap.delayed(&least, 0));
                            }
                        }
                    });
                    while let Some(due) = pending.first_entry() {
                        if frontier.less_equal(due.key()) {
                            break;
                        }
                        live.store.apply(due.remove());
                    }
                    match (pending.keys().next(), held.as_mut()) {
                        (Some(&next), Some(h)) => h.downgrade(&next),
                        (None, _) => held = None,
                        (Some(_), None) => {}
                    }
                    // Worker 0 applies, then publishes. Another worker's frontier may pass an epoch
                    // worker 0 has not applied yet: those publish only in processes without worker
                    // 0 (whose stores stay empty), which keeps their bookkeeping bounded.
                    if leader || !live.hosts_leader.load(std::sync::atomic::Ordering::Relaxed) {
                        live.publish(frontier.frontier().iter().next().copied().unwrap_or(u64::MAX));
                    }
                }
            })
            .probe_with(probe);

        LiveWorker { live: self.clone(), leader, definitions, aging, expiry, applied: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_text_and_fixed_point() {
        assert_eq!(group_text(serde_json::json!("pro")), Some("pro".into()));
        assert_eq!(group_text(serde_json::json!(42)), Some("42".into()));
        assert_eq!(group_text(serde_json::json!(1.5)), Some("1.5".into()));
        assert_eq!(group_text(serde_json::json!(true)), Some("true".into()));
        assert_eq!(group_text(serde_json::json!({"b": 1, "a": [1, "x"]})), Some(r#"{"b":1,"a":[1,"x"]}"#.into()));
        assert_eq!(group_text(Json::Null), None);
        assert_eq!(fixed_point("1.5"), Some(1_500_000_000));
        assert_eq!(fixed_point("-0.000000001"), Some(-1));
        assert_eq!(fixed_point("1e3"), Some(1_000_000_000_000));
        for bad in ["", "abc", "true", "NaN", "inf", "1e19", "{\"a\":1}", " 1"] {
            assert_eq!(fixed_point(bad), None, "{bad}");
        }
    }

    #[test]
    fn shards_spread_one_project() {
        let used: std::collections::BTreeSet<u16> = (0..1000).map(|i| shard(&format!("user-{i}"), i)).collect();
        assert_eq!(used.len(), SHARDS as usize);
        assert_eq!(shard("u", 1), shard("u", 1), "the same in every process");
    }

    #[test]
    fn agg_is_a_group() {
        let mut a = Agg { n: 2, sum: 5, skipped: 1 };
        let mut b = a;
        b.negate();
        a.plus_equals(&b);
        assert!(a.is_zero());
        assert_eq!(Agg::ONE.multiply(&-3), Agg { n: -3, sum: 0, skipped: 0 });
        let mut max = Agg { n: i64::MAX, sum: i128::MAX, skipped: 0 };
        max.plus_equals(&Agg::ONE);
        max.plus_equals(&Agg { n: -1, sum: 0, skipped: 0 });
        assert_eq!(max.n, i64::MAX, "wrapping arithmetic never panics and still cancels");
    }
}
