//! The file sink: events as JSON lines (one [`Event`] per line) in files
//! `events-YYYYMMDDTHHMMSS-N.jsonl` (UTC creation time, `N` counting up across the directory),
//! fsynced per batch and rotated by size and/or age, optionally keeping only the last K files.
//!
//! Crash safety: a batch is written, then fsynced, and only then acknowledged. A crash in the
//! middle of a write can leave a torn last line in the newest file; opening the sink truncates it,
//! so readers never see half a line once the sink is back. A failed write is truncated away at once.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDateTime, Utc};
use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::{EventSink, SinkError};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "events-";
const SUFFIX: &str = ".jsonl";
const TIME_FORMAT: &str = "%Y%m%dT%H%M%S";

/// `[[sinks]] type = "file"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Directory of the files; relative paths are under the data dir. Created if missing.
    pub dir: PathBuf,
    /// Start a new file before one would grow past this many bytes (a single line bigger than
    /// this gets a file of its own); 0 means no size limit. Default 128 MiB.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Start a new file when the current one is this many seconds old (checked on write);
    /// 0 means no age limit. Default 3600.
    #[serde(default = "default_max_age_secs")]
    pub max_age_secs: u64,
    /// Keep only the newest this many files, deleting older ones on rotation; 0 (default) keeps all.
    #[serde(default)]
    pub keep: usize,
}

fn default_max_bytes() -> u64 {
    128 << 20
}

fn default_max_age_secs() -> u64 {
    3600
}

impl FileSinkConfig {
    /// A config for `dir` with the defaults.
    pub fn new(dir: impl Into<PathBuf>) -> FileSinkConfig {
        FileSinkConfig {
            dir: dir.into(),
            max_bytes: default_max_bytes(),
            max_age_secs: default_max_age_secs(),
            keep: 0,
        }
    }
}

/// Rotated JSON-lines files; see the module docs.
#[derive(Debug)]
pub struct FileSink {
    dir: PathBuf,
    config: FileSinkConfig,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The file being appended to; `None` until the first write after opening an empty
    /// directory or after a rotation.
    current: Option<Current>,
    /// Sequence number of the next file.
    next_seq: u64,
    /// Files of this sink, oldest first, the current one last (for `keep`).
    files: VecDeque<PathBuf>,
}

#[derive(Debug)]
struct Current {
    file: File,
    path: PathBuf,
    created: DateTime<Utc>,
    /// Bytes known to be whole lines.
    len: u64,
    /// A failed write left bytes past `len` that could not be truncated yet.
    dirty: bool,
}

/// A file of the sink found in its directory.
struct Found {
    seq: u64,
    created: DateTime<Utc>,
    path: PathBuf,
}

fn parse_name(name: &str) -> Option<(DateTime<Utc>, u64)> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (time, seq) = rest.split_once('-')?;
    let created = NaiveDateTime::parse_from_str(time, TIME_FORMAT).ok()?.and_utc();
    Some((created, seq.parse().ok()?))
}

impl FileSink {
    /// Opens the sink over `config.dir` (under `data_dir` when relative), creating the directory,
    /// and truncates a torn last line of the newest file, which later writes continue.
    pub fn open(data_dir: &Path, config: FileSinkConfig) -> Result<FileSink, SinkError> {
        let dir = data_dir.join(&config.dir);
        let err = |what: &str, e: std::io::Error| SinkError {
            sink: format!("file sink {}", dir.display()),
            message: format!("{what}: {e}"),
        };
        std::fs::create_dir_all(&dir).map_err(|e| err("creating the directory", e))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| err("listing the directory", e))? {
            let entry = entry.map_err(|e| err("listing the directory", e))?;
            let name = entry.file_name();
            if let Some((created, seq)) = name.to_str().and_then(parse_name) {
                found.push(Found { seq, created, path: entry.path() });
            }
        }
        found.sort_by_key(|f| f.seq);
        let next_seq = found.last().map_or(0, |f| f.seq + 1);
        let current = match found.last() {
            Some(last) => {
                let (file, len) = repair(&last.path).map_err(|e| SinkError {
                    sink: format!("file sink {}", dir.display()),
                    message: format!("opening {}: {e}", last.path.display()),
                })?;
                Some(Current { file, path: last.path.clone(), created: last.created, len, dirty: false })
            }
            None => None,
        };
        let files = found.into_iter().map(|f| f.path).collect();
        Ok(FileSink { dir, config, state: Mutex::new(State { current, next_seq, files }) })
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn error(&self, message: String) -> SinkError {
        SinkError { sink: format!("file sink {}", self.dir.display()), message }
    }

