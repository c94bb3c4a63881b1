//! The delivery engine: performs the HTTP requests of suspended invocations and resumes them.
//!
//! A [`Job`] is a suspended invocation ([`crate::http::Next::Fetch`]) with its function and team.
//! [`Engine::enqueue`] stores jobs durably (one SQLite transaction, fsynced, per call) and returns;
//! the engine then sends each request, retries network errors, timeouts, 5xx and 429 with
//! full-jitter exponential backoff (never sooner than a `Retry-After` says), and hands the final
//! answer to [`Resume::resume`]. When that returns another `Fetch`, the follow-up replaces the job
//! in the same transaction that would have removed it. A job that exhausts its attempts becomes a
//! [`DeadLetter`] (listed, inspected, replayed or discarded here or through [`DeadLetters`], which
//! works on the data dir without a running engine, e.g. from the CLI).
//!
//! **Threads.** The engine runs its own tokio runtime ([`EngineConfig::worker_threads`] threads):
//! one dispatcher task per destination (function id) and one task per request. `Resume::resume`
//! is called on those threads, so it must be quick and must not block on I/O (the Hog VM with its
//! limits is). One extra thread owns the SQLite connection and commits everything in batches:
//! enqueued jobs, finished jobs, retries, follow-ups and dead letters. `enqueue` is synchronous and
//! may be called from any thread (not from inside an async task of another runtime: it blocks).
//! Dropping the engine stops it; it must not be dropped inside an async context.
//!
//! **Durability: at-least-once.** `enqueue` returns once its transaction is fsynced. A job leaves
//! the queue only after `resume` returned (its removal, or its follow-up request, is committed
//! afterwards without waiting for an fsync). After a crash, jobs that were in flight, or answered
//! but whose removal was not yet on disk, are sent and resumed again; jobs waiting for a retry
//! keep their attempt count and time (as of their last committed change).
//!
//! **Back-pressure and isolation.** Each destination holds at most
//! [`DestinationSettings::memory_queue`] jobs in memory (queued, waiting for a retry, or in flight)
//! and at most [`DestinationSettings::concurrency`] requests in flight; the rest wait on disk and
//! are loaded as room frees up. A stalled destination therefore holds a bounded amount of memory
//! and its own slots only. A destination with more than [`DestinationSettings::max_queued`] jobs
//! pending takes new ones straight into its dead letters (replayable), so one that stays down
//! cannot fill the shared queue. `enqueue` answers [`EngineError::Full`] (the caller retries the
//! whole call later) while more than [`EngineConfig::max_pending`] jobs are pending on disk.
//!
//! **Secrecy at rest.** Requests and states hold rendered secret inputs (an `Authorization`
//! header, the VM's `inputs`): they are sealed with the data dir's key ([`SecretKey`], the one the
//! state store seals secret inputs with), as are error texts, which may echo them. Every opener
//! ([`Engine::open`], [`DeadLetters::open`]) takes the key; one that does not open the queue is
//! refused ([`EngineError::WrongKey`]) and nothing is changed. Rows of earlier versions
//! (plaintext) are read as they are and sealed the first time the queue is opened (see `seal`).
//!
//! **Not promised.** Order: jobs of a destination start in enqueue order, but retries and
//! concurrency reorder them.

mod config;
mod dead_letters;
mod dispatch;
mod metrics;
pub mod retry;
mod seal;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

pub use config::{DestinationSettings, EngineConfig, RateLimit};
pub use dead_letters::{DeadLetter, DeadLetters, LastError};
pub use metrics::DestinationMetrics;
pub use seal::SealError;

use crate::http::{HttpRequest, Resume};
use crate::secret_key::SecretKey;
use dispatch::Dest;
use seal::{Column, Sealer};
use store::Op;

/// The SQLite file the engine keeps in its directory (jobs and dead letters).
pub const DB_FILE: &str = "delivery.sqlite";

/// The engine's directory inside hogpipe's data dir (`<data_dir>/destinations`), where
/// `hogpipe serve` opens it and the `dead-letters` CLI looks for it.
pub const DATA_SUBDIR: &str = "destinations";

/// A suspended invocation waiting for its HTTP request to be performed.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The destination function's id; settings, limits and metrics are per function id.
    pub function_id: String,
    /// The team (project) the function belongs to.
    pub team_id: u64,
    /// The request to perform.
    pub request: HttpRequest,
    /// The suspended invocation, handed back to [`Resume::resume`] with the answer.
    pub state: Vec<u8>,
}

