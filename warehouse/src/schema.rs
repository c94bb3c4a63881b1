//! The warehouse schema, as numbered migrations applied on start.
//!
//! Tables follow PostHog's: `events` (one row per event, idempotent on `uuid`: a
//! `ReplacingMergeTree` whose sort key ends with the uuid, read with `FINAL`), `persons` and
//! `person_distinct_ids` (identify/alias merges, newest `version` wins), and `live_aggregates`
//! (persisted live aggregate rows). SQL runs on ClickHouse 18.16 (Debian's server) and on chDB
//! 26.x: where they differ — `DateTime64` and `LowCardinality` are newer than 18.16 — the
//! [`Dialect`] picks the form.
//! In a cluster, every node holds `<table>_local` and `<table>` is a `Distributed` table over them.

use crate::backend::{Backend, Rows, WarehouseError};

/// Which SQL a server takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// ClickHouse 20.1 and later (chDB): `DateTime64`, microsecond timestamps.
    Modern,
    /// Older servers (Debian's 18.16): `DateTime`, second timestamps.
    Legacy,
}

impl Dialect {
    /// The dialect of a server reporting `version` (`SELECT version()`).
    pub fn from_version(version: &str) -> Dialect {
        let major: u32 = version.split('.').next().and_then(|m| m.trim().parse().ok()).unwrap_or(0);
        if major >= 20 {
            Dialect::Modern
        } else {
            Dialect::Legacy
        }
    }

    /// The column type of event times.
    pub fn time_type(self) -> &'static str {
        match self {
            Dialect::Modern => "DateTime64(6, 'UTC')",
            Dialect::Legacy => "DateTime('UTC')",
        }
    }
}

/// How tables are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One node: tables are what they are called.
    Single,
    /// A cluster named in the servers' `remote_servers`: `<table>_local` on every node and a
    /// `Distributed` `<table>` sharding rows by the given expression.
    Cluster {
        /// Cluster name.
        cluster: String,
        /// Database the local tables are in (the same on every node).
        database: String,
    },
}

struct Table {
    name: &'static str,
    columns: fn(Dialect) -> String,
    engine: &'static str,
    shard_key: &'static str,
}

fn events_columns(d: Dialect) -> String {
    let t = d.time_type();
    format!(
        "uuid UUID, team_id Int64, event String, distinct_id String, properties String, \
         timestamp {t}, created_at {t}, elements_chain String, person_id UUID, \
         person_properties String, _timestamp DateTime('UTC')"
    )
}

fn persons_columns(d: Dialect) -> String {
    let t = d.time_type();
    format!(
        "id UUID, team_id Int64, properties String, is_identified UInt8, created_at {t}, \
         version UInt64, is_deleted UInt8"
    )
}

fn pdi_columns(_: Dialect) -> String {
    "team_id Int64, distinct_id String, person_id UUID, version UInt64, is_deleted UInt8".into()
}

fn live_columns(_: Dialect) -> String {
    "team_id Int64, aggregate_id String, bucket DateTime('UTC'), event String, group_1 String, \
     group_2 String, value Float64, version UInt64"
        .into()
}

const TABLES: &[(u32, Table)] = &[
    (
        1,
        Table {
            name: "events",
            columns: events_columns,
            engine: "ReplacingMergeTree(_timestamp) PARTITION BY toYYYYMM(timestamp) \
                     ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), uuid)",
            shard_key: "sipHash64(distinct_id)",
        },
    ),
    (
        2,
        Table {
            name: "persons",
            columns: persons_columns,
            engine: "ReplacingMergeTree(version) ORDER BY (team_id, id)",
            shard_key: "sipHash64(toString(id))",
        },
    ),
    (
        3,
        Table {
            name: "person_distinct_ids",
            columns: pdi_columns,
            engine: "ReplacingMergeTree(version) ORDER BY (team_id, distinct_id)",
            shard_key: "sipHash64(distinct_id)",
        },
    ),
    (
        4,
        Table {
            name: "live_aggregates",
            columns: live_columns,
            engine: "ReplacingMergeTree(version) ORDER BY (team_id, aggregate_id, bucket, event, group_1, group_2)",
            shard_key: "sipHash64(aggregate_id)",
        },
    ),
];

/// Event properties PostHog deployments query most, kept in columns of their own
/// (`` `mat_$browser` ``) that ClickHouse fills on insert (`MATERIALIZED`), so trends and
/// breakdowns read a short column instead of scanning every event's JSON. The expression is the
/// insights' property-as-string rule, so a query gives the same answer with or without them.
pub const MATERIALIZED_PROPERTIES: &[&str] = &["$browser", "$os", "$device_type", "$current_url"];

