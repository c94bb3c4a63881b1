//! The Kafka sink against librdkafka's mock cluster, read back with a consumer.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::EventSink;
use hogpipe_destinations::sinks::{KafkaKey, KafkaSink, KafkaSinkConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::{events, refs, HANG_LIMIT};

const PARTITIONS: i32 = 3;

fn cluster(topic: &str) -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(3).expect("start the mock cluster");
    cluster.create_topic(topic, PARTITIONS, 3).expect("create the topic");
    cluster
}

struct Read {
    key: String,
    partition: i32,
    timestamp_ms: Option<i64>,
    event: Event,
}

/// Reads `count` messages of `topic` from the beginning.
fn read_back(brokers: &str, topic: &str, count: usize) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hogpipe-sink-test")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create the consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment.add_partition_offset(topic, partition, Offset::Beginning).expect("add a partition");
    }
    consumer.assign(&assignment).expect("assign the partitions");
    let deadline = Instant::now() + HANG_LIMIT;
    let mut read = Vec::new();
    while read.len() < count {
        assert!(Instant::now() < deadline, "read {} of {count} messages before the hang limit", read.len());
        let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
        let message = message.expect("a message, not an error");
        let key = String::from_utf8(message.key().expect("a key").to_vec()).expect("a UTF-8 key");
        let event = serde_json::from_slice(message.payload().expect("a payload")).expect("an event as JSON");
        read.push(Read { key, partition: message.partition(), timestamp_ms: message.timestamp().to_millis(), event });
    }
    read
}

#[test]
fn round_trip_keyed_by_distinct_id() {
    let topic = "sink_events";
    let cluster = cluster(topic);
    let brokers = cluster.bootstrap_servers();
    let sink = KafkaSink::new(KafkaSinkConfig::new(&brokers, topic)).expect("create the sink");
    let written = events(10, 0, 250);
    for batch in written.chunks(100) {
        sink.write(&refs(batch)).expect("every message acknowledged");
    }
    let read = read_back(&brokers, topic, written.len());
    let by_uuid: HashMap<&str, &Read> = read.iter().map(|r| (r.event.uuid.as_str(), r)).collect();
    assert_eq!(by_uuid.len(), written.len(), "each event once");
    let mut partition_of: BTreeMap<&str, i32> = BTreeMap::new();
    for event in &written {
        let got = by_uuid.get(event.uuid.as_str()).unwrap_or_else(|| panic!("event {} read back", event.uuid));
        assert_eq!(&got.event, event);
        assert_eq!(got.key, event.distinct_id);
        let expected_ms = chrono::DateTime::parse_from_rfc3339(&event.timestamp).expect("a time").timestamp_millis();
        assert_eq!(got.timestamp_ms, Some(expected_ms), "the event's time is the message's");
        let partition = *partition_of.entry(&event.distinct_id).or_insert(got.partition);
        assert_eq!(partition, got.partition, "one distinct id, one partition");
    }
    // Order per partition is the written order (a person's events stay in order).
    let position: HashMap<&str, usize> = written.iter().enumerate().map(|(i, e)| (e.uuid.as_str(), i)).collect();
    for partition in 0..PARTITIONS {
        let order: Vec<usize> =
            read.iter().filter(|r| r.partition == partition).map(|r| position[r.event.uuid.as_str()]).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "partition {partition} in written order");
    }
}

#[test]
fn keyed_by_uuid() {
    let topic = "sink_by_uuid";
    let cluster = cluster(topic);
    let brokers = cluster.bootstrap_servers();
    let config = KafkaSinkConfig { key: KafkaKey::Uuid, ..KafkaSinkConfig::new(&brokers, topic) };
    let sink = KafkaSink::new(config).expect("create the sink");
    let written = events(11, 0, 20);
    sink.write(&refs(&written)).expect("write");
    let read = read_back(&brokers, topic, written.len());
    for r in &read {
        assert_eq!(r.key, r.event.uuid);
    }
}

#[test]
fn an_unreachable_cluster_fails_the_write_naming_the_topic() {
    // Nothing listens on port 1; messages time out after 300 ms.
    let config = KafkaSinkConfig { message_timeout_ms: 300, ..KafkaSinkConfig::new("127.0.0.1:1", "nowhere") };
    let sink = KafkaSink::new(config).expect("create the sink");
    let err = sink.write(&refs(&events(12, 0, 3))).expect_err("no broker acknowledges");
    let text = err.to_string();
    assert!(text.contains("nowhere") && text.contains("127.0.0.1:1"), "{text}");
    assert!(text.contains("did not acknowledge"), "{text}");
}

#[test]
fn bad_configuration_is_rejected() {
    let err = KafkaSink::new(KafkaSinkConfig::new(" ", "t")).expect_err("no brokers");
    assert!(err.to_string().contains("brokers"), "{err}");
    let mut config = KafkaSinkConfig::new("127.0.0.1:9092", "t");
    config.properties.insert("no.such.setting".into(), "1".into());
    let err = KafkaSink::new(config).expect_err("librdkafka rejects it");
    assert!(err.to_string().contains("no.such.setting"), "{err}");
}
