//! The `hogpipe` binary: command line and wiring of the crates.

mod alloc;
mod bench_capture;
mod bench_cli;
mod bench_destinations;
mod bench_pipeline;
mod bench_query;
mod bench_warehouse;
mod config;
mod dead_letters_cli;
mod destinations_cli;
mod functions;
mod hog_cli;
mod keys_cli;
mod live_persist;
mod query_cli;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc: per-event work allocates and frees many small values; glibc's allocator spends more
/// time consolidating than the VM spends running (measured with `hogpipe bench hog`).
#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;
use std::process::ExitCode;

/// hogpipe: PostHog's data plane in one fast binary.
#[derive(Parser)]
#[command(name = "hogpipe", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with Hog programs: run, compile, REPL, list functions.
    Hog {
        #[command(subcommand)]
        command: hog_cli::HogCommand,
    },
    /// Run hogpipe: capture endpoints and the event log (embedded by default).
    Serve(serve::ServeArgs),
    /// Run one SQL query on the warehouse and print the rows as JSON.
    Query(query_cli::QueryArgs),
    /// Destinations: `list` and `show` the templates; the delivery engine's `dead-letters`.
    Destinations {
        #[command(subcommand)]
        command: destinations_cli::DestinationsCommand,
    },
    /// Personal API keys with scopes, in the state store: `create`, `list`, `delete`.
    ApiKeys {
        #[command(subcommand)]
        command: keys_cli::KeysCommand,
        #[command(flatten)]
        store: keys_cli::StoreArgs,
    },
    /// Measure speed: `hogpipe bench hog` times the Hog VM on the benchmark programs.
    Bench {
        #[command(subcommand)]
        command: bench_cli::BenchCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Hog { command } => hog_cli::run(command),
        Command::Bench { command } => bench_cli::run(command),
        Command::Query(args) => query_cli::run(args),
        Command::Destinations { command } => destinations_cli::run(command),
        Command::ApiKeys { command, store } => keys_cli::run(command, store),
        Command::Serve(args) => match serve::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hogpipe: error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