/// What went wrong in the engine or its store.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine's directory could not be created.
    #[error("cannot create the delivery engine directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No engine ever ran with this directory (the database file is missing).
    #[error("no delivery data in {0}: the file does not exist (has `hogpipe serve` run with this data dir?)")]
    Missing(PathBuf),
    /// SQLite failed.
    #[error("delivery store {path}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Too many jobs are pending; retry the whole call later.
    #[error("the delivery queue is full: {pending} jobs pending on disk, the limit is {max}; retry later")]
    Full {
        /// Jobs pending now.
        pending: u64,
        /// The configured limit ([`EngineConfig::max_pending`]).
        max: u64,
    },
    /// A job's request could not be stored.
    #[error("cannot encode the request of a job for function {function_id}: {source}")]
    Encode {
        /// The job's function.
        function_id: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A job's request or state could not be sealed.
    #[error("cannot seal a job for function {function_id}: {source}")]
    Seal {
        /// The job's function.
        function_id: String,
        /// Why.
        source: SealError,
    },
    /// The key does not open the queue: its rows were sealed with another one. Nothing was read
    /// or changed.
    #[error(
        "the secret key ({key}) does not open the delivery queue {path}: its rows were sealed with another key. \
         Nothing was changed; they stay on disk until hogpipe runs with the key that sealed them (the original \
         <data_dir>/secret.key, or [state] secret_key)"
    )]
    WrongKey {
        /// The database file.
        path: PathBuf,
        /// Where the key came from ([`SecretKey::origin`]).
        key: String,
    },
    /// A stored row could not be read back.
    #[error("delivery store {path}: row {id} of {table} is unreadable: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The row id.
        id: i64,
        /// What is wrong with it.
        message: String,
    },
    /// No dead letter has this id.
    #[error("no dead letter with id {0}")]
    NoSuchDeadLetter(i64),
    /// The engine's runtime or HTTP client could not start.
    #[error("cannot start the delivery engine: {0}")]
    Start(String),
    /// The engine is shut down.
    #[error("the delivery engine is shut down")]
    Closed,
}

/// State shared by the engine handle, the dispatcher tasks and the store thread.
pub(crate) struct Shared {
    config: EngineConfig,
    resume: Arc<dyn Resume>,
    sealer: Sealer,
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
    dests: RwLock<HashMap<Arc<str>, Arc<Dest>>>,
    ops: Sender<Op>,
    /// Jobs pending on disk, all destinations.
    pending: AtomicI64,
    stopping: AtomicBool,
}

impl Shared {
    /// The destination for a function id, created (with its dispatcher task) on first use.
    fn dest(self: &Arc<Self>, function_id: &str) -> Arc<Dest> {
        if let Some(d) = read(&self.dests).get(function_id) {
            return d.clone();
        }
        let mut dests = write(&self.dests);
        if let Some(d) = dests.get(function_id) {
            return d.clone();
        }
        let id: Arc<str> = Arc::from(function_id);
        let dest = Arc::new(Dest::new(id.clone(), self.config.settings_for(function_id)));
        dests.insert(id, dest.clone());
        self.handle.spawn(dispatch::run_dispatcher(self.clone(), dest.clone()));
        dest
    }

    fn send(&self, op: Op) {
        // Fails only once the store thread is gone (shutting down): the job then runs again after
        // a restart, as the at-least-once contract says.
        let _ = self.ops.send(op);
    }

    fn all_dests(&self) -> Vec<Arc<Dest>> {
        read(&self.dests).values().cloned().collect()
    }
}

/// The delivery engine (see the module docs).
pub struct Engine {
    shared: Arc<Shared>,
    admin: DeadLetters,
    runtime: Option<tokio::runtime::Runtime>,
    writer: Option<JoinHandle<()>>,
}

