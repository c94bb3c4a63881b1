//! `hogpipe bench query`: latency of insight queries through `insights::run` on chDB: a daily
//! `$pageview` trend broken down by `$browser` and a 3-step funnel with a 14-day window, over N
//! generated events of one team spread over the last 30 days, with and without `FINAL`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::Args;
use hogpipe_warehouse::insights::{self, RunOptions};
use hogpipe_warehouse::{Warehouse, WarehouseConfig};
use serde_json::json;

/// Options of `hogpipe bench query`.
#[derive(Args, Debug)]
pub struct QueryBenchArgs {
    /// Events generated for the team.
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Runs of each query (after one warm-up run).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// chDB data folder; reused when it already holds exactly `--events` rows for the team
    /// (default: a temporary folder). Its `events` table is emptied before filling.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the temporary data folder (it is printed).
    #[arg(long)]
    keep: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

const TEAM: u64 = 1;
const CHUNK: u64 = 1_000_000;
const DAYS: u64 = 30;

fn count(warehouse: &Warehouse) -> Result<u64> {
    Ok(warehouse.query(&format!("SELECT count() FROM events WHERE team_id = {TEAM}"))?.scalar_u64().unwrap_or(0))
}

/// Fills `events` with `n` generated rows: ~33 event names (45 % `$pageview`, 10 % `signup`,
/// 5 % `purchase`), 100k persons, five browsers, times uniform over the last 30 days.
fn fill(warehouse: &Warehouse, n: u64, say: &dyn Fn(String)) -> Result<()> {
    warehouse.backend().execute("TRUNCATE TABLE IF EXISTS events")?;
    let base = Utc::now().timestamp();
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let chunk = CHUNK.min(n - done);
        let sql = format!(
            "INSERT INTO events (uuid, team_id, event, distinct_id, properties, timestamp, created_at, elements_chain, \
               person_id, person_properties, _timestamp) \
             SELECT generateUUIDv4(number), {TEAM}, \
               multiIf(r < 45, '$pageview', r < 55, 'signup', r < 60, 'purchase', concat('event_', toString(r % 30))), \
               concat('user-', toString(p)), \
               concat('{{\"$browser\":\"', arrayElement(['Chrome', 'Firefox', 'Safari', 'Edge', 'Opera'], 1 + cityHash64(number, 4) % 5), \
                 '\",\"$current_url\":\"https://example.com/p/', toString(number % 97), \
                 '\",\"$session_id\":\"', toString(p * 100 + intDiv(age, 21600) % 100), '\",\"plan\":\"pro\"}}'), \
               ts, ts, '', \
               toUUID(concat('00000000-0000-4000-8000-', leftPad(toString(p), 12, '0'))), '{{}}', now() \
             FROM ( \
               SELECT number, cityHash64(number, 1) % 100 AS r, cityHash64(number, 2) % 100000 AS p, \
                 cityHash64(number, 3) % {span} AS age, \
                 fromUnixTimestamp64Micro(toInt64(({base} - age) * 1000000 + number % 1000000), 'UTC') AS ts \
               FROM numbers({done}, {chunk}))",
            span = DAYS * 86_400,
        );
        warehouse.backend().execute(&sql).context("generating events")?;
        done += chunk;
        say(format!("  {done} / {n} events ({:.0} rows/s)", done as f64 / started.elapsed().as_secs_f64().max(1e-9)));
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Measured {
    name: &'static str,
    /// Whether `events FINAL` was read; `None` for funnels, which never read it.
    final_: Option<bool>,
    parts: u64,
    ms: Vec<f64>,
}

/// Runs the benchmark.
pub fn run(args: QueryBenchArgs) -> Result<()> {
    if args.events == 0 || args.runs == 0 {
        bail!("--events and --runs must be at least 1");
    }
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let (dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("hogpipe-bench-query-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let warehouse =
        Warehouse::open(&WarehouseConfig::default(), &dir).context("cannot open chDB")?.context("no warehouse")?;
    let have = count(&warehouse)?;
    let fresh = have != args.events;
    if !fresh {
        say(format!("reusing {have} events in {}", dir.display()));
    } else {
        say(format!("generating {} events in chDB {} at {} …", args.events, warehouse.version(), dir.display()));
        fill(&warehouse, args.events, &say)?;
    }
    let rows = count(&warehouse)?;
    let mut results = measure(&warehouse, args.runs, &say)?;
    if fresh {
        // A freshly filled table has one part per insert; FINAL merges them at read time. Once
        // background merges have run it is cheaper: measure that state too.
        say("merging parts (OPTIMIZE TABLE events FINAL) …".to_string());
        warehouse.backend().execute("OPTIMIZE TABLE events FINAL")?;
        results.extend(measure(&warehouse, args.runs, &say)?);
    }
    drop(warehouse);
    if temporary {
        if args.keep {
            say(format!("kept {}", dir.display()));
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    if args.json {
        let out: Vec<_> = results
            .iter()
            .map(|m| {
                json!({"query": m.name, "final": m.final_, "parts": m.parts, "runs": m.ms.len(),
                       "p50_ms": percentile(&m.ms, 0.5), "p99_ms": percentile(&m.ms, 0.99), "min_ms": m.ms.first()})
            })
            .collect();
        println!("{}", json!({"rows": rows, "queries": out}));
    } else {
        println!("{rows} events of one team in chDB, {} runs each", args.runs);
        println!("{:<8} {:<6} {:>6} {:>10} {:>10} {:>10}", "query", "FINAL", "parts", "p50 ms", "p99 ms", "min ms");
        for m in &results {
            println!(
                "{:<8} {:<6} {:>6} {:>10.1} {:>10.1} {:>10.1}",
                m.name,
                match m.final_ {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "n/a",
                },
                m.parts,
                percentile(&m.ms, 0.5),
                percentile(&m.ms, 0.99),
                m.ms.first().copied().unwrap_or(f64::NAN)
            );
        }
    }
    Ok(())
}

/// Runs the trends query and the funnel `runs` times each, with and without FINAL.
fn measure(warehouse: &Warehouse, runs: usize, say: &dyn Fn(String)) -> Result<Vec<Measured>> {
    let parts = warehouse
        .query("SELECT count() FROM system.parts WHERE table = 'events' AND active")
        .ok()
        .and_then(|r| r.scalar_u64())
        .unwrap_or(0);
    let trends = json!({
        "kind": "TrendsQuery",
        "series": [{"kind": "EventsNode", "event": "$pageview"}],
        "interval": "day",
        "dateRange": {"date_from": "-30d"},
        "breakdownFilter": {"breakdown": "$browser", "breakdown_type": "event"}
    });
    let funnel = json!({
        "kind": "FunnelsQuery",
        "series": [
            {"kind": "EventsNode", "event": "$pageview"},
            {"kind": "EventsNode", "event": "signup"},
            {"kind": "EventsNode", "event": "purchase"}
        ],
        "funnelsFilter": {"funnelWindowInterval": 14, "funnelWindowIntervalUnit": "day", "funnelOrderType": "ordered"},
        "dateRange": {"date_from": "-30d"}
    });
    let mut results = Vec::new();
    for (name, query) in [("trends", &trends), ("funnel", &funnel)] {
        // Funnels ignore duplicates without FINAL (see `insights::funnels`): measure them once.
        let finals: &[Option<bool>] = if name == "funnel" { &[None] } else { &[Some(true), Some(false)] };
        for &final_ in finals {
            say(format!(
                "running {name} ({parts} parts, FINAL {}) {runs} times …",
                final_.map_or("n/a", |f| if f { "on" } else { "off" })
            ));
            let options = RunOptions { use_final: final_.unwrap_or(true) };
            let now = Utc::now();
            // Warm-up (and a check that the answer is not empty).
            let answer = insights::run_with(warehouse, TEAM, query, now, options)?;
            if answer["results"].as_array().is_none_or(|r| r.is_empty()) {
                bail!("{name} returned no results: {answer}");
            }
            let mut ms = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t = Instant::now();
                insights::run_with(warehouse, TEAM, query, now, options)?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            ms.sort_by(|a, b| a.total_cmp(b));
            results.push(Measured { name, final_, parts, ms });
        }
    }
    Ok(results)
}
