//! The batched warehouse writer: the dataflow's event sink for `events`.
//!
//! `write` encodes events as `JSONEachRow` into a shared buffer and inserts once it holds
//! `max_rows`; `flush` (called by the dataflow before every commit of the read positions, at
//! least every 200 ms) inserts whatever is buffered. So rows are written in large inserts, and a
//! log position is committed only after its events are stored. A failed insert keeps its rows for
//! the next attempt; a slow ClickHouse blocks `write` and so pushes back on the dataflow.

use std::sync::{Arc, Mutex};

use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::{EventSink, SinkError};
use serde::Serialize;

use crate::schema::Dialect;
use crate::Warehouse;

/// Rows buffered before `write` inserts on its own.
pub const DEFAULT_MAX_ROWS: usize = 100_000;

#[derive(Default)]
struct Buffer {
    data: Vec<u8>,
    rows: usize,
}

/// Writes processed events into the warehouse's `events` table.
pub struct EventWriter {
    warehouse: Arc<Warehouse>,
    max_rows: usize,
    buffer: Mutex<Buffer>,
    /// Held while inserting, so a `flush` returns only after every earlier insert finished.
    inserting: Mutex<()>,
}

#[derive(Serialize)]
struct Row<'a> {
    uuid: &'a str,
    team_id: u64,
    event: &'a str,
    distinct_id: &'a str,
    properties: String,
    timestamp: String,
    created_at: &'a str,
    elements_chain: &'a str,
    person_id: &'a str,
    person_properties: &'a str,
    _timestamp: &'a str,
}

const NO_PERSON: &str = "00000000-0000-0000-0000-000000000000";

/// Converts an RFC 3339 UTC time (`2024-05-01T10:00:00.123Z`) to ClickHouse's text form for the
/// dialect (`2024-05-01 10:00:00.123000`, or whole seconds for old servers).
pub fn clickhouse_time(rfc3339: &str, dialect: Dialect) -> String {
    let parsed = chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::DateTime::<chrono::Utc>::UNIX_EPOCH);
    match dialect {
        Dialect::Modern => parsed.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        Dialect::Legacy => parsed.format("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

impl EventWriter {
    /// A writer inserting at least every `max_rows` rows (and on every flush).
    pub fn new(warehouse: Arc<Warehouse>, max_rows: usize) -> EventWriter {
        EventWriter {
            warehouse,
            max_rows: max_rows.max(1),
            buffer: Mutex::new(Buffer::default()),
            inserting: Mutex::new(()),
        }
    }

    fn error(&self, message: String) -> SinkError {
        SinkError { sink: "warehouse".into(), message }
    }

    fn encode(&self, events: &[&Event], out: &mut Vec<u8>) -> Result<(), SinkError> {
        let dialect = self.warehouse.dialect();
        let now = chrono::Utc::now();
        let created_at = match dialect {
            Dialect::Modern => now.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            Dialect::Legacy => now.format("%Y-%m-%d %H:%M:%S").to_string(),
        };
        let inserted = now.format("%Y-%m-%d %H:%M:%S").to_string();
        for e in events {
            let row = Row {
                uuid: &e.uuid,
                team_id: e.team_id,
                event: &e.event,
                distinct_id: &e.distinct_id,
                properties: serde_json::to_string(&e.properties).map_err(|err| self.error(err.to_string()))?,
                timestamp: clickhouse_time(&e.timestamp, dialect),
                created_at: &created_at,
                elements_chain: &e.elements_chain,
                person_id: NO_PERSON,
                person_properties: "",
                _timestamp: &inserted,
            };
            serde_json::to_writer(&mut *out, &row).map_err(|err| self.error(err.to_string()))?;
            out.push(b'\n');
        }
        Ok(())
    }

    /// Inserts everything buffered; on failure the rows stay buffered for the next attempt.
    fn insert_buffered(&self) -> Result<(), SinkError> {
        let _inserting = self.inserting.lock().unwrap_or_else(|p| p.into_inner());
        let taken = std::mem::take(&mut *self.buffer.lock().unwrap_or_else(|p| p.into_inner()));
        if taken.rows == 0 {
            return Ok(());
        }
        match self.warehouse.backend().insert(self.warehouse.table("events"), "JSONEachRow", &taken.data) {
            Ok(()) => Ok(()),
            Err(e) => {
                // Put the rows back in front of anything written meanwhile.
                let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
                let mut data = taken.data;
                data.extend_from_slice(&buffer.data);
                buffer.data = data;
                buffer.rows += taken.rows;
                Err(self.error(e.to_string()))
            }
        }
    }
}

impl EventSink for EventWriter {
    fn write(&self, events: &[&Event]) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut encoded = Vec::with_capacity(events.len() * 400);
        self.encode(events, &mut encoded)?;
        let full = {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            buffer.data.extend_from_slice(&encoded);
            buffer.rows += events.len();
            buffer.rows >= self.max_rows
        };
        if full {
            self.insert_buffered()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.insert_buffered()
    }
}
