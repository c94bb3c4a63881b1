//! The PostgreSQL sink against a real server: Debian's PostgreSQL started by
//! `scripts/postgres.sh`. `HOGPIPE_TEST_PG_URL` (set by `scripts/test.sh`) names a running server;
//! unset, the tests start their own through the script, and skip with a loud message only when
//! that is impossible. With the variable set they never skip. The restart test always runs its own
//! server, so restarting it disturbs nobody.

use std::path::PathBuf;
use std::process::Command;

use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::EventSink;
use hogpipe_destinations::sinks::{PostgresSink, PostgresSinkConfig};
use serde_json::{json, Value};

use super::{event, events, refs};

const URL_VAR: &str = "HOGPIPE_TEST_PG_URL";

fn script() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("../scripts/postgres.sh")
}

/// A server for one test.
struct Server {
    url: String,
    /// Set when this test started the server (stopped on drop).
    own: Option<tempfile::TempDir>,
}

impl Server {
    /// The server named by `HOGPIPE_TEST_PG_URL`, or one of our own.
    fn shared(test: &str) -> Option<Server> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => Some(Server { url, own: None }),
            _ => Server::own(test),
        }
    }

    /// A server of our own, started by the script in a temp dir.
    fn own(test: &str) -> Option<Server> {
        let dir = tempfile::tempdir().expect("tempdir");
        // The server may run as another user (`postgres` when we are root): let it in.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let output = Command::new("bash")
            .arg(script())
            .args(["start", "hogpipe_sinks"])
            .env("HOGPIPE_PG_DIR", dir.path().join("pg"))
            .env_remove("HOGPIPE_PG_PORT")
            .output()
            .expect("run scripts/postgres.sh");
        if !output.status.success() {
            let why = String::from_utf8_lossy(&output.stderr);
            if std::env::var_os(URL_VAR).is_some() {
                panic!("{test}: scripts/postgres.sh could not start a server: {why}");
            }
            eprintln!(
                "\n!!!!!!!!!!\n!!! SKIPPED {test}: no PostgreSQL server: scripts/postgres.sh failed:\n{why}\n\
                 !!! scripts/test.sh installs PostgreSQL and never skips.\n!!!!!!!!!!\n"
            );
            return None;
        }
        let url = String::from_utf8_lossy(&output.stdout).trim().to_string();
        Some(Server { url, own: Some(dir) })
    }

    fn script(&self, command: &str) {
        let Some(dir) = &self.own else { panic!("only a server of our own can be told to {command}") };
        let output = Command::new("bash")
            .arg(script())
            .arg(command)
            .env("HOGPIPE_PG_DIR", dir.path().join("pg"))
            .env_remove("HOGPIPE_PG_PORT")
            .output()
            .expect("run scripts/postgres.sh");
        assert!(output.status.success(), "postgres.sh {command}: {}", String::from_utf8_lossy(&output.stderr));
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test server")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.own.is_some() {
            self.script("stop");
        }
    }
}

/// A table name no other test run uses.
fn unique_table(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("sink_{test}_{}_{nanos}", std::process::id())
}

/// The table's rows as events (with `timestamp` as epoch milliseconds, or null), by uuid.
fn rows(client: &mut postgres::Client, table: &str) -> Vec<(Value, Option<i64>)> {
    let sql = format!(
        "SELECT uuid::text, team_id, event, distinct_id, properties::text, \
         (extract(epoch FROM \"timestamp\") * 1000)::bigint, elements_chain, ip FROM \"{table}\" ORDER BY uuid"
    );
    client
        .query(&sql, &[])
        .expect("read the table")
        .iter()
        .map(|row| {
            let properties: String = row.get(4);
            let event = json!({
                "uuid": row.get::<_, String>(0),
                "team_id": row.get::<_, i64>(1),
                "event": row.get::<_, String>(2),
                "distinct_id": row.get::<_, String>(3),
                "properties": serde_json::from_str::<Value>(&properties).expect("properties are JSON"),
                "elements_chain": row.get::<_, String>(6),
                "ip": row.get::<_, String>(7),
            });
            (event, row.get::<_, Option<i64>>(5))
        })
        .collect()
}

/// What the table should hold for `events` (sorted by uuid, one per uuid).
fn expected(events: &[Event]) -> Vec<(Value, Option<i64>)> {
    let mut out: Vec<(Value, Option<i64>)> = events
        .iter()
        .map(|e| {
            let ms = chrono::DateTime::parse_from_rfc3339(&e.timestamp).ok().map(|t| t.timestamp_millis());
            let mut v = serde_json::to_value(e).expect("encode");
            if let Some(map) = v.as_object_mut() {
                map.remove("timestamp");
            }
            (v, ms)
        })
        .collect();
    out.sort_by(|a, b| a.0["uuid"].as_str().cmp(&b.0["uuid"].as_str()));
    out.dedup_by(|a, b| a.0["uuid"] == b.0["uuid"]);
    out
}

