//! The embedded backend: chDB (ClickHouse 26.x in-process), installed by scripts/install-chdb.sh.
//! chDB keeps one storage path per process, so every test here shares one warehouse and uses its
//! own team id.

mod common;

use std::sync::Arc;

use common::events;
use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::EventSink;
use hogpipe_warehouse::schema::Dialect;
use hogpipe_warehouse::writer::EventWriter;
use hogpipe_warehouse::Warehouse;
use serde_json::json;

fn warehouse() -> Arc<Warehouse> {
    common::shared_chdb()
}

fn count(w: &Warehouse, sql: &str) -> u64 {
    w.query(sql).expect(sql).scalar_u64().unwrap_or_else(|| panic!("{sql}: no count"))
}

#[test]
fn events_land_with_every_field_and_duplicates_count_once() {
    let w = warehouse();
    assert_eq!(w.dialect(), Dialect::Modern, "chDB is ClickHouse {}", w.version());
    let writer = EventWriter::new(w.clone(), 1000).unwrap();
    let evs = events(21, 2500);
    let refs: Vec<&Event> = evs.iter().collect();
    writer.write(&refs).unwrap();
    writer.write(&refs[100..400]).unwrap();
    writer.flush().unwrap();
    assert_eq!(count(&w, "SELECT count() FROM events FINAL WHERE team_id = 21"), 2500);

    let e = &evs[7];
    let time = common::check_round_trip(&w, e, "formatDateTime(timestamp, '%Y-%m-%dT%H:%i:%S.%fZ')");
    // Microseconds kept: the event's milliseconds then three zeros.
    assert_eq!(time, format!("{}000Z", &e.timestamp[..23]));
    assert_eq!(
        count(&w, "SELECT count() FROM events FINAL WHERE team_id = 21 AND JSONExtractString(properties, '$browser') = 'Safari'"),
        833
    );
    // The same query text as on 18.16 works here too.
    assert_eq!(
        count(&w, "SELECT count() FROM events FINAL WHERE team_id = 21 AND visitParamExtractString(properties, '$browser') = 'Safari'"),
        833
    );
}

/// An insert of more than one 8 MiB piece (rows are handed to chDB in pieces cut at row ends)
/// stores every row whole, with the person and insert times filled in.
#[test]
fn a_large_insert_goes_in_pieces_and_every_row_is_whole() {
    let w = warehouse();
    let team = 24;
    let mut evs = events(team, 12_000);
    for (i, e) in evs.iter_mut().enumerate() {
        // ~1 KiB of properties per row, with text that needs escaping in JSON and multi-byte
        // characters: 12 MiB in all.
        e.properties.insert("blob".into(), json!(format!("{i}:\"q\" \\ é ✓ {}", "x".repeat(1000))));
    }
    let writer = EventWriter::new(w.clone(), 100_000).unwrap();
    writer.write(&evs.iter().collect::<Vec<_>>()).unwrap();
    writer.flush().unwrap();
    assert_eq!(count(&w, &format!("SELECT count() FROM events WHERE team_id = {team}")), 12_000);
    for i in [0, 8_191, 8_192, 11_999] {
        common::check_round_trip(&w, &evs[i], "toString(timestamp)");
    }
    // Person ids are the ones person_distinct_ids holds; insert times are now.
    let rows = w
        .query(&format!(
            "SELECT count(), countIf(e.person_id != p.person_id), countIf(abs(dateDiff('second', e.created_at, now())) > 600), \
                    countIf(abs(dateDiff('second', e._timestamp, now())) > 600) \
             FROM events AS e INNER JOIN (SELECT distinct_id, argMax(person_id, version) AS person_id \
                                          FROM person_distinct_ids WHERE team_id = {team} GROUP BY distinct_id) AS p \
             ON e.distinct_id = p.distinct_id WHERE e.team_id = {team}"
        ))
        .unwrap();
    let got: Vec<u64> =
        rows.results[0].iter().map(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()).unwrap()).collect();
    assert_eq!(got, [12_000, 0, 0, 0], "{rows:?}");
}

#[test]
fn migrations_are_recorded_once() {
    let w = warehouse();
    let version = u64::from(hogpipe_warehouse::schema::SCHEMA_VERSION);
    assert_eq!(count(&w, "SELECT count() FROM hogpipe_migrations"), version);
    assert_eq!(count(&w, "SELECT max(version) FROM hogpipe_migrations"), version);
    // Hot properties are materialized on insert, with the value the JSON gives.
    let writer = EventWriter::new(w.clone(), 10).unwrap();
    let evs = events(29, 6);
    writer.write(&evs.iter().collect::<Vec<_>>()).unwrap();
    writer.flush().unwrap();
    assert_eq!(
        count(&w, "SELECT count() FROM events WHERE team_id = 29 AND `mat_$browser` = visitParamExtractString(properties, '$browser') AND `mat_$browser` != ''"),
        6
    );
    // Event names are stored as LowCardinality and read back as the strings written.
    assert_eq!(
        count(&w, "SELECT count() FROM system.columns WHERE table = 'events' AND name = 'event' AND type = 'LowCardinality(String)'"),
        1
    );
    assert_eq!(count(&w, "SELECT count() FROM events WHERE team_id = 29 AND event = '$pageview'"), 2);
}

#[test]
fn a_bad_statement_is_a_clear_error_not_a_crash() {
    let w = warehouse();
    let err = w.query("SELECT nosuchcolumn FROM events").unwrap_err();
    assert!(err.to_string().contains("nosuchcolumn"), "{err}");
    // The connection is still usable.
    assert_eq!(count(&w, "SELECT 1"), 1);
}

#[test]
fn persons_merge_on_identify_and_alias() {
    common::check_persons(&warehouse(), 42);
}
