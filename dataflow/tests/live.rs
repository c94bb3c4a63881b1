//! Live aggregates through the real graph over a real WAL: every aggregate equals a batch
//! `GROUP BY` over the events the sink took (property test, 1 and 2 workers, definitions changed
//! mid-stream, retention moving on), odd values, a two-process cluster, and an end-to-end run that
//! captures while the graph serves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hog_lang::{compile, CompileOptions};
use hogpipe_capture::event::{parse_payload, parse_time, EndpointKind, ParseLimits, RequestMeta};
use hogpipe_capture::log::wal::{Wal, WalConfig};
use hogpipe_capture::log::EventLog;
use hogpipe_dataflow::event::{Event, Project};
use hogpipe_dataflow::functions::{FunctionKind, FunctionSpec, FunctionStats, Registry};
use hogpipe_dataflow::graph::{run, Cluster, DataflowError, Options, Pipeline, Summary, Until};
use hogpipe_dataflow::health::{HealthConfig, Watcher};
use hogpipe_dataflow::live::{
    AggregateDef, Interval, Live, LiveConfig, LiveProgress, LiveRow, LiveValue, ManualClock, Measure,
};
use hogpipe_dataflow::sink::JsonLinesSink;
use proptest::prelude::*;
use serde_json::{json, Value};

const TOKENS: [&str; 2] = ["phc_one", "phc_two"];
/// 2024-03-10T12:00:00Z: the manual clock's "now".
const NOW: i64 = 1_710_072_000_000;
const WAIT: Duration = Duration::from_secs(120);

/// Short windows, so a few days of events cover every case of retention.
fn config() -> LiveConfig {
    LiveConfig {
        minute_retention_secs: 2 * 3600,
        hour_retention_secs: 86_400,
        day_retention_secs: 3 * 86_400,
        max_future_secs: 3600,
    }
}

/// Sets `timestamp` to garbage for events with `bad_ts`: the only way a bad timestamp reaches the
/// live computation (capture always resolves one).
fn spoil_timestamps(project: u64) -> FunctionSpec {
    let source = "let e := event\nif (e.properties.bad_ts) { e.timestamp := 'not a time' }\nreturn e";
    let bytecode = compile(source, &CompileOptions { globals: None, ..Default::default() }).unwrap().to_json();
    FunctionSpec {
        id: format!("spoil-{project}"),
        project_id: project,
        name: "spoil".into(),
        kind: FunctionKind::Transformation,
        enabled: true,
        order: 0,
        bytecode,
        filter: None,
        inputs: serde_json::Map::new(),
    }
}

/// A graph serving over a WAL (`Until::Stopped`), with live aggregates on a manual clock.
struct Harness {
    dir: tempfile::TempDir,
    wal: Arc<Wal>,
    live: Arc<Live>,
    clock: Arc<ManualClock>,
    stop: Arc<AtomicBool>,
    graph: Option<JoinHandle<Result<Summary, DataflowError>>>,
    captured: u64,
}

fn open_wal(dir: &Path) -> Arc<Wal> {
    let mut config = WalConfig::new(dir.join("log"));
    config.partitions = 4;
    Arc::new(Wal::open(config).unwrap())
}

fn pipeline(dir: &Path, wal: Arc<Wal>, live: Option<Arc<Live>>, sink: &str) -> Pipeline {
    let projects = HashMap::from([
        (TOKENS[0].to_string(), Project { id: 1, name: "One".into() }),
        (TOKENS[1].to_string(), Project { id: 2, name: "Two".into() }),
    ]);
    Pipeline {
        log: wal,
        registry: Arc::new(Registry::new(vec![spoil_timestamps(1), spoil_timestamps(2)])),
        projects: Arc::new(projects),
        events: Arc::new(JsonLinesSink::open(&dir.join(sink)).unwrap()),
        invocations: Arc::new(hogpipe_dataflow::sink::NullSink),
        stats: Arc::new(FunctionStats::default()),
        watcher: Arc::new(Watcher::new(HealthConfig::default())),
        live,
    }
}

