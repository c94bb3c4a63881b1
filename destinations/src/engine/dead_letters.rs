//! Dead letters: jobs that exhausted their attempts, kept with their request and last error;
//! listed, inspected, replayed (moved back to the queue with attempts reset) or discarded.
//! [`DeadLetters`] opens the data dir's store directly, so the CLI works while a server runs
//! (SQLite serializes the writers; the running engine notices replayed jobs by polling). Requests,
//! states and error texts are sealed on disk (`seal`); a replay seals them again for `jobs`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::Serialize;

use super::seal::{Column, Sealer};
use super::{lock, now_ms, store, EngineError, DB_FILE};
use crate::http::HttpRequest;
use crate::secret_key::SecretKey;

/// Why the last attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    /// The HTTP status, when the service answered.
    pub status: Option<u16>,
    /// The start of the response body, or the network error.
    pub message: String,
}

impl fmt::Display for LastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "HTTP {status}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A job that exhausted its attempts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The dead letter's id (what `replay`, `show` and `discard` take).
    pub id: i64,
    /// The job's id while it was queued.
    pub job_id: i64,
    /// The destination function.
    pub function_id: String,
    /// The team.
    pub team_id: u64,
    /// The request that failed.
    pub request: HttpRequest,
    /// The suspended invocation (not serialized: it may hold secret inputs).
    #[serde(skip)]
    pub state: Vec<u8>,
    /// Attempts made.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: LastError,
    /// When the job was first queued (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When it became a dead letter (ms since the Unix epoch).
    pub failed_at_ms: i64,
}

/// The dead letters of a data dir, without a running engine.
#[derive(Debug)]
pub struct DeadLetters {
    path: PathBuf,
    conn: Mutex<Connection>,
    sealer: Sealer,
}

const COLUMNS: &str = "id, job_id, function_id, team_id, request, state, attempts, error_status, error_message, \
                       created_at, failed_at";

impl DeadLetters {
    /// Opens the store an engine keeps in `dir` ([`EngineError::Missing`] when there is none),
    /// sealed with `key` ([`EngineError::WrongKey`] when it was sealed with another).
    pub fn open(dir: &Path, key: &SecretKey) -> Result<DeadLetters, EngineError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(EngineError::Missing(path));
        }
        let mut conn =
            Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|source| EngineError::Store { path: path.clone(), source })?;
        let sealer = Sealer::new(key);
        store::prepare(&mut conn, &path, key, &sealer)?;
        Ok(DeadLetters { path, conn: Mutex::new(conn), sealer })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> EngineError + '_ {
        |source| EngineError::Store { path: self.path.clone(), source }
    }

    /// Dead letters, oldest first, of one function or of all.
    pub fn list(&self, function_id: Option<&str>) -> Result<Vec<DeadLetter>, EngineError> {
        let conn = lock(&self.conn);
        let raw = match function_id {
            Some(f) => {
                let mut stmt = conn
                    .prepare_cached(&format!("SELECT {COLUMNS} FROM dead_letters WHERE function_id = ?1 ORDER BY id"))
                    .map_err(self.err())?;
                let rows = stmt.query_map(params![f], RawDeadLetter::from_row).map_err(self.err())?;
                rows.collect::<Result<Vec<_>, _>>().map_err(self.err())?
            }
            None => {
                let mut stmt = conn
                    .prepare_cached(&format!("SELECT {COLUMNS} FROM dead_letters ORDER BY id"))
                    .map_err(self.err())?;
                let rows = stmt.query_map([], RawDeadLetter::from_row).map_err(self.err())?;
                rows.collect::<Result<Vec<_>, _>>().map_err(self.err())?
            }
        };
        raw.into_iter().map(|r| r.decode(&self.path, &self.sealer)).collect()
    }

    /// One dead letter.
    pub fn get(&self, id: i64) -> Result<Option<DeadLetter>, EngineError> {
        let conn = lock(&self.conn);
        let raw = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM dead_letters WHERE id = ?1"),
                params![id],
                RawDeadLetter::from_row,
            )
            .optional()
            .map_err(self.err())?;
        raw.map(|r| r.decode(&self.path, &self.sealer)).transpose()
    }

    /// Moves a dead letter back to the queue with its attempts reset; returns the new job's id.
    pub fn replay(&self, id: i64) -> Result<i64, EngineError> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.err())?;
        let mut jobs = self.requeue(&tx, "WHERE id = ?1", params![id])?;
        let Some(job) = jobs.pop() else {
            return Err(EngineError::NoSuchDeadLetter(id));
        };
        tx.commit().map_err(self.err())?;
        Ok(job)
    }

    /// Moves every dead letter of a function back to the queue; returns how many.
    pub fn replay_all(&self, function_id: &str) -> Result<usize, EngineError> {
        let mut conn = lock(&self.conn);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.err())?;
        let jobs = self.requeue(&tx, "WHERE function_id = ?1", params![function_id])?;
        tx.commit().map_err(self.err())?;
        Ok(jobs.len())
    }

    /// Moves the dead letters `filter` selects to `jobs` (in id order), their request and state
    /// sealed again for their new table; returns the new job ids. A value that does not open
    /// fails the whole move ([`EngineError::Corrupt`]), which then changes nothing. `tx` must be
    /// IMMEDIATE: it reads before it writes, and a deferred one that began reading cannot wait for
    /// the engine's writer to finish (SQLite answers "database is locked" at once).
    fn requeue(
        &self,
        tx: &Transaction<'_>,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<i64>, EngineError> {
        let rows: Vec<(i64, String, i64, Value, Value, i64)> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT id, function_id, team_id, request, state, created_at FROM dead_letters {filter} ORDER BY id"
                ))
                .map_err(self.err())?;
            let rows = stmt
                .query_map(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
                .map_err(self.err())?;
            rows.collect::<Result<_, _>>().map_err(self.err())?
        };
        let now = now_ms();
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO jobs (function_id, team_id, request, state, attempts, next_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
            )
            .map_err(self.err())?;
        let mut delete = tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1").map_err(self.err())?;
        let mut jobs = Vec::with_capacity(rows.len());
        for (id, function_id, team_id, request, state, created_at) in rows {
            let corrupt = |what: &str, e: &dyn std::fmt::Display| EngineError::Corrupt {
                path: self.path.clone(),
                table: "dead_letters",
                id,
                message: format!("{what}: {e}"),
            };
            let request = self
                .sealer
                .reseal(Column::DeadRequest, Column::JobRequest, (&request).into())
                .map_err(|e| corrupt("request", &e))?;
            let state = self
                .sealer
                .reseal(Column::DeadState, Column::JobState, (&state).into())
                .map_err(|e| corrupt("state", &e))?;
            insert.execute(params![function_id, team_id, request, state, now, created_at]).map_err(self.err())?;
            jobs.push(tx.last_insert_rowid());
            delete.execute(params![id]).map_err(self.err())?;
        }
        Ok(jobs)
    }

    /// Deletes a dead letter; false when there was none with this id.
    pub fn discard(&self, id: i64) -> Result<bool, EngineError> {
        let conn = lock(&self.conn);
        let n = conn.execute("DELETE FROM dead_letters WHERE id = ?1", params![id]).map_err(self.err())?;
        Ok(n > 0)
    }

    /// Jobs pending (queued or waiting for a retry), of one function or of all.
    pub fn pending(&self, function_id: Option<&str>) -> Result<u64, EngineError> {
        let conn = lock(&self.conn);
        let n: i64 = match function_id {
            Some(f) => conn.query_row("SELECT COUNT(*) FROM jobs WHERE function_id = ?1", params![f], |r| r.get(0)),
            None => conn.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get(0)),
        }
        .map_err(self.err())?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// A row as stored, before its request is decoded.
