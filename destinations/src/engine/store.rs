//! The persisted queue: a SQLite database (WAL mode) with the pending jobs and the dead letters,
//! and the one thread that writes it. The thread takes every change the engine makes (enqueued
//! jobs, finished jobs, retries, follow-ups, dead letters) from a channel and commits whatever has
//! accumulated in one transaction. A transaction holding new jobs is fsynced before the callers
//! hear back (`synchronous = FULL`); one holding only progress is not (`NORMAL`: the next fsync
//! covers it; a power cut may undo it, which only runs a job again).
//! It also loads jobs from disk into memory as destinations have room, and notices jobs added by
//! other processes (a replay from the CLI) through `PRAGMA data_version`.
//! Requests, states and error texts are sealed (`seal`): new jobs and follow-ups arrive sealed
//! from the threads that made them; what moves between tables is opened and sealed again here.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::types::{Value, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::dead_letters::LastError;
use super::dispatch::{Dest, MemJob};
use super::seal::{self, Column, Sealer};
use super::{lock, now_ms, EngineError, Job, Shared};
use crate::http::HttpRequest;
use crate::secret_key::SecretKey;

/// Most changes committed in one transaction.
const MAX_BATCH: usize = 8192;

/// A job ready to be stored: its request encoded, and request and state sealed for `jobs` (by
/// the caller's thread).
pub(crate) struct Prepared {
    pub job: Job,
    pub request: Vec<u8>,
    pub state: Vec<u8>,
}

/// Where a new job went: its destination, and its id in `jobs` (`None`: the destination was over
/// its limit and the job went to the dead letters).
pub(crate) struct Placed {
    dest: Arc<Dest>,
    id: Option<i64>,
}

/// Jobs of one `enqueue` call and where to answer it.
type Enqueued = (Vec<Prepared>, SyncSender<Result<(), EngineError>>);

/// A change for the store thread.
pub(crate) enum Op {
    /// Store new jobs, then answer.
    Enqueue { items: Vec<Prepared>, reply: SyncSender<Result<(), EngineError>> },
    /// `resume` returned and asked for nothing more: remove the job.
    Finish { dest: Arc<Dest>, id: i64 },
    /// `resume` asked for another request: the job continues with it (both sealed for `jobs`).
    FollowUp { id: i64, request: Vec<u8>, state: Vec<u8> },
    /// An attempt failed; the next one is due at `next_at`.
    Retry { id: i64, attempts: u32, next_at: i64, error: String },
    /// The job is out of attempts: move it to the dead letters.
    Dead { dest: Arc<Dest>, id: i64, attempts: u32, error: LastError },
    /// The destination has room: load its next jobs from disk.
    Load(Arc<Dest>),
    /// The tables were changed elsewhere (a replay): look for new jobs.
    Refresh,
    /// Commit what came before and stop.
    Shutdown,
}

/// Opens a connection for the store thread or [`super::DeadLetters`]: its settings, the tables,
/// and the key check (which seals the plaintext rows of an earlier version the first time).
pub(crate) fn prepare(conn: &mut Connection, path: &Path, key: &SecretKey, sealer: &Sealer) -> Result<(), EngineError> {
    configure(conn, path)?;
    create_schema(conn, path)?;
    seal::prepare(conn, path, key, sealer)
}

