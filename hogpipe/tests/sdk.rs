//! The real PostHog SDKs (posthog-python, posthog-node, pinned in `scripts/install-sdks.sh`)
//! against a real `hogpipe serve`: every event an SDK sends must be in the event log exactly once,
//! as sent. The driver scripts are `tests/sdk/capture.py` and `tests/sdk/capture.mjs`; each run
//! gets its own server, data dir and project token.
//!
//! The SDKs are installed by the script on first use; if that fails (no registry, no Python/Node)
//! the tests fail loudly rather than skip.

mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use common::{
    by_uuid, parse_metrics, query, read_log, repo_root, run_with_timeout, write_config, ClickHouse, Http, Server,
    TempDir, HANG,
};
use serde_json::{json, Map, Value};

/// Where `scripts/install-sdks.sh` put the SDKs.
struct Sdks {
    python: PathBuf,
    node_dir: PathBuf,
}

/// Runs `scripts/install-sdks.sh` once per test binary (a fast no-op when the pinned versions are
/// there) and reads the paths it prints.
fn sdks() -> &'static Sdks {
    static SDKS: OnceLock<Result<Sdks, String>> = OnceLock::new();
    let result = SDKS.get_or_init(|| {
        let script = repo_root().join("scripts/install-sdks.sh");
        let out = run_with_timeout(Command::new("bash").arg(&script), std::time::Duration::from_secs(900));
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}); the SDK tests need the real SDKs from PyPI and npm (and python3 with venv, node, npm).\n{}{}",
                script.display(),
                out.status,
                out.stdout,
                out.stderr
            ));
        }
        let find = |key: &str| {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(PathBuf::from)
                .ok_or_else(|| format!("{} printed no {key} line:\n{}", script.display(), out.stdout))
        };
        Ok(Sdks { python: find("HOGPIPE_SDK_PYTHON=")?, node_dir: find("HOGPIPE_SDK_NODE_DIR=")? })
    });
    match result {
        Ok(sdks) => sdks,
        Err(e) => panic!("{e}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Sdk {
    Python,
    Node,
}

impl Sdk {
    fn lib(self) -> &'static str {
        match self {
            Sdk::Python => "posthog-python",
            Sdk::Node => "posthog-node",
        }
    }

    fn command(self) -> Command {
        let sdks = sdks();
        let drivers = repo_root().join("tests/sdk");
        match self {
            Sdk::Python => {
                let mut c = Command::new(&sdks.python);
                c.arg(drivers.join("capture.py"));
                c
            }
            Sdk::Node => {
                let mut c = Command::new("node");
                c.arg(drivers.join("capture.mjs")).env("HOGPIPE_SDK_NODE_DIR", &sdks.node_dir);
                c
            }
        }
    }
}

/// One event as the driver script asked the SDK to send it.
#[derive(Debug)]
struct Sent {
    uuid: String,
    event: String,
    distinct_id: String,
    /// Properties the script gave; the SDK may add its own `$` properties.
    properties: Map<String, Value>,
    /// Top-level event fields that must arrive as given (`$set` on posthog-python's `set`).
    top: Map<String, Value>,
}

/// What a driver run printed.
struct Run {
    version: String,
    sent: Vec<Sent>,
}

