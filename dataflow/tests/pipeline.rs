//! The dataflow over a real WAL: captured events through a chain of Hog transformations, routing by
//! filter, sinks writing JSON lines, commits and restarts, hot reload, failing functions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hog_lang::{compile, CompileOptions};
use hogpipe_capture::event::{parse_payload, EndpointKind, ParseLimits, RequestMeta};
use hogpipe_capture::log::wal::{Wal, WalConfig};
use hogpipe_capture::log::EventLog;
use hogpipe_dataflow::event::{Event, Project};
use hogpipe_dataflow::functions::{FunctionKind, FunctionSpec, FunctionStats, Registry};
use hogpipe_dataflow::graph::{run, Options, Pipeline, Until};
use hogpipe_dataflow::health::{Health, HealthConfig, Watcher};
use hogpipe_dataflow::sink::JsonLinesSink;
use serde_json::{json, Value};

const TOKEN: &str = "phc_one";
const TOKEN2: &str = "phc_two";
const TOKEN3: &str = "phc_three";

fn bytecode(source: &str) -> Value {
    compile(source, &CompileOptions { globals: None, ..Default::default() }).unwrap().to_json()
}

fn function(id: &str, project: u64, kind: FunctionKind, order: i32, source: &str) -> FunctionSpec {
    FunctionSpec {
        id: id.into(),
        project_id: project,
        name: id.into(),
        kind,
        enabled: true,
        order,
        bytecode: bytecode(source),
        filter: None,
        inputs: serde_json::Map::new(),
    }
}

/// The chain the issue asks for: add a property, rename, hash PII, drop by filter. `step` shows the order.
fn chain() -> Vec<FunctionSpec> {
    vec![
        // Registered out of order on purpose: `order` decides.
        function(
            "hash",
            1,
            FunctionKind::Transformation,
            2,
            "let e := event\nif (e.properties.email != null) { e.properties.email := sha256Hex(e.properties.email) }\ne.properties.step := concat(e.properties.step, '-two')\nreturn e",
        ),
        function(
            "add-rename",
            1,
            FunctionKind::Transformation,
            1,
            "let e := event\ne.properties.processed := true\ne.properties.url := e.properties.$current_url\ne.properties.$current_url := null\ne.properties.step := 'one'\nreturn e",
        ),
        function("drop-internal", 1, FunctionKind::Transformation, 3, "if (event.event == 'internal') { return null }\nreturn event"),
        FunctionSpec {
            filter: Some(bytecode("return event == '$pageview'")),
            ..function("webhook", 1, FunctionKind::Destination, 0, "return null")
        },
    ]
}

struct Fixture {
    dir: tempfile::TempDir,
    wal: Arc<Wal>,
    registry: Arc<Registry>,
    stats: Arc<FunctionStats>,
    watcher: Arc<Watcher>,
}

impl Fixture {
    fn new(functions: Vec<FunctionSpec>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let mut config = WalConfig::new(dir.path().join("log"));
        config.partitions = 4;
        let wal = Arc::new(Wal::open(config).unwrap());
        Fixture {
            dir,
            wal,
            registry: Arc::new(Registry::new(functions)),
            stats: Arc::new(FunctionStats::default()),
            watcher: Arc::new(Watcher::new(HealthConfig::default())),
        }
    }

    fn capture(&self, token: &str, events: Vec<Value>) {
        let body = json!({"api_key": token, "batch": events}).to_string();
        let meta = RequestMeta::new(EndpointKind::Events, "10.0.0.1");
        let parsed = parse_payload(body.as_bytes(), &meta, &ParseLimits::default()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(self.wal.append(parsed.records)).unwrap();
    }

    fn pipeline(&self) -> Pipeline {
        let projects = HashMap::from([
            (TOKEN.to_string(), Project { id: 1, name: "One".into() }),
            (TOKEN2.to_string(), Project { id: 2, name: "Two".into() }),
            (TOKEN3.to_string(), Project { id: 3, name: "Three".into() }),
        ]);
        Pipeline {
            log: self.wal.clone(),
            registry: self.registry.clone(),
            projects: Arc::new(projects),
            events: Arc::new(JsonLinesSink::open(&self.dir.path().join("events.jsonl")).unwrap()),
            invocations: Arc::new(JsonLinesSink::open(&self.dir.path().join("invocations.jsonl")).unwrap()),
            stats: self.stats.clone(),
            watcher: self.watcher.clone(),
            live: None,
        }
    }

    fn run(&self, workers: usize) -> hogpipe_dataflow::graph::Summary {
        self.run_with(workers, 100)
    }

    fn run_with(&self, workers: usize, batch_size: usize) -> hogpipe_dataflow::graph::Summary {
        let options = Options { workers, batch_size, ..Options::default() };
        run(self.pipeline(), options, Until::CaughtUp).unwrap()
    }

    fn events(&self) -> Vec<Event> {
        read_lines(&self.dir.path().join("events.jsonl"))
    }

    fn invocations(&self) -> Vec<(String, Event)> {
        read_lines(&self.dir.path().join("invocations.jsonl"))
    }
}

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path) -> Vec<T> {
    match std::fs::read_to_string(path) {
        // Only complete lines: the sink may be writing the next one.
        Ok(text) => {
            let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
            complete.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }
        Err(_) => Vec::new(),
    }
}

