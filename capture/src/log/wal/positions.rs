//! Committed consumer positions, one file per consumer group: `groups/<group>.pos`.
//!
//! The file holds the next offset to read for every partition. It is replaced atomically on each
//! commit (write `<group>.pos.tmp`, fsync, rename, fsync the directory), so after a crash it holds
//! either the previous or the new positions, never a mix. Format, little-endian: magic "HPWALPOS",
//! version u32, partition count u32, one u64 per partition (`u64::MAX` = nothing committed), then
//! CRC-32C of everything before it.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::segment::{io_err, sync_dir};
use crate::log::LogError;

const MAGIC: [u8; 8] = *b"HPWALPOS";
const VERSION: u32 = 1;
const NONE: u64 = u64::MAX;
/// Longest accepted group name.
pub(crate) const MAX_GROUP_LEN: usize = 100;

/// Checks a consumer group name: 1 to 100 characters from `A-Z a-z 0-9 _ . -`.
pub(crate) fn validate_group(group: &str) -> Result<(), LogError> {
    let ok = !group.is_empty()
        && group.len() <= MAX_GROUP_LEN
        && group.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        let shown: String = group.chars().take(MAX_GROUP_LEN + 10).collect();
        Err(LogError::OutOfRange(format!(
            "invalid consumer group name {shown:?}: use 1 to {MAX_GROUP_LEN} characters from A-Z, a-z, 0-9, '_', '.' and '-'"
        )))
    }
}

/// Every group's committed positions, loaded at open and written through on commit.
pub(crate) struct Positions {
    dir: PathBuf,
    partitions: u32,
    sync: bool,
    groups: HashMap<String, Vec<u64>>,
}

impl Positions {
    /// Loads every `*.pos` file of `dir` (created if missing).
    pub(crate) fn load(dir: PathBuf, partitions: u32, sync: bool) -> Result<Positions, LogError> {
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        let mut groups = HashMap::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(group) = name.strip_suffix(".pos") else { continue };
            if validate_group(group).is_err() {
                continue;
            }
            let path = entry.path();
            let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
            groups.insert(group.to_string(), decode(&bytes, partitions, &path)?);
        }
        Ok(Positions { dir, partitions, sync, groups })
    }

    /// The committed next offset of `group` in `partition`.
    pub(crate) fn get(&self, group: &str, partition: u32) -> Option<u64> {
        let v = *self.groups.get(group)?.get(partition as usize)?;
        (v != NONE).then_some(v)
    }

    /// Records `next_offset` for `group` in `partition`, durably.
    pub(crate) fn set(&mut self, group: &str, partition: u32, next_offset: u64) -> Result<(), LogError> {
        let mut positions = self.groups.get(group).cloned().unwrap_or_else(|| vec![NONE; self.partitions as usize]);
        if let Some(slot) = positions.get_mut(partition as usize) {
            *slot = next_offset;
        }
        let path = self.dir.join(format!("{group}.pos"));
        let tmp = self.dir.join(format!("{group}.pos.tmp"));
        let bytes = encode(&positions);
        let mut f: File =
            OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| io_err(&tmp, e))?;
        if self.sync {
            f.sync_data().map_err(|e| io_err(&tmp, e))?;
        }
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| io_err(&path, e))?;
        if self.sync {
            sync_dir(&self.dir)?;
        }
        self.groups.insert(group.to_string(), positions);
        Ok(())
    }
}

fn encode(positions: &[u64]) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + positions.len() * 8);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(positions.len() as u32).to_le_bytes());
    for p in positions {
        b.extend_from_slice(&p.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn decode(b: &[u8], partitions: u32, path: &Path) -> Result<Vec<u64>, LogError> {
    let corrupt = |what: &str| LogError::Corrupt(format!("{}: {what}", path.display()));
    let expected_len = 16 + partitions as usize * 8 + 4;
    if b.len() < 16 || b[0..8] != MAGIC {
        return Err(corrupt("not a hogpipe consumer positions file (bad magic)"));
    }
    let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    if word(8) != VERSION {
        return Err(corrupt(&format!("positions format version {} is not supported", word(8))));
    }
    if word(12) != partitions {
        return Err(corrupt(&format!(
            "the file has positions for {} partitions but the log has {partitions}",
            word(12)
        )));
    }
    if b.len() != expected_len {
        return Err(corrupt(&format!("the file is {} bytes, {expected_len} expected", b.len())));
    }
    let body = expected_len - 4;
    if crc32c::crc32c(&b[..body]) != word(body) {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(b[16..body]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}
