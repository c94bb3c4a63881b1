//! The Kafka sink: each event as one JSON message on a topic, keyed by `distinct_id` (or `uuid`),
//! with the event's time as the message timestamp. The producer is idempotent with `acks=all`;
//! a write returns once every message of the batch has its delivery report.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::{EventSink, SinkError};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use super::block_on;

/// `[[sinks]] type = "kafka"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// The topic (it must exist, unless the brokers create topics on first use).
    pub topic: String,
    /// The message key. Default `distinct_id` (a person's events stay in order on one partition).
    #[serde(default)]
    pub key: KafkaKey,
    /// Give up on a message (and fail the write) after this many milliseconds. Default 30 000.
    #[serde(default = "default_message_timeout_ms")]
    pub message_timeout_ms: u64,
    /// Extra librdkafka settings (they override the sink's own).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_message_timeout_ms() -> u64 {
    30_000
}

impl KafkaSinkConfig {
    /// A config for `topic` on `brokers` with the defaults.
    pub fn new(brokers: impl Into<String>, topic: impl Into<String>) -> KafkaSinkConfig {
        KafkaSinkConfig {
            brokers: brokers.into(),
            topic: topic.into(),
            key: KafkaKey::default(),
            message_timeout_ms: default_message_timeout_ms(),
            properties: BTreeMap::new(),
        }
    }
}

/// Which field of the event is the message key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaKey {
    /// The event's `distinct_id`.
    #[default]
    DistinctId,
    /// The event's `uuid`.
    Uuid,
}

/// A Kafka topic; see the module docs.
pub struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    key: KafkaKey,
    name: String,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink").field("topic", &self.topic).field("key", &self.key).finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// Creates the producer. It connects in the background; this fails only on a configuration
    /// librdkafka rejects.
    pub fn new(config: KafkaSinkConfig) -> Result<KafkaSink, SinkError> {
        let name = format!("kafka sink {} on {}", config.topic, config.brokers);
        let err = |message: String| SinkError { sink: name.clone(), message };
        if config.brokers.trim().is_empty() {
            return Err(err("no brokers configured (set `brokers`, e.g. localhost:9092)".into()));
        }
        if config.topic.is_empty() {
            return Err(err("the topic must not be empty".into()));
        }
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", "hogpipe-kafka-sink")
            // Durability: every in-sync replica, no duplicates or reordering on librdkafka's retries.
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.codec", "lz4")
            .set("message.timeout.ms", config.message_timeout_ms.max(1).to_string());
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let producer: FutureProducer =
            client.create().map_err(|e| err(format!("the producer's configuration: {e}")))?;
        Ok(KafkaSink { producer, topic: config.topic, key: config.key, name })
    }

    fn error(&self, message: String) -> SinkError {
        SinkError { sink: self.name.clone(), message }
    }

    /// Waits for one delivery report.
    fn delivered(&self, delivery: DeliveryFuture) -> Result<(), SinkError> {
        match block_on(delivery) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((error, _))) => {
                Err(self.error(format!("the brokers did not acknowledge a message for {}: {error}", self.topic)))
            }
            Err(_canceled) => Err(self.error("the producer shut down before the brokers acknowledged".into())),
        }
    }
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn timestamp_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp_millis())
}

impl EventSink for KafkaSink {
    fn write(&self, events: &[&Event]) -> Result<(), SinkError> {
        let mut pending: VecDeque<DeliveryFuture> = VecDeque::with_capacity(events.len());
        let mut value = Vec::with_capacity(512);
        for event in events {
            value.clear();
            serde_json::to_writer(&mut value, event).map_err(|e| self.error(format!("event {}: {e}", event.uuid)))?;
            let key = match self.key {
                KafkaKey::DistinctId => event.distinct_id.as_bytes(),
                KafkaKey::Uuid => event.uuid.as_bytes(),
            };
            let mut record = FutureRecord::to(&self.topic).key(key).payload(&value[..]);
            if let Some(ms) = timestamp_ms(&event.timestamp) {
                record = record.timestamp(ms);
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push_back(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // librdkafka's queue is full: wait for our oldest message (or, with none
                        // of ours in flight, a moment) and try again.
                        record = back;
                        match pending.pop_front() {
                            Some(delivery) => self.delivered(delivery)?,
                            None => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                    Err((error, _)) => {
                        return Err(
                            self.error(format!("could not queue event {} for {}: {error}", event.uuid, self.topic))
                        )
                    }
                }
            }
        }
        for delivery in pending {
            self.delivered(delivery)?;
        }
        Ok(())
    }
}
