//! The embedded event log: a segmented, append-only write-ahead log under the data dir.
//!
//! Owns the files under [`WalConfig::dir`]: their layout, group commit of appends, recovery after a
//! crash, reads for consumers, consumer-group positions and retention. It does not decide what a
//! record means (capture serializes events; the dataflow reads them).
//!
//! Layout:
//!
//! ```text
//! <dir>/LOCK                                   held (flock) while a process has the log open
//! <dir>/wal.meta                               format version and partition count
//! <dir>/p-00003/00000000000000001234.seg       partition 3, segment whose first offset is 1234
//! <dir>/groups/<group>.pos                     committed positions of a consumer group
//! ```
//!
//! Each record goes to partition `crc32c(key) % partitions` ([`Wal::partition_for`]), so one key's
//! records stay in order. Offsets are dense per partition, start at 0 and are never reused.
//! The segment and record formats are described in the `format` submodule. This is Unix-only code
//! (positional reads, `flock`).

mod format;
mod positions;
mod segment;
mod writer;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use self::format::{Step, RECORD_OVERHEAD};
use self::positions::Positions;
use self::segment::{io_err, SegmentInfo};
use self::writer::{AppendRequest, Command, PartWriter, Writer};
use super::{AppendFuture, EventLog, LogError, Record, RecordBlock, StoredRecord};

const META_FILE: &str = "wal.meta";
const META_VERSION: u32 = 1;
/// Largest read size for consumer reads (smaller when few records are asked for).
const READ_CHUNK: usize = 256 << 10;

/// How the WAL is set up. Build with [`WalConfig::new`] and change fields as needed.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Directory holding the log (created if missing).
    pub dir: PathBuf,
    /// Number of partitions. Fixed when the log is created; reopening with another count fails.
    pub partitions: u32,
    /// A segment is sealed and a new one started once it would grow past this size.
    pub segment_bytes: u64,
    /// Per partition: delete the oldest sealed segments while the partition is larger than this.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_age: Option<Duration>,
    /// Bytes accepted but not yet durable above which appends fail with [`LogError::Full`].
    pub max_pending_bytes: usize,
    /// Largest key + value of one record ([`LogError::RecordTooLarge`] beyond).
    pub max_record_bytes: usize,
    /// fdatasync before acknowledging an append. Without it a power loss can lose acknowledged
    /// records (a process crash cannot).
    pub fsync: bool,
}

impl WalConfig {
    /// The defaults, storing the log in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> WalConfig {
        WalConfig { dir: dir.into(), ..WalConfig::default() }
    }
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            dir: PathBuf::from("data/wal"),
            partitions: 8,
            segment_bytes: 64 << 20,
            retention_bytes: None,
            retention_age: None,
            max_pending_bytes: 64 << 20,
            max_record_bytes: 1 << 20,
            fsync: true,
        }
    }
}

/// What [`Wal::enforce_retention`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segment files deleted.
    pub segments_deleted: usize,
    /// Their total size.
    pub bytes_deleted: u64,
    /// Records they held.
    pub records_deleted: u64,
}

/// One partition's segments as readers see them (durable records only).
struct PartitionShared {
    segments: RwLock<Vec<SegmentInfo>>,
}

