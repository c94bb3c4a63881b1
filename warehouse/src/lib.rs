//! hogpipe's warehouse: every processed event lands in ClickHouse, as PostHog stores it.
//!
//! Two backends behind [`backend::Backend`], one SQL: embedded chDB ([`chdb`], the default; the
//! library is loaded at run time) and a ClickHouse server over HTTP ([`http`], one node or a
//! sharded cluster). [`schema`] holds the versioned migrations applied on start, [`writer`] the
//! batched writer the dataflow hands events to, [`hogql`] the translation of the query API's HogQL
//! into ClickHouse SQL confined to one team (the API crate calls it and runs the result here).
#![warn(missing_docs)]

pub mod backend;
pub mod chdb;
pub mod hogql;
pub mod http;
pub mod insights;
pub mod persons;
pub mod rowbinary;
pub mod schema;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use backend::{Backend, Rows, WarehouseError};
use schema::{Dialect, Layout};
use serde::{Deserialize, Serialize};

/// `[warehouse]` in hogpipe.toml.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WarehouseConfig {
    /// `chdb` (embedded, the default), `clickhouse` (a server over HTTP) or `none`.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// chDB: where its data lives (default: `<data_dir>/warehouse`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// chDB: the library (default: see `chdb::library_path`).
    #[serde(default)]
    pub chdb_library: Option<PathBuf>,
    /// ClickHouse server: node URLs (`http://127.0.0.1:8123`); queries and inserts go to the first.
    #[serde(default)]
    pub urls: Vec<String>,
    /// ClickHouse server: database (created if missing).
    #[serde(default = "default_database")]
    pub database: String,
    /// ClickHouse server: user and password.
    #[serde(default)]
    pub user: Option<String>,
    /// ClickHouse server: password for `user` (never written back out).
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
    /// ClickHouse server: the cluster name (from the servers' `remote_servers`) for sharded
    /// `Distributed` tables; unset for one node.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Rows buffered before an insert (inserts also happen on every dataflow commit).
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Seconds before a ClickHouse request times out.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_backend() -> String {
    "chdb".into()
}
fn default_database() -> String {
    "hogpipe".into()
}
fn default_max_rows() -> usize {
    writer::DEFAULT_MAX_ROWS
}
fn default_timeout() -> u64 {
    30
}

impl Default for WarehouseConfig {
    fn default() -> Self {
        WarehouseConfig {
            backend: default_backend(),
            path: None,
            chdb_library: None,
            urls: Vec::new(),
            database: default_database(),
            user: None,
            password: None,
            cluster: None,
            max_rows: default_max_rows(),
            timeout_secs: default_timeout(),
        }
    }
}

/// An open warehouse with its schema applied.
pub struct Warehouse {
    backend: Box<dyn Backend>,
    dialect: Dialect,
    version: String,
}

impl std::fmt::Debug for Warehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warehouse").field("backend", &self.backend.describe()).field("version", &self.version).finish()
    }
}

impl Warehouse {
    /// Opens the configured backend (`data_dir` holds chDB's files by default), learns the
    /// server's version and applies migrations. `None` when the backend is `none`.
    pub fn open(
        config: &WarehouseConfig,
        data_dir: &std::path::Path,
    ) -> Result<Option<Arc<Warehouse>>, WarehouseError> {
        let (backend, layout): (Box<dyn Backend>, Layout) = match config.backend.as_str() {
            "none" => return Ok(None),
            "chdb" => {
                let path = config.path.clone().unwrap_or_else(|| data_dir.join("warehouse"));
                let library = chdb::library_path(config.chdb_library.as_deref());
                (Box::new(chdb::Chdb::open(&path, &library, 2)?), Layout::Single)
            }
            "clickhouse" => {
                let user = config.user.clone().map(|u| (u, config.password.clone().unwrap_or_default()));
                let http = http::ClickHouseHttp::new(
                    config.urls.clone(),
                    &config.database,
                    user,
                    Duration::from_secs(config.timeout_secs.max(1)),
                )?;
                http.create_database()?;
                let layout = match &config.cluster {
                    Some(cluster) => Layout::Cluster { cluster: cluster.clone(), database: config.database.clone() },
                    None => Layout::Single,
                };
                (Box::new(http), layout)
            }
            other => {
                return Err(WarehouseError::Config(format!(
                    "unknown backend {other:?}: use \"chdb\", \"clickhouse\" or \"none\""
                )))
            }
        };
        Warehouse::with_backend(backend, &layout).map(|w| Some(Arc::new(w)))
    }

    /// Wraps an open backend: reads its version, picks the dialect, applies migrations.
    pub fn with_backend(backend: Box<dyn Backend>, layout: &Layout) -> Result<Warehouse, WarehouseError> {
        let out = backend.query("SELECT version() FORMAT JSONCompact")?;
        let rows = Rows::from_json_compact(&out)?;
        let version =
            rows.results.first().and_then(|r| r.first()).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let dialect = Dialect::from_version(&version);
        schema::migrate(backend.as_ref(), dialect, layout)?;
        tracing::info!(backend = %backend.describe(), %version, ?dialect, "warehouse ready");
        Ok(Warehouse { backend, dialect, version })
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        self.backend.as_ref()
    }

    /// The SQL dialect in use.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The server's version (`SELECT version()`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Runs a query (without `FORMAT`) and returns its rows.
    pub fn query(&self, sql: &str) -> Result<Rows, WarehouseError> {
        let out = self.backend.query(&format!("{sql} FORMAT JSONCompact"))?;
        Rows::from_json_compact(&out)
    }
}
