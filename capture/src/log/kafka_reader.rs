//! The reading side of the Kafka event log: [`KafkaReader`] implements [`LogReader`] over one topic,
//! so the dataflow reads Kafka exactly as it reads the embedded WAL.
//!
//! It owns fetching records by partition and offset and storing consumer-group positions in Kafka.
//! Producing is [`super::kafka::KafkaLog`]'s job.
//!
//! # Layout
//!
//! One librdkafka consumer reads every partition. Nothing joins a consumer group: partitions are
//! assigned manually (`incremental_assign`, never `subscribe`), so there are no rebalances, and the
//! dataflow decides which worker (or process) reads which partition. Each partition's fetch queue
//! is split off the consumer's main queue ([`BaseConsumer::split_partition_queue`]) before the
//! partition is first assigned, so each partition is polled independently and a worker waiting on
//! one partition never holds up another. A partition is assigned on its first [`LogReader::read`],
//! at the offset asked for: partitions this process never reads are never fetched.
//!
//! Each partition's queue and expected next offset sit behind their own [`Mutex`]; no lock spans
//! more than one partition, so workers reading different partitions never wait for each other.
//! Reading forward from the previous read (`from` = last offset + 1) takes records already
//! prefetched by librdkafka; any other `from` seeks first.
//!
//! # When a read returns empty
//!
//! A read returns at once with what is already fetched. When nothing is, it compares `from` with
//! the partition's high watermark (the one librdkafka cached from its latest fetch response, or
//! asked from the broker when none is cached yet): at or past it, the partition holds nothing more
//! and the read returns empty at once; below it, records exist and the read keeps polling (in
//! slices of [`KafkaReaderConfig::poll_timeout`]) until at least one arrives, for at most
//! [`KafkaReaderConfig::fill_timeout`]. So an empty read means "caught up" (what the dataflow's
//! `Until::CaughtUp` relies on), except when the brokers do not deliver within `fill_timeout`,
//! which is logged as a warning. Offsets are dense for topics written by idempotent,
//! non-transactional producers such as [`super::kafka::KafkaLog`]. On compacted or transactional
//! topics they have gaps: reads skip them, but a read positioned on a gap that ends the partition
//! (a transaction marker just below the high watermark) waits `fill_timeout` before it returns
//! empty.
//!
//! # Consumer-group positions
//!
//! [`LogReader::commit`] and [`LogReader::committed`] use Kafka's consumer-group offsets of group
//! `<group_prefix><group>`, through one small consumer per group that never joins the group (so
//! commits carry no generation: a group that also has live subscribed members will refuse them).

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, DefaultConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};

use super::{LogError, LogReader, StoredRecord};

type Queue = PartitionQueue<DefaultConsumerContext>;

/// Settings of a [`KafkaReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaReaderConfig {
    /// Bootstrap brokers, comma separated `host:port` (librdkafka's `bootstrap.servers`).
    pub brokers: String,
    /// The topic to read (PostHog's `events_plugin_ingestion`).
    pub topic: String,
    /// Prefix of the Kafka consumer group ids: the dataflow's group `g` commits as
    /// `<group_prefix>g`. The reading consumer itself uses `<group_prefix>reader`, which it never
    /// commits to.
    pub group_prefix: String,
    /// Extra librdkafka consumer settings (`security.protocol`, `fetch.max.bytes`,
    /// `queued.max.messages.kbytes`, ...), applied after hogpipe's defaults. `group.id` and the
    /// automatic commit settings are hogpipe's and cannot be overridden.
    pub properties: BTreeMap<String, String>,
    /// Longest single wait for a record while a read waits for records it knows exist.
    pub poll_timeout: Duration,
    /// How long a read keeps waiting when the high watermark shows records at or after `from`
    /// but none has been fetched yet; then it returns empty.
    pub fill_timeout: Duration,
    /// Bound on requests to the brokers: metadata, watermarks, seeks, reading committed offsets.
    pub request_timeout: Duration,
}

