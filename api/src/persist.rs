//! Keeps the state store's function logs and metrics up to date: every second the lines and
//! counters the running functions produced (in [`FunctionStats`], in memory) are written to the
//! store, where `GET …/hog_functions/{id}/logs` and `…/metrics` read them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hogpipe_dataflow::functions::{FunctionCounters, FunctionStats, DURATION_BUCKETS_MICROS};

use crate::store::{FunctionLog, MetricDelta, Store};

/// Log lines kept per function in the store.
pub const LOG_LINES_PER_FUNCTION: usize = 10_000;

/// The start of the hour of `ms` (since the epoch), RFC 3339.
pub fn hour_bucket(ms: i64) -> String {
    let hour = ms.div_euclid(3_600_000) * 3_600_000;
    chrono::DateTime::from_timestamp_millis(hour).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Copies what the functions logged and counted since the last call into the store. `seen`
/// holds the counters already written; `project_of` maps a function id to its project.
pub fn flush(
    stats: &FunctionStats,
    store: &Store,
    seen: &mut BTreeMap<String, FunctionCounters>,
    project_of: &dyn Fn(&str) -> Option<u64>,
) -> Result<(), crate::store::StoreError> {
    let (lines, dropped) = stats.take_new_logs();
    if dropped > 0 {
        tracing::warn!(dropped, "function log lines dropped before they could be stored");
    }
    let logs: Vec<FunctionLog> = lines
        .into_iter()
        .filter_map(|(id, ms, line)| {
            Some(FunctionLog {
                project_id: project_of(&id)?,
                timestamp: chrono::DateTime::from_timestamp_millis(ms)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                function_id: id,
                level: line.level.to_string(),
                invocation_id: line.event_uuid,
                message: line.message,
            })
        })
        .collect();
    if !logs.is_empty() {
        store.append_logs(&logs, LOG_LINES_PER_FUNCTION)?;
    }
    let bucket = hour_bucket(chrono::Utc::now().timestamp_millis());
    let mut deltas = Vec::new();
    let current = stats.all_counters();
    for (id, c) in &current {
        let Some(project_id) = project_of(id) else { continue };
        let before = seen.get(id).cloned().unwrap_or_default();
        let mut add = |metric: String, now: u64, then: u64| {
            if now > then {
                deltas.push(MetricDelta {
                    project_id,
                    function_id: id.clone(),
                    metric,
                    bucket: bucket.clone(),
                    count: now - then,
                });
            }
        };
        add("invocations".into(), c.invocations, before.invocations);
        add("succeeded".into(), c.succeeded, before.succeeded);
        add("failed".into(), c.failed, before.failed);
        add("filtered".into(), c.filtered, before.filtered);
        add("dropped".into(), c.dropped, before.dropped);
        add("routed".into(), c.routed, before.routed);
        for (i, (now, then)) in c.durations.iter().zip(before.durations.iter()).enumerate() {
            let name = match DURATION_BUCKETS_MICROS.get(i) {
                Some(b) => format!("duration_le_{}us", b),
                None => "duration_gt_1000000us".to_string(),
            };
            add(name, *now, *then);
        }
    }
    if !deltas.is_empty() {
        store.add_metrics(&deltas)?;
    }
    *seen = current;
    Ok(())
}

/// Maps a function id to its project (`None`: unknown, its lines are not stored).
pub type ProjectOf = Arc<dyn Fn(&str) -> Option<u64> + Send + Sync>;

/// Runs [`flush`] every second on a thread until `stop`, then once more.
pub fn spawn(
    stats: Arc<FunctionStats>,
    store: Arc<Store>,
    project_of: ProjectOf,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("hogpipe-fn-stats".into()).spawn(move || {
        let mut seen = BTreeMap::new();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if let Err(e) = flush(&stats, &store, &mut seen, project_of.as_ref()) {
                tracing::warn!(error = %e, "cannot store function logs and metrics; retrying");
            }
            if stopping {
                break;
            }
            for _ in 0..10 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })
}
