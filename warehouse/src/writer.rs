//! The batched warehouse writer: the dataflow's event sink for `events`.
//!
//! `write` encodes events into a shared buffer (`RowBinary` on modern ClickHouse such as chDB,
//! `JSONEachRow` on old servers) and inserts once it holds `max_rows`; `flush` (called by the
//! dataflow before every commit of the read positions, at least every 200 ms) inserts whatever is
//! buffered. So rows are written in large inserts, and a log position is committed only after its
//! events are stored. A failed insert keeps its rows for the next attempt; a slow ClickHouse
//! blocks `write` and so pushes back on the dataflow.

use std::sync::{Arc, Mutex};

use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::{EventSink, SinkError};
use serde::Serialize;

use crate::persons::{PersonChange, Persons};
use crate::schema::Dialect;
use crate::{Warehouse, WarehouseError};

/// Rows buffered before `write` inserts on its own.
pub const DEFAULT_MAX_ROWS: usize = 50_000;

/// The columns the writer fills, in the order of its `RowBinary` rows.
const EVENTS_INSERT: &str = "events (uuid, team_id, event, distinct_id, properties, timestamp, created_at, \
                             elements_chain, person_id, person_properties, _timestamp)";

/// Rows are handed to the backend in pieces of about this many bytes.
const PIECE_BYTES: usize = 8 << 20;

#[derive(Default)]
struct Buffer {
    /// `events` rows.
    data: Vec<u8>,
    rows: usize,
    /// Offsets in `data` where a row ends, about every [`PIECE_BYTES`]: where an insert may be
    /// cut into pieces (`RowBinary` rows cannot be found by scanning for newlines).
    cuts: Vec<usize>,
    /// `persons` rows.
    persons: Vec<u8>,
    /// `person_distinct_ids` rows.
    distinct_ids: Vec<u8>,
}

impl Buffer {
    /// Puts `earlier` (rows from a failed insert) in front of what was written since.
    fn prepend(&mut self, earlier: Buffer) {
        fn front(into: &mut Vec<u8>, mut first: Vec<u8>) {
            first.extend_from_slice(into);
            *into = first;
        }
        let shift = earlier.data.len();
        let mut cuts = earlier.cuts;
        if shift > 0 {
            cuts.push(shift);
        }
        cuts.extend(self.cuts.iter().map(|c| c + shift));
        self.cuts = cuts;
        front(&mut self.data, earlier.data);
        front(&mut self.persons, earlier.persons);
        front(&mut self.distinct_ids, earlier.distinct_ids);
        self.rows += earlier.rows;
    }
}

/// Writes processed events into the warehouse's `events` table.
pub struct EventWriter {
    warehouse: Arc<Warehouse>,
    max_rows: usize,
    persons: Mutex<Persons>,
    buffer: Mutex<Buffer>,
    /// Held while inserting, so a `flush` returns only after every earlier insert finished; it
    /// keeps the allocation of the last inserted rows for the next swap.
    inserting: Mutex<Vec<u8>>,
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
    person_id: String,
    person_properties: String,
    _timestamp: &'a str,
}

#[derive(Serialize)]
struct PersonRow<'a> {
    id: &'a str,
    team_id: u64,
    properties: String,
    is_identified: u8,
    created_at: &'a str,
    version: u64,
    is_deleted: u8,
}