impl Default for KafkaReaderConfig {
    fn default() -> Self {
        KafkaReaderConfig {
            brokers: "localhost:9092".to_string(),
            topic: "events_plugin_ingestion".to_string(),
            group_prefix: "hogpipe-".to_string(),
            properties: BTreeMap::new(),
            poll_timeout: Duration::from_millis(100),
            fill_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// One partition's reading state, behind its own lock.
struct PartitionState {
    /// The partition's own fetch queue.
    queue: Queue,
    /// Whether the partition is in the consumer's assignment.
    assigned: bool,
    /// Offset the next record taken from `queue` continues from; `None` until the partition is
    /// positioned (first read, or after an error).
    next: Option<u64>,
}

/// A [`LogReader`] over one Kafka topic. `Send + Sync`: share it between the dataflow's workers
/// behind an `Arc`.
pub struct KafkaReader {
    consumer: Arc<BaseConsumer>,
    topic: String,
    /// `topic` for librdkafka's C API.
    topic_c: CString,
    partitions: Vec<Mutex<PartitionState>>,
    /// Settings shared by the reading consumer and the committers (without `group.id`).
    base: ClientConfig,
    group_prefix: String,
    /// One committing consumer per group; the lock is held only to look one up or create it.
    committers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    poll_timeout: Duration,
    fill_timeout: Duration,
    request_timeout: Duration,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions.len())
            .field("group_prefix", &self.group_prefix)
            .finish_non_exhaustive()
    }
}

/// Locks `mutex`; after a panic elsewhere, takes the state and forces the partition to be positioned
/// again rather than trust it.
fn lock_partition(mutex: &Mutex<PartitionState>) -> MutexGuard<'_, PartitionState> {
    mutex.lock().unwrap_or_else(|poisoned| {
        let mut state = poisoned.into_inner();
        state.next = None;
        state
    })
}

fn kafka_offset(offset: u64) -> Result<i64, LogError> {
    i64::try_from(offset).map_err(|_| LogError::OutOfRange(format!("offset {offset} is beyond what Kafka can address")))
}

