//! The Kafka event log against real Kafka protocol brokers: librdkafka's in-process mock cluster
//! (real protocol on loopback ports; error injection, brokers going down) and, in the `#[ignore]`d
//! `tansu_*` test that `scripts/test-kafka-broker.sh` runs, a standalone tansu broker.
//!
//! Every test reads what it appended back with a real consumer and checks each record.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hogpipe_capture::log::kafka::{create_topics, KafkaConfig, KafkaLog};
use hogpipe_capture::log::{EventLog, LogError, Record};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message, Offset, Timestamp, TopicPartitionList};

const LIVE: &str = "events_plugin_ingestion";
const HISTORICAL: &str = "events_plugin_ingestion_historical";
const PARTITIONS: i32 = 4;
/// Only to turn a hang into a failure; never a speed expectation.
const HANG_LIMIT: Duration = Duration::from_secs(90);

/// A record as read back: partition, offset, key, value, timestamp.
#[derive(Debug, Clone)]
struct Read {
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Vec<u8>,
    timestamp_ms: i64,
}

fn mock_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(3).expect("start the mock cluster");
    cluster.create_topic(LIVE, PARTITIONS, 3).expect("create the live topic");
    cluster.create_topic(HISTORICAL, PARTITIONS, 3).expect("create the historical topic");
    cluster
}

fn config(brokers: &str) -> KafkaConfig {
    KafkaConfig { brokers: brokers.to_string(), ..KafkaConfig::default() }
}

/// `count` records over `keys` distinct keys; every `historical_every`-th is historical (none if 0).
fn records(batch: usize, count: usize, keys: usize, historical_every: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            key: format!("phc_token:user-{}", i % keys).into_bytes(),
            value: format!("{{\"batch\":{batch},\"i\":{i},\"event\":\"$pageview\"}}").into_bytes(),
            timestamp_ms: 1_700_000_000_000 + (batch * 10_000 + i) as i64,
            historical: historical_every != 0 && i % historical_every == historical_every - 1,
        })
        .collect()
}

/// Which broker the test talks to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Broker {
    /// librdkafka's mock cluster.
    Mock,
    /// tansu 0.6, whose ListOffsets answers the base offset of the last batch + 1 instead of the
    /// high watermark, so the "nothing more is stored" check cannot use watermarks there.
    Tansu,
}

/// Reads `expected` records from every partition of `topic`. Against the mock cluster, then checks
/// the high watermarks say nothing more is stored (no duplicates past what was read; duplicates
/// among what was read fail [`check_topic`]).
fn read_back(broker: Broker, brokers: &str, topic: &str, expected: usize) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hogpipe-kafka-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create the consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("add a partition to the assignment");
    }
    consumer.assign(&assignment).expect("assign the partitions");
    let deadline = Instant::now() + HANG_LIMIT;
    let mut read = Vec::with_capacity(expected);
    while read.len() < expected {
        assert!(Instant::now() < deadline, "read only {} of {expected} records from {topic}", read.len());
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(e)) => panic!("consuming {topic}: {e}"),
            Some(Ok(message)) => read.push(Read {
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().unwrap_or_default().to_vec(),
                value: message.payload().unwrap_or_default().to_vec(),
                timestamp_ms: match message.timestamp() {
                    Timestamp::CreateTime(ms) => ms,
                    other => panic!("expected a create time, got {other:?}"),
                },
            }),
        }
    }
    if broker == Broker::Tansu {
        return read;
    }
    let mut stored = 0;
    for partition in 0..PARTITIONS {
        let (low, high) =
            consumer.fetch_watermarks(topic, partition, Duration::from_secs(30)).expect("fetch the watermarks");
        stored += high - low;
    }
    assert_eq!(stored as usize, expected, "records stored in {topic}");
    read
}

