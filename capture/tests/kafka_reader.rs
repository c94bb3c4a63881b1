//! The Kafka log reader against librdkafka's mock cluster (real Kafka protocol brokers on loopback
//! ports): records produced through [`KafkaLog`] read back by partition and offset, seeks,
//! consumer-group commits, records arriving after the reader caught up, and errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hogpipe_capture::log::kafka::{KafkaConfig, KafkaLog};
use hogpipe_capture::log::kafka_reader::{KafkaReader, KafkaReaderConfig};
use hogpipe_capture::log::{EventLog, LogError, LogReader, Record, StoredRecord};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

const TOPIC: &str = "events_plugin_ingestion";
const PARTITIONS: i32 = 4;
/// Only to turn a hang into a failure; never a speed expectation.
const HANG_LIMIT: Duration = Duration::from_secs(90);

fn mock_cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(3).expect("start the mock cluster");
    cluster.create_topic(TOPIC, PARTITIONS, 3).expect("create the topic");
    cluster
}

fn reader(brokers: &str) -> KafkaReader {
    KafkaReader::new(KafkaReaderConfig { brokers: brokers.to_string(), ..KafkaReaderConfig::default() })
        .expect("create the kafka reader")
}

/// `count` records over `keys` distinct keys, all live.
fn records(batch: usize, count: usize, keys: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            key: format!("phc_token:user-{}", i % keys).into_bytes(),
            value: format!("{{\"batch\":{batch},\"i\":{i},\"event\":\"$pageview\"}}").into_bytes(),
            timestamp_ms: 1_700_000_000_000 + (batch * 10_000 + i) as i64,
            historical: false,
        })
        .collect()
}

/// Appends through the Kafka event log, as capture does.
struct Producer {
    runtime: tokio::runtime::Runtime,
    log: KafkaLog,
}

impl Producer {
    fn new(brokers: &str) -> Producer {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let log = KafkaLog::new(KafkaConfig { brokers: brokers.to_string(), ..KafkaConfig::default() })
            .expect("create the kafka log");
        Producer { runtime, log }
    }

    /// Returns once the brokers acknowledged every record.
    fn append(&self, records: Vec<Record>) {
        self.runtime.block_on(async {
            tokio::time::timeout(HANG_LIMIT, self.log.append(records))
                .await
                .expect("append hangs")
                .expect("append to kafka");
        });
    }
}

/// Reads `partition` from `from` in batches of `batch` until a read comes back empty.
fn read_to_end(reader: &KafkaReader, partition: u32, from: u64, batch: usize) -> Vec<StoredRecord> {
    let mut out: Vec<StoredRecord> = Vec::new();
    let mut next = from;
    loop {
        let got = reader.read(partition, next, batch).expect("read a partition");
        assert!(got.len() <= batch, "read returned {} records for a batch of {batch}", got.len());
        let Some(last) = got.last() else { return out };
        next = last.offset + 1;
        out.extend(got);
    }
}

/// Checks `read` is dense from `from` and every record names `partition`.
fn assert_dense(partition: u32, from: u64, read: &[StoredRecord]) {
    let offsets: Vec<u64> = read.iter().map(|r| r.offset).collect();
    let expected: Vec<u64> = (from..from + read.len() as u64).collect();
    assert_eq!(offsets, expected, "offsets of partition {partition}");
    assert!(read.iter().all(|r| r.partition == partition), "partition field of partition {partition}");
}

/// Checks the records read from all partitions are exactly `sent`: same key, value and timestamp,
/// one partition per key, and per key the append order.
fn assert_same_records(sent: &[Record], read: &[StoredRecord]) {
    assert_eq!(read.len(), sent.len(), "record count");
    let mut sent_by_key: BTreeMap<&[u8], Vec<(&[u8], i64)>> = BTreeMap::new();
    for r in sent {
        sent_by_key.entry(&r.key).or_default().push((&r.value, r.timestamp_ms));
    }
    let mut read_by_key: BTreeMap<&[u8], Vec<&StoredRecord>> = BTreeMap::new();
    for r in read {
        read_by_key.entry(&r.key).or_default().push(r);
    }
    assert_eq!(read_by_key.len(), sent_by_key.len(), "distinct keys");
    for (key, mut got) in read_by_key {
        let partitions: Vec<u32> = got.iter().map(|r| r.partition).collect();
        assert!(partitions.windows(2).all(|w| w[0] == w[1]), "key {key:?} in partitions {partitions:?}");
        got.sort_by_key(|r| r.offset);
        let got: Vec<(&[u8], i64)> = got.iter().map(|r| (&r.value[..], r.timestamp_ms)).collect();
        assert_eq!(Some(&got), sent_by_key.get(key), "records of key {}", String::from_utf8_lossy(key));
    }
}

