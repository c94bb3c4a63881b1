//! The PostgreSQL sink: one row per event in a table (created if missing), keyed by the event's
//! `uuid`, so a batch written again after a failure adds nothing (`ON CONFLICT (uuid) DO NOTHING`).
//!
//! A batch is one `INSERT … SELECT … FROM json_to_recordset($1)`: one statement with one parameter
//! (the batch as a JSON array), hence one transaction and one round trip, with no limit on the
//! batch size from PostgreSQL's 65 535 bind parameters. The connection is made on the first write
//! and made again after it broke (the server restarted): a write on a broken connection is retried
//! once on a new one before it fails.
//!
//! Table:
//!
//! ```sql
//! uuid uuid PRIMARY KEY, team_id bigint, event text, distinct_id text, properties jsonb,
//! "timestamp" timestamptz, elements_chain text, ip text
//! ```
//!
//! Values PostgreSQL cannot store are adapted rather than failing the batch forever: a timestamp
//! that is not RFC 3339 becomes `NULL`, and NUL characters (which `text` and `jsonb` reject)
//! become U+FFFD. A `uuid` that is not a UUID or a team id beyond `bigint` fails the write,
//! naming the event (capture only admits valid UUIDs, and functions cannot change them).

use std::sync::Mutex;
use std::time::Duration;

use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::{EventSink, SinkError};
use postgres::{Client, NoTls, Statement};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// `[[sinks]] type = "postgres"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// Connection URL, `postgres://user:password@host:port/database` (or libpq's `key=value`
    /// form). Plain TCP: no TLS.
    pub url: String,
    /// The table, `name` or `schema.name` (letters, digits and `_`). Default `events`.
    #[serde(default = "default_table")]
    pub table: String,
    /// Give up connecting after this many seconds. Default 10.
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
}

fn default_table() -> String {
    "events".into()
}

fn default_connect_timeout_secs() -> u64 {
    10
}

impl PostgresSinkConfig {
    /// A config for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> PostgresSinkConfig {
        PostgresSinkConfig {
            url: url.into(),
            table: default_table(),
            connect_timeout_secs: default_connect_timeout_secs(),
        }
    }
}

/// A PostgreSQL table; see the module docs.
pub struct PostgresSink {
    config: postgres::Config,
    create_sql: String,
    insert_sql: String,
    connection: Mutex<Option<Connection>>,
    name: String,
}

struct Connection {
    client: Client,
    insert: Statement,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink").field("name", &self.name).finish_non_exhaustive()
    }
}

/// `name` or `schema.name`, each part an identifier, quoted.
fn quoted_table(table: &str) -> Option<String> {
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() > 2 {
        return None;
    }
    let mut quoted = Vec::with_capacity(parts.len());
    for part in parts {
        let mut chars = part.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || part.len() > 63 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        quoted.push(format!("\"{part}\""));
    }
    Some(quoted.join("."))
}

