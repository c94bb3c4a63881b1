//! Segments on disk and in memory: naming, creation, the sparse offset index, and recovery of a
//! partition's segments at open (checking every record, truncating a torn tail of the last one).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{self, Step, HEADER_LEN};
use crate::log::LogError;

/// One index entry every this many bytes of segment.
pub(crate) const INDEX_INTERVAL: u64 = 4096;
/// Read size of the recovery scan.
const RECOVERY_CHUNK: usize = 1 << 20;

/// An index entry: the record with `offset` starts at byte `pos` of the segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) offset: u64,
    pub(crate) pos: u64,
}

/// What readers know about one segment. Only durable bytes are described: `len` and
/// `end_offset` advance after the writer has synced.
#[derive(Debug)]
pub(crate) struct SegmentInfo {
    pub(crate) base_offset: u64,
    pub(crate) path: Arc<PathBuf>,
    /// Read-only handle shared by readers (positional reads, so no seeking and no lock). Kept open
    /// for the active segment only: sealed segments are opened per read, so a long log does not
    /// hold a descriptor per segment.
    pub(crate) file: Option<Arc<File>>,
    /// Durable bytes, header included.
    pub(crate) len: u64,
    /// Offset after the last durable record.
    pub(crate) end_offset: u64,
    /// Newest record timestamp, `None` while empty.
    pub(crate) max_timestamp_ms: Option<i64>,
    /// Sparse index, sorted by offset; the first entry is `(base_offset, HEADER_LEN)`.
    pub(crate) index: Vec<IndexEntry>,
}

impl SegmentInfo {
    /// The index entry to start scanning from to find `offset`.
    pub(crate) fn seek(&self, offset: u64) -> IndexEntry {
        let i = self.index.partition_point(|e| e.offset <= offset);
        self.index.get(i.saturating_sub(1)).copied().unwrap_or(IndexEntry { offset: self.base_offset, pos: HEADER_LEN })
    }
}

/// `p-00003`.
pub(crate) fn partition_dir(root: &Path, partition: u32) -> PathBuf {
    root.join(format!("p-{partition:05}"))
}

/// `00000000000000001234.seg`.
pub(crate) fn segment_path(dir: &Path, base_offset: u64) -> PathBuf {
    dir.join(format!("{base_offset:020}.seg"))
}

/// An `io::Error` with the path it happened on.
pub(crate) fn io_err(path: &Path, source: std::io::Error) -> LogError {
    LogError::Io { path: path.display().to_string(), source }
}

/// Makes a directory's entries durable (new, renamed or removed files).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(dir, e))
}

/// Creates an empty segment (header only), durable, and returns its write handle and read info.
/// `sync` false skips every fsync.
pub(crate) fn create_segment(
    dir: &Path,
    partition: u32,
    base_offset: u64,
    sync: bool,
) -> Result<(File, SegmentInfo), LogError> {
    let path = segment_path(dir, base_offset);
    let mut file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| io_err(&path, e))?;
    file.write_all(&format::encode_header(partition, base_offset)).map_err(|e| io_err(&path, e))?;
    if sync {
        file.sync_data().map_err(|e| io_err(&path, e))?;
        sync_dir(dir)?;
    }
    let info = open_info(path, base_offset, true)?;
    Ok((file, info))
}

fn open_info(path: PathBuf, base_offset: u64, keep_open: bool) -> Result<SegmentInfo, LogError> {
    let file = if keep_open { Some(Arc::new(File::open(&path).map_err(|e| io_err(&path, e))?)) } else { None };
    Ok(SegmentInfo {
        base_offset,
        path: Arc::new(path),
        file,
        len: HEADER_LEN,
        end_offset: base_offset,
        max_timestamp_ms: None,
        index: vec![IndexEntry { offset: base_offset, pos: HEADER_LEN }],
    })
}

/// A recovered partition: its segments and a write handle on the last one, positioned at its end.
pub(crate) struct RecoveredPartition {
    pub(crate) segments: Vec<SegmentInfo>,
    pub(crate) active: File,
}