#[test]
fn every_partition_reads_back_dense_exact_and_in_order() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let sent: Vec<Record> = (0..3).flat_map(|b| records(b, 200, 29)).collect();
    let producer = Producer::new(&brokers);
    for batch in sent.chunks(200) {
        producer.append(batch.to_vec());
    }
    let reader = reader(&brokers);
    assert_eq!(reader.partitions(), PARTITIONS as u32);
    let mut all = Vec::new();
    for partition in 0..reader.partitions() {
        assert_eq!(reader.start_offset(partition).expect("start offset"), 0);
        let read = read_to_end(&reader, partition, 0, 7);
        assert_dense(partition, 0, &read);
        all.extend(read);
    }
    assert_same_records(&sent, &all);
    // Caught up: another read at the end is empty, and a batch of zero is always empty.
    for partition in 0..reader.partitions() {
        let end = all.iter().filter(|r| r.partition == partition).count() as u64;
        assert!(reader.read(partition, end, 10).expect("read at the end").is_empty());
        assert!(reader.read(partition, 0, 0).expect("read nothing").is_empty());
    }
}

#[test]
fn partitions_read_concurrently_from_worker_threads() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let sent = records(0, 1_000, 41);
    Producer::new(&brokers).append(sent.clone());
    let reader = Arc::new(reader(&brokers));
    let threads: Vec<_> = (0..reader.partitions())
        .map(|partition| {
            let reader = Arc::clone(&reader);
            std::thread::spawn(move || read_to_end(&reader, partition, 0, 50))
        })
        .collect();
    let mut all = Vec::new();
    for (partition, thread) in threads.into_iter().enumerate() {
        let read = thread.join().expect("reader thread");
        assert_dense(partition as u32, 0, &read);
        all.extend(read);
    }
    assert_same_records(&sent, &all);
}

#[test]
fn reading_from_elsewhere_seeks_and_returns_the_same_records() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    Producer::new(&brokers).append(records(0, 400, 1));
    let reader = reader(&brokers);
    // One key: every record in one partition.
    let (partition, full) = (0..reader.partitions())
        .map(|p| (p, read_to_end(&reader, p, 0, 64)))
        .find(|(_, read)| !read.is_empty())
        .expect("a partition with the records");
    assert_eq!(full.len(), 400);
    assert_dense(partition, 0, &full);

    // Back to the middle, then on from there without a seek, then back to the start.
    let middle = reader.read(partition, 150, 20).expect("read from the middle");
    assert_eq!(middle, full[150..150 + middle.len()].to_vec());
    assert!(!middle.is_empty());
    let after = read_to_end(&reader, partition, 150 + middle.len() as u64, 33);
    assert_eq!(after, full[150 + middle.len()..].to_vec());
    let start = reader.read(partition, 0, 5).expect("read from the start again");
    assert_eq!(start, full[..start.len()].to_vec());

    // A new reader whose first read starts in the middle.
    let fresh = self::reader(&brokers);
    let tail = read_to_end(&fresh, partition, 390, 4);
    assert_eq!(tail, full[390..].to_vec());

    // A read at the end positions there; the next one jumps back.
    let other = self::reader(&brokers);
    assert!(other.read(partition, 400, 10).expect("read at the end").is_empty());
    let again = read_to_end(&other, partition, 0, 100);
    assert_eq!(again, full);
}

#[test]
fn commits_are_stored_per_group_in_kafka() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    Producer::new(&brokers).append(records(0, 50, 10));
    let reader = reader(&brokers);
    assert_eq!(reader.committed("alpha", 1).expect("committed"), None, "nothing committed yet");
    reader.commit("alpha", 1, 10).expect("commit alpha");
    reader.commit("beta", 1, 3).expect("commit beta");
    reader.commit("alpha", 2, 7).expect("commit alpha 2");
    assert_eq!(reader.committed("alpha", 1).expect("committed"), Some(10));
    assert_eq!(reader.committed("beta", 1).expect("committed"), Some(3));
    assert_eq!(reader.committed("alpha", 2).expect("committed"), Some(7));
    assert_eq!(reader.committed("beta", 2).expect("committed"), None, "groups are independent");
    assert_eq!(reader.committed("gamma", 1).expect("committed"), None, "a group that never committed");
    reader.commit("alpha", 1, 12).expect("commit alpha again");

    // Stored by the brokers, not in the reader: another reader (another process) sees them.
    let other = self::reader(&brokers);
    assert_eq!(other.committed("alpha", 1).expect("committed"), Some(12));
    assert_eq!(other.committed("beta", 1).expect("committed"), Some(3));

    // Stored under the prefixed group id.
    let prefixed = KafkaReader::new(KafkaReaderConfig {
        brokers: brokers.clone(),
        group_prefix: "other-".to_string(),
        ..KafkaReaderConfig::default()
    })
    .expect("create a reader with another prefix");
    assert_eq!(prefixed.committed("alpha", 1).expect("committed"), None);
}

