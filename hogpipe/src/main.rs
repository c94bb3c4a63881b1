//! The `hogpipe` binary: command line and wiring of the crates.

mod hog_cli;

use clap::{Parser, Subcommand};
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Hog { command } => hog_cli::run(command),
    }
}
