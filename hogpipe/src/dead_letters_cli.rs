//! `hogpipe destinations dead-letters list|show|replay|discard`: the delivery engine's dead letters
//! in a data dir. Works while `hogpipe serve` runs on the same dir (SQLite serializes the writers;
//! the running engine notices replayed jobs within its poll interval). The queue is sealed with the
//! key `serve` uses: `[state] secret_key` from the config file, else `<data_dir>/secret.key`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hogpipe_destinations::engine::{DeadLetter, DeadLetters, EngineError, DATA_SUBDIR, DB_FILE};
use hogpipe_destinations::secret_key::{self, IfMissing};

use crate::config::Config;

/// Options of `hogpipe destinations dead-letters`.
#[derive(Args)]
pub struct DeadLettersArgs {
    /// Configuration file, as given to `hogpipe serve` (its `data_dir` and `[state] secret_key`).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (default: `data_dir` from the config, else `./hogpipe-data`).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: DeadLettersCommand,
}

#[derive(Subcommand)]
enum DeadLettersCommand {
    /// One line per dead letter: id, function, attempts, failed at, status, URL, last error.
    List {
        /// Only this function's.
        #[arg(long)]
        function: Option<String>,
        /// Print a JSON array instead.
        #[arg(long)]
        json: bool,
    },
    /// One dead letter: its request (secret-looking header values masked) and last error.
    Show {
        /// The dead letter's id.
        id: i64,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Move a dead letter (ID), or all of a function's (--function), back to the queue.
    Replay {
        /// The dead letter's id.
        #[arg(required_unless_present = "function", conflicts_with = "function")]
        id: Option<i64>,
        /// Replay every dead letter of this function.
        #[arg(long)]
        function: Option<String>,
    },
    /// Delete a dead letter.
    Discard {
        /// The dead letter's id.
        id: i64,
    },
}

pub fn run(args: DeadLettersArgs) -> ExitCode {
    match execute(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hogpipe: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(args: DeadLettersArgs) -> Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let data_dir = args.data_dir.or(config.data_dir.clone()).unwrap_or_else(|| PathBuf::from("hogpipe-data"));
    let dir = data_dir.join(DATA_SUBDIR);
    // Before the key: a wrong data dir is "no queue here", and no key file is made for it.
    if !dir.join(DB_FILE).exists() {
        return Err(EngineError::Missing(dir.join(DB_FILE)).into());
    }
    let key = secret_key::load(config.state.secret_key.as_deref(), &data_dir, IfMissing::Fail)
        .context("cannot load the key sealing the delivery queue")?;
    let store = DeadLetters::open(&dir, &key)?;
    match args.command {
        DeadLettersCommand::List { function, json } => {
            let list = store.list(function.as_deref())?;
            if json {
                let redacted: Vec<_> = list.into_iter().map(redact).collect();
                println!("{}", serde_json::to_string_pretty(&redacted)?);
            } else if list.is_empty() {
                eprintln!("no dead letters{}", function.map(|f| format!(" for {f}")).unwrap_or_default());
            } else {
                for d in &list {
                    println!(
                        "{}\t{}\t{} attempts\t{}\t{}\t{} {}\t{}",
                        d.id,
                        d.function_id,
                        d.attempts,
                        iso_time(d.failed_at_ms),
                        d.error.status.map_or("-".to_string(), |s| s.to_string()),
                        d.request.method,
                        d.request.url,
                        one_line(&d.error.message, 120)
                    );
                }
            }
        }
        DeadLettersCommand::Show { id, json } => {
            let Some(d) = store.get(id)? else { bail!("no dead letter with id {id}") };
            let d = redact(d);
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!("id:          {}", d.id);
                println!("function:    {}", d.function_id);
                println!("team:        {}", d.team_id);
                println!("attempts:    {}", d.attempts);
                println!("queued at:   {}", iso_time(d.created_at_ms));
                println!("failed at:   {}", iso_time(d.failed_at_ms));
                match d.error.status {
                    Some(s) => println!("last error:  HTTP {s}"),
                    None => println!("last error:  no answer"),
                }
                println!("{}", indent(&d.error.message));
                println!("request:     {} {}", d.request.method, d.request.url);
                for (k, v) in &d.request.headers {
                    println!("  {k}: {v}");
                }
                if let Some(body) = &d.request.body {
                    println!("body:");
                    println!("{}", indent(body));
                }
            }
        }
        DeadLettersCommand::Replay { id: Some(id), .. } => {
            let job = store.replay(id)?;
            println!("dead letter {id} is queued again as job {job}");
        }
        DeadLettersCommand::Replay { function: Some(f), .. } => {
            let n = store.replay_all(&f)?;
            println!("{n} dead letter{} of {f} queued again", if n == 1 { "" } else { "s" });
        }
        DeadLettersCommand::Replay { .. } => bail!("give a dead letter id or --function"),
        DeadLettersCommand::Discard { id } => {
            if !store.discard(id)? {
                bail!("no dead letter with id {id}");
            }
            println!("dead letter {id} discarded");
        }
    }
    Ok(())
}

/// Header values that look like credentials are masked: the request may carry secret inputs.
fn redact(mut d: DeadLetter) -> DeadLetter {
    const SECRET: [&str; 8] = ["auth", "token", "key", "secret", "signature", "password", "cookie", "session"];
    for (name, value) in &mut d.request.headers {
        let lower = name.to_ascii_lowercase();
        if SECRET.iter().any(|s| lower.contains(s)) {
            *value = "<redacted>".to_string();
        }
    }
    d
}

fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() <= max_chars {
        flat
    } else {
        format!("{}…", flat.chars().take(max_chars).collect::<String>())
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from milliseconds since the Unix epoch.
fn iso_time(ms: i64) -> String {
    hogpipe_capture::event::format_time(chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