/// Runs a driver against `server` and parses what it says it sent. Panics if the SDK reported any
/// error, or if the SDK's effective settings are not the ones asked for.
fn drive(sdk: Sdk, server: &Server, token: &str, run: &str, gzip: bool, historical: bool, events: usize) -> Run {
    let mut command = sdk.command();
    command
        .env("HOGPIPE_HOST", server.url())
        .env("HOGPIPE_TOKEN", token)
        .env("HOGPIPE_RUN", run)
        .env("HOGPIPE_GZIP", if gzip { "1" } else { "0" })
        .env("HOGPIPE_HISTORICAL", if historical { "1" } else { "0" })
        .env("HOGPIPE_BATCH", events.to_string());
    let out = run_with_timeout(&mut command, HANG);
    assert!(
        out.status.success(),
        "{} driver failed ({}):\n{}\nserver output:\n{}",
        sdk.lib(),
        out.status,
        out.stderr,
        server.output()
    );
    let mut lines = out.stdout.lines();
    let config: Value =
        serde_json::from_str(lines.next().unwrap_or("")).expect("the driver's first line is its config");
    let config = &config["config"];
    assert_eq!(config["sdk"], sdk.lib(), "{config}");
    assert_eq!(config["gzip"], gzip, "the SDK's compression setting is not the one asked for: {config}");
    assert_eq!(config["historical_migration"], historical, "{config}");
    let version = config["version"].as_str().expect("the driver reports the SDK version").to_string();
    let sent = lines
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad driver line ({e}): {line}"));
            let text = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("no {k} in {line}")).to_string();
            let object = |k: &str| v[k].as_object().cloned().unwrap_or_else(|| panic!("no {k} object in {line}"));
            Sent {
                uuid: text("uuid"),
                event: text("event"),
                distinct_id: text("distinct_id"),
                properties: object("properties"),
                top: object("top"),
            }
        })
        .collect();
    Run { version, sent }
}

/// Runs one SDK configuration end to end and checks the log and the warehouse (embedded chDB,
/// or the ClickHouse server when `clickhouse` is given).
fn sdk_round_trip(sdk: Sdk, gzip: bool, historical: bool) {
    sdk_round_trip_into(sdk, gzip, historical, None)
}

fn sdk_round_trip_into(sdk: Sdk, gzip: bool, historical: bool, clickhouse: Option<&ClickHouse>) {
    let dir = TempDir::new(&format!("sdk-{}", sdk.lib()));
    let token = format!("phc_{}_{}", sdk.lib().replace('-', "_"), uuid::Uuid::new_v4().simple());
    let extra = match clickhouse {
        Some(ch) => format!(
            "[warehouse]\nbackend = \"clickhouse\"\nurls = [\"{}\"]\ndatabase = \"sdk_{}\"\n",
            ch.url,
            uuid::Uuid::new_v4().simple()
        ),
        None => String::new(),
    };
    let config = write_config(dir.path(), &[(7, &token)], &extra);
    let started = std::time::SystemTime::now();
    let data_dir = dir.path().join("data");
    let server = Server::start(&config, &data_dir);
    let run_name =
        format!("{}-{}{}", sdk.lib(), if gzip { "gzip" } else { "plain" }, if historical { "-hist" } else { "" });
    let run = drive(sdk, &server, &token, &run_name, gzip, historical, 500);

    // Every request the SDK made was accepted, and the bulk events went in several batches.
    let metrics = parse_metrics(&Http::new(server.addr).get("/metrics").expect("GET /metrics").text());
    let mut batch_requests = 0.0;
    for (name, value) in &metrics {
        if let Some(labels) = name.strip_prefix("hogpipe_capture_requests_received_total") {
            assert!(
                labels.contains("status=\"200\""),
                "capture refused SDK requests: {name} {value}\n{}",
                server.output()
            );
            if labels.contains("endpoint=\"batch\"") {
                batch_requests += value;
            }
        }
    }
    assert!(batch_requests >= 5.0, "500 events should take at least 5 /batch requests, saw {batch_requests}");
    let received = metrics.get("hogpipe_capture_bytes_received_total").copied().unwrap_or(0.0);
    server.stop();

    let events = read_log(&data_dir);
    // On the wire: compressed bodies are much smaller than the event text they carry (the bulk
    // events are repetitive); plain bodies are larger.
    let data_bytes = events.iter().map(|e| e.data.len()).sum::<usize>() as f64;
    if gzip {
        assert!(
            received < data_bytes / 2.0,
            "gzip is on but {received} body bytes carried {data_bytes} bytes of events"
        );
    } else {
        assert!(received > data_bytes, "gzip is off but {received} body bytes carried {data_bytes} bytes of events");
    }
    let index = by_uuid(&events);
    assert_eq!(events.len(), run.sent.len(), "the log holds {} events, the SDK sent {}", events.len(), run.sent.len());
    let mut seen = HashSet::new();
    for sent in &run.sent {
        assert!(seen.insert(sent.uuid.as_str()), "the driver reported uuid {} twice", sent.uuid);
        let found = index.get(sent.uuid.as_str()).map_or(0, Vec::len);
        assert_eq!(found, 1, "event {} ({}) is in the log {found} times", sent.uuid, sent.event);
        let record = index[sent.uuid.as_str()][0];
        let what = format!("{} event {:?} {}", sdk.lib(), sent.event, sent.uuid);
        assert_eq!(record.token, token, "{what}");
        assert_eq!(record.distinct_id, sent.distinct_id, "{what}");
        assert_eq!(record.historical_migration, historical, "{what}");
        assert_eq!(record.ip, "127.0.0.1", "{what}");
        assert!(record.sent_at.is_some(), "{what}: the SDK sends sent_at, the record has none");
        assert!(uuid::Uuid::parse_str(&record.uuid).is_ok(), "{what}: bad uuid");
        let data = record.data_json().unwrap_or_else(|e| panic!("{what}: data is not JSON ({e}): {}", record.data));
        assert_eq!(data["event"], sent.event.as_str(), "{what}");
        assert_eq!(data["uuid"], sent.uuid.as_str(), "{what}");
        for (key, value) in &sent.top {
            assert_eq!(&data[key], value, "{what}: top-level {key:?} changed");
        }
        let props =
            data["properties"].as_object().unwrap_or_else(|| panic!("{what}: no properties in {}", record.data));
        for (key, value) in &sent.properties {
            assert_eq!(props.get(key), Some(value), "{what}: property {key:?} changed");
        }
        for key in props.keys() {
            assert!(
                sent.properties.contains_key(key) || key.starts_with('$'),
                "{what}: property {key:?} appeared that the script did not send"
            );
        }
        assert_eq!(props.get("$lib"), Some(&json!(sdk.lib())), "{what}");
        assert_eq!(props.get("$lib_version"), Some(&json!(run.version)), "{what}");
    }
    check_warehouse(&config, &data_dir, &run, started);
}

