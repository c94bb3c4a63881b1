//! HogQL against real ClickHouse, embedded chDB (26.x) and Debian's server (18.16): ordinary
//! queries give exact answers, and hostile ones sent as team A are refused or see only team A.

mod common;

use std::sync::Arc;

use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::EventSink;
use hogpipe_warehouse::hogql::{translate, Context};
use hogpipe_warehouse::writer::EventWriter;
use hogpipe_warehouse::{Warehouse, WarehouseConfig};
use serde_json::{json, Value};

fn ev(team: u64, n: usize, event: &str, distinct_id: &str, properties: Value) -> Event {
    Event {
        uuid: format!("0190c000-0000-7000-8000-{:012x}", team * 1000 + n as u64),
        team_id: team,
        event: event.into(),
        distinct_id: distinct_id.into(),
        properties: properties.as_object().cloned().unwrap_or_default(),
        timestamp: format!("2026-11-25T10:00:{n:02}.000Z"),
        elements_chain: String::new(),
        ip: String::new(),
    }
}

/// Team A: five events of three users; team B: events whose markers (`b-user`, `secret`,
/// `Safari`) must never reach A; team C: 150 events for the row caps.
fn write_fixture(w: &Arc<Warehouse>, a: u64, b: u64, c: u64) {
    let mut evs = vec![
        ev(
            a,
            1,
            "$pageview",
            "a-user-1",
            json!({"$browser": "Chrome", "amount": 10, "$screen": {"width": 1024}, "$current url": "/x",
                   "quote": "it's"}),
        ),
        ev(a, 2, "$pageview", "a-user-1", json!({"$browser": "Firefox", "amount": 2.5})),
        ev(a, 3, "$pageview", "a-user-2", json!({"$browser": "Chrome"})),
        ev(
            a,
            4,
            "signup",
            "a-user-2",
            json!({"$browser": "Chrome", "plan": "pro", "$set": {"email": "a2@example.com"}}),
        ),
        ev(a, 5, "purchase", "a-user-3", json!({"amount": 7, "nullish": null})),
    ];
    for i in 0..6 {
        let event = if i % 2 == 0 { "secret" } else { "$pageview" };
        let props = json!({"$browser": "Safari", "amount": 1000, "$set": {"email": "b@example.com"}});
        evs.push(ev(b, i + 1, event, &format!("b-user-{}", i % 2), props));
    }
    evs.extend(common::events(c, 150));
    let writer = EventWriter::new(w.clone(), 100_000).expect("writer");
    writer.write(&evs.iter().collect::<Vec<_>>()).expect("write");
    writer.flush().expect("flush");
}

fn ctx(w: &Warehouse, team: u64) -> Context {
    Context { team_id: team, dialect: w.dialect(), ..Context::default() }
}

/// Translates and runs; `Err` when refused (by HogQL or by ClickHouse).
fn run(w: &Warehouse, ctx: &Context, q: &str) -> Result<hogpipe_warehouse::Rows, String> {
    let sql = translate(q, ctx).map_err(|e| format!("hogql: {e}"))?;
    w.query(&sql).map_err(|e| format!("clickhouse: {e}\n  sql: {sql}"))
}

fn rows(w: &Warehouse, ctx: &Context, q: &str) -> Vec<Vec<Value>> {
    run(w, ctx, q).unwrap_or_else(|e| panic!("{q}: {e}")).results
}

