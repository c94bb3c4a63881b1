//! The queue's secret-bearing columns, sealed at rest with the data dir's key
//! ([`crate::secret_key`]). Rendered requests (`request`: headers and bodies carry secret inputs),
//! suspended invocations (`state`: the VM's globals hold `inputs`) and error texts (`last_error`,
//! `error_message`: a network error names the URL, a service may echo the request) are stored as
//! a BLOB: [`VERSION`], a random 12-byte nonce, then the ChaCha20-Poly1305 ciphertext and tag,
//! with the table and column as associated data, so a value opens in its own column only (moving
//! a row between `jobs` and `dead_letters` opens and seals it again).
//!
//! Rows of earlier versions hold plaintext: JSON text in `request`, text in the error columns, and
//! in `state` an invocation's bytes, which start with `HPI1` (`invoke::state`). None of them can
//! start with [`VERSION`] (0xFE occurs nowhere in UTF-8, and is not `H`), so [`Sealer::open`] reads
//! such values as they are. [`prepare`] seals them all the first time a version that seals opens
//! the queue (and rebuilds the file: rows delivered earlier left their plaintext in free pages),
//! and keeps a sealed check value in table `meta` so that a replaced key is refused at open
//! ([`EngineError::WrongKey`]) instead of failing row by row.

use std::borrow::Cow;
use std::path::Path;

use chacha20poly1305::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::EngineError;
use crate::secret_key::SecretKey;

/// The first byte of a sealed value (the format's version).
pub(crate) const VERSION: u8 = 0xFE;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// What the key check in `meta` holds, sealed.
const KEY_CHECK: &[u8] = b"hogpipe delivery queue";

/// A sealed column; its name (with the table) is the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Column {
    JobRequest,
    JobState,
    JobError,
    DeadRequest,
    DeadState,
    DeadError,
    KeyCheck,
}

impl Column {
    fn aad(self) -> &'static [u8] {
        match self {
            Column::JobRequest => b"delivery.sqlite:jobs.request",
            Column::JobState => b"delivery.sqlite:jobs.state",
            Column::JobError => b"delivery.sqlite:jobs.last_error",
            Column::DeadRequest => b"delivery.sqlite:dead_letters.request",
            Column::DeadState => b"delivery.sqlite:dead_letters.state",
            Column::DeadError => b"delivery.sqlite:dead_letters.error_message",
            Column::KeyCheck => b"delivery.sqlite:meta.key_check",
        }
    }
}

/// A value could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Beyond ChaCha20-Poly1305's limit for one message (256 GiB).
    #[error("{0} bytes are too many to seal in one value")]
    TooLarge(usize),
}

/// A stored value could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// Sealed, but the key or the column is not the one it was sealed for, or it was altered.
    #[error("the sealed value does not open with this key (sealed with another key, moved, or damaged)")]
    Sealed,
    /// NULL, a number: never written by the engine.
    #[error("a {0} where bytes were expected")]
    NotBytes(&'static str),
}

/// Seals and opens the queue's values.
#[derive(Clone)]
pub(crate) struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn new(key: &SecretKey) -> Sealer {
        Sealer { cipher: ChaCha20Poly1305::new(Key::from_slice(key.as_bytes())) }
    }

    /// `plaintext` sealed for `column`.
    pub fn seal(&self, column: Column, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce, column.aad(), &mut out[1 + NONCE_LEN..])
            .map_err(|_| SealError::TooLarge(plaintext.len()))?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// A stored value of `column` as plaintext: opened when sealed, as it is when an earlier
    /// version wrote it (text, or bytes not starting with [`VERSION`]).
    pub fn open<'a>(&self, column: Column, stored: ValueRef<'a>) -> Result<Cow<'a, [u8]>, OpenError> {
        let bytes = match stored {
            ValueRef::Text(text) => return Ok(Cow::Borrowed(text)),
            ValueRef::Blob(bytes) => bytes,
            ValueRef::Null => return Err(OpenError::NotBytes("NULL")),
            ValueRef::Integer(_) | ValueRef::Real(_) => return Err(OpenError::NotBytes("number")),
        };
        let Some(sealed) = bytes.strip_prefix(&[VERSION]) else {
            return Ok(Cow::Borrowed(bytes));
        };
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Sealed);
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut plaintext = ciphertext.to_vec();
        self.cipher
            .decrypt_in_place_detached(Nonce::from_slice(nonce), column.aad(), &mut plaintext, Tag::from_slice(tag))
            .map_err(|_| OpenError::Sealed)?;
        Ok(Cow::Owned(plaintext))
    }

    /// A value of column `from` sealed for column `to` (a row moving between tables); a
    /// plaintext value of an earlier version comes out sealed.
    pub fn reseal(&self, from: Column, to: Column, stored: ValueRef<'_>) -> Result<Vec<u8>, ResealError> {
        let plaintext = self.open(from, stored)?;
        Ok(self.seal(to, &plaintext)?)
    }

    /// Like [`Sealer::reseal`], but a value that does not open is kept as it is (and logged): a
    /// row is never lost because one of its values is damaged.
    pub fn reseal_or_keep(&self, from: Column, to: Column, stored: Value) -> Value {
        match self.reseal(from, to, (&stored).into()) {
            Ok(sealed) => Value::Blob(sealed),
            Err(e) => {
                tracing::error!(column = ?from, error = %e, "a stored value is moved as it is");
                stored
            }
        }
    }
}