impl PartitionShared {
    fn read(&self) -> RwLockReadGuard<'_, Vec<SegmentInfo>> {
        self.segments.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Vec<SegmentInfo>> {
        self.segments.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// State shared by the `Wal` handle and its writer thread.
struct Shared {
    config: WalConfig,
    partitions: Vec<PartitionShared>,
    /// Bytes accepted but not yet durable.
    pending: AtomicUsize,
    /// Set once a write failed; appends are refused from then on.
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    positions: Mutex<Positions>,
    /// Held (flocked) for the life of the log.
    _lock: File,
}

/// The embedded segmented write-ahead log. `Send + Sync`: share it in an `Arc`.
///
/// Appends go through [`EventLog::append`] and are group-committed by one writer thread; reads,
/// consumer positions and retention can be called from any thread at the same time.
pub struct Wal {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

/// `crc32c(key) % partitions`: stable across restarts and versions, since it only depends on the
/// key bytes and the partition count (which is fixed at creation).
fn partition_of(key: &[u8], partitions: u32) -> u32 {
    crc32c::crc32c(key) % partitions.max(1)
}

impl Wal {
    /// Opens the log in `config.dir`, creating it if needed, and recovers every partition: every
    /// record is checked, a torn tail of a partition's newest segment is cut off (logged with
    /// `tracing::warn!`), and damage anywhere else is [`LogError::Corrupt`] naming the file and
    /// byte offset. Fails if another process has the log open, or if the log was created with a
    /// different partition count.
    pub fn open(config: WalConfig) -> Result<Wal, LogError> {
        if config.partitions == 0 || config.partitions > 100_000 {
            return Err(LogError::Unavailable(format!(
                "WAL partitions must be between 1 and 100000, not {}",
                config.partitions
            )));
        }
        if config.dir.as_os_str().is_empty() {
            return Err(LogError::Unavailable("the WAL directory is not set (empty path)".to_string()));
        }
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let lock = lock_dir(&dir)?;
        check_meta(&dir, config.partitions, config.fsync)?;

        let mut partitions = Vec::with_capacity(config.partitions as usize);
        let mut parts = Vec::with_capacity(config.partitions as usize);
        for p in 0..config.partitions {
            let pdir = segment::partition_dir(&dir, p);
            let rec = segment::recover_partition(&pdir, p, config.fsync)?;
            let last = rec
                .segments
                .last()
                .ok_or_else(|| LogError::Corrupt(format!("{}: no segments after recovery", pdir.display())))?;
            parts.push(PartWriter::new(p, pdir, rec.active, last));
            partitions.push(PartitionShared { segments: RwLock::new(rec.segments) });
        }
        let positions = Positions::load(dir.join("groups"), config.partitions, config.fsync)?;

        let shared = Arc::new(Shared {
            config,
            partitions,
            pending: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            positions: Mutex::new(positions),
            _lock: lock,
        });
        let (tx, rx) = mpsc::channel();
        let w = Writer::new(shared.clone(), parts, rx);
        let writer = std::thread::Builder::new()
            .name("hogpipe-wal-writer".into())
            .spawn(move || w.run())
            .map_err(|e| io_err(&dir, e))?;
        Ok(Wal { shared, tx: Some(tx), writer: Some(writer) })
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &WalConfig {
        &self.shared.config
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.shared.config.partitions
    }

    /// The partition a key's records go to: `crc32c(key) % partitions`. Stable across restarts
    /// (the partition count cannot change once the log exists).
    pub fn partition_for(&self, key: &[u8]) -> u32 {
        partition_of(key, self.shared.config.partitions)
    }

    /// Bytes accepted by [`EventLog::append`] and not yet durable.
    pub fn pending_bytes(&self) -> usize {
        self.shared.pending.load(Ordering::Acquire)
    }

    fn partition(&self, partition: u32) -> Result<&PartitionShared, LogError> {
        self.shared.partitions.get(partition as usize).ok_or_else(|| {
            LogError::OutOfRange(format!(
                "partition {partition} does not exist (the log has partitions 0 to {})",
                self.shared.config.partitions - 1
            ))
        })
    }

    /// The oldest offset still stored in `partition` (0 for a partition that does not exist).
    pub fn start_offset(&self, partition: u32) -> u64 {
        self.partition(partition).ok().and_then(|p| p.read().first().map(|s| s.base_offset)).unwrap_or(0)
    }

    /// The next offset to be written in `partition`: every durable record has a smaller offset
    /// (0 for a partition that does not exist).
    pub fn end_offset(&self, partition: u32) -> u64 {
        self.partition(partition).ok().and_then(|p| p.read().last().map(|s| s.end_offset)).unwrap_or(0)
    }

    /// Up to `max_records` durable records of `partition` with offset `>= from_offset`, in offset
    /// order. Starts at the oldest stored record when `from_offset` is older; empty at or after
    /// the end. Uses the sparse index, so the cost does not depend on where in a segment the read
    /// starts. Every record's checksum is verified.
    pub fn read(&self, partition: u32, from_offset: u64, max_records: usize) -> Result<Vec<StoredRecord>, LogError> {
        let mut out = Vec::with_capacity(max_records.min(4096));
        self.scan(partition, from_offset, max_records, |r| {
            out.push(StoredRecord {
                partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
                key: r.key.to_vec(),
                value: r.value.to_vec(),
            })
        })?;
        Ok(out)
    }

    /// [`Wal::read`] of the values only, appended to `block` (no allocation per record); returns
    /// how many records were read.
    pub fn read_values(
        &self,
        partition: u32,
        from_offset: u64,
        max_records: usize,
        block: &mut RecordBlock,
    ) -> Result<usize, LogError> {
        self.scan(partition, from_offset, max_records, |r| block.push(r.offset, r.value))
    }

    /// Hands each of up to `max_records` records from `from_offset` on to `take`, in order, as
    /// they lie in the read buffer; returns how many.
    fn scan(
        &self,
        partition: u32,
        from_offset: u64,
        max_records: usize,
        mut take: impl FnMut(&format::RecordView<'_>),
    ) -> Result<usize, LogError> {
        let part = self.partition(partition)?;
        let mut taken = 0;
        let mut next = from_offset;
        while taken < max_records {
            // Find the segment and the index entry under the lock, read without it.
            let (file, path, base, entry, seg_len, seg_end) = {
                let segments = part.read();
                let (Some(first), Some(last)) = (segments.first(), segments.last()) else { break };
                next = next.max(first.base_offset);
                if next >= last.end_offset {
                    break;
                }
                let i = segments.partition_point(|s| s.base_offset <= next).saturating_sub(1);
                let Some(seg) = segments.get(i) else { break };
                (seg.file.clone(), seg.path.clone(), seg.base_offset, seg.seek(next), seg.len, seg.end_offset)
            };
            let file = match file {
                Some(f) => f,
                None => match File::open(path.as_path()) {
                    Ok(f) => Arc::new(f),
                    // Deleted by retention since the lookup: start again from the oldest segment.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.start_offset(partition) > base => {
                        continue
                    }
                    Err(e) => return Err(io_err(&path, e)),
                },
            };
            if next >= seg_end {
                // An empty sealed segment sharing its base offset with the next one.
                break;
            }
            let corrupt =
                |pos: u64, what: String| LogError::Corrupt(format!("{}: byte offset {pos}: {what}", path.display()));
            let chunk = max_records.saturating_mul(512).clamp(16 << 10, READ_CHUNK);
            let mut scanner = format::Scanner::new(&file, entry.pos, seg_len, chunk);
            let mut expected = entry.offset;
            loop {
                match scanner.next_record().map_err(|e| io_err(&path, e))? {
                    Step::Record(r) => {
                        if r.offset != expected {
                            return Err(corrupt(
                                r.pos,
                                format!("record has offset {} where {expected} was expected", r.offset),
                            ));
                        }
                        expected += 1;
                        if r.offset >= next {
                            take(&r);
                            taken += 1;
                            if taken >= max_records {
                                break;
                            }
                        }
                    }
                    Step::End => break,
                    Step::Bad { pos, why } => return Err(corrupt(pos, why.to_string())),
                }
            }
            if expected < seg_end && taken < max_records {
                return Err(corrupt(
                    scanner.position(),
                    format!("the segment ends at offset {expected}, {seg_end} expected"),
                ));
            }
            next = expected;
        }
        Ok(taken)
    }

    /// Records that consumer `group` will continue `partition` at `next_offset`. Durable when it
    /// returns (the group's positions file is replaced atomically). `next_offset` may not be past
    /// [`Wal::end_offset`].
    pub fn commit(&self, group: &str, partition: u32, next_offset: u64) -> Result<(), LogError> {
        positions::validate_group(group)?;
        self.partition(partition)?;
        let end = self.end_offset(partition);
        if next_offset > end {
            return Err(LogError::OutOfRange(format!(
                "cannot commit offset {next_offset} for group {group:?} in partition {partition}: the partition ends at {end}"
            )));
        }
        let mut positions = self.shared.positions.lock().unwrap_or_else(|e| e.into_inner());
        positions.set(group, partition, next_offset)
    }

    /// The offset consumer `group` committed for `partition`, if any.
    pub fn committed(&self, group: &str, partition: u32) -> Result<Option<u64>, LogError> {
        positions::validate_group(group)?;
        self.partition(partition)?;
        let positions = self.shared.positions.lock().unwrap_or_else(|e| e.into_inner());
        Ok(positions.get(group, partition))
    }

    /// Deletes whole sealed segments, oldest first, while the oldest one's newest record is older
    /// than [`WalConfig::retention_age`] or the partition is larger than
    /// [`WalConfig::retention_bytes`]. Never deletes a partition's active (newest) segment. The
    /// writer thread also runs this every minute when a retention is configured.
    pub fn enforce_retention(&self) -> Result<RetentionReport, LogError> {
        self.shared.enforce_retention()
    }

    #[doc(hidden)]
    /// Test hook: the writer finishes what is queued, then writes nothing until the returned
    /// guard is dropped. Appends keep queuing (and count as pending) meanwhile.
    pub fn pause_writer_for_tests(&self) -> impl Drop {
        let (tx, rx) = mpsc::channel::<()>();
        if let Some(s) = &self.tx {
            let _ = s.send(Command::Pause(rx));
        }
        PauseGuard(tx)
    }

    /// Completes every queued append, stops the writer thread and closes the files. Returns an
    /// error if the log had failed or the writer thread died. (Dropping a `Wal` does the same,
    /// without the result.)
    pub fn flush_and_close(mut self) -> Result<(), LogError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), LogError> {
        // Dropping the sender ends the writer's loop once the queue is empty.
        self.tx = None;
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                return Err(LogError::Unavailable("the WAL writer thread panicked".to_string()));
            }
        }
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(LogError::Unavailable(self.failure_message()));
        }
        Ok(())
    }

