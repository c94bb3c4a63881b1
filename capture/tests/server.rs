//! The capture endpoints end to end over a real WAL in a temp dir: routes, payload shapes, token
//! and distinct-id rules, every error answer, back-pressure, rate limits, metrics.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hogpipe_capture::event::CapturedEvent;
use hogpipe_capture::log::wal::{Wal, WalConfig};
use hogpipe_capture::server::{app, CaptureConfig, CaptureState, RateLimit, StaticTokens};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "phc_test";
/// The token in the lz-string fixture batch.
const LZ_TOKEN: &str = "phc_abcdefghijklmnopqrstuvwxyz0123456789ABCDEF";

struct Fixture {
    _dir: tempfile::TempDir,
    wal: Arc<Wal>,
    state: Arc<CaptureState>,
}

fn fixture_with(config: CaptureConfig, wal_config: impl FnOnce(&mut WalConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut wc = WalConfig::new(dir.path().join("log"));
    wc.partitions = 4;
    wal_config(&mut wc);
    let wal = Arc::new(Wal::open(wc).unwrap());
    let tokens =
        StaticTokens(HashMap::from([(TOKEN.to_string(), 1), ("phc_other".to_string(), 2), (LZ_TOKEN.to_string(), 3)]));
    let state = CaptureState::new(config, wal.clone(), Arc::new(tokens));
    Fixture { _dir: dir, wal, state }
}

fn fixture() -> Fixture {
    fixture_with(CaptureConfig::default(), |_| {})
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl Fixture {
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = app(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        Answer { status, headers, body }
    }

    async fn post(&self, path: &str, body: impl Into<Body>) -> Answer {
        self.send(Request::post(path).header("content-type", "application/json").body(body.into()).unwrap()).await
    }

    async fn post_json(&self, path: &str, body: Value) -> Answer {
        self.post(path, body.to_string()).await
    }

    /// Every record in the log, all partitions.
    fn events(&self) -> Vec<CapturedEvent> {
        let mut out = Vec::new();
        for p in 0..self.wal.partitions() {
            for r in self.wal.read(p, 0, usize::MAX).unwrap() {
                let e = CapturedEvent::from_json(&r.value).unwrap();
                assert_eq!(r.key, e.key().into_bytes(), "record key is token:distinct_id");
                assert_eq!(p, self.wal.partition_for(&r.key));
                out.push(e);
            }
        }
        out
    }
}

fn ok(a: &Answer) {
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body, json!({"status": 1}));
}

fn err(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.body);
    assert_eq!(a.body["status"], json!(status), "{}", a.body);
    assert_eq!(a.body["code"], json!(code), "{}", a.body);
    assert!(a.body["error"].as_str().is_some_and(|m| !m.is_empty()), "{}", a.body);
}

#[tokio::test]
async fn every_endpoint_with_and_without_slash() {
    let f = fixture();
    let paths = ["/e", "/i/v0/e", "/capture", "/track", "/engage", "/batch"];
    for path in paths {
        for p in [path.to_string(), format!("{path}/")] {
            let a = f.post_json(&p, json!({"api_key": TOKEN, "event": "ev", "distinct_id": p})).await;
            ok(&a);
        }
    }
    let events = f.events();
    assert_eq!(events.len(), 12);
    let ids: std::collections::BTreeSet<_> = events.iter().map(|e| e.distinct_id.clone()).collect();
    assert_eq!(ids.len(), 12);
    let m = f.state.metrics.render();
    assert!(m.contains("hogpipe_capture_requests_received_total{endpoint=\"i_v0_e\",status=\"200\"} 2"), "{m}");
    assert!(m.contains("hogpipe_capture_events_accepted_total 12"), "{m}");
}