/// Why a value could not move to another column.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResealError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// Checks that `key` opens the queue at `path` (its tables created) and, the first time a version
/// that seals opens it, seals what an earlier version left in plaintext. A wrong key changes
/// nothing and is [`EngineError::WrongKey`].
pub(crate) fn prepare(conn: &mut Connection, path: &Path, key: &SecretKey, sealer: &Sealer) -> Result<(), EngineError> {
    let store_err = |source| EngineError::Store { path: path.to_path_buf(), source };
    let wrong = || EngineError::WrongKey { path: path.to_path_buf(), key: key.origin().to_string() };
    if let Some(check) = key_check(conn).map_err(store_err)? {
        return if opens_check(sealer, &check) { Ok(()) } else { Err(wrong()) };
    }
    // Zeroes what the sealing rewrites, so the plaintext does not stay behind in free space.
    conn.pragma_update(None, "secure_delete", true).map_err(store_err)?;
    let sealed = first_seal(conn, sealer);
    conn.pragma_update(None, "secure_delete", false).map_err(store_err)?;
    match sealed.map_err(store_err)? {
        FirstSeal::WrongKey => Err(wrong()),
        FirstSeal::Checked => Ok(()),
        FirstSeal::Sealed(rows) => {
            // Jobs that earlier versions delivered (deleted rows) left their plaintext in free
            // space and free pages: rebuild the file (once; nearly free for a new queue). Then
            // copy the write-ahead log, which may hold pages from before, into the file and empty
            // it. Either may be kept from completing by another process's reader: not fatal.
            if let Err(e) = conn.execute_batch("VACUUM") {
                tracing::warn!(path = %path.display(), error = %e, "cannot rebuild the delivery store after sealing it");
            }
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            if rows > 0 {
                tracing::info!(path = %path.display(), rows, "sealed the rows an earlier version stored in plaintext");
            }
            Ok(())
        }
    }
}

enum FirstSeal {
    WrongKey,
    /// Another process wrote the key check meanwhile, and the key opens it.
    Checked,
    /// This call wrote the key check, after sealing this many rows.
    Sealed(usize),
}

fn key_check(conn: &Connection) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.query_row("SELECT value FROM meta WHERE name = 'key_check'", [], |r| r.get(0)).optional()
}

fn opens_check(sealer: &Sealer, check: &[u8]) -> bool {
    // A plaintext check (bytes not starting with VERSION) would "open" as itself: compare.
    sealer
        .open(Column::KeyCheck, ValueRef::Blob(check))
        .is_ok_and(|p| check.first() == Some(&VERSION) && *p == *KEY_CHECK)
}

