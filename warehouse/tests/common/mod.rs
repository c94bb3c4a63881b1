//! Test helpers: real ClickHouse servers started by `scripts/clickhouse.sh`, chDB installed by
//! `scripts/install-chdb.sh`, and generated events.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use hogpipe_dataflow::event::Event;
use serde_json::{json, Map};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
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