fn capture(wal: &Wal, token: &str, events: Vec<Value>) {
    if events.is_empty() {
        return;
    }
    let body = json!({"api_key": token, "batch": events}).to_string();
    let meta = RequestMeta::new(EndpointKind::Events, "10.0.0.1");
    let parsed = parse_payload(body.as_bytes(), &meta, &ParseLimits::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(wal.append(parsed.records)).unwrap();
}

impl Harness {
    fn start(workers: usize, definitions: Vec<AggregateDef>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let wal = open_wal(dir.path());
        let clock = Arc::new(ManualClock::new(NOW));
        let live = Arc::new(Live::with_clock(config(), definitions, clock.clone()).unwrap());
        let pipeline = pipeline(dir.path(), wal.clone(), Some(live.clone()), "events.jsonl");
        let stop = Arc::new(AtomicBool::new(false));
        let options = Options { workers, batch_size: 7, idle_wait: Duration::from_millis(1), ..Options::default() };
        let until = Until::Stopped(stop.clone());
        let graph = Some(std::thread::spawn(move || run(pipeline, options, until)));
        Harness { dir, wal, live, clock, stop, graph, captured: 0 }
    }

    /// Captures events (each `(team index, event json)`), in payloads per team.
    fn capture(&mut self, events: &[(usize, Value)]) {
        for (team, token) in TOKENS.iter().enumerate() {
            let batch: Vec<Value> = events.iter().filter(|(t, _)| *t == team).map(|(_, e)| e.clone()).collect();
            self.captured += batch.len() as u64;
            capture(&self.wal, token, batch);
        }
    }

    fn wait(&self, what: &str, done: impl Fn(&LiveProgress) -> bool) -> LiveProgress {
        match self.live.wait_for(WAIT, done) {
            Some(p) => p,
            None => panic!("live aggregates never got to {what}: {:?}", self.live.progress()),
        }
    }

    /// Waits until every captured event is in the store.
    fn settle(&self) {
        let n = self.captured;
        self.wait("every event", |p| p.events >= n);
    }

    /// Waits until rounds that started after now are in the store (retention acts at round start).
    fn next_rounds(&self) {
        let epochs = self.live.progress().epochs;
        self.wait("the next rounds", |p| p.epochs >= epochs + 3);
    }

    fn sink_events(&self) -> Vec<Event> {
        read_events(&self.dir.path().join("events.jsonl"))
    }

    fn stop(mut self) -> Summary {
        self.stop.store(true, Ordering::Relaxed);
        self.graph.take().unwrap().join().unwrap().unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(graph) = self.graph.take() {
            let _ = graph.join();
        }
    }
}

fn read_events(path: &Path) -> Vec<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

// ---- The batch reference: a straightforward GROUP BY over the events. ----

type Key = (i64, String, Vec<Option<String>>);

#[derive(Debug, Clone, PartialEq)]
struct Expected {
    value: LiveValue,
    count: u64,
    skipped: u64,
}

fn group_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(serde_json::to_string(other).unwrap()),
    }
}

fn summed(value: Option<&Value>) -> Option<i128> {
    let v = match value? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.parse::<f64>().ok()?,
        _ => return None,
    };
    (v.is_finite() && v.abs() <= 1e18).then(|| (v * 1e9).round() as i128)
}

/// `def` over `events` as the store must show it at `now`; the events were taken at [`NOW`] (which
/// decides what was too far in the future).
fn batch(def: &AggregateDef, events: &[Event], now: i64, config: &LiveConfig) -> BTreeMap<Key, Expected> {
    #[derive(Default)]
    struct Acc {
        n: u64,
        sum: i128,
        skipped: u64,
        ids: BTreeSet<String>,
    }
    let mut groups: BTreeMap<Key, Acc> = BTreeMap::new();
    let width = def.interval.millis();
    for e in events {
        if e.team_id != def.project_id || def.event.as_ref().is_some_and(|n| *n != e.event) {
            continue;
        }
        let Some(time) = parse_time(&e.timestamp).map(|t| t.timestamp_millis()) else { continue };
        let bucket = time.div_euclid(width) * width;
        if time > NOW + config.max_future_secs as i64 * 1000 || bucket + config.retention_ms(def.interval) <= now {
            continue;
        }
        let key = (bucket, e.event.clone(), def.group_by.iter().map(|p| group_text(e.properties.get(p))).collect());
        let acc = groups.entry(key).or_default();
        match def.measure {
            Measure::Count => acc.n += 1,
            Measure::UniqueDistinctIds => {
                acc.ids.insert(e.distinct_id.clone());
            }
            Measure::Sum => match summed(e.properties.get(def.property.as_deref().unwrap())) {
                Some(v) => {
                    acc.n += 1;
                    acc.sum += v;
                }
                None => acc.skipped += 1,
            },
        }
    }
    groups
        .into_iter()
        .map(|(key, acc)| {
            let expected = match def.measure {
                Measure::Count => Expected { value: LiveValue::Int(acc.n as i64), count: acc.n, skipped: 0 },
                Measure::UniqueDistinctIds => {
                    let n = acc.ids.len() as u64;
                    Expected { value: LiveValue::Int(n as i64), count: n, skipped: 0 }
                }
                Measure::Sum => {
                    Expected { value: LiveValue::Float(acc.sum as f64 / 1e9), count: acc.n, skipped: acc.skipped }
                }
            };
            (key, expected)
        })
        .collect()
}

