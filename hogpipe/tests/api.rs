//! The REST API through `hogpipe serve`: a transformation created with
//! `POST /api/projects/1/hog_functions` runs on events captured afterwards (no restart), its logs
//! and metrics reach the state store and the API, the query API sees the transformed events of
//! the caller's project only, and the function survives a restart.

mod common;

use std::time::{Duration, Instant};

use common::{Http, Server, TempDir, HANG};
use serde_json::{json, Value};

const CONFIG: &str = r#"
[[projects]]
id = 1
token = "phc_api_one"
api_keys = ["phx_api_key_one"]

[[projects]]
id = 2
token = "phc_api_two"
api_keys = ["phx_api_key_two"]
"#;

fn call(http: &mut Http, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let auth = format!("Bearer {key}");
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let r = http
        .request(
            method,
            path,
            &[("authorization", auth.as_str()), ("content-type", "application/json")],
            payload.as_bytes(),
        )
        .unwrap();
    (r.status, serde_json::from_str(&r.text()).unwrap_or(Value::Null))
}

fn hogql(http: &mut Http, project: u64, key: &str, sql: &str) -> (u16, Value) {
    let body = json!({"query": {"kind": "HogQLQuery", "query": sql}});
    call(http, "POST", &format!("/api/projects/{project}/query"), key, Some(body))
}

/// Polls `f` until it returns Some, or fails with the server's output.
fn wait<T>(server: &Server, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + HANG;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", server.output());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn capture(http: &mut Http, token: &str, n: usize, tag: &str) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let batch: Vec<Value> = (0..n)
        .map(|i| {
            json!({"event": "signup", "distinct_id": format!("{tag}-{i}"), "timestamp": now,
                        "properties": {"email": format!("{tag}{i}@example.com"), "$browser": "Firefox"}})
        })
        .collect();
    let body = json!({"api_key": token, "batch": batch}).to_string();
    assert_eq!(http.post_json("/batch", body.as_bytes()).unwrap().status, 200);
}

#[test]
fn functions_created_through_the_api_run_and_report() {
    let dir = TempDir::new("api");
    let config = dir.path().join("hogpipe.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&config, &data);
    let mut http = Http::new(server.addr);

    let hog = "let e := event\ne.properties.via_api := 'yes'\nprint('saw', e.distinct_id)\nreturn e";
    let body = json!({"type": "transformation", "name": "tag", "hog": hog});
    let (status, created) = call(&mut http, "POST", "/api/projects/1/hog_functions", "phx_api_key_one", Some(body));
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    // The change applies at the dataflow's next batch; give the workers a moment to take it.
    std::thread::sleep(Duration::from_millis(500));

    capture(&mut http, "phc_api_one", 20, "one");
    capture(&mut http, "phc_api_two", 5, "two");

    let tagged = wait(&server, "20 tagged events in project 1", || {
        let (status, v) =
            hogql(&mut http, 1, "phx_api_key_one", "SELECT count() FROM events WHERE properties.via_api = 'yes'");
        assert_eq!(status, 200, "{v}");
        (v["results"][0][0] == 20).then_some(v)
    });
    assert_eq!(tagged["columns"][0], "count()");
    // Project 2's events were not transformed, and each key sees its own project only.
    let (_, two) = wait(&server, "project 2's events", || {
        let r =
            hogql(&mut http, 2, "phx_api_key_two", "SELECT count(), countIf(properties.via_api = 'yes') FROM events");
        (r.1["results"][0][0] == 5).then_some(r)
    });
    assert_eq!(two["results"][0][1], 0, "{two}");
    let (status, _) = hogql(&mut http, 1, "phx_api_key_two", "SELECT count() FROM events");
    assert_eq!(status, 404);
    let (status, v) = hogql(&mut http, 1, "phx_api_key_one", "SELECT count() FROM system.tables");
    assert_eq!(status, 400, "{v}");
    let (status, v) = hogql(&mut http, 1, "phx_api_key_one", "SELECT count() FROM events WHERE team_id = 2");
    assert_eq!((status, v["results"][0][0].clone()), (200, json!(0)), "{v}");

    // Logs and metrics of the real invocations reach the API (persisted every second).
    let logs = wait(&server, "the function's logs", || {
        let (_, v) = call(
            &mut http,
            "GET",
            &format!("/api/projects/1/hog_functions/{id}/logs?limit=100"),
            "phx_api_key_one",
            None,
        );
        (v["results"].as_array().map_or(0, Vec::len) == 20).then_some(v)
    });
    assert!(logs["results"][0]["message"].as_str().unwrap().starts_with("saw one-"), "{logs}");
    let metrics = wait(&server, "the function's metrics", || {
        let (_, v) =
            call(&mut http, "GET", &format!("/api/projects/1/hog_functions/{id}/metrics"), "phx_api_key_one", None);
        (v["totals"]["invocations"] == 20).then_some(v)
    });
    assert_eq!(metrics["totals"]["succeeded"], 20, "{metrics}");

    // Disabled through the API: new events pass untouched.
    let (status, _) = call(
        &mut http,
        "PATCH",
        &format!("/api/projects/1/hog_functions/{id}"),
        "phx_api_key_one",
        Some(json!({"enabled": false})),
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(500));
    capture(&mut http, "phc_api_one", 3, "later");
    wait(&server, "the events captured after disabling", || {
        let (_, v) =
            hogql(&mut http, 1, "phx_api_key_one", "SELECT count(), countIf(properties.via_api = 'yes') FROM events");
        (v["results"][0][0] == 23).then_some(())
    });
    let (_, v) = hogql(&mut http, 1, "phx_api_key_one", "SELECT countIf(properties.via_api = 'yes') FROM events");
    assert_eq!(v["results"][0][0], 20, "{v}");

    // The function is in the state store: still there after a restart.
    server.stop();
    let server = Server::start(&config, &data);
    let mut http = Http::new(server.addr);
    let (status, again) =
        call(&mut http, "GET", &format!("/api/projects/1/hog_functions/{id}"), "phx_api_key_one", None);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["enabled"], false);
    assert_eq!(again["hog"], hog);
    server.stop();
}

