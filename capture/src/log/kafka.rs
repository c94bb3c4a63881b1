//! The Kafka backend of the event log: [`KafkaLog`] appends records to Kafka topics through
//! librdkafka (rdkafka's `FutureProducer`), configured as PostHog's capture configures its producer,
//! and [`create_topics`] makes sure the topics exist. The dataflow reads the topic back through
//! [`super::kafka_reader::KafkaReader`]; the WAL backend lives in [`super::wal`].
//!
//! Durability: the producer uses `acks=all` with the idempotent producer, so an append resolves
//! with `Ok` only once every in-sync replica has the record and retries never duplicate or reorder
//! records inside a partition. Records are keyed (`token:distinct_id`) and partitioned with
//! `murmur2_random`, the Java client's partitioner that PostHog uses, so one key always lands on the
//! same partition and a hogpipe producer partitions exactly as PostHog's does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientContext;
use serde::Deserialize;

use super::{AppendFuture, EventLog, LogError, Record};

/// How often librdkafka reports statistics; [`KafkaLog::is_ready`] follows the broker states in them.
const STATS_INTERVAL_MS: u32 = 1_000;
/// Bytes librdkafka may hold queued or in flight before [`LogError::Full`] (256 MiB).
const DEFAULT_QUEUE_KBYTES: usize = 256 * 1024;
/// Records librdkafka may hold queued or in flight before [`LogError::Full`].
const DEFAULT_QUEUE_MESSAGES: usize = 1_000_000;
/// Room for the record framing that Kafka counts in `message.max.bytes` on top of key + value.
const RECORD_OVERHEAD_BYTES: usize = 4 * 1024;

/// Settings of the Kafka event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma separated `host:port` (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// Topic for live events (PostHog's `events_plugin_ingestion`).
    pub topic: String,
    /// Topic for records with [`Record::historical`] set (PostHog's
    /// `events_plugin_ingestion_historical`).
    pub historical_topic: String,
    /// Extra librdkafka producer settings (`security.protocol`, `compression.codec`,
    /// `queue.buffering.max.kbytes`, ...). They are applied last, so they override hogpipe's defaults.
    pub properties: BTreeMap<String, String>,
    /// How long librdkafka keeps trying to deliver a record (`message.timeout.ms`) before the
    /// append fails with [`LogError::Unavailable`].
    pub message_timeout: Duration,
    /// Largest record (key + value) accepted; larger ones fail with [`LogError::RecordTooLarge`]
    /// before anything is produced.
    pub max_record_bytes: usize,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".to_string(),
            topic: "events_plugin_ingestion".to_string(),
            historical_topic: "events_plugin_ingestion_historical".to_string(),
            properties: BTreeMap::new(),
            message_timeout: Duration::from_secs(20),
            max_record_bytes: 1024 * 1024,
        }
    }
}

/// Broker connectivity seen by librdkafka's callbacks, read by [`KafkaLog::is_ready`].
#[derive(Default)]
struct Health {
    /// The last statistics report showed at least one broker connection `UP`, and no
    /// "all brokers down" error came after it.
    connected: AtomicBool,
    /// librdkafka reported a fatal error (e.g. the idempotent producer lost its sequence): the
    /// producer can never produce again.
    fatal: AtomicBool,
}

/// The producer's client context: tracks [`Health`] from the statistics and error callbacks.
struct KafkaContext {
    health: Arc<Health>,
}

/// The part of librdkafka's statistics JSON that readiness needs.
#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    brokers: BTreeMap<String, BrokerStats>,
}

#[derive(Deserialize)]
struct BrokerStats {
    /// `configured` (bootstrap), `learned` (from metadata), `internal` or `logical`.
    source: String,
    /// `INIT`, `DOWN`, `TRY_CONNECT`, `CONNECT`, ..., `UP`.
    state: String,
}