fn live_rows(rows: &[LiveRow]) -> BTreeMap<Key, Expected> {
    rows.iter()
        .map(|r| {
            let key = (r.bucket_start_ms, r.event.clone(), r.groups.clone());
            (key, Expected { value: r.value, count: r.count, skipped: r.skipped })
        })
        .collect()
}

fn assert_matches_batch(live: &Live, definitions: &[AggregateDef], events: &[Event], now: i64) {
    for def in definitions {
        let rows = live.store().query(&def.id, i64::MIN, i64::MAX);
        let sorted = rows.windows(2).all(|w| {
            (w[0].bucket_start_ms, &w[0].event, &w[0].groups) < (w[1].bucket_start_ms, &w[1].event, &w[1].groups)
        });
        assert!(sorted, "rows of {} sorted by bucket, event, groups", def.id);
        assert!(rows.iter().all(|r| r.measure == def.measure && r.interval == def.interval && !r.deleted));
        let expected = batch(def, events, now, live.config());
        assert_eq!(live_rows(&rows), expected, "aggregate {def:?} at {now}");
    }
}

// ---- Generators ----

fn event_strategy() -> impl Strategy<Value = (usize, Value)> {
    let plan = prop_oneof![
        Just(None),
        Just(Some(json!("free"))),
        Just(Some(json!("pro"))),
        Just(Some(json!(42))),
        Just(Some(json!("42"))),
        Just(Some(json!(true))),
        Just(Some(Value::Null)),
        Just(Some(json!({"tier": "x", "n": [1, 2]}))),
    ];
    let amount = prop_oneof![
        Just(None),
        Just(Some(json!(1.5))),
        Just(Some(json!(2))),
        Just(Some(json!(-0.25))),
        Just(Some(json!(0.1))),
        Just(Some(json!("3.75"))),
        Just(Some(json!("abc"))),
        Just(Some(Value::Null)),
        Just(Some(json!(1e20))),
        Just(Some(json!({"x": 1}))),
    ];
    (0..2usize, 0..3usize, 0..5usize, plan, amount, -120i64..5000, prop::bool::weighted(0.05)).prop_map(
        |(team, name, user, plan, amount, minutes_ago, bad_ts)| {
            let mut properties = serde_json::Map::new();
            if let Some(plan) = plan {
                properties.insert("plan".into(), plan);
            }
            if let Some(amount) = amount {
                properties.insert("amount".into(), amount);
            }
            if bad_ts {
                properties.insert("bad_ts".into(), json!(true));
            }
            // Seconds too, so events of one minute differ in time.
            let time = NOW - minutes_ago * 60_000 - (user as i64) * 7_000;
            let event = json!({
                "event": (["a", "b", "c"][name]),
                "distinct_id": format!("u{user}"),
                "timestamp": hogpipe_dataflow::live::store::format_ms(time),
                "properties": properties,
            });
            (team, event)
        },
    )
}

fn definition_strategy() -> impl Strategy<Value = AggregateDef> {
    let group_keys = prop::sample::subsequence(vec!["plan", "amount", "nope"], 0..=2).prop_shuffle();
    let measure = prop_oneof![
        Just((Measure::Count, None)),
        Just((Measure::UniqueDistinctIds, None)),
        Just((Measure::Sum, Some("amount"))),
        Just((Measure::Sum, Some("plan"))),
    ];
    let interval = prop_oneof![Just(Interval::Minute), Just(Interval::Hour), Just(Interval::Day)];
    let event = prop_oneof![Just(None), Just(Some("a")), Just(Some("b"))];
    (1..=2u64, event, group_keys, measure, interval).prop_map(|(project_id, event, group_by, measure, interval)| {
        AggregateDef {
            id: String::new(),
            project_id,
            event: event.map(str::to_string),
            group_by: group_by.into_iter().map(str::to_string).collect(),
            measure: measure.0,
            property: measure.1.map(str::to_string),
            interval,
        }
    })
}

