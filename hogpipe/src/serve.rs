//! `hogpipe serve`: run capture (and, as they land, the rest of the pipeline) on one port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hogpipe_capture::log::kafka::{KafkaConfig, KafkaLog};
use hogpipe_capture::log::wal::{Wal, WalConfig};
use hogpipe_capture::log::EventLog;
use hogpipe_capture::server::{app, CaptureState, StaticTokens};

use hogpipe_capture::log::kafka_reader::{KafkaReader, KafkaReaderConfig};
use hogpipe_capture::log::LogReader;
use hogpipe_dataflow::event::Project as DfProject;
use hogpipe_dataflow::functions::{FunctionStats, Registry};
use hogpipe_dataflow::graph::{run as run_dataflow, Cluster, Options, Pipeline, Summary, Until};
use hogpipe_dataflow::health::{HealthConfig, Watcher};
use hogpipe_dataflow::live::Live;
use hogpipe_dataflow::sink::{EventSink, FanOut, FanOutInvocations, InvocationSink, JsonLinesSink, NullSink};
use hogpipe_destinations::deliver::DeliverySink;
use hogpipe_destinations::engine::{Engine, EngineConfig, DATA_SUBDIR};
use hogpipe_destinations::invoke::{Invoker, InvokerOptions};
use hogpipe_destinations::secret_key::{self, IfMissing};
use hogpipe_warehouse::writer::EventWriter;
use hogpipe_warehouse::Warehouse;

use crate::live_persist;
use hogpipe_api::deploy::Deployment;
use hogpipe_api::store::{ProjectSeed, Store};
use hogpipe_api::ApiState;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::{projects_or_generate, Config, LogBackend};
use crate::functions::{compile_all, destinations};

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
    /// Cluster mode: the number of hogpipe processes running the dataflow together (needs Kafka).
    #[arg(long, requires_all = ["process", "hostfile"])]
    pub processes: Option<usize>,
    /// Cluster mode: this process's index, 0-based.
    #[arg(long, requires = "processes")]
    pub process: Option<usize>,
    /// Cluster mode: a file with one `host:port` per process (in process order) for the dataflow's
    /// own connections between processes.
    #[arg(long, requires = "processes")]
    pub hostfile: Option<PathBuf>,
}

