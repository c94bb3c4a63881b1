//! The ClickHouse server backend against Debian's clickhouse-server (18.16) on loopback: schema,
//! writer, idempotence by uuid, restart, and a two-shard `Distributed` cluster.

mod common;

use std::sync::Arc;

use common::{events, Server};
use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::EventSink;
use hogpipe_warehouse::schema::Dialect;
use hogpipe_warehouse::writer::EventWriter;
use hogpipe_warehouse::{Warehouse, WarehouseConfig};

fn config(urls: Vec<String>) -> WarehouseConfig {
    WarehouseConfig { backend: "clickhouse".into(), urls, ..WarehouseConfig::default() }
}

fn open(config: &WarehouseConfig) -> Arc<Warehouse> {
    let dir = tempfile::tempdir().unwrap();
    Warehouse::open(config, dir.path()).expect("open").expect("a warehouse")
}

fn count(w: &Warehouse, sql: &str) -> u64 {
    w.query(sql).expect(sql).scalar_u64().unwrap_or_else(|| panic!("{sql}: no count"))
}

#[test]
fn events_land_with_every_field_and_duplicates_count_once() {
    let server = Server::start();
    let w = open(&config(vec![server.url.clone()]));
    assert_eq!(w.dialect(), Dialect::Legacy, "Debian's server is 18.16: {}", w.version());
    let writer = EventWriter::new(w.clone(), 1000).unwrap();
    let evs = events(7, 2500);
    let refs: Vec<&Event> = evs.iter().collect();
    writer.write(&refs).unwrap();
    // Re-delivery of the first 300 (a replay after a crash).
    writer.write(&refs[..300]).unwrap();
    writer.flush().unwrap();
    assert_eq!(count(&w, "SELECT count() FROM events FINAL WHERE team_id = 7"), 2500);
    assert_eq!(count(&w, "SELECT uniqExact(uuid) FROM events WHERE team_id = 7"), 2500);

    let e = &evs[4];
    let time = common::check_round_trip(&w, e, "toString(timestamp)");
    // 18.16 stores whole seconds.
    assert_eq!(time, e.timestamp[..19].replace('T', " "));
    // Properties are readable with the old server's JSON functions.
    assert_eq!(
        count(&w, "SELECT count() FROM events FINAL WHERE team_id = 7 AND visitParamExtractString(properties, '$browser') = 'Chrome'"),
        834
    );
}

#[test]
fn restart_keeps_the_data_and_does_not_migrate_twice() {
    let server = Server::start();
    let cfg = config(vec![server.url.clone()]);
    {
        let w = open(&cfg);
        let writer = EventWriter::new(w.clone(), 100_000).unwrap();
        let evs = events(3, 100);
        writer.write(&evs.iter().collect::<Vec<_>>()).unwrap();
        writer.flush().unwrap();
    }
    let w = open(&cfg);
    assert_eq!(count(&w, "SELECT count() FROM events FINAL WHERE team_id = 3"), 100);
    assert_eq!(
        count(&w, "SELECT count() FROM hogpipe_migrations"),
        u64::from(hogpipe_warehouse::schema::SCHEMA_VERSION)
    );
    // Hot properties are materialized on 18.16 too.
    assert_eq!(
        count(&w, "SELECT count() FROM events FINAL WHERE team_id = 3 AND `mat_$browser` = visitParamExtractString(properties, '$browser') AND `mat_$browser` != ''"),
        100
    );
}

#[test]
fn unflushed_rows_wait_for_the_flush_and_a_failed_insert_keeps_them() {
    let server = Server::start();
    let w = open(&config(vec![server.url.clone()]));
    let writer = EventWriter::new(w.clone(), 100_000).unwrap();
    let evs = events(11, 50);
    writer.write(&evs.iter().collect::<Vec<_>>()).unwrap();
    assert_eq!(count(&w, "SELECT count() FROM events WHERE team_id = 11"), 0, "nothing before the flush");
    // The server goes away: the flush fails, and so does the next one (the rows are still there).
    server.stop();
    let err = writer.flush().unwrap_err();
    assert!(err.message.contains("unavailable"), "{err}");
    assert!(writer.flush().is_err());
    // Back up (same files): the next flush stores every row, once.
    server.restart();
    writer.flush().unwrap();
    assert_eq!(count(&w, "SELECT count() FROM events FINAL WHERE team_id = 11"), 50);
    writer.flush().unwrap();
    assert_eq!(count(&w, "SELECT count() FROM events WHERE team_id = 11"), 50);
}

#[test]
fn two_shard_cluster_splits_rows_and_queries_see_the_totals() {
    let (tcp1, tcp2) = (common::free_port(), common::free_port());
    let a = Server::start_with(tcp1, &[tcp1, tcp2]);
    let b = Server::start_with(tcp2, &[tcp1, tcp2]);
    let mut cfg = config(vec![a.url.clone(), b.url.clone()]);
    cfg.cluster = Some("hogpipe".into());
    let w = open(&cfg);
    let writer = EventWriter::new(w.clone(), 100_000).unwrap();
    let evs = events(5, 3000);
    writer.write(&evs.iter().collect::<Vec<_>>()).unwrap();
    writer.flush().unwrap();
    // Distributed inserts are forwarded asynchronously by 18.16; wait until both shards have them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let total = count(&w, "SELECT count() FROM events WHERE team_id = 5");
        if total == 3000 || std::time::Instant::now() > deadline {
            assert_eq!(total, 3000);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let local = |url: &str| -> u64 {
        let c = config(vec![url.to_string()]);
        let node = open(&c);
        count(&node, "SELECT count() FROM events_local WHERE team_id = 5")
    };
    let (na, nb) = (local(&a.url), local(&b.url));
    assert_eq!(na + nb, 3000);
    assert!(na > 500 && nb > 500, "rows are split across shards: {na} / {nb}");
    assert_eq!(count(&w, "SELECT uniqExact(distinct_id) FROM events WHERE team_id = 5"), 17);
    // The materialized property reads the same through the Distributed table.
    assert_eq!(count(&w, "SELECT count() FROM events WHERE team_id = 5 AND `mat_$browser` = 'Chrome'"), 1000);
}

#[test]
fn persons_merge_on_identify_and_alias() {
    let server = Server::start();
    let w = open(&config(vec![server.url.clone()]));
    common::check_persons(&w, 41);
}
