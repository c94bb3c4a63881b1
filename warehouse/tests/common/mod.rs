//! Test helpers: real ClickHouse servers started by `scripts/clickhouse.sh`, chDB installed by
//! `scripts/install-chdb.sh`, and generated events.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use hogpipe_dataflow::event::Event;
use serde_json::{json, Map};

pub fn repo_root() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A ClickHouse server in a temp dir, stopped on drop.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub tcp_port: u16,
    http_port: u16,
    shard_ports: Vec<u16>,
}

impl Server {
    /// One server; `shard_ports` fills its `hogpipe` cluster (TCP ports of every shard).
    pub fn start_with(tcp_port: u16, shard_ports: &[u16]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let http = free_port();
        let url = launch(dir.path(), http, tcp_port, shard_ports);
        Server { dir, url, tcp_port, http_port: http, shard_ports: shard_ports.to_vec() }
    }

    /// Stops the server and waits until it has exited.
    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/clickhouse.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }

    /// Starts the stopped server again, with the same files and ports.
    pub fn restart(&self) {
        let url = launch(self.dir.path(), self.http_port, self.tcp_port, &self.shard_ports);
        assert_eq!(url, self.url);
    }

    pub fn start() -> Server {
        let tcp = free_port();
        Server::start_with(tcp, &[tcp])
    }
}

fn launch(dir: &Path, http: u16, tcp_port: u16, shard_ports: &[u16]) -> String {
    {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("scripts/clickhouse.sh"))
            .arg("start")
            .arg(dir)
            .arg(http.to_string())
            .arg(tcp_port.to_string());
        for p in shard_ports {
            cmd.arg(p.to_string());
        }
        let out = cmd.output().expect("run scripts/clickhouse.sh");
        assert!(
            out.status.success(),
            "scripts/clickhouse.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The chDB library, installed (idempotently) by the project's script.
pub fn chdb_library() -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/install-chdb.sh"))
        .output()
        .expect("run scripts/install-chdb.sh");
    assert!(out.status.success(), "scripts/install-chdb.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default())
}

/// `n` events for `team`, with distinct uuids, names, users and properties, one second apart.
pub fn events(team: u64, n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut properties = Map::new();
            properties.insert("$browser".into(), json!(["Chrome", "Firefox", "Safari"][i % 3]));
            properties.insert("amount".into(), json!(i as f64 * 1.5));
            properties.insert("nested".into(), json!({"k": i, "quote": "it's \"q\" \\ é"}));
            Event {
                uuid: format!("0190a000-0000-7000-8000-{:012x}", team * 1_000_000 + i as u64),
                team_id: team,
                event: ["$pageview", "signup", "purchase"][i % 3].to_string(),
                distinct_id: format!("user-{}", i % 17),
                properties,
                timestamp: format!("2026-11-2{}T10:{:02}:{:02}.{:03}Z", 1 + i % 3, (i / 60) % 60, i % 60, i % 1000),
                elements_chain: if i % 5 == 0 { "a:href=\"/x\"".into() } else { String::new() },
                ip: "127.0.0.1".into(),
            }
        })
        .collect()
}

fn ev(team: u64, n: usize, event: &str, distinct_id: &str, properties: serde_json::Value) -> Event {
    Event {
        uuid: format!("0190b000-0000-7000-8000-{:012x}", team * 1000 + n as u64),
        team_id: team,
        event: event.into(),
        distinct_id: distinct_id.into(),
        properties: properties.as_object().cloned().unwrap_or_default(),
        timestamp: format!("2026-11-25T10:00:{:02}.000Z", n),
        elements_chain: String::new(),
        ip: String::new(),
    }
}

fn rows(w: &hogpipe_warehouse::Warehouse, sql: &str) -> Vec<Vec<serde_json::Value>> {
    w.query(sql).unwrap_or_else(|e| panic!("{sql}: {e}")).results
}

