//! `hogpipe serve` with `[log] backend = "kafka"`: the real binary produces to librdkafka's mock
//! cluster (the Kafka protocol on a loopback port), and a real consumer reads PostHog's
//! captured-event messages back from the topics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

const TOKEN: &str = "phc_kafka_test";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post(addr: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    #[allow(clippy::disallowed_methods)] // bounded by `take`
    stream.take(1 << 20).read_to_string(&mut response).unwrap();
    let status = response.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

#[test]
fn serve_produces_captured_events_to_kafka() {
    let cluster = MockCluster::new(1).expect("start the mock cluster");
    cluster.create_topic("events_plugin_ingestion", 4, 1).unwrap();
    cluster.create_topic("events_plugin_ingestion_historical", 2, 1).unwrap();
    let brokers = cluster.bootstrap_servers();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hogpipe.toml");
    std::fs::write(
        &config,
        format!("[log]\nbackend = \"kafka\"\n[log.kafka]\nbrokers = \"{brokers}\"\n[[projects]]\nid = 1\ntoken = \"{TOKEN}\"\n"),
    )
    .unwrap();
    let (server, addr) = start(&config, &dir.path().join("data"), &[]);

    let batch: Vec<Value> = (0..50)
        .map(|i| json!({"event": "kafka_event", "distinct_id": format!("u{}", i % 7), "properties": {"i": i}}))
        .collect();
    let (status, body) = post(&addr, "/batch", &json!({"api_key": TOKEN, "batch": batch}).to_string());
    assert_eq!((status, body.as_str()), (200, "{\"status\":1}"));
    let old = json!({"api_key": TOKEN, "historical_migration": true, "batch": [{"event": "old", "distinct_id": "h"}]});
    assert_eq!(post(&addr, "/batch", &old.to_string()).0, 200);
    let (status, body) = post(&addr, "/e", &json!({"token": "phc_nope", "event": "x", "distinct_id": "a"}).to_string());
    assert_eq!(status, 403, "{body}");

    let live = consume(&brokers, "events_plugin_ingestion", 4, 50);
    let mut seen = std::collections::BTreeSet::new();
    for (key, value) in &live {
        let event: Value = serde_json::from_slice(value).unwrap();
        for field in ["uuid", "distinct_id", "ip", "data", "now", "token"] {
            assert!(event[field].is_string(), "{field} in {event}");
        }
        assert_eq!(event["token"], TOKEN);
        assert_eq!(key, &format!("{TOKEN}:{}", event["distinct_id"].as_str().unwrap()).into_bytes());
        let data: Value = serde_json::from_str(event["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["event"], "kafka_event");
        seen.insert(data["properties"]["i"].as_i64().unwrap());
    }
    assert_eq!(seen.len(), 50, "every event once");
    let historical = consume(&brokers, "events_plugin_ingestion_historical", 2, 1);
    let event: Value = serde_json::from_slice(&historical[0].1).unwrap();
    assert!(event["data"].as_str().unwrap().contains("\"old\""));
    drop(server);
}

fn consume(brokers: &str, topic: &str, partitions: i32, expected: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hogpipe-serve-kafka-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < expected {
        assert!(Instant::now() < deadline, "read {} of {expected} messages from {topic}", out.len());
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let m = message.unwrap();
            out.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec()));
        }
    }
    // Nothing more than expected (no duplicates).
    let extra = consumer.poll(Duration::from_millis(500));
    assert!(extra.is_none(), "unexpected extra message in {topic}");
    out
}

fn start(config: &std::path::Path, data: &std::path::Path, extra: &[&str]) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hogpipe"))
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("hogpipe: capture listening on http://").map(str::to_string))
        .expect("the server prints its address");
    std::thread::spawn(move || for _ in lines {});
    (server, addr)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn uuids_in(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["uuid"].as_str().unwrap().to_string()).collect()
}

#[test]
fn a_two_process_cluster_over_kafka_processes_every_event_once() {
    let cluster = MockCluster::new(1).expect("start the mock cluster");
    cluster.create_topic("events_plugin_ingestion", 4, 1).unwrap();
    cluster.create_topic("events_plugin_ingestion_historical", 1, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let hostfile = dir.path().join("hosts");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let config = dir.path().join("hogpipe.toml");
    std::fs::write(
        &config,
        format!(
            "[log]\nbackend = \"kafka\"\n[log.kafka]\nbrokers = \"{brokers}\"\n[dataflow]\nworkers = 1\nevents_file = \"events.jsonl\"\n\
             [[projects]]\nid = 1\ntoken = \"{TOKEN}\"\n[[functions]]\nid = \"t\"\nproject = 1\ntype = \"transformation\"\n\
             hog = \"let e := event\\ne.properties.seen := true\\nreturn e\"\n"
        ),
    )
    .unwrap();
    let host = hostfile.to_str().unwrap();
    let (_a, addr) = start(&config, &dir.path().join("a"), &["--processes", "2", "--process", "0", "--hostfile", host]);
    let (_b, _) = start(&config, &dir.path().join("b"), &["--processes", "2", "--process", "1", "--hostfile", host]);
    for round in 0..4 {
        let batch: Vec<Value> = (0..50)
            .map(|i| json!({"event": "e", "distinct_id": format!("u{i}"), "uuid": format!("00000000-0000-4000-8000-{:012}", round * 50 + i)}))
            .collect();
        assert_eq!(post(&addr, "/batch", &json!({"api_key": TOKEN, "batch": batch}).to_string()).0, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let (a, b) = loop {
        let a = uuids_in(&dir.path().join("a/events.jsonl"));
        let b = uuids_in(&dir.path().join("b/events.jsonl"));
        if a.len() + b.len() >= 200 || Instant::now() > deadline {
            break (a, b);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!a.is_empty() && !b.is_empty(), "both processes worked: {} and {}", a.len(), b.len());
    let all: std::collections::HashSet<_> = a.iter().chain(&b).collect();
    assert_eq!((a.len() + b.len(), all.len()), (200, 200), "every event exactly once across the cluster");
}
