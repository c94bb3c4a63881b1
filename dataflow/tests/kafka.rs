//! The dataflow over Kafka: captured events appended through the Kafka event log, read back by
//! [`KafkaReader`] from librdkafka's mock cluster (real Kafka protocol brokers on loopback ports),
//! through a Hog transformation into a JSON-lines sink, with positions committed as Kafka
//! consumer-group offsets; and two dataflow "processes" sharing the topic's partitions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hog_lang::{compile, CompileOptions};
use hogpipe_capture::event::{parse_payload, EndpointKind, ParseLimits, RequestMeta};
use hogpipe_capture::log::kafka::{KafkaConfig, KafkaLog};
use hogpipe_capture::log::kafka_reader::{KafkaReader, KafkaReaderConfig};
use hogpipe_capture::log::{EventLog, LogError, LogReader, StoredRecord};
use hogpipe_dataflow::event::{Event, Project};
use hogpipe_dataflow::functions::{FunctionKind, FunctionSpec, FunctionStats, Registry};
use hogpipe_dataflow::graph::{run, Options, Pipeline, Summary, Until};
use hogpipe_dataflow::health::{HealthConfig, Watcher};
use hogpipe_dataflow::sink::JsonLinesSink;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use serde_json::{json, Value};

const TOKEN: &str = "phc_kafka";
const TOPIC: &str = "events_plugin_ingestion";
const HISTORICAL: &str = "events_plugin_ingestion_historical";
const PARTITIONS: i32 = 4;
/// The dataflow's default consumer group.
const GROUP: &str = "dataflow";
/// Only to turn a hang into a failure; never a speed expectation.
const HANG_LIMIT: Duration = Duration::from_secs(120);

fn mock_cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(3).expect("start the mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 3).expect("create the topic");
    cluster.create_topic(HISTORICAL, PARTITIONS, 3).expect("create the historical topic");
    cluster
}

fn reader(brokers: &str) -> Arc<KafkaReader> {
    Arc::new(
        KafkaReader::new(KafkaReaderConfig { brokers: brokers.to_string(), ..KafkaReaderConfig::default() })
            .expect("create the kafka reader"),
    )
}

/// Capture's side: payloads parsed as the HTTP endpoints parse them, appended through [`KafkaLog`].
struct Capture {
    runtime: tokio::runtime::Runtime,
    log: KafkaLog,
}

impl Capture {
    fn new(brokers: &str) -> Capture {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let log = KafkaLog::new(KafkaConfig { brokers: brokers.to_string(), ..KafkaConfig::default() })
            .expect("create the kafka log");
        Capture { runtime, log }
    }

    /// Returns once the brokers acknowledged every event.
    fn events(&self, events: Vec<Value>) {
        let body = json!({"api_key": TOKEN, "batch": events}).to_string();
        let meta = RequestMeta::new(EndpointKind::Events, "10.0.0.1");
        let parsed = parse_payload(body.as_bytes(), &meta, &ParseLimits::default()).expect("parse the payload");
        self.runtime.block_on(async {
            tokio::time::timeout(HANG_LIMIT, self.log.append(parsed.records))
                .await
                .expect("append hangs")
                .expect("append to kafka");
        });
    }
}

fn generated(n: usize, offset: usize) -> Vec<Value> {
    (offset..offset + n)
        .map(|i| {
            json!({
                "event": if i % 3 == 0 { "signed_up" } else { "$pageview" },
                "distinct_id": format!("user-{}", i % 37),
                "uuid": format!("00000000-0000-4000-8000-{i:012}"),
                "properties": {"$current_url": format!("https://example.com/p/{i}"), "i": i}
            })
        })
        .collect()
}

fn transformation() -> FunctionSpec {
    let source = "let e := event\ne.properties.via := 'kafka'\ne.properties.doubled := e.properties.i * 2\nreturn e";
    FunctionSpec {
        id: "tag".into(),
        project_id: 1,
        name: "tag".into(),
        kind: FunctionKind::Transformation,
        enabled: true,
        order: 1,
        bytecode: compile(source, &CompileOptions { globals: None, ..Default::default() })
            .expect("compile the transformation")
            .to_json(),
        filter: None,
        inputs: serde_json::Map::new(),
    }
}

/// What one dataflow process writes to: sinks in its own directory.
struct Process {
    dir: tempfile::TempDir,
    registry: Arc<Registry>,
}