    /// Creates the next file (and makes its directory entry durable).
    fn create(&self, state: &mut State, now: DateTime<Utc>) -> Result<Current, SinkError> {
        loop {
            let seq = state.next_seq;
            state.next_seq += 1;
            let path = self.dir.join(format!("{PREFIX}{}-{seq}{SUFFIX}", now.format(TIME_FORMAT)));
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => {
                    File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| {
                        self.error(format!("syncing the directory after creating {}: {e}", path.display()))
                    })?;
                    state.files.push_back(path.clone());
                    self.prune(state);
                    return Ok(Current { file, path, created: now, len: 0, dirty: false });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.error(format!("creating {}: {e}", path.display()))),
            }
        }
    }

    /// Deletes the oldest files beyond `keep`.
    fn prune(&self, state: &mut State) {
        if self.config.keep == 0 {
            return;
        }
        while state.files.len() > self.config.keep {
            let Some(old) = state.files.pop_front() else { break };
            if let Err(e) = std::fs::remove_file(&old) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %old.display(), error = %e, "file sink: could not delete an old file");
                }
            }
        }
    }

    fn too_old(&self, current: &Current, now: DateTime<Utc>) -> bool {
        self.config.max_age_secs > 0
            && now.signed_duration_since(current.created).num_seconds() >= self.config.max_age_secs as i64
    }
}

/// Opens `path` for appending after truncating anything past its last newline; returns the file
/// and its length.
fn repair(path: &Path) -> std::io::Result<(File, u64)> {
    let mut file = OpenOptions::new().read(true).append(true).open(path)?;
    let len = file.metadata()?.len();
    let whole = whole_lines_len(&mut file, len)?;
    if whole != len {
        tracing::warn!(file = %path.display(), torn_bytes = len - whole, "file sink: truncating a torn last line");
        file.set_len(whole)?;
        file.sync_data()?;
    }
    Ok((file, whole))
}

/// The length of `file` up to and including its last newline (0 when it has none).
fn whole_lines_len(file: &mut File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(pos) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + pos as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

impl EventSink for FileSink {
    fn write(&self, events: &[&Event]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(events.len() * 512);
        let mut line_ends = Vec::with_capacity(events.len());
        for event in events {
            serde_json::to_writer(&mut buf, event).map_err(|e| self.error(format!("event {}: {e}", event.uuid)))?;
            buf.push(b'\n');
            line_ends.push(buf.len());
        }
        let mut state = self.state.lock().map_err(|_| self.error("a previous write panicked".into()))?;
        let state = &mut *state;
        let now = Utc::now();
        if let Some(current) = &mut state.current {
            if current.dirty {
                current.file.set_len(current.len).and_then(|()| current.file.sync_data()).map_err(|e| {
                    self.error(format!("truncating the failed write at the end of {}: {e}", current.path.display()))
                })?;
                current.dirty = false;
            }
            if self.too_old(current, now) {
                state.current = None;
            }
        }
        let max = if self.config.max_bytes == 0 { u64::MAX } else { self.config.max_bytes };
        let (mut start, mut line) = (0usize, 0usize);
        while start < buf.len() {
            let mut current = match state.current.take() {
                Some(current) => current,
                None => self.create(state, now)?,
            };
            // The lines that fit; at least one in a fresh file.
            let room = max.saturating_sub(current.len);
            let mut end = start;
            while line < line_ends.len() && (line_ends[line] - start) as u64 <= room {
                end = line_ends[line];
                line += 1;
            }
            if end == start && current.len == 0 {
                end = line_ends[line];
                line += 1;
            }
            if end > start {
                if let Err(e) = current.file.write_all(&buf[start..end]) {
                    current.dirty = current.file.set_len(current.len).is_err();
                    let message = format!("writing {}: {e}", current.path.display());
                    state.current = Some(current);
                    return Err(self.error(message));
                }
                current.len += (end - start) as u64;
                start = end;
            }
            if start < buf.len() {
                // Full: make it durable before moving on to the next file.
                current.file.sync_data().map_err(|e| self.error(format!("syncing {}: {e}", current.path.display())))?;
            } else {
                let synced = current.file.sync_data();
                let path = current.path.display().to_string();
                state.current = Some(current);
                synced.map_err(|e| self.error(format!("syncing {path}: {e}")))?;
            }
        }
        Ok(())
    }
}