#[derive(Serialize)]
struct DistinctIdRow<'a> {
    team_id: u64,
    distinct_id: &'a str,
    person_id: &'a str,
    version: u64,
    is_deleted: u8,
}

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
    /// A writer inserting at least every `max_rows` rows (and on every flush); loads the persons
    /// already stored.
    pub fn new(warehouse: Arc<Warehouse>, max_rows: usize) -> Result<EventWriter, WarehouseError> {
        let persons = Persons::load(&warehouse)?;
        Ok(EventWriter {
            warehouse,
            max_rows: max_rows.max(1),
            persons: Mutex::new(persons),
            buffer: Mutex::new(Buffer::default()),
            inserting: Mutex::new(Vec::new()),
        })
    }

    fn error(&self, message: String) -> SinkError {
        SinkError { sink: "warehouse".into(), message }
    }

    fn encode(&self, events: &[&Event], out: &mut Buffer) -> Result<(), SinkError> {
        let dialect = self.warehouse.dialect();
        let now = chrono::Utc::now();
        let created_at = match dialect {
            Dialect::Modern => now.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
            Dialect::Legacy => now.format("%Y-%m-%d %H:%M:%S").to_string(),
        };
        let inserted = now.format("%Y-%m-%d %H:%M:%S").to_string();
        let mut changes = Vec::new();
        let mut persons = self.persons.lock().unwrap_or_else(|p| p.into_inner());
        let created_micros = now.timestamp_micros();
        let inserted_secs = u32::try_from(now.timestamp()).unwrap_or(u32::MAX);
        for e in events {
            let (person_id, person_properties) =
                persons.process(e.team_id, &e.event, &e.distinct_id, &e.properties, &created_at, &mut changes);
            let properties = serde_json::to_string(&e.properties).map_err(|err| self.error(err.to_string()))?;
            match dialect {
                Dialect::Modern => {
                    use crate::rowbinary::{micros, put_i64, put_str, put_u32, put_uuid, uuid_of};
                    let out = &mut out.data;
                    put_uuid(out, &uuid_of(&e.uuid));
                    put_i64(out, e.team_id as i64);
                    put_str(out, &e.event);
                    put_str(out, &e.distinct_id);
                    put_str(out, &properties);
                    put_i64(out, micros(&e.timestamp));
                    put_i64(out, created_micros);
                    put_str(out, &e.elements_chain);
                    put_uuid(out, &uuid_of(&person_id));
                    put_str(out, &person_properties);
                    put_u32(out, inserted_secs);
                }
                Dialect::Legacy => {
                    let row = Row {
                        uuid: &e.uuid,
                        team_id: e.team_id,
                        event: &e.event,
                        distinct_id: &e.distinct_id,
                        properties,
                        timestamp: clickhouse_time(&e.timestamp, dialect),
                        created_at: &created_at,
                        elements_chain: &e.elements_chain,
                        person_id,
                        person_properties,
                        _timestamp: &inserted,
                    };
                    serde_json::to_writer(&mut out.data, &row).map_err(|err| self.error(err.to_string()))?;
                    out.data.push(b'\n');
                }
            }
            out.rows += 1;
            if out.data.len() - out.cuts.last().copied().unwrap_or(0) >= PIECE_BYTES {
                out.cuts.push(out.data.len());
            }
        }
        drop(persons);
        for change in &changes {
            let written = match change {
                PersonChange::Person { team_id, person, deleted } => serde_json::to_writer(
                    &mut out.persons,
                    &PersonRow {
                        id: &person.id,
                        team_id: *team_id,
                        properties: person.properties_json.clone(),
                        is_identified: person.is_identified as u8,
                        created_at: &person.created_at,
                        version: person.version,
                        is_deleted: *deleted as u8,
                    },
                )
                .map(|_| out.persons.push(b'\n')),
                PersonChange::DistinctId { team_id, distinct_id, person_id, version } => serde_json::to_writer(
                    &mut out.distinct_ids,
                    &DistinctIdRow { team_id: *team_id, distinct_id, person_id, version: *version, is_deleted: 0 },
                )
                .map(|_| out.distinct_ids.push(b'\n')),
            };
            written.map_err(|err| self.error(err.to_string()))?;
        }
        Ok(())
    }

    /// Inserts everything buffered; on failure the rows stay buffered for the next attempt.
    fn insert_buffered(&self) -> Result<(), SinkError> {
        let mut spare = self.inserting.lock().unwrap_or_else(|p| p.into_inner());
        let taken = {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            let data = std::mem::replace(&mut buffer.data, std::mem::take(&mut *spare));
            Buffer {
                data,
                rows: std::mem::take(&mut buffer.rows),
                cuts: std::mem::take(&mut buffer.cuts),
                persons: std::mem::take(&mut buffer.persons),
                distinct_ids: std::mem::take(&mut buffer.distinct_ids),
            }
        };
        if taken.rows == 0 && taken.persons.is_empty() && taken.distinct_ids.is_empty() {
            *spare = taken.data;
            return Ok(());
        }
        // Persons first: an event is never visible with a person id whose row is missing.
        let backend = self.warehouse.backend();
        let result = (|| {
            if !taken.persons.is_empty() {
                backend.insert("persons", "JSONEachRow", &taken.persons)?;
            }
            if !taken.distinct_ids.is_empty() {
                backend.insert("person_distinct_ids", "JSONEachRow", &taken.distinct_ids)?;
            }
            if taken.rows > 0 {
                match self.warehouse.dialect() {
                    // Duplicates are merged away later and `FINAL` reads see through them, so
                    // the insert skips its own pass over the block (~15 % of the insert's cost).
                    Dialect::Modern => backend.insert_pieces(
                        &format!("{EVENTS_INSERT} SETTINGS optimize_on_insert = 0"),
                        "RowBinary",
                        &taken.data,
                        &taken.cuts,
                    )?,
                    Dialect::Legacy => backend.insert_pieces(EVENTS_INSERT, "JSONEachRow", &taken.data, &taken.cuts)?,
                }
            }
            Ok::<(), WarehouseError>(())
        })();
        match result {
            Ok(()) => {
                // Keep the allocation for the next swap (fresh pages cost more than reuse).
                let mut data = taken.data;
                data.clear();
                *spare = data;
                Ok(())
            }
            Err(e) => {
                // Keep the rows, in front of anything written meanwhile. (Person rows inserted
                // before the failure are inserted again: same versions, so nothing changes.)
                self.buffer.lock().unwrap_or_else(|p| p.into_inner()).prepend(taken);
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
        // Encoded straight into the shared buffer: person processing serializes writers anyway,
        // and one long-lived allocation avoids faulting in fresh pages for every batch.
        let full = {
            let mut buffer = self.buffer.lock().unwrap_or_else(|p| p.into_inner());
            let mark = (buffer.data.len(), buffer.persons.len(), buffer.distinct_ids.len(), buffer.rows);
            if let Err(e) = self.encode(events, &mut buffer) {
                buffer.cuts.retain(|&c| c <= mark.0);
                buffer.data.truncate(mark.0);
                buffer.persons.truncate(mark.1);
                buffer.distinct_ids.truncate(mark.2);
                buffer.rows = mark.3;
                return Err(e);
            }
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

#[cfg(test)]
mod tests {
    use super::Buffer;

    fn buffer(data: &[u8], cuts: &[usize]) -> Buffer {
        Buffer { data: data.to_vec(), rows: cuts.len().max(1), cuts: cuts.to_vec(), ..Buffer::default() }
    }

    #[test]
    fn rows_of_a_failed_insert_go_first_with_their_cuts_kept_at_row_ends() {
        // Rows written after the failure: "ccc|dd", a cut after "ccc".
        let mut now = buffer(b"cccdd", &[3]);
        // The failed insert: "aa|b", a cut after "aa".
        now.prepend(buffer(b"aab", &[2]));
        assert_eq!(now.data, b"aabcccdd");
        // Its own cut, the boundary between the two, and the later cut shifted by 3.
        assert_eq!(now.cuts, [2, 3, 6]);

        let mut only_new = buffer(b"xy", &[1]);
        only_new.prepend(Buffer::default());
        assert_eq!((only_new.data.as_slice(), only_new.cuts.as_slice()), (&b"xy"[..], &[1][..]));
    }
}