    fn failure_message(&self) -> String {
        self.shared
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| "the WAL stopped after a write error".to_string())
    }

    /// Validates `records`, reserves their bytes and queues them for the writer.
    fn enqueue(&self, records: Vec<Record>) -> Result<Option<oneshot::Receiver<Result<(), LogError>>>, LogError> {
        if records.is_empty() {
            return Ok(None);
        }
        let cfg = &self.shared.config;
        let limit = cfg.max_record_bytes.min(u32::MAX as usize - 64);
        let mut bytes = 0usize;
        for r in &records {
            let size = r.key.len() + r.value.len();
            if size > limit {
                return Err(LogError::RecordTooLarge { size, limit });
            }
            bytes += size + RECORD_OVERHEAD;
        }
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(LogError::Unavailable(self.failure_message()));
        }
        let max = cfg.max_pending_bytes;
        if let Err(pending) = self.shared.pending.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
            (p.saturating_add(bytes) <= max).then_some(p + bytes)
        }) {
            return Err(LogError::Full { pending_bytes: pending, limit_bytes: max });
        }
        let (done, rx) = oneshot::channel();
        let req = AppendRequest { records, bytes, done };
        let sent = self.tx.as_ref().map(|tx| tx.send(Command::Append(req)));
        if !matches!(sent, Some(Ok(()))) {
            self.shared.pending.fetch_sub(bytes, Ordering::AcqRel);
            return Err(LogError::Unavailable("the WAL is shutting down".to_string()));
        }
        Ok(Some(rx))
    }
}