/// The column holding event property `key`, if it is materialized.
pub fn materialized_column(key: &str) -> Option<String> {
    MATERIALIZED_PROPERTIES.contains(&key).then(|| format!("`mat_{key}`"))
}

/// Version of the migration adding [`MATERIALIZED_PROPERTIES`].
const MATERIALIZED_VERSION: u32 = 5;

/// Version of the migration storing `events.event` as `LowCardinality(String)` (modern servers;
/// 18.16 has it only as an experiment and keeps `String`). Event names are few, so the column
/// reads as small dictionary indexes and comparisons run once per distinct name: on
/// `hogpipe bench query` the 3-step funnel took ~15 % less CPU. Reads and inserts see a string
/// as before (`RowBinary` writes it as one).
const LOW_CARDINALITY_VERSION: u32 = 6;

/// The newest schema version.
pub const SCHEMA_VERSION: u32 = LOW_CARDINALITY_VERSION;

/// Records an applied migration (`name` is ours, never user text).
fn record(backend: &dyn Backend, version: u32, name: &str, applied: &mut Vec<u32>) -> Result<(), WarehouseError> {
    backend.execute_everywhere(&format!(
        "INSERT INTO hogpipe_migrations (version, name, applied_at) VALUES ({version}, '{name}', now())"
    ))?;
    tracing::info!(version, name, "warehouse migration applied");
    applied.push(version);
    Ok(())
}

/// Applies every migration newer than the recorded version; returns the versions applied.
pub fn migrate(backend: &dyn Backend, dialect: Dialect, layout: &Layout) -> Result<Vec<u32>, WarehouseError> {
    backend.execute_everywhere(
        "CREATE TABLE IF NOT EXISTS hogpipe_migrations (version UInt32, name String, applied_at DateTime('UTC')) \
         ENGINE = MergeTree() ORDER BY version",
    )?;
    let out = backend.query("SELECT max(version) FROM hogpipe_migrations FORMAT JSONCompact")?;
    let current = Rows::from_json_compact(&out)?.scalar_u64().unwrap_or(0) as u32;
    let mut applied = Vec::new();
    for (version, table) in TABLES {
        if *version <= current {
            continue;
        }
        let columns = (table.columns)(dialect);
        match layout {
            Layout::Single => {
                backend.execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {} ({columns}) ENGINE = {}",
                    table.name, table.engine
                ))?;
            }
            Layout::Cluster { cluster, database } => {
                backend.execute_everywhere(&format!(
                    "CREATE TABLE IF NOT EXISTS {}_local ({columns}) ENGINE = {}",
                    table.name, table.engine
                ))?;
                backend.execute_everywhere(&format!(
                    "CREATE TABLE IF NOT EXISTS {name} ({columns}) ENGINE = Distributed({cluster}, {database}, {name}_local, {key})",
                    name = table.name,
                    key = table.shard_key
                ))?;
            }
        }
        record(backend, *version, &format!("create {}", table.name), &mut applied)?;
    }
    if current < MATERIALIZED_VERSION {
        // Stored on each node's table; a cluster's Distributed table computes the same value
        // (ALIAS), because inserts through it would otherwise try to forward the column.
        let tables: Vec<(&str, &str)> = match layout {
            Layout::Single => vec![("events", "MATERIALIZED")],
            Layout::Cluster { .. } => vec![("events_local", "MATERIALIZED"), ("events", "ALIAS")],
        };
        for (table, kind) in tables {
            for key in MATERIALIZED_PROPERTIES {
                let column = materialized_column(key).unwrap_or_default();
                let expression = crate::insights::property_string(crate::insights::PropertyType::Event, key, false);
                backend.execute_everywhere(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} String {kind} {expression}"
                ))?;
            }
        }
        record(backend, MATERIALIZED_VERSION, "materialize hot event properties", &mut applied)?;
    }
    if current < LOW_CARDINALITY_VERSION {
        // A column of the sort key may change to LowCardinality of its type (same order); the
        // stored column is rewritten by a background mutation, and reads convert until then.
        let tables: &[&str] = match (dialect, layout) {
            (Dialect::Legacy, _) => &[],
            (Dialect::Modern, Layout::Single) => &["events"],
            (Dialect::Modern, Layout::Cluster { .. }) => &["events_local", "events"],
        };
        for table in tables {
            backend.execute_everywhere(&format!("ALTER TABLE {table} MODIFY COLUMN event LowCardinality(String)"))?;
        }
        record(backend, LOW_CARDINALITY_VERSION, "event names as LowCardinality", &mut applied)?;
    }
    Ok(applied)
}
