//! The state store: projects, personal API keys, Hog functions, live aggregate definitions, and
//! the logs and metrics of function invocations. SQLite in the data dir by default
//! (`<data_dir>/state.sqlite`), PostgreSQL when `[state] url = "postgres://…"` is configured; both
//! run the same numbered migrations.
//!
//! Every method blocks (call it from `spawn_blocking` in async code). Secrets: API keys are kept
//! only as SHA-256 hashes; function inputs whose schema says `secret = true` are sealed with
//! ChaCha20-Poly1305 under a key kept in `<data_dir>/secret.key` (or `[state] secret_key`), and
//! opened again when read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `[state]` in hogpipe.toml.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user:pass@host:port/db` for PostgreSQL; unset for SQLite.
    #[serde(default)]
    pub url: Option<String>,
    /// SQLite file (default `<data_dir>/state.sqlite`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// 32 bytes, base64, sealing secret inputs (default: generated into `<data_dir>/secret.key`).
    #[serde(default, skip_serializing)]
    pub secret_key: Option<String>,
}

/// Why the store could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("state store query failed: {0}")]
    Query(String),
    /// A stored value could not be read back (corrupt JSON, a secret that does not open).
    #[error("state store data unreadable: {0}")]
    Corrupt(String),
    /// The request conflicts with what is stored (a duplicate token or id).
    #[error("{0}")]
    Conflict(String),
}

/// A project (PostHog's team).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    /// Project id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Capture token (`phc_…`), write-only: SDKs send it, it cannot call the API.
    pub token: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A project declared in hogpipe.toml, with the personal API keys that may use it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectSeed {
    /// Project id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// Capture token.
    pub token: String,
    /// Personal API keys in plain text (stored hashed, with every scope).
    pub api_keys: Vec<String>,
}

/// A personal API key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    /// Key id (uuid).
    pub id: String,
    /// Label.
    pub label: String,
    /// `phx_ab…wxyz`: enough to recognise the key, not to use it.
    pub mask: String,
    /// Projects the key may use.
    pub projects: Vec<u64>,
    /// Scopes: `"*"` for everything, else `"<object>:read"` / `"<object>:write"` with objects
    /// `hog_function`, `query`, `project`, `live`, `dead_letter`.
    pub scopes: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// Who is calling: the result of authenticating a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// Key id.
    pub key_id: String,
    /// Projects the key may use.
    pub projects: Vec<u64>,
    /// Its scopes (see [`ApiKeyInfo::scopes`]).
    pub scopes: Vec<String>,
}

impl Principal {
    /// Whether the key has `scope` (`"query:read"`); `"*"` and `"x:write"` (for `"x:read"`) count.
    pub fn has_scope(&self, scope: &str) -> bool {
        let read_as_write = scope.strip_suffix(":read").map(|object| format!("{object}:write"));
        self.scopes.iter().any(|s| s == "*" || s == scope || Some(s) == read_as_write.as_ref())
    }
}

/// A Hog function as stored, in PostHog's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HogFunction {
    /// uuid.
    pub id: String,
    /// Owning project.
    pub project_id: u64,
    /// `destination`, `transformation` or `source_webhook`.
    pub kind: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Runs only when enabled.
    pub enabled: bool,
    /// The template it was made from, if any.
    pub template_id: Option<String>,
    /// Hog source.
    pub hog: String,
    /// Compiled bytecode (`["_H", 1, …]`).
    pub bytecode: Value,
    /// Input schema (a list of `{key, type, label, secret, required, …}`).
    pub inputs_schema: Value,
    /// Inputs in PostHog's shape: `{key: {"value": …}}`. Secret ones are sealed at rest and come
    /// back opened.
    pub inputs: Map<String, Value>,
    /// PostHog's `filters` object (`{events: [...], properties: [...]}`), or `{}`.
    pub filters: Value,
    /// Position in the project's transformation chain (lower first).
    pub execution_order: i32,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// One log line of a function invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionLog {
    /// Project.
    pub project_id: u64,
    /// Function id.
    pub function_id: String,
    /// RFC 3339 with milliseconds.
    pub timestamp: String,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The invocation it came from.
    pub invocation_id: String,
    /// The printed line or error (capped by the writer).
    pub message: String,
}

/// A count to add to a function's metric in an hourly bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricDelta {
    /// Project.
    pub project_id: u64,
    /// Function id.
    pub function_id: String,
    /// `invocations`, `succeeded`, `failed`, `filtered`, `dropped`, `disabled`, or a duration
    /// histogram bucket `duration_le_<ms>`.
    pub metric: String,
    /// Start of the hour, RFC 3339 (`2026-11-25T10:00:00Z`).
    pub bucket: String,
    /// How much to add.
    pub count: u64,
}

/// A stored live aggregate definition (the JSON of `hogpipe_dataflow::live::AggregateDef`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAggregate {
    /// Project.
    pub project_id: u64,
    /// Aggregate id.
    pub id: String,
    /// The definition.
    pub definition: Value,
}

mod db;
mod implementation;
mod secrets;

pub use implementation::Store;

/// Default SQLite file under the data dir.
pub fn default_sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state.sqlite")
}