struct PauseGuard(#[allow(dead_code)] mpsc::Sender<()>);

impl Drop for PauseGuard {
    fn drop(&mut self) {}
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "WAL closed after an error");
        }
    }
}

impl EventLog for Wal {
    fn append(&self, records: Vec<Record>) -> AppendFuture<'_> {
        match self.enqueue(records) {
            Err(e) => Box::pin(std::future::ready(Err(e))),
            Ok(None) => Box::pin(std::future::ready(Ok(()))),
            Ok(Some(rx)) => Box::pin(async move {
                match rx.await {
                    Ok(result) => result,
                    Err(_) => {
                        Err(LogError::Unavailable("the WAL writer stopped before this append was written".to_string()))
                    }
                }
            }),
        }
    }

    /// Ready unless a write failed or appends are at 90% of `max_pending_bytes` (the writer is
    /// falling behind and appends are about to be refused).
    fn is_ready(&self) -> bool {
        let max = self.shared.config.max_pending_bytes;
        !self.shared.failed.load(Ordering::Acquire) && self.tx.is_some() && self.pending_bytes() < max - max / 10
    }

    fn name(&self) -> &'static str {
        "wal"
    }
}

impl Shared {
    fn enforce_retention(&self) -> Result<RetentionReport, LogError> {
        let cfg = &self.config;
        let mut report = RetentionReport::default();
        if cfg.retention_bytes.is_none() && cfg.retention_age.is_none() {
            return Ok(report);
        }
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let cutoff_ms =
            cfg.retention_age.map(|age| now_ms.saturating_sub(age.as_millis().min(i64::MAX as u128) as i64));
        let mut first_error = None;
        for part in &self.partitions {
            let removed: Vec<SegmentInfo> = {
                let mut segments = part.write();
                let mut total: u64 = segments.iter().map(|s| s.len).sum();
                let mut n = 0;
                // Only a prefix, so offsets stay dense from the oldest kept record on.
                while n + 1 < segments.len() {
                    let seg = &segments[n];
                    let too_big = cfg.retention_bytes.is_some_and(|max| total > max);
                    let too_old = matches!((cutoff_ms, seg.max_timestamp_ms), (Some(c), Some(ts)) if ts < c)
                        || (cutoff_ms.is_some() && seg.max_timestamp_ms.is_none());
                    if !(too_big || too_old) {
                        break;
                    }
                    total -= seg.len;
                    n += 1;
                }
                segments.drain(..n).collect()
            };
            for seg in removed {
                // Readers holding the handle can finish; the space is freed when they let go.
                match fs::remove_file(seg.path.as_path()) {
                    Ok(()) => {
                        report.segments_deleted += 1;
                        report.bytes_deleted += seg.len;
                        report.records_deleted += seg.end_offset - seg.base_offset;
                        tracing::info!(path = %seg.path.display(), bytes = seg.len, "WAL retention deleted a segment");
                    }
                    Err(e) => {
                        first_error.get_or_insert(io_err(&seg.path, e));
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

/// Takes an exclusive `flock` on `<dir>/LOCK` so two processes never write the same log.
fn lock_dir(dir: &Path) -> Result<File, LogError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_err(&path, e))?;
    // A process that just closed the log may still hold the lock for a moment through a child
    // forked before it closed (the descriptor lives until the child's exec): try for up to a
    // second before calling the log taken.
    let mut tries = 0;
    loop {
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock && tries < LOCK_TRIES {
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(50));
            continue;
        }
        if err.kind() == std::io::ErrorKind::WouldBlock {
            return Err(LogError::Unavailable(format!(
                "the WAL in {} is already open in another process or handle (lock {} is held)",
                dir.display(),
                path.display()
            )));
        }
        return Err(io_err(&path, err));
    }
}

/// Attempts at the lock, 50 ms apart, before `Wal::open` reports the log as taken.
const LOCK_TRIES: u32 = 20;

/// Checks `<dir>/wal.meta` against the configured partition count, writing it for a new log.
fn check_meta(dir: &Path, partitions: u32, sync: bool) -> Result<(), LogError> {
    let path = dir.join(META_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mut version = None;
            let mut stored = None;
            for line in text.lines() {
                match line.split_once(' ') {
                    Some(("hogpipe-wal", v)) => version = v.trim().parse::<u32>().ok(),
                    Some(("partitions", n)) => stored = n.trim().parse::<u32>().ok(),
                    _ => {}
                }
            }
            let (Some(version), Some(stored)) = (version, stored) else {
                return Err(LogError::Corrupt(format!(
                    "{}: not a hogpipe WAL metadata file (expected lines \"hogpipe-wal <version>\" and \"partitions <n>\")",
                    path.display()
                )));
            };
            if version != META_VERSION {
                return Err(LogError::Corrupt(format!(
                    "{}: WAL format version {version} is not supported (this build reads version {META_VERSION})",
                    path.display()
                )));
            }
            if stored != partitions {
                return Err(LogError::Unavailable(format!(
                    "the WAL in {} was created with {stored} partitions but the configuration asks for {partitions}; the partition count of an existing log cannot change (set it back to {stored}, or move the directory away to start a new log)",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if segment::partition_dir(dir, 0).exists() {
                return Err(LogError::Corrupt(format!(
                    "{}: missing, but partition directories exist; refusing to guess the partition count",
                    path.display()
                )));
            }
            let tmp = dir.join(format!("{META_FILE}.tmp"));
            let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
            f.write_all(format!("hogpipe-wal {META_VERSION}\npartitions {partitions}\n").as_bytes())
                .map_err(|e| io_err(&tmp, e))?;
            if sync {
                f.sync_all().map_err(|e| io_err(&tmp, e))?;
            }
            drop(f);
            fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
            if sync {
                segment::sync_dir(dir)?;
            }
            Ok(())
        }
        Err(e) => Err(io_err(&path, e)),
    }
}
