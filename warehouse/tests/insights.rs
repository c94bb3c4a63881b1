//! Trends, funnels and retention on a small fixture, against answers worked out by hand (in the
//! comments beside each), on chDB (26.x) and on Debian's ClickHouse server (18.16). `now` is
//! fixed, so relative ranges are the same on every run.

mod common;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::EventSink;
use hogpipe_warehouse::insights::{self, InsightError};
use hogpipe_warehouse::writer::EventWriter;
use hogpipe_warehouse::{Warehouse, WarehouseConfig};
use serde_json::{json, Value};

/// Wednesday 2026-11-25 16:30 UTC.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 16, 30, 0).unwrap()
}

const HOSTILE_EVENT: &str = "it's \\ \"odd\"') OR 1=1 --";
const HOSTILE_KEY: &str = "we'ird\\key\"";
const HOSTILE_VALUE: &str = "va'l\\ue";

fn ev(team: u64, n: u64, at: &str, who: &str, event: &str, properties: Value) -> Event {
    Event {
        uuid: format!("0190c000-0000-7000-8000-{:012x}", team * 1000 + n),
        team_id: team,
        event: event.into(),
        distinct_id: who.into(),
        properties: properties.as_object().cloned().unwrap_or_default(),
        timestamp: format!("{at}.000Z"),
        elements_chain: String::new(),
        ip: String::new(),
    }
}

/// The fixture. Persons are distinct ids (no merges).
fn fixture(team: u64) -> Vec<Event> {
    let mut n = 0;
    let mut e = |at: &str, who: &str, event: &str, props: Value| {
        n += 1;
        ev(team, n, at, who, event, props)
    };
    vec![
        // Trends: $pageview.
        e(
            "2026-11-23T10:00:00",
            "alice",
            "$pageview",
            json!({"$browser": "Chrome", "$session_id": "s1", "amount": 5, "$set": {"plan": "pro"}}),
        ),
        e("2026-11-23T11:30:00", "alice", "$pageview", json!({"$browser": "Chrome", "$session_id": "s1"})),
        e("2026-11-25T09:00:00", "alice", "$pageview", json!({"$browser": "Chrome", "$session_id": "s2"})),
        e("2026-11-23T10:15:00", "bob", "$pageview", json!({"$browser": "Firefox", "$session_id": "s3", "amount": 20})),
        e("2026-11-24T12:00:00", "bob", "$pageview", json!({"$browser": "Safari", "$session_id": "s4"})),
        e("2026-11-24T13:00:00", "carol", "$pageview", json!({})),
        e("2026-11-10T08:00:00", "dave", "$pageview", json!({"$browser": "Chrome"})),
        e("2026-11-24T14:00:00", "erin", HOSTILE_EVENT, json!({HOSTILE_KEY: HOSTILE_VALUE})),
        // Funnel signup → activate → purchase.
        e("2026-11-01T10:00:00", "frank", "signup", json!({"$browser": "Chrome"})),
        e("2026-11-02T10:00:00", "frank", "activate", json!({})),
        e("2026-11-03T10:00:00", "frank", "purchase", json!({})),
        e("2026-11-05T10:00:00", "grace", "signup", json!({"$browser": "Chrome"})),
        e("2026-11-06T10:00:00", "grace", "activate", json!({})),
        e("2026-11-01T10:00:00", "heidi", "signup", json!({"$browser": "Safari"})),
        e("2026-11-20T10:00:00", "heidi", "activate", json!({})), // 19 days later: out of a 14-day window
        e("2026-11-04T10:00:00", "ivan", "activate", json!({})),  // before his signup: out of order
        e("2026-11-05T10:00:00", "ivan", "signup", json!({})),
        e("2026-11-06T10:00:00", "ivan", "purchase", json!({})),
        e("2026-11-02T10:00:00", "judy", "purchase", json!({})),
        e("2026-11-10T10:00:00", "kim", "signup", json!({"$browser": "Firefox"})),
        e("2026-11-11T10:00:00", "kim", "activate", json!({})),
        e("2026-11-12T10:00:00", "kim", "purchase", json!({})),
        // Retention on login.
        e("2026-11-20T10:00:00", "leo", "login", json!({})),
        e("2026-11-22T10:00:00", "leo", "login", json!({})),
        e("2026-11-23T10:00:00", "leo", "login", json!({})),
        e("2026-11-22T10:00:00", "mia", "login", json!({})),
        e("2026-11-24T10:00:00", "mia", "login", json!({})),
        e("2026-11-24T11:00:00", "mia", "login", json!({})),
        e("2026-11-23T10:00:00", "ned", "login", json!({})),
        e("2026-11-25T10:00:00", "ned", "login", json!({})),
        e("2026-11-24T10:00:00", "olga", "login", json!({})),
        e("2026-11-25T10:00:00", "pat", "login", json!({})),
    ]
}