/// Where a PostgreSQL config points, for messages: `user@host:port/database` (never the
/// password).
pub fn describe_target(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        Some(postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{db}")
}

/// Where the sink writes, for messages: target and table.
fn describe(config: &postgres::Config, table: &str) -> String {
    format!("postgres sink {} table {table}", describe_target(config))
}

impl PostgresSink {
    /// Checks the URL and the table name; connects on the first write.
    pub fn new(config: PostgresSinkConfig) -> Result<PostgresSink, SinkError> {
        let err = |message: String| SinkError { sink: format!("postgres sink table {}", config.table), message };
        let mut pg: postgres::Config =
            config.url.parse().map_err(|e| err(format!("the connection URL does not parse: {e}")))?;
        pg.connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)));
        if pg.get_application_name().is_none() {
            pg.application_name("hogpipe");
        }
        // A write is acknowledged once durable: commits wait for the WAL flush, whatever the
        // server's default (unless the URL sets its own `options`).
        if pg.get_options().is_none() {
            pg.options("-c synchronous_commit=on");
        }
        let table = quoted_table(&config.table).ok_or_else(|| {
            err(format!(
                "the table name {:?} is not `name` or `schema.name` of letters, digits and `_` (at most 63 each)",
                config.table
            ))
        })?;
        let create_sql = format!(
            "CREATE TABLE IF NOT EXISTS {table} (uuid uuid PRIMARY KEY, team_id bigint NOT NULL, \
             event text NOT NULL, distinct_id text NOT NULL, properties jsonb NOT NULL, \
             \"timestamp\" timestamptz, elements_chain text NOT NULL, ip text NOT NULL)"
        );
        let columns = "uuid, team_id, event, distinct_id, properties, \"timestamp\", elements_chain, ip";
        let insert_sql = format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM json_to_recordset($1::text::json) AS r(\
             uuid uuid, team_id bigint, event text, distinct_id text, properties jsonb, \
             \"timestamp\" timestamptz, elements_chain text, ip text) ON CONFLICT (uuid) DO NOTHING"
        );
        let name = describe(&pg, &config.table);
        Ok(PostgresSink { config: pg, create_sql, insert_sql, connection: Mutex::new(None), name })
    }

    fn error(&self, message: String) -> SinkError {
        SinkError { sink: self.name.clone(), message }
    }

    fn connect(&self) -> Result<Connection, SinkError> {
        let mut client = self.config.connect(NoTls).map_err(|e| self.error(format!("connecting: {e}")))?;
        client.batch_execute(&self.create_sql).map_err(|e| self.error(format!("creating the table: {e}")))?;
        let insert = client.prepare(&self.insert_sql).map_err(|e| self.error(format!("preparing the insert: {e}")))?;
        Ok(Connection { client, insert })
    }

    /// The batch as the JSON array `json_to_recordset` reads.
    fn rows(&self, events: &[&Event]) -> Result<String, SinkError> {
        let mut rows = Vec::with_capacity(events.len());
        for event in events {
            if uuid::Uuid::try_parse(&event.uuid).is_err() {
                return Err(self.error(format!("event uuid {:?} is not a UUID", event.uuid)));
            }
            if i64::try_from(event.team_id).is_err() {
                return Err(self.error(format!("event {}: team id {} is beyond bigint", event.uuid, event.team_id)));
            }
            rows.push(Row {
                uuid: &event.uuid,
                team_id: event.team_id,
                event: &event.event,
                distinct_id: &event.distinct_id,
                properties: &event.properties,
                timestamp: valid_timestamp(&event.timestamp),
                elements_chain: &event.elements_chain,
                ip: &event.ip,
            });
        }
        let text = serde_json::to_string(&rows).map_err(|e| self.error(format!("encoding the batch: {e}")))?;
        if !text.contains("\\u0000") {
            return Ok(text);
        }
        // Rare: some string holds a NUL (or the text `\u0000`); rebuild without NULs.
        let mut value = serde_json::to_value(&rows).map_err(|e| self.error(format!("encoding the batch: {e}")))?;
        strip_nul(&mut value);
        serde_json::to_string(&value).map_err(|e| self.error(format!("encoding the batch: {e}")))
    }
}

#[derive(Serialize)]
struct Row<'a> {
    uuid: &'a str,
    team_id: u64,
    event: &'a str,
    distinct_id: &'a str,
    properties: &'a Map<String, Json>,
    timestamp: Option<&'a str>,
    elements_chain: &'a str,
    ip: &'a str,
}

/// The timestamp when it is RFC 3339 in PostgreSQL's range (year 1 onwards).
fn valid_timestamp(text: &str) -> Option<&str> {
    use chrono::Datelike;
    chrono::DateTime::parse_from_rfc3339(text).ok().filter(|t| t.year() >= 1).map(|_| text)
}

fn strip_nul(value: &mut Json) {
    match value {
        Json::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
        Json::Array(items) => items.iter_mut().for_each(strip_nul),
        Json::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let old = std::mem::take(map);
                for (k, v) in old {
                    map.insert(k.replace('\0', "\u{FFFD}"), v);
                }
            }
            map.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

impl EventSink for PostgresSink {
    fn write(&self, events: &[&Event]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let rows = self.rows(events)?;
        let mut guard = self.connection.lock().map_err(|_| self.error("a previous write panicked".into()))?;
        loop {
            let fresh = guard.is_none();
            let connection = match guard.as_mut() {
                Some(connection) => connection,
                None => guard.insert(self.connect()?),
            };
            match connection.client.execute(&connection.insert, &[&rows]) {
                Ok(_) => return Ok(()),
                Err(e) => {
                    // Whatever went wrong, the next attempt starts from a new connection; one
                    // that was reused may have broken since (a server restart): try once more.
                    *guard = None;
                    if fresh {
                        return Err(self.error(format!("inserting {} events: {e}", events.len())));
                    }
                    tracing::info!(sink = %self.name, error = %e, "reconnecting after a failed insert");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert_eq!(quoted_table("events").as_deref(), Some("\"events\""));
        assert_eq!(quoted_table("analytics.events_2").as_deref(), Some("\"analytics\".\"events_2\""));
        for bad in ["", "1events", "a.b.c", "ev-ents", "ev\"ents", "a.", "events; DROP TABLE x"] {
            assert_eq!(quoted_table(bad), None, "{bad}");
        }
    }

    #[test]
    fn nul_characters_are_replaced() {
        let mut value = serde_json::json!({"a\u{0}": ["x\u{0}y", {"k": "\u{0}"}], "n": 1});
        strip_nul(&mut value);
        assert_eq!(value, serde_json::json!({"a\u{FFFD}": ["x\u{FFFD}y", {"k": "\u{FFFD}"}], "n": 1}));
    }
}