#[tokio::test]
async fn payload_shapes() {
    let f = fixture();
    ok(&f.post_json("/e", json!({"token": TOKEN, "event": "single", "distinct_id": "a"})).await);
    ok(&f.post_json("/e", json!([{"token": TOKEN, "event": "arr1", "distinct_id": "a"}, {"token": TOKEN, "event": "arr2", "distinct_id": "a"}])).await);
    ok(&f
        .post_json(
            "/batch",
            json!({"api_key": TOKEN, "sent_at": "2024-01-01T00:00:10Z", "batch": [
                {"event": "b1", "distinct_id": "a", "timestamp": "2024-01-01T00:00:00Z"},
                {"event": "b2", "distinct_id": "a", "properties": {"x": [1, 2, {"y": null}]}}
            ]}),
        )
        .await);
    let mut names: Vec<String> =
        f.events().iter().map(|e| e.data_json().unwrap()["event"].as_str().unwrap().to_string()).collect();
    names.sort();
    assert_eq!(names, ["arr1", "arr2", "b1", "b2", "single"]);
    // Same key → same partition → order kept.
    let events = f.events();
    let order: Vec<_> = events.iter().map(|e| e.data_json().unwrap()["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(order, ["single", "arr1", "arr2", "b1", "b2"]);
    let b2 = events.iter().find(|e| e.data.contains("\"b2\"")).unwrap();
    assert_eq!(b2.sent_at.as_deref(), Some("2024-01-01T00:00:10.000Z"));
    assert_eq!(b2.data_json().unwrap()["properties"], json!({"x": [1, 2, {"y": null}]}));
}

#[tokio::test]
async fn data_is_kept_verbatim() {
    let f = fixture();
    let raw = r#"{"event":"v","distinct_id":"d","token":"phc_test","properties":{"emoji":"🦔","esc":"a\"b\\c\n","n":1.50,"big":12345678901234567890}}"#;
    ok(&f.post("/e", raw).await);
    let e = &f.events()[0];
    assert_eq!(e.data, raw);
    assert_eq!(e.token, TOKEN);
    assert_eq!(e.ip, "127.0.0.1");
}

#[tokio::test]
async fn token_sources() {
    let f = fixture();
    for event in [
        json!({"token": TOKEN, "event": "t1", "distinct_id": "a"}),
        json!({"$token": TOKEN, "event": "t2", "distinct_id": "a"}),
        json!({"api_key": TOKEN, "event": "t3", "distinct_id": "a"}),
        json!({"event": "t4", "distinct_id": "a", "properties": {"token": TOKEN}}),
    ] {
        ok(&f.post_json("/e", event).await);
    }
    assert!(f.events().iter().all(|e| e.token == TOKEN));
    // The batch's token applies to events without their own.
    ok(&f.post_json("/batch", json!({"api_key": TOKEN, "batch": [{"event": "x", "distinct_id": "a"}]})).await);
    // Events before the first one with a token get it too.
    ok(&f
        .post_json(
            "/e",
            json!([{"event": "x", "distinct_id": "b"}, {"event": "y", "distinct_id": "c", "token": TOKEN}]),
        )
        .await);
    assert!(f.events().iter().all(|e| e.token == TOKEN));
    assert_eq!(f.events().len(), 7);
}

#[tokio::test]
async fn token_errors() {
    let f = fixture();
    err(&f.post_json("/e", json!({"event": "x", "distinct_id": "a"})).await, 401, "no_token");
    err(&f.post_json("/e", json!({"token": "", "event": "x", "distinct_id": "a"})).await, 401, "no_token");
    err(&f.post_json("/e", json!({"token": "phc bad", "event": "x", "distinct_id": "a"})).await, 401, "invalid_token");
    err(
        &f.post_json("/e", json!({"token": "x".repeat(65), "event": "x", "distinct_id": "a"})).await,
        401,
        "invalid_token",
    );
    err(
        &f.post_json("/e", json!({"token": "phc_unknown", "event": "x", "distinct_id": "a"})).await,
        403,
        "unknown_token",
    );
    err(&f.post_json("/e", json!({"token": 5, "event": "x", "distinct_id": "a"})).await, 400, "invalid_payload");
    let mixed = f
        .post_json("/e", json!([{"token": TOKEN, "event": "x", "distinct_id": "a"}, {"token": "phc_other", "event": "x", "distinct_id": "a"}]))
        .await;
    err(&mixed, 400, "multiple_tokens");
    assert!(mixed.body["error"].as_str().unwrap().starts_with("batch[1]"));
    assert!(f.events().is_empty(), "nothing from a refused request is written");
}

#[tokio::test]
async fn distinct_id_rules() {
    let f = fixture();
    ok(&f.post_json("/e", json!({"token": TOKEN, "event": "x", "distinct_id": 42})).await);
    ok(&f.post_json("/e", json!({"token": TOKEN, "event": "x", "$distinct_id": "dollar"})).await);
    ok(&f.post_json("/e", json!({"token": TOKEN, "event": "x", "properties": {"distinct_id": "in-props"}})).await);
    ok(&f.post_json("/e", json!({"token": TOKEN, "event": "x", "distinct_id": "é".repeat(300)})).await);
    ok(&f.post_json("/e", json!({"token": TOKEN, "event": "x", "distinct_id": "q\"uote"})).await);
    let mut ids: Vec<String> = f.events().iter().map(|e| e.distinct_id.clone()).collect();
    ids.sort();
    assert_eq!(ids[0], "42");
    assert_eq!(ids[1], "dollar");
    assert_eq!(ids[2], "in-props");
    assert_eq!(ids[3], "q\"uote");
    assert_eq!(ids[4], "é".repeat(200), "cut to 200 characters");
    for bad in [json!(null), json!("")] {
        let a = f.post_json("/e", json!({"token": TOKEN, "event": "x", "distinct_id": bad})).await;
        err(&a, 400, "missing_distinct_id");
        assert!(a.body["error"].as_str().unwrap().starts_with("event:"), "{}", a.body);
    }
    let a = f
        .post_json("/batch", json!({"api_key": TOKEN, "batch": [{"event": "x", "distinct_id": "a"}, {"event": "x"}]}))
        .await;
    err(&a, 400, "missing_distinct_id");
    assert!(a.body["error"].as_str().unwrap().starts_with("batch[1]:"), "{}", a.body);
}

#[tokio::test]
async fn uuids_kept_generated_or_refused() {
    let f = fixture();
    let given = "0190a6b2-1c2d-7e3f-8a9b-0c1d2e3f4a5b";
    ok(&f.post_json("/e", json!({"token": TOKEN, "event": "x", "distinct_id": "a", "uuid": given})).await);
    ok(&f.post_json("/e", json!({"token": TOKEN, "event": "x", "distinct_id": "a"})).await);
    ok(&f
        .post_json(
            "/e",
            json!({"token": TOKEN, "event": "x", "distinct_id": "a", "uuid": "0190A6B21C2D7E3F8A9B0C1D2E3F4A5C"}),
        )
        .await);
    let events = f.events();
    assert_eq!(events[0].uuid, given);
    let generated = uuid::Uuid::parse_str(&events[1].uuid).unwrap();
    assert_eq!(generated.get_version_num(), 7);
    assert_eq!(events[2].uuid, "0190a6b2-1c2d-7e3f-8a9b-0c1d2e3f4a5c", "normalized to hyphenated lowercase");
    let a = f.post_json("/e", json!({"token": TOKEN, "event": "x", "distinct_id": "a", "uuid": "not-a-uuid"})).await;
    err(&a, 400, "invalid_uuid");
    assert!(a.body["error"].as_str().unwrap().contains("not-a-uuid"));
}

#[tokio::test]
async fn payload_errors_name_what_is_wrong() {
    let f = fixture();
    let a = f.post("/e", "{\"event\": ").await;
    err(&a, 400, "invalid_payload");
    assert!(a.body["error"].as_str().unwrap().contains("not valid JSON"), "{}", a.body);
    err(&f.post("/e", "42").await, 400, "invalid_payload");
    err(&f.post("/e", "[1, 2]").await, 400, "invalid_payload");
    err(&f.post_json("/batch", json!({"api_key": TOKEN, "batch": []})).await, 400, "empty_batch");
    err(&f.post("/e", "[]").await, 400, "empty_batch");
    err(&f.post_json("/e", json!({"token": TOKEN, "distinct_id": "a"})).await, 400, "missing_event_name");
    err(&f.post_json("/e", json!({"token": TOKEN, "event": "", "distinct_id": "a"})).await, 400, "missing_event_name");
    let a = f.post_json("/e", json!({"token": TOKEN, "event": "x", "distinct_id": "a", "properties": "str"})).await;
    err(&a, 400, "invalid_payload");
    assert!(a.body["error"].as_str().unwrap().contains("`properties` must be an object"), "{}", a.body);
    err(&f.post("/e", Body::empty()).await, 400, "invalid_payload");
    let put = f.send(Request::put("/e").body(Body::from("{}")).unwrap()).await;
    err(&put, 405, "method_not_allowed");
    assert!(f.events().is_empty());
}

#[tokio::test]
async fn engage_defaults_to_identify() {
    let f = fixture();
    ok(&f.post_json("/engage", json!({"token": TOKEN, "distinct_id": "p", "$set": {"email": "a@b.c"}})).await);
    let data = f.events()[0].data_json().unwrap();
    assert_eq!(data["event"], "$identify");
    assert_eq!(data["$set"], json!({"email": "a@b.c"}));
}

#[tokio::test]
async fn body_limits() {
    let f =
        fixture_with(CaptureConfig { max_body_bytes: 1000, max_batch_body_bytes: 5000, ..Default::default() }, |_| {});
    let big = json!({"token": TOKEN, "event": "x", "distinct_id": "a", "properties": {"p": "y".repeat(2000)}});
    err(&f.post_json("/e", big.clone()).await, 413, "payload_too_large");
    ok(&f.post_json("/batch", json!({"api_key": TOKEN, "batch": [big]})).await);
    // Without a Content-Length (chunked), the limit holds while reading.
    let chunks = futures_chunks("y".repeat(3000));
    let a = f.send(Request::post("/e").body(chunks).unwrap()).await;
    err(&a, 413, "payload_too_large");
    let small = fixture_with(CaptureConfig { max_event_bytes: 500, ..Default::default() }, |_| {});
    let a = small
        .post_json(
            "/e",
            json!({"token": TOKEN, "event": "x", "distinct_id": "a", "properties": {"p": "y".repeat(600)}}),
        )
        .await;
    err(&a, 413, "event_too_large");
}

fn futures_chunks(text: String) -> Body {
    let stream = tokio_stream_from(text.into_bytes().chunks(100).map(|c| c.to_vec()).collect());
    Body::from_stream(stream)
}

fn tokio_stream_from(chunks: Vec<Vec<u8>>) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    struct Chunks(std::collections::VecDeque<Vec<u8>>);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.pop_front().map(Ok))
        }
    }
    Chunks(chunks.into())
}

