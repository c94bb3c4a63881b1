//! The timely graph: log readers → transformations → routing → sinks, with commits.
//!
//! Each worker owns the partitions `p` with `p % workers == index` and runs rounds: read up to
//! `batch_size` records per owned partition from its position, feed them into the graph as one
//! epoch, step until the probe passes the epoch (every sink took the batch), then commit the new
//! positions for the consumer group. A crash between the sinks and the commit replays the batch.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hogpipe_capture::log::{LogError, LogReader, RecordBlock};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

use crate::event::{Event, Project};
use crate::functions::{Registry, SharedStats};
use crate::health::Watcher;
use crate::live::Live;
use crate::runner::{Processed, Runner};
use crate::sink::{EventSink, InvocationSink, SinkError};

/// How the graph runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timely workers (threads). Default: the number of cores.
    pub workers: usize,
    /// Records read per partition per round.
    pub batch_size: usize,
    /// Consumer group whose positions are committed in the log.
    pub group: String,
    /// Pause when a round found nothing to read.
    pub idle_wait: Duration,
    /// Run as one process of a timely cluster (`None`: this process alone).
    pub cluster: Option<Cluster>,
    /// Least time between two commits of the read positions (and always on the way out).
    pub commit_interval: Duration,
    /// When told to stop, keep processing what is already in the log for up to this long, so a
    /// clean shutdown leaves nothing accepted but unprocessed.
    pub drain: Duration,
}

/// This process's place in a timely cluster. Every process runs `workers` threads; worker
/// indexes and partition ownership (`p % (processes × workers)`) are global across processes, so
/// with a shared log (Kafka) each partition is read by exactly one worker in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// This process's index in `addresses`.
    pub process: usize,
    /// `host:port` of every process, in process order (the same list on every process).
    pub addresses: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            batch_size: 1000,
            group: "dataflow".into(),
            idle_wait: Duration::from_millis(20),
            cluster: None,
            commit_interval: Duration::from_millis(200),
            drain: Duration::from_secs(10),
        }
    }
}

/// When to stop.
#[derive(Debug, Clone)]
pub enum Until {
    /// When every partition has been read to its end (batch jobs, tests).
    CaughtUp,
    /// When the flag turns true (the server).
    Stopped(Arc<AtomicBool>),
}

/// What the graph is connected to.
#[derive(Clone)]
pub struct Pipeline {
    /// The event log.
    pub log: Arc<dyn LogReader>,
    /// The functions.
    pub registry: Arc<Registry>,
    /// Projects by capture token.
    pub projects: Arc<HashMap<String, Project>>,
    /// Processed events.
    pub events: Arc<dyn EventSink>,
    /// Events routed to destinations.
    pub invocations: Arc<dyn InvocationSink>,
    /// Function metrics and logs.
    pub stats: SharedStats,
    /// Function health (degrades and disables functions that fail or overrun).
    pub watcher: Arc<Watcher>,
    /// Live aggregates over the processed events (`None`: none computed).
    pub live: Option<Arc<Live>>,
}

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read from the log.
    pub read: u64,
    /// Events that reached the event sink.
    pub written: u64,
    /// Records skipped: unparseable, or for a token no project has.
    pub skipped: u64,
}

/// Why the graph stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DataflowError {
    /// Timely could not start or a worker panicked.
    #[error("dataflow: {0}")]
    Timely(String),
    /// The log could not be read or committed.
    #[error(transparent)]
    Log(#[from] hogpipe_capture::log::LogError),
}

