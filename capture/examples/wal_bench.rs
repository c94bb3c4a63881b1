//! Append throughput and latency of the embedded WAL: 64 concurrent tasks append batches of 100
//! records of ~400 bytes for a few seconds, fsync on.
//!
//! `cargo run --release -p hogpipe-capture --example wal_bench [-- <dir> [seconds] [fsync: 1|0]]`
//! (the default dir is a fresh temporary directory; make sure it is on a real disk, not tmpfs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hogpipe_capture::log::wal::{Wal, WalConfig};
use hogpipe_capture::log::{EventLog, Record};

const TASKS: usize = 64;
const BATCH: usize = 100;
const VALUE_BYTES: usize = 400;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tmp = tempfile::tempdir()?;
    let dir = args.first().filter(|d| !d.is_empty()).map_or_else(|| tmp.path().join("wal"), |d| d.into());
    let seconds: u64 = args.get(1).map_or(Ok(5), |s| s.parse())?;
    let fsync = args.get(2).is_none_or(|s| s != "0");
    let wal = Arc::new(Wal::open(WalConfig { fsync, ..WalConfig::new(&dir) })?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let wal = wal.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies_us: Vec<u32> = Vec::new();
                let mut records = 0u64;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let batch: Vec<Record> = (0..BATCH)
                        .map(|i| Record {
                            key: format!("phc_token:user-{}", (n as usize * BATCH + i + t * 7919) % 100_000)
                                .into_bytes(),
                            value: vec![b'e'; VALUE_BYTES],
                            timestamp_ms: 1_700_000_000_000,
                            historical: false,
                        })
                        .collect();
                    let t0 = Instant::now();
                    wal.append(batch).await?;
                    latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    records += BATCH as u64;
                    n += 1;
                }
                Ok::<_, hogpipe_capture::log::LogError>((records, latencies_us))
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await);
        }
        all
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut records = 0u64;
    let mut lat: Vec<u32> = Vec::new();
    for r in results {
        let (n, l) = r??;
        records += n;
        lat.extend(l);
    }
    lat.sort_unstable();
    let pct =
        |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "wal_bench: {TASKS} tasks x batches of {BATCH} records of {VALUE_BYTES} B, fsync={fsync}, {elapsed:.1} s, dir {}",
        dir.display()
    );
    println!(
        "{records} records, {:.0} records/s, {:.1} MB/s; append latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        records as f64 / elapsed,
        records as f64 * VALUE_BYTES as f64 / elapsed / 1e6,
        pct(0.50) as f64 / 1000.0,
        pct(0.99) as f64 / 1000.0,
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    drop(rt);

    // A consumer walking every partition forward, 1000 records per read.
    let started = Instant::now();
    let mut read = 0u64;
    for p in 0..wal.partitions() {
        let mut next = wal.start_offset(p);
        loop {
            let chunk = wal.read(p, next, 1000)?;
            let Some(last) = chunk.last() else { break };
            next = last.offset + 1;
            read += chunk.len() as u64;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("read back {read} records in {elapsed:.2} s: {:.0} records/s (one thread)", read as f64 / elapsed);
    if let Ok(wal) = Arc::try_unwrap(wal) {
        wal.flush_and_close()?;
    }
    Ok(())
}
