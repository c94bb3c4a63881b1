//! The VM's benchmark programs and the harness shared by criterion (`benches/vm.rs`),
//! `hogpipe bench hog` and the comparison with PostHog's VM (`benches/hog-vs-node.sh`).
//!
//! Programs live in the repository's `benches/hog/` folder. Whole programs run start to end; event
//! programs run once per generated event, each run a fresh invocation with `event` as a global,
//! as the pipeline runs transformations.

use crate::value::{from_json, Dict, Key, Value};
use crate::vm::{CollectingHost, Outcome, Vm};
use crate::{compile_chunk, Chunk, CompileOptions, RunError};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How a benchmark program is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Runs once, start to end.
    Whole,
    /// Runs once per event, with the event as the `event` global.
    PerEvent,
}

/// A benchmark program.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    /// Short name (also the file name in `benches/hog/`).
    pub name: &'static str,
    /// What it exercises.
    pub description: &'static str,
    /// Hog source.
    pub source: &'static str,
    /// How it runs.
    pub kind: Kind,
}

/// Every benchmark program.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "fib",
        description: "recursive fib(25)",
        source: include_str!("../../benches/hog/fib.hog"),
        kind: Kind::Whole,
    },
    Program {
        name: "mandelbrot",
        description: "float loops, 120x60 grid",
        source: include_str!("../../benches/hog/mandelbrot.hog"),
        kind: Kind::Whole,
    },
    Program {
        name: "strings",
        description: "string building, 20 000 items",
        source: include_str!("../../benches/hog/strings.hog"),
        kind: Kind::Whole,
    },
    Program {
        name: "churn",
        description: "dict/array churn, 5 000 records",
        source: include_str!("../../benches/hog/churn.hog"),
        kind: Kind::Whole,
    },
    Program {
        name: "transform",
        description: "rename/hash/derive/drop, per event",
        source: include_str!("../../benches/hog/transform.hog"),
        kind: Kind::PerEvent,
    },
    Program {
        name: "simple",
        description: "tag and keep, per event",
        source: include_str!("../../benches/hog/simple.hog"),
        kind: Kind::PerEvent,
    },
];

/// The program of this name.
pub fn program(name: &str) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.name == name)
}

/// Compiles a benchmark program.
pub fn compile(p: &Program) -> Result<Rc<Chunk>, RunError> {
    compile_chunk(p.source, &CompileOptions::default())
}

/// `n` deterministic, varied PostHog events as JSON (the same for every caller and run).
pub fn events(n: usize) -> Vec<serde_json::Value> {
    const EVENTS: &[&str] = &["$pageview", "$autocapture", "signed_up", "$pageleave", "purchase", "$internal_ping"];
    const BROWSERS: &[&str] = &["Chrome", "Safari", "Firefox", "Edge", "Googlebot", "Chrome"];
    const OSES: &[&str] = &["Mac OS X", "Windows", "iOS", "Android", "Linux"];
    const PATHS: &[&str] = &["/", "/pricing", "/docs/getting-started/install", "/blog/2026/11/post", "/app/settings"];
    const PLANS: &[&str] = &["free", "pro", "enterprise"];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64*: deterministic and dependency-free.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..n)
        .map(|i| {
            let r = next();
            let pick = |list: &[&'static str], shift: u32| list[((r >> shift) % list.len() as u64) as usize];
            let path = pick(PATHS, 8);
            let mut props = serde_json::Map::new();
            props.insert("$browser".into(), pick(BROWSERS, 16).into());
            props.insert("$os".into(), pick(OSES, 24).into());
            props.insert("$pathname".into(), path.into());
            props.insert("$current_url".into(), format!("https://example.com{path}?ref={}", r % 97).into());
            props.insert("$lib".into(), "web".into());
            if r % 3 == 0 {
                props.insert("email".into(), format!("  User{}@Example.com ", r % 10_000).into());
            }
            if r % 5 == 0 {
                props.insert("plan".into(), pick(PLANS, 32).into());
            }
            if r % 7 == 0 {
                props.insert("revenue".into(), ((r % 100_000) as f64 / 100.0).into());
            }
            serde_json::json!({
                "uuid": format!("01890000-0000-7000-8000-{:012x}", i),
                "event": pick(EVENTS, 40),
                "distinct_id": format!("user-{}", r % 5_000),
                "timestamp": "2026-11-25T10:00:00.000Z",
                "properties": props,
            })
        })
        .collect()
}

/// The globals of one invocation for an event.
pub fn event_globals(event: &serde_json::Value) -> Value {
    let mut d = Dict::default();
    d.insert(Key::str("event"), from_json(event));
    Value::dict(d)
}

