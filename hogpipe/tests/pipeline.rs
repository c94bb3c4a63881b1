//! `hogpipe serve` with functions from the config: captured events go through the dataflow's Hog
//! transformations into the events file; SIGHUP reloads changed functions; a `kill -9` mid-stream
//! loses no acknowledged event (at-least-once after restart).

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{write_config, Http, Server, TempDir, HANG};
use serde_json::{json, Value};

const TOKEN: &str = "phc_pipeline_test";

fn config_text(version: u32) -> String {
    format!(
        r#"
[dataflow]
workers = 2
batch_size = 64
events_file = "out/events.jsonl"
invocations_file = "out/invocations.jsonl"

[[functions]]
id = "tag"
project = 1
type = "transformation"
file = "tag.hog"
order = 1

[[functions]]
id = "drop-bots"
project = 1
type = "transformation"
hog = "if (event.properties.bot) {{ return null }}\nreturn event"
order = 2

[[functions]]
id = "hook"
project = 1
type = "destination"
hog = "return null"
filter = "event == 'purchase'"
inputs = {{ url = "https://example.com/v{version}" }}
"#
    )
}

fn write_all(dir: &Path, version: u32) -> std::path::PathBuf {
    std::fs::write(dir.join("tag.hog"), format!("let e := event\ne.properties.version := {version}\nreturn e\n"))
        .unwrap();
    write_config(dir, &[(1, TOKEN)], &config_text(version))
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn batch(from: usize, n: usize) -> Vec<u8> {
    let events: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({
                "event": if i % 4 == 0 { "purchase" } else { "$pageview" },
                "distinct_id": format!("u{}", i % 13),
                "uuid": format!("00000000-0000-4000-8000-{i:012}"),
                "properties": {"i": i, "bot": i % 10 == 9}
            })
        })
        .collect();
    json!({"api_key": TOKEN, "batch": events}).to_string().into_bytes()
}

fn index(e: &Value) -> u64 {
    e["properties"]["i"].as_u64().unwrap()
}

#[test]
fn functions_from_config_run_and_reload_on_sighup() {
    let dir = TempDir::new("pipeline");
    let config = write_all(dir.path(), 1);
    let data = dir.path().join("data");
    let server = Server::start(&config, &data);
    let out = data.join("out/events.jsonl");
    let mut http = Http::new(server.addr);
    assert_eq!(http.post_json("/batch", &batch(0, 100)).unwrap().status, 200);
    wait_until("the first 90 events", || lines(&out).len() >= 90);

    // Change the transformation and reload.
    write_all(dir.path(), 2);
    // SAFETY: kill(2) on our own live child.
    assert_eq!(unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) }, 0);
    wait_until("the reload", || server.output().contains("reloaded 3 functions"));
    // Each worker logs the version it switches to for each of its partitions (8 in all).
    wait_until("every partition on version 2", || server.output().matches("version=2").count() >= 8);
    assert_eq!(http.post_json("/batch", &batch(100, 100)).unwrap().status, 200);
    wait_until("all 180 events", || lines(&out).len() >= 180);
    server.stop();

    let events = lines(&out);
    assert_eq!(events.len(), 180, "bots dropped, nothing duplicated");
    for e in &events {
        let i = index(e);
        assert_ne!(i % 10, 9, "bot event {i} was not dropped");
        let version = if i < 100 { 1 } else { 2 };
        assert_eq!(e["properties"]["version"], json!(version), "event {i}");
        assert_eq!(e["team_id"], 1);
    }
    let invocations = lines(&data.join("out/invocations.jsonl"));
    assert_eq!(invocations.len(), 50, "purchases routed to the destination");
    assert!(invocations.iter().all(|inv| inv[0] == "hook" && inv[1]["event"] == "purchase"));
}

#[test]
fn a_bad_reload_keeps_the_running_functions() {
    let dir = TempDir::new("pipeline-bad-reload");
    let config = write_all(dir.path(), 1);
    let data = dir.path().join("data");
    let server = Server::start(&config, &data);
    std::fs::write(dir.path().join("tag.hog"), "let e := event\ne.properties.version := \nreturn e\n").unwrap();
    // SAFETY: kill(2) on our own live child.
    assert_eq!(unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) }, 0);
    wait_until("the failed reload", || server.output().contains("failed, keeping what runs"));
    assert!(server.output().contains("tag.hog:3:8"), "the error says where: {}", server.output());
    let mut http = Http::new(server.addr);
    assert_eq!(http.post_json("/batch", &batch(0, 8)).unwrap().status, 200);
    let out = data.join("out/events.jsonl");
    wait_until("the events", || lines(&out).len() >= 7);
    server.stop();
    assert!(lines(&out).iter().all(|e| e["properties"]["version"] == json!(1)));
}

#[test]
fn kill_mid_stream_then_restart_loses_nothing_acknowledged() {
    let dir = TempDir::new("pipeline-crash");
    let config = write_all(dir.path(), 1);
    let data = dir.path().join("data");
    let out = data.join("out/events.jsonl");
    let mut acknowledged: HashSet<u64> = HashSet::new();
    let mut next = 0;
    for round in 0..2 {
        let mut server = Server::start(&config, &data);
        let mut http = Http::new(server.addr);
        for _ in 0..30 {
            if let Ok(r) = http.post_json("/batch", &batch(next, 50)) {
                if r.status == 200 {
                    acknowledged.extend((next..next + 50).map(|i| i as u64));
                }
            }
            next += 50;
        }
        if round == 0 {
            server.kill();
        } else {
            wait_until("the pipeline to catch up", || {
                let seen: HashSet<u64> = lines(&out).iter().map(index).collect();
                acknowledged.iter().filter(|i| *i % 10 != 9).all(|i| seen.contains(i))
            });
            server.stop();
        }
    }
    let events = lines(&out);
    let mut count: HashMap<u64, usize> = HashMap::new();
    for e in &events {
        *count.entry(index(e)).or_default() += 1;
    }
    for i in acknowledged.iter().filter(|i| *i % 10 != 9) {
        assert!(count.contains_key(i), "acknowledged event {i} never reached the sink");
    }
    // The sink is at-least-once: only what the killed server processed after its last commit
    // (at most 200 ms of work) is processed again, once, after the restart.
    for (i, n) in &count {
        assert!(*n <= 2, "event {i} written {n} times");
        assert!(*n == 1 || *i < 1500, "event {i} of the second run was replayed");
    }
}