fn definitions_strategy(prefix: &'static str) -> impl Strategy<Value = Vec<AggregateDef>> {
    prop::collection::vec(definition_strategy(), 1..4).prop_map(move |defs| {
        defs.into_iter().enumerate().map(|(i, d)| AggregateDef { id: format!("{prefix}{i}"), ..d }).collect()
    })
}

/// Definitions before and after a change: some kept (`k*`, possibly changed), some removed (`a*`),
/// some added (`b*`).
fn change_strategy() -> impl Strategy<Value = (Vec<AggregateDef>, Vec<AggregateDef>)> {
    (definitions_strategy("k"), definitions_strategy("a"), definitions_strategy("b"), any::<bool>()).prop_map(
        |(kept, removed, added, change_kept)| {
            let mut before = kept.clone();
            before.extend(removed);
            let mut after: Vec<AggregateDef> =
                kept.into_iter().map(|d| if change_kept { AggregateDef { event: None, ..d } } else { d }).collect();
            after.extend(added);
            (before, after)
        },
    )
}

fn check_stream(workers: usize, events: Vec<(usize, Value)>, before: Vec<AggregateDef>, after: Vec<AggregateDef>) {
    let mut h = Harness::start(workers, before.clone());
    let half = events.len() / 2;
    h.capture(&events[..half]);
    h.settle();
    assert_matches_batch(&h.live, &before, &h.sink_events(), NOW);

    // Change the definitions mid-stream: new ones cover the events already retained.
    let version = h.live.registry().replace(after.clone()).unwrap();
    h.capture(&events[half..]);
    h.settle();
    h.wait("the new definitions", |p| p.version >= version);
    let all = h.sink_events();
    assert_eq!(all.len(), events.len());
    assert_matches_batch(&h.live, &after, &all, NOW);
    for gone in before.iter().filter(|d| !after.iter().any(|a| a.id == d.id)) {
        assert!(h.live.store().query(&gone.id, i64::MIN, i64::MAX).is_empty(), "{} removed", gone.id);
    }

    // Skips are counted once per event.
    let counters = h.live.counters();
    let bad = all.iter().filter(|e| parse_time(&e.timestamp).is_none()).count() as u64;
    let future =
        all.iter().filter_map(|e| parse_time(&e.timestamp)).filter(|t| t.timestamp_millis() > NOW + 3_600_000).count()
            as u64;
    assert_eq!((counters.bad_timestamp, counters.future), (bad, future));
    assert_eq!(counters.entered + counters.bad_timestamp + counters.future + counters.too_old, events.len() as u64);

    // Time passes: buckets leave their windows and are retracted.
    for later in [NOW + 90 * 60_000, NOW + 26 * 3_600_000, NOW + 5 * 86_400_000] {
        h.clock.set(later);
        h.next_rounds();
        assert_matches_batch(&h.live, &after, &all, later);
    }
    assert_eq!(h.live.counters().expired, h.live.counters().entered, "everything expired in the end");
    let summary = h.stop();
    assert_eq!(summary.read, events.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 50, ..ProptestConfig::default() })]

    #[test]
    fn live_equals_batch_with_one_worker(
        events in prop::collection::vec(event_strategy(), 0..120),
        (before, after) in change_strategy(),
    ) {
        check_stream(1, events, before, after);
    }

    #[test]
    fn live_equals_batch_with_two_workers(
        events in prop::collection::vec(event_strategy(), 0..120),
        (before, after) in change_strategy(),
    ) {
        check_stream(2, events, before, after);
    }
}

fn def(id: &str, project_id: u64, measure: Measure, property: Option<&str>, group_by: &[&str]) -> AggregateDef {
    AggregateDef {
        id: id.into(),
        project_id,
        event: None,
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        measure,
        property: property.map(str::to_string),
        interval: Interval::Hour,
    }
}

fn at(minutes_ago: i64) -> String {
    hogpipe_dataflow::live::store::format_ms(NOW - minutes_ago * 60_000)
}