impl KafkaReader {
    /// Connects, reads the topic's partition count from the brokers' metadata and prepares one
    /// queue per partition. Fails with [`LogError::Unavailable`] when the brokers cannot be
    /// reached within [`KafkaReaderConfig::request_timeout`], when the topic does not exist, or
    /// on a configuration librdkafka rejects.
    pub fn new(config: KafkaReaderConfig) -> Result<KafkaReader, LogError> {
        if config.brokers.trim().is_empty() {
            return Err(LogError::Unavailable(
                "kafka reader: no brokers configured (set the bootstrap brokers, e.g. localhost:9092)".to_string(),
            ));
        }
        let topic_c = CString::new(config.topic.as_str()).map_err(|_| {
            LogError::Unavailable(format!("kafka reader: topic name {:?} contains a NUL byte", config.topic))
        })?;
        if config.topic.is_empty() {
            return Err(LogError::Unavailable("kafka reader: the topic must not be empty".to_string()));
        }
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", &config.brokers)
            .set("client.id", "hogpipe-dataflow")
            // Prefetch per partition queue (split queues count these per partition): bounded so
            // many partitions cannot hold gigabytes; the dataflow takes 1000 records per round.
            .set("queued.min.messages", "10000")
            .set("queued.max.messages.kbytes", "16384")
            // How long a broker holds a fetch when it has nothing new. librdkafka keeps one fetch
            // in flight per broker, so a partition assigned or sought while its broker holds one
            // waits for it: 100 ms instead of 500 bounds that wait (e.g. at startup, when
            // partitions are assigned one by one) for ten idle fetches a second per broker.
            .set("fetch.wait.max.ms", "100")
            // Out of range (retention removed `from`): continue at the oldest stored record, as
            // the WAL does.
            .set("auto.offset.reset", "earliest")
            .set("allow.auto.create.topics", "false");
        for (key, value) in &config.properties {
            base.set(key, value);
        }
        // Positions are only ever committed explicitly, by `commit`.
        base.set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");

        let mut reader_config = base.clone();
        // librdkafka needs a group id to assign partitions; this one never commits.
        reader_config.set("group.id", format!("{}reader", config.group_prefix));
        let consumer: Arc<BaseConsumer> = Arc::new(
            reader_config.create().map_err(|e| LogError::Unavailable(format!("kafka reader configuration: {e}")))?,
        );
        let count = topic_partitions(&consumer, &config.topic, &config.brokers, config.request_timeout)?;
        let mut partitions = Vec::with_capacity(count as usize);
        for partition in 0..count {
            let queue = consumer.split_partition_queue(&config.topic, partition).ok_or_else(|| {
                LogError::Unavailable(format!("kafka reader: no queue for {} partition {partition}", config.topic))
            })?;
            partitions.push(Mutex::new(PartitionState { queue, assigned: false, next: None }));
        }
        Ok(KafkaReader {
            consumer,
            topic: config.topic,
            topic_c,
            partitions,
            base,
            group_prefix: config.group_prefix,
            committers: Mutex::new(HashMap::new()),
            poll_timeout: config.poll_timeout.max(Duration::from_millis(1)),
            fill_timeout: config.fill_timeout,
            request_timeout: config.request_timeout,
        })
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn slot(&self, partition: u32) -> Result<(&Mutex<PartitionState>, i32), LogError> {
        match (self.partitions.get(partition as usize), i32::try_from(partition)) {
            (Some(slot), Ok(id)) => Ok((slot, id)),
            _ => Err(LogError::OutOfRange(format!(
                "kafka topic {} has {} partitions; partition {partition} does not exist",
                self.topic,
                self.partitions.len()
            ))),
        }
    }

    /// Serves the consumer's main queue (errors and other events; records arrive on the partition
    /// queues), logging what it finds. Never blocks.
    fn serve_events(&self) {
        while let Some(event) = self.consumer.poll(Duration::ZERO) {
            match event {
                Ok(message) => tracing::warn!(
                    topic = %self.topic,
                    partition = message.partition(),
                    offset = message.offset(),
                    "kafka reader: a record arrived outside its partition queue; it is read again through the queue"
                ),
                Err(error) => tracing::warn!(topic = %self.topic, %error, "kafka reader"),
            }
        }
    }

    /// Makes the next record of `state.queue` be the one at `from`: assigns the partition there on
    /// first use, seeks otherwise. A seek fails while librdkafka has not started fetching the
    /// partition yet (just assigned) or after a fetch error; then the partition is unassigned and
    /// assigned again at `from`.
    fn position(&self, state: &mut PartitionState, partition: i32, from: u64) -> Result<(), LogError> {
        let offset = kafka_offset(from)?;
        state.next = None;
        let unavailable = |what: &str, e: KafkaError| {
            LogError::Unavailable(format!("kafka: {what} {} partition {partition} at offset {from}: {e}", self.topic))
        };
        if state.assigned {
            match self.consumer.seek(&self.topic, partition, Offset::Offset(offset), self.request_timeout) {
                Ok(()) => {
                    state.next = Some(from);
                    return Ok(());
                }
                Err(error) => {
                    tracing::debug!(topic = %self.topic, partition, from, %error, "kafka reader: seek failed; assigning again");
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&self.topic, partition);
                    self.consumer.incremental_unassign(&tpl).map_err(|e| unavailable("unassigning", e))?;
                    state.assigned = false;
                }
            }
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(offset))
            .map_err(|e| unavailable("assigning", e))?;
        self.consumer.incremental_assign(&tpl).map_err(|e| unavailable("assigning", e))?;
        state.assigned = true;
        state.next = Some(from);
        Ok(())
    }

