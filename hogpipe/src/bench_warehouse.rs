//! `hogpipe bench warehouse`: rows/s through the batched writer into chDB (and a ClickHouse server
//! when `--server` is given), the delay from an event's append to the log until a query sees it
//! in `events` while the dataflow runs under load, and until a live aggregate counts it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use hogpipe_capture::event::{parse_payload, EndpointKind, ParseLimits, RequestMeta};
use hogpipe_capture::log::wal::{Wal, WalConfig};
use hogpipe_capture::log::EventLog;
use hogpipe_dataflow::event::{Event, Project};
use hogpipe_dataflow::functions::{FunctionStats, Registry};
use hogpipe_dataflow::graph::{run, Options, Pipeline, Until};
use hogpipe_dataflow::health::{HealthConfig, Watcher};
use hogpipe_dataflow::sink::{EventSink, NullSink};
use hogpipe_warehouse::writer::EventWriter;
use hogpipe_warehouse::{Warehouse, WarehouseConfig};

/// Options of `hogpipe bench warehouse`.
#[derive(Args, Debug)]
pub struct WarehouseBenchArgs {
    /// Rows inserted per backend.
    #[arg(long, default_value_t = 500_000)]
    rows: usize,
    /// Also measure a ClickHouse server at this URL (`http://127.0.0.1:8123`); a database
    /// `hogpipe_bench` is created there.
    #[arg(long)]
    server: Option<String>,
    /// Seconds of the end-to-end delay measurement into `events` (0 skips it and the live-aggregate
    /// delay).
    #[arg(long, default_value_t = 10)]
    delay_seconds: u64,
    /// Background load during the delay measurement, events/s.
    #[arg(long, default_value_t = 20_000)]
    load: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn event(team: u64, i: usize, run: u128) -> Event {
    let mut properties = serde_json::Map::new();
    properties.insert("$current_url".into(), format!("https://example.com/p/{}", i % 97).into());
    properties.insert("$browser".into(), ["Chrome", "Firefox", "Safari"][i % 3].into());
    properties.insert("$os".into(), "Mac OS X".into());
    properties.insert("$device_type".into(), "Desktop".into());
    properties.insert("$screen_width".into(), 1920.into());
    properties.insert("$lib".into(), "web".into());
    properties.insert("$lib_version".into(), "1.200.0".into());
    properties.insert("$session_id".into(), format!("0193{:012x}", i % 700).into());
    properties.insert("plan".into(), "pro".into());
    properties.insert("amount".into(), ((i % 1000) as f64 * 0.25).into());
    Event {
        uuid: uuid::Uuid::from_u128(run ^ ((team as u128) << 64) ^ i as u128).to_string(),
        team_id: team,
        event: ["$pageview", "$autocapture", "signup"][i % 3].into(),
        distinct_id: format!("user-{}", i % 10_000),
        properties,
        timestamp: format!("2026-11-25T{:02}:{:02}:{:02}.{:03}Z", (i / 3600) % 24, (i / 60) % 60, i % 60, i % 1000),
        elements_chain: String::new(),
        ip: "127.0.0.1".into(),
    }
}

/// Rows/s of the writer into one warehouse.
fn insert_rate(warehouse: &Arc<Warehouse>, rows: usize, team: u64) -> Result<f64> {
    let run = uuid::Uuid::new_v4().as_u128();
    let events: Vec<Event> = (0..rows).map(|i| event(team, i, run)).collect();
    let writer = EventWriter::new(warehouse.clone(), hogpipe_warehouse::writer::DEFAULT_MAX_ROWS)?;
    let started = Instant::now();
    for chunk in events.chunks(1000) {
        let refs: Vec<&Event> = chunk.iter().collect();
        writer.write(&refs)?;
    }
    writer.flush()?;
    let secs = started.elapsed().as_secs_f64();
    let stored =
        warehouse.query(&format!("SELECT count() FROM events WHERE team_id = {team}"))?.scalar_u64().unwrap_or(0);
    if stored < rows as u64 {
        bail!("only {stored} of {rows} rows are in the warehouse");
    }
    Ok(rows as f64 / secs)
}

const LOAD_TOKEN: &str = "phc_bench_load";
const PROBE_TOKEN: &str = "phc_bench_probe";

fn append(wal: &Wal, runtime: &tokio::runtime::Runtime, token: &str, batch: Vec<serde_json::Value>) -> Result<()> {
    let body = serde_json::json!({"api_key": token, "batch": batch}).to_string();
    let meta = RequestMeta::new(EndpointKind::Events, "127.0.0.1");
    let parsed = parse_payload(body.as_bytes(), &meta, &ParseLimits::default())
        .map_err(|e| anyhow::anyhow!("generated batch refused: {e}"))?;
    runtime.block_on(wal.append(parsed.records))?;
    Ok(())
}

/// Delays (seconds) from appending a probe event to the log until `events` shows it.
fn visibility_delays(warehouse: &Arc<Warehouse>, seconds: u64, load: usize) -> Result<Vec<f64>> {
    let dir = std::env::temp_dir().join(format!("hogpipe-bench-warehouse-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut config = WalConfig::new(dir.join("log"));
    config.partitions = 4;
    let wal = Arc::new(Wal::open(config)?);
    let writer: Arc<dyn EventSink> =
        Arc::new(EventWriter::new(warehouse.clone(), hogpipe_warehouse::writer::DEFAULT_MAX_ROWS)?);
    let stop = Arc::new(AtomicBool::new(false));
    let probe_team = 900_000 + (std::process::id() as u64 % 1000);
    let pipeline = Pipeline {
        log: wal.clone(),
        registry: Arc::new(Registry::new(Vec::new())),
        projects: Arc::new(HashMap::from([
            (LOAD_TOKEN.to_string(), Project { id: probe_team + 1, name: "load".into() }),
            (PROBE_TOKEN.to_string(), Project { id: probe_team, name: "probe".into() }),
        ])),
        events: writer,
        invocations: Arc::new(NullSink),
        stats: Arc::new(FunctionStats::default()),
        watcher: Arc::new(Watcher::new(HealthConfig::default())),
        live: None,
    };
    let graph = {
        let stop = stop.clone();
        std::thread::spawn(move || run(pipeline, Options::default(), Until::Stopped(stop)))
    };
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let delays: Arc<Mutex<Vec<f64>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (warehouse, sent, delays, done) = (warehouse.clone(), sent.clone(), delays.clone(), done.clone());
        std::thread::spawn(move || -> Result<()> {
            let mut seen = HashSet::new();
            while !done.load(Ordering::Relaxed) {
                let rows =
                    warehouse.query(&format!("SELECT toString(uuid) FROM events WHERE team_id = {probe_team}"))?;
                let now = Instant::now();
                for r in rows.results {
                    let Some(u) = r.first().and_then(|v| v.as_str()) else { continue };
                    if seen.insert(u.to_string()) {
                        if let Some(at) = sent.lock().unwrap_or_else(|p| p.into_inner()).get(u) {
                            delays
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(now.duration_since(*at).as_secs_f64());
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        })
    };
    let started = Instant::now();
    let mut i = 0usize;
    let tick = Duration::from_millis(50);
    let per_tick = (load as f64 * tick.as_secs_f64()).ceil() as usize;
    let mut next_probe = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        let t0 = Instant::now();
        if per_tick > 0 {
            let batch: Vec<serde_json::Value> = (i..i + per_tick)
                .map(|j| serde_json::json!({"event": "$pageview", "distinct_id": format!("u{}", j % 5000), "properties": {"$current_url": "https://example.com/", "n": j}}))
                .collect();
            append(&wal, &runtime, LOAD_TOKEN, batch)?;
            i += per_tick;
        }
        if Instant::now() >= next_probe {
            let id = uuid::Uuid::now_v7().to_string();
            let probe = serde_json::json!({"event": "probe", "uuid": id, "distinct_id": "probe"});
            sent.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Instant::now());
            append(&wal, &runtime, PROBE_TOKEN, vec![probe])?;
            next_probe += Duration::from_millis(100);
        }
        if let Some(rest) = tick.checked_sub(t0.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    // Let the last probes land.
    let deadline = Instant::now() + Duration::from_secs(10);
    while delays.lock().unwrap_or_else(|p| p.into_inner()).len() < sent.lock().unwrap_or_else(|p| p.into_inner()).len()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    done.store(true, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    poller.join().map_err(|_| anyhow::anyhow!("the poller panicked"))??;
    graph.join().map_err(|_| anyhow::anyhow!("the dataflow panicked"))??;
    let _ = std::fs::remove_dir_all(&dir);
    let (n_sent, mut d) = (
        sent.lock().unwrap_or_else(|p| p.into_inner()).len(),
        delays.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    );
    if d.len() < n_sent {
        bail!("{} of {n_sent} probe events never became visible", n_sent - d.len());
    }
    d.sort_by(|a, b| a.total_cmp(b));
    Ok(d)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the benchmark.
pub fn run_bench(args: WarehouseBenchArgs) -> Result<()> {
    if args.rows == 0 {
        bail!("--rows must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("hogpipe-bench-chdb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let chdb =
        Warehouse::open(&WarehouseConfig::default(), &dir).context("cannot open chDB")?.context("no warehouse")?;
    let mut results = Vec::new();
    say(format!("inserting {} rows into chDB {} …", args.rows, chdb.version()));
    results.push(("chDB".to_string(), chdb.version().to_string(), insert_rate(&chdb, args.rows, 1)?));
    if let Some(url) = &args.server {
        let config = WarehouseConfig {
            backend: "clickhouse".into(),
            urls: vec![url.clone()],
            database: "hogpipe_bench".into(),
            ..WarehouseConfig::default()
        };
        let server = Warehouse::open(&config, &dir)?.context("no warehouse")?;
        server.backend().execute("TRUNCATE TABLE IF EXISTS events")?;
        say(format!("inserting {} rows into ClickHouse {} at {url} …", args.rows, server.version()));
        results.push((
            "ClickHouse server".to_string(),
            server.version().to_string(),
            insert_rate(&server, args.rows, 1)?,
        ));
    }
    let delays = if args.delay_seconds > 0 {
        say(format!("end-to-end delay for {} s under {} events/s …", args.delay_seconds, args.load));
        visibility_delays(&chdb, args.delay_seconds, args.load)?
    } else {
        Vec::new()
    };
    drop(chdb);
    let _ = std::fs::remove_dir_all(&dir);
    // Capture → live aggregate: the same WAL append, counted by a live `count` per minute.
    let live = if args.delay_seconds > 0 {
        say("capture → live aggregate delay (200 events, 2 workers) …".to_string());
        let dir = std::env::temp_dir().join(format!("hogpipe-bench-live-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let samples = hogpipe_dataflow::live::bench::capture_to_visible(&dir, &Default::default());
        let _ = std::fs::remove_dir_all(&dir);
        Some(hogpipe_dataflow::live::bench::summarize(&samples?))
    } else {
        None
    };
    if args.json {
        let inserts: Vec<_> = results
            .iter()
            .map(|(b, v, r)| serde_json::json!({"backend": b, "version": v, "rows_per_second": r}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"inserts": inserts, "visibility_seconds": {"samples": delays.len(), "p50": percentile(&delays, 0.5), "p99": percentile(&delays, 0.99), "max": delays.last()},
                               "live_visibility_seconds": live.map(|l| serde_json::json!({"samples": l.samples, "p50": l.p50.as_secs_f64(), "p99": l.p99.as_secs_f64(), "max": l.max.as_secs_f64()}))})
        );
    } else {
        println!("{:<20} {:<12} {:>14}", "backend", "version", "rows/s");
        for (b, v, r) in &results {
            println!("{b:<20} {v:<12} {r:>14.0}");
        }
        if !delays.is_empty() {
            println!(
                "\nlog append → visible in `events` (chDB, {} probes, {} events/s load): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                delays.len(),
                args.load,
                percentile(&delays, 0.5) * 1e3,
                percentile(&delays, 0.99) * 1e3,
                delays.last().copied().unwrap_or(f64::NAN) * 1e3
            );
        }
        if let Some(l) = live {
            println!(
                "log append → counted in a live aggregate ({} events, one at a time): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                l.samples,
                l.p50.as_secs_f64() * 1e3,
                l.p99.as_secs_f64() * 1e3,
                l.max.as_secs_f64() * 1e3
            );
        }
    }
    Ok(())
}