#[test]
fn odd_values_group_by_json_text_and_sums_skip_non_numbers() {
    let by_plan = def("by-plan", 1, Measure::Count, None, &["plan"]);
    let revenue = def("revenue", 1, Measure::Sum, Some("amount"), &[]);
    let users = def("users", 1, Measure::UniqueDistinctIds, None, &[]);
    let mut h = Harness::start(2, vec![by_plan, revenue, users]);
    let e = |plan: Value, amount: Value, user: &str| json!({"event": "buy", "distinct_id": user, "timestamp": at(5), "properties": {"plan": plan, "amount": amount}});
    h.capture(&[
        (0, e(json!({"tier": "x", "n": 1}), json!(10), "u1")),
        (0, e(json!({"tier": "x", "n": 1}), json!("2.5"), "u2")),
        (0, e(json!({"n": 1, "tier": "x"}), json!("ten"), "u1")),
        (0, e(json!(42), json!(true), "u1")),
        (0, e(json!("42"), Value::Null, "u3")),
        (0, e(Value::Null, json!([1]), "u3")),
        (0, e(json!([1, "a"]), json!(0.1), "u2")),
    ]);
    h.settle();
    let store = h.live.store();
    let groups: Vec<(Option<String>, LiveValue)> =
        store.query("by-plan", i64::MIN, i64::MAX).into_iter().map(|r| (r.groups[0].clone(), r.value)).collect();
    assert_eq!(
        groups,
        vec![
            (None, LiveValue::Int(1)),
            (Some("42".into()), LiveValue::Int(2)),
            (Some(r#"[1,"a"]"#.into()), LiveValue::Int(1)),
            (Some(r#"{"n":1,"tier":"x"}"#.into()), LiveValue::Int(1)),
            (Some(r#"{"tier":"x","n":1}"#.into()), LiveValue::Int(2)),
        ],
        "objects group by their JSON text (key order kept); the string \"42\" and the number 42 together"
    );
    let revenue = &store.query("revenue", i64::MIN, i64::MAX)[0];
    assert_eq!((revenue.value, revenue.count, revenue.skipped), (LiveValue::Float(12.6), 3, 4));
    let users = &store.query("users", i64::MIN, i64::MAX)[0];
    assert_eq!(users.value, LiveValue::Int(3));
    assert_eq!(users.bucket, "2024-03-10T11:00:00.000Z");
    assert!(users.partial, "the bucket (11:00) began before the live state did (12:00 on the manual clock)");
    h.stop();
}

#[test]
fn changes_since_feeds_a_persister_with_versions_and_deletions() {
    let mut h = Harness::start(1, vec![def("count", 2, Measure::Count, None, &[])]);
    h.capture(&[(1, json!({"event": "x", "distinct_id": "u", "timestamp": at(1)}))]);
    h.settle();
    let (rows, v1) = h.live.store().changes_since(0);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].value, rows[0].deleted), (LiveValue::Int(1), false));
    assert!(rows[0].version <= v1 && rows[0].version > 0);

    h.capture(&[(1, json!({"event": "x", "distinct_id": "v", "timestamp": at(2)}))]);
    h.settle();
    let (rows, v2) = h.live.store().changes_since(v1);
    assert_eq!(rows.iter().map(|r| r.value).collect::<Vec<_>>(), vec![LiveValue::Int(2)]);
    assert!(rows[0].version > v1, "a change gets a higher version");

    let version = h.live.registry().remove("count").unwrap();
    h.wait("the removal", |p| p.version >= version);
    let (rows, v3) = h.live.store().changes_since(v2);
    assert_eq!(rows.len(), 1);
    assert!(rows[0].deleted, "a removed definition's rows are reported deleted");
    assert!(h.live.store().query("count", i64::MIN, i64::MAX).is_empty());
    assert_eq!(h.live.store().changes_since(v3), (vec![], v3));
    h.stop();
}

#[test]
fn a_two_process_cluster_gathers_every_result_in_process_zero() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open_wal(dir.path());
    let defs = vec![
        def("count", 1, Measure::Count, None, &["plan"]),
        def("users", 1, Measure::UniqueDistinctIds, None, &[]),
        def("sum", 1, Measure::Sum, Some("amount"), &["plan"]),
    ];
    let events: Vec<Value> = (0..400)
        .map(|i| {
            json!({"event": (["a", "b"][i % 2]), "distinct_id": format!("u{}", i % 13), "timestamp": at((i % 90) as i64),
                   "properties": {"plan": (["free", "pro", "team"][i % 3]), "amount": (i % 7) as f64 / 4.0}})
        })
        .collect();
    capture(&wal, TOKENS[0], events);
    let clock = Arc::new(ManualClock::new(NOW));
    let lives: Vec<Arc<Live>> =
        (0..2).map(|_| Arc::new(Live::with_clock(config(), defs.clone(), clock.clone()).unwrap())).collect();
    let addresses = vec![
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()),
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()),
    ];
    let handles: Vec<_> = (0..2)
        .map(|process| {
            let pipeline = pipeline(dir.path(), wal.clone(), Some(lives[process].clone()), "events.jsonl");
            let addresses = addresses.clone();
            std::thread::spawn(move || {
                let cluster = Some(Cluster { process, addresses });
                let options = Options { workers: 2, batch_size: 30, cluster, ..Options::default() };
                run(pipeline, options, Until::CaughtUp).unwrap()
            })
        })
        .collect();
    let read: u64 = handles.into_iter().map(|h| h.join().unwrap().read).sum();
    assert_eq!(read, 400);
    let events = read_events(&dir.path().join("events.jsonl"));
    assert_matches_batch(&lives[0], &defs, &events, NOW);
    assert!(lives[1].store().is_empty(), "results gather in process 0");
}