fn generated(n: usize, offset: usize) -> Vec<Value> {
    (offset..offset + n)
        .map(|i| {
            let name = match i % 10 {
                0 => "internal",
                1..=5 => "$pageview",
                _ => "signed_up",
            };
            json!({
                "event": name,
                "distinct_id": format!("user-{}", i % 37),
                "uuid": format!("00000000-0000-4000-8000-{i:012}"),
                "properties": {"$current_url": format!("https://example.com/p/{i}"), "email": format!("u{i}@example.com"), "i": i}
            })
        })
        .collect()
}

fn sha256_hex(text: &str) -> String {
    let out = hog_lang::run_source(&format!("return sha256Hex('{text}')"), &CompileOptions::default()).unwrap();
    out.result.as_str().unwrap().to_string()
}

#[test]
fn transformation_chain_over_thousands_of_events() {
    let f = Fixture::new(chain());
    for chunk in 0..6 {
        f.capture(TOKEN, generated(500, chunk * 500));
    }
    let summary = f.run(2);
    assert_eq!(summary.read, 3000);
    assert_eq!(summary.skipped, 0);

    let events = f.events();
    assert_eq!(summary.written, events.len() as u64);
    let by_i: BTreeMap<u64, &Event> = events.iter().map(|e| (e.properties["i"].as_u64().unwrap(), e)).collect();
    assert_eq!(by_i.len(), events.len(), "each event exactly once");
    let expected: Vec<u64> = (0..3000).filter(|i| i % 10 != 0).collect();
    assert_eq!(by_i.keys().copied().collect::<Vec<_>>(), expected, "internal events dropped, all others kept");
    for (i, e) in &by_i {
        assert_eq!(e.team_id, 1);
        assert_eq!(e.properties["processed"], json!(true));
        assert_eq!(e.properties["url"], json!(format!("https://example.com/p/{i}")));
        assert_eq!(e.properties["$current_url"], Value::Null);
        assert_eq!(e.properties["step"], json!("one-two"), "transformations ran in `order`");
        assert_eq!(e.uuid, format!("00000000-0000-4000-8000-{i:012}"));
    }
    assert_eq!(by_i[&7].properties["email"], json!(sha256_hex("u7@example.com")));

    // Per distinct id, events keep their capture order.
    let mut last: HashMap<&str, u64> = HashMap::new();
    for e in &events {
        let i = e.properties["i"].as_u64().unwrap();
        if let Some(prev) = last.insert(e.distinct_id.as_str(), i) {
            assert!(prev < i, "order of {} broken: {prev} then {i}", e.distinct_id);
        }
    }

    // Routing: only pageviews reach the destination.
    let invocations = f.invocations();
    assert_eq!(invocations.len(), 1500);
    assert!(invocations.iter().all(|(id, e)| id == "webhook" && e.event == "$pageview"));

    let hash = f.stats.counters("hash");
    assert_eq!(hash.invocations, 3000, "`hash` runs before `drop-internal`");
    assert_eq!(hash.succeeded, 3000);
    assert_eq!(f.stats.counters("drop-internal").dropped, 300);
    let webhook = f.stats.counters("webhook");
    assert_eq!((webhook.routed, webhook.filtered), (1500, 1200));
}

#[test]
fn positions_are_committed_and_restarts_resume() {
    let f = Fixture::new(chain());
    f.capture(TOKEN, generated(200, 0));
    assert_eq!(f.run(2).read, 200);
    // Nothing new: nothing read again.
    assert_eq!(f.run(1).read, 0, "committed positions are used");
    f.capture(TOKEN, generated(100, 200));
    assert_eq!(f.run(2).read, 100);
    let events = f.events();
    assert_eq!(events.len(), 270);
    let unique: std::collections::HashSet<_> = events.iter().map(|e| e.uuid.clone()).collect();
    assert_eq!(unique.len(), 270);
}