struct RawDeadLetter {
    id: i64,
    job_id: i64,
    function_id: String,
    team_id: i64,
    request: Value,
    state: Value,
    attempts: i64,
    status: Option<i64>,
    message: Value,
    created_at: i64,
    failed_at: i64,
}

impl RawDeadLetter {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<RawDeadLetter> {
        Ok(RawDeadLetter {
            id: row.get(0)?,
            job_id: row.get(1)?,
            function_id: row.get(2)?,
            team_id: row.get(3)?,
            request: row.get(4)?,
            state: row.get(5)?,
            attempts: row.get(6)?,
            status: row.get(7)?,
            message: row.get(8)?,
            created_at: row.get(9)?,
            failed_at: row.get(10)?,
        })
    }

    fn decode(self, path: &Path, sealer: &Sealer) -> Result<DeadLetter, EngineError> {
        let corrupt = |what: &str, e: &dyn std::fmt::Display| EngineError::Corrupt {
            path: path.to_path_buf(),
            table: "dead_letters",
            id: self.id,
            message: format!("{what}: {e}"),
        };
        let request = sealer.open(Column::DeadRequest, (&self.request).into()).map_err(|e| corrupt("request", &e))?;
        let request = serde_json::from_slice(&request).map_err(|e| corrupt("request", &e))?;
        let state =
            sealer.open(Column::DeadState, (&self.state).into()).map_err(|e| corrupt("state", &e))?.into_owned();
        let message = sealer.open(Column::DeadError, (&self.message).into()).map_err(|e| corrupt("error", &e))?;
        let message = String::from_utf8(message.into_owned()).map_err(|e| corrupt("error", &e))?;
        Ok(DeadLetter {
            id: self.id,
            job_id: self.job_id,
            function_id: self.function_id,
            team_id: self.team_id as u64,
            request,
            state,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            error: LastError { status: self.status.and_then(|s| u16::try_from(s).ok()), message },
            created_at_ms: self.created_at,
            failed_at_ms: self.failed_at,
        })
    }
}