/// One transaction: seals the plaintext rows and writes the key check.
fn first_seal(conn: &mut Connection, sealer: &Sealer) -> rusqlite::Result<FirstSeal> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have done it meanwhile.
    if let Some(check) = key_check(&tx)? {
        return Ok(if opens_check(sealer, &check) { FirstSeal::Checked } else { FirstSeal::WrongKey });
    }
    // Sealed rows without a check (it was deleted): they must open with this key.
    for (column, sql) in [
        (Column::JobRequest, "SELECT request FROM jobs WHERE typeof(request) = 'blob' LIMIT 1"),
        (Column::DeadRequest, "SELECT request FROM dead_letters WHERE typeof(request) = 'blob' LIMIT 1"),
    ] {
        let sample: Option<Value> = tx.query_row(sql, [], |r| r.get(0)).optional()?;
        if let Some(sample) = sample {
            if sealer.open(column, (&sample).into()).is_err() {
                return Ok(FirstSeal::WrongKey);
            }
        }
    }
    let mut rows = 0;
    for (table, error_column, columns) in [
        ("jobs", "last_error", [Column::JobRequest, Column::JobState, Column::JobError]),
        ("dead_letters", "error_message", [Column::DeadRequest, Column::DeadState, Column::DeadError]),
    ] {
        let plaintext: Vec<(i64, [Value; 3])> = {
            let mut stmt = tx.prepare(&format!(
                "SELECT id, request, state, {error_column} FROM {table}
                 WHERE typeof(request) = 'text' OR typeof({error_column}) = 'text'
                    OR substr(state, 1, 1) IS NOT x'{VERSION:02X}'"
            ))?;
            let found = stmt.query_map([], |r| Ok((r.get(0)?, [r.get(1)?, r.get(2)?, r.get(3)?])))?;
            found.collect::<rusqlite::Result<_>>()?
        };
        let mut update =
            tx.prepare(&format!("UPDATE {table} SET request = ?2, state = ?3, {error_column} = ?4 WHERE id = ?1"))?;
        for (id, values) in plaintext {
            let [request, state, error] = values;
            let [request, state, error] =
                [(columns[0], request), (columns[1], state), (columns[2], error)].map(|(column, value)| match value {
                    Value::Null => Value::Null,
                    value => sealer.reseal_or_keep(column, column, value),
                });
            update.execute(params![id, request, state, error])?;
            rows += 1;
        }
    }
    let check =
        sealer.seal(Column::KeyCheck, KEY_CHECK).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.execute("INSERT INTO meta (name, value) VALUES ('key_check', ?1)", params![check])?;
    tx.commit()?;
    Ok(FirstSeal::Sealed(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&SecretKey::from_bytes([byte; 32], "test"))
    }

    #[test]
    fn values_open_in_their_own_column_with_their_own_key_only() {
        let s = sealer(1);
        let sealed = s.seal(Column::JobRequest, b"{\"url\":\"SENTINEL\"}").expect("seal");
        assert_eq!(sealed[0], VERSION);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + 18 + TAG_LEN);
        assert!(!sealed.windows(8).any(|w| w == b"SENTINEL"));
        let opened = s.open(Column::JobRequest, ValueRef::Blob(&sealed)).expect("open");
        assert_eq!(&*opened, b"{\"url\":\"SENTINEL\"}");
        assert!(s.open(Column::JobState, ValueRef::Blob(&sealed)).is_err(), "another column");
        assert!(s.open(Column::DeadRequest, ValueRef::Blob(&sealed)).is_err(), "another table");
        assert!(sealer(2).open(Column::JobRequest, ValueRef::Blob(&sealed)).is_err(), "another key");
        let mut altered = sealed.clone();
        altered[20] ^= 1;
        assert!(s.open(Column::JobRequest, ValueRef::Blob(&altered)).is_err(), "altered");
        assert!(s.open(Column::JobRequest, ValueRef::Blob(&sealed[..20])).is_err(), "cut");
        // Two seals of one value differ (fresh nonces).
        assert_ne!(s.seal(Column::JobRequest, b"x").expect("seal"), s.seal(Column::JobRequest, b"x").expect("seal"));
        let moved = s.reseal(Column::JobRequest, Column::DeadRequest, ValueRef::Blob(&sealed)).expect("reseal");
        assert_eq!(&*s.open(Column::DeadRequest, ValueRef::Blob(&moved)).expect("open"), b"{\"url\":\"SENTINEL\"}");
    }

    #[test]
    fn plaintext_of_earlier_versions_is_read_as_it_is() {
        let s = sealer(1);
        // What earlier versions wrote: JSON text, error text, and invocation states (`HPI1…`),
        // or any bytes an embedding gave as the opaque state.
        assert_eq!(crate::invoke::state::MAGIC[0], b'H');
        assert_ne!(crate::invoke::state::MAGIC[0], VERSION);
        assert!(std::str::from_utf8(&[VERSION]).is_err() && std::str::from_utf8(&[b'a', VERSION]).is_err());
        assert_eq!(
            &*s.open(Column::JobRequest, ValueRef::Text(b"{\"method\":\"POST\"}")).expect("text"),
            b"{\"method\":\"POST\"}"
        );
        assert_eq!(
            &*s.open(Column::JobState, ValueRef::Blob(b"HPI1\x02\0\0\0{}")).expect("state"),
            b"HPI1\x02\0\0\0{}"
        );
        assert_eq!(&*s.open(Column::JobState, ValueRef::Blob(b"")).expect("empty"), b"");
        assert!(s.open(Column::JobState, ValueRef::Null).is_err());
        let stored = s.reseal(Column::JobState, Column::JobState, ValueRef::Blob(b"HPI1")).expect("seal");
        assert_eq!(stored[0], VERSION);
    }
}
