//! `hogpipe bench pipeline`: events/s from the event log through three Hog transformations and one
//! destination filter to a null sink, with 1 and 2 workers.
//!
//! The workload is ANCHORS.md's: `$pageview` events with 10 properties; add `email_hash` (sha256 of
//! `properties.email`) and delete `email`; add `path` (the URL without its origin); keep only
//! events whose path matches `^/p/1`; route `$pageview`s to a destination.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hog_lang::{compile, CompileOptions};
use hogpipe_capture::event::{parse_payload, EndpointKind, ParseLimits, RequestMeta};
use hogpipe_capture::log::wal::{Wal, WalConfig};
use hogpipe_capture::log::EventLog;
use hogpipe_dataflow::event::Project;
use hogpipe_dataflow::functions::{FunctionKind, FunctionSpec, FunctionStats, Registry};
use hogpipe_dataflow::graph::{run, Options, Pipeline, Until};
use hogpipe_dataflow::health::{HealthConfig, Watcher};
use hogpipe_dataflow::sink::NullSink;

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
}

const TOKEN: &str = "phc_bench_pipeline";

const TRANSFORMATIONS: [(&str, &str); 3] = [
    ("hash-email", "let e := event\ne.properties.email_hash := sha256Hex(e.properties.email)\ne.properties.email := null\nreturn e"),
    ("path", "let e := event\ne.properties.path := replaceAll(e.properties.$current_url, 'https://example.com', '')\nreturn e"),
    ("keep-p1", "if (event.properties.path =~ '^/p/1') { return event }\nreturn null"),
];

fn spec(id: &str, kind: FunctionKind, order: i32, source: &str, filter: Option<&str>) -> Result<FunctionSpec> {
    let options = CompileOptions { globals: None, ..Default::default() };
    let bytecode = compile(source, &options).map_err(|d| anyhow::anyhow!("{}", d.render(source, id)))?.to_json();
    let filter = match filter {
        Some(f) => Some(compile(f, &options).map_err(|d| anyhow::anyhow!("{}", d.render(f, id)))?.to_json()),
        None => None,
    };
    Ok(FunctionSpec {
        id: id.into(),
        project_id: 1,
        name: id.into(),
        kind,
        enabled: true,
        order,
        bytecode,
        filter,
        inputs: serde_json::Map::new(),
    })
}

fn event(i: usize) -> serde_json::Value {
    serde_json::json!({
        "event": "$pageview",
        "distinct_id": format!("user-{}", i % 10_000),
        "properties": {
            "$current_url": format!("https://example.com/p/{}", i % 9),
            "$browser": "Chrome",
            "$os": "Mac OS X",
            "$device_type": "Desktop",
            "$screen_width": 1920,
            "$lib": "web",
            "$lib_version": "1.200.0",
            "$session_id": format!("0193{:012x}", i % 700),
            "plan": "pro",
            "email": format!("user{}@example.com", i % 10_000)
        }
    })
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
        let batch: Vec<_> = (i..i + count).map(event).collect();
        let body = serde_json::json!({"api_key": TOKEN, "batch": batch}).to_string();
        let meta = RequestMeta::new(EndpointKind::Events, "127.0.0.1");
        let parsed = parse_payload(body.as_bytes(), &meta, &ParseLimits::default())
            .map_err(|e| anyhow::anyhow!("generated batch refused: {e}"))?;
        runtime.block_on(wal.append(parsed.records))?;
        i += count;
    }
    Ok(wal)
}

/// Runs the benchmark.
pub fn run_bench(args: PipelineBenchArgs) -> Result<()> {
    if args.events == 0 || args.workers.contains(&0) {
        bail!("--events and --workers must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("hogpipe-bench-pipeline-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    if !args.json {
        eprintln!("writing {} events to a temporary log …", args.events);
    }
    let wal = fill(&dir, args.events).context("cannot fill the benchmark log")?;
    let mut functions = Vec::new();
    for (order, (id, source)) in TRANSFORMATIONS.iter().enumerate() {
        functions.push(spec(id, FunctionKind::Transformation, order as i32, source, None)?);
    }
    functions.push(spec(
        "pageviews",
        FunctionKind::Destination,
        0,
        "return null",
        Some("return event == '$pageview'"),
    )?);
    let registry = Arc::new(Registry::new(functions));
    let mut rows = Vec::new();
    for (round, &workers) in args.workers.iter().enumerate() {
        let stats = Arc::new(FunctionStats::default());
        let pipeline = Pipeline {
            log: wal.clone(),
            registry: registry.clone(),
            projects: Arc::new(HashMap::from([(TOKEN.to_string(), Project { id: 1, name: "bench".into() })])),
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
        rows.push((workers, secs, summary.written, stats.counters("pageviews").routed));
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