fn cluster_from_args(args: &ServeArgs) -> Result<Option<Cluster>> {
    let (Some(processes), Some(process), Some(hostfile)) = (args.processes, args.process, &args.hostfile) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(hostfile).with_context(|| format!("cannot read {}", hostfile.display()))?;
    let addresses: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect();
    if addresses.len() != processes {
        bail!("{}: {} addresses for --processes {processes}", hostfile.display(), addresses.len());
    }
    if process >= processes {
        bail!("--process {process} must be below --processes {processes}");
    }
    Ok(Some(Cluster { process, addresses }))
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
    let store = Arc::new(Store::open(&config.state, &data_dir).context("cannot open the state store")?);
    store
        .sync_projects(
            &projects
                .iter()
                .map(|p| ProjectSeed {
                    id: p.id,
                    name: p.name.clone(),
                    token: p.token.clone(),
                    api_keys: p.api_keys.clone(),
                })
                .collect::<Vec<_>>(),
        )
        .context("cannot record the projects in the state store")?;
    eprintln!("hogpipe: state store: {}", store.describe());
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

    let config_base =
        args.config.as_ref().and_then(|p| p.parent().map(PathBuf::from)).unwrap_or_else(|| PathBuf::from("."));
    let cluster = cluster_from_args(&args)?;
    if cluster.is_some() && config.log.backend != LogBackend::Kafka {
        bail!("cluster mode (--processes/--process/--hostfile) needs a shared log: set [log] backend = \"kafka\"");
    }
    let warehouse = Warehouse::open(&config.warehouse, &data_dir).context("cannot open the warehouse")?;
    match &warehouse {
        Some(w) => eprintln!("hogpipe: warehouse: {} (ClickHouse {})", w.backend().describe(), w.version()),
        None => eprintln!("hogpipe: warehouse: off ([warehouse] backend = \"none\")"),
    }
    let dataflow = if !config.dataflow.enabled {
        eprintln!("hogpipe: dataflow: off ([dataflow] enabled = false)");
        None
    } else {
        let reader: Arc<dyn LogReader> = match &wal {
            Some(wal) => wal.clone(),
            None => {
                let k = &config.log.kafka;
                let reader = KafkaReader::new(KafkaReaderConfig {
                    brokers: k.brokers.clone(),
                    topic: k.topic.clone(),
                    properties: k.properties.clone(),
                    ..KafkaReaderConfig::default()
                })
                .with_context(|| format!("cannot read topic {} from Kafka at {}", k.topic, k.brokers))?;
                Arc::new(reader)
            }
        };
        Some(start_dataflow(
            &config,
            &config_base,
            &data_dir,
            &projects,
            reader,
            cluster,
            (warehouse.clone(), store.clone()),
        )?)
    };
    #[cfg(unix)]
    if let (Some(df), Some(path)) = (&dataflow, args.config.clone()) {
        // Registered before the server announces itself, so an early SIGHUP never kills it.
        let hup = runtime
            .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) })
            .context("cannot listen for SIGHUP")?;
        let reload = Reload {
            path,
            base: config_base.clone(),
            deployment: df.deployment.clone(),
            live: df.live.clone(),
            store: store.clone(),
        };
        runtime.spawn(reload_on_sighup(hup, reload));
    }

    let state = CaptureState::new(config.capture.to_capture_config(), log.clone(), Arc::new(tokens));
    let host = args.host.clone().unwrap_or(config.capture.host.clone());
    let port = args.port.unwrap_or(config.capture.port);
    let api_state = Arc::new(ApiState {
        warehouse: warehouse.clone(),
        deployment: dataflow.as_ref().map(|df| df.deployment.clone()),
        engine: dataflow.as_ref().map(|df| df.engine.clone()),
        live: dataflow.as_ref().and_then(|df| df.live.clone()),
        stats: dataflow.as_ref().map(|df| df.stats.clone()),
        log: Some(log.clone()),
        limits: config.query.clone(),
        ..ApiState::new(store.clone())
    });
    let result: Result<()> = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((host.as_str(), port))
            .await
            .with_context(|| format!("cannot listen on {host}:{port}"))?;
        let addr = listener.local_addr()?;
        // Registered before announcing the address, so a SIGTERM right after it still stops cleanly.
        let shutdown = shutdown_signal()?;
        eprintln!("hogpipe: capture listening on http://{addr}");
        let router = app(state).merge(hogpipe_api::app(api_state));
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service).with_graceful_shutdown(shutdown).await?;
        eprintln!("hogpipe: stopping: in-flight requests finished");
        Ok(())
    });
    runtime.shutdown_timeout(Duration::from_secs(10));
    if let Some(df) = dataflow {
        df.stop.store(true, Ordering::Relaxed);
        match df.thread.join() {
            Ok(Ok(summary)) => eprintln!(
                "hogpipe: dataflow stopped: {} events read, {} written, {} skipped",
                summary.read, summary.written, summary.skipped
            ),
            Ok(Err(e)) => eprintln!("hogpipe: dataflow failed: {e}"),
            Err(_) => eprintln!("hogpipe: dataflow thread panicked"),
        }
        df.persist_stop.store(true, Ordering::Relaxed);
        if let Some(p) = df.persister {
            let _ = p.join();
        }
        if let Some(p) = df.stats_persister {
            let _ = p.join();
        }
        // Deliveries in flight are stopped; they are in the queue and run again on the next start.
        match Arc::try_unwrap(df.engine) {
            Ok(engine) => engine.shutdown(),
            Err(_) => tracing::warn!("delivery engine still referenced at shutdown; it stops when dropped"),
        }
    }
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

/// The running dataflow: its thread, stop flag and function registry.
struct RunningDataflow {
    thread: std::thread::JoinHandle<Result<Summary, hogpipe_dataflow::graph::DataflowError>>,
    stop: Arc<AtomicBool>,
    deployment: Arc<Deployment>,
    engine: Arc<Engine>,
    live: Option<Arc<Live>>,
    stats: Arc<FunctionStats>,
    persister: Option<std::thread::JoinHandle<()>>,
    stats_persister: Option<std::thread::JoinHandle<()>>,
    persist_stop: Arc<AtomicBool>,
}