/// `value` with every number as a double.
fn as_doubles(value: &Value) -> Value {
    match value {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(items) => Value::Array(items.iter().map(as_doubles).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), as_doubles(v))).collect()),
        other => other.clone(),
    }
}

/// Every sent event is in the warehouse's `events` once, with its fields.
fn check_warehouse(config: &std::path::Path, data_dir: &std::path::Path, run: &Run, started: std::time::SystemTime) {
    let rows = query(
        config,
        data_dir,
        "SELECT toString(uuid), event, distinct_id, toString(team_id), properties, toUnixTimestamp(timestamp) \
         FROM events FINAL",
    );
    let results = rows["results"].as_array().expect("rows");
    assert_eq!(
        results.len(),
        run.sent.len(),
        "the warehouse holds {} events, the SDK sent {}",
        results.len(),
        run.sent.len()
    );
    let by: std::collections::HashMap<&str, &Value> =
        results.iter().map(|r| (r[0].as_str().expect("uuid text"), r)).collect();
    let since = started.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - 5;
    for sent in &run.sent {
        let r = by.get(sent.uuid.as_str()).unwrap_or_else(|| panic!("event {} is not in the warehouse", sent.uuid));
        assert_eq!(r[1], sent.event.as_str(), "{}", sent.uuid);
        assert_eq!(r[2], sent.distinct_id.as_str(), "{}", sent.uuid);
        assert_eq!(r[3], "7", "{}", sent.uuid);
        let props: Value = serde_json::from_str(r[4].as_str().expect("properties text")).expect("properties JSON");
        for (key, value) in &sent.properties {
            // Functions see numbers as doubles (as in PostHog's JavaScript VM): 2^53 + 1 arrives as 2^53.
            assert_eq!(
                props.get(key).map(as_doubles),
                Some(as_doubles(value)),
                "{}: property {key:?} in the warehouse",
                sent.uuid
            );
        }
        let ts = r[5].as_i64().or_else(|| r[5].as_str().and_then(|s| s.parse().ok())).expect("timestamp");
        assert!(ts >= since && ts <= since + 3600, "{}: timestamp {ts} is not the time of the run", sent.uuid);
    }
}

