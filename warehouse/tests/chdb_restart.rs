//! chDB keeps its data in the data dir: closing and opening the warehouse again finds it.
//! (A file of its own: chDB allows one storage path per process.)

mod common;

use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::EventSink;
use hogpipe_warehouse::writer::EventWriter;
use hogpipe_warehouse::{Warehouse, WarehouseConfig};

#[test]
fn data_survives_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let config = WarehouseConfig { chdb_library: Some(common::chdb_library()), ..WarehouseConfig::default() };
    {
        let w = Warehouse::open(&config, dir.path()).unwrap().unwrap();
        let writer = EventWriter::new(w.clone(), 100_000).unwrap();
        let evs = common::events(4, 300);
        writer.write(&evs.iter().collect::<Vec<&Event>>()).unwrap();
        writer.flush().unwrap();
    }
    assert!(dir.path().join("warehouse").is_dir());
    let w = Warehouse::open(&config, dir.path()).unwrap().unwrap();
    let n = w.query("SELECT count() FROM events FINAL WHERE team_id = 4").unwrap().scalar_u64();
    assert_eq!(n, Some(300));
    let m = w.query("SELECT count() FROM hogpipe_migrations").unwrap().scalar_u64();
    assert_eq!(m, Some(u64::from(hogpipe_warehouse::schema::SCHEMA_VERSION)), "migrations applied once");
}