/// Kafka's Java `Utils.murmur2`, which librdkafka's `murmur2_random` partitioner reproduces.
fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java producer (and PostHog's capture) picks for `key`.
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Checks that `read` holds exactly `sent` (the records of one topic, in append order): same keys,
/// values and timestamps; one partition per key, the Java producer's; and per key, the append order.
fn check_topic(topic: &str, sent: &[&Record], read: &[Read]) {
    assert_eq!(read.len(), sent.len(), "record count in {topic}");
    let mut by_key: HashMap<&[u8], Vec<&Read>> = HashMap::new();
    for r in read {
        by_key.entry(&r.key[..]).or_default().push(r);
    }
    let mut sent_by_key: BTreeMap<&[u8], Vec<&Record>> = BTreeMap::new();
    for r in sent {
        sent_by_key.entry(&r.key[..]).or_default().push(r);
    }
    assert_eq!(by_key.len(), sent_by_key.len(), "distinct keys in {topic}");
    for (key, sent) in sent_by_key {
        let mut got = by_key.remove(key).unwrap_or_default();
        got.sort_by_key(|r| r.offset);
        let partition = java_partition(key, PARTITIONS);
        assert!(
            got.iter().all(|r| r.partition == partition),
            "{topic}: key {} should all be in partition {partition}, found in {:?}",
            String::from_utf8_lossy(key),
            got.iter().map(|r| r.partition).collect::<Vec<_>>()
        );
        let got_values: Vec<(&[u8], i64)> = got.iter().map(|r| (&r.value[..], r.timestamp_ms)).collect();
        let sent_values: Vec<(&[u8], i64)> = sent.iter().map(|r| (&r.value[..], r.timestamp_ms)).collect();
        assert_eq!(got_values, sent_values, "{topic}: records of key {} in offset order", String::from_utf8_lossy(key));
    }
}

async fn append(log: &KafkaLog, records: Vec<Record>) -> Result<(), LogError> {
    tokio::time::timeout(HANG_LIMIT, log.append(records)).await.expect("append neither succeeded nor failed: it hangs")
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG_LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces `batches` batches through the log, then reads both topics back and checks them.
async fn round_trip(broker: Broker, brokers: &str, batches: usize) {
    let log = KafkaLog::new(config(brokers)).expect("create the kafka log");
    assert_eq!(log.name(), "kafka");
    let sent: Vec<Vec<Record>> = (0..batches).map(|b| records(b, 150, 23, 5)).collect();
    for batch in &sent {
        append(&log, batch.clone()).await.expect("append a batch to kafka");
    }
    let all: Vec<&Record> = sent.iter().flatten().collect();
    let live: Vec<&Record> = all.iter().copied().filter(|r| !r.historical).collect();
    let historical: Vec<&Record> = all.iter().copied().filter(|r| r.historical).collect();
    check_topic(LIVE, &live, &read_back(broker, brokers, LIVE, live.len()));
    check_topic(HISTORICAL, &historical, &read_back(broker, brokers, HISTORICAL, historical.len()));
}

#[test]
fn the_test_partitioner_is_kafkas_murmur2() {
    // Vectors from Kafka's UtilsTest.
    assert_eq!(murmur2(b"21"), -973932308);
    assert_eq!(murmur2(b"foobar"), -790332482);
    assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
    assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
    assert_eq!(murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"), -58897971);
    assert_eq!(murmur2(b"abc"), 479470107);
}

#[tokio::test]
async fn appended_batches_come_back_on_their_topics_keyed_and_in_order() {
    let cluster = mock_cluster();
    round_trip(Broker::Mock, &cluster.bootstrap_servers(), 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_all_arrive() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let log = std::sync::Arc::new(KafkaLog::new(config(&brokers)).expect("create the kafka log"));
    let mut tasks = Vec::new();
    for task in 0..16 {
        let log = std::sync::Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let batch = records(task, 50, 7, 0);
            append(&log, batch.clone()).await.map(|()| batch)
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.extend(task.await.expect("append task").expect("append to kafka from a task"));
    }
    let read = read_back(Broker::Mock, &brokers, LIVE, sent.len());
    let mut sent: Vec<(Vec<u8>, Vec<u8>)> = sent.into_iter().map(|r| (r.key, r.value)).collect();
    let mut got: Vec<(Vec<u8>, Vec<u8>)> = read.into_iter().map(|r| (r.key, r.value)).collect();
    sent.sort();
    got.sort();
    assert_eq!(got, sent);
}

#[tokio::test]
async fn a_broker_refusal_comes_back_as_unavailable_with_its_message() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let log = KafkaLog::new(config(&brokers)).expect("create the kafka log");
    // A permanent (non-retriable) error for the next produce requests.
    cluster.request_errors(RDKafkaApiKey::Produce, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 8]);
    match append(&log, records(0, 3, 1, 0)).await {
        Err(LogError::Unavailable(message)) => assert!(
            message.contains("authoriz") || message.contains("Authoriz"),
            "the broker's reason should be in {message:?}"
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
}

#[tokio::test]
async fn brokers_down_fail_appends_and_readiness_until_they_return() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let log = KafkaLog::new(KafkaConfig { message_timeout: Duration::from_secs(3), ..config(&brokers) })
        .expect("create the kafka log");
    wait_until("the log becomes ready", || log.is_ready());
    append(&log, records(0, 10, 3, 0)).await.expect("append while the cluster is up");

    for broker in 1..=3 {
        cluster.broker_down(broker).expect("take a broker down");
    }
    match append(&log, records(1, 10, 3, 0)).await {
        Err(LogError::Unavailable(message)) => {
            assert!(message.contains("timed out"), "{message}")
        }
        other => panic!("expected Unavailable while every broker is down, got {other:?}"),
    }
    wait_until("the log reports not ready", || !log.is_ready());

    for broker in 1..=3 {
        cluster.broker_up(broker).expect("bring a broker back");
    }
    wait_until("the log is ready again", || log.is_ready());
    // Ready means one broker connection is up; the partition leaders reconnect with backoff, so
    // an append may still time out for a while. It must succeed once they are back.
    let deadline = Instant::now() + HANG_LIMIT;
    while let Err(e) = append(&log, records(2, 10, 3, 0)).await {
        assert!(Instant::now() < deadline, "appends keep failing after the brokers came back: {e}");
    }
}

#[tokio::test]
async fn a_full_local_queue_is_refused_at_once() {
    let cluster = mock_cluster();
    let mut properties = BTreeMap::new();
    properties.insert("queue.buffering.max.messages".to_string(), "2".to_string());
    let log = KafkaLog::new(KafkaConfig { properties, ..config(&cluster.bootstrap_servers()) })
        .expect("create the kafka log");
    match append(&log, records(0, 10, 10, 0)).await {
        Err(LogError::Full { limit_bytes, .. }) => assert!(limit_bytes > 0),
        other => panic!("expected Full, got {other:?}"),
    }
}

#[tokio::test]
async fn a_record_over_the_limit_is_refused_before_anything_is_produced() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let log = KafkaLog::new(KafkaConfig { max_record_bytes: 1_000, ..config(&brokers) }).expect("create the kafka log");
    let mut batch = records(0, 3, 3, 0);
    batch[2].value = vec![b'x'; 1_000];
    let big = batch[2].key.len() + 1_000;
    match append(&log, batch).await {
        Err(LogError::RecordTooLarge { size, limit }) => {
            assert_eq!((size, limit), (big, 1_000));
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    log.flush(Duration::from_secs(30)).expect("flush");
    // Then a good batch: only its records are in the topic.
    let good = records(1, 5, 5, 0);
    append(&log, good.clone()).await.expect("append a good batch");
    let sent: Vec<&Record> = good.iter().collect();
    check_topic(LIVE, &sent, &read_back(Broker::Mock, &brokers, LIVE, sent.len()));
}

#[tokio::test]
async fn an_empty_append_succeeds() {
    let cluster = mock_cluster();
    let log = KafkaLog::new(config(&cluster.bootstrap_servers())).expect("create the kafka log");
    append(&log, Vec::new()).await.expect("empty append");
}

#[test]
fn a_config_without_brokers_is_refused() {
    let err = KafkaLog::new(config(" ")).expect_err("no brokers");
    assert!(err.to_string().contains("no brokers"), "{err}");
}

/// Against a standalone broker (tansu): `scripts/test-kafka-broker.sh` starts it and passes its
/// address in `HOGPIPE_TEST_KAFKA_BROKERS`.
#[tokio::test]
#[ignore = "needs a Kafka broker: run scripts/test-kafka-broker.sh"]
async fn tansu_round_trip() {
    let brokers = std::env::var("HOGPIPE_TEST_KAFKA_BROKERS")
        .expect("HOGPIPE_TEST_KAFKA_BROKERS must name the broker (scripts/test-kafka-broker.sh)");
    // The script created the topics; creating them again must be harmless.
    create_topics(&brokers, &[(LIVE, PARTITIONS), (HISTORICAL, PARTITIONS)]).await.expect("create the topics (again)");
    // A topic the helper creates itself, with the broker's default replication factor.
    let created = format!("hogpipe_created_{}", std::process::id());
    create_topics(&brokers, &[(&created, 2)]).await.expect("create a new topic");
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("create a metadata client");
    let metadata =
        consumer.fetch_metadata(Some(&created), Duration::from_secs(30)).expect("fetch the new topic's metadata");
    let partitions: Vec<usize> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == created && t.error().is_none())
        .map(|t| t.partitions().len())
        .collect();
    assert_eq!(partitions, [2], "partitions of the topic create_topics made");
    round_trip(Broker::Tansu, &brokers, 3).await;
}