#[test]
fn python_sdk_plain() {
    sdk_round_trip(Sdk::Python, false, false);
}

#[test]
fn python_sdk_into_the_clickhouse_server() {
    let clickhouse = ClickHouse::start("sdk");
    sdk_round_trip_into(Sdk::Python, true, false, Some(&clickhouse));
}

#[test]
fn python_sdk_gzip() {
    sdk_round_trip(Sdk::Python, true, false);
}

#[test]
fn python_sdk_historical_migration() {
    sdk_round_trip(Sdk::Python, true, true);
}

#[test]
fn node_sdk_gzip() {
    sdk_round_trip(Sdk::Node, true, false);
}

#[test]
fn node_sdk_plain() {
    sdk_round_trip(Sdk::Node, false, false);
}

#[test]
fn node_sdk_historical_migration() {
    sdk_round_trip(Sdk::Node, false, true);
}

/// The real port answers health and metrics, and an unknown token is refused with 403 both to a
/// raw request and to the SDK, without anything reaching the log.
#[test]
fn unknown_token_health_and_metrics_on_the_real_port() {
    let dir = TempDir::new("health");
    let token = "phc_known_token_for_health_test";
    let config = write_config(dir.path(), &[(1, token)], "");
    let data_dir = dir.path().join("data");
    let server = Server::start(&config, &data_dir);
    let mut http = Http::new(server.addr);

    let r = http.get("/_liveness").expect("GET /_liveness");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http.get("/_readiness").expect("GET /_readiness");
    assert_eq!((r.status, r.text().as_str()), (200, "ready"));

    let unknown = br#"{"api_key": "phc_nobody_has_this_token", "batch": [{"event": "e", "distinct_id": "d"}]}"#;
    let r = http.post_json("/batch/", unknown).expect("POST /batch/");
    assert_eq!(r.status, 403, "{}", r.text());
    let body: Value = serde_json::from_slice(&r.body).expect("error bodies are JSON");
    assert_eq!(body["code"], "unknown_token", "{body}");

    let known = format!(r#"{{"api_key": "{token}", "event": "kept", "distinct_id": "d"}}"#);
    let r = http.post_json("/e/", known.as_bytes()).expect("POST /e/");
    assert_eq!(r.status, 200, "{}", r.text());

    // The SDK sees the 403 as an error it does not retry.
    let mut command = Sdk::Python.command();
    command
        .env("HOGPIPE_HOST", server.url())
        .env("HOGPIPE_TOKEN", "phc_nobody_has_this_token")
        .env("HOGPIPE_RUN", "unknown")
        .env("HOGPIPE_BATCH", "0");
    let out = run_with_timeout(&mut command, HANG);
    assert!(!out.status.success(), "the SDK did not report the refusal:\n{}", out.stderr);
    assert!(out.stderr.contains("403"), "the SDK's error does not mention 403:\n{}", out.stderr);

    let r = http.get("/metrics").expect("GET /metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").is_some_and(|v| v.starts_with("text/plain")), "{:?}", r.headers);
    let metrics = parse_metrics(&r.text());
    assert_eq!(
        metrics.get("hogpipe_capture_requests_received_total{endpoint=\"e\",status=\"200\"}"),
        Some(&1.0),
        "{}",
        r.text()
    );
    assert!(
        metrics
            .get("hogpipe_capture_requests_received_total{endpoint=\"batch\",status=\"403\"}")
            .is_some_and(|n| *n >= 2.0),
        "{}",
        r.text()
    );
    assert_eq!(metrics.get("hogpipe_capture_events_accepted_total"), Some(&1.0), "{}", r.text());
    drop(http);
    server.stop();

    let events = read_log(&data_dir);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].token.as_str(), events[0].distinct_id.as_str()), (token, "d"));
}
