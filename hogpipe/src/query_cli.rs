//! `hogpipe query`: runs one SQL query on the configured warehouse and prints the rows as JSON
//! (`{columns, types, results}`, the query API's shape). For scripts, tests and debugging; the
//! embedded warehouse (chDB) can be opened by one process at a time, so stop `serve` first.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use hogpipe_warehouse::Warehouse;

use crate::config::Config;

/// `hogpipe query` arguments.
#[derive(Args)]
pub struct QueryArgs {
    /// The SQL (ClickHouse dialect), without `FORMAT`.
    pub sql: String,
    /// Configuration file (default: none, the embedded warehouse).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory (default: `data_dir` from the config, else `./hogpipe-data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run the query this many more times and print min/median/max milliseconds to stderr (the
    /// warehouse is opened once, so this times the query alone).
    #[arg(long, default_value_t = 0)]
    pub repeat: usize,
}

/// Runs the query; exit code 1 with the error on failure.
pub fn run(args: QueryArgs) -> ExitCode {
    let config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("hogpipe: error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        None => Config::default(),
    };
    let data_dir = args.data_dir.or(config.data_dir.clone()).unwrap_or_else(|| PathBuf::from("hogpipe-data"));
    let warehouse = match Warehouse::open(&config.warehouse, &data_dir) {
        Ok(Some(w)) => w,
        Ok(None) => {
            eprintln!("hogpipe: error: the warehouse is off ([warehouse] backend = \"none\")");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("hogpipe: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match warehouse.query(&args.sql) {
        Ok(rows) => {
            println!("{}", serde_json::to_string(&rows).unwrap_or_default());
            if args.repeat > 0 {
                let mut ms = Vec::with_capacity(args.repeat);
                for _ in 0..args.repeat {
                    let started = std::time::Instant::now();
                    if let Err(e) = warehouse.query(&args.sql) {
                        eprintln!("hogpipe: error: {e}");
                        return ExitCode::FAILURE;
                    }
                    ms.push(started.elapsed().as_secs_f64() * 1e3);
                }
                ms.sort_by(f64::total_cmp);
                eprintln!(
                    "{} runs: min {:.1} ms, median {:.1} ms, max {:.1} ms",
                    ms.len(),
                    ms[0],
                    ms[ms.len() / 2],
                    ms[ms.len() - 1]
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hogpipe: error: {e}");
            ExitCode::FAILURE
        }
    }
}
