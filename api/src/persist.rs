//! Keeps the state store's function logs and metrics up to date: every second the lines and
//! counters the running functions produced (in [`FunctionStats`], in memory) are written to the
//! store, where `GET …/hog_functions/{id}/logs` and `…/metrics` read them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hogpipe_dataflow::functions::{FunctionCounters, FunctionStats, DURATION_BUCKETS_MICROS, PENDING_LOG_LINES};

use crate::store::{FunctionLog, MetricDelta, Store};

/// Log lines kept per function in the store.
pub const LOG_LINES_PER_FUNCTION: usize = 10_000;

/// The start of the hour of `ms` (since the epoch), RFC 3339.
pub fn hour_bucket(ms: i64) -> String {
    let hour = ms.div_euclid(3_600_000) * 3_600_000;
    chrono::DateTime::from_timestamp_millis(hour).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What [`flush`] has written so far, and what it still has to.
#[derive(Default)]
pub struct Progress {
    /// Counters already written, per function.
    seen: BTreeMap<String, FunctionCounters>,
    /// Log lines taken from the stats but not yet stored (a failed write is retried).
    backlog: Vec<FunctionLog>,
}

/// Copies what the functions logged and counted since the last call into the store;
/// `project_of` maps a function id to its project. After a failed write the same lines and
/// counts are written by the next call (log lines beyond [`PENDING_LOG_LINES`] waiting are
/// dropped, oldest first, with a warning).
pub fn flush(
    stats: &FunctionStats,
    store: &Store,
    progress: &mut Progress,
    project_of: &dyn Fn(&str) -> Option<u64>,
) -> Result<(), crate::store::StoreError> {
    // `project_of` may scan every deployed function: ask it once per function, not per line.
    let mut projects: HashMap<String, Option<u64>> = HashMap::new();
    let mut project_of = |id: &str| -> Option<u64> {
        if let Some(p) = projects.get(id) {
            return *p;
        }
        let p = project_of(id);
        projects.insert(id.to_string(), p);
        p
    };
    let (lines, dropped) = stats.take_new_logs();
    if dropped > 0 {
        tracing::warn!(dropped, "function log lines dropped before they could be stored");
    }
    let fresh = lines.into_iter().filter_map(|(id, ms, line)| {
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
    });
    progress.backlog.extend(fresh);
    if progress.backlog.len() > PENDING_LOG_LINES {
        let excess = progress.backlog.len() - PENDING_LOG_LINES;
        tracing::warn!(dropped = excess, "function log lines dropped: the state store keeps failing");
        progress.backlog.drain(..excess);
    }
    if !progress.backlog.is_empty() {
        store.append_logs(&progress.backlog, LOG_LINES_PER_FUNCTION)?;
        progress.backlog.clear();
    }
    let bucket = hour_bucket(chrono::Utc::now().timestamp_millis());
    let mut deltas = Vec::new();
    let current = stats.all_counters();
    for (id, c) in &current {
        let Some(project_id) = project_of(id) else { continue };
        let before = progress.seen.get(id).cloned().unwrap_or_default();
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
    progress.seen = current;
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
        let mut progress = Progress::default();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if let Err(e) = flush(&stats, &store, &mut progress, project_of.as_ref()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use hogpipe_dataflow::functions::LogLine;
    use std::collections::HashMap;

    fn counters(invocations: u64, failed: u64, micros: u64) -> HashMap<String, FunctionCounters> {
        let mut c = FunctionCounters { invocations, succeeded: invocations - failed, failed, ..Default::default() };
        for _ in 0..invocations {
            c.record_duration(micros);
        }
        HashMap::from([("f1".to_string(), c)])
    }

    #[test]
    fn lines_and_counter_deltas_reach_the_store_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::StoreConfig::default(), dir.path()).unwrap();
        let stats = FunctionStats::default();
        let project_of = |id: &str| (id == "f1").then_some(7);
        let mut progress = Progress::default();
        stats.merge(&counters(3, 1, 50));
        let line = |m: &str| LogLine { level: "info", event_uuid: "e1".into(), message: m.into() };
        stats.log("f1", [line("one"), line("two")]);
        stats.log("unknown", [line("dropped: no project")]);
        flush(&stats, &store, &mut progress, &project_of).unwrap();
        // Nothing new: nothing added.
        flush(&stats, &store, &mut progress, &project_of).unwrap();
        stats.merge(&counters(2, 0, 5_000));
        flush(&stats, &store, &mut progress, &project_of).unwrap();

        let logs = store.logs(7, "f1", 10, None).unwrap();
        let messages: Vec<&str> = logs.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(messages, ["two", "one"], "newest first, each once");
        let metrics = store.metrics(7, "f1", "2000-01-01T00:00:00Z").unwrap();
        let total = |m: &str| metrics.iter().filter(|r| r.metric == m).map(|r| r.count).sum::<u64>();
        assert_eq!((total("invocations"), total("succeeded"), total("failed")), (5, 4, 1));
        assert_eq!((total("duration_le_100us"), total("duration_le_10000us")), (3, 2));
    }
}