#[test]
fn failing_functions_are_isolated() {
    let mut functions = chain();
    functions.push(function("throws", 2, FunctionKind::Transformation, 1, "throw Error('nope')"));
    functions.push(function("loops", 2, FunctionKind::Transformation, 2, "while (true) { }"));
    functions.push(function(
        "bomb",
        2,
        FunctionKind::Transformation,
        3,
        "let s := 'ab'\nwhile (true) { s := concat(s, s) }",
    ));
    functions.push(function(
        "marks",
        2,
        FunctionKind::Transformation,
        4,
        "print('seen', event.properties.i)\nlet e := event\ne.properties.marked := true\nreturn e",
    ));
    let f = Fixture::new(functions);
    f.capture(TOKEN2, generated(3, 0));
    f.capture(TOKEN, generated(50, 100));
    let summary = f.run(2);
    assert_eq!(summary.read, 53);
    let events = f.events();
    let two: Vec<&Event> = events.iter().filter(|e| e.team_id == 2).collect();
    assert_eq!(two.len(), 3, "failures pass the event on unchanged");
    assert!(two.iter().all(|e| e.properties["marked"] == json!(true)), "later functions still run");
    assert_eq!(events.iter().filter(|e| e.team_id == 1).count(), 45, "the other project is unaffected");
    for id in ["throws", "loops", "bomb"] {
        let c = f.stats.counters(id);
        assert_eq!((c.invocations, c.failed), (3, 3), "{id}");
        let logs = f.stats.logs(id);
        assert_eq!(logs.len(), 3, "{id}: {logs:?}");
        assert!(logs.iter().all(|l| l.level == "error"), "{id}: {logs:?}");
    }
    assert!(f.stats.logs("throws")[0].message.contains("nope"));
    let marks = f.stats.logs("marks");
    assert_eq!(marks.len(), 3);
    assert!(marks.iter().all(|l| l.level == "info" && l.message.starts_with("seen ")), "{marks:?}");
}

/// Transformations get the event itself, not a copy: a run that fails after changing it at every
/// depth (top level, properties, a nested dict and array, new keys, an array grown past its end)
/// must leave no trace, and neither may a destination filter that changes the event.
#[test]
fn a_failed_transformation_or_a_filter_leaves_no_trace() {
    let vandal = "let e := event\ne.event := 'renamed'\ne.properties.i := -1\ne.properties.added := 'x'\n\
                  e.properties.nested.list[1] := 99\ne.properties.nested.list[5] := 1\n\
                  e.properties.nested.inner.k := 'changed'\ne.properties.nested.inner.new := 1\n\
                  let fresh := {'a': [1]}\ne.properties.fresh := fresh\nfresh.a[1] := 2\n\
                  throw Error('after the damage')";
    let functions = vec![
        function("first", 3, FunctionKind::Transformation, 1, "let e := event\ne.properties.first := true\nreturn e"),
        function("vandal", 3, FunctionKind::Transformation, 2, vandal),
        function(
            "after",
            3,
            FunctionKind::Transformation,
            3,
            "let e := event\ne.properties.seen := [event.event, event.properties.i, event.properties.added]\nreturn e",
        ),
        // Succeeds after changing its own globals: the next invocation must not see that.
        function(
            "globals",
            3,
            FunctionKind::Transformation,
            4,
            "let p := project\nlet s := source\nlet e := event\n\
             e.properties.saw := [p.name, s.name, length(keys(groups))]\n\
             p.name := 'changed'\ns.name := 'changed'\nlet g := groups\ng.x := 1\nreturn e",
        ),
        FunctionSpec {
            filter: Some(bytecode("let p := properties\np.filtered := true\nreturn true")),
            ..function("dest", 3, FunctionKind::Destination, 0, "return null")
        },
    ];
    let f = Fixture::new(functions);
    let sent: Vec<Value> = (0..20)
        .map(|i| {
            json!({"event": "e", "distinct_id": "d", "properties": {"i": i,
                "nested": {"list": [1, 2, 3], "inner": {"k": "v"}}}})
        })
        .collect();
    f.capture(TOKEN3, sent);
    assert_eq!(f.run(2).read, 20);
    let events = f.events();
    assert_eq!(events.len(), 20);
    for e in &events {
        let i = e.properties["i"].clone();
        assert_eq!(e.event, "e");
        assert_eq!(e.properties["first"], json!(true), "the run before the failure kept its change");
        assert_eq!(e.properties["seen"], json!(["e", i, null]), "the next run saw the event as it was");
        assert_eq!(e.properties["nested"], json!({"list": [1, 2, 3], "inner": {"k": "v"}}));
        assert_eq!(e.properties["saw"], json!(["Three", "globals", 0]), "globals as new");
        for key in ["added", "fresh", "filtered"] {
            assert!(!e.properties.contains_key(key), "{key} left behind: {:?}", e.properties);
        }
    }
    assert_eq!(f.stats.counters("vandal").failed, 20);
    assert_eq!(f.invocations().len(), 20, "the filter matched every event");
    assert!(f.invocations().iter().all(|(_, e)| !e.properties.contains_key("filtered")));
}

