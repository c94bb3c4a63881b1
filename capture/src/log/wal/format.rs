//! On-disk format of WAL segments: the segment header, record framing and a buffered scanner that
//! walks records in a byte range of a segment file, checking every checksum.
//!
//! A segment file is a 32-byte header followed by records, all little-endian:
//!
//! ```text
//! header:  magic "HPWALSEG" (8) | version u32 | partition u32 | base_offset u64
//!          | crc32c of the previous 24 bytes u32 | reserved u32 (zero)
//! record:  body_len u32 | crc u32 | offset u64 | timestamp_ms i64 | key_len u32 | key | value
//! ```
//!
//! `crc` is CRC-32C over `body_len` followed by the body (everything after `crc`), so a damaged
//! length is caught too. `body_len` is at least [`MIN_BODY`] (a record of zeroes never passes).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Segment file magic.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"HPWALSEG";
/// Version of the segment format written by this code.
pub(crate) const SEGMENT_VERSION: u32 = 1;
/// Size of the segment header.
pub(crate) const HEADER_LEN: u64 = 32;
/// `body_len` + `crc`.
pub(crate) const FRAME_LEN: usize = 8;
/// Fixed part of a body: offset, timestamp, key length.
pub(crate) const MIN_BODY: usize = 20;
/// Bytes a record takes on disk besides its key and value.
pub(crate) const RECORD_OVERHEAD: usize = FRAME_LEN + MIN_BODY;

/// Encodes a segment header.
pub(crate) fn encode_header(partition: u32, base_offset: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&partition.to_le_bytes());
    h[16..24].copy_from_slice(&base_offset.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) partition: u32,
    pub(crate) base_offset: u64,
}

/// Decodes and checks a segment header; the error says what is wrong with it.
pub(crate) fn decode_header(h: &[u8; HEADER_LEN as usize]) -> Result<SegmentHeader, String> {
    if h[0..8] != SEGMENT_MAGIC {
        return Err("not a hogpipe WAL segment (bad magic)".to_string());
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    let stored = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    let computed = crc32c::crc32c(&h[0..24]);
    if stored != computed {
        return Err(format!("segment header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"));
    }
    if version != SEGMENT_VERSION {
        return Err(format!(
            "segment format version {version} is not supported (this build reads version {SEGMENT_VERSION})"
        ));
    }
    Ok(SegmentHeader {
        partition: u32::from_le_bytes([h[12], h[13], h[14], h[15]]),
        base_offset: u64::from_le_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]),
    })
}

/// Appends one framed record to `buf`. The caller has checked that the body fits in a `u32`.
pub(crate) fn encode_record(buf: &mut Vec<u8>, offset: u64, timestamp_ms: i64, key: &[u8], value: &[u8]) {
    let body_len = MIN_BODY + key.len() + value.len();
    let start = buf.len();
    buf.reserve(FRAME_LEN + body_len);
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0u8; 4]);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    let crc = record_crc(&buf[start..start + 4], &buf[start + FRAME_LEN..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn record_crc(len_bytes: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(len_bytes), body)
}

/// A record as it lies in the scanner's buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordView<'a> {
    /// File position of the record's frame.
    pub(crate) pos: u64,
    /// Bytes the record takes in the file (frame included).
    pub(crate) size: u64,
    pub(crate) offset: u64,
    pub(crate) timestamp_ms: i64,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

/// Why the bytes at a position are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BadRecord {
    /// The range ends inside the record (a torn write).
    Incomplete { needed: u64, available: u64 },
    /// `body_len` is smaller than the fixed part of a body.
    BadLength(u32),
    /// The checksum does not match.
    Checksum { stored: u32, computed: u32 },
    /// The checksum matches but the fields are inconsistent (a bug, or deliberate damage).
    Malformed(&'static str),
}

impl BadRecord {
    /// Whether this is what a write cut short by a crash looks like (as opposed to a record that
    /// was written whole and then damaged in a way a checksum cannot explain).
    pub(crate) fn is_torn(&self) -> bool {
        !matches!(self, BadRecord::Malformed(_))
    }
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadRecord::Incomplete { needed, available } => {
                write!(f, "incomplete record ({needed} bytes needed, {available} left in the segment)")
            }
            BadRecord::BadLength(len) => write!(f, "impossible record length {len}"),
            BadRecord::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            BadRecord::Malformed(what) => write!(f, "malformed record: {what}"),
        }
    }
}

/// One step of a [`Scanner`].
pub(crate) enum Step<'a> {
    /// A valid record.
    Record(RecordView<'a>),
    /// The scan reached the end of its range exactly at a record boundary.
    End,
    /// The bytes at `pos` are not a valid record.
    Bad { pos: u64, why: BadRecord },
}

