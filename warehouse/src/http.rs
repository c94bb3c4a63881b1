//! The server backend: ClickHouse over its HTTP interface, one node or several (a cluster whose
//! `events` is a `Distributed` table over per-node `events_local` tables).

use std::io::Read;
use std::time::Duration;

use crate::backend::{Backend, WarehouseError};

/// Largest answer read from the server (query results are capped by the query layer too).
const MAX_RESPONSE: u64 = 512 * 1024 * 1024;

/// A ClickHouse server (or the nodes of a cluster) over HTTP.
#[derive(Debug)]
pub struct ClickHouseHttp {
    nodes: Vec<String>,
    database: String,
    user: Option<(String, String)>,
    agent: ureq::Agent,
}

impl ClickHouseHttp {
    /// A client for `nodes` (`http://host:8123`, first one answers queries and inserts), using
    /// `database`, with optional user and password.
    pub fn new(
        nodes: Vec<String>,
        database: &str,
        user: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<Self, WarehouseError> {
        if nodes.is_empty() {
            return Err(WarehouseError::Config("no ClickHouse URL given".into()));
        }
        for n in &nodes {
            if !(n.starts_with("http://") || n.starts_with("https://")) {
                return Err(WarehouseError::Config(format!(
                    "ClickHouse URL {n:?} must start with http:// or https://"
                )));
            }
        }
        if database.is_empty() || !database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(WarehouseError::Config(format!(
                "database name {database:?} must be letters, digits and underscores"
            )));
        }
        let config = ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build();
        Ok(ClickHouseHttp {
            nodes: nodes.into_iter().map(|n| n.trim_end_matches('/').to_string()).collect(),
            database: database.to_string(),
            user,
            agent: ureq::Agent::new_with_config(config),
        })
    }

    /// The node URLs.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    fn post(&self, node: &str, query: Option<&str>, body: &[u8], database: bool) -> Result<Vec<u8>, WarehouseError> {
        let mut url = format!("{node}/?");
        if database {
            url.push_str("database=");
            url.push_str(&self.database);
            url.push('&');
        }
        let mut request = self.agent.post(&url);
        if let Some(q) = query {
            request = request.query("query", q);
        }
        if let Some((user, password)) = &self.user {
            request = request.header("X-ClickHouse-User", user).header("X-ClickHouse-Key", password);
        }
        let response = request.send(body).map_err(|e| WarehouseError::Unavailable(format!("{node}: {e}")))?;
        let status = response.status().as_u16();
        let mut out = Vec::new();
        #[allow(clippy::disallowed_methods)] // bounded by take()
        response
            .into_body()
            .into_reader()
            .take(MAX_RESPONSE)
            .read_to_end(&mut out)
            .map_err(|e| WarehouseError::Unavailable(format!("{node}: reading the answer: {e}")))?;
        if status != 200 {
            let text = String::from_utf8_lossy(&out);
            return Err(WarehouseError::Query(text.trim().chars().take(2000).collect()));
        }
        Ok(out)
    }

    /// Creates the database on every node (run before anything else).
    pub fn create_database(&self) -> Result<(), WarehouseError> {
        for node in &self.nodes {
            let sql = format!("CREATE DATABASE IF NOT EXISTS {}", self.database);
            self.post(node, None, sql.as_bytes(), false)?;
        }
        Ok(())
    }
}

impl Backend for ClickHouseHttp {
    fn describe(&self) -> String {
        format!("ClickHouse server {} (database {})", self.nodes.join(", "), self.database)
    }

    fn execute(&self, sql: &str) -> Result<(), WarehouseError> {
        self.post(&self.nodes[0], None, sql.as_bytes(), true).map(|_| ())
    }

    fn execute_everywhere(&self, sql: &str) -> Result<(), WarehouseError> {
        for node in &self.nodes {
            self.post(node, None, sql.as_bytes(), true)?;
        }
        Ok(())
    }

    fn query(&self, sql: &str) -> Result<Vec<u8>, WarehouseError> {
        self.post(&self.nodes[0], None, sql.as_bytes(), true)
    }

    fn insert(&self, table: &str, format: &str, data: &[u8]) -> Result<(), WarehouseError> {
        let query = format!("INSERT INTO {table} FORMAT {format}");
        self.post(&self.nodes[0], Some(&query), data, true).map(|_| ())
    }
}