fn retry_sink(what: &str, stop: &dyn Fn() -> bool, mut attempt: impl FnMut() -> Result<(), SinkError>) -> bool {
    let mut wait = Duration::from_millis(50);
    loop {
        match attempt() {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "{what} sink failed; retrying in {wait:?}");
                if stop() {
                    return false;
                }
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Makes everything the sinks took durable; false when the server stops before they could.
fn flush_sinks(pipeline: &Pipeline, stop: &dyn Fn() -> bool) -> bool {
    retry_sink("event", stop, || pipeline.events.flush())
        && retry_sink("invocation", stop, || pipeline.invocations.flush())
}

/// Runs the graph until `until`; returns the totals over all workers.
pub fn run(pipeline: Pipeline, options: Options, until: Until) -> Result<Summary, DataflowError> {
    let workers = options.workers.max(1);
    let config = match &options.cluster {
        None => timely::Config::process(workers),
        Some(cluster) => {
            if cluster.process >= cluster.addresses.len() {
                return Err(DataflowError::Timely(format!(
                    "process index {} is not below the number of processes ({})",
                    cluster.process,
                    cluster.addresses.len()
                )));
            }
            timely::Config {
                communication: timely::CommunicationConfig::Cluster {
                    threads: workers,
                    process: cluster.process,
                    addresses: cluster.addresses.clone(),
                    report: false,
                    zerocopy: false,
                },
                worker: timely::WorkerConfig::default(),
            }
        }
    };
    let guards = timely::execute(config, move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let log = pipeline.log.clone();
        let owned: Vec<u32> = (0..log.partitions()).filter(|p| *p as usize % peers == index).collect();
        let stop_flag = match &until {
            Until::Stopped(flag) => Some(flag.clone()),
            Until::CaughtUp => None,
        };
        let stopped = move || stop_flag.as_ref().is_some_and(|f| f.load(Ordering::Relaxed));

        let by_id: HashMap<u64, Project> = pipeline.projects.values().map(|p| (p.id, p.clone())).collect();
        let runner =
            Rc::new(RefCell::new(Runner::new(Arc::new(by_id), pipeline.stats.clone(), pipeline.watcher.clone())));
        let batch_failed = Rc::new(Cell::new(false));
        let written = Rc::new(Cell::new(0u64));
        let skipped = Rc::new(Cell::new(0u64));
        // Records go into the graph as stored, a block per partition read; each is decoded once,
        // by the runner.
        let mut input: InputHandle<u64, CapacityContainerBuilder<Vec<RecordBlock>>> = InputHandle::new();
        let probe = ProbeHandle::new();

        let mut live = worker.dataflow::<u64, _, _>(|scope| {
            let r = runner.clone();
            let events_sink = pipeline.events.clone();
            let invocations_sink = pipeline.invocations.clone();
            let (failed, count, stop) = (batch_failed.clone(), written.clone(), stopped.clone());
            let (projects, skips) = (pipeline.projects.clone(), skipped.clone());
            let processed = input
                .to_stream(scope)
                .flat_map(move |block: RecordBlock| {
                    let mut runner = r.borrow_mut();
                    let mut kept = Vec::new();
                    for (_, record) in block.iter() {
                        match runner.process_record(record, |token| projects.get(token).map(|p| p.id)) {
                            Processed::Kept(event, routed) => kept.push((event, routed)),
                            Processed::Dropped => {}
                            Processed::Skipped => skips.set(skips.get() + 1),
                        }
                    }
                    kept
                })
                .inspect_core(move |item| {
                    let Ok((_, batch)) = item else { return };
                    let events: Vec<&Event> = batch.iter().map(|(e, _)| e).collect();
                    if !retry_sink("event", &stop, || events_sink.write(&events)) {
                        failed.set(true);
                    }
                    count.set(count.get() + events.len() as u64);
                    let invocations: Vec<(&str, &Event)> =
                        batch.iter().flat_map(|(e, ids)| ids.iter().map(move |id| (id.as_str(), e))).collect();
                    if !invocations.is_empty()
                        && !retry_sink("invocation", &stop, || invocations_sink.invoke(&invocations))
                    {
                        failed.set(true);
                    }
                })
                .probe_with(&probe);
            pipeline.live.as_ref().map(|live| live.attach(scope, processed, &probe, index))
        });

        // Log errors end a bounded run; a server keeps retrying (a broker restart must not stop
        // the pipeline), with backoff, until it works or the server stops.
        let persistent = matches!(until, Until::Stopped(_));
        let retry = |what: &str, attempt: &mut dyn FnMut() -> Result<(), LogError>| -> Result<bool, DataflowError> {
            let mut wait = Duration::from_millis(100);
            loop {
                match attempt() {
                    Ok(()) => return Ok(true),
                    Err(e) if persistent => {
                        tracing::warn!(error = %e, "event log: {what} failed; retrying in {wait:?}");
                        if stopped() {
                            return Ok(false);
                        }
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(Duration::from_secs(10));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let mut positions: Vec<u64> = Vec::with_capacity(owned.len());
        for &p in &owned {
            let mut position = 0;
            let ok = retry("reading the committed position", &mut || {
                let committed = log.committed(&options.group, p)?;
                position = committed.unwrap_or(0).max(log.start_offset(p)?);
                Ok(())
            })?;
            if !ok {
                return Ok(Summary::default());
            }
            positions.push(position);
        }
        let mut committed = positions.clone();
        let mut last_commit = std::time::Instant::now();
        let commit = |positions: &[u64], committed: &mut Vec<u64>| -> Result<bool, DataflowError> {
            for (i, &p) in owned.iter().enumerate() {
                if positions[i] != committed[i] {
                    if !retry("commit", &mut || log.commit(&options.group, p, positions[i]))? {
                        return Ok(false);
                    }
                    committed[i] = positions[i];
                }
            }
            Ok(true)
        };
        let mut summary = Summary::default();
        let mut epoch = 0u64;
        // Records read in a round, a block per partition.
        let mut batch: Vec<RecordBlock> = Vec::new();
        let mut drain_until: Option<std::time::Instant> = None;
        loop {
            if stopped() {
                // Drain: finish what is in the log (the idle check below ends the loop), within bounds.
                let until = *drain_until.get_or_insert_with(|| std::time::Instant::now() + options.drain);
                if std::time::Instant::now() >= until {
                    break;
                }
            }
            let set = pipeline.registry.snapshot();
            if set.version != runner.borrow().version() {
                runner.borrow_mut().use_set(&set);
                pipeline.stats.worker_version(index, set.version);
                for (i, &p) in owned.iter().enumerate() {
                    tracing::info!(partition = p, offset = positions[i], version = set.version, "functions in effect");
                }
            }
            runner.borrow_mut().refresh_health();
            let mut next = positions.clone();
            let mut read_failed = false;
            let mut round_read = 0u64;
            for (i, &p) in owned.iter().enumerate() {
                let mut block = RecordBlock::default();
                match log.read_values(p, positions[i], options.batch_size, &mut block) {
                    Ok(_) => {}
                    Err(e) if persistent => {
                        tracing::warn!(error = %e, partition = p, "event log: read failed; retrying");
                        read_failed = true;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
                if let Some(last) = block.last_offset() {
                    next[i] = last + 1;
                    round_read += block.len() as u64;
                    batch.push(block);
                }
            }
            if read_failed {
                // Nothing of this round was sent: read it again after a pause.
                batch.clear();
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            summary.read += round_read;
            let idle = next == positions;
            if idle && (matches!(until, Until::CaughtUp) || stopped()) {
                break;
            }
            for e in batch.drain(..) {
                input.send(e);
            }
            epoch += 1;
            input.advance_to(epoch);
            if let Some(live) = &mut live {
                live.advance_to(epoch);
            }
            while probe.less_than(input.time()) {
                worker.step();
            }
            runner.borrow_mut().flush_stats();
            if batch_failed.replace(false) {
                // A sink gave up (shutting down): do not commit; the batch is read again next time.
                break;
            }
            positions = next;
            // Commit what the sinks took, at most every `commit_interval` (each commit is a
            // durable write): a crash replays at most that much. Sinks that buffer store their
            // buffers first.
            if positions != committed && last_commit.elapsed() >= options.commit_interval {
                if !flush_sinks(&pipeline, &stopped) || !commit(&positions, &mut committed)? {
                    break;
                }
                last_commit = std::time::Instant::now();
            }
            if idle {
                std::thread::sleep(options.idle_wait);
            }
        }
        if positions != committed && !batch_failed.get() && flush_sinks(&pipeline, &stopped) {
            commit(&positions, &mut committed)?;
        }
        summary.written = written.get();
        summary.skipped = skipped.get();
        Ok::<Summary, DataflowError>(summary)
    })
    .map_err(DataflowError::Timely)?;

    let mut total = Summary::default();
    for result in guards.join() {
        let summary = result.map_err(DataflowError::Timely)??;
        total.read += summary.read;
        total.written += summary.written;
        total.skipped += summary.skipped;
    }
    Ok(total)
}
