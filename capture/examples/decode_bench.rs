//! Decode throughput on a realistic posthog-js batch (100 events, about 50 KB of JSON, from
//! `tests/fixtures/lz64/`): MB/s of decoded output for plain JSON, gzip, lz64 and base64.
//!
//! Run: `cargo run --release -p hogpipe-capture --example decode_bench [name…]` (names: plain,
//! gzip, lz64, base64; all by default).

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hogpipe_capture::decode::{decode, DecodeLimits, Encoded};

const BATCH_JSON: &[u8] = include_bytes!("../tests/fixtures/lz64/batch.json");
const BATCH_LZ64: &[u8] = include_bytes!("../tests/fixtures/lz64/batch.lz64");

fn measure(name: &str, req: Encoded<'_>) {
    let only: Vec<String> = std::env::args().skip(1).collect();
    if !only.is_empty() && !only.iter().any(|o| o == name) {
        return;
    }
    let limits = DecodeLimits { max_decoded_bytes: 20 << 20 };
    let out = decode(req, &limits).map(|d| d.json).unwrap_or_default();
    assert_eq!(out, BATCH_JSON, "{name} does not decode to the batch");
    // Warm up, then run for about two seconds.
    for _ in 0..200 {
        black_box(decode(black_box(req), &limits).ok());
    }
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            black_box(decode(black_box(req), &limits).ok());
        }
        runs += 100;
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (runs as f64 * BATCH_JSON.len() as f64) / 1e6;
    println!(
        "{name:<8} input {:>6} B  {:>8.1} MB/s of JSON  {:>7.1} µs/batch",
        req.body.len() + req.query.map_or(0, str::len),
        mb / secs,
        secs * 1e6 / runs as f64
    );
}

fn main() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(BATCH_JSON).unwrap_or_default();
    let gz = gz.finish().unwrap_or_default();
    let form = format!("data={}", base64::engine::general_purpose::STANDARD.encode(BATCH_JSON).replace('+', "%2B"));
    println!("batch: {} bytes of JSON, 100 events", BATCH_JSON.len());
    let post = |query, content_type, body| Encoded { is_get: false, content_type, content_encoding: None, query, body };
    measure("plain", post(None, Some("application/json"), BATCH_JSON));
    measure("gzip", post(Some("compression=gzip-js&ver=1.160.0"), Some("text/plain"), &gz));
    measure("lz64", post(Some("compression=lz64"), Some("text/plain"), BATCH_LZ64));
    measure("base64", post(None, Some("application/x-www-form-urlencoded"), form.as_bytes()));
}