/// `hogpipe api-keys`: a key created with one scope can query but not change functions; `list`
/// shows it masked; `delete` revokes it.
#[test]
fn api_keys_command_makes_scoped_keys() {
    let dir = TempDir::new("api-keys");
    let config = dir.path().join("hogpipe.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    // The first start records the config's projects in the state store.
    Server::start(&config, &data).stop();
    let keys = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hogpipe"))
            .arg("api-keys")
            .args(args)
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, key, err) = keys(&["create", "--project", "1", "--scope", "query:read", "--label", "dashboards"]);
    assert!(ok, "{err}");
    let key = key.trim().to_string();
    assert!(key.starts_with("phx_"), "{key}");
    let (ok, _, err) = keys(&["create", "--project", "1", "--scope", "everything"]);
    assert!(!ok && err.contains("unknown scope"), "{err}");
    let (ok, _, err) = keys(&["create", "--project", "9"]);
    assert!(!ok && err.contains("no project 9"), "{err}");
    let (_, list, _) = keys(&["list"]);
    let line = list.lines().find(|l| l.ends_with("dashboards")).unwrap_or_else(|| panic!("{list}"));
    assert!(!list.contains(&key), "keys are listed masked: {list}");
    assert!(line.contains("query:read"), "{line}");
    let id = line.split('\t').next().unwrap().to_string();

    let server = Server::start(&config, &data);
    let mut http = Http::new(server.addr);
    let (status, v) = hogql(&mut http, 1, &key, "SELECT count() FROM events");
    assert_eq!(status, 200, "{v}");
    let body = json!({"type": "transformation", "name": "t", "hog": "return event"});
    let (status, v) = call(&mut http, "POST", "/api/projects/1/hog_functions", &key, Some(body));
    assert_eq!(status, 403, "{v}");
    let (status, _) = hogql(&mut http, 2, &key, "SELECT count() FROM events");
    assert_eq!(status, 404);
    server.stop();

    let (ok, _, err) = keys(&["delete", &id]);
    assert!(ok, "{err}");
    let server = Server::start(&config, &data);
    let mut http = Http::new(server.addr);
    assert_eq!(hogql(&mut http, 1, &key, "SELECT 1").0, 401);
    server.stop();
}

/// A `source_webhook` function turns requests to `/public/webhooks/{id}` into events of its
/// project, validated like capture's and stored like them.
#[test]
fn source_webhooks_capture_events() {
    let dir = TempDir::new("api-webhooks");
    let config = dir.path().join("hogpipe.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&config, &data);
    let mut http = Http::new(server.addr);
    let hog = "if (request.body.type != 'charge') {\n  throw Error('unexpected type ' || request.body.type)\n}\n\
               print('charge for', request.body.customer)\n\
               postHogCapture({'event': 'stripe charge', 'distinct_id': request.body.customer,\n\
                 'properties': {'amount': request.body.amount, 'source': inputs.label}})";
    let body =
        json!({"type": "source_webhook", "name": "stripe", "hog": hog, "inputs": {"label": {"value": "stripe"}}});
    let (status, created) = call(&mut http, "POST", "/api/projects/2/hog_functions", "phx_api_key_two", Some(body));
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/public/webhooks/{id}");

    let post = |http: &mut Http, payload: Value| {
        let r = http.post_json(&path, payload.to_string().as_bytes()).unwrap();
        (r.status, serde_json::from_str::<Value>(&r.text()).unwrap_or(Value::Null))
    };
    for (customer, amount) in [("cus_1", 1200), ("cus_2", 300)] {
        let (status, v) = post(&mut http, json!({"type": "charge", "customer": customer, "amount": amount}));
        assert_eq!((status, v["events"].clone()), (200, json!(1)), "{v}");
    }
    let (status, v) = post(&mut http, json!({"type": "refund", "customer": "cus_1"}));
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("unexpected type refund"), "{v}");
    assert_eq!(http.post_json("/public/webhooks/nope", b"{}").unwrap().status, 404);

    let rows = wait(&server, "the webhook's events in project 2", || {
        let (_, v) = hogql(
            &mut http,
            2,
            "phx_api_key_two",
            "SELECT distinct_id, properties.amount, properties.source FROM events WHERE event = 'stripe charge' ORDER BY distinct_id",
        );
        (v["results"].as_array().map_or(0, Vec::len) == 2).then_some(v)
    });
    assert_eq!(rows["results"], json!([["cus_1", "1200", "stripe"], ["cus_2", "300", "stripe"]]), "{rows}");
    let (_, one) = hogql(&mut http, 1, "phx_api_key_one", "SELECT count() FROM events WHERE event = 'stripe charge'");
    assert_eq!(one["results"][0][0], 0, "project 1 got none of them");

    // Disabled: the address answers 404.
    let (status, _) = call(
        &mut http,
        "PATCH",
        &format!("/api/projects/2/hog_functions/{id}"),
        "phx_api_key_two",
        Some(json!({"enabled": false})),
    );
    assert_eq!(status, 200);
    assert_eq!(post(&mut http, json!({"type": "charge", "customer": "cus_3", "amount": 1})).0, 404);
    server.stop();
}