impl Process {
    fn new() -> Process {
        Process {
            dir: tempfile::tempdir().expect("temp dir"),
            registry: Arc::new(Registry::new(vec![transformation()])),
        }
    }

    fn pipeline(&self, log: Arc<dyn LogReader>) -> Pipeline {
        let projects = HashMap::from([(TOKEN.to_string(), Project { id: 1, name: "Kafka".into() })]);
        Pipeline {
            log,
            registry: self.registry.clone(),
            projects: Arc::new(projects),
            events: Arc::new(JsonLinesSink::open(&self.dir.path().join("events.jsonl")).expect("open the event sink")),
            invocations: Arc::new(
                JsonLinesSink::open(&self.dir.path().join("invocations.jsonl")).expect("open the invocation sink"),
            ),
            stats: Arc::new(FunctionStats::default()),
            watcher: Arc::new(Watcher::new(HealthConfig::default())),
            live: None,
        }
    }

    fn caught_up(&self, log: Arc<dyn LogReader>) -> Summary {
        let options = Options { workers: 2, batch_size: 100, ..Options::default() };
        run(self.pipeline(log), options, Until::CaughtUp).expect("run the dataflow")
    }

    fn events(&self) -> Vec<Event> {
        match std::fs::read_to_string(self.dir.path().join("events.jsonl")) {
            Ok(text) => text.lines().map(|l| serde_json::from_str(l).expect("an event line")).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// The event number `i` of a generated event, from its uuid.
fn number(event: &Event) -> u64 {
    event.uuid.rsplit('-').next().and_then(|n| n.parse().ok()).expect("a generated uuid")
}

/// Checks `events` are events `0..n`, each exactly once, transformed, and per distinct id in
/// capture order.
fn assert_each_once_transformed(events: &[Event], n: u64) {
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for e in events {
        *seen.entry(number(e)).or_default() += 1;
    }
    let duplicated: Vec<u64> = seen.iter().filter(|(_, &c)| c > 1).map(|(i, _)| *i).collect();
    assert!(duplicated.is_empty(), "events written more than once: {duplicated:?}");
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..n).collect::<Vec<_>>(), "every event once");
    for e in events {
        let i = number(e);
        assert_eq!(e.team_id, 1);
        assert_eq!(e.properties["i"], json!(i));
        assert_eq!(e.properties["via"], json!("kafka"), "event {i} transformed");
        assert_eq!(e.properties["doubled"], json!(i * 2), "event {i} transformed");
    }
    let mut last: HashMap<&str, u64> = HashMap::new();
    for e in events {
        let i = number(e);
        if let Some(prev) = last.insert(e.distinct_id.as_str(), i) {
            assert!(prev < i, "order of {} broken: {prev} then {i}", e.distinct_id);
        }
    }
}

/// Records stored in each partition (high watermark; nothing is deleted in these tests).
fn stored(reader: &KafkaReader) -> Vec<u64> {
    (0..reader.partitions())
        .map(|p| {
            let mut next = 0;
            loop {
                let got = reader.read(p, next, 1000).expect("read to the end");
                match got.last() {
                    Some(last) => next = last.offset + 1,
                    None => return next,
                }
            }
        })
        .collect()
}

#[test]
fn every_event_once_transformed_and_positions_committed_in_kafka() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let capture = Capture::new(&brokers);
    for chunk in 0..3 {
        capture.events(generated(400, chunk * 400));
    }
    let process = Process::new();
    let summary = process.caught_up(reader(&brokers));
    assert_eq!((summary.read, summary.skipped, summary.written), (1200, 0, 1200));
    assert_each_once_transformed(&process.events(), 1200);

    // A restart (a new reader, as a new process would have): the committed positions hold.
    assert_eq!(process.caught_up(reader(&brokers)).read, 0, "nothing read again after a restart");

    // New events only.
    capture.events(generated(100, 1200));
    let summary = process.caught_up(reader(&brokers));
    assert_eq!((summary.read, summary.written), (100, 100));
    assert_each_once_transformed(&process.events(), 1300);

    // The positions are Kafka consumer-group offsets at the end of each partition.
    let check = reader(&brokers);
    let ends = stored(&check);
    assert_eq!(ends.iter().sum::<u64>(), 1300);
    for (p, end) in ends.iter().enumerate() {
        assert_eq!(
            check.committed(GROUP, p as u32).expect("committed"),
            Some(*end).filter(|&e| e > 0),
            "partition {p}"
        );
    }
}