/// Captures while the graph serves on the system clock, and polls the store until the aggregate
/// shows the new events. The delay itself is measured by `cargo bench --bench live`.
#[test]
fn end_to_end_captured_events_become_visible_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open_wal(dir.path());
    let live = Arc::new(Live::new(LiveConfig::default(), vec![def("hourly", 1, Measure::Count, None, &[])]).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let graph = {
        let pipeline = pipeline(dir.path(), wal.clone(), Some(live.clone()), "events.jsonl");
        let until = Until::Stopped(stop.clone());
        std::thread::spawn(move || run(pipeline, Options { workers: 2, ..Options::default() }, until))
    };
    let total = |id: &str| -> u64 { live.store().query(id, i64::MIN, i64::MAX).iter().map(|r| r.count).sum() };
    let poll = |id: &str, want: u64| {
        let deadline = Instant::now() + WAIT;
        let mut seen = 0;
        while total(id) < want {
            assert!(Instant::now() < deadline, "{id} never reached {want}: {}", total(id));
            seen = live.store().wait_changed(seen, Duration::from_millis(100));
        }
        assert_eq!(total(id), want);
    };
    for round in 1..=3u64 {
        let events: Vec<Value> =
            (0..5).map(|i| json!({"event": "signup", "distinct_id": format!("u{round}-{i}")})).collect();
        capture(&wal, TOKENS[0], events);
        poll("hourly", round * 5);
    }
    // A definition added while serving covers the events already retained.
    let version = live.registry().upsert(def("users", 1, Measure::UniqueDistinctIds, None, &[])).unwrap();
    live.wait_for(WAIT, |p| p.version >= version).expect("the new definition applied");
    poll("users", 15);
    let rows = live.store().query("hourly", i64::MIN, i64::MAX);
    assert!(rows.iter().all(|r| r.partial == (r.bucket_start_ms < live.store().started_at_ms())));
    stop.store(true, Ordering::Relaxed);
    let summary = graph.join().unwrap().unwrap();
    assert_eq!(summary.written, 15);
}

#[test]
fn another_run_with_the_same_live_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open_wal(dir.path());
    let clock = Arc::new(ManualClock::new(NOW));
    let live = Arc::new(Live::with_clock(config(), vec![def("count", 1, Measure::Count, None, &[])], clock).unwrap());
    let event = |i: usize| json!({"event": "x", "distinct_id": format!("u{i}"), "timestamp": at(3)});
    let total = || -> u64 { live.store().query("count", i64::MIN, i64::MAX).iter().map(|r| r.count).sum() };
    let run_once = || {
        let pipeline = pipeline(dir.path(), wal.clone(), Some(live.clone()), "events.jsonl");
        run(pipeline, Options { workers: 2, batch_size: 3, ..Options::default() }, Until::CaughtUp).unwrap()
    };
    capture(&wal, TOKENS[0], (0..10).map(event).collect());
    assert_eq!(run_once().read, 10);
    assert_eq!(total(), 10);
    assert_eq!(live.progress().events, 10);
    let first_start = live.store().started_at_ms();

    capture(&wal, TOKENS[0], (10..15).map(event).collect());
    assert_eq!(run_once().read, 5, "the committed positions hold");
    assert_eq!(total(), 5, "a new run has a new differential state, so the store starts over");
    assert_eq!(live.progress().events, 15);
    assert!(live.store().started_at_ms() >= first_start);
}
