//! Live aggregates in `serve`: a background thread persists changed rows into the warehouse's
//! `live_aggregates` table every second. (The API route is `hogpipe_api::routes::live`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hogpipe_dataflow::live::{Live, LiveRow};
use hogpipe_warehouse::Warehouse;
use serde::Serialize;

#[derive(Serialize)]
struct PersistedRow<'a> {
    team_id: u64,
    aggregate_id: &'a str,
    bucket: String,
    event: &'a str,
    group_1: &'a str,
    group_2: &'a str,
    value: f64,
    version: u64,
}

/// Writes changed live rows into `live_aggregates` every second until `stop`.
pub fn persist(live: Arc<Live>, warehouse: Arc<Warehouse>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seen = 0u64;
        let mut pending: Vec<LiveRow> = Vec::new();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let (rows, next) = live.store().changes_since(seen);
            seen = next;
            pending.extend(rows);
            if !pending.is_empty() {
                let mut data = Vec::new();
                for r in &pending {
                    let team_id = live.registry().get(&r.definition).map_or(0, |d| d.project_id);
                    let g = |i: usize| r.groups.get(i).and_then(|g| g.as_deref()).unwrap_or("");
                    let row = PersistedRow {
                        team_id,
                        aggregate_id: &r.definition,
                        bucket: chrono::DateTime::from_timestamp_millis(r.bucket_start_ms)
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default(),
                        event: &r.event,
                        group_1: g(0),
                        group_2: g(1),
                        value: r.value.as_f64(),
                        // Rows of buckets that began before this process started miss the events
                        // processed before: version 0 lets a row stored before a restart win over
                        // them, while a bucket with no stored row still gets one.
                        version: if r.partial { 0 } else { r.version },
                    };
                    if serde_json::to_writer(&mut data, &row).is_ok() {
                        data.push(b'\n');
                    }
                }
                match warehouse.backend().insert("live_aggregates", "JSONEachRow", &data) {
                    Ok(()) => pending.clear(),
                    // Kept and retried next second: versions make a late write harmless.
                    Err(e) => {
                        tracing::warn!(error = %e, rows = pending.len(), "persisting live aggregates failed; retrying")
                    }
                }
            }
            if stopping {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}
