//! Live aggregates through `hogpipe serve`: `[[aggregates]]` in the config, events captured over
//! HTTP, the counts served by `GET /api/projects/{id}/live/{aggregate}` (with the project's API
//! key; other keys and projects are refused), and persisted into the warehouse's `live_aggregates`.

mod common;

use std::time::{Duration, Instant};

use common::{query, Http, Server, TempDir, HANG};
use serde_json::{json, Value};

const CONFIG: &str = r#"
[[projects]]
id = 1
token = "phc_live_one"
api_keys = ["phx_key_one"]

[[projects]]
id = 2
token = "phc_live_two"
api_keys = ["phx_key_two"]

[[aggregates]]
id = "by-plan"
project_id = 1
group_by = ["plan"]
measure = "count"
interval = "minute"

[[aggregates]]
id = "revenue"
project_id = 1
event = "purchase"
measure = "sum"
property = "amount"
interval = "hour"
"#;

fn get(http: &mut Http, path: &str, key: &str) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let r = http.request("GET", path, &[("authorization", auth.as_str())], b"").unwrap();
    (r.status, serde_json::from_str(&r.text()).unwrap_or(Value::Null))
}

#[test]
fn live_aggregates_are_served_and_persisted() {
    let dir = TempDir::new("live");
    let config = dir.path().join("hogpipe.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&config, &data);
    let now = chrono_now();
    let events: Vec<Value> = (0..30)
        .map(|i| {
            json!({
                "event": if i % 3 == 0 { "purchase" } else { "$pageview" },
                "distinct_id": format!("u{i}"),
                "timestamp": now,
                "properties": {"plan": if i % 2 == 0 { "pro" } else { "free" }, "amount": 10 + i}
            })
        })
        .collect();
    let mut http = Http::new(server.addr);
    let body = json!({"api_key": "phc_live_one", "batch": events}).to_string();
    assert_eq!(http.post_json("/batch", body.as_bytes()).unwrap().status, 200);

    // Counts per (event, plan) and the revenue sum, once the dataflow has applied the batch.
    let deadline = Instant::now() + HANG;
    let rows = loop {
        let (status, v) = get(&mut http, "/api/projects/1/live/by-plan", "phx_key_one");
        assert_eq!(status, 200, "{v}");
        let total: u64 = v["results"].as_array().unwrap().iter().map(|r| r["count"].as_u64().unwrap()).sum();
        if total == 30 {
            break v["results"].as_array().unwrap().clone();
        }
        assert!(Instant::now() < deadline, "live aggregate stuck at {total} of 30: {v}\n{}", server.output());
        std::thread::sleep(Duration::from_millis(20));
    };
    let count = |event: &str, plan: &str| -> u64 {
        rows.iter()
            .filter(|r| r["event"] == event && r["groups"][0] == plan)
            .map(|r| r["count"].as_u64().unwrap())
            .sum()
    };
    // i % 3 == 0 are purchases (10 of them: 5 pro, 5 free); the rest pageviews (10 pro, 10 free).
    assert_eq!((count("purchase", "pro"), count("purchase", "free")), (5, 5));
    assert_eq!((count("$pageview", "pro"), count("$pageview", "free")), (10, 10));
    let (_, revenue) = get(&mut http, "/api/projects/1/live/revenue", "phx_key_one");
    let sum: f64 = revenue["results"].as_array().unwrap().iter().map(|r| r["value"].as_f64().unwrap()).sum();
    let expected: f64 = (0..30).filter(|i| i % 3 == 0).map(|i| (10 + i) as f64).sum();
    assert_eq!(sum, expected, "{revenue}");

    // Another project's key, no key, an unknown aggregate.
    assert_eq!(get(&mut http, "/api/projects/1/live/by-plan", "phx_key_two").0, 404);
    assert_eq!(get(&mut http, "/api/projects/1/live/by-plan", "phx_nope").0, 401);
    assert_eq!(http.get("/api/projects/1/live/by-plan").unwrap().status, 401);
    assert_eq!(get(&mut http, "/api/projects/1/live/nope", "phx_key_one").0, 404);
    assert_eq!(get(&mut http, "/api/projects/1/live/by-plan?from=yesterday", "phx_key_one").0, 400);

    // Persisted: the warehouse's table holds the same totals after a clean stop.
    server.stop();
    let persisted = query(
        &config,
        &data,
        "SELECT aggregate_id, sum(value) FROM live_aggregates FINAL WHERE team_id = 1 GROUP BY aggregate_id ORDER BY aggregate_id",
    );
    let results = persisted["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{persisted}");
    assert_eq!(results[0][0], "by-plan");
    assert_eq!(results[0][1].as_f64(), Some(30.0));
    assert_eq!(results[1][1].as_f64(), Some(expected));
}

/// Now, RFC 3339 UTC with milliseconds.
fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `[[aggregates]]` reload on SIGHUP, and aggregates defined through the API join them: both
/// count the events captured after they exist.
#[cfg(unix)]
#[test]
fn aggregates_reload_on_sighup_and_through_the_api() {
    let dir = TempDir::new("live-reload");
    let config = dir.path().join("hogpipe.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&config, &data);
    let mut http = Http::new(server.addr);
    assert_eq!(get(&mut http, "/api/projects/1/live/signups", "phx_key_one").0, 404);

    let added = format!(
        "{CONFIG}\n[[aggregates]]\nid = \"signups\"\nproject_id = 1\nevent = \"signup\"\nmeasure = \"count\"\ninterval = \"hour\"\n"
    );
    std::fs::write(&config, added).unwrap();
    // SAFETY: kill(2) on our own live child.
    assert_eq!(unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) }, 0);
    let deadline = Instant::now() + HANG;
    while !server.output().contains("live aggregates from") {
        assert!(Instant::now() < deadline, "no reload:\n{}", server.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    let definition =
        json!({"id": "by-browser", "group_by": ["$browser"], "measure": "unique_distinct_ids", "interval": "day"});
    let auth = "Bearer phx_key_one";
    let r = http
        .request(
            "POST",
            "/api/projects/1/live_aggregates",
            &[("authorization", auth), ("content-type", "application/json")],
            definition.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    // Another project's key cannot take the id.
    let r = http
        .request(
            "POST",
            "/api/projects/2/live_aggregates",
            &[("authorization", "Bearer phx_key_two"), ("content-type", "application/json")],
            definition.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 409, "{}", r.text());
    std::thread::sleep(Duration::from_millis(500));

    let now = chrono_now();
    let events: Vec<Value> = (0..12)
        .map(|i| {
            json!({"event": "signup", "distinct_id": format!("u{}", i % 4), "timestamp": now,
                        "properties": {"$browser": if i % 2 == 0 { "Chrome" } else { "Safari" }}})
        })
        .collect();
    let body = json!({"api_key": "phc_live_one", "batch": events}).to_string();
    assert_eq!(http.post_json("/batch", body.as_bytes()).unwrap().status, 200);
    let total = |v: &Value, field: &str| -> f64 {
        v["results"].as_array().map_or(0.0, |rows| rows.iter().map(|r| r[field].as_f64().unwrap_or(0.0)).sum())
    };
    let deadline = Instant::now() + HANG;
    loop {
        let (_, signups) = get(&mut http, "/api/projects/1/live/signups", "phx_key_one");
        let (_, browsers) = get(&mut http, "/api/projects/1/live/by-browser", "phx_key_one");
        // 12 signups; u0 and u2 only ever use Chrome, u1 and u3 Safari: 2 distinct ids each.
        if total(&signups, "count") == 12.0 && total(&browsers, "value") == 4.0 {
            break;
        }
        assert!(Instant::now() < deadline, "aggregates stuck: {signups} {browsers}\n{}", server.output());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The API's definition is in the state store: back after a restart.
    server.stop();
    let server = Server::start(&config, &data);
    let mut http = Http::new(server.addr);
    let r = http.request("GET", "/api/projects/1/live_aggregates", &[("authorization", auth)], b"").unwrap();
    let defs: Value = serde_json::from_str(&r.text()).unwrap();
    let ids: Vec<&str> = defs["results"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"by-browser") && ids.contains(&"signups"), "{defs}");
    server.stop();
}
