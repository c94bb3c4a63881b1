//! `POST /api/projects/{id}/query` through `app(state).oneshot(...)` on chDB: HogQL answers only
//! the caller's team, numbers come back as numbers, rejected SQL is a 400 naming `query.query`
//! with line and column, insights run in PostHog's shape, and without a warehouse the route says
//! so. (Isolation against hostile SQL and insight answers on both ClickHouse versions are tested
//! in `hogpipe-warehouse`'s `hogql` and `insights` tests.)

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hogpipe_api::store::{ProjectSeed, Store, StoreConfig};
use hogpipe_api::{app, ApiState};
use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::EventSink;
use hogpipe_warehouse::writer::EventWriter;
use hogpipe_warehouse::{Warehouse, WarehouseConfig};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const KEY_1: &str = "phx_query_key_one_000000000000000000000000000";
const KEY_2: &str = "phx_query_key_two_000000000000000000000000000";

fn chdb_library() -> PathBuf {
    let script =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("../scripts/install-chdb.sh");
    let out = Command::new("bash").arg(script).output().expect("run scripts/install-chdb.sh");
    assert!(out.status.success(), "install-chdb.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().lines().last().unwrap_or_default())
}

fn event(team: u64, i: usize, name: &str, browser: &str) -> Event {
    Event {
        uuid: format!("0190d000-0000-7000-8000-{:012x}", team * 1000 + i as u64),
        team_id: team,
        event: name.into(),
        distinct_id: format!("user-{}", i % 4),
        properties: json!({"$browser": browser, "n": i}).as_object().cloned().unwrap(),
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        elements_chain: String::new(),
        ip: String::new(),
    }
}

async fn post(state: &Arc<ApiState>, project: u64, key: &str, body: Value) -> (StatusCode, Value) {
    let req = Request::post(format!("/api/projects/{project}/query"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn hogql(sql: &str) -> Value {
    json!({"query": {"kind": "HogQLQuery", "query": sql}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_route_on_chdb() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&StoreConfig::default(), dir.path()).unwrap());
    store
        .sync_projects(&[
            ProjectSeed { id: 1, name: "One".into(), token: "phc_q1".into(), api_keys: vec![KEY_1.into()] },
            ProjectSeed { id: 2, name: "Two".into(), token: "phc_q2".into(), api_keys: vec![KEY_2.into()] },
        ])
        .unwrap();
    let config = WarehouseConfig { chdb_library: Some(chdb_library()), ..WarehouseConfig::default() };
    let warehouse = Warehouse::open(&config, dir.path()).unwrap().unwrap();
    let writer = EventWriter::new(warehouse.clone(), 1000).unwrap();
    let mut events: Vec<Event> =
        (0..6).map(|i| event(1, i, "signup", if i % 2 == 0 { "Chrome" } else { "Safari" })).collect();
    events.extend((0..4).map(|i| event(2, i, "signup", "Firefox")));
    writer.write(&events.iter().collect::<Vec<_>>()).unwrap();
    writer.flush().unwrap();
    let state = Arc::new(ApiState { warehouse: Some(warehouse), ..ApiState::new(store.clone()) });

    let (s, out) =
        post(&state, 1, KEY_1, hogql("SELECT properties.$browser AS b, count() FROM events GROUP BY b ORDER BY b"))
            .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["columns"], json!(["b", "count()"]));
    assert_eq!(out["results"], json!([["Chrome", 3], ["Safari", 3]]), "counts are numbers, only team 1's rows");
    assert_eq!(out["types"][1], "UInt64");
    let (s, out) = post(&state, 1, KEY_1, hogql("SELECT event FROM events LIMIT 1")).await;
    assert_eq!((s, out["types"].clone()), (StatusCode::OK, json!(["String"])), "the storage type is not shown: {out}");

    let (s, out) = post(&state, 1, KEY_1, hogql("SELECT count() FROM events WHERE team_id = 2 OR 1 = 1")).await;
    assert_eq!((s, out["results"].clone()), (StatusCode::OK, json!([[6]])), "{out}");
    let (s, _) = post(&state, 2, KEY_1, hogql("SELECT count() FROM events")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another project's query route is invisible");
    let (s, out) = post(&state, 2, KEY_2, hogql("SELECT count() FROM events")).await;
    assert_eq!(out["results"], json!([[4]]), "{s} {out}");

    let (s, out) = post(&state, 1, KEY_1, hogql("SELECT name\nFROM system.tables")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{out}");
    assert_eq!(out["attr"], "query.query");
    assert!(out["detail"].as_str().unwrap().contains("line 2"), "{out}");
    let (s, out) = post(&state, 1, KEY_1, hogql("SELECT * FROM events; DROP TABLE events")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{out}");
    let (s, out) = post(&state, 1, KEY_1, hogql("SELECT toDate('not a date') FROM events")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a ClickHouse error is the caller's: {out}");
    assert_eq!(out["code"], "query_failed");
    let (s, out) = post(&state, 1, KEY_1, json!({"query": {"kind": "NopeQuery"}})).await;
    assert_eq!((s, out["attr"].clone()), (StatusCode::BAD_REQUEST, json!("query.kind")), "{out}");
    let (s, out) = post(&state, 1, KEY_1, json!({"query": {"kind": "HogQLQuery"}})).await;
    assert_eq!((s, out["attr"].clone()), (StatusCode::BAD_REQUEST, json!("query.query")), "{out}");

    // An insight in PostHog's shape: signups today, by browser.
    let trends = json!({"query": {"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "signup"}],
                                  "interval": "day", "dateRange": {"date_from": "-1d"},
                                  "breakdownFilter": {"breakdown": "$browser", "breakdown_type": "event"}}});
    let (s, out) = post(&state, 1, KEY_1, trends).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    let mut by_browser: Vec<(String, f64)> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["breakdown_value"].as_str().unwrap_or_default().to_string(), r["count"].as_f64().unwrap()))
        .collect();
    by_browser.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(by_browser, vec![("Chrome".to_string(), 3.0), ("Safari".to_string(), 3.0)], "{out}");
    let bad = json!({"query": {"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "signup", "math": "bogus"}]}});
    let (s, out) = post(&state, 1, KEY_1, bad).await;
    assert_eq!((s, out["attr"].clone()), (StatusCode::BAD_REQUEST, json!("query.series[0].math")), "{out}");

    // Without a warehouse the route says so.
    let bare = Arc::new(ApiState::new(store));
    let (s, out) = post(&bare, 1, KEY_1, hogql("SELECT 1")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("warehouse"), "{out}");
}