fn start_dataflow(
    config: &Config,
    base: &std::path::Path,
    data_dir: &std::path::Path,
    projects: &[crate::config::Project],
    log: Arc<dyn LogReader>,
    cluster: Option<Cluster>,
    (warehouse, store): (Option<Arc<Warehouse>>, Arc<Store>),
) -> Result<RunningDataflow> {
    let warehouse_for_live = warehouse.clone();
    let persist_stop = Arc::new(AtomicBool::new(false));
    let functions = compile_all(config, base)?;
    let registry = Arc::new(Registry::new(Vec::new()));
    let open = |file: &Option<PathBuf>| -> Result<Option<Arc<JsonLinesSink>>> {
        match file {
            Some(f) => {
                let path = data_dir.join(f);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                Ok(Some(Arc::new(JsonLinesSink::open(&path)?)))
            }
            None => Ok(None),
        }
    };
    let mut event_sinks: Vec<Arc<dyn EventSink>> = Vec::new();
    if let Some(w) = warehouse {
        event_sinks.push(Arc::new(
            EventWriter::new(w, config.warehouse.max_rows).context("cannot load persons from the warehouse")?,
        ));
    }
    if let Some(file) = open(&config.dataflow.events_file)? {
        event_sinks.push(file);
    }
    for (i, sink) in config.sinks.iter().enumerate() {
        let built = sink.build(data_dir).with_context(|| format!("[[sinks]] number {}", i + 1))?;
        event_sinks.push(Arc::from(built));
    }
    let events: Arc<dyn EventSink> = match event_sinks.len() {
        0 => Arc::new(NullSink),
        1 => event_sinks.remove(0),
        _ => Arc::new(FanOut::new(event_sinks)),
    };
    // Destinations: routed events start invocations; their `fetch` calls go to the delivery
    // engine (queue and dead letters in <data_dir>/destinations, sealed with the key the state
    // store seals secret inputs with).
    let stats = Arc::new(FunctionStats::default());
    let invoker = Arc::new(Invoker::new(InvokerOptions::default()));
    let watcher = Arc::new(Watcher::new(HealthConfig::default()));
    // The config file's functions plus the ones created through the API.
    let deployment = Arc::new(Deployment::new(registry.clone(), invoker.clone(), Some(watcher.clone()), store.clone()));
    deployment.deploy(functions, destinations(config, base)?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = secret_key::load(config.state.secret_key.as_deref(), data_dir, IfMissing::Create)
        .context("cannot load the key sealing the delivery queue")?;
    let engine = Arc::new(
        Engine::open(&data_dir.join(DATA_SUBDIR), &key, EngineConfig::default(), invoker.clone())
            .context("cannot open the delivery queue")?,
    );
    let df_projects: Vec<DfProject> = projects.iter().map(|p| DfProject { id: p.id, name: p.name.clone() }).collect();
    let mut invocation_sinks: Vec<Arc<dyn InvocationSink>> =
        vec![Arc::new(DeliverySink::new(invoker.clone(), engine.clone(), df_projects, stats.clone()))];
    if let Some(file) = open(&config.dataflow.invocations_file)? {
        invocation_sinks.push(file);
    }
    let invocations: Arc<dyn InvocationSink> = match invocation_sinks.len() {
        1 => invocation_sinks.remove(0),
        _ => Arc::new(FanOutInvocations::new(invocation_sinks)),
    };
    // Live aggregates from the config plus the ones defined through the API (always on, so the
    // API can add some while running).
    let aggregates = all_aggregates(&config.aggregates, &store)?;
    let live = Live::new(config.live.clone(), aggregates.clone()).context("[[aggregates]]")?;
    if !aggregates.is_empty() {
        eprintln!("hogpipe: live aggregates: {}", aggregates.len());
    }
    let live = Some(Arc::new(live));
    let persister = match (&live, &warehouse_for_live) {
        (Some(live), Some(w)) => Some(live_persist::persist(live.clone(), w.clone(), persist_stop.clone())),
        _ => None,
    };
    let pipeline = Pipeline {
        live: live.clone(),
        log,
        registry: registry.clone(),
        projects: Arc::new(
            projects.iter().map(|p| (p.token.clone(), DfProject { id: p.id, name: p.name.clone() })).collect(),
        ),
        events,
        invocations,
        stats: stats.clone(),
        watcher,
    };
    let mut options = Options { batch_size: config.dataflow.batch_size.max(1), cluster, ..Options::default() };
    if let Some(w) = config.dataflow.workers {
        options.workers = w.max(1);
    }
    let stop = Arc::new(AtomicBool::new(false));
    eprintln!("hogpipe: dataflow: {} workers, {} functions", options.workers, registry.snapshot().functions.len());
    let until = Until::Stopped(stop.clone());
    let thread = std::thread::Builder::new()
        .name("hogpipe-dataflow".into())
        .spawn(move || run_dataflow(pipeline, options, until))
        .context("cannot start the dataflow thread")?;
    let functions_of = registry.clone();
    let project_of = Arc::new(move |id: &str| -> Option<u64> {
        functions_of.snapshot().functions.iter().find(|f| f.id == id).map(|f| f.project_id)
    });
    let stats_persister = Some(
        hogpipe_api::persist::spawn(stats.clone(), store, project_of, persist_stop.clone())
            .context("cannot start the function stats thread")?,
    );
    Ok(RunningDataflow { thread, stop, deployment, engine, live, stats, persister, stats_persister, persist_stop })
}

/// What SIGHUP reloads.
#[cfg(unix)]
struct Reload {
    path: PathBuf,
    base: PathBuf,
    deployment: Arc<Deployment>,
    live: Option<Arc<Live>>,
    store: Arc<Store>,
}

/// Reloads `[[functions]]` and `[[aggregates]]` from the config file on SIGHUP. A config that does
/// not load or compile changes nothing (the error is printed); otherwise the new functions apply
/// at the next batch, and new aggregates count from then on (removed ones stop).
#[cfg(unix)]
async fn reload_on_sighup(mut hup: tokio::signal::unix::Signal, r: Reload) {
    while hup.recv().await.is_some() {
        let path = r.path.clone();
        let base = r.base.clone();
        let (deployment, live, store) = (r.deployment.clone(), r.live.clone(), r.store.clone());
        // Off the async threads: compiling is CPU work, and the store may be PostgreSQL, whose
        // client must not run on them. Both sets compile before either is replaced.
        let outcome = tokio::task::spawn_blocking(move || -> Result<String> {
            let c = Config::load(&path)?;
            let functions = compile_all(&c, &base)?;
            let compiled_destinations = destinations(&c, &base)?;
            let aggregates = all_aggregates(&c.aggregates, &store)?;
            if live.is_some() {
                hogpipe_dataflow::live::definition::validate_all(&aggregates).context("[[aggregates]]")?;
            }
            let n = functions.len();
            let version = deployment.deploy(functions, compiled_destinations).map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut done = format!("{n} functions (version {version})");
            if let Some(live) = &live {
                let count = aggregates.len();
                live.registry().replace(aggregates).context("[[aggregates]]")?;
                done.push_str(&format!(" and {count} live aggregates"));
            }
            Ok(done)
        })
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("{e}")));
        match outcome {
            Ok(done) => eprintln!("hogpipe: reloaded {done} from {}", r.path.display()),
            Err(e) => eprintln!("hogpipe: reload of {} failed, keeping what runs: {e:#}", r.path.display()),
        }
    }
}

/// The config's live aggregates plus the ones defined through the API (a stored one with the id
/// of a config one is skipped with a warning).
fn all_aggregates(
    config: &[hogpipe_dataflow::live::AggregateDef],
    store: &Store,
) -> Result<Vec<hogpipe_dataflow::live::AggregateDef>> {
    let mut aggregates = config.to_vec();
    for stored in store.aggregates().context("cannot read live aggregate definitions")? {
        match serde_json::from_value::<hogpipe_dataflow::live::AggregateDef>(stored.definition) {
            Ok(def) if !aggregates.iter().any(|a| a.id == def.id) => aggregates.push(def),
            Ok(def) => tracing::warn!(
                id = %def.id,
                "a live aggregate defined through the API has the id of one in the config; the config's is used"
            ),
            Err(e) => tracing::warn!(id = %stored.id, error = %e, "unreadable live aggregate definition skipped"),
        }
    }
    Ok(aggregates)
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called (inside the
/// runtime), not when the future is first polled.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOGPIPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
