//! `hogpipe api-keys create|list|delete`: personal API keys with scopes, kept (hashed) in the
//! state store that `serve` reads. Keys in hogpipe.toml's `[[projects]] api_keys` have every
//! scope; this command makes narrower ones, e.g. a read-only key for dashboards:
//! `hogpipe api-keys create --project 1 --scope query:read --label dashboards`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hogpipe_api::store::Store;

use crate::config::{random_secret, Config};

/// Where the state store is.
#[derive(Args)]
pub struct StoreArgs {
    /// Configuration file (its `[state]` and `data_dir`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (default: `data_dir` from the config, else `./hogpipe-data`).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

/// `hogpipe api-keys …`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (the only time it is shown; the store keeps its hash).
    Create {
        /// A project the key may use (repeatable).
        #[arg(long = "project", required = true)]
        projects: Vec<u64>,
        /// A scope (repeatable): `*` (default), or `hog_function:read|write`, `query:read`,
        /// `project:read`, `live:read|write`, `dead_letter:read|write`.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// What the key is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List keys (masked) with their projects and scopes.
    List,
    /// Delete a key by its id (from `list`).
    Delete {
        /// Key id.
        id: String,
    },
}

const OBJECTS: &[&str] = &["hog_function", "query", "project", "live", "dead_letter"];

fn check_scope(scope: &str) -> Result<()> {
    if scope == "*" {
        return Ok(());
    }
    match scope.split_once(':') {
        Some((object, "read" | "write")) if OBJECTS.contains(&object) => Ok(()),
        _ => bail!(
            "unknown scope {scope:?}: use *, or <object>:read / <object>:write with object one of {}",
            OBJECTS.join(", ")
        ),
    }
}

fn open(args: &StoreArgs) -> Result<Store> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let data_dir = args.data_dir.clone().or(config.data_dir.clone()).unwrap_or_else(|| PathBuf::from("hogpipe-data"));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    Store::open(&config.state, &data_dir).context("cannot open the state store")
}

fn run_inner(command: KeysCommand, args: &StoreArgs) -> Result<()> {
    let store = open(args)?;
    match command {
        KeysCommand::Create { projects, scopes, label } => {
            let scopes = if scopes.is_empty() { vec!["*".to_string()] } else { scopes };
            for s in &scopes {
                check_scope(s)?;
            }
            for p in &projects {
                if store.project(*p)?.is_none() {
                    bail!("no project {p} in the state store (projects come from hogpipe.toml, recorded by `serve`)");
                }
            }
            let key = random_secret("phx_");
            let info = store.add_api_key(&key, &label, &projects, &scopes)?;
            println!("{key}");
            eprintln!(
                "hogpipe: key {} for projects {:?} with scopes {}",
                info.id,
                info.projects,
                info.scopes.join(", ")
            );
        }
        KeysCommand::List => {
            for k in store.api_keys()? {
                let projects: Vec<String> = k.projects.iter().map(u64::to_string).collect();
                println!(
                    "{}\t{}\tprojects {}\tscopes {}\t{}\t{}",
                    k.id,
                    k.mask,
                    projects.join(","),
                    k.scopes.join(","),
                    k.created_at,
                    k.label
                );
            }
        }
        KeysCommand::Delete { id } => {
            if !store.delete_api_key(&id)? {
                bail!("no key with id {id:?} (see `hogpipe api-keys list`)");
            }
            eprintln!("hogpipe: deleted key {id}");
        }
    }
    Ok(())
}

/// Runs the command; exit code 1 with the error on failure.
pub fn run(command: KeysCommand, args: StoreArgs) -> ExitCode {
    match run_inner(command, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hogpipe: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