#[test]
fn round_trip_with_duplicates_written_once() {
    let Some(server) = Server::shared("round_trip_with_duplicates_written_once") else { return };
    let table = unique_table("round_trip");
    let sink = PostgresSink::new(PostgresSinkConfig { table: table.clone(), ..PostgresSinkConfig::new(&server.url) })
        .expect("create the sink");
    let first = events(20, 0, 50);
    // A batch holding the same event twice, then the batch again (as after a failed commit).
    let mut batch = refs(&first);
    batch.push(&first[7]);
    sink.write(&batch).expect("write the first batch");
    sink.write(&batch).expect("write it again");
    let second = events(20, 40, 120);
    sink.write(&refs(&second)).expect("write an overlapping batch");

    let mut client = server.client();
    let mut all = first.clone();
    all.extend(second);
    assert_eq!(rows(&mut client, &table), expected(&all));
    client.batch_execute(&format!("DROP TABLE \"{table}\"")).expect("drop the table");
}

#[test]
fn odd_values_are_stored_not_refused() {
    let Some(server) = Server::shared("odd_values_are_stored_not_refused") else { return };
    let table = unique_table("odd");
    let sink = PostgresSink::new(PostgresSinkConfig { table: table.clone(), ..PostgresSinkConfig::new(&server.url) })
        .expect("create the sink");
    let mut odd = event(21, 1);
    odd.timestamp = "yesterday-ish".into();
    odd.distinct_id = "nul\u{0}inside".into();
    odd.properties.insert("k\u{0}".into(), json!(["v\u{0}", "\\u0000 is text"]));
    sink.write(&[&odd]).expect("write");
    let mut client = server.client();
    let got = rows(&mut client, &table);
    assert_eq!(got.len(), 1);
    let (row, ms) = &got[0];
    assert_eq!(*ms, None, "an unreadable timestamp is NULL");
    assert_eq!(row["distinct_id"], "nul\u{FFFD}inside");
    assert_eq!(row["properties"]["k\u{FFFD}"], json!(["v\u{FFFD}", "\\u0000 is text"]));

    let mut bad = event(21, 2);
    bad.uuid = "not-a-uuid".into();
    let err = sink.write(&[&bad]).expect_err("a uuid that is not a UUID");
    assert!(err.to_string().contains("not-a-uuid"), "{err}");
    client.batch_execute(&format!("DROP TABLE \"{table}\"")).expect("drop the table");
}

#[test]
fn reconnects_after_the_server_restarts() {
    let Some(server) = Server::own("reconnects_after_the_server_restarts") else { return };
    let sink = PostgresSink::new(PostgresSinkConfig::new(&server.url)).expect("create the sink");
    let before = events(22, 0, 30);
    sink.write(&refs(&before)).expect("write before the restart");

    server.script("restart");
    let after = events(22, 25, 60);
    sink.write(&refs(&after)).expect("the first write after the restart succeeds on a new connection");

    let mut client = server.client();
    let mut all = before;
    all.extend(after);
    assert_eq!(rows(&mut client, "events"), expected(&all));
}

#[test]
fn an_unreachable_server_fails_the_write_without_showing_the_password() {
    // Nothing listens on port 1.
    let config = PostgresSinkConfig {
        connect_timeout_secs: 5,
        ..PostgresSinkConfig::new("postgres://writer:s3cret-pw@127.0.0.1:1/analytics")
    };
    let sink = PostgresSink::new(config).expect("create the sink");
    let err = sink.write(&refs(&events(23, 0, 2))).expect_err("no server");
    let text = err.to_string();
    assert!(text.contains("writer@127.0.0.1:1/analytics") && text.contains("events"), "{text}");
    assert!(text.contains("connecting"), "{text}");
    assert!(!text.contains("s3cret-pw"), "{text}");
}

#[test]
fn bad_table_names_and_urls_are_rejected() {
    let config =
        PostgresSinkConfig { table: "events; DROP TABLE x".into(), ..PostgresSinkConfig::new("postgres://a@b/c") };
    let err = PostgresSink::new(config).expect_err("not an identifier");
    assert!(err.to_string().contains("events; DROP TABLE x"), "{err}");
    let err = PostgresSink::new(PostgresSinkConfig::new("postgres://a@b:notaport/c")).expect_err("bad port");
    assert!(err.to_string().contains("URL"), "{err}");
}
