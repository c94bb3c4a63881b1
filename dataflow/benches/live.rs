//! Capture → visible delay of live aggregates: `cargo bench -p hogpipe-dataflow --bench live`.
//! Environment: `LIVE_BENCH_SAMPLES` (default 500), `LIVE_BENCH_WORKERS` (default 2),
//! `LIVE_BENCH_GAP_MS` (mean pause between captures, default 20).

use std::time::Duration;

use hogpipe_dataflow::live::bench::{capture_to_visible, summarize, DelayOptions};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let options = DelayOptions {
        samples: env("LIVE_BENCH_SAMPLES", 500) as usize,
        workers: env("LIVE_BENCH_WORKERS", 2) as usize,
        gap: Duration::from_millis(env("LIVE_BENCH_GAP_MS", 20)),
        ..DelayOptions::default()
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    match capture_to_visible(dir.path(), &options) {
        Ok(samples) => {
            let s = summarize(&samples);
            println!(
                "live capture→visible, {} samples, {} workers: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                s.samples,
                options.workers,
                s.p50.as_secs_f64() * 1e3,
                s.p90.as_secs_f64() * 1e3,
                s.p99.as_secs_f64() * 1e3,
                s.max.as_secs_f64() * 1e3
            );
        }
        Err(e) => {
            eprintln!("live bench failed: {e}");
            std::process::exit(1);
        }
    }
}