/// One process's share of the topic: partitions `p` with `p % of == index`, numbered from 0 as
/// the dataflow expects. The dataflow runs unchanged on top of it.
struct Share {
    inner: Arc<KafkaReader>,
    members: Vec<u32>,
}

impl Share {
    fn new(inner: Arc<KafkaReader>, index: u32, of: u32) -> Share {
        let members = (0..inner.partitions()).filter(|p| p % of == index).collect();
        Share { inner, members }
    }

    fn global(&self, partition: u32) -> Result<u32, LogError> {
        self.members
            .get(partition as usize)
            .copied()
            .ok_or_else(|| LogError::OutOfRange(format!("this share has no partition {partition}")))
    }
}

impl LogReader for Share {
    fn partitions(&self) -> u32 {
        self.members.len() as u32
    }

    fn start_offset(&self, partition: u32) -> Result<u64, LogError> {
        self.inner.start_offset(self.global(partition)?)
    }

    fn read(&self, partition: u32, from_offset: u64, max_records: usize) -> Result<Vec<StoredRecord>, LogError> {
        let mut records = self.inner.read(self.global(partition)?, from_offset, max_records)?;
        for record in &mut records {
            record.partition = partition;
        }
        Ok(records)
    }

    fn committed(&self, group: &str, partition: u32) -> Result<Option<u64>, LogError> {
        self.inner.committed(group, self.global(partition)?)
    }

    fn commit(&self, group: &str, partition: u32, next_offset: u64) -> Result<(), LogError> {
        self.inner.commit(group, self.global(partition)?, next_offset)
    }
}

#[test]
fn two_processes_share_the_partitions_and_process_each_event_once() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let capture = Capture::new(&brokers);
    capture.events(generated(600, 0));

    // Two processes, each with its own Kafka reader (its own consumer) and sinks, the same group;
    // they run until stopped while capture keeps appending.
    let stop = Arc::new(AtomicBool::new(false));
    let processes: Vec<Arc<Process>> = (0..2).map(|_| Arc::new(Process::new())).collect();
    let handles: Vec<_> = processes
        .iter()
        .enumerate()
        .map(|(index, process)| {
            let share: Arc<dyn LogReader> = Arc::new(Share::new(reader(&brokers), index as u32, 2));
            let pipeline = process.pipeline(share);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let options =
                    Options { workers: 2, batch_size: 50, idle_wait: Duration::from_millis(5), ..Options::default() };
                run(pipeline, options, Until::Stopped(stop)).expect("run a dataflow process")
            })
        })
        .collect();
    for chunk in 0..3 {
        capture.events(generated(200, 600 + chunk * 200));
    }
    let deadline = Instant::now() + HANG_LIMIT;
    loop {
        let written: usize = processes.iter().map(|p| p.events().len()).sum();
        if written >= 1200 {
            break;
        }
        assert!(Instant::now() < deadline, "only {written} of 1200 events processed");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let summaries: Vec<Summary> = handles.into_iter().map(|h| h.join().expect("a dataflow process")).collect();

    let all: Vec<Event> = processes.iter().flat_map(|p| p.events()).collect();
    assert_each_once_transformed(&all, 1200);

    // Each process read exactly its own partitions, once.
    let check = reader(&brokers);
    let ends = stored(&check);
    for (index, summary) in summaries.iter().enumerate() {
        let own: u64 = ends.iter().enumerate().filter(|(p, _)| p % 2 == index).map(|(_, end)| end).sum();
        assert!(own > 0, "process {index} has events to process");
        assert_eq!(summary.read, own, "process {index} read its partitions' records once");
        assert_eq!(summary.written, own, "process {index}");
        let distinct: HashSet<String> = processes[index].events().into_iter().map(|e| e.uuid).collect();
        assert_eq!(distinct.len() as u64, own, "process {index}");
    }

    // Restarted, neither process finds anything left: every partition is committed at its end.
    for (index, process) in processes.iter().enumerate() {
        let share: Arc<dyn LogReader> = Arc::new(Share::new(reader(&brokers), index as u32, 2));
        assert_eq!(process.caught_up(share).read, 0, "process {index} after a restart");
    }
    for (p, end) in ends.iter().enumerate() {
        assert_eq!(
            check.committed(GROUP, p as u32).expect("committed"),
            Some(*end).filter(|&e| e > 0),
            "partition {p}"
        );
    }
}
