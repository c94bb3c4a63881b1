//! Every `/api` route through `app(state).oneshot(...)`: auth failures, cross-project access,
//! validation errors with the field named, compile diagnostics with line and column, function
//! CRUD reaching the running set, test runs with mocked `fetch`, templates, and the OpenAPI
//! description. (The query routes are in `query.rs`, against real warehouses.)

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use hogpipe_api::deploy::Deployment;
use hogpipe_api::store::{ProjectSeed, Store, StoreConfig};
use hogpipe_api::{app, ApiState};
use hogpipe_dataflow::functions::{FunctionKind, Registry};
use hogpipe_dataflow::health::{HealthConfig, Watcher};
use hogpipe_destinations::invoke::{Invoker, InvokerOptions};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const KEY_1: &str = "phx_key_for_project_one_000000000000000000000";
const KEY_2: &str = "phx_key_for_project_two_000000000000000000000";
const READ_ONLY: &str = "phx_read_only_key_for_project_one_00000000000";

struct Harness {
    _dir: tempfile::TempDir,
    state: Arc<ApiState>,
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&StoreConfig::default(), dir.path()).unwrap());
    store
        .sync_projects(&[
            ProjectSeed { id: 1, name: "One".into(), token: "phc_one".into(), api_keys: vec![KEY_1.into()] },
            ProjectSeed { id: 2, name: "Two".into(), token: "phc_two".into(), api_keys: vec![KEY_2.into()] },
        ])
        .unwrap();
    store.add_api_key(READ_ONLY, "read only", &[1], &["hog_function:read".to_string()]).unwrap();
    let registry = Arc::new(Registry::new(Vec::new()));
    let invoker = Arc::new(Invoker::new(InvokerOptions::default()));
    let watcher = Arc::new(Watcher::new(HealthConfig::default()));
    let deployment = Arc::new(Deployment::new(registry.clone(), invoker.clone(), Some(watcher), store.clone()));
    let state = Arc::new(ApiState { deployment: Some(deployment), ..ApiState::new(store) });
    Harness { _dir: dir, state, registry, invoker }
}

impl Harness {
    async fn call(&self, method: Method, uri: &str, key: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let resp = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
        };
        (status, value)
    }
}

const TRANSFORM: &str = "let e := event\ne.properties.hashed := sha256Hex(e.properties.email ?? '')\nprint('hashed', e.distinct_id)\nreturn e";