/// Records that are not captured events, or belong to no project, are skipped and counted; the
/// events around them go through.
#[test]
fn unreadable_records_and_unknown_tokens_are_skipped() {
    let f = Fixture::new(chain());
    f.capture(TOKEN, generated(10, 0));
    f.capture("phc_nobody", generated(3, 10));
    let mut bad_data = serde_json::to_value(hogpipe_capture::event::CapturedEvent {
        uuid: "u".into(),
        distinct_id: "d".into(),
        ip: "1.2.3.4".into(),
        data: "{\"event\": ".into(),
        now: "2024-05-01T12:00:00Z".into(),
        sent_at: None,
        token: TOKEN.into(),
        historical_migration: false,
    })
    .unwrap();
    let garbage = [b"not json".to_vec(), serde_json::to_vec(&bad_data).unwrap(), {
        bad_data["data"] = json!({"event": "an object, not a string"});
        serde_json::to_vec(&bad_data).unwrap()
    }];
    let records = garbage
        .into_iter()
        .map(|value| hogpipe_capture::log::Record { key: b"k".to_vec(), value, timestamp_ms: 0, historical: false })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(f.wal.append(records)).unwrap();
    f.capture(TOKEN, generated(10, 100));
    let summary = f.run(2);
    assert_eq!((summary.read, summary.skipped), (26, 6));
    assert_eq!(f.events().len(), 18, "the 20 readable events less the two `internal` ones");
}

#[test]
fn hot_reload_applies_at_a_batch_boundary_without_loss() {
    let v1 = function("tag", 1, FunctionKind::Transformation, 1, "let e := event\ne.properties.v := 1\nreturn e");
    let f = Fixture::new(vec![v1]);
    let stop = Arc::new(AtomicBool::new(false));
    let pipeline = f.pipeline();
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let options =
                Options { workers: 2, batch_size: 50, idle_wait: Duration::from_millis(5), ..Options::default() };
            run(pipeline, options, Until::Stopped(stop)).unwrap()
        })
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while f.events().len() < n {
            assert!(Instant::now() < deadline, "only {} of {n} events arrived", f.events().len());
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    f.capture(TOKEN, generated(300, 0));
    wait_for(300);
    let v2 = f.registry.upsert(function(
        "tag",
        1,
        FunctionKind::Transformation,
        1,
        "let e := event\ne.properties.v := 2\nreturn e",
    ));
    // Every worker switches at its next batch boundary; events captured after that see v2.
    let deadline = Instant::now() + Duration::from_secs(60);
    while f.stats.oldest_version_in_use() < v2 {
        assert!(Instant::now() < deadline, "workers did not pick up version {v2}");
        std::thread::sleep(Duration::from_millis(5));
    }
    f.capture(TOKEN, generated(300, 300));
    wait_for(600);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    handle.join().unwrap();
    let events = f.events();
    assert_eq!(events.len(), 600, "nothing lost or duplicated");
    for e in &events {
        let i = e.properties["i"].as_u64().unwrap();
        let v = if i < 300 { 1 } else { 2 };
        assert_eq!(e.properties["v"], json!(v), "event {i}");
    }
}