impl ClientContext for KafkaContext {
    fn stats_raw(&self, statistics: &[u8]) {
        match serde_json::from_slice::<Stats>(statistics) {
            Ok(stats) => {
                let up = stats
                    .brokers
                    .values()
                    .any(|b| b.state == "UP" && (b.source == "configured" || b.source == "learned"));
                self.health.connected.store(up, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "could not parse librdkafka statistics"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                self.health.connected.store(false, Ordering::Relaxed);
            }
            Some(RDKafkaErrorCode::Fatal) => {
                self.health.fatal.store(true, Ordering::Relaxed);
            }
            _ => {}
        }
        tracing::warn!(error = %error, reason, "kafka producer error");
    }
}

/// The Kafka event log backend. Cheap to share: one producer (one librdkafka client with its
/// own threads) serves every concurrent append.
pub struct KafkaLog {
    producer: FutureProducer<KafkaContext>,
    health: Arc<Health>,
    topic: String,
    historical_topic: String,
    max_record_bytes: usize,
    /// Bytes of appends that are queued or in flight (for [`LogError::Full`]'s report).
    pending_bytes: Arc<AtomicUsize>,
    /// librdkafka's `queue.buffering.max.kbytes`, in bytes.
    queue_limit_bytes: usize,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("topic", &self.topic)
            .field("historical_topic", &self.historical_topic)
            .field("max_record_bytes", &self.max_record_bytes)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Creates the producer. It connects in the background: this does not wait for the brokers
    /// (see [`EventLog::is_ready`]). Fails only on a configuration librdkafka rejects.
    pub fn new(config: KafkaConfig) -> Result<KafkaLog, LogError> {
        if config.brokers.trim().is_empty() {
            return Err(LogError::Unavailable(
                "kafka: no brokers configured (set the bootstrap brokers, e.g. localhost:9092)".to_string(),
            ));
        }
        if config.topic.is_empty() || config.historical_topic.is_empty() {
            return Err(LogError::Unavailable(
                "kafka: the topic and the historical topic must not be empty".to_string(),
            ));
        }
        let timeout_ms = config.message_timeout.as_millis().max(1);
        let message_max_bytes = config.max_record_bytes.saturating_add(RECORD_OVERHEAD_BYTES).max(1_000_000);
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", "hogpipe-capture")
            // Durability: every in-sync replica, no duplicates or reordering on retry.
            .set("acks", "all")
            .set("enable.idempotence", "true")
            // Throughput: batch for up to 20 ms (PostHog's default), compress with lz4 (built in).
            .set("linger.ms", "20")
            .set("compression.codec", "lz4")
            // Bounded memory: past these, producing fails with QueueFull and we push back.
            .set("queue.buffering.max.kbytes", DEFAULT_QUEUE_KBYTES.to_string())
            .set("queue.buffering.max.messages", DEFAULT_QUEUE_MESSAGES.to_string())
            // Java-compatible key hashing, as PostHog's capture.
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", timeout_ms.to_string())
            .set("message.max.bytes", message_max_bytes.to_string())
            .set("statistics.interval.ms", STATS_INTERVAL_MS.to_string());
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let queue_limit_bytes = client
            .get("queue.buffering.max.kbytes")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(DEFAULT_QUEUE_KBYTES)
            .saturating_mul(1024);
        let health = Arc::new(Health::default());
        let context = KafkaContext { health: Arc::clone(&health) };
        let producer: FutureProducer<KafkaContext> = client
            .create_with_context(context)
            .map_err(|e| LogError::Unavailable(format!("kafka producer configuration: {e}")))?;
        Ok(KafkaLog {
            producer,
            health,
            topic: config.topic,
            historical_topic: config.historical_topic,
            max_record_bytes: config.max_record_bytes,
            pending_bytes: Arc::new(AtomicUsize::new(0)),
            queue_limit_bytes,
        })
    }

    /// Waits up to `timeout` for every queued record to be delivered (or to fail); for shutdown.
    pub fn flush(&self, timeout: Duration) -> Result<(), LogError> {
        self.producer.flush(timeout).map_err(|e| LogError::Unavailable(format!("kafka flush: {e}")))
    }

