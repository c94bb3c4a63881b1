//! `hogpipe bench …`: benchmarks printed as a table (or JSON for scripts).

use clap::Subcommand;
use hog_lang::bench::{self, Kind, Measurement};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Benchmark the Hog VM on the programs in `benches/hog/`.
    Hog {
        /// Only these programs (repeatable): fib, mandelbrot, strings, churn, transform, simple.
        #[arg(long = "program", short = 'p')]
        programs: Vec<String>,
        /// Events generated for the per-event programs.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// Minimum measuring time per program, in seconds.
        #[arg(long, default_value_t = 1.0)]
        min_time: f64,
        /// Print JSON (`{"fib": {"seconds_per_iteration": …}}`) instead of a table.
        #[arg(long)]
        json: bool,
        /// Instead of measuring, write each program's bytecode (`NAME.hoge`) and the generated
        /// events (`events.json`) into this folder, for other VMs to run the same work.
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Load-test the capture endpoints: batches and single events against `hogpipe serve`.
    Capture(crate::bench_capture::CaptureBenchArgs),
    /// Events/s from the log through three Hog transformations and a filter to a null sink.
    Pipeline(crate::bench_pipeline::PipelineBenchArgs),
    /// Rows/s into the warehouse (chDB, and a ClickHouse server with --server), and the delay
    /// from the log to a query seeing the event and to a live aggregate counting it.
    Warehouse(crate::bench_warehouse::WarehouseBenchArgs),
    /// Deliveries/s, added latency and memory of the delivery engine against a loopback server.
    Destinations(crate::bench_destinations::DestinationsBenchArgs),
    /// p50/p99 latency of a trends query and a 3-step funnel over generated events in chDB.
    Query(crate::bench_query::QueryBenchArgs),
}

pub fn run(cmd: BenchCommand) -> ExitCode {
    match cmd {
        BenchCommand::Query(args) => match crate::bench_query::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hogpipe: error: {e:#}");
                ExitCode::FAILURE
            }
        },
        BenchCommand::Warehouse(args) => match crate::bench_warehouse::run_bench(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hogpipe: error: {e:#}");
                ExitCode::FAILURE
            }
        },
        BenchCommand::Destinations(args) => match crate::bench_destinations::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        BenchCommand::Pipeline(args) => match crate::bench_pipeline::run_bench(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        BenchCommand::Capture(args) => match crate::bench_capture::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        BenchCommand::Hog { programs, events, min_time, json, export } => {
            match hog(&programs, events, min_time, json, export.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn hog(names: &[String], n_events: usize, min_time: f64, json: bool, export: Option<&Path>) -> anyhow::Result<()> {
    let mut selected = Vec::new();
    for name in names {
        let p = bench::program(name).ok_or_else(|| {
            let all: Vec<_> = bench::PROGRAMS.iter().map(|p| p.name).collect();
            anyhow::anyhow!("no benchmark program named {name:?}; the programs are {}", all.join(", "))
        })?;
        selected.push(p);
    }
    if selected.is_empty() {
        selected = bench::PROGRAMS.iter().collect();
    }
    if !min_time.is_finite() || min_time < 0.0 {
        anyhow::bail!("--min-time must be a number of seconds ≥ 0, got {min_time}");
    }
    let min_time = Duration::from_secs_f64(min_time);
    let needs_events = export.is_some() || selected.iter().any(|p| p.kind == Kind::PerEvent);
    let events = if needs_events { bench::events(n_events.max(1)) } else { Vec::new() };
    if let Some(dir) = export {
        return export_programs(&selected, &events, dir);
    }
    let mut results = Vec::new();
    for p in selected {
        if !json {
            eprintln!("running {} …", p.name);
        }
        let m = match p.kind {
            Kind::Whole => bench::run_whole(p, min_time)?,
            Kind::PerEvent => bench::run_per_event(p, &events, min_time)?,
        };
        results.push((p, m));
    }
    if json {
        let mut out = serde_json::Map::new();
        for (p, m) in &results {
            out.insert(
                p.name.to_string(),
                serde_json::json!({
                    "seconds_per_iteration": m.seconds_per_iteration(),
                    "iterations": m.iterations,
                    "ops_per_iteration": m.ops_per_iteration,
                    "per_event": p.kind == Kind::PerEvent,
                    "kept": m.kept,
                }),
            );
        }
        println!("{}", serde_json::Value::Object(out));
    } else {
        print_table(&results);
    }
    Ok(())
}

fn print_table(results: &[(&bench::Program, Measurement)]) {
    println!(
        "{:<11} {:<36} {:>12} {:>10} {:>10} {:>12} {:>14}",
        "program", "what", "time/iter", "iters", "ops/iter", "Mops/s", "events/s"
    );
    for (p, m) in results {
        let per = m.seconds_per_iteration();
        let time = if per >= 1e-3 { format!("{:.2} ms", per * 1e3) } else { format!("{:.3} µs", per * 1e6) };
        let events = match p.kind {
            Kind::PerEvent => format!("{:.0}", 1.0 / per),
            Kind::Whole => "-".to_string(),
        };
        println!(
            "{:<11} {:<36} {:>12} {:>10} {:>10} {:>12.1} {:>14}",
            p.name,
            p.description,
            time,
            m.iterations,
            m.ops_per_iteration,
            m.ops_per_second() / 1e6,
            events
        );
    }
}

fn export_programs(programs: &[&bench::Program], events: &[serde_json::Value], dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    for p in programs {
        let code = hog_lang::compile(p.source, &hog_lang::CompileOptions::default())
            .map_err(|d| anyhow::anyhow!("benchmark {} does not compile:\n{}", p.name, d.render(p.source, p.name)))?;
        let meta = serde_json::json!({ "per_event": p.kind == Kind::PerEvent, "description": p.description });
        write(&dir.join(format!("{}.hoge", p.name)), &code.to_json().to_string())?;
        write(&dir.join(format!("{}.json", p.name)), &meta.to_string())?;
    }
    write(&dir.join("events.json"), &serde_json::Value::Array(events.to_vec()).to_string())?;
    eprintln!("wrote {} programs and {} events to {}", programs.len(), events.len(), dir.display());
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