impl Engine {
    /// Opens (creating) the queue in `dir`, sealed with `key`, and starts delivering the jobs
    /// found there. [`EngineError::WrongKey`] when the queue was sealed with another key.
    pub fn open(
        dir: &Path,
        key: &SecretKey,
        config: EngineConfig,
        resume: Arc<dyn Resume>,
    ) -> Result<Engine, EngineError> {
        std::fs::create_dir_all(dir).map_err(|source| EngineError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join(DB_FILE);
        let sealer = Sealer::new(key);
        let conn = store::open_writer(&path, key, &sealer)?;
        let admin = DeadLetters::open(dir, key)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("hogpipe-delivery")
            .enable_all()
            .build()
            .map_err(|e| EngineError::Start(format!("tokio runtime: {e}")))?;
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| EngineError::Start(format!("HTTP client: {e}")))?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            config,
            resume,
            sealer,
            client,
            handle: runtime.handle().clone(),
            dests: RwLock::new(HashMap::new()),
            ops: tx,
            pending: AtomicI64::new(0),
            stopping: AtomicBool::new(false),
        });
        // Loads what is on disk before the first enqueue can be answered.
        let mut writer = store::Writer::new(shared.clone(), conn, path)?;
        let thread = std::thread::Builder::new()
            .name("hogpipe-dstore".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| EngineError::Start(format!("store thread: {e}")))?;
        Ok(Engine { shared, admin, runtime: Some(runtime), writer: Some(thread) })
    }

    /// Stores `jobs` durably (one transaction) and returns; they are delivered in the background.
    /// Answers [`EngineError::Full`] without storing anything while too many jobs are pending.
    pub fn enqueue(&self, jobs: Vec<Job>) -> Result<(), EngineError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let pending = u64::try_from(self.shared.pending.load(Ordering::Relaxed)).unwrap_or(0);
        let max = self.shared.config.max_pending;
        // An empty queue takes any batch, so one larger than the limit is not refused forever.
        if pending > 0 && pending.saturating_add(jobs.len() as u64) > max {
            return Err(EngineError::Full { pending, max });
        }
        // Encoded and sealed here, on the callers' threads, rather than on the store's one thread.
        let sealer = &self.shared.sealer;
        let mut items = Vec::with_capacity(jobs.len());
        for job in jobs {
            let request = serde_json::to_vec(&job.request)
                .map_err(|source| EngineError::Encode { function_id: job.function_id.clone(), source })?;
            let seal = |column, plaintext: &[u8]| {
                sealer
                    .seal(column, plaintext)
                    .map_err(|source| EngineError::Seal { function_id: job.function_id.clone(), source })
            };
            let request = seal(Column::JobRequest, &request)?;
            let state = seal(Column::JobState, &job.state)?;
            items.push(store::Prepared { job, request, state });
        }
        let (reply, answer) = mpsc::sync_channel(1);
        self.shared.ops.send(Op::Enqueue { items, reply }).map_err(|_| EngineError::Closed)?;
        answer.recv().map_err(|_| EngineError::Closed)?
    }

    /// Jobs pending on disk, all destinations.
    pub fn pending(&self) -> u64 {
        u64::try_from(self.shared.pending.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Metrics of every destination seen since the engine opened, sorted by function id.
    pub fn metrics(&self) -> Vec<DestinationMetrics> {
        let mut all: Vec<_> = self.shared.all_dests().iter().map(|d| d.metrics()).collect();
        all.sort_by(|a, b| a.function_id.cmp(&b.function_id));
        all
    }

    /// Metrics of one destination, if the engine has seen it.
    pub fn destination_metrics(&self, function_id: &str) -> Option<DestinationMetrics> {
        read(&self.shared.dests).get(function_id).map(|d| d.metrics())
    }

    /// Changes one destination's settings; they apply to the next requests.
    pub fn configure(&self, function_id: &str, settings: DestinationSettings) {
        let dest = self.shared.dest(function_id);
        dest.set_settings(settings.sanitized());
        // A larger memory bound may make room for jobs waiting on disk.
        let mut q = lock(&dest.queue);
        if q.spilled && !q.load_requested {
            q.load_requested = true;
            drop(q);
            self.shared.send(Op::Load(dest.clone()));
        }
    }

    /// Dead letters, oldest first, of one function or of all.
    pub fn dead_letters(&self, function_id: Option<&str>) -> Result<Vec<DeadLetter>, EngineError> {
        self.admin.list(function_id)
    }

    /// One dead letter.
    pub fn dead_letter(&self, id: i64) -> Result<Option<DeadLetter>, EngineError> {
        self.admin.get(id)
    }

    /// Moves a dead letter back to the queue with its attempts reset; returns the new job's id.
    pub fn replay(&self, id: i64) -> Result<i64, EngineError> {
        let job = self.admin.replay(id)?;
        self.shared.send(Op::Refresh);
        Ok(job)
    }

    /// Moves every dead letter of a function back to the queue; returns how many.
    pub fn replay_all(&self, function_id: &str) -> Result<usize, EngineError> {
        let n = self.admin.replay_all(function_id)?;
        self.shared.send(Op::Refresh);
        Ok(n)
    }

    /// Deletes a dead letter; false when there was none with this id.
    pub fn discard(&self, id: i64) -> Result<bool, EngineError> {
        self.admin.discard(id)
    }

    /// Stops delivering (requests in flight are abandoned and run again after the next open)
    /// and waits for the store to commit what it was given.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for d in self.shared.all_dests() {
            d.wake.notify_one();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        self.shared.send(Op::Shutdown);
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("pending", &self.pending()).finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}