#[tokio::test]
async fn auth_is_required_and_keys_see_only_their_projects() {
    let h = harness();
    let (s, body) = h.call(Method::GET, "/api/projects", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].as_str().unwrap().contains("Bearer"), "{body}");
    let (s, _) = h.call(Method::GET, "/api/projects", Some("phx_wrong"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = h.call(Method::GET, "/api/projects", Some("phc_one"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a capture token cannot call the API");
    assert!(body["detail"].as_str().unwrap().contains("capture token"), "{body}");

    let (s, body) = h.call(Method::GET, "/api/projects", Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["results"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["results"][0]["id"], 1);
    assert_eq!(body["results"][0]["api_token"], "phc_one");
    let (s, _) = h.call(Method::GET, "/api/projects/2", Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another project is invisible");
    let (s, _) = h.call(Method::GET, "/api/projects/2/hog_functions", Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h.call(Method::GET, "/api/projects/99/hog_functions", Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h.call(Method::GET, "/api/nothing/here", Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn scopes_limit_what_a_key_does() {
    let h = harness();
    let (s, _) = h.call(Method::GET, "/api/projects/1/hog_functions", Some(READ_ONLY), None).await;
    assert_eq!(s, StatusCode::OK);
    let body = json!({"type": "transformation", "name": "t", "hog": "return event"});
    let (s, out) = h.call(Method::POST, "/api/projects/1/hog_functions", Some(READ_ONLY), Some(body)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{out}");
    assert!(out["detail"].as_str().unwrap().contains("hog_function:write"), "{out}");
    let (s, _) = h.call(Method::GET, "/api/projects/2/hog_functions", Some(READ_ONLY), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a foreign project is a 404 whatever the scopes");
}

#[tokio::test]
async fn transformation_crud_reaches_the_running_set() {
    let h = harness();
    let body = json!({"type": "transformation", "name": "hash email", "hog": TRANSFORM, "execution_order": 2,
                      "filters": {"events": [{"id": "$pageview"}]}});
    let (s, created) = h.call(Method::POST, "/api/projects/1/hog_functions", Some(KEY_1), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["type"], "transformation");
    assert_eq!(created["bytecode"][0], "_H");
    assert_eq!(created["execution_order"], 2);
    let running = h.registry.snapshot();
    let spec = running.functions.iter().find(|f| f.id == id).expect("deployed");
    assert_eq!(spec.kind, FunctionKind::Transformation);
    assert!(spec.filter.is_some());

    let (s, list) = h.call(Method::GET, "/api/projects/1/hog_functions", Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["count"], 1);
    let (s, _) = h.call(Method::GET, &format!("/api/projects/2/hog_functions/{id}"), Some(KEY_2), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "project 2's key cannot see it, even under its own project");
    let (s, _) = h.call(Method::GET, "/api/projects/2/hog_functions", Some(KEY_2), None).await.clone();
    assert_eq!(s, StatusCode::OK);

    let (s, off) = h
        .call(
            Method::PATCH,
            &format!("/api/projects/1/hog_functions/{id}"),
            Some(KEY_1),
            Some(json!({"enabled": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{off}");
    assert_eq!(off["enabled"], false);
    assert!(!h.registry.snapshot().functions.iter().find(|f| f.id == id).unwrap().enabled);

    let (s, _) = h.call(Method::DELETE, &format!("/api/projects/1/hog_functions/{id}"), Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(h.registry.snapshot().functions.iter().all(|f| f.id != id));
    let (s, _) = h.call(Method::GET, &format!("/api/projects/1/hog_functions/{id}"), Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn compile_errors_list_diagnostics_with_line_and_column() {
    let h = harness();
    let body = json!({"type": "transformation", "name": "broken", "hog": "let a := 1\nreturn a +"});
    let (s, out) = h.call(Method::POST, "/api/projects/1/hog_functions", Some(KEY_1), Some(body)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{out}");
    assert_eq!(out["attr"], "hog");
    let d = &out["diagnostics"][0];
    assert_eq!(d["line"], 2, "{out}");
    assert!(d["column"].as_u64().unwrap() >= 9, "{out}");
    assert!(!d["message"].as_str().unwrap().is_empty());

    let (s, out) = h.call(Method::POST, "/api/hog/compile", Some(KEY_1), Some(json!({"hog": "return 1 +"}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(out["diagnostics"][0]["line"], 1);
    let (s, out) = h.call(Method::POST, "/api/hog/compile", Some(KEY_1), Some(json!({"hog": "return 1 + 2"}))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(out["bytecode"][0], "_H");
    let (s, _) = h.call(Method::POST, "/api/hog/compile", None, Some(json!({"hog": "return 1"}))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let h = harness();
    let cases = [
        (json!({"type": "nope", "hog": "return event"}), "type"),
        (json!({"type": "transformation"}), "hog"),
        (json!({"type": "destination", "template_id": "template-nope"}), "template_id"),
        (json!({"type": "transformation", "template_id": "template-webhook"}), "template_id"),
        (
            json!({"type": "destination", "template_id": "template-webhook", "inputs": {"url": {"value": 5}}}),
            "inputs.url",
        ),
        (
            json!({"type": "destination", "template_id": "template-webhook", "inputs": {"url": "https://x"}}),
            "inputs.url",
        ),
        (
            json!({"type": "destination", "template_id": "template-webhook", "inputs": {"url": {"value": "https://x"}},
                "filters": {"properties": [{"key": "a", "operator": "between", "value": 1}]}}),
            "filters.properties[0].operator",
        ),
    ];
    for (body, attr) in cases {
        let (s, out) = h.call(Method::POST, "/api/projects/1/hog_functions", Some(KEY_1), Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {out}");
        assert_eq!(out["attr"], attr, "{body} → {out}");
        assert!(!out["detail"].as_str().unwrap().is_empty());
    }
    let (s, out) = h.call(Method::POST, "/api/projects/1/hog_functions", Some(KEY_1), Some(json!({"hogg": "x"}))).await;
    assert!(s.is_client_error(), "unknown fields are refused: {s} {out}");
    assert!(h.registry.snapshot().functions.is_empty(), "nothing invalid was deployed");
}

#[tokio::test]
async fn destination_from_template_hides_secrets_and_test_runs_with_mocked_fetch() {
    let h = harness();
    let body = json!({
        "type": "destination", "template_id": "template-webhook", "name": "hook",
        "inputs": {"url": {"value": "https://hooks.example.com/in"}, "method": {"value": "POST"},
                   "body": {"value": {"event": "{event.event}", "who": "{event.distinct_id}"}},
                   "headers": {"value": {"Authorization": "Bearer s3cr3t-token"}}},
        "filters": {"events": [{"id": "signup"}]}
    });
    let (s, created) = h.call(Method::POST, "/api/projects/1/hog_functions", Some(KEY_1), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["template_id"], "template-webhook");
    assert!(h.invoker.get(&id).is_some(), "the destination is live");

    let event = json!({"event": "signup", "distinct_id": "u1", "properties": {"plan": "pro"}});
    let run = json!({"globals": {"event": event}, "mock_async_functions": true,
                     "mock_responses": [{"status": 200, "body": {"ok": true}}]});
    let uri = format!("/api/projects/1/hog_functions/{id}/invocations");
    let (s, out) = h.call(Method::POST, &uri, Some(KEY_1), Some(run)).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "success", "{out}");
    let req = &out["requests"][0];
    assert_eq!(req["url"], "https://hooks.example.com/in");
    assert_eq!(req["method"], "POST");
    let sent: Value = serde_json::from_str(req["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"event": "signup", "who": "u1"}));

    // The filter: a $pageview is skipped.
    let run = json!({"globals": {"event": {"event": "$pageview", "distinct_id": "u1", "properties": {}}}});
    let (_, out) = h.call(Method::POST, &uri, Some(KEY_1), Some(run)).await;
    assert_eq!(out["status"], "skipped", "{out}");
    assert!(out["requests"].as_array().unwrap().is_empty());

    // A 4xx from the service is the function's error.
    let run = json!({"globals": {"event": event}, "mock_responses": [{"status": 400, "body": {"error": "bad"}}]});
    let (_, out) = h.call(Method::POST, &uri, Some(KEY_1), Some(run)).await;
    assert_eq!(out["status"], "error", "{out}");
    assert!(out["error"].as_str().unwrap().contains("400"), "{out}");
}

#[tokio::test]
async fn transformation_test_run_returns_the_modified_event_and_logs() {
    let h = harness();
    let body = json!({"type": "transformation", "name": "hash", "hog": TRANSFORM});
    let (_, created) = h.call(Method::POST, "/api/projects/1/hog_functions", Some(KEY_1), Some(body)).await;
    let id = created["id"].as_str().unwrap();
    let uri = format!("/api/projects/1/hog_functions/{id}/invocations");
    let run =
        json!({"globals": {"event": {"event": "$pageview", "distinct_id": "d1", "properties": {"email": "a@b.c"}}}});
    let (s, out) = h.call(Method::POST, &uri, Some(KEY_1), Some(run)).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "success", "{out}");
    use sha2::Digest;
    let expected: String = sha2::Sha256::digest(b"a@b.c").iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(out["result"]["properties"]["hashed"], expected.as_str(), "{out}");
    assert_eq!(out["result"]["properties"]["email"], "a@b.c");
    assert_eq!(out["logs"][0]["message"], "hashed d1", "{out}");

    // Unsaved changes are tried without saving them.
    let run = json!({"configuration": {"hog": "throw Error('nope')"}});
    let (_, out) = h.call(Method::POST, &uri, Some(KEY_1), Some(run)).await;
    assert_eq!(out["status"], "error", "{out}");
    assert!(out["error"].as_str().unwrap().contains("nope"), "{out}");
    let (_, stored) = h.call(Method::GET, &format!("/api/projects/1/hog_functions/{id}"), Some(KEY_1), None).await;
    assert_eq!(stored["hog"], TRANSFORM, "the test run saved nothing");

    // Dropping an event.
    let run = json!({"configuration": {"hog": "return null"}});
    let (_, out) = h.call(Method::POST, &uri, Some(KEY_1), Some(run)).await;
    assert_eq!(out["status"], "success", "{out}");
    assert!(out["result"].is_null());
    let run = json!({"globals": {"event": {"event": 5}}});
    let (s, out) = h.call(Method::POST, &uri, Some(KEY_1), Some(run)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(out["attr"], "globals.event.event");
}

#[tokio::test]
async fn templates_and_schema() {
    let h = harness();
    let (s, list) = h.call(Method::GET, "/api/hog_function_templates", Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(list["count"].as_u64().unwrap() >= 50);
    let (s, one) = h.call(Method::GET, "/api/hog_function_templates/template-slack", Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["type"], "destination");
    assert!(one["hog"].as_str().unwrap().contains("fetch"));
    let (s, _) = h.call(Method::GET, "/api/hog_function_templates/template-nope", Some(KEY_1), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, schema) = h.call(Method::GET, "/api/schema", None, None).await;
    assert_eq!(s, StatusCode::OK, "the description is public");
    assert!(schema["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/api/projects/{project_id}/hog_functions", "/api/projects/{project_id}/query", "/api/hog/compile"] {
        assert!(schema["paths"].get(path).is_some(), "{path} is described");
    }
}

#[tokio::test]
async fn secret_inputs_are_never_returned() {
    let h = harness();
    let schema = json!([{"key": "url", "type": "string", "label": "URL", "required": true},
                        {"key": "token", "type": "string", "label": "Token", "secret": true, "required": true}]);
    let hog = "fetch(inputs.url, {'headers': {'Authorization': f'Bearer {inputs.token}'}})";
    let body = json!({"type": "destination", "name": "s", "hog": hog, "inputs_schema": schema,
                      "inputs": {"url": {"value": "https://x.example/"}, "token": {"value": "tok-very-secret"}}});
    let (s, created) = h.call(Method::POST, "/api/projects/1/hog_functions", Some(KEY_1), Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["inputs"]["token"], json!({"secret": true}));
    assert!(!created.to_string().contains("tok-very-secret"));
    let id = created["id"].as_str().unwrap();
    let uri = format!("/api/projects/1/hog_functions/{id}");
    // Sending back what GET showed keeps the secret.
    let (s, updated) = h
        .call(Method::PATCH, &uri, Some(KEY_1), Some(json!({"name": "s2", "inputs": created["inputs"].clone()})))
        .await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert!(!updated.to_string().contains("tok-very-secret"));
    let (_, run) = h.call(Method::POST, &format!("{uri}/invocations"), Some(KEY_1), Some(json!({}))).await;
    assert_eq!(run["status"], "success", "{run}");
    let headers = run["requests"][0]["headers"].to_string();
    assert!(headers.contains("Bearer ***"), "the stored secret is used, and masked in the answer: {run}");
    assert!(!run.to_string().contains("tok-very-secret"), "{run}");
}

#[tokio::test]
async fn source_webhook_test_run_shows_the_events_it_would_capture() {
    let h = harness();
    let hog = "postHogCapture({'event': 'order', 'distinct_id': request.body.user, 'properties': {'total': request.body.total}})";
    let (s, created) = h
        .call(
            Method::POST,
            "/api/projects/1/hog_functions",
            Some(KEY_1),
            Some(json!({"type": "source_webhook", "name": "orders", "hog": hog})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap();
    let run = json!({"globals": {"request": {"method": "POST", "body": {"user": "u7", "total": 42}, "headers": {}, "query": {}}}});
    let (s, out) =
        h.call(Method::POST, &format!("/api/projects/1/hog_functions/{id}/invocations"), Some(KEY_1), Some(run)).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "success", "{out}");
    assert_eq!(out["result"]["events"], json!([{"event": "order", "distinct_id": "u7", "properties": {"total": 42}}]));
    assert!(h.registry.snapshot().functions.iter().all(|f| f.id != id), "source webhooks do not run in the dataflow");
}

/// A loopback port with nothing listening (connections are refused at once).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

/// The delivery engine owns a runtime of its own: it is opened and dropped outside the test's.
#[test]
fn dead_letters_are_listed_masked_replayed_and_deleted() {
    use hogpipe_destinations::engine::{DestinationSettings, Engine, EngineConfig, Job};
    use hogpipe_destinations::http::HttpRequest;
    let h = harness();
    let dir = tempfile::tempdir().unwrap();
    let settings = DestinationSettings {
        max_attempts: 1,
        timeout: std::time::Duration::from_secs(2),
        ..DestinationSettings::default()
    };
    let config = EngineConfig { defaults: settings, ..EngineConfig::default() };
    let key = hogpipe_destinations::secret_key::SecretKey::generate();
    let engine = Arc::new(Engine::open(dir.path(), &key, config, h.invoker.clone()).unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let engine_for_test = engine.clone();
    rt.block_on(async move {
        let engine = engine_for_test;
        let request = |token: &str| HttpRequest {
            method: "POST".into(),
            url: format!("http://127.0.0.1:{}/hook", closed_port()),
            headers: vec![("authorization".into(), format!("Bearer {token}")), ("x-key".into(), "sekret-1234".into())],
            body: Some("{\"k\":\"sekret-1234\"}".into()),
        };
        let jobs = vec![
            Job { function_id: "f-one".into(), team_id: 1, request: request("t1"), state: Vec::new() },
            Job { function_id: "f-two".into(), team_id: 2, request: request("t2"), state: Vec::new() },
        ];
        engine.enqueue(jobs).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while engine.dead_letters(None).unwrap().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "no dead letters");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // A stored function of project 1 whose secret input appears in the request.
        let schema = json!([{"key": "key", "type": "string", "label": "Key", "secret": true, "required": true}]);
        let body = json!({"type": "destination", "name": "d", "hog": "fetch('http://x/', {})", "inputs_schema": schema,
                      "inputs": {"key": {"value": "sekret-1234"}}});
        let (s, _) = h.call(Method::POST, "/api/projects/1/hog_functions", Some(KEY_1), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED);
        let h = Harness {
            state: Arc::new(ApiState { engine: Some(engine.clone()), ..ApiState::new(h.state.store.clone()) }),
            ..h
        };

        let (s, list) = h.call(Method::GET, "/api/projects/1/dead_letters", Some(KEY_1), None).await;
        assert_eq!(s, StatusCode::OK, "{list}");
        assert_eq!(list["count"], 1, "only project 1's: {list}");
        let dl = &list["results"][0];
        assert_eq!(dl["function_id"], "f-one");
        assert!(!list.to_string().contains("sekret-1234") && !list.to_string().contains("Bearer t1"), "masked: {list}");
        assert_eq!(dl["request"]["headers"][0][1], "***");
        let id = dl["id"].as_i64().unwrap();
        let (s, one) = h.call(Method::GET, &format!("/api/projects/1/dead_letters/{id}"), Some(KEY_1), None).await;
        assert_eq!((s, one["id"].as_i64()), (StatusCode::OK, Some(id)), "{one}");
        let (s, _) = h.call(Method::GET, &format!("/api/projects/2/dead_letters/{id}"), Some(KEY_2), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "project 2 cannot see project 1's dead letter");

        let (s, replayed) =
            h.call(Method::POST, &format!("/api/projects/1/dead_letters/{id}/replay"), Some(KEY_1), None).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{replayed}");
        assert!(replayed["job_id"].as_i64().is_some());
        let others: Vec<i64> = engine.dead_letters(Some("f-two")).unwrap().iter().map(|d| d.id).collect();
        let (s, _) =
            h.call(Method::DELETE, &format!("/api/projects/1/dead_letters/{}", others[0]), Some(KEY_1), None).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "not project 1's to delete");
        let (s, _) =
            h.call(Method::DELETE, &format!("/api/projects/2/dead_letters/{}", others[0]), Some(KEY_2), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert!(engine.dead_letters(Some("f-two")).unwrap().is_empty());
    });
    drop(rt);
    match Arc::try_unwrap(engine) {
        Ok(engine) => engine.shutdown(),
        Err(_) => panic!("the engine is still shared"),
    }
}

#[tokio::test]
async fn limits_are_enforced() {
    let h = harness();
    // Request bodies over 2 MiB are refused before any handler runs.
    let big = json!({"hog": "x".repeat(hogpipe_api::routes::MAX_BODY_BYTES)});
    let (s, _) = h.call(Method::POST, "/api/hog/compile", Some(KEY_1), Some(big)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // Hog source over 1 MiB (inside the body limit) is a 400 naming the field.
    let source = format!("return 1 {}", " ".repeat(hogpipe_api::routes::compile::MAX_SOURCE_BYTES));
    let (s, out) = h.call(Method::POST, "/api/hog/compile", Some(KEY_1), Some(json!({"hog": source}))).await;
    assert_eq!((s, out["attr"].clone()), (StatusCode::BAD_REQUEST, json!("hog")), "{out}");
    // A test run calls fetch at most as often as a real invocation (5 times).
    let hog = "for (let i := 0; i < 10; i := i + 1) { fetch('https://x.example/', {}) }";
    let (_, created) = h
        .call(
            Method::POST,
            "/api/projects/1/hog_functions",
            Some(KEY_1),
            Some(json!({"type": "destination", "name": "loop", "hog": hog})),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let (s, out) = h
        .call(Method::POST, &format!("/api/projects/1/hog_functions/{id}/invocations"), Some(KEY_1), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "error", "{out}");
    assert_eq!(out["requests"].as_array().unwrap().len(), 5, "{out}");
}
