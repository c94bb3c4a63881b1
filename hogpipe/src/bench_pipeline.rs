//! `hogpipe bench pipeline`: events/s from the event log through three Hog transformations and one
//! destination filter to a null sink, with 1 and 2 workers.
//!
//! The workload is ANCHORS.md's (`hogpipe_dataflow::workload`): `$pageview` events with 10
//! properties; add `email_hash` (sha256 of `properties.email`) and delete `email`; add `path` (the
//! URL without its origin); keep only events whose path matches `^/p/1`; route `$pageview`s to a
//! destination.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hogpipe_capture::log::wal::{Wal, WalConfig};
use hogpipe_capture::log::EventLog;
use hogpipe_dataflow::event::Project;
use hogpipe_dataflow::functions::{FunctionStats, Registry};
use hogpipe_dataflow::graph::{run, Options, Pipeline, Until};
use hogpipe_dataflow::health::{HealthConfig, Watcher};
use hogpipe_dataflow::runner::{Processed, Runner};
use hogpipe_dataflow::sink::NullSink;
use hogpipe_dataflow::workload;

/// Options of `hogpipe bench pipeline`.
#[derive(Args, Debug)]
pub struct PipelineBenchArgs {
    /// Events written to the log before measuring.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Worker counts to measure (repeatable).
    #[arg(long = "workers", default_values_t = [1usize, 2])]
    workers: Vec<usize>,
    /// Records read per partition per round.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Measure the runner alone instead (records already in memory, no log, no timely): the
    /// per-event cost of reading records, the Hog functions and the conversion for the sinks,
    /// on one thread, best and median of this many passes.
    #[arg(long, value_name = "PASSES")]
    runner: Option<usize>,
}

fn fill(dir: &std::path::Path, n: usize) -> Result<Arc<Wal>> {
    let mut config = WalConfig::new(dir.join("log"));
    config.partitions = 8;
    config.fsync = false;
    let wal = Arc::new(Wal::open(config)?);
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let mut i = 0;
    while i < n {
        let count = 1000.min(n - i);
        let records = workload::records(i, i + count).map_err(anyhow::Error::msg)?;
        runtime.block_on(wal.append(records))?;
        i += count;
    }
    Ok(wal)
}

/// Runs the benchmark.
pub fn run_bench(args: PipelineBenchArgs) -> Result<()> {
    if args.events == 0 || args.workers.contains(&0) || args.runner == Some(0) {
        bail!("--events, --workers and --runner must be at least 1");
    }
    if let Some(passes) = args.runner {
        return runner_only(args.events, passes, args.json);
    }
    let dir = std::env::temp_dir().join(format!("hogpipe-bench-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    if !args.json {
        eprintln!("writing {} events to a temporary log …", args.events);
    }
    let wal = fill(&dir, args.events).context("cannot fill the benchmark log")?;
    let functions = workload::functions().map_err(anyhow::Error::msg)?;
    let registry = Arc::new(Registry::new(functions));
    let mut rows = Vec::new();
    for (round, &workers) in args.workers.iter().enumerate() {
        let stats = Arc::new(FunctionStats::default());
        let pipeline = Pipeline {
            log: wal.clone(),
            registry: registry.clone(),
            projects: Arc::new(HashMap::from([(
                workload::TOKEN.to_string(),
                Project { id: workload::PROJECT_ID, name: "bench".into() },
            )])),
            events: Arc::new(NullSink),
            invocations: Arc::new(NullSink),
            stats: stats.clone(),
            watcher: Arc::new(Watcher::new(HealthConfig { refill_per_second: 1e9, ..HealthConfig::default() })),
            live: None,
        };
        // A fresh consumer group per run, so each starts from the beginning of the log.
        let options =
            Options { workers, batch_size: args.batch_size, group: format!("bench-{round}"), ..Options::default() };
        if !args.json {
            eprintln!("{workers} worker(s) …");
        }
        let started = Instant::now();
        let summary = run(pipeline, options, Until::CaughtUp)?;
        let secs = started.elapsed().as_secs_f64();
        if summary.read != args.events as u64 {
            bail!("read {} of {} events", summary.read, args.events);
        }
        if summary.written != workload::expected_kept(args.events) as u64 {
            bail!("kept {} events, expected {}", summary.written, workload::expected_kept(args.events));
        }
        rows.push((workers, secs, summary.written, stats.counters(workload::DESTINATION.0).routed));
    }
    drop(registry);
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
    if args.json {
        let out: Vec<_> = rows
            .iter()
            .map(|(w, s, kept, routed)| {
                serde_json::json!({"workers": w, "seconds": s, "events_per_second": args.events as f64 / s, "kept": kept, "routed": routed})
            })
            .collect();
        println!("{}", serde_json::Value::Array(out));
    } else {
        println!(
            "{:>7} {:>10} {:>14} {:>12} {:>10} {:>10}",
            "workers", "seconds", "events/s", "µs/event/w", "kept", "routed"
        );
        for (w, s, kept, routed) in &rows {
            println!(
                "{:>7} {:>10.2} {:>14.0} {:>12.2} {:>10} {:>10}",
                w,
                s,
                args.events as f64 / s,
                s * 1e6 * *w as f64 / args.events as f64,
                kept,
                routed
            );
        }
    }
    Ok(())
}

/// `--runner PASSES`: the runner on records in memory, one thread.
fn runner_only(events: usize, passes: usize, json: bool) -> Result<()> {
    let records = workload::records(0, events).map_err(anyhow::Error::msg)?;
    let registry = Registry::new(workload::functions().map_err(anyhow::Error::msg)?);
    let projects = HashMap::from([(workload::PROJECT_ID, Project { id: workload::PROJECT_ID, name: "bench".into() })]);
    let watcher = Arc::new(Watcher::new(HealthConfig { refill_per_second: 1e9, ..HealthConfig::default() }));
    let mut runner = Runner::new(Arc::new(projects), Arc::new(FunctionStats::default()), watcher);
    runner.use_set(&registry.snapshot());
    let team_of = |token: &str| (token == workload::TOKEN).then_some(workload::PROJECT_ID);
    let expected = workload::expected_kept(events);
    let mut times = Vec::with_capacity(passes);
    for pass in 0..passes {
        let mut kept = 0;
        let started = Instant::now();
        for r in &records {
            if let Processed::Kept(event, routed) = runner.process_record(&r.value, team_of) {
                kept += 1;
                std::hint::black_box((event, routed));
            }
        }
        runner.flush_stats();
        times.push(started.elapsed().as_secs_f64());
        if kept != expected {
            bail!("pass {pass}: kept {kept} events, expected {expected}");
        }
    }
    times.sort_by(f64::total_cmp);
    let (best, median) = (times[0], times[passes / 2]);
    let per = |t: f64| t * 1e9 / events as f64;
    if json {
        println!(
            "{}",
            serde_json::json!({"events": events, "passes": passes, "best_ns_per_event": per(best),
                "median_ns_per_event": per(median), "kept": expected})
        );
    } else {
        println!(
            "runner alone, {events} events, {passes} passes: best {:.0} ns/event ({:.0} events/s), median {:.0} ns/event",
            per(best),
            events as f64 / best,
            per(median)
        );
    }
    Ok(())
}
