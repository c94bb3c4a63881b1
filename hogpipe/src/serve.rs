//! `hogpipe serve`: run capture (and, as they land, the rest of the pipeline) on one port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hogpipe_capture::log::kafka::{KafkaConfig, KafkaLog};
use hogpipe_capture::log::wal::{Wal, WalConfig};
use hogpipe_capture::log::EventLog;
use hogpipe_capture::server::{app, CaptureState, StaticTokens};

use crate::config::{projects_or_generate, Config, LogBackend};

/// Options of `hogpipe serve`. Flags override the config file.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Configuration file (`hogpipe.toml`). Without one, everything runs embedded with defaults.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (default: `data_dir` from the config, else `./hogpipe-data`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Port for capture and the API (default 8000; 0 picks a free port and prints it).
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to listen on (default 0.0.0.0).
    #[arg(long)]
    pub host: Option<String>,
}

/// Runs the server until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> Result<()> {
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let data_dir = args.data_dir.clone().or(config.data_dir.clone()).unwrap_or_else(|| PathBuf::from("hogpipe-data"));
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    init_tracing();

    let projects = projects_or_generate(&config, &data_dir)?;
    let tokens = StaticTokens(projects.iter().map(|p| (p.token.clone(), p.id)).collect());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hogpipe-io")
        .build()
        .context("cannot start the async runtime")?;

    let (log, wal): (Arc<dyn EventLog>, Option<Arc<Wal>>) = match config.log.backend {
        LogBackend::Wal => {
            let dir = data_dir.join("log");
            let mut wal_config = WalConfig::new(dir.clone());
            wal_config.partitions = config.log.partitions;
            wal_config.segment_bytes = config.log.segment_bytes;
            wal_config.retention_bytes = config.log.retention_bytes;
            wal_config.retention_age = config.log.retention_hours.map(|h| Duration::from_secs_f64(h * 3600.0));
            wal_config.max_pending_bytes = config.log.max_pending_bytes;
            wal_config.max_record_bytes = config.capture.max_event_bytes.saturating_mul(2);
            let wal = Arc::new(
                Wal::open(wal_config).with_context(|| format!("cannot open the event log in {}", dir.display()))?,
            );
            eprintln!("hogpipe: event log: embedded WAL in {} ({} partitions)", dir.display(), config.log.partitions);
            (wal.clone(), Some(wal))
        }
        LogBackend::Kafka => {
            let k = &config.log.kafka;
            let kafka_config = KafkaConfig {
                brokers: k.brokers.clone(),
                topic: k.topic.clone(),
                historical_topic: k.historical_topic.clone(),
                properties: k.properties.clone(),
                max_record_bytes: config.capture.max_event_bytes.saturating_mul(2),
                ..KafkaConfig::default()
            };
            let kafka = runtime
                .block_on(async { KafkaLog::new(kafka_config) })
                .with_context(|| format!("cannot start the Kafka producer for {}", k.brokers))?;
            eprintln!("hogpipe: event log: Kafka at {} (topic {})", k.brokers, k.topic);
            (Arc::new(kafka), None)
        }
    };

    let state = CaptureState::new(config.capture.to_capture_config(), log, Arc::new(tokens));
    let host = args.host.clone().unwrap_or(config.capture.host.clone());
    let port = args.port.unwrap_or(config.capture.port);
    let result: Result<()> = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .with_context(|| format!("cannot listen on {host}:{port}"))?;
        let addr = listener.local_addr()?;
        eprintln!("hogpipe: capture listening on http://{addr}");
        let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service).with_graceful_shutdown(shutdown_signal()).await?;
        eprintln!("hogpipe: stopping: in-flight requests finished");
        Ok(())
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    if let Some(wal) = wal {
        match Arc::try_unwrap(wal) {
            Ok(wal) => {
                if let Err(e) = wal.flush_and_close() {
                    eprintln!("hogpipe: closing the event log: {e}");
                }
            }
            Err(_) => tracing::warn!("event log still referenced at shutdown; it closes when dropped"),
        }
    }
    eprintln!("hogpipe: stopped");
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOGPIPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