fn write_fixture(w: &Arc<Warehouse>, team: u64) {
    let events = fixture(team);
    let writer = EventWriter::new(w.clone(), 100_000).unwrap();
    writer.write(&events.iter().collect::<Vec<_>>()).unwrap();
    writer.flush().unwrap();
    // A re-delivery of alice's first pageview, in a separate insert: it must count once.
    writer.write(&[&events[0]]).unwrap();
    writer.flush().unwrap();
}

fn run(w: &Warehouse, team: u64, query: Value) -> Value {
    insights::run(w, team, &query, now()).unwrap_or_else(|e| panic!("{query}: {e}"))
}

fn trends(w: &Warehouse, team: u64, extra: Value) -> Vec<Value> {
    let mut q = json!({"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}], "dateRange": {"date_from": "-7d"}});
    for (k, v) in extra.as_object().unwrap() {
        q[k] = v.clone();
    }
    run(w, team, q)["results"].as_array().unwrap().clone()
}

fn data(series: &Value) -> Vec<u64> {
    series["data"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

fn by_breakdown(results: &[Value]) -> Vec<(String, Vec<u64>)> {
    results.iter().map(|s| (s["breakdown_value"].as_str().unwrap().to_string(), data(s))).collect()
}

fn pageview(props: Value) -> Value {
    json!([{"kind": "EventsNode", "event": "$pageview", "properties": props}])
}

const EIGHT_DAYS: [&str; 8] =
    ["2026-11-18", "2026-11-19", "2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24", "2026-11-25"];

fn check_trends(w: &Warehouse, team: u64) {
    // -7d on Wednesday 25th: the 18th to the 25th, 8 days. Pageviews: 23rd alice×2 + bob,
    // 24th bob + carol, 25th alice; dave's on the 10th is out of range.
    let r = trends(w, team, json!({}));
    assert_eq!(r.len(), 1);
    assert_eq!(data(&r[0]), [0, 0, 0, 0, 0, 3, 2, 1]);
    assert_eq!(r[0]["count"].as_f64(), Some(6.0));
    assert_eq!(r[0]["label"], "$pageview");
    assert_eq!(r[0]["days"], json!(EIGHT_DAYS));
    assert_eq!(r[0]["labels"][0], "18-Nov-2026");
    assert_eq!(r[0]["labels"][7], "25-Nov-2026");
    assert_eq!(r[0]["action"]["id"], "$pageview");

    // Unique persons: 23rd alice, bob; 24th bob, carol; 25th alice.
    let r = trends(w, team, json!({"series": [{"kind": "EventsNode", "event": "$pageview", "math": "dau"}]}));
    assert_eq!(data(&r[0]), [0, 0, 0, 0, 0, 2, 2, 1]);
    // Sessions: 23rd s1, s3; 24th s4 (carol has none); 25th s2.
    let r =
        trends(w, team, json!({"series": [{"kind": "EventsNode", "event": "$pageview", "math": "unique_session"}]}));
    assert_eq!(data(&r[0]), [0, 0, 0, 0, 0, 2, 1, 1]);

    // All events: 20th heidi's activate + leo's login; 22nd 2 logins; 23rd 3 pageviews + 2
    // logins; 24th 2 pageviews + erin's event + 3 logins; 25th 1 pageview + 2 logins.
    let r = trends(w, team, json!({"series": [{"kind": "EventsNode", "event": null}]}));
    assert_eq!(data(&r[0]), [0, 0, 2, 0, 2, 5, 6, 3]);
    assert_eq!(r[0]["label"], "All events");

    // Two series.
    let r = trends(
        w,
        team,
        json!({"series": [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "login", "math": "dau", "custom_name": "Logins"}]}),
    );
    assert_eq!(r.len(), 2);
    assert_eq!(data(&r[1]), [0, 0, 1, 0, 2, 2, 2, 2]);
    assert_eq!(r[1]["action"]["order"], 1);
    assert_eq!(r[1]["action"]["custom_name"], "Logins");

    // Hours: 09:00 to 12:00 on the 23rd: alice and bob at 10, alice at 11:30.
    let r = trends(
        w,
        team,
        json!({"interval": "hour", "dateRange": {"date_from": "2026-11-23T09:00:00Z", "date_to": "2026-11-23T12:00:00Z"}}),
    );
    assert_eq!(data(&r[0]), [0, 2, 1, 0]);
    assert_eq!(r[0]["days"][1], "2026-11-23 10:00:00");
    assert_eq!(r[0]["labels"][1], "23-Nov-2026 10:00");
    // Weeks (from Sunday): -14d is Wednesday the 11th, in the week of Sunday the 8th; dave's
    // pageview on the 10th is in it, the other six in the week of the 22nd.
    let r = trends(w, team, json!({"interval": "week", "dateRange": {"date_from": "-14d"}}));
    assert_eq!(r[0]["days"], json!(["2026-11-08", "2026-11-15", "2026-11-22"]));
    assert_eq!(data(&r[0]), [1, 0, 6]);
    // Months: -1m is October 25th.
    let r = trends(w, team, json!({"interval": "month", "dateRange": {"date_from": "-1m"}}));
    assert_eq!(data(&r[0]), [0, 7]);
    assert_eq!(r[0]["labels"], json!(["Oct 2026", "Nov 2026"]));
    // Absolute dates: the 10th to the 12th, both whole days.
    let r = trends(w, team, json!({"dateRange": {"date_from": "2026-11-10", "date_to": "2026-11-12"}}));
    assert_eq!(data(&r[0]), [1, 0, 0]);

    // Breakdown by $browser, biggest first; carol's pageview has none.
    let breakdown = |extra: Value| {
        let mut f = json!({"breakdown": "$browser", "breakdown_type": "event"});
        for (k, v) in extra.as_object().unwrap() {
            f[k] = v.clone();
        }
        f
    };
    let r = trends(w, team, json!({"breakdownFilter": breakdown(json!({}))}));
    let null = "$$_posthog_breakdown_null_$$";
    assert_eq!(
        by_breakdown(&r),
        [
            ("Chrome".to_string(), vec![0, 0, 0, 0, 0, 2, 0, 1]),
            (null.to_string(), vec![0, 0, 0, 0, 0, 0, 1, 0]),
            ("Firefox".to_string(), vec![0, 0, 0, 0, 0, 1, 0, 0]),
            ("Safari".to_string(), vec![0, 0, 0, 0, 0, 0, 1, 0]),
        ]
    );
    assert_eq!(r[1]["label"], "None");
    assert_eq!(r[0]["count"].as_f64(), Some(3.0));
    // Limit 2: Firefox and Safari merge into Other (events add up).
    let other = "$$_posthog_breakdown_other_$$";
    let r = trends(w, team, json!({"breakdownFilter": breakdown(json!({"breakdown_limit": 2}))}));
    assert_eq!(
        by_breakdown(&r),
        [
            ("Chrome".to_string(), vec![0, 0, 0, 0, 0, 2, 0, 1]),
            (null.to_string(), vec![0, 0, 0, 0, 0, 0, 1, 0]),
            (other.to_string(), vec![0, 0, 0, 0, 0, 1, 1, 0]),
        ]
    );
    // Unique persons with a limit: alice (Chrome) 23rd and 25th; carol (none) 24th; bob is
    // Firefox on the 23rd and Safari on the 24th: Other once per day.
    let r = trends(
        w,
        team,
        json!({"series": [{"kind": "EventsNode", "event": "$pageview", "math": "dau"}], "breakdownFilter": breakdown(json!({"breakdown_limit": 2}))}),
    );
    assert_eq!(
        by_breakdown(&r),
        [
            ("Chrome".to_string(), vec![0, 0, 0, 0, 0, 1, 0, 1]),
            (null.to_string(), vec![0, 0, 0, 0, 0, 0, 1, 0]),
            (other.to_string(), vec![0, 0, 0, 0, 0, 1, 1, 0]),
        ]
    );
    // By a person property: alice's events carry plan=pro.
    let r = trends(w, team, json!({"breakdownFilter": {"breakdown": "plan", "breakdown_type": "person"}}));
    assert_eq!(
        by_breakdown(&r),
        [
            // Three each: ties go by value, and the null value is the empty string.
            (null.to_string(), vec![0, 0, 0, 0, 0, 1, 2, 0]),
            ("pro".to_string(), vec![0, 0, 0, 0, 0, 2, 0, 1]),
        ]
    );
    // Two series with a breakdown: labels name both.
    let r = trends(
        w,
        team,
        json!({"series": [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "login"}], "breakdownFilter": breakdown(json!({}))}),
    );
    assert_eq!(r[0]["label"], "$pageview - Chrome");
    assert_eq!(r.last().unwrap()["label"], "login - None");

    // Filters.
    let f = |props: Value| data(&trends(w, team, json!({"series": pageview(props)}))[0]);
    assert_eq!(
        f(json!([{"key": "$browser", "value": "Chrome", "operator": "exact", "type": "event"}])),
        [0, 0, 0, 0, 0, 2, 0, 1]
    );
    assert_eq!(
        f(json!([{"key": "$browser", "value": ["Firefox", "Safari"], "operator": "exact"}])),
        [0, 0, 0, 0, 0, 1, 1, 0]
    );
    assert_eq!(f(json!([{"key": "$browser", "value": "Chrome", "operator": "is_not"}])), [0, 0, 0, 0, 0, 1, 2, 0]);
    assert_eq!(f(json!([{"key": "$browser", "value": "FIRE", "operator": "icontains"}])), [0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(f(json!([{"key": "$browser", "operator": "is_set"}])), [0, 0, 0, 0, 0, 3, 1, 1]);
    assert_eq!(f(json!([{"key": "$browser", "operator": "is_not_set"}])), [0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(f(json!([{"key": "amount", "value": 10, "operator": "gt"}])), [0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(f(json!([{"key": "amount", "value": "10", "operator": "lt"}])), [0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(f(json!([{"key": "amount", "value": 5, "operator": "exact"}])), [0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(f(json!([{"key": "plan", "value": "pro", "type": "person"}])), [0, 0, 0, 0, 0, 2, 0, 1]);
    // Top-level filters apply to every series.
    let r = trends(w, team, json!({"properties": [{"key": "$session_id", "value": "s1"}]}));
    assert_eq!(data(&r[0]), [0, 0, 0, 0, 0, 2, 0, 0]);
}

fn check_hostile(w: &Warehouse, team: u64) {
    // Quotes and backslashes in event names, keys and values are data, never SQL.
    let r = trends(w, team, json!({"series": [{"kind": "EventsNode", "event": HOSTILE_EVENT}]}));
    assert_eq!(data(&r[0]), [0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(r[0]["label"], HOSTILE_EVENT);
    let r = trends(
        w,
        team,
        json!({"series": [{"kind": "EventsNode", "event": HOSTILE_EVENT, "properties": [{"key": HOSTILE_KEY, "value": HOSTILE_VALUE}]}]}),
    );
    assert_eq!(data(&r[0]), [0, 0, 0, 0, 0, 0, 1, 0]);
    let r = trends(
        w,
        team,
        json!({"series": [{"kind": "EventsNode", "event": HOSTILE_EVENT}], "breakdownFilter": {"breakdown": HOSTILE_KEY}}),
    );
    assert_eq!(r[0]["breakdown_value"], HOSTILE_VALUE);
    for name in ["x' OR '1'='1", "x\\' OR 1=1 --", "'; DROP TABLE events; --", "\\", "'"] {
        let r = trends(
            w,
            team,
            json!({"series": [{"kind": "EventsNode", "event": name, "properties": [{"key": name, "value": name}]}]}),
        );
        assert_eq!(data(&r[0]), [0; 8], "{name}");
        let r = trends(w, team, json!({"breakdownFilter": {"breakdown": name}}));
        assert_eq!(r.len(), 1, "{name}: one null breakdown value");
    }
    // Another team sees none of it.
    let r = trends(w, team + 1, json!({}));
    assert_eq!(data(&r[0]), [0; 8]);
}

fn funnel(w: &Warehouse, team: u64, filter: Value, extra: Value) -> Value {
    let mut q = json!({
        "kind": "FunnelsQuery",
        "series": [
            {"kind": "EventsNode", "event": "signup"},
            {"kind": "EventsNode", "event": "activate", "custom_name": "Activated"},
            {"kind": "EventsNode", "event": "purchase"}
        ],
        "funnelsFilter": filter,
        "dateRange": {"date_from": "-30d"},
    });
    for (k, v) in extra.as_object().unwrap() {
        q[k] = v.clone();
    }
    run(w, team, q)["results"].clone()
}

fn counts(steps: &Value) -> Vec<u64> {
    steps.as_array().unwrap().iter().map(|s| s["count"].as_u64().unwrap()).collect()
}

fn check_funnels(w: &Warehouse, team: u64) {
    // frank 3 steps, grace 2, heidi 1 (activate 19 days later), ivan 1 (activate before
    // signup; his purchase does not count without it), kim 3; judy never signed up.
    let window = json!({"funnelWindowInterval": 14, "funnelWindowIntervalUnit": "day", "funnelOrderType": "ordered"});
    let r = funnel(w, team, window.clone(), json!({}));
    assert_eq!(counts(&r), [5, 3, 2]);
    assert_eq!(r[0]["action_id"], "signup");
    assert_eq!(r[1]["name"], "activate");
    assert_eq!(r[1]["custom_name"], "Activated");
    assert_eq!(r[2]["order"], 2);
    assert_eq!(r[0]["type"], "events");
    assert!(r[1]["average_conversion_time"].is_null());
    // A 20-day window lets heidi convert.
    let r = funnel(w, team, json!({"funnelWindowInterval": 20, "funnelWindowIntervalUnit": "day"}), json!({}));
    assert_eq!(counts(&r), [5, 4, 2]);
    // Three weeks too. Within 47 hours nobody purchases (frank and kim take 48), within 49 both do.
    let r = funnel(w, team, json!({"funnelWindowInterval": 3, "funnelWindowIntervalUnit": "week"}), json!({}));
    assert_eq!(counts(&r), [5, 4, 2]);
    let r = funnel(w, team, json!({"funnelWindowInterval": 47, "funnelWindowIntervalUnit": "hour"}), json!({}));
    assert_eq!(counts(&r), [5, 3, 0]);
    let r = funnel(w, team, json!({"funnelWindowInterval": 49, "funnelWindowIntervalUnit": "hour"}), json!({}));
    assert_eq!(counts(&r), [5, 3, 2]);
    // Date range: from the 5th, frank's and heidi's signups are out; heidi's activate alone is
    // no step 1; grace, ivan, kim remain.
    let r = funnel(w, team, window.clone(), json!({"dateRange": {"date_from": "2026-11-05", "date_to": "2026-11-30"}}));
    assert_eq!(counts(&r), [3, 2, 1]);
    // Breakdown by the signup's $browser: Chrome frank+grace, Firefox kim, Safari heidi, none ivan.
    let r = funnel(w, team, window, json!({"breakdownFilter": {"breakdown": "$browser"}}));
    let got: Vec<(String, Vec<u64>)> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|steps| (steps[0]["breakdown_value"].as_str().unwrap().to_string(), counts(steps)))
        .collect();
    assert_eq!(
        got,
        [
            ("Chrome".to_string(), vec![2, 2, 1]),
            ("$$_posthog_breakdown_null_$$".to_string(), vec![1, 0, 0]),
            ("Firefox".to_string(), vec![1, 1, 1]),
            ("Safari".to_string(), vec![1, 0, 0]),
        ]
    );
}

fn retention(w: &Warehouse, team: u64, kind: &str) -> Vec<(String, Vec<u64>)> {
    let q = json!({
        "kind": "RetentionQuery",
        "retentionFilter": {
            "targetEntity": {"id": "login", "type": "events"},
            "returningEntity": {"id": "login", "type": "events"},
            "period": "Day",
            "totalIntervals": 4,
            "retentionType": kind
        },
        "dateRange": {"date_to": "2026-11-25"}
    });
    let r = run(w, team, q);
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, row)| {
            assert_eq!(row["label"], format!("Day {i}"));
            (
                row["date"].as_str().unwrap().to_string(),
                row["values"].as_array().unwrap().iter().map(|v| v["count"].as_u64().unwrap()).collect(),
            )
        })
        .collect()
}

fn check_retention(w: &Warehouse, team: u64) {
    // Logins: leo 20th, 22nd, 23rd; mia 22nd, 24th (twice); ned 23rd, 25th; olga 24th; pat 25th.
    // Recurring, 22nd to 25th: 22nd {leo, mia}: leo back the 23rd, mia the 24th; 23rd {leo,
    // ned}: ned back the 25th; 24th {mia, olga}; 25th {ned, pat}.
    assert_eq!(
        retention(w, team, "retention_recurring"),
        [
            ("2026-11-22T00:00:00Z".to_string(), vec![2, 1, 1, 0]),
            ("2026-11-23T00:00:00Z".to_string(), vec![2, 0, 1]),
            ("2026-11-24T00:00:00Z".to_string(), vec![2, 0]),
            ("2026-11-25T00:00:00Z".to_string(), vec![2]),
        ]
    );
    // First time: leo's first login is before the range; mia 22nd (back the 24th), ned 23rd
    // (back the 25th), olga 24th, pat 25th.
    assert_eq!(
        retention(w, team, "retention_first_time"),
        [
            ("2026-11-22T00:00:00Z".to_string(), vec![1, 0, 1, 0]),
            ("2026-11-23T00:00:00Z".to_string(), vec![1, 0, 1]),
            ("2026-11-24T00:00:00Z".to_string(), vec![1, 0]),
            ("2026-11-25T00:00:00Z".to_string(), vec![1]),
        ]
    );
    // Weeks: the week of the 22nd holds every login but leo's on the 20th (week of the 15th).
    let q = json!({"kind": "RetentionQuery", "retentionFilter": {"targetEntity": {"id": "login", "type": "events"}, "period": "Week", "totalIntervals": 2}});
    let r = run(w, team, q);
    let values: Vec<Vec<u64>> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["values"].as_array().unwrap().iter().map(|v| v["count"].as_u64().unwrap()).collect())
        .collect();
    assert_eq!(values, [vec![1, 1], vec![5]]);
    assert_eq!(r["results"][0]["date"], "2026-11-15T00:00:00Z");
}

fn check_all(w: &Arc<Warehouse>, team: u64) {
    write_fixture(w, team);
    check_trends(w, team);
    check_hostile(w, team);
    check_funnels(w, team);
    check_retention(w, team);
}

fn chdb() -> Arc<Warehouse> {
    common::shared_chdb()
}

#[test]
fn insights_equal_hand_computed_answers_on_chdb() {
    check_all(&chdb(), 301);
}

#[test]
fn insights_equal_hand_computed_answers_on_clickhouse_18_16() {
    let server = common::Server::start();
    let config =
        WarehouseConfig { backend: "clickhouse".into(), urls: vec![server.url.clone()], ..WarehouseConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(&config, dir.path()).expect("open").expect("a warehouse");
    assert_eq!(w.dialect(), hogpipe_warehouse::schema::Dialect::Legacy, "{}", w.version());
    check_all(&w, 301);
}

fn error(query: Value) -> (String, String) {
    match insights::run(&chdb(), 399, &query, now()) {
        Err(InsightError::Invalid { field, message }) => (field, message),
        other => panic!("{query}: expected Invalid, got {other:?}"),
    }
}

#[test]
fn bad_queries_are_invalid_naming_the_field() {
    let ev = json!({"kind": "EventsNode", "event": "$pageview"});
    let cases: Vec<(Value, &str)> = vec![
        (json!({"kind": "LifecycleQuery"}), "kind"),
        (json!({"series": []}), "kind"),
        (json!({"kind": 3}), "kind"),
        (json!({"kind": "TrendsQuery"}), "series"),
        (json!({"kind": "TrendsQuery", "series": []}), "series"),
        (json!({"kind": "TrendsQuery", "series": [ev, {"kind": "EventsNode", "math": "bogus"}]}), "series[1].math"),
        (json!({"kind": "TrendsQuery", "series": [{"kind": "ActionsNode", "id": 3}]}), "series[0].kind"),
        (json!({"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": 5}]}), "series[0].event"),
        (json!({"kind": "TrendsQuery", "series": [ev], "interval": "minute"}), "interval"),
        (
            json!({"kind": "TrendsQuery", "series": [ev], "dateRange": {"date_from": "yesterday"}}),
            "dateRange.date_from",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [ev], "dateRange": {"date_from": "-7d", "date_to": "2026-13-40"}}),
            "dateRange.date_to",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [ev], "dateRange": {"date_from": "2026-11-20", "date_to": "2026-11-10"}}),
            "dateRange.date_to",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [ev], "interval": "hour", "dateRange": {"date_from": "-5y"}}),
            "interval",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [ev], "properties": [{"key": "a", "value": "b", "operator": "regex"}]}),
            "properties[0].operator",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [ev], "properties": [{"key": "a", "value": "x", "operator": "gt"}]}),
            "properties[0].value",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "properties": [{"key": "a", "operator": "exact"}]}]}),
            "series[0].properties[0].value",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [ev], "properties": [{"key": "a", "value": "b", "type": "cohort"}]}),
            "properties[0].type",
        ),
        (
            json!({"kind": "TrendsQuery", "series": [ev], "breakdownFilter": {"breakdown": "$browser", "breakdown_limit": 0}}),
            "breakdownFilter.breakdown_limit",
        ),
        (json!({"kind": "TrendsQuery", "series": [ev], "filterTestAccounts": true}), "filterTestAccounts"),
        (json!({"kind": "FunnelsQuery", "series": [ev]}), "series"),
        (
            json!({"kind": "FunnelsQuery", "series": [ev, ev], "funnelsFilter": {"funnelOrderType": "strict"}}),
            "funnelsFilter.funnelOrderType",
        ),
        (
            json!({"kind": "FunnelsQuery", "series": [ev, ev], "funnelsFilter": {"funnelWindowIntervalUnit": "fortnight"}}),
            "funnelsFilter.funnelWindowIntervalUnit",
        ),
        (
            json!({"kind": "FunnelsQuery", "series": [ev, ev], "funnelsFilter": {"funnelVizType": "trends"}}),
            "funnelsFilter.funnelVizType",
        ),
        (json!({"kind": "RetentionQuery"}), "retentionFilter"),
        (json!({"kind": "RetentionQuery", "retentionFilter": {"period": "Year"}}), "retentionFilter.period"),
        (json!({"kind": "RetentionQuery", "retentionFilter": {"totalIntervals": 0}}), "retentionFilter.totalIntervals"),
        (
            json!({"kind": "RetentionQuery", "retentionFilter": {"targetEntity": {"id": 4, "type": "actions"}}}),
            "retentionFilter.targetEntity.id",
        ),
        (
            json!({"kind": "RetentionQuery", "retentionFilter": {"retentionType": "retention_weird"}}),
            "retentionFilter.retentionType",
        ),
    ];
    for (query, field) in cases {
        let (got, message) = error(query.clone());
        assert_eq!(got, field, "{query}: {message}");
        assert!(!message.is_empty());
    }
    let (field, message) = error(json!({"kind": "TrendsQuery", "series": [ev], "sampling": 0.1}));
    assert!(message.contains("sampling"), "{field}: {message}");
}