/// What one benchmark measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Program name.
    pub name: &'static str,
    /// Timed runs of the whole program, or timed events for per-event programs.
    pub iterations: u64,
    /// Total time of the timed iterations.
    pub elapsed: Duration,
    /// VM operations per iteration.
    pub ops_per_iteration: u64,
    /// Per-event programs: events kept (not dropped) in one pass.
    pub kept: Option<u64>,
    /// Median time of one iteration (of one event for per-event programs, from the median pass):
    /// steadier than the mean on a busy machine.
    pub median: Duration,
}

impl Measurement {
    /// Seconds per iteration (the median).
    pub fn seconds_per_iteration(&self) -> f64 {
        self.median.as_secs_f64()
    }

    /// Mean seconds per iteration.
    pub fn mean_seconds_per_iteration(&self) -> f64 {
        self.elapsed.as_secs_f64() / self.iterations.max(1) as f64
    }

    /// VM operations per second.
    pub fn ops_per_second(&self) -> f64 {
        self.ops_per_iteration as f64 / self.seconds_per_iteration()
    }
}

/// A benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The program did not compile or failed.
    #[error("benchmark {name}: {error}")]
    Run {
        /// Program name.
        name: &'static str,
        /// What went wrong.
        error: RunError,
    },
}

/// Runs a whole program repeatedly for at least `min_time` (and at least once).
pub fn run_whole(p: &'static Program, min_time: Duration) -> Result<Measurement, BenchError> {
    let fail = |error: RunError| BenchError::Run { name: p.name, error };
    let chunk = compile(p).map_err(fail)?;
    let mut vm = Vm::new(Value::Null);
    let mut host = CollectingHost::default();
    // One untimed run warms caches and checks the program works.
    run_once(&mut vm, &chunk, &mut host).map_err(fail)?;
    let ops = vm.ops();
    let mut times = Vec::new();
    let started = Instant::now();
    while times.len() < 3 || started.elapsed() < min_time {
        host.lines.clear();
        let t = Instant::now();
        run_once(&mut vm, &chunk, &mut host).map_err(fail)?;
        times.push(t.elapsed());
    }
    Ok(Measurement {
        name: p.name,
        iterations: times.len() as u64,
        elapsed: started.elapsed(),
        ops_per_iteration: ops,
        kept: None,
        median: median(&mut times),
    })
}

/// Events per batch in per-event programs: the pipeline moves events in batches, decoding a batch
/// just before transforming it.
pub const BATCH: usize = 1000;

/// Runs a per-event program over `events`, in passes, for at least `min_time` (at least one pass).
/// Events are converted to Hog values a batch at a time (fresh copies, so transformations that edit
/// an event never see an earlier pass's edits), and only running the program is timed. Kept events
/// are handed on (collected) and freed after the batch, as the pipeline hands them to the next
/// stage; dropped ones are freed where they are dropped.
pub fn run_per_event(
    p: &'static Program,
    events: &[serde_json::Value],
    min_time: Duration,
) -> Result<Measurement, BenchError> {
    let fail = |error: RunError| BenchError::Run { name: p.name, error };
    let chunk = compile(p).map_err(fail)?;
    let mut vm = Vm::new(Value::Null);
    let mut host = CollectingHost::default();
    let mut elapsed = Duration::ZERO;
    let mut iterations = 0;
    let mut ops = 0;
    let mut kept = 0;
    let mut passes = Vec::new();
    let mut outputs = Vec::with_capacity(BATCH);
    while passes.len() < 3 || elapsed < min_time {
        let mut pass = Duration::ZERO;
        ops = 0;
        kept = 0;
        for batch in events.chunks(BATCH) {
            let globals: Vec<Value> = batch.iter().map(event_globals).collect();
            let started = Instant::now();
            for g in globals {
                vm.reset(g);
                let out = run_once(&mut vm, &chunk, &mut host).map_err(fail)?;
                if !out.is_null() {
                    kept += 1;
                    outputs.push(out);
                }
                ops += vm.ops();
            }
            pass += started.elapsed();
            vm.reset(Value::Null);
            outputs.clear();
        }
        elapsed += pass;
        passes.push(pass / events.len().max(1) as u32);
        iterations += events.len() as u64;
    }
    let per_event = ops / events.len().max(1) as u64;
    Ok(Measurement {
        name: p.name,
        iterations,
        elapsed,
        ops_per_iteration: per_event,
        kept: Some(kept),
        median: median(&mut passes),
    })
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn run_once(vm: &mut Vm, chunk: &Rc<Chunk>, host: &mut CollectingHost) -> Result<Value, RunError> {
    match vm.run(chunk.clone(), host)? {
        Outcome::Finished(v) => Ok(v),
        Outcome::Suspended { name, .. } => Err(RunError::Suspended(name.to_string())),
    }
}