/// Connection settings.
fn configure(conn: &Connection, path: &Path) -> Result<(), EngineError> {
    let err = |source| EngineError::Store { path: path.to_path_buf(), source };
    conn.busy_timeout(Duration::from_secs(10)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    // FULL in WAL mode: every commit is fsynced, so an enqueue that returned survives power loss.
    conn.pragma_update(None, "synchronous", "FULL").map_err(err)?;
    // Checkpoint every ~40 MB of WAL rather than 4 MB: a queue rewrites the same pages (insert,
    // then delete), and a page written many times between checkpoints is copied back once.
    conn.pragma_update(None, "wal_autocheckpoint", 10_000).map_err(err)?;
    conn.pragma_update(None, "journal_size_limit", 64 << 20).map_err(err)?;
    // 8 MiB of page cache (the default is 2 MiB): the queue's hot pages (its tail, where jobs
    // are inserted, and its head, where they are deleted) stay in memory.
    conn.pragma_update(None, "cache_size", -8192).map_err(err)?;
    Ok(())
}

/// Creates the tables when missing. `request`, `state`, `last_error` and `error_message` hold
/// sealed BLOBs (earlier versions wrote TEXT in some: their declared types stay as they were).
fn create_schema(conn: &Connection, path: &Path) -> Result<(), EngineError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            function_id TEXT NOT NULL,
            team_id INTEGER NOT NULL,
            request TEXT NOT NULL,
            state BLOB NOT NULL,
            attempts INTEGER NOT NULL,
            next_at INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            last_error TEXT
        );
        CREATE INDEX IF NOT EXISTS jobs_by_function ON jobs (function_id, id);
        CREATE TABLE IF NOT EXISTS dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL,
            function_id TEXT NOT NULL,
            team_id INTEGER NOT NULL,
            request TEXT NOT NULL,
            state BLOB NOT NULL,
            attempts INTEGER NOT NULL,
            error_status INTEGER,
            error_message TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            failed_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS dead_letters_by_function ON dead_letters (function_id, id);
        CREATE TABLE IF NOT EXISTS meta (
            name TEXT PRIMARY KEY,
            value BLOB NOT NULL
        );",
    )
    .map_err(|source| EngineError::Store { path: path.to_path_buf(), source })
}

/// Opens (creating) the engine's database.
pub(crate) fn open_writer(path: &Path, key: &SecretKey, sealer: &Sealer) -> Result<Connection, EngineError> {
    let mut conn = Connection::open(path).map_err(|source| EngineError::Store { path: path.to_path_buf(), source })?;
    prepare(&mut conn, path, key, sealer)?;
    Ok(conn)
}

/// A seal that fails (a value beyond 256 GiB) fails the transaction like any SQLite error.
fn seal_sql(sealer: &Sealer, column: Column, plaintext: &[u8]) -> rusqlite::Result<Vec<u8>> {
    sealer.seal(column, plaintext).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Moves job `id` to the dead letters (its request and state sealed again for that table).
fn move_to_dead_letters(
    tx: &Transaction<'_>,
    sealer: &Sealer,
    id: i64,
    attempts: u32,
    error: &LastError,
    now: i64,
) -> rusqlite::Result<()> {
    let row: Option<(String, i64, Value, Value, i64)> = tx
        .prepare_cached("SELECT function_id, team_id, request, state, created_at FROM jobs WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?;
    let Some((function_id, team_id, request, state, created_at)) = row else {
        return Ok(());
    };
    let request = sealer.reseal_or_keep(Column::JobRequest, Column::DeadRequest, request);
    let state = sealer.reseal_or_keep(Column::JobState, Column::DeadState, state);
    let message = seal_sql(sealer, Column::DeadError, error.message.as_bytes())?;
    tx.prepare_cached(
        "INSERT INTO dead_letters (job_id, function_id, team_id, request, state, attempts,
            error_status, error_message, created_at, failed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        id,
        function_id,
        team_id,
        request,
        state,
        attempts,
        error.status,
        message,
        created_at,
        now
    ])?;
    tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")?.execute(params![id])?;
    Ok(())
}

/// The store thread's state.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    conn: Connection,
    path: PathBuf,
    data_version: i64,
    /// Whether the connection is at `synchronous = FULL` (else NORMAL).
    full_sync: bool,
}

impl Writer {
    /// Reads what is on disk (pending counts, destinations) and loads the first jobs.
    pub fn new(shared: Arc<Shared>, conn: Connection, path: PathBuf) -> Result<Writer, EngineError> {
        let mut w = Writer { shared, conn, path, data_version: 0, full_sync: true };
        w.data_version = w.data_version().map_err(|source| EngineError::Store { path: w.path.clone(), source })?;
        w.refresh().map_err(|source| EngineError::Store { path: w.path.clone(), source })?;
        Ok(w)
    }

    fn data_version(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("PRAGMA data_version", [], |r| r.get(0))
    }

