//! The event log: where capture puts events and the dataflow reads them.
//!
//! One trait, [`EventLog`], with two backends: the embedded segmented write-ahead log
//! ([`wal::Wal`], the default) and Kafka ([`kafka::KafkaLog`]). Capture calls
//! [`EventLog::append`] and acknowledges the request only when the returned future resolves
//! with `Ok`: at that point every record is durable (fsynced, or acknowledged by the brokers).

use std::future::Future;
use std::pin::Pin;

pub mod kafka;
pub mod kafka_reader;
pub mod wal;

/// One record to append. The key decides the partition (`token:distinct_id` for events, so one
/// person's events stay in order); the value is the serialized [`crate::event::CapturedEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Partitioning key.
    pub key: Vec<u8>,
    /// Payload bytes, stored as given.
    pub value: Vec<u8>,
    /// Milliseconds since the Unix epoch when capture received the record (used for retention by age).
    pub timestamp_ms: i64,
    /// PostHog's `historical_migration` flag: Kafka sends these to the historical topic.
    pub historical: bool,
}

/// Record values read in one go, stored back to back with their offsets: what the dataflow reads
/// (one buffer per read, not two allocations per record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordBlock {
    bytes: Vec<u8>,
    /// Each record's offset in the log and where its value ends in `bytes`.
    records: Vec<(u64, usize)>,
}

impl RecordBlock {
    /// Appends a record's value.
    pub fn push(&mut self, offset: u64, value: &[u8]) {
        self.bytes.extend_from_slice(value);
        self.records.push((offset, self.bytes.len()));
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The offset of the last record.
    pub fn last_offset(&self) -> Option<u64> {
        self.records.last().map(|&(offset, _)| offset)
    }

    /// `(offset, value)` of each record, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u8])> + '_ {
        let starts = std::iter::once(0).chain(self.records.iter().map(|&(_, end)| end));
        starts.zip(&self.records).map(|(start, &(offset, end))| (offset, &self.bytes[start..end]))
    }
}

/// A record read back from the log, with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Partition the record is in.
    pub partition: u32,
    /// Offset inside the partition: dense, starting at 0, never reused.
    pub offset: u64,
    /// As appended.
    pub timestamp_ms: i64,
    /// As appended.
    pub key: Vec<u8>,
    /// As appended.
    pub value: Vec<u8>,
}

/// Why the log could not take or give records.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Too much is waiting to be written: the caller should push back (HTTP 503/429) and retry later.
    #[error("the event log is behind ({pending_bytes} bytes waiting, limit {limit_bytes}); retry later")]
    Full {
        /// Bytes accepted but not yet durable.
        pending_bytes: usize,
        /// The configured limit.
        limit_bytes: usize,
    },
    /// The log cannot write at all right now (disk error, brokers unreachable, shutting down).
    #[error("the event log is unavailable: {0}")]
    Unavailable(String),
    /// A record is larger than the log accepts.
    #[error("record of {size} bytes is larger than the limit of {limit} bytes")]
    RecordTooLarge {
        /// Size of the record (key + value).
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An I/O error with the file it happened on.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The log's files are damaged in a way recovery cannot repair (not a torn tail).
    #[error("the event log is corrupt: {0}")]
    Corrupt(String),
    /// A read or commit asked for something that does not exist (unknown partition, offset beyond the end).
    #[error("{0}")]
    OutOfRange(String),
}

/// The future returned by [`EventLog::append`].
pub type AppendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), LogError>> + Send + 'a>>;

/// Where capture appends events. Implementations are shared between request handlers (`Send + Sync`)
/// and batch concurrent appends (group commit).
pub trait EventLog: Send + Sync + 'static {
    /// Appends `records`. The future resolves with `Ok(())` only once every record is durable. On
    /// `Err`, some records may still have been stored; the client retries and the event `uuid`
    /// makes the duplicate harmless downstream. Must fail fast with [`LogError::Full`] rather than
    /// buffer without bound.
    fn append(&self, records: Vec<Record>) -> AppendFuture<'_>;

    /// Whether the log is currently able to accept appends (for `/_readiness`).
    fn is_ready(&self) -> bool;

    /// Short name for logs and metrics (`"wal"`, `"kafka"`).
    fn name(&self) -> &'static str;
}

/// The reading side of the event log, as the dataflow uses it: random access by partition and
/// offset, and committed positions per consumer group. Offsets are dense per partition.
pub trait LogReader: Send + Sync + 'static {
    /// Number of partitions.
    fn partitions(&self) -> u32;

    /// The oldest offset still stored in `partition` (retention may have removed older ones).
    fn start_offset(&self, partition: u32) -> Result<u64, LogError>;

    /// Up to `max_records` records of `partition` with offset `>= from_offset`, in order; empty
    /// when there is nothing more yet. Reads that move forward from the previous read are the
    /// fast path.
    fn read(&self, partition: u32, from_offset: u64, max_records: usize) -> Result<Vec<StoredRecord>, LogError>;

    /// [`LogReader::read`] of the values only, appended to `block`; returns how many records were
    /// read. Backends that can avoid an allocation per record override it.
    fn read_values(
        &self,
        partition: u32,
        from_offset: u64,
        max_records: usize,
        block: &mut RecordBlock,
    ) -> Result<usize, LogError> {
        let records = self.read(partition, from_offset, max_records)?;
        for r in &records {
            block.push(r.offset, &r.value);
        }
        Ok(records.len())
    }

    /// The position committed by `group` for `partition` (the next offset to read), if any.
    fn committed(&self, group: &str, partition: u32) -> Result<Option<u64>, LogError>;

    /// Durably records that `group` has processed `partition` up to `next_offset` (exclusive).
    fn commit(&self, group: &str, partition: u32, next_offset: u64) -> Result<(), LogError>;
}

impl LogReader for wal::Wal {
    fn partitions(&self) -> u32 {
        wal::Wal::partitions(self)
    }

    fn start_offset(&self, partition: u32) -> Result<u64, LogError> {
        Ok(wal::Wal::start_offset(self, partition))
    }

    fn read(&self, partition: u32, from_offset: u64, max_records: usize) -> Result<Vec<StoredRecord>, LogError> {
        wal::Wal::read(self, partition, from_offset, max_records)
    }

    fn read_values(
        &self,
        partition: u32,
        from_offset: u64,
        max_records: usize,
        block: &mut RecordBlock,
    ) -> Result<usize, LogError> {
        wal::Wal::read_values(self, partition, from_offset, max_records, block)
    }

    fn committed(&self, group: &str, partition: u32) -> Result<Option<u64>, LogError> {
        wal::Wal::committed(self, group, partition)
    }

    fn commit(&self, group: &str, partition: u32, next_offset: u64) -> Result<(), LogError> {
        wal::Wal::commit(self, group, partition, next_offset)
    }
}