#[test]
fn a_function_that_keeps_failing_is_disabled_and_can_be_re_enabled() {
    let mut functions = chain();
    functions.push(function("flaky", 2, FunctionKind::Transformation, 1, "throw Error('always')"));
    functions.push(function(
        "fine",
        2,
        FunctionKind::Transformation,
        2,
        "let e := event\ne.properties.fine := true\nreturn e",
    ));
    let mut f = Fixture::new(functions);
    // A small budget: ten failures empty it.
    f.watcher =
        Arc::new(Watcher::new(HealthConfig { bucket_size: 1000.0, refill_per_second: 0.0, ..HealthConfig::default() }));
    f.capture(TOKEN2, generated(40, 0));
    // Small batches: the watcher charges after each batch.
    f.run_with(1, 2);
    match f.watcher.health("flaky") {
        Health::Disabled { reason, .. } => assert!(reason.contains("failed"), "{reason}"),
        other => panic!("flaky should be disabled, is {other:?}"),
    }
    let failed_while_enabled = f.stats.counters("flaky").failed;
    assert!((10..40).contains(&failed_while_enabled), "stopped running once disabled: {failed_while_enabled}");
    assert_eq!(f.watcher.health("fine"), Health::Healthy);
    let events = f.events();
    assert_eq!(events.len(), 40);
    assert!(events.iter().all(|e| e.properties["fine"] == json!(true)), "other functions unaffected");

    // Re-enabled, it runs again.
    assert!(f.watcher.enable("flaky"));
    f.capture(TOKEN2, generated(5, 100));
    f.run(1);
    assert_eq!(f.stats.counters("flaky").failed, failed_while_enabled + 5);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn a_two_process_timely_cluster_processes_every_event_once() {
    let f = Fixture::new(chain());
    for chunk in 0..4 {
        f.capture(TOKEN, generated(250, chunk * 250));
    }
    let addresses = vec![format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())];
    let handles: Vec<_> = (0..2)
        .map(|process| {
            let pipeline = f.pipeline();
            let addresses = addresses.clone();
            std::thread::spawn(move || {
                let options = Options {
                    workers: 2,
                    batch_size: 50,
                    cluster: Some(hogpipe_dataflow::graph::Cluster { process, addresses }),
                    ..Options::default()
                };
                run(pipeline, options, Until::CaughtUp).unwrap()
            })
        })
        .collect();
    let summaries: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(summaries.iter().map(|s| s.read).sum::<u64>(), 1000);
    assert!(summaries.iter().all(|s| s.read > 0), "both processes did work: {summaries:?}");
    let events = f.events();
    let unique: std::collections::HashSet<_> = events.iter().map(|e| e.uuid.clone()).collect();
    assert_eq!((events.len(), unique.len()), (900, 900), "every kept event exactly once");
}

/// A log that fails some reads and commits, as a broker restart would.
struct Flaky {
    inner: Arc<Wal>,
    calls: std::sync::atomic::AtomicUsize,
}

impl Flaky {
    fn trip(&self) -> Result<(), hogpipe_capture::log::LogError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % 10 == 3 {
            Err(hogpipe_capture::log::LogError::Unavailable("broker restarting".into()))
        } else {
            Ok(())
        }
    }
}

impl hogpipe_capture::log::LogReader for Flaky {
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }
    fn start_offset(&self, p: u32) -> Result<u64, hogpipe_capture::log::LogError> {
        Ok(self.inner.start_offset(p))
    }
    fn read(
        &self,
        p: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<hogpipe_capture::log::StoredRecord>, hogpipe_capture::log::LogError> {
        self.trip()?;
        self.inner.read(p, from, max)
    }
    fn committed(&self, group: &str, p: u32) -> Result<Option<u64>, hogpipe_capture::log::LogError> {
        self.trip()?;
        self.inner.committed(group, p)
    }
    fn commit(&self, group: &str, p: u32, next: u64) -> Result<(), hogpipe_capture::log::LogError> {
        self.trip()?;
        self.inner.commit(group, p, next)
    }
}

#[test]
fn a_server_rides_out_log_errors() {
    let f = Fixture::new(chain());
    f.capture(TOKEN, generated(500, 0));
    let mut pipeline = f.pipeline();
    pipeline.log = Arc::new(Flaky { inner: f.wal.clone(), calls: Default::default() });
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let options =
                Options { workers: 2, batch_size: 20, idle_wait: Duration::from_millis(5), ..Options::default() };
            run(pipeline, options, Until::Stopped(stop))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while f.events().len() < 450 {
        assert!(Instant::now() < deadline, "only {} of 450 events arrived", f.events().len());
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let summary = handle.join().unwrap().expect("log errors do not end a server's run");
    let events = f.events();
    let unique: std::collections::HashSet<_> = events.iter().map(|e| e.uuid.clone()).collect();
    assert_eq!(unique.len(), 450, "every kept event arrived");
    assert!(summary.read >= 500);
}
