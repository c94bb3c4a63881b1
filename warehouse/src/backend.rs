//! What a warehouse backend does: run statements, run queries, insert formatted rows. The
//! embedded chDB and a ClickHouse server over HTTP speak the same SQL through it.

use serde::Serialize;
use serde_json::Value as Json;

/// Why the warehouse could not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarehouseError {
    /// The backend cannot be reached or loaded (a missing library, a server that is down).
    #[error("warehouse unavailable: {0}")]
    Unavailable(String),
    /// ClickHouse refused or failed a statement.
    #[error("warehouse query failed: {0}")]
    Query(String),
    /// The answer was not what the statement should return.
    #[error("warehouse answer unreadable: {0}")]
    Decode(String),
    /// The configuration is wrong.
    #[error("warehouse config: {0}")]
    Config(String),
}

/// One ClickHouse, embedded or remote.
pub trait Backend: Send + Sync + 'static {
    /// For logs and errors: which backend, where.
    fn describe(&self) -> String;

    /// Runs a statement that returns nothing of interest (DDL, `OPTIMIZE`, …).
    fn execute(&self, sql: &str) -> Result<(), WarehouseError>;

    /// Runs a DDL statement on every node of a cluster (one node: the same as `execute`).
    fn execute_everywhere(&self, sql: &str) -> Result<(), WarehouseError> {
        self.execute(sql)
    }

    /// Runs a query whose text ends with its `FORMAT`; returns the output as sent.
    fn query(&self, sql: &str) -> Result<Vec<u8>, WarehouseError>;

    /// Inserts `data`, encoded in `format`, into `table` (a name, optionally with a column list:
    /// `events (uuid, …)`); returns when it is stored.
    fn insert(&self, table: &str, format: &str, data: &[u8]) -> Result<(), WarehouseError>;

    /// [`Backend::insert`] for data that may be handed over in pieces: `cuts` are ascending
    /// offsets in `data` where a row ends (needed for formats without row separators, such as
    /// `RowBinary`). One piece (HTTP sends one body) by default.
    fn insert_pieces(&self, table: &str, format: &str, data: &[u8], cuts: &[usize]) -> Result<(), WarehouseError> {
        let _ = cuts;
        self.insert(table, format, data)
    }
}

/// A query's result, as `FORMAT JSONCompact` gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// ClickHouse type of each column.
    pub types: Vec<String>,
    /// Rows of values (64-bit integers arrive as strings unless converted).
    pub results: Vec<Vec<Json>>,
}

impl Rows {
    /// Parses `FORMAT JSONCompact` output.
    pub fn from_json_compact(output: &[u8]) -> Result<Rows, WarehouseError> {
        let doc: Json =
            serde_json::from_slice(output).map_err(|e| WarehouseError::Decode(format!("JSONCompact output: {e}")))?;
        let meta = doc.get("meta").and_then(Json::as_array).cloned().unwrap_or_default();
        let mut columns = Vec::with_capacity(meta.len());
        let mut types = Vec::with_capacity(meta.len());
        for m in meta {
            columns.push(m.get("name").and_then(Json::as_str).unwrap_or_default().to_string());
            types.push(m.get("type").and_then(Json::as_str).unwrap_or_default().to_string());
        }
        let results = match doc.get("data") {
            Some(Json::Array(rows)) => rows
                .iter()
                .map(|r| match r {
                    Json::Array(values) => values.clone(),
                    other => vec![other.clone()],
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Rows { columns, types, results })
    }

    /// The first value of the first row as an integer (counts), accepting quoted 64-bit integers.
    pub fn scalar_u64(&self) -> Option<u64> {
        match self.results.first()?.first()? {
            Json::Number(n) => n.as_u64(),
            Json::String(s) => s.parse().ok(),
            _ => None,
        }
    }
}