/// Integers arrive as numbers or (64-bit) strings depending on type; compare as text.
fn norm(v: &[Vec<Value>]) -> Vec<Vec<String>> {
    v.iter()
        .map(|r| {
            r.iter()
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

fn expect(w: &Warehouse, ctx: &Context, q: &str, want: &[&[&str]]) {
    let got = norm(&rows(w, ctx, q));
    let want: Vec<Vec<String>> = want.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect();
    assert_eq!(got, want, "{q} on ClickHouse {:?}", ctx.dialect);
}

fn ordinary_queries(w: &Warehouse, a: u64, c: u64) {
    let cx = ctx(w, a);
    let r = run(w, &cx, "SELECT event, count() FROM events GROUP BY event ORDER BY event").unwrap();
    assert_eq!(r.columns, ["event", "count()"]);
    assert_eq!(norm(&r.results), [["$pageview", "3"], ["purchase", "1"], ["signup", "1"]]);
    // Property access: missing keys and JSON null are NULL, numbers are text, nesting works.
    let r = run(w, &cx, "SELECT properties.$browser, properties.amount FROM events ORDER BY timestamp").unwrap();
    assert_eq!(r.columns, ["properties.$browser", "properties.amount"]);
    assert_eq!(
        norm(&r.results),
        [["Chrome", "10"], ["Firefox", "2.5"], ["Chrome", "null"], ["Chrome", "null"], ["null", "7"]]
    );
    expect(
        w,
        &cx,
        "SELECT properties.$browser AS b, count() AS n FROM events GROUP BY b ORDER BY b",
        &[&["Chrome", "3"], &["Firefox", "1"], &["null", "1"]],
    );
    expect(w, &cx, "SELECT sum(toFloat64OrNull(properties.amount)) FROM events", &[&["19.5"]]);
    expect(
        w,
        &cx,
        "SELECT sum(CAST(properties.amount AS Float64)) FROM events WHERE properties.amount IS NOT NULL",
        &[&["19.5"]],
    );
    expect(
        w,
        &cx,
        "SELECT properties.$screen.width, properties['$current url'], properties.`$current url`, properties.quote, \
         e.properties.nullish IS NULL FROM events AS e WHERE distinct_id = 'a-user-1' ORDER BY timestamp LIMIT 1",
        &[&["1024", "/x", "/x", "it's", "1"]],
    );
    expect(
        w,
        &cx,
        "SELECT properties.nullish, properties.nope FROM events WHERE event = 'purchase'",
        &[&["null", "null"]],
    );
    expect(w, &cx, "SELECT count() FROM events WHERE properties.$browser ILIKE 'chr%'", &[&["3"]]);
    expect(w, &cx, "SELECT count() FROM events WHERE properties.$browser NOT LIKE 'Chr%'", &[&["1"]]);
    // Person on events, persons, person_distinct_ids.
    expect(w, &cx, "SELECT person.properties.email FROM events WHERE event = 'signup'", &[&["a2@example.com"]]);
    expect(w, &cx, "SELECT properties.email FROM persons WHERE properties.email IS NOT NULL", &[&["a2@example.com"]]);
    expect(w, &cx, "SELECT count() FROM person_distinct_ids", &[&["3"]]);
    expect(
        w,
        &cx,
        "SELECT e.event, count() AS n FROM events e INNER JOIN person_distinct_ids AS p \
         ON e.distinct_id = p.distinct_id GROUP BY e.event ORDER BY e.event",
        &[&["$pageview", "3"], &["purchase", "1"], &["signup", "1"]],
    );
    expect(
        w,
        &cx,
        "SELECT count() FROM events AS e JOIN persons AS p ON e.person_id = p.id WHERE p.properties.email = 'a2@example.com'",
        &[&["2"]],
    );
    // ORDER BY, LIMIT, OFFSET, aggregates, CTEs, unions, subqueries.
    expect(w, &cx, "SELECT distinct_id FROM events ORDER BY timestamp DESC LIMIT 2", &[&["a-user-3"], &["a-user-2"]]);
    expect(w, &cx, "SELECT distinct_id FROM events ORDER BY timestamp LIMIT 1 OFFSET 1", &[&["a-user-1"]]);
    expect(w, &cx, "SELECT distinct_id FROM events ORDER BY timestamp LIMIT 2, 1", &[&["a-user-2"]]);
    expect(
        w,
        &cx,
        "SELECT countIf(event = '$pageview'), uniq(distinct_id), count(DISTINCT event) FROM events",
        &[&["3", "3", "3"]],
    );
    expect(
        w,
        &cx,
        "WITH pv AS (SELECT distinct_id FROM events WHERE event = '$pageview') SELECT count(DISTINCT distinct_id) FROM pv",
        &[&["2"]],
    );
    let mut u = norm(&rows(w, &cx, "SELECT event FROM events UNION DISTINCT SELECT event FROM events"));
    u.sort();
    assert_eq!(u, [["$pageview"], ["purchase"], ["signup"]]);
    expect(
        w,
        &cx,
        "SELECT count() FROM events WHERE distinct_id IN (SELECT distinct_id FROM events WHERE event = 'signup')",
        &[&["2"]],
    );
    expect(w, &cx, "SELECT (SELECT count() FROM events) * 2", &[&["10"]]);
    expect(
        w,
        &cx,
        "SELECT count() FROM events WHERE timestamp > toDateTime('2026-11-25 00:00:00') - INTERVAL 1 DAY \
         AND event IN ('$pageview', 'signup') AND NOT (distinct_id = 'a-user-3')",
        &[&["4"]],
    );
    expect(
        w,
        &cx,
        "SELECT arrayMap(x -> x * 2, [1, 2]), quantile(0.5)(toFloat64OrNull(properties.amount)), \
         CASE WHEN count() > 3 THEN 'many' ELSE 'few' END FROM events",
        &[&["[2,4]", "7", "many"]],
    );
    // Default limit and the cap.
    let cc = Context { max_limit: 120, ..ctx(w, c) };
    assert_eq!(rows(w, &cc, "SELECT uuid FROM events").len(), 100);
    assert_eq!(rows(w, &cc, "SELECT uuid FROM events LIMIT 500").len(), 120);
    assert_eq!(rows(w, &cc, "SELECT uuid FROM events UNION ALL SELECT uuid FROM events").len(), 100);
    assert_eq!(rows(w, &cc, "SELECT uuid FROM events LIMIT 7").len(), 7);
}

/// Sent as team A: each is refused, or answers exactly what team A alone would (`Some(rows)`).
fn hostile_queries(a: u64, b: u64) -> Vec<(String, Option<Vec<Vec<String>>>)> {
    let refused = None;
    let one = |v: &[&str]| Some(vec![v.iter().map(|s| s.to_string()).collect::<Vec<_>>()]);
    let five = one(&["5"]);
    let zero = one(&["0"]);
    vec![
        (format!("SELECT count() FROM events WHERE team_id = {b}"), zero.clone()),
        (format!("SELECT count() FROM events WHERE team_id = {a} OR team_id = {b}"), five.clone()),
        (format!("SELECT count() FROM events WHERE team_id IN ({a}, {b})"), five.clone()),
        ("SELECT count() FROM events WHERE event = 'nothing' OR 1=1".into(), five.clone()),
        (
            format!("SELECT count() FROM (SELECT distinct_id FROM events UNION ALL SELECT distinct_id FROM events WHERE team_id = {b})"),
            five.clone(),
        ),
        (format!("SELECT count() FROM (SELECT * FROM events WHERE team_id = {b})"), zero.clone()),
        (
            format!("SELECT count() FROM events WHERE distinct_id IN (SELECT distinct_id FROM events WHERE team_id = {b})"),
            zero.clone(),
        ),
        ("SELECT (SELECT count() FROM events)".into(), five.clone()),
        ("WITH x AS (SELECT * FROM events) SELECT count() FROM x".into(), five.clone()),
        ("WITH events AS (SELECT * FROM events) SELECT count() FROM events".into(), five.clone()),
        ("SELECT count() FROM events e JOIN persons p ON e.person_id = p.id".into(), five.clone()),
        ("SELECT count() FROM events e JOIN person_distinct_ids p ON e.distinct_id = p.distinct_id".into(), five.clone()),
        ("SELECT count() FROM events e LEFT JOIN person_distinct_ids p USING (distinct_id)".into(), five.clone()),
        ("SELECT count() FROM events x CROSS JOIN events y".into(), one(&["25"])),
        ("SELECT count() FROM person_distinct_ids".into(), one(&["3"])),
        ("SELECT count() FROM persons".into(), one(&["3"])),
        ("SELECT count() FROM live_aggregates".into(), zero.clone()),
        (format!("SELECT {b} AS team_id, count() AS n FROM events"), one(&[&b.to_string(), "5"])),
        ("SELECT count() FROM EVENTS".into(), five.clone()),
        ("select COUNT() from Events as persons".into(), five.clone()),
        ("SELECT count() FROM events -- ; DROP TABLE events".into(), five.clone()),
        ("SELECT count() FROM events /* UNION ALL SELECT * FROM system.tables */".into(), five.clone()),
        ("SELECT count() FROM events WHERE event = '\\\\' OR 1=1 --'".into(), five.clone()),
        (format!("SELECT count() FROM events WHERE event = 'x'' OR team_id = {b} --'"), zero.clone()),
        ("SELECT count() FROM events WHERE properties.`x') OR 1=1 --` IS NULL".into(), five.clone()),
        ("SELECT * FROM system.tables".into(), refused.clone()),
        ("SELECT * FROM SyStEm.TaBlEs".into(), refused.clone()),
        ("SELECT * FROM `system`.`tables`".into(), refused.clone()),
        ("SELECT * FROM /* */ system.tables".into(), refused.clone()),
        ("SELECT 1 -- comment\nFROM system.one".into(), refused.clone()),
        ("SELECT * FROM default.events".into(), refused.clone()),
        ("SELECT * FROM hogpipe.events".into(), refused.clone()),
        ("SELECT * FROM events_local".into(), refused.clone()),
        ("SELECT * FROM hogpipe_migrations".into(), refused.clone()),
        ("SELECT * FROM file('/etc/passwd', 'CSV', 'a String')".into(), refused.clone()),
        ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')".into(), refused.clone()),
        ("SELECT * FROM remote('127.0.0.1', default.events)".into(), refused.clone()),
        ("SELECT * FROM numbers(10)".into(), refused.clone()),
        ("SELECT count() FROM events WHERE 1 IN events".into(), refused.clone()),
        ("SELECT count() FROM events WHERE distinct_id IN (distinct_id)".into(), refused.clone()),
        // `\'` continues the string: one literal, no union.
        ("SELECT count() FROM events WHERE event = 'x\\' UNION ALL SELECT count() FROM system.tables --'".into(), zero.clone()),
        // `\\'` is a backslash and the end of the string: a union, refused for system.tables.
        ("SELECT count() FROM events WHERE event = 'x\\\\' UNION ALL SELECT count() FROM system.tables --'".into(), refused.clone()),
        ("SELECT count() FROM events; DROP TABLE events".into(), refused.clone()),
        ("SELECT 1; SELECT * FROM events".into(), refused.clone()),
        ("DROP TABLE events".into(), refused.clone()),
        (format!("INSERT INTO events (team_id) VALUES ({a})"), refused.clone()),
        ("ALTER TABLE events DELETE WHERE 1".into(), refused.clone()),
        ("SELECT count() FROM events SETTINGS max_execution_time = 100000".into(), refused.clone()),
        ("SELECT count() FROM events FORMAT TSV".into(), refused.clone()),
        ("SELECT count() FROM events FINAL".into(), refused.clone()),
        ("SELECT currentDatabase()".into(), refused.clone()),
        ("SELECT hostName()".into(), refused.clone()),
        ("SELECT version()".into(), refused.clone()),
        ("SELECT dictGet('d', 'a', toUInt64(1))".into(), refused.clone()),
        ("SELECT system.tables.name FROM events".into(), refused),
    ]
}

fn check_isolation(w: &Warehouse, a: u64, b: u64) {
    let cx = ctx(w, a);
    for (q, want) in hostile_queries(a, b) {
        let got = run(w, &cx, &q);
        match (&got, want) {
            (Err(e), None) => assert!(e.starts_with("hogql: "), "{q}: refused by ClickHouse, not HogQL: {e}"),
            (Ok(rows), Some(want)) => {
                assert_eq!(norm(&rows.results), want, "{q} on {:?}", cx.dialect);
            }
            (Err(e), Some(_)) => panic!("{q}: should run and see only team A: {e}"),
            (Ok(rows), None) => panic!("{q}: should be refused, answered {:?}", rows.results),
        }
    }
    // Whatever team A selects, no row of B's shows.
    for q in [
        "SELECT * FROM events LIMIT 10000",
        "SELECT * FROM persons",
        "SELECT * FROM person_distinct_ids",
        // (18.16 fails FULL JOIN … ON with "Block structure mismatch"; USING works on both.)
        "SELECT distinct_id, e.properties, p.person_id FROM events e \
         FULL OUTER JOIN person_distinct_ids p USING (distinct_id)",
        "SELECT e.*, p.* FROM events e LEFT JOIN person_distinct_ids p ON e.distinct_id = p.distinct_id",
    ] {
        let text = serde_json::to_string(&rows(w, &cx, q)).unwrap();
        for marker in ["b-user", "secret", "Safari", "b@example.com"] {
            assert!(!text.contains(marker), "{q}: team B's {marker} leaked: {text}");
        }
        assert!(text.contains("a-user") || text.contains("a2@example.com"), "{q}: team A's rows are there: {text}");
    }
    // And B sees its own.
    expect(w, &ctx(w, b), "SELECT count() FROM events WHERE event = 'secret'", &[&["3"]]);
}

fn chdb() -> Arc<Warehouse> {
    common::shared_chdb()
}

/// The statement's `SETTINGS max_execution_time`, the only SETTINGS in it, is what the server
/// enforces: a scan that cannot finish in a second, ended the way `translate` ends every query,
/// is stopped. (A raw scan of `system.numbers`, which HogQL itself cannot read, streams in small
/// blocks on both versions; a heavy HogQL cross join would exhaust 18.16's memory first.)
fn check_timeout(w: &Warehouse, team: u64) {
    let cx = Context { max_execution_time_secs: 1, ..ctx(w, team) };
    let sql = translate("SELECT count() FROM events", &cx).unwrap();
    assert_eq!(sql.matches("SETTINGS").count(), 1, "{sql}");
    let suffix = &sql[sql.find(" SETTINGS ").unwrap()..];
    assert_eq!(suffix, " SETTINGS max_execution_time = 1");
    let heavy = format!(
        "SELECT count() FROM (SELECT number FROM system.numbers LIMIT 100000000000) \
         WHERE cityHash64(number) % 7 = 8{suffix}"
    );
    let err = w.query(&heavy).unwrap_err().to_string();
    assert!(err.to_lowercase().contains("timeout"), "{err}");
}

#[test]
fn hogql_on_chdb() {
    let w = chdb();
    write_fixture(&w, 501, 502, 503);
    ordinary_queries(&w, 501, 503);
    check_isolation(&w, 501, 502);
    check_timeout(&w, 504);
}

#[test]
fn hogql_on_clickhouse_18_16() {
    let server = common::Server::start();
    let config =
        WarehouseConfig { backend: "clickhouse".into(), urls: vec![server.url.clone()], ..WarehouseConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(&config, dir.path()).expect("open").expect("a warehouse");
    write_fixture(&w, 501, 502, 503);
    ordinary_queries(&w, 501, 503);
    check_isolation(&w, 501, 502);
    check_timeout(&w, 504);
}
