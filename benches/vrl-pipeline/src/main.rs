//! ANCHORS.md's event transformation written in VRL 0.38, measured on one core, for comparison
//! with `hogpipe bench pipeline` (see `benches/pipeline-vs-vrl.sh`).
//!
//! The events are those of `dataflow/src/workload.rs`'s `fn event(i)`, serialized to JSON
//! lines in memory. Two measurements, each the median of `--runs` runs:
//! - end to end: parse each JSON line into a VRL `Value`, run the program, serialize the kept
//!   events to JSON lines (into a reused buffer);
//! - program alone: the same program on events parsed beforehand (in batches of 1 024, untimed);
//! - from records: as end to end, but each input is a captured-event record as hogpipe's log and
//!   PostHog's Kafka topic hold it (the event's JSON in the string `data`), parsed first.
//!
//! An `abort` drops the event, as Vector's `remap` does with `drop_on_abort: true`.
//!
//! Usage: `vrl-pipeline-bench [--events N] [--runs R] [--json]`

use std::time::{Duration, Instant};

use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::state::RuntimeState;
use vrl::compiler::{Program, TargetValue, TimeZone};
use vrl::value::{Secrets, Value};

/// The three Hog transformations of `dataflow/src/workload.rs` in one VRL program.
const PROGRAM: &str = r#"
.properties.email_hash = sha2(string!(.properties.email), variant: "SHA-256")
del(.properties.email)
.properties.path = replace(string!(.properties."$current_url"), "https://example.com", "")
if !match(.properties.path, r'^/p/1') { abort }
"#;

const BATCH: usize = 1024;

/// Same shape and values as `dataflow/src/workload.rs`'s `fn event` (this crate is built apart from the
/// workspace, so it keeps its own copy).
fn event(i: usize) -> serde_json::Value {
    serde_json::json!({
        "event": "$pageview",
        "distinct_id": format!("user-{}", i % 10_000),
        "properties": {
            "$current_url": format!("https://example.com/p/{}", i % 9),
            "$browser": "Chrome",
            "$os": "Mac OS X",
            "$device_type": "Desktop",
            "$screen_width": 1920,
            "$lib": "web",
            "$lib_version": "1.200.0",
            "$session_id": format!("0193{:012x}", i % 700),
            "plan": "pro",
            "email": format!("user{}@example.com", i % 10_000)
        }
    })
}

struct Vrl {
    program: Program,
    runtime: Runtime,
    tz: TimeZone,
}

impl Vrl {
    /// Runs the program on one event: `Some(event)` if kept, `None` if aborted (dropped).
    fn run(&mut self, value: Value) -> Option<Value> {
        let mut target = TargetValue { value, metadata: Value::Object(Default::default()), secrets: Secrets::new() };
        let result = self.runtime.resolve(&mut target, &self.program, &self.tz);
        self.runtime.clear();
        match result {
            Ok(_) => Some(target.value),
            Err(Terminate::Abort(_)) => None,
            Err(e) => panic!("VRL runtime error: {e}"),
        }
    }
}

/// Parse → program → serialize the kept, over all lines. Returns (time, kept, bytes written).
fn end_to_end(vrl: &mut Vrl, lines: &[&[u8]], out: &mut Vec<u8>) -> (Duration, usize, usize) {
    out.clear();
    let mut kept = 0;
    let started = Instant::now();
    for line in lines {
        let value: Value = serde_json::from_slice(line).expect("generated JSON parses");
        if let Some(v) = vrl.run(value) {
            serde_json::to_writer(&mut *out, &v).expect("serialize");
            out.push(b'\n');
            kept += 1;
        }
    }
    (started.elapsed(), kept, out.len())
}

/// The fields of a captured-event record (as in hogpipe's log and PostHog's Kafka topic) that a
/// VRL pipeline reads: the event's JSON is the string `data`, decoded then parsed.
#[derive(serde::Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    uuid: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    data: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    token: std::borrow::Cow<'a, str>,
}

/// As `end_to_end`, from captured-event records: parse the record, parse its `data` into a VRL
/// `Value`, run the program, serialize the kept.
fn from_records(vrl: &mut Vrl, records: &[&[u8]], out: &mut Vec<u8>) -> (Duration, usize) {
    out.clear();
    let mut kept = 0;
    let started = Instant::now();
    for bytes in records {
        let record: Record<'_> = serde_json::from_slice(bytes).expect("generated record parses");
        assert!(!record.uuid.is_empty() && !record.token.is_empty());
        let value: Value = serde_json::from_str(&record.data).expect("generated JSON parses");
        if let Some(v) = vrl.run(value) {
            serde_json::to_writer(&mut *out, &v).expect("serialize");
            out.push(b'\n');
            kept += 1;
        }
    }
    (started.elapsed(), kept)
}

