//! Throughput and append latency of the Kafka event log.
//!
//! 32 concurrent tasks append batches of 100 records of ~400 bytes for ~5 s and the example prints
//! records/s and the p50/p99 latency of one append (produce + `acks=all` acknowledgement).
//!
//! ```text
//! cargo run -p hogpipe-capture --example kafka_bench                  # librdkafka's mock cluster
//! cargo run -p hogpipe-capture --example kafka_bench -- 127.0.0.1:9092  # a real broker
//! cargo run -p hogpipe-capture --example kafka_bench -- mock 256 5      # 256 tasks, linger.ms=5
//! ```
//!
//! With few tasks the figure is bound by latency, not by the producer: each task waits for its
//! batch, and a batch waits up to `linger.ms` (20 ms, PostHog's setting) before it is sent.
//!
//! Against a real broker the topics `events_plugin_ingestion(_historical)` must exist
//! (`scripts/tansu.sh start` + `tansu topic create`). The mock cluster runs in this process (3
//! brokers, 8 partitions, replication 3), so it competes with the producer for the CPU.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hogpipe_capture::log::kafka::{KafkaConfig, KafkaLog};
use hogpipe_capture::log::{EventLog, LogError, Record};
use rdkafka::mocking::MockCluster;

const BATCH: usize = 100;
const RUN_FOR: Duration = Duration::from_secs(5);

fn batch(task: usize, n: u64) -> Vec<Record> {
    let pad = "x".repeat(300);
    (0..BATCH)
        .map(|i| Record {
            key: format!("phc_benchtoken:user-{}", (task * 7919 + i) % 10_000).into_bytes(),
            value: format!(
                "{{\"uuid\":\"{task:08}-{n:012}-{i:04}\",\"event\":\"$pageview\",\"properties\":{{\"pad\":\"{pad}\"}}}}"
            )
            .into_bytes(),
            timestamp_ms: 1_700_000_000_000,
            historical: false,
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let external = args.first().filter(|a| *a != "mock").cloned();
    let tasks_count: usize = match args.get(1) {
        Some(n) => n.parse()?,
        None => 32,
    };
    let mut properties = std::collections::BTreeMap::new();
    if let Some(linger) = args.get(2) {
        properties.insert("linger.ms".to_string(), linger.clone());
    }
    let cluster = match external {
        Some(_) => None,
        None => {
            let cluster = MockCluster::new(3)?;
            cluster.create_topic("events_plugin_ingestion", 8, 3)?;
            cluster.create_topic("events_plugin_ingestion_historical", 8, 3)?;
            Some(cluster)
        }
    };
    let brokers = external.clone().or_else(|| cluster.as_ref().map(MockCluster::bootstrap_servers)).unwrap_or_default();
    let log = Arc::new(KafkaLog::new(KafkaConfig {
        brokers: brokers.clone(),
        properties: properties.clone(),
        ..KafkaConfig::default()
    })?);
    // Warm up: connections, metadata, producer id.
    log.append(batch(0, 0)).await?;
    let record_bytes: usize = batch(0, 0).iter().map(|r| r.key.len() + r.value.len()).sum::<usize>() / BATCH;

    let start = Instant::now();
    let mut tasks = Vec::with_capacity(tasks_count);
    for task in 0..tasks_count {
        let log = Arc::clone(&log);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut full = 0u64;
            let mut n = 0u64;
            while start.elapsed() < RUN_FOR {
                n += 1;
                let records = batch(task, n);
                let t = Instant::now();
                match log.append(records).await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(LogError::Full { .. }) => {
                        full += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok((latencies, full))
        }));
    }
    let mut latencies = Vec::new();
    let mut full = 0;
    for task in tasks {
        let (l, f) = task.await??;
        latencies.extend(l);
        full += f;
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let records = latencies.len() * BATCH;
    println!(
        "kafka log ({}): {} tasks x {BATCH}-record batches of ~{record_bytes} B for {:.1} s {properties:?}",
        if external.is_some() { brokers.as_str() } else { "mock cluster, 3 brokers" },
        tasks_count,
        elapsed.as_secs_f64()
    );
    println!(
        "  {records} records, {:.0} records/s, {:.1} MB/s; append p50 {:.1} ms, p99 {:.1} ms; {full} Full refusals",
        records as f64 / elapsed.as_secs_f64(),
        (records * record_bytes) as f64 / elapsed.as_secs_f64() / 1e6,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
    Ok(())
}