thread_local! {
    /// The buffer of this thread's last scanner, kept for the next: a reader polls the log in
    /// rounds, and a fresh zeroed buffer each round costs page faults.
    static SCAN_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Largest scanner buffer kept for reuse.
const KEPT_BUFFER: usize = 4 << 20;

/// Reads records from `[pos, limit)` of a file with positional reads through one reusable buffer.
pub(crate) struct Scanner<'f> {
    file: &'f File,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_pos: u64,
    /// Valid bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    limit: u64,
}

impl<'f> Scanner<'f> {
    /// A scanner over `[pos, limit)` reading at most `chunk` bytes at a time (more when one record
    /// is larger).
    pub(crate) fn new(file: &'f File, pos: u64, limit: u64, chunk: usize) -> Scanner<'f> {
        let want = limit.saturating_sub(pos).min(chunk as u64) as usize;
        let mut buf = SCAN_BUFFER.with(std::cell::Cell::take);
        buf.resize(want.max(FRAME_LEN + MIN_BODY), 0);
        Scanner { file, buf, buf_pos: pos, start: 0, end: 0, limit }
    }

    /// File position of the next record.
    pub(crate) fn position(&self) -> u64 {
        self.buf_pos + self.start as u64
    }

    /// Makes at least `need` bytes available at `start` (the caller has checked they are within
    /// `limit`).
    fn fill(&mut self, need: usize) -> io::Result<()> {
        if self.end - self.start >= need {
            return Ok(());
        }
        if self.start + need > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.buf_pos += self.start as u64;
            self.end -= self.start;
            self.start = 0;
            if need > self.buf.len() {
                self.buf.resize(need, 0);
            }
        }
        while self.end - self.start < need {
            let file_pos = self.buf_pos + self.end as u64;
            let room = (self.buf.len() - self.end) as u64;
            let n = room.min(self.limit - file_pos) as usize;
            let read = self.file.read_at(&mut self.buf[self.end..self.end + n], file_pos)?;
            if read == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the file ends at byte {file_pos}, before the expected end {}", self.limit),
                ));
            }
            self.end += read;
        }
        Ok(())
    }

    /// The next record, the end of the range, or why the next bytes are not a record.
    pub(crate) fn next_record(&mut self) -> io::Result<Step<'_>> {
        let pos = self.position();
        let available = self.limit.saturating_sub(pos);
        if available == 0 {
            return Ok(Step::End);
        }
        if available < FRAME_LEN as u64 {
            let why = BadRecord::Incomplete { needed: FRAME_LEN as u64, available };
            return Ok(Step::Bad { pos, why });
        }
        self.fill(FRAME_LEN)?;
        let f = &self.buf[self.start..self.start + FRAME_LEN];
        let body_len = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
        let stored = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
        if (body_len as usize) < MIN_BODY {
            return Ok(Step::Bad { pos, why: BadRecord::BadLength(body_len) });
        }
        let size = FRAME_LEN as u64 + u64::from(body_len);
        if size > available {
            let why = BadRecord::Incomplete { needed: size, available };
            return Ok(Step::Bad { pos, why });
        }
        self.fill(size as usize)?;
        let rec_start = self.start;
        let rec = &self.buf[rec_start..rec_start + size as usize];
        let body = &rec[FRAME_LEN..];
        let computed = record_crc(&rec[0..4], body);
        if computed != stored {
            return Ok(Step::Bad { pos, why: BadRecord::Checksum { stored, computed } });
        }
        let offset = read_u64(body, 0);
        let timestamp_ms = read_u64(body, 8) as i64;
        let key_len = u32::from_le_bytes([body[16], body[17], body[18], body[19]]) as usize;
        if key_len > body.len() - MIN_BODY {
            return Ok(Step::Bad { pos, why: BadRecord::Malformed("key length exceeds the record") });
        }
        self.start += size as usize;
        let key_start = rec_start + FRAME_LEN + MIN_BODY;
        let (key, value) = self.buf[key_start..rec_start + size as usize].split_at(key_len);
        Ok(Step::Record(RecordView { pos, size, offset, timestamp_ms, key, value }))
    }
}

impl Drop for Scanner<'_> {
    fn drop(&mut self) {
        if self.buf.capacity() <= KEPT_BUFFER {
            let buf = std::mem::take(&mut self.buf);
            SCAN_BUFFER.with(|b| b.set(buf));
        }
    }
}

/// Little-endian `u64` at `at` (the caller has checked the length).
fn read_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