    /// Runs until [`Op::Shutdown`].
    pub fn run(&mut self, rx: Receiver<Op>) {
        let poll = self.shared.config.poll_interval.max(Duration::from_millis(10));
        let mut last_poll = Instant::now();
        loop {
            let mut batch = Vec::new();
            match rx.recv_timeout(poll) {
                Ok(op) => batch.push(op),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let stop = self.apply(batch);
            if stop {
                return;
            }
            if last_poll.elapsed() >= poll {
                last_poll = Instant::now();
                match self.data_version() {
                    Ok(v) if v != self.data_version => {
                        self.data_version = v;
                        self.refresh_logged();
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(path = %self.path.display(), error = %e, "cannot poll the delivery store")
                    }
                }
            }
        }
    }

    /// Commits a batch of changes; true when asked to stop.
    fn apply(&mut self, batch: Vec<Op>) -> bool {
        let mut stop = false;
        let mut refresh = false;
        let mut loads = Vec::new();
        let mut enqueues = Vec::new();
        let mut changes = Vec::new();
        for op in batch {
            match op {
                Op::Enqueue { items, reply } => enqueues.push((items, reply)),
                Op::Load(dest) => loads.push(dest),
                Op::Refresh => refresh = true,
                Op::Shutdown => stop = true,
                other => changes.push(other),
            }
        }
        if !enqueues.is_empty() || !changes.is_empty() {
            let started = Instant::now();
            let result = self.commit(&enqueues, &changes);
            tracing::trace!(
                fsync = self.full_sync,
                jobs = enqueues.iter().map(|e| e.0.len()).sum::<usize>(),
                changes = changes.len(),
                micros = started.elapsed().as_micros() as u64,
                "delivery store commit"
            );
            match result {
                Ok(ids) => {
                    self.after_commit(enqueues, ids, &changes);
                }
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "cannot commit to the delivery store");
                    for (_, reply) in enqueues {
                        let _ = reply.send(Err(EngineError::Store { path: self.path.clone(), source: clone_err(&e) }));
                    }
                }
            }
        }
        let mut seen = HashSet::new();
        for dest in loads {
            if seen.insert(Arc::as_ptr(&dest)) {
                if let Err(e) = self.load(&dest) {
                    lock(&dest.queue).load_requested = false;
                    tracing::error!(path = %self.path.display(), function_id = %dest.id, error = %e, "cannot load jobs");
                }
            }
        }
        if refresh {
            self.refresh_logged();
        }
        stop
    }

    /// One transaction for everything; returns the ids given to the enqueued jobs.
    fn commit(&mut self, enqueues: &[Enqueued], changes: &[Op]) -> rusqlite::Result<Vec<Vec<Placed>>> {
        // Only new jobs need their commit fsynced before answering. Finished jobs, retries,
        // follow-ups and dead letters are written with NORMAL (in WAL mode: no fsync at commit;
        // the next fsync, of an enqueue or a checkpoint, covers them). Lost by a power cut, they
        // only make a job run again from its previous state: at-least-once either way.
        let full = !enqueues.is_empty();
        if full != self.full_sync {
            self.conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
            self.full_sync = full;
        }
        let shared = self.shared.clone();
        let sealer = &shared.sealer;
        // IMMEDIATE: a dead letter reads its job before writing, and a transaction that began
        // by reading cannot wait for another process's writer (a CLI replay) to finish.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = now_ms();
        let mut placed = Vec::with_capacity(enqueues.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO jobs (function_id, team_id, request, state, attempts, next_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
            )?;
            // Jobs accepted per destination in this transaction (its counter moves after commit).
            let mut accepted: HashMap<*const Dest, i64> = HashMap::new();
            let mut current: Option<(Arc<Dest>, i64)> = None;
            for (items, _) in enqueues {
                let mut batch = Vec::with_capacity(items.len());
                for item in items {
                    let (dest, cap) = match &current {
                        Some((d, cap)) if *d.id == *item.job.function_id => (d.clone(), *cap),
                        _ => {
                            let d = shared.dest(&item.job.function_id);
                            let cap = i64::try_from(d.settings().max_queued).unwrap_or(i64::MAX);
                            current = Some((d.clone(), cap));
                            (d, cap)
                        }
                    };
                    let taken = accepted.entry(Arc::as_ptr(&dest)).or_insert(0);
                    let queued = dest.counters.queued.load(Relaxed) + *taken;
                    if queued >= cap {
                        // Isolation: a destination that cannot keep up does not fill the shared
                        // queue (which would push back on every destination); its excess waits
                        // as dead letters, to be replayed once it recovers.
                        let reseal = |from, to, value: &[u8]| {
                            sealer
                                .reseal(from, to, ValueRef::Blob(value))
                                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
                        };
                        let message = format!(
                            "not queued: {queued} jobs of this destination were already pending (the limit is {cap}); \
                             replay once it keeps up again"
                        );
                        tx.prepare_cached(
                            "INSERT INTO dead_letters (job_id, function_id, team_id, request, state, attempts,
                                error_status, error_message, created_at, failed_at)
                             VALUES (0, ?1, ?2, ?3, ?4, 0, NULL, ?5, ?6, ?6)",
                        )?
                        .execute(params![
                            item.job.function_id,
                            item.job.team_id as i64,
                            reseal(Column::JobRequest, Column::DeadRequest, &item.request)?,
                            reseal(Column::JobState, Column::DeadState, &item.state)?,
                            seal_sql(sealer, Column::DeadError, message.as_bytes())?,
                            now
                        ])?;
                        batch.push(Placed { dest, id: None });
                        continue;
                    }
                    *taken += 1;
                    insert.execute(params![
                        item.job.function_id,
                        item.job.team_id as i64,
                        item.request,
                        item.state,
                        now
                    ])?;
                    batch.push(Placed { dest, id: Some(tx.last_insert_rowid()) });
                }
                placed.push(batch);
            }
            for op in changes {
                match op {
                    Op::Finish { id, .. } => {
                        tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")?.execute(params![id])?;
                    }
                    Op::FollowUp { id, request, state } => {
                        tx.prepare_cached(
                            "UPDATE jobs SET request = ?2, state = ?3, attempts = 0, next_at = ?4, last_error = NULL
                             WHERE id = ?1",
                        )?
                        .execute(params![id, request, state, now])?;
                    }
                    Op::Retry { id, attempts, next_at, error } => {
                        let error = seal_sql(sealer, Column::JobError, error.as_bytes())?;
                        tx.prepare_cached(
                            "UPDATE jobs SET attempts = ?2, next_at = ?3, last_error = ?4 WHERE id = ?1",
                        )?
                        .execute(params![id, attempts, next_at, error])?;
                    }
                    Op::Dead { id, attempts, error, .. } => {
                        move_to_dead_letters(&tx, sealer, *id, *attempts, error, now)?;
                    }
                    Op::Enqueue { .. } | Op::Load(_) | Op::Refresh | Op::Shutdown => {}
                }
            }
        }
        tx.commit()?;
        Ok(placed)
    }

    /// Counts, hands new jobs to their destinations (or leaves them on disk), answers callers.
    fn after_commit(&mut self, enqueues: Vec<Enqueued>, placed: Vec<Vec<Placed>>, changes: &[Op]) {
        for op in changes {
            if let Op::Finish { dest, .. } | Op::Dead { dest, .. } = op {
                dest.counters.queued.fetch_sub(1, Relaxed);
                self.shared.pending.fetch_sub(1, Relaxed);
            }
        }
        let now = now_ms();
        for ((items, reply), placed) in enqueues.into_iter().zip(placed) {
            let mut woken: Vec<Arc<Dest>> = Vec::new();
            for (item, Placed { dest, id }) in items.into_iter().zip(placed) {
                let Some(id) = id else {
                    dest.counters.dead_lettered.fetch_add(1, Relaxed);
                    continue;
                };
                self.shared.pending.fetch_add(1, Relaxed);
                dest.counters.queued.fetch_add(1, Relaxed);
                let bound = dest.settings().memory_queue;
                let mut q = lock(&dest.queue);
                if !q.spilled && q.in_memory < bound {
                    let Job { request, state, .. } = item.job;
                    q.admit(MemJob { id, request, state, attempts: 0, next_at: now }, now);
                    drop(q);
                    if !woken.iter().any(|d| Arc::ptr_eq(d, &dest)) {
                        woken.push(dest);
                    }
                } else {
                    q.spilled = true;
                }
            }
            for d in woken {
                d.wake.notify_one();
            }
            let _ = reply.send(Ok(()));
        }
    }

    /// Loads a spilled destination's next jobs, as many as it has room for.
    fn load(&mut self, dest: &Arc<Dest>) -> rusqlite::Result<()> {
        let bound = dest.settings().memory_queue;
        let (cursor, room) = {
            let mut q = lock(&dest.queue);
            q.load_requested = false;
            if !q.spilled {
                return Ok(());
            }
            (q.cursor, bound.saturating_sub(q.in_memory))
        };
        if room == 0 {
            // A job leaving memory asks again.
            return Ok(());
        }
        let mut rows = Vec::with_capacity(room);
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT id, request, state, attempts, next_at FROM jobs
                 WHERE function_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )?;
            let mut query = stmt.query(params![&*dest.id, cursor, room as i64])?;
            let sealer = &self.shared.sealer;
            while let Some(row) = query.next()? {
                let id: i64 = row.get(0)?;
                let attempts: i64 = row.get(3)?;
                let next_at: i64 = row.get(4)?;
                let job = open_job(sealer, row.get_ref(1)?, row.get_ref(2)?);
                rows.push((id, job, attempts, next_at));
            }
        }
        let now = now_ms();
        let complete = rows.len() < room;
        let mut unreadable = Vec::new();
        {
            let mut q = lock(&dest.queue);
            for (id, job, attempts, next_at) in rows {
                match job {
                    Ok((request, state)) => q.admit(
                        MemJob { id, request, state, attempts: u32::try_from(attempts).unwrap_or(0), next_at },
                        now,
                    ),
                    Err(e) => {
                        q.cursor = q.cursor.max(id);
                        unreadable.push((id, attempts, e));
                    }
                }
            }
            if complete {
                q.spilled = false;
            }
        }
        dest.wake.notify_one();
        if !unreadable.is_empty() {
            let changes: Vec<Op> = unreadable
                .into_iter()
                .map(|(id, attempts, e)| Op::Dead {
                    dest: dest.clone(),
                    id,
                    attempts: u32::try_from(attempts).unwrap_or(0),
                    error: LastError { status: None, message: format!("the stored job is unreadable: {e}") },
                })
                .collect();
            let _ = self.commit(&[], &changes)?;
            self.after_commit(Vec::new(), Vec::new(), &changes);
        }
        Ok(())
    }

    fn refresh_logged(&mut self) {
        if let Err(e) = self.refresh() {
            tracing::error!(path = %self.path.display(), error = %e, "cannot read the delivery store");
        }
    }

    /// Re-reads the pending counts per destination and loads destinations with jobs not in memory.
    fn refresh(&mut self) -> rusqlite::Result<()> {
        let mut rows = Vec::new();
        {
            let mut stmt =
                self.conn.prepare_cached("SELECT function_id, COUNT(*), MAX(id) FROM jobs GROUP BY function_id")?;
            let mut query = stmt.query([])?;
            while let Some(row) = query.next()? {
                let function_id: String = row.get(0)?;
                let count: i64 = row.get(1)?;
                let max: i64 = row.get(2)?;
                rows.push((function_id, count, max));
            }
        }
        let mut total = 0;
        let mut present = HashSet::new();
        let mut to_load = Vec::new();
        for (function_id, count, max) in rows {
            total += count;
            let dest = self.shared.dest(&function_id);
            dest.counters.queued.store(count, Relaxed);
            let mut q = lock(&dest.queue);
            if max > q.cursor {
                q.spilled = true;
                to_load.push(dest.clone());
            }
            drop(q);
            present.insert(function_id);
        }
        for dest in self.shared.all_dests() {
            if !present.contains(&*dest.id) {
                dest.counters.queued.store(0, Relaxed);
            }
        }
        self.shared.pending.store(total, Relaxed);
        for dest in to_load {
            self.load(&dest)?;
        }
        Ok(())
    }
}

/// A stored job's request and state, opened and decoded (what is wrong with them otherwise).
fn open_job(sealer: &Sealer, request: ValueRef<'_>, state: ValueRef<'_>) -> Result<(HttpRequest, Vec<u8>), String> {
    let request = sealer.open(Column::JobRequest, request).map_err(|e| format!("request: {e}"))?;
    let request = serde_json::from_slice(&request).map_err(|e| format!("request: {e}"))?;
    let state = sealer.open(Column::JobState, state).map_err(|e| format!("state: {e}"))?;
    Ok((request, state.into_owned()))
}

/// rusqlite errors are not `Clone`; callers of a failed batch each get an equivalent one.
fn clone_err(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => rusqlite::Error::SqliteFailure(*code, message.clone()),
        other => rusqlite::Error::ToSqlConversionFailure(other.to_string().into()),
    }
}