/// A small deterministic generator (the tests need no `rand`).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The funnel on chDB (computed on arrays) gives the counts ClickHouse's own `windowFunnel` gives
/// on random events: many events in the same second, steps that share an event, a step for all
/// events, steps told apart by a property, and four steps.
#[test]
fn funnels_on_chdb_agree_with_window_funnel_on_random_events() {
    let w = chdb();
    let team = 331;
    let mut rng = Lcg(7);
    let mut events = Vec::new();
    for person in 0..300 {
        for _ in 0..rng.below(25) {
            // Whole minutes over two hours: the same second comes up often.
            let offset = rng.below(120) * 60;
            let at = format!("2026-11-20T{:02}:{:02}:00", offset / 3600, offset / 60 % 60);
            let event = ["a", "b", "c", "d"][rng.below(4) as usize];
            let plan = ["x", "y"][rng.below(2) as usize];
            events.push(ev(team, events.len() as u64, &at, &format!("p{person}"), event, json!({"plan": plan})));
        }
    }
    let writer = EventWriter::new(w.clone(), 100_000).unwrap();
    writer.write(&events.iter().collect::<Vec<_>>()).unwrap();
    writer.flush().unwrap();

    let step = |event: Option<&str>, plan: Option<&str>| {
        let mut node = json!({"kind": "EventsNode", "event": event});
        if let Some(plan) = plan {
            node["properties"] = json!([{"key": "plan", "value": plan, "operator": "exact", "type": "event"}]);
        }
        node
    };
    let cond = |event: Option<&str>, plan: Option<&str>| {
        let mut parts = vec!["1".to_string()];
        parts.extend(event.map(|e| format!("event = '{e}'")));
        parts.extend(plan.map(|p| format!("JSONExtractString(properties, 'plan') = '{p}'")));
        parts.join(" AND ")
    };
    type Step = (Option<&'static str>, Option<&'static str>);
    let cases: [&[Step]; 7] = [
        &[(Some("a"), None), (Some("b"), None)],
        &[(Some("a"), None), (Some("b"), None), (Some("c"), None)],
        &[(Some("a"), None), (Some("b"), None), (Some("a"), None)],
        &[(Some("a"), None), (None, None), (Some("c"), None)],
        &[(Some("a"), Some("x")), (Some("a"), Some("y")), (Some("b"), None)],
        &[(Some("a"), None), (Some("b"), None), (Some("c"), None), (Some("d"), None)],
        &[(Some("a"), None), (Some("b"), None), (Some("a"), None), (Some("c"), None), (Some("b"), None)],
    ];
    // Two days, and 27 years: with four steps the long range packs entries into 64 bits.
    let ranges = [("2026-11-19", "2026-11-21"), ("2000-01-01", "2026-11-21")];
    for (steps, (from, to)) in cases.iter().flat_map(|c| ranges.iter().map(move |r| (c, r))) {
        let query = json!({
            "kind": "FunnelsQuery",
            "series": steps.iter().map(|(e, p)| step(*e, *p)).collect::<Vec<_>>(),
            "funnelsFilter": {"funnelWindowInterval": 15, "funnelWindowIntervalUnit": "minute"},
            "dateRange": {"date_from": from, "date_to": to},
        });
        let got = counts(&run(&w, team, query.clone())["results"]);

        let conds: Vec<String> = steps.iter().map(|(e, p)| cond(*e, *p)).collect();
        let sql = format!(
            "SELECT level, count() FROM (SELECT person_id, windowFunnel(900)(toDateTime(timestamp), {}) AS level \
             FROM events WHERE team_id = {team} AND (({})) GROUP BY person_id) WHERE level > 0 GROUP BY level",
            conds.join(", "),
            conds.join(") OR (")
        );
        let mut at_level = vec![0u64; steps.len()];
        for row in w.query(&sql).unwrap().results {
            let level = row[0].as_u64().unwrap() as usize;
            at_level[level - 1] += row[1].as_str().map_or_else(|| row[1].as_u64().unwrap(), |s| s.parse().unwrap());
        }
        let want: Vec<u64> = (0..steps.len()).map(|k| at_level[k..].iter().sum()).collect();
        assert!(want[0] > 100 && want[steps.len() - 1] > 0, "the data exercises every step: {want:?}");
        assert!(want.windows(2).any(|p| p[0] > p[1]), "some persons drop off: {want:?}");
        assert_eq!(got, want, "{query}");
    }
}