    async fn append_records(&self, records: Vec<Record>) -> Result<(), LogError> {
        let mut total = 0usize;
        for record in &records {
            let size = record.key.len() + record.value.len();
            if size > self.max_record_bytes {
                return Err(LogError::RecordTooLarge { size, limit: self.max_record_bytes });
            }
            total += size;
        }
        let _pending = PendingGuard::new(&self.pending_bytes, total);
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let topic = if record.historical { &self.historical_topic } else { &self.topic };
            let message =
                FutureRecord::to(topic).key(&record.key[..]).payload(&record.value[..]).timestamp(record.timestamp_ms);
            match self.producer.send_result(message) {
                Ok(delivery) => deliveries.push(delivery),
                Err((error, _)) => return Err(self.enqueue_error(error, topic, record)),
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, message))) => {
                    let size = message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len);
                    return Err(self.delivery_error(error, message.topic(), size));
                }
                Err(_canceled) => {
                    return Err(LogError::Unavailable(
                        "kafka: the producer shut down before the brokers acknowledged the records".to_string(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Maps a failure to put a record in librdkafka's local queue.
    fn enqueue_error(&self, error: KafkaError, topic: &str, record: &Record) -> LogError {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::QueueFull) => LogError::Full {
                pending_bytes: self.pending_bytes.load(Ordering::Relaxed),
                limit_bytes: self.queue_limit_bytes,
            },
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                LogError::RecordTooLarge { size: record.key.len() + record.value.len(), limit: self.max_record_bytes }
            }
            _ => LogError::Unavailable(format!("kafka: could not queue a record for {topic}: {error}")),
        }
    }

    /// Maps a delivery report that is not a success.
    fn delivery_error(&self, error: KafkaError, topic: &str, size: usize) -> LogError {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => {
                LogError::RecordTooLarge { size, limit: self.max_record_bytes }
            }
            _ => LogError::Unavailable(format!("kafka: the brokers did not acknowledge a record for {topic}: {error}")),
        }
    }
}

/// Counts an append's bytes as pending while it is queued or in flight.
struct PendingGuard<'a> {
    counter: &'a AtomicUsize,
    bytes: usize,
}

impl<'a> PendingGuard<'a> {
    fn new(counter: &'a AtomicUsize, bytes: usize) -> Self {
        counter.fetch_add(bytes, Ordering::Relaxed);
        PendingGuard { counter, bytes }
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl EventLog for KafkaLog {
    /// Produces every record (live or historical topic, keyed, with its timestamp) and resolves
    /// once the brokers acknowledged all of them (`acks=all`). Fails at once with
    /// [`LogError::Full`] when librdkafka's bounded queue is full, with
    /// [`LogError::RecordTooLarge`] before producing anything if a record is over the limit, and
    /// with [`LogError::Unavailable`] (carrying the broker's or librdkafka's message) when a
    /// delivery fails, at the latest after [`KafkaConfig::message_timeout`].
    fn append(&self, records: Vec<Record>) -> AppendFuture<'_> {
        Box::pin(self.append_records(records))
    }

    /// `true` while the producer has a working connection to the cluster: librdkafka's latest
    /// statistics report (every second) showed at least one bootstrap or cluster broker in state
    /// `UP`, no "all brokers down" error arrived since, and the producer has not hit a fatal
    /// error. `false` until the first report after [`KafkaLog::new`].
    fn is_ready(&self) -> bool {
        self.health.connected.load(Ordering::Relaxed) && !self.health.fatal.load(Ordering::Relaxed)
    }

    fn name(&self) -> &'static str {
        "kafka"
    }
}

/// Creates the `topics` (name, partition count) on the cluster at `brokers`, with the brokers'
/// default replication factor. Topics that already exist are left as they are. For tests and for
/// `hogpipe serve` to make sure its topics exist.
pub async fn create_topics(brokers: &str, topics: &[(&str, i32)]) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| LogError::Unavailable(format!("kafka admin client for {brokers}: {e}")))?;
    let new_topics: Vec<NewTopic<'_>> =
        topics.iter().map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(-1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| LogError::Unavailable(format!("kafka: creating topics on {brokers}: {e}")))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(LogError::Unavailable(format!("kafka: creating topic {topic} on {brokers}: {code}")))
            }
        }
    }
    Ok(())
}