/// Lists a partition's segments by base offset (other files are left alone).
fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else { continue };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(base) = stem.parse::<u64>() {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Opens (creating if needed) a partition directory and checks every segment in it.
///
/// Every record of every segment is read and its checksum verified (this also builds the sparse
/// index). In the last segment, a torn tail (an incomplete record or a checksum mismatch) is cut
/// off, keeping every complete record before it, and logged. Anywhere else a bad record is
/// [`LogError::Corrupt`] naming the file and byte offset: sealed segments were synced whole before
/// the next one was created, so damage there is not a crash artefact.
pub(crate) fn recover_partition(dir: &Path, partition: u32, sync: bool) -> Result<RecoveredPartition, LogError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        if sync {
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
    }
    let bases = list_segments(dir)?;
    if bases.is_empty() {
        let (file, info) = create_segment(dir, partition, 0, sync)?;
        return Ok(RecoveredPartition { segments: vec![info], active: file });
    }
    let mut segments: Vec<SegmentInfo> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let path = segment_path(dir, base);
        if let Some(prev) = segments.last() {
            if prev.end_offset != base {
                return Err(LogError::Corrupt(format!(
                    "{}: the segment starts at offset {base} but the previous segment {} ends at offset {} (missing or extra records)",
                    path.display(),
                    prev.path.display(),
                    prev.end_offset
                )));
            }
        }
        segments.push(recover_segment(path, partition, base, is_last, sync)?);
    }
    let last = segments.last().ok_or_else(|| LogError::Corrupt(format!("{}: no segments", dir.display())))?;
    let path = last.path.as_ref().clone();
    let active = OpenOptions::new().write(true).open(&path).map_err(|e| io_err(&path, e))?;
    Ok(RecoveredPartition { segments, active })
}

fn recover_segment(
    path: PathBuf,
    partition: u32,
    base_offset: u64,
    is_last: bool,
    sync: bool,
) -> Result<SegmentInfo, LogError> {
    let file = OpenOptions::new().read(true).write(is_last).open(&path).map_err(|e| io_err(&path, e))?;
    let file_len = file.metadata().map_err(|e| io_err(&path, e))?.len();
    let corrupt = |what: String| LogError::Corrupt(format!("{}: {what}", path.display()));

    if file_len < HEADER_LEN {
        if !is_last {
            return Err(corrupt(format!("the file is {file_len} bytes, shorter than a segment header")));
        }
        // The segment was being created when the process stopped: write its header again.
        tracing::warn!(
            path = %path.display(),
            file_len,
            "WAL recovery: the last segment has an incomplete header; rewriting it (the segment held no records)"
        );
        file.set_len(0).map_err(|e| io_err(&path, e))?;
        (&file).write_all(&format::encode_header(partition, base_offset)).map_err(|e| io_err(&path, e))?;
        if sync {
            file.sync_all().map_err(|e| io_err(&path, e))?;
        }
        drop(file);
        return open_info(path, base_offset, true);
    }

    let mut header = [0u8; HEADER_LEN as usize];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut header, 0).map_err(|e| io_err(&path, e))?;
    let h = format::decode_header(&header).map_err(|e| corrupt(format!("byte offset 0: {e}")))?;
    if h.partition != partition || h.base_offset != base_offset {
        return Err(corrupt(format!(
            "the header says partition {} base offset {}, but the file's place says partition {partition} base offset {base_offset}",
            h.partition, h.base_offset
        )));
    }

    let mut index = vec![IndexEntry { offset: base_offset, pos: HEADER_LEN }];
    let mut last_indexed = HEADER_LEN;
    let mut expected = base_offset;
    let mut max_ts: Option<i64> = None;
    let mut valid_len = HEADER_LEN;
    let mut scanner = format::Scanner::new(&file, HEADER_LEN, file_len, RECOVERY_CHUNK);
    loop {
        match scanner.next_record().map_err(|e| io_err(&path, e))? {
            Step::Record(r) => {
                if r.offset != expected {
                    return Err(corrupt(format!(
                        "byte offset {}: record has offset {} where {expected} was expected",
                        r.pos, r.offset
                    )));
                }
                if r.pos >= last_indexed + INDEX_INTERVAL {
                    index.push(IndexEntry { offset: r.offset, pos: r.pos });
                    last_indexed = r.pos;
                }
                max_ts = Some(max_ts.map_or(r.timestamp_ms, |m| m.max(r.timestamp_ms)));
                expected += 1;
                valid_len = r.pos + r.size;
            }
            Step::End => break,
            Step::Bad { pos, why } => {
                if !is_last || !why.is_torn() {
                    return Err(corrupt(format!(
                        "bad record at byte offset {pos} (where offset {expected} should be): {why}; this is not a torn tail of the newest segment, so it is not repaired automatically"
                    )));
                }
                tracing::warn!(
                    path = %path.display(),
                    byte_offset = pos,
                    bytes_dropped = file_len - pos,
                    next_offset = expected,
                    reason = %why,
                    "WAL recovery: truncating a torn tail of the last segment (records after the last fsync that did not reach disk whole)"
                );
                file.set_len(pos).map_err(|e| io_err(&path, e))?;
                if sync {
                    file.sync_all().map_err(|e| io_err(&path, e))?;
                }
                break;
            }
        }
    }
    drop(scanner);
    drop(file);
    let mut info = open_info(path, base_offset, is_last)?;
    info.len = valid_len;
    info.end_offset = expected;
    info.max_timestamp_ms = max_ts;
    info.index = index;
    Ok(info)
}
