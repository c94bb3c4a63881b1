//! The delay from capture to visibility in a live aggregate, measured end to end: a captured
//! payload is decoded as capture does, appended durably to a real WAL, read by the running graph
//! and counted into the store. `hogpipe bench` (and `cargo bench --bench live`) report it.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use hogpipe_capture::event::{parse_payload, CaptureError, EndpointKind, ParseLimits, RequestMeta};
use hogpipe_capture::log::wal::{Wal, WalConfig};
use hogpipe_capture::log::{EventLog, LogError};

use super::{AggregateDef, Interval, Live, LiveConfig, LiveError, Measure};
use crate::event::Project;
use crate::functions::{FunctionStats, Registry};
use crate::graph::{run, DataflowError, Options, Pipeline, Until};
use crate::health::{HealthConfig, Watcher};
use crate::sink::NullSink;

const TOKEN: &str = "phc_live_bench";
const DEFINITION: &str = "bench-events-per-minute";

/// What to measure.
#[derive(Debug, Clone)]
pub struct DelayOptions {
    /// Events captured, one at a time; each gives one sample.
    pub samples: usize,
    /// Timely workers.
    pub workers: usize,
    /// Mean pause between two captures (jittered ±50 %, so captures fall anywhere in a round).
    pub gap: Duration,
    /// Give up on an event not visible after this long.
    pub timeout: Duration,
}

impl Default for DelayOptions {
    fn default() -> Self {
        DelayOptions { samples: 200, workers: 2, gap: Duration::from_millis(20), timeout: Duration::from_secs(10) }
    }
}

/// Why the measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The WAL failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The payload was refused (a bug of the benchmark).
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The graph failed.
    #[error(transparent)]
    Dataflow(#[from] DataflowError),
    /// The live aggregates could not be set up.
    #[error(transparent)]
    Live(#[from] LiveError),
    /// An event did not show up in time.
    #[error("event {sample} was not visible in the live aggregate after {waited:?}")]
    NotVisible {
        /// Which sample.
        sample: usize,
        /// How long the benchmark waited.
        waited: Duration,
    },
    /// The graph thread panicked.
    #[error("the dataflow thread panicked")]
    Panicked,
}

/// Percentiles of delay samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelaySummary {
    /// Number of samples.
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

/// Nearest-rank percentiles of `samples`.
pub fn summarize(samples: &[Duration]) -> DelaySummary {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let at = |p: f64| -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    };
    DelaySummary { samples: sorted.len(), p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1.0) }
}

/// Runs the graph over a WAL in `dir` (created; use an empty directory) and returns, for each of
/// `options.samples` events, the time from handing the decoded payload to the log until the live
/// aggregate counts it. The append waits for the WAL's fsync, as capture's response does.
pub fn capture_to_visible(dir: &Path, options: &DelayOptions) -> Result<Vec<Duration>, BenchError> {
    let wal = Arc::new(Wal::open(WalConfig::new(dir.join("log")))?);
    let definition = AggregateDef {
        id: DEFINITION.into(),
        project_id: 1,
        event: None,
        group_by: vec![],
        measure: Measure::Count,
        property: None,
        interval: Interval::Minute,
    };
    let live = Arc::new(Live::new(LiveConfig::default(), vec![definition])?);
    let pipeline = Pipeline {
        log: wal.clone(),
        registry: Arc::new(Registry::new(Vec::new())),
        projects: Arc::new(HashMap::from([(TOKEN.to_string(), Project { id: 1, name: "bench".into() })])),
        events: Arc::new(NullSink),
        invocations: Arc::new(NullSink),
        stats: Arc::new(FunctionStats::default()),
        watcher: Arc::new(Watcher::new(HealthConfig::default())),
        live: Some(live.clone()),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let graph = {
        let options = Options { workers: options.workers.max(1), ..Options::default() };
        let until = Until::Stopped(stop.clone());
        std::thread::spawn(move || run(pipeline, options, until))
    };
    let measured = measure(&wal, &live, options);
    stop.store(true, Ordering::Relaxed);
    let ran = graph.join().map_err(|_| BenchError::Panicked)?;
    let samples = measured?;
    ran?;
    Ok(samples)
}

fn measure(wal: &Wal, live: &Live, options: &DelayOptions) -> Result<Vec<Duration>, BenchError> {
    let store = live.store();
    let counted = || -> u64 { store.query(DEFINITION, i64::MIN, i64::MAX).iter().map(|r| r.count).sum() };
    let mut samples = Vec::with_capacity(options.samples);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for sample in 0..options.samples {
        let body = serde_json::json!({
            "api_key": TOKEN,
            "batch": [{"event": "bench", "distinct_id": format!("user-{}", sample % 100), "properties": {"i": sample}}],
        })
        .to_string();
        let meta = RequestMeta::new(EndpointKind::Events, "127.0.0.1");
        let parsed = parse_payload(body.as_bytes(), &meta, &ParseLimits::default())?;
        let version = store.version();
        let started = Instant::now();
        block_on(wal.append(parsed.records))?;
        let mut seen = version;
        while counted() < sample as u64 + 1 {
            let waited = started.elapsed();
            if waited >= options.timeout {
                return Err(BenchError::NotVisible { sample, waited });
            }
            seen = store.wait_changed(seen, options.timeout - waited);
        }
        samples.push(started.elapsed());
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let jitter = 0.5 + (seed >> 11) as f64 / (1u64 << 53) as f64;
        std::thread::sleep(options.gap.mul_f64(jitter));
    }
    Ok(samples)
}

/// Runs a future to completion on this thread (the WAL's append resolves from its writer thread).
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = summarize(&samples);
        assert_eq!(
            (s.p50, s.p90, s.p99, s.max),
            (
                Duration::from_millis(50),
                Duration::from_millis(90),
                Duration::from_millis(99),
                Duration::from_millis(100)
            )
        );
        assert_eq!(summarize(&[]).samples, 0);
    }
}