/// The program alone on events parsed beforehand, batch by batch (parsing untimed).
fn program_alone(vrl: &mut Vrl, lines: &[&[u8]]) -> (Duration, usize) {
    let mut total = Duration::ZERO;
    let mut kept = 0;
    let mut batch: Vec<Value> = Vec::with_capacity(BATCH);
    let mut results: Vec<Value> = Vec::with_capacity(BATCH);
    for chunk in lines.chunks(BATCH) {
        batch.extend(chunk.iter().map(|l| serde_json::from_slice::<Value>(l).expect("generated JSON parses")));
        let started = Instant::now();
        for v in batch.drain(..) {
            if let Some(v) = vrl.run(v) {
                results.push(v);
            }
        }
        total += started.elapsed();
        kept += results.len();
        results.clear(); // dropping the kept events is not timed either
    }
    (total, kept)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let mut events = 200_000usize;
    let mut runs = 3usize;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--events" => events = args.next().and_then(|s| s.parse().ok()).expect("--events N"),
            "--runs" => runs = args.next().and_then(|s| s.parse().ok()).expect("--runs R"),
            "--json" => json = true,
            other => {
                eprintln!("unknown argument {other}; usage: vrl-pipeline-bench [--events N] [--runs R] [--json]");
                std::process::exit(2);
            }
        }
    }
    assert!(events > 0 && runs > 0, "--events and --runs must be at least 1");

    let fns = vrl::stdlib::all();
    let compiled = match vrl::compiler::compile(PROGRAM, &fns) {
        Ok(c) => c,
        Err(diagnostics) => {
            eprintln!("{}", vrl::diagnostic::Formatter::new(PROGRAM, diagnostics));
            std::process::exit(1);
        }
    };
    let mut vrl =
        Vrl { program: compiled.program, runtime: Runtime::new(RuntimeState::default()), tz: TimeZone::default() };

    let mut data = Vec::with_capacity(events * 400);
    for i in 0..events {
        serde_json::to_writer(&mut data, &event(i)).expect("serialize");
        data.push(b'\n');
    }
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    // The same events as captured-event records, shaped as hogpipe's capture writes them.
    let mut record_data = Vec::with_capacity(events * 700);
    for (i, line) in lines.iter().enumerate() {
        let record = serde_json::json!({
            "uuid": format!("0193a5b0-0000-7000-8000-{i:012x}"),
            "distinct_id": format!("user-{}", i % 10_000),
            "ip": "127.0.0.1",
            "data": std::str::from_utf8(line).expect("UTF-8"),
            "now": "2026-11-25T12:00:00.000Z",
            "token": "phc_bench_pipeline",
        });
        serde_json::to_writer(&mut record_data, &record).expect("serialize");
        record_data.push(b'\n');
    }
    let records: Vec<&[u8]> = record_data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    let expected_kept = (0..events).filter(|i| i % 9 == 1).count();

    let mut out = Vec::with_capacity(events * 50);
    let (mut e2e, mut alone, mut recs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut kept_e2e, mut kept_alone, mut kept_recs, mut out_bytes) = (0, 0, 0, 0);
    for _ in 0..runs {
        let (d, k) = from_records(&mut vrl, &records, &mut out);
        recs.push(d);
        kept_recs = k;
        let (d, k, b) = end_to_end(&mut vrl, &lines, &mut out);
        e2e.push(d);
        (kept_e2e, out_bytes) = (k, b);
        let (d, k) = program_alone(&mut vrl, &lines);
        alone.push(d);
        kept_alone = k;
    }
    assert_eq!(kept_e2e, expected_kept, "end to end kept the wrong number of events");
    assert_eq!(kept_alone, expected_kept, "program alone kept the wrong number of events");
    assert_eq!(kept_recs, expected_kept, "from records kept the wrong number of events");
    let sample = out.split(|&b| b == b'\n').next().map(String::from_utf8_lossy).unwrap_or_default().into_owned();

    let (e2e, alone, recs) = (median(e2e).as_secs_f64(), median(alone).as_secs_f64(), median(recs).as_secs_f64());
    let n = events as f64;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "events": events,
                "runs": runs,
                "input_bytes": data.len(),
                "kept": kept_e2e,
                "expected_kept": expected_kept,
                "output_bytes": out_bytes,
                "end_to_end": {"seconds": e2e, "events_per_second": n / e2e, "us_per_event": e2e * 1e6 / n},
                "program_alone": {"seconds": alone, "events_per_second": n / alone, "us_per_event": alone * 1e6 / n},
                "from_records": {"seconds": recs, "events_per_second": n / recs, "us_per_event": recs * 1e6 / n},
                "sample_output": sample,
            })
        );
    } else {
        println!("VRL 0.38, {events} events ({} B of JSON lines), median of {runs} runs, one core", data.len());
        println!("{:<48} {:>12} {:>10}", "what", "events/s", "µs/event");
        println!("{:<48} {:>12.0} {:>10.3}", "end to end (parse + program + serialize kept)", n / e2e, e2e * 1e6 / n);
        println!("{:<48} {:>12.0} {:>10.3}", "program alone (events already parsed)", n / alone, alone * 1e6 / n);
        println!("{:<48} {:>12.0} {:>10.3}", "from captured-event records (+ record parse)", n / recs, recs * 1e6 / n);
        println!("kept {kept_e2e} of {events} (expected {expected_kept})");
        println!("first kept: {sample}");
    }
}