    /// Takes records from `state.queue` into `out` until it holds `max`: waits up to `wait` for
    /// the first, then takes only what is already there. Records before the expected offset
    /// (fetched before a seek) are dropped. On an error the partition must be positioned again.
    fn take(
        &self,
        state: &mut PartitionState,
        partition: u32,
        wait: Duration,
        max: usize,
        out: &mut Vec<StoredRecord>,
    ) -> Result<(), LogError> {
        let mut timeout = wait;
        while out.len() < max {
            let Some(next) = state.next else { return Ok(()) };
            let message = match state.queue.poll(timeout) {
                None => return Ok(()),
                Some(Ok(message)) => message,
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(()),
                Some(Err(error)) => {
                    state.next = None;
                    return Err(read_error(&self.topic, partition, next, &error));
                }
            };
            let Ok(offset) = u64::try_from(message.offset()) else { continue };
            if offset < next {
                continue;
            }
            timeout = Duration::ZERO;
            state.next = Some(offset + 1);
            out.push(StoredRecord {
                partition,
                offset,
                timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
                key: message.key().unwrap_or_default().to_vec(),
                value: message.payload().unwrap_or_default().to_vec(),
            });
        }
        Ok(())
    }

    /// The partition's high watermark: librdkafka's cached one (from the latest fetch response),
    /// or the broker's when nothing is cached yet.
    fn high_watermark(&self, partition: i32) -> Result<u64, LogError> {
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid while `self.consumer` lives (it outlives this call),
        // `topic_c` is a NUL-terminated string that outlives the call, and `low`/`high` are
        // writable locals. librdkafka only reads the cached values under the partition's lock.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                self.topic_c.as_ptr(),
                partition,
                &mut low,
                &mut high,
            )
        };
        if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 {
            return Ok(high as u64);
        }
        let (_, high) = self.watermarks(partition)?;
        Ok(high)
    }

    /// Low and high watermarks asked from the partition's leader.
    fn watermarks(&self, partition: i32) -> Result<(u64, u64), LogError> {
        let (low, high) =
            self.consumer.fetch_watermarks(&self.topic, partition, self.request_timeout).map_err(|e| {
                LogError::Unavailable(format!("kafka: watermarks of {} partition {partition}: {e}", self.topic))
            })?;
        Ok((low.max(0) as u64, high.max(0) as u64))
    }

    /// The consumer that commits for `group`, created on first use.
    fn committer(&self, group: &str) -> Result<Arc<BaseConsumer>, LogError> {
        let mut committers = self.committers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(consumer) = committers.get(group) {
            return Ok(Arc::clone(consumer));
        }
        let group_id = format!("{}{group}", self.group_prefix);
        let consumer: BaseConsumer = self
            .base
            .clone()
            .set("group.id", &group_id)
            .create()
            .map_err(|e| LogError::Unavailable(format!("kafka: consumer for group {group_id}: {e}")))?;
        let consumer = Arc::new(consumer);
        committers.insert(group.to_string(), Arc::clone(&consumer));
        Ok(consumer)
    }
}

/// The topic's partition count from the brokers' metadata.
fn topic_partitions(consumer: &BaseConsumer, topic: &str, brokers: &str, timeout: Duration) -> Result<i32, LogError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| LogError::Unavailable(format!("kafka: metadata of topic {topic} from {brokers}: {e}")))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(LogError::Unavailable(format!("kafka: topic {topic} does not exist on {brokers}")));
    };
    match found.error() {
        None => {}
        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) => {
            return Err(LogError::Unavailable(format!("kafka: topic {topic} does not exist on {brokers}")))
        }
        Some(code) => {
            return Err(LogError::Unavailable(format!(
                "kafka: metadata of topic {topic} from {brokers}: {}",
                RDKafkaErrorCode::from(code)
            )))
        }
    }
    let count = found.partitions().len();
    if count == 0 {
        return Err(LogError::Unavailable(format!("kafka: topic {topic} on {brokers} has no partitions")));
    }
    i32::try_from(count).map_err(|_| LogError::Unavailable(format!("kafka: topic {topic} has {count} partitions")))
}