#[test]
fn records_appended_after_an_empty_read_become_visible() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let first = records(0, 30, 1);
    let producer = Producer::new(&brokers);
    producer.append(first.clone());
    let reader = reader(&brokers);
    let (partition, read) = (0..reader.partitions())
        .map(|p| (p, read_to_end(&reader, p, 0, 8)))
        .find(|(_, read)| !read.is_empty())
        .expect("a partition with the records");
    assert_eq!(read.len(), 30);
    assert!(reader.read(partition, 30, 8).expect("read at the end").is_empty());

    let second = records(1, 20, 1);
    producer.append(second.clone());
    let deadline = Instant::now() + HANG_LIMIT;
    let mut more = Vec::new();
    while more.len() < second.len() {
        assert!(Instant::now() < deadline, "only {} of {} new records became visible", more.len(), second.len());
        more.extend(reader.read(partition, 30 + more.len() as u64, 8).expect("read new records"));
    }
    assert_dense(partition, 30, &more);
    let values: Vec<&[u8]> = more.iter().map(|r| &r.value[..]).collect();
    let expected: Vec<&[u8]> = second.iter().map(|r| &r.value[..]).collect();
    assert_eq!(values, expected);
    assert!(reader.read(partition, 50, 8).expect("read at the new end").is_empty());
}

#[test]
fn a_missing_topic_is_refused_by_name() {
    let cluster = mock_cluster();
    let err = KafkaReader::new(KafkaReaderConfig {
        brokers: cluster.bootstrap_servers(),
        topic: "no_such_topic".to_string(),
        request_timeout: Duration::from_secs(30),
        ..KafkaReaderConfig::default()
    })
    .expect_err("a topic that does not exist");
    match err {
        LogError::Unavailable(message) => {
            assert!(message.contains("no_such_topic") && message.contains("does not exist"), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn an_unknown_partition_is_out_of_range() {
    let cluster = mock_cluster();
    let reader = reader(&cluster.bootstrap_servers());
    let checks: Vec<(&str, Result<(), LogError>)> = vec![
        ("read", reader.read(PARTITIONS as u32, 0, 10).map(drop)),
        ("start_offset", reader.start_offset(PARTITIONS as u32).map(drop)),
        ("committed", reader.committed("g", 99).map(drop)),
        ("commit", reader.commit("g", 99, 1)),
    ];
    for (what, result) in checks {
        match result {
            Err(LogError::OutOfRange(message)) => {
                assert!(message.contains(TOPIC) && message.contains("does not exist"), "{what}: {message}")
            }
            other => panic!("{what}: expected OutOfRange, got {other:?}"),
        }
    }
}

#[test]
fn unreachable_brokers_fail_with_unavailable() {
    // Nothing listens on a port the mock cluster had and gave back.
    let brokers = {
        let cluster = mock_cluster();
        cluster.bootstrap_servers()
    };
    let err = KafkaReader::new(KafkaReaderConfig {
        brokers: brokers.clone(),
        request_timeout: Duration::from_secs(2),
        ..KafkaReaderConfig::default()
    })
    .expect_err("no broker");
    assert!(matches!(err, LogError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(TOPIC), "{err}");
}

#[test]
fn a_config_without_brokers_is_refused() {
    let err = KafkaReader::new(KafkaReaderConfig { brokers: " ".to_string(), ..KafkaReaderConfig::default() })
        .expect_err("no brokers");
    assert!(err.to_string().contains("no brokers"), "{err}");
}

/// Many small appends make many small message sets: batches of 3 cross their boundaries.
#[test]
fn many_small_appends_read_back_whole() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let mut sent = Vec::new();
    let producer = Producer::new(&brokers);
    for batch in 0..20 {
        let chunk = records(batch, 17, 5);
        producer.append(chunk.clone());
        sent.extend(chunk);
    }
    let reader = reader(&brokers);
    let mut all = Vec::new();
    for partition in 0..reader.partitions() {
        let read = read_to_end(&reader, partition, 0, 3);
        assert_dense(partition, 0, &read);
        all.extend(read);
    }
    assert_same_records(&sent, &all);
}

#[test]
fn a_fetch_refusal_is_unavailable_with_the_brokers_reason_and_reading_resumes() {
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    Producer::new(&brokers).append(records(0, 50, 1));
    let reader = reader(&brokers);
    let partition = (0..reader.partitions())
        .find(|&p| reader.read(p, 49, 1).is_ok_and(|r| r.len() == 1))
        .expect("the partition with the records");
    cluster.request_errors(RDKafkaApiKey::Fetch, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4]);
    // The seek back to 0 makes a new fetch, which the broker refuses.
    match reader.read(partition, 0, 10) {
        Err(LogError::Unavailable(message)) => {
            assert!(message.contains("uthoriz") && message.contains(TOPIC), "{message}")
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    cluster.clear_request_errors(RDKafkaApiKey::Fetch);
    let deadline = Instant::now() + HANG_LIMIT;
    let first = loop {
        match reader.read(partition, 0, 10) {
            Ok(records) if !records.is_empty() => break records,
            // librdkafka backs the partition off (5 s after an authorization failure).
            Ok(_) | Err(LogError::Unavailable(_)) => {}
            Err(other) => panic!("unexpected error while the broker recovers: {other:?}"),
        }
        assert!(Instant::now() < deadline, "reading never resumed after the broker stopped refusing");
    };
    let mut all = first;
    let next = all.last().map_or(0, |r| r.offset + 1);
    all.extend(read_to_end(&reader, partition, next, 10));
    assert_dense(partition, 0, &all);
    assert_eq!(all.len(), 50);
}