/// Identify and alias merges, `$set`/`$set_once`/`$unset`, person-on-events, and a restart of the
/// writer that reloads the persons.
pub fn check_persons(w: &std::sync::Arc<hogpipe_warehouse::Warehouse>, team: u64) {
    use hogpipe_dataflow::sink::EventSink;
    use hogpipe_warehouse::writer::EventWriter;
    let batch1 = [
        ev(team, 1, "$pageview", "anon-1", json!({"$set_once": {"first_url": "/a"}})),
        ev(team, 2, "$identify", "user-1", json!({"$anon_distinct_id": "anon-1", "$set": {"email": "u1@example.com"}})),
        ev(team, 3, "$pageview", "anon-2", json!({"$set": {"plan": "free", "email": "other@example.com"}})),
        ev(team, 4, "$pageview", "loner", json!({"$set": {"x": 1, "y": 2}})),
        ev(team, 5, "$pageview", "loner", json!({"$unset": ["y"], "$set_once": {"x": 5}})),
    ];
    {
        let writer = EventWriter::new(w.clone(), 100_000).unwrap();
        writer.write(&batch1.iter().collect::<Vec<_>>()).unwrap();
        writer.flush().unwrap();
    }
    // A new writer (a restart) loads the persons and merges anon-2 into user-1's person.
    let batch2 = [
        ev(team, 6, "$identify", "user-1", json!({"$anon_distinct_id": "anon-2"})),
        ev(team, 7, "$create_alias", "user-1", json!({"alias": "user-1-email"})),
        ev(team, 8, "$pageview", "anon-2", json!({})),
    ];
    let writer = EventWriter::new(w.clone(), 100_000).unwrap();
    writer.write(&batch2.iter().collect::<Vec<_>>()).unwrap();
    writer.flush().unwrap();

    let pdi = rows(
        w,
        &format!("SELECT distinct_id, toString(person_id) FROM person_distinct_ids FINAL WHERE team_id = {team} AND is_deleted = 0 ORDER BY distinct_id"),
    );
    let ids: std::collections::HashMap<String, String> =
        pdi.iter().map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string())).collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    let p1 = &ids["user-1"];
    for d in ["anon-1", "anon-2", "user-1-email"] {
        assert_eq!(&ids[d], p1, "{d} belongs to user-1's person: {ids:?}");
    }
    assert_ne!(&ids["loner"], p1);
    let people = rows(
        w,
        &format!("SELECT toString(id), properties, is_identified FROM persons FINAL WHERE team_id = {team} AND is_deleted = 0 ORDER BY id"),
    );
    assert_eq!(people.len(), 2, "two persons left after the merge: {people:?}");
    let by_id: std::collections::HashMap<&str, &Vec<serde_json::Value>> =
        people.iter().map(|r| (r[0].as_str().unwrap(), r)).collect();
    let props = |id: &str| -> serde_json::Value { serde_json::from_str(by_id[id][1].as_str().unwrap()).unwrap() };
    // user-1's $set email wins over the merged person's; the merged person's plan is kept.
    assert_eq!(props(p1), json!({"first_url": "/a", "email": "u1@example.com", "plan": "free"}));
    assert_eq!(by_id[p1.as_str()][2].to_string().trim_matches('"'), "1");
    assert_eq!(props(&ids["loner"]), json!({"x": 1}));
    // Person-on-events: each event carries the person it had when ingested.
    let on_events = rows(
        w,
        &format!("SELECT distinct_id, event, toString(person_id), person_properties FROM events FINAL WHERE team_id = {team} ORDER BY timestamp"),
    );
    assert_eq!(on_events.len(), 8);
    assert_eq!(on_events[1][2].as_str().unwrap(), p1, "the $identify event is user-1's person");
    let identify_props: serde_json::Value = serde_json::from_str(on_events[1][3].as_str().unwrap()).unwrap();
    assert_eq!(identify_props, json!({"first_url": "/a", "email": "u1@example.com"}));
    assert_eq!(on_events[7][2].as_str().unwrap(), p1, "anon-2's later event is user-1's person");
}

/// The test binary's chDB warehouse (chDB keeps one data path per process, so every test of a
/// binary shares it and uses its own team id).
pub fn shared_chdb() -> std::sync::Arc<hogpipe_warehouse::Warehouse> {
    use hogpipe_warehouse::{Warehouse, WarehouseConfig};
    static W: std::sync::OnceLock<(tempfile::TempDir, std::sync::Arc<Warehouse>)> = std::sync::OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = WarehouseConfig { chdb_library: Some(chdb_library()), ..WarehouseConfig::default() };
        let w = Warehouse::open(&config, dir.path()).expect("open chDB").expect("a warehouse");
        (dir, w)
    })
    .1
    .clone()
}

/// Reads `e` back by uuid (with `time_sql` for the timestamp column) and checks every field
/// but the time, which it returns for the backend's own check.
pub fn check_round_trip(w: &hogpipe_warehouse::Warehouse, e: &Event, time_sql: &str) -> String {
    let rows = w
        .query(&format!(
            "SELECT toString(uuid), team_id, event, distinct_id, properties, {time_sql}, elements_chain \
             FROM events FINAL WHERE uuid = toUUID('{}')",
            e.uuid
        ))
        .expect("read the event back");
    assert_eq!(rows.results.len(), 1, "{rows:?}");
    let r = &rows.results[0];
    assert_eq!(r[0], e.uuid.as_str());
    assert_eq!(r[1].to_string().trim_matches('"'), e.team_id.to_string());
    assert_eq!(r[2], e.event.as_str());
    assert_eq!(r[3], e.distinct_id.as_str());
    let props: serde_json::Value = serde_json::from_str(r[4].as_str().expect("properties text")).expect("JSON");
    assert_eq!(props, serde_json::Value::Object(e.properties.clone()));
    assert_eq!(r[6], e.elements_chain.as_str());
    r[5].as_str().expect("time text").to_string()
}