#[tokio::test]
async fn cors() {
    let f = fixture();
    let pre = f
        .send(
            Request::options("/e/")
                .header("origin", "https://app.example.com")
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(pre.status, StatusCode::OK);
    assert_eq!(pre.headers["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(pre.headers["access-control-allow-credentials"], "true");
    assert!(pre.headers["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert_eq!(pre.headers["access-control-allow-headers"], "content-type");
    let a = f
        .send(
            Request::post("/e")
                .header("origin", "https://app.example.com")
                .body(Body::from(json!({"token": TOKEN, "event": "x", "distinct_id": "a"}).to_string()))
                .unwrap(),
        )
        .await;
    ok(&a);
    assert_eq!(a.headers["access-control-allow-origin"], "https://app.example.com");
    let e = f.post_json("/e", json!({})).await;
    assert_eq!(e.headers["access-control-allow-origin"], "*", "errors carry CORS headers too");
}

#[tokio::test]
async fn client_ip_from_forwarded_for() {
    let f = fixture();
    let request = Request::post("/e")
        .header("x-forwarded-for", "203.0.113.7, 10.0.0.1")
        .body(Body::from(json!({"token": TOKEN, "event": "x", "distinct_id": "a"}).to_string()))
        .unwrap();
    ok(&f.send(request).await);
    assert_eq!(f.events()[0].ip, "203.0.113.7");
}

#[tokio::test]
async fn sent_at_from_query_parameter() {
    let f = fixture();
    let body = json!({"token": TOKEN, "event": "x", "distinct_id": "a"}).to_string();
    ok(&f.send(Request::post("/e?_=1700000000123&ver=1.2.3").body(Body::from(body)).unwrap()).await);
    assert_eq!(f.events()[0].sent_at.as_deref(), Some("2023-11-14T22:13:20.123Z"));
}

#[tokio::test]
async fn historical_migration_flag() {
    let f = fixture();
    ok(&f
        .post_json(
            "/batch",
            json!({"api_key": TOKEN, "historical_migration": true, "batch": [{"event": "old", "distinct_id": "a"}]}),
        )
        .await);
    ok(&f.post_json("/batch", json!({"api_key": TOKEN, "batch": [{"event": "new", "distinct_id": "a"}]})).await);
    let events = f.events();
    assert!(events[0].historical_migration);
    assert!(!events[1].historical_migration);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let limit = RateLimit { events_per_second: 1.0, burst: 3.0 };
    let f = fixture_with(CaptureConfig { rate_limit: Some(limit), ..Default::default() }, |_| {});
    let batch = |n: usize, token: &str| json!({"api_key": token, "batch": (0..n).map(|i| json!({"event": "x", "distinct_id": i})).collect::<Vec<_>>()});
    ok(&f.post_json("/batch", batch(3, TOKEN)).await);
    let a = f.post_json("/batch", batch(2, TOKEN)).await;
    err(&a, 429, "rate_limited");
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry after {retry}");
    // Other tokens have their own bucket.
    ok(&f.post_json("/batch", batch(3, "phc_other")).await);
    assert_eq!(f.events().len(), 6);
    assert!(f.state.metrics.render().contains("hogpipe_capture_events_rejected_total{reason=\"rate_limited\"} 2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_behind_answers_503_and_recovers() {
    let f = fixture_with(CaptureConfig::default(), |w| w.max_pending_bytes = 4096);
    let pause = f.wal.pause_writer_for_tests();
    let event = json!({"token": TOKEN, "event": "x", "distinct_id": "a", "properties": {"p": "y".repeat(3000)}});
    // The first request is queued behind the paused writer; the second does not fit.
    let app1 = app(f.state.clone());
    let first = tokio::spawn({
        let body = event.to_string();
        async move { app1.oneshot(Request::post("/e").body(Body::from(body)).unwrap()).await.unwrap().status() }
    });
    while f.wal.pending_bytes() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let second = f.post_json("/e", event.clone()).await;
    err(&second, 503, "log_behind");
    assert_eq!(second.headers["retry-after"], "1");
    drop(pause);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    ok(&f.post_json("/e", event).await);
    assert_eq!(f.events().len(), 2);
}

#[tokio::test]
async fn health_and_metrics_endpoints() {
    let f = fixture();
    let live = f.send(Request::get("/_liveness").body(Body::empty()).unwrap()).await;
    assert_eq!(live.status, StatusCode::OK);
    let ready = f.send(Request::get("/_readiness").body(Body::empty()).unwrap()).await;
    assert_eq!(ready.status, StatusCode::OK);
    ok(&f.post_json("/e", json!({"token": TOKEN, "event": "x", "distinct_id": "a"})).await);
    let m = f.send(Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let text = m.body.as_str().unwrap();
    assert!(text.contains("# TYPE hogpipe_capture_log_append_duration_seconds histogram"));
    assert!(text.contains("hogpipe_capture_log_append_duration_seconds_count 1"));
    assert!(text.contains("hogpipe_capture_bytes_received_total "));
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn every_encoding_through_http() {
    let f = fixture();
    let event = |name: &str| json!([{"token": TOKEN, "event": name, "distinct_id": "enc"}]).to_string();
    // gzip by header, by query (posthog-js's gzip-js), by magic bytes alone.
    let r =
        Request::post("/e").header("content-encoding", "gzip").body(Body::from(gzip(event("gz-header").as_bytes())));
    ok(&f.send(r.unwrap()).await);
    let r = Request::post("/i/v0/e/?compression=gzip-js&ver=1.200.0&_=1700000000000")
        .header("content-type", "text/plain")
        .body(Body::from(gzip(event("gz-query").as_bytes())));
    ok(&f.send(r.unwrap()).await);
    ok(&f.post("/batch", gzip(event("gz-magic").as_bytes())).await);
    // Form bodies: base64 data (with `+` turned into spaces by sloppy clients), lz64 from lz-string.
    let form = format!("data={}", percent(&b64(event("form-b64").as_bytes())));
    let r = Request::post("/e").header("content-type", "application/x-www-form-urlencoded").body(Body::from(form));
    ok(&f.send(r.unwrap()).await);
    let lz = std::fs::read_to_string(
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/lz64/batch.lz64"),
    )
    .unwrap();
    let form = format!("data={}&compression=lz64", percent(lz.trim()));
    let r = Request::post("/batch").header("content-type", "application/x-www-form-urlencoded").body(Body::from(form));
    let lz_answer = f.send(r.unwrap()).await;
    // Legacy GET with base64 data in the query.
    let r = Request::get(format!("/e?data={}", percent(&b64(event("get-b64").as_bytes()))));
    ok(&f.send(r.body(Body::empty()).unwrap()).await);
    ok(&lz_answer);
    let from_lz = f.events().into_iter().filter(|e| e.token == LZ_TOKEN).count();
    assert_eq!(from_lz, 100, "the whole lz-string batch");
    let mut names: Vec<String> = f
        .events()
        .iter()
        .filter(|e| e.distinct_id == "enc")
        .map(|e| e.data_json().unwrap()["event"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["form-b64", "get-b64", "gz-header", "gz-magic", "gz-query"]);
    let q = f.events().into_iter().find(|e| e.data.contains("gz-query")).unwrap();
    assert_eq!(q.sent_at.as_deref(), Some("2023-11-14T22:13:20.000Z"));
}

#[tokio::test]
async fn decoding_errors_are_400_or_413() {
    let f = fixture_with(CaptureConfig { max_decoded_bytes: 10_000, ..Default::default() }, |_| {});
    let bomb = gzip(&vec![b' '; 1_000_000]);
    let r = Request::post("/e").header("content-encoding", "gzip").body(Body::from(bomb));
    let a = f.send(r.unwrap()).await;
    err(&a, 413, "payload_too_large");
    let r = Request::post("/e").header("content-encoding", "gzip").body(Body::from(&b"\x1f\x8b\x08garbage"[..]));
    err(&f.send(r.unwrap()).await, 400, "invalid_payload");
    let r = Request::post("/e?compression=lz64").body(Body::from("@@@not lz@@@"));
    err(&f.send(r.unwrap()).await, 400, "invalid_payload");
    assert!(f.events().is_empty());
}

/// A log that cannot write, as when the disk fails or every broker is gone.
struct BrokenLog;

impl hogpipe_capture::log::EventLog for BrokenLog {
    fn append(&self, _records: Vec<hogpipe_capture::log::Record>) -> hogpipe_capture::log::AppendFuture<'_> {
        Box::pin(async { Err(hogpipe_capture::log::LogError::Unavailable("/secret/path: disk on fire".into())) })
    }
    fn is_ready(&self) -> bool {
        false
    }
    fn name(&self) -> &'static str {
        "broken"
    }
}

#[tokio::test]
async fn broken_log_answers_503_without_internals() {
    let tokens = StaticTokens(HashMap::from([(TOKEN.to_string(), 1)]));
    let state = CaptureState::new(CaptureConfig::default(), Arc::new(BrokenLog), Arc::new(tokens));
    let request =
        Request::post("/e").body(Body::from(json!({"token": TOKEN, "event": "x", "distinct_id": "a"}).to_string()));
    let response = app(state.clone()).oneshot(request.unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["code"], "log_unavailable");
    assert!(!body["error"].as_str().unwrap().contains("secret"), "no internals in {body}");
    let ready = app(state).oneshot(Request::get("/_readiness").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_bytes_in_flight_answers_503() {
    let f = fixture_with(CaptureConfig { max_inflight_bytes: 1000, ..Default::default() }, |_| {});
    let pause = f.wal.pause_writer_for_tests();
    let body =
        json!({"token": TOKEN, "event": "x", "distinct_id": "a", "properties": {"p": "y".repeat(700)}}).to_string();
    let app1 = app(f.state.clone());
    let first = tokio::spawn({
        let body = body.clone();
        async move { app1.oneshot(Request::post("/e").body(Body::from(body)).unwrap()).await.unwrap().status() }
    });
    while f.wal.pending_bytes() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let second = f.send(Request::post("/e").body(Body::from(body.clone())).unwrap()).await;
    err(&second, 503, "overloaded");
    drop(pause);
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    ok(&f.send(Request::post("/e").body(Body::from(body)).unwrap()).await);
}