/// Maps an error delivered on a partition queue.
fn read_error(topic: &str, partition: u32, offset: u64, error: &KafkaError) -> LogError {
    let message = format!("kafka: reading {topic} partition {partition} at offset {offset}: {error}");
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset) => LogError::OutOfRange(message),
        _ => LogError::Unavailable(message),
    }
}

impl LogReader for KafkaReader {
    /// The partition count the topic had when the reader was created.
    fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// The partition's low watermark, asked from its leader.
    fn start_offset(&self, partition: u32) -> Result<u64, LogError> {
        let (_, id) = self.slot(partition)?;
        Ok(self.watermarks(id)?.0)
    }

    /// Up to `max_records` records from `from_offset` on, in offset order; see the module docs
    /// for when it waits and when it returns empty. It never blocks for longer than
    /// `fill_timeout`, plus up to `request_timeout` each for a seek and a watermark request when
    /// those are needed.
    fn read(&self, partition: u32, from_offset: u64, max_records: usize) -> Result<Vec<StoredRecord>, LogError> {
        let (slot, id) = self.slot(partition)?;
        self.serve_events();
        if max_records == 0 {
            return Ok(Vec::new());
        }
        let mut state = lock_partition(slot);
        if state.next != Some(from_offset) {
            self.position(&mut state, id, from_offset)?;
        }
        let mut out = Vec::new();
        self.take(&mut state, partition, Duration::ZERO, max_records, &mut out)?;
        if !out.is_empty() || from_offset >= self.high_watermark(id)? {
            return Ok(out);
        }
        let deadline = Instant::now() + self.fill_timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    topic = %self.topic,
                    partition,
                    from_offset,
                    "kafka reader: the partition holds records from this offset but none arrived within {:?}",
                    self.fill_timeout
                );
                return Ok(out);
            }
            self.take(&mut state, partition, left.min(self.poll_timeout), max_records, &mut out)?;
            if !out.is_empty() {
                return Ok(out);
            }
            self.serve_events();
        }
    }

    /// The offset committed in Kafka for group `<group_prefix><group>`; `None` when the group
    /// never committed this partition.
    fn committed(&self, group: &str, partition: u32) -> Result<Option<u64>, LogError> {
        let (_, id) = self.slot(partition)?;
        let consumer = self.committer(group)?;
        let unavailable = |e: &dyn std::fmt::Display| {
            LogError::Unavailable(format!(
                "kafka: committed offset of group {}{group} for {} partition {partition}: {e}",
                self.group_prefix, self.topic
            ))
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, id);
        let tpl = consumer.committed_offsets(tpl, self.request_timeout).map_err(|e| unavailable(&e))?;
        let Some(element) = tpl.find_partition(&self.topic, id) else { return Ok(None) };
        element.error().map_err(|e| unavailable(&e))?;
        match element.offset() {
            Offset::Offset(offset) if offset >= 0 => Ok(Some(offset as u64)),
            _ => Ok(None),
        }
    }

    /// Commits `next_offset` for group `<group_prefix><group>` synchronously
    /// ([`CommitMode::Sync`]): `Ok` once the group coordinator stored it.
    fn commit(&self, group: &str, partition: u32, next_offset: u64) -> Result<(), LogError> {
        let (_, id) = self.slot(partition)?;
        let offset = kafka_offset(next_offset)?;
        let consumer = self.committer(group)?;
        let mut tpl = TopicPartitionList::new();
        let added = tpl.add_partition_offset(&self.topic, id, Offset::Offset(offset));
        let result = added.and_then(|()| consumer.commit(&tpl, CommitMode::Sync));
        // Serve the commit's event (and any error) so nothing piles up in the committer's queue.
        while let Some(event) = consumer.poll(Duration::ZERO) {
            if let Err(error) = event {
                tracing::warn!(%group, %error, "kafka committer");
            }
        }
        result.map_err(|e| {
            LogError::Unavailable(format!(
                "kafka: committing offset {next_offset} of {} partition {partition} for group {}{group}: {e}",
                self.topic, self.group_prefix
            ))
        })
    }
}
