//! The delivery engine against loopback HTTP servers that fail, delay, hang, rate-limit and
//! recover on command: retries and their spacing, Retry-After, dead letters and replay, restarts
//! (drop and re-open, and a real SIGKILL of a child process), isolation of a stalled destination,
//! memory bound and back-pressure; secrecy at rest (nothing secret in the queue's files, rows of
//! earlier versions, a replaced key).

#[path = "engine/server.rs"]
mod server;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hogpipe_destinations::engine::{
    DeadLetters, DestinationSettings, Engine, EngineConfig, EngineError, Job, RateLimit,
};
use hogpipe_destinations::http::{HttpRequest, HttpResponse, Next, Resume};
use hogpipe_destinations::secret_key::SecretKey;
use server::{Reply, TestServer};

/// Records every resume; optionally asks for a follow-up request (`<tag>/2`) after the first.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, HttpResponse)>>,
    follow_up: Option<String>,
    log: Option<PathBuf>,
}

impl Resume for Recorder {
    fn resume(&self, state: &[u8], response: &HttpResponse) -> Next {
        let tag = String::from_utf8_lossy(state).into_owned();
        if let Some(path) = &self.log {
            // One write per line on an O_APPEND file: survives a SIGKILL right after.
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
            f.write_all(format!("{tag}\n").as_bytes()).unwrap();
        }
        self.calls.lock().unwrap().push((tag.clone(), response.clone()));
        match &self.follow_up {
            Some(url) if !tag.ends_with("/2") => Next::Fetch {
                request: request(&format!("{url}/second"), &format!("{tag}/2")),
                state: format!("{tag}/2").into_bytes(),
            },
            _ => Next::Done { logs: Vec::new() },
        }
    }
}

impl Recorder {
    fn tags(&self) -> Vec<String> {
        self.calls.lock().unwrap().iter().map(|(t, _)| t.clone()).collect()
    }

    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn response(&self, tag: &str) -> Option<HttpResponse> {
        self.calls.lock().unwrap().iter().find(|(t, _)| t == tag).map(|(_, r)| r.clone())
    }
}

fn request(url: &str, tag: &str) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        url: url.to_string(),
        headers: vec![("content-type".into(), "application/json".into()), ("x-tag".into(), tag.into())],
        body: Some(format!("{{\"tag\":\"{tag}\"}}")),
    }
}

fn job(function_id: &str, base_url: &str, tag: &str) -> Job {
    Job {
        function_id: function_id.to_string(),
        team_id: 7,
        request: request(&format!("{base_url}/hook"), tag),
        state: tag.as_bytes().to_vec(),
    }
}

/// Short backoff so failing tests retry quickly.
fn settings() -> DestinationSettings {
    DestinationSettings {
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        timeout: Duration::from_secs(10),
        ..DestinationSettings::default()
    }
}

fn config(defaults: DestinationSettings) -> EngineConfig {
    EngineConfig { defaults, poll_interval: Duration::from_millis(50), ..EngineConfig::default() }
}

/// The key every test's queue is sealed with (the same in the SIGKILL test's child process).
fn key() -> SecretKey {
    SecretKey::from_bytes([7; 32], "the tests' key")
}

fn open(dir: &Path, config: EngineConfig, recorder: &Arc<Recorder>) -> Engine {
    Engine::open(dir, &key(), config, recorder.clone()).unwrap()
}

/// Polls `cond` until it holds; fails the test after a generous deadline.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn server_errors_are_retried_until_an_answer_arrives() {
    let server = TestServer::start(Reply::status(200, "{\"ok\":true}"));
    server.script([Reply::status(500, "down"), Reply::status(503, "still down")]);
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(settings()), &recorder);
    engine.enqueue(vec![job("f1", &server.url, "a")]).unwrap();
    wait_for("the resume", || recorder.count() == 1);
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "two failures and the success");
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/hook");
        assert_eq!(s.body, "{\"tag\":\"a\"}");
        assert!(s.headers.iter().any(|(k, v)| k == "x-tag" && v == "a"));
    }
    let response = recorder.response("a").unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "{\"ok\":true}");
    wait_for("the job to leave the queue", || engine.pending() == 0);
    // The gauges drop just after the job leaves the queue (another thread): wait for them.
    wait_for("the gauges to settle", || {
        let m = engine.destination_metrics("f1").unwrap();
        (m.queued, m.in_flight, m.in_memory) == (0, 0, 0)
    });
    let m = engine.destination_metrics("f1").unwrap();
    assert_eq!((m.sent, m.retried, m.succeeded, m.failed, m.dead_lettered), (3, 2, 1, 0, 0));
}

#[test]
fn retry_after_in_seconds_is_never_anticipated() {
    let server = TestServer::start(Reply::status(200, "ok"));
    server.script([Reply::with_header(429, "retry-after", "1")]);
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(settings()), &recorder);
    engine.enqueue(vec![job("f1", &server.url, "a")]).unwrap();
    wait_for("the resume", || recorder.count() == 1);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let told_at = seen[0].answered.unwrap();
    let retried_at = seen[1].arrived;
    assert!(
        retried_at.duration_since(told_at).is_ok_and(|d| d >= Duration::from_secs(1)),
        "retried {:?} after the 429 that said 1 s",
        retried_at.duration_since(told_at)
    );
    assert_eq!(recorder.response("a").unwrap().status, 200);
    assert_eq!(engine.destination_metrics("f1").unwrap().retried, 1);
}

#[test]
fn retry_after_as_an_http_date_is_never_anticipated() {
    let server = TestServer::start(Reply::status(200, "ok"));
    // Whole seconds (HTTP dates have no fractions), at least 1 s ahead.
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs() + 2);
    server.script([Reply::with_header(503, "retry-after", &httpdate::fmt_http_date(at))]);
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(settings()), &recorder);
    engine.enqueue(vec![job("f1", &server.url, "a")]).unwrap();
    wait_for("the resume", || recorder.count() == 1);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].arrived >= at, "retried at {:?}, before the Retry-After date {:?}", seen[1].arrived, at);
    drop(engine);
}

#[test]
fn retry_after_beyond_the_maximum_dead_letters_instead_of_retrying_early() {
    let server = TestServer::start(Reply::with_header(429, "retry-after", "3600"));
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(
        dir.path(),
        config(DestinationSettings { max_retry_after: Duration::from_secs(60), ..settings() }),
        &recorder,
    );
    engine.enqueue(vec![job("f1", &server.url, "a")]).unwrap();
    wait_for("the dead letter", || engine.dead_letters(None).unwrap().len() == 1);
    let dl = engine.dead_letters(Some("f1")).unwrap().remove(0);
    assert_eq!(dl.attempts, 1);
    assert_eq!(dl.error.status, Some(429));
    assert!(dl.error.message.contains("3600 s"), "{}", dl.error.message);
    assert_eq!(server.count(), 1);
    assert_eq!(recorder.count(), 0);
}

#[test]
fn exhausted_attempts_become_a_dead_letter_that_replays_once_the_server_recovers() {
    let server = TestServer::start(Reply::status(500, "upstream exploded"));
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(DestinationSettings { max_attempts: 3, ..settings() }), &recorder);
    let before = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i64;
    let sent = job("hook-1", &server.url, "a");
    engine.enqueue(vec![sent.clone()]).unwrap();
    wait_for("the dead letter", || !engine.dead_letters(None).unwrap().is_empty());
    assert_eq!(server.count(), 3, "exactly max_attempts requests");
    assert_eq!(recorder.count(), 0, "a dead letter is not resumed");
    let list = engine.dead_letters(Some("hook-1")).unwrap();
    assert_eq!(list.len(), 1);
    assert!(engine.dead_letters(Some("other")).unwrap().is_empty());
    let dl = engine.dead_letter(list[0].id).unwrap().unwrap();
    assert_eq!(dl.function_id, "hook-1");
    assert_eq!(dl.team_id, 7);
    assert_eq!(dl.request, sent.request);
    assert_eq!(dl.state, sent.state);
    assert_eq!(dl.attempts, 3);
    assert_eq!(dl.error.status, Some(500));
    assert_eq!(dl.error.message, "upstream exploded");
    assert!(dl.created_at_ms >= before && dl.failed_at_ms >= dl.created_at_ms);
    wait_for("the queue to empty", || engine.pending() == 0);
    let m = engine.destination_metrics("hook-1").unwrap();
    assert_eq!((m.sent, m.retried, m.dead_lettered, m.queued), (3, 2, 1, 0));

    server.set_default(Reply::status(201, "created"));
    engine.replay(dl.id).unwrap();
    wait_for("the replayed job", || recorder.count() == 1);
    assert_eq!(recorder.response("a").unwrap().status, 201);
    assert_eq!(server.count(), 4, "a replay starts with a fresh attempt count and succeeds at once");
    assert!(engine.dead_letters(None).unwrap().is_empty());
    assert!(engine.dead_letter(dl.id).unwrap().is_none());
    assert!(matches!(engine.replay(dl.id), Err(EngineError::NoSuchDeadLetter(id)) if id == dl.id));
}

#[test]
fn replay_all_of_a_function_and_discard() {
    let server = TestServer::start(Reply::status(502, "bad gateway"));
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(DestinationSettings { max_attempts: 1, ..settings() }), &recorder);
    engine
        .enqueue(vec![
            job("a", &server.url, "a1"),
            job("a", &server.url, "a2"),
            job("a", &server.url, "a3"),
            job("b", &server.url, "b1"),
        ])
        .unwrap();
    wait_for("four dead letters", || engine.dead_letters(None).unwrap().len() == 4);
    assert_eq!(engine.dead_letters(Some("a")).unwrap().len(), 3);
    let b = engine.dead_letters(Some("b")).unwrap().remove(0);
    server.set_default(Reply::status(200, "ok"));
    assert_eq!(engine.replay_all("a").unwrap(), 3);
    wait_for("the three replays", || recorder.count() == 3);
    let mut tags = recorder.tags();
    tags.sort();
    assert_eq!(tags, ["a1", "a2", "a3"]);
    assert!(engine.discard(b.id).unwrap());
    assert!(!engine.discard(b.id).unwrap());
    assert!(engine.dead_letters(None).unwrap().is_empty());
    assert_eq!(engine.replay_all("a").unwrap(), 0);
}

#[test]
fn a_replay_from_another_process_is_noticed_by_the_running_engine() {
    let server = TestServer::start(Reply::status(500, "no"));
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(DestinationSettings { max_attempts: 1, ..settings() }), &recorder);
    engine.enqueue(vec![job("f", &server.url, "x")]).unwrap();
    wait_for("the dead letter", || engine.dead_letters(None).unwrap().len() == 1);
    server.set_default(Reply::status(200, "ok"));
    // Its own connection, as `hogpipe destinations dead-letters replay` has.
    let cli = DeadLetters::open(dir.path(), &key()).unwrap();
    let id = cli.list(None).unwrap()[0].id;
    cli.replay(id).unwrap();
    wait_for("the replayed job", || recorder.count() == 1);
    assert_eq!(recorder.response("x").unwrap().status, 200);
    wait_for("the job to leave the queue", || cli.pending(None).unwrap() == 0);
}

#[test]
fn dead_letters_need_an_existing_store() {
    let dir = tempfile::tempdir().unwrap();
    let err = DeadLetters::open(dir.path(), &key()).unwrap_err();
    assert!(matches!(err, EngineError::Missing(_)));
    assert!(err.to_string().contains("delivery.sqlite"), "{err}");
}

#[test]
fn network_errors_are_retried_then_dead_lettered_with_the_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(DestinationSettings { max_attempts: 2, ..settings() }), &recorder);
    engine.enqueue(vec![job("f", &url, "a")]).unwrap();
    wait_for("the dead letter", || engine.dead_letters(None).unwrap().len() == 1);
    let dl = engine.dead_letters(None).unwrap().remove(0);
    assert_eq!(dl.attempts, 2);
    assert_eq!(dl.error.status, None);
    assert!(dl.error.message.contains(&format!("127.0.0.1:{port}")), "{}", dl.error.message);
    let m = engine.destination_metrics("f").unwrap();
    assert_eq!((m.sent, m.retried, m.dead_lettered), (2, 1, 1));
}

#[test]
fn timeouts_are_retried_then_dead_lettered() {
    let server = TestServer::start(Reply::Hang);
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let s = DestinationSettings { max_attempts: 2, timeout: Duration::from_millis(200), ..settings() };
    let engine = open(dir.path(), config(s), &recorder);
    engine.enqueue(vec![job("f", &server.url, "a")]).unwrap();
    wait_for("the dead letter", || engine.dead_letters(None).unwrap().len() == 1);
    let dl = engine.dead_letters(None).unwrap().remove(0);
    assert!(dl.error.message.contains("timed out"), "{}", dl.error.message);
    assert_eq!(server.count(), 2);
    server.release();
}

#[test]
fn client_errors_are_final_answers_for_the_function() {
    let server = TestServer::start(Reply::status(404, "no such hook"));
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(settings()), &recorder);
    engine.enqueue(vec![job("f", &server.url, "a")]).unwrap();
    wait_for("the resume", || recorder.count() == 1);
    let r = recorder.response("a").unwrap();
    assert_eq!((r.status, r.body.as_str()), (404, "no such hook"));
    assert_eq!(server.count(), 1);
    wait_for("the job to leave the queue", || engine.pending() == 0);
    let m = engine.destination_metrics("f").unwrap();
    assert_eq!((m.sent, m.failed, m.succeeded, m.retried), (1, 1, 0, 0));
    assert!(engine.dead_letters(None).unwrap().is_empty());
}

#[test]
fn a_follow_up_fetch_is_performed_and_resumed() {
    let server = TestServer::start(Reply::status(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder { follow_up: Some(server.url.clone()), ..Recorder::default() });
    let engine = open(dir.path(), config(settings()), &recorder);
    engine.enqueue(vec![job("f", &server.url, "a"), job("f", &server.url, "b")]).unwrap();
    wait_for("both follow-ups", || recorder.count() == 4);
    let mut tags = recorder.tags();
    tags.sort();
    assert_eq!(tags, ["a", "a/2", "b", "b/2"]);
    let mut paths: Vec<_> = server.seen().into_iter().map(|s| (s.path, s.body)).collect();
    paths.sort();
    assert_eq!(paths[0], ("/hook".to_string(), "{\"tag\":\"a\"}".to_string()));
    assert_eq!(paths[2], ("/second".to_string(), "{\"tag\":\"a/2\"}".to_string()));
    wait_for("the queue to empty", || engine.pending() == 0);
}

#[test]
fn an_unsendable_request_is_dead_lettered_without_retries() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(settings()), &recorder);
    let mut bad_header = job("f", "http://127.0.0.1:9", "h");
    bad_header.request.headers.push(("bad header".into(), "x".into()));
    engine.enqueue(vec![job("f", "ftp://example.com", "a"), bad_header]).unwrap();
    wait_for("two dead letters", || engine.dead_letters(None).unwrap().len() == 2);
    let mut list = engine.dead_letters(None).unwrap();
    list.sort_by_key(|d| d.job_id);
    assert!(list[0].error.message.contains("unsupported URL scheme"), "{}", list[0].error.message);
    assert!(list[1].error.message.contains("invalid header name"), "{}", list[1].error.message);
    assert!(list.iter().all(|d| d.attempts == 1));
}

#[test]
fn concurrency_limit_holds() {
    let server = TestServer::start(Reply::Delayed { delay: Duration::from_millis(20), status: 200 });
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(DestinationSettings { concurrency: 3, ..settings() }), &recorder);
    engine.enqueue((0..40).map(|i| job("f", &server.url, &i.to_string())).collect()).unwrap();
    let mut max_metric = 0;
    wait_for("all deliveries", || {
        max_metric = max_metric.max(engine.destination_metrics("f").map_or(0, |m| m.in_flight));
        recorder.count() == 40
    });
    assert!(server.max_in_flight() <= 3, "server saw {} at once", server.max_in_flight());
    assert!(server.max_in_flight() >= 1);
    assert!(max_metric <= 3);
}

#[test]
fn rate_limit_spaces_requests() {
    let server = TestServer::start(Reply::status(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let s = DestinationSettings { rate_limit: Some(RateLimit { per_second: 10.0, burst: 1 }), ..settings() };
    let engine = open(dir.path(), config(s), &recorder);
    engine.enqueue((0..6).map(|i| job("f", &server.url, &i.to_string())).collect()).unwrap();
    wait_for("all deliveries", || recorder.count() == 6);
    let seen = server.seen();
    let span = seen.last().unwrap().arrived.duration_since(seen[0].arrived).unwrap();
    // 5 intervals of 100 ms (unlimited, the six would arrive within a few ms); 100 ms of slack
    // for when each request reached the server.
    assert!(span >= Duration::from_millis(400), "6 requests at 10/s arrived within {span:?}");
}

#[test]
fn a_stalled_destination_holds_its_own_slots_only() {
    let stalled = TestServer::start(Reply::Hang);
    let healthy = TestServer::start(Reply::status(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut cfg = config(settings());
    cfg.destinations.insert(
        "stalled".into(),
        DestinationSettings { concurrency: 4, memory_queue: 20, timeout: Duration::from_secs(120), ..settings() },
    );
    let engine = open(dir.path(), cfg, &recorder);
    for round in 0..10 {
        let mut batch = Vec::new();
        for i in 0..50 {
            batch.push(job("healthy", &healthy.url, &format!("h{round}-{i}")));
            if i % 2 == 0 {
                batch.push(job("stalled", &stalled.url, &format!("s{round}-{i}")));
            }
        }
        engine.enqueue(batch).unwrap();
    }
    wait_for("every healthy delivery", || recorder.count() == 500);
    assert!(recorder.tags().iter().all(|t| t.starts_with('h')));
    let m = engine.destination_metrics("stalled").unwrap();
    assert!(m.in_flight <= 4 && m.in_memory <= 20, "{m:?}");
    assert_eq!(m.queued, 250);
    assert!(stalled.count() <= 4 && stalled.max_in_flight() <= 4, "{} requests", stalled.count());
    wait_for("the healthy queue to empty", || engine.destination_metrics("healthy").unwrap().queued == 0);
    assert_eq!(engine.pending(), 250);
    stalled.release();
}

#[test]
fn memory_holds_a_bounded_window_and_loads_the_rest_from_disk() {
    let server = TestServer::start(Reply::Hang);
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let s = DestinationSettings { concurrency: 2, memory_queue: 10, ..settings() };
    let engine = open(dir.path(), config(s), &recorder);
    for chunk in 0..10 {
        engine.enqueue((0..10).map(|i| job("f", &server.url, &format!("{chunk}-{i}"))).collect()).unwrap();
    }
    wait_for("two requests hanging", || server.in_flight() == 2);
    // The memory window fills from disk on the engine's threads: wait for it, then it stays.
    wait_for("the memory window to fill", || {
        let m = engine.destination_metrics("f").unwrap();
        (m.queued, m.in_memory, m.in_flight) == (100, 10, 2)
    });
    let mut max_in_memory = 0;
    server.release();
    wait_for("every delivery", || {
        max_in_memory = max_in_memory.max(engine.destination_metrics("f").unwrap().in_memory);
        recorder.count() == 100
    });
    assert!(max_in_memory <= 10, "{max_in_memory} jobs in memory");
    let unique: HashSet<_> = recorder.tags().into_iter().collect();
    assert_eq!(unique.len(), 100);
}

#[test]
fn enqueue_pushes_back_when_the_disk_queue_is_full() {
    let server = TestServer::start(Reply::Hang);
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), EngineConfig { max_pending: 30, ..config(settings()) }, &recorder);
    engine.enqueue((0..30).map(|i| job("f", &server.url, &i.to_string())).collect()).unwrap();
    let err = engine.enqueue(vec![job("f", &server.url, "late")]).unwrap_err();
    assert!(matches!(err, EngineError::Full { pending: 30, max: 30 }), "{err}");
    server.release();
    wait_for("room", || engine.pending() == 0);
    engine.enqueue(vec![job("f", &server.url, "late")]).unwrap();
    wait_for("the late job", || recorder.tags().contains(&"late".to_string()));
}

#[test]
fn reopening_the_engine_loses_nothing_and_keeps_attempt_counts() {
    let hanging = TestServer::start(Reply::Hang);
    // Retry-After makes the retry wait at least 2 s: the engine is dropped long before it is due
    // (a bare backoff is full jitter, and a delay near zero would retry before the restart).
    let failing = TestServer::start(Reply::with_header(500, "retry-after", "2"));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(DestinationSettings { concurrency: 4, ..settings() });
    cfg.destinations.insert(
        "failing".into(),
        DestinationSettings {
            max_attempts: 2,
            backoff_base: Duration::from_millis(300),
            backoff_max: Duration::from_millis(300),
            ..settings()
        },
    );
    let first = Arc::new(Recorder::default());
    let engine = open(dir.path(), cfg.clone(), &first);
    engine.enqueue((0..50).map(|i| job("hanging", &hanging.url, &format!("h{i}"))).collect()).unwrap();
    engine.enqueue(vec![job("failing", &failing.url, "f")]).unwrap();
    wait_for("requests in flight and a failure", || hanging.in_flight() == 4 && failing.count() == 1);
    // The retry (attempt count 1) is handed to the store before the counter moves, and the store
    // commits everything it was handed before it stops.
    wait_for("the retry to be scheduled", || engine.destination_metrics("failing").unwrap().retried == 1);
    drop(engine);
    assert_eq!(first.count(), 0);

    hanging.release();
    let second = Arc::new(Recorder::default());
    let engine = open(dir.path(), cfg, &second);
    assert_eq!(engine.pending(), 51);
    wait_for("all 50 deliveries", || second.count() == 50);
    let unique: HashSet<_> = second.tags().into_iter().collect();
    assert_eq!(unique.len(), 50);
    // The failing job had one attempt before the restart: one more makes two, the maximum.
    wait_for("the dead letter", || engine.dead_letters(None).unwrap().len() == 1);
    assert_eq!(engine.dead_letters(None).unwrap()[0].attempts, 2);
    assert_eq!(failing.count(), 2);
    wait_for("the queue to empty", || engine.pending() == 0);
}

const CHILD_DIR: &str = "HOGPIPE_ENGINE_TEST_CHILD_DIR";
const CHILD_URL: &str = "HOGPIPE_ENGINE_TEST_CHILD_URL";
const CHILD_JOBS: usize = 300;

/// Not a test on its own: the body of the child process `sigkill_in_the_middle_loses_nothing`
/// starts (it returns at once unless that test's variables are set).
#[test]
fn child_process_for_the_sigkill_test() {
    let (Ok(dir), Ok(url)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_URL)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let recorder =
        Arc::new(Recorder { follow_up: Some(url.clone()), log: Some(dir.join("resumed.log")), ..Recorder::default() });
    let engine = open(&dir.join("engine"), config(DestinationSettings { concurrency: 2, ..settings() }), &recorder);
    for chunk in 0..CHILD_JOBS / 20 {
        engine.enqueue((0..20).map(|i| job("f", &url, &(chunk * 20 + i).to_string())).collect()).unwrap();
    }
    println!("ENQUEUED");
    std::io::stdout().flush().unwrap();
    // Killed long before this.
    std::thread::sleep(Duration::from_secs(120));
}

#[test]
fn sigkill_in_the_middle_loses_nothing() {
    let server = TestServer::start(Reply::Delayed { delay: Duration::from_millis(10), status: 200 });
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_for_the_sigkill_test", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_URL, &server.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("ENQUEUED") => break,
            Some(Ok(_)) => {}
            other => panic!("the child ended before enqueueing: {other:?}"),
        }
    }
    let log = dir.path().join("resumed.log");
    let read_log =
        || -> Vec<String> { std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect() };
    wait_for("some deliveries in the child", || read_log().len() >= 40);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before: HashSet<String> = read_log().into_iter().collect();
    assert!(before.len() < 2 * CHILD_JOBS, "the child finished everything before the kill");

    let recorder = Arc::new(Recorder { follow_up: Some(server.url.clone()), ..Recorder::default() });
    let engine = open(&dir.path().join("engine"), config(settings()), &recorder);
    wait_for("the queue to empty after the restart", || engine.pending() == 0);
    let after: HashSet<String> = recorder.tags().into_iter().collect();
    for i in 0..CHILD_JOBS {
        let last = format!("{i}/2");
        assert!(before.contains(&last) || after.contains(&last), "job {i}'s follow-up was lost");
        assert!(before.contains(&i.to_string()) || after.contains(&i.to_string()), "job {i} was lost");
    }
    assert!(!after.is_empty(), "nothing was left for the restarted engine");
}

#[test]
fn a_destination_over_its_limit_sends_new_jobs_to_the_dead_letters_not_the_queue() {
    let stalled = TestServer::start(Reply::Hang);
    let healthy = TestServer::start(Reply::status(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut cfg = EngineConfig { max_pending: 100, ..config(settings()) };
    cfg.destinations.insert("stalled".into(), DestinationSettings { max_queued: 20, concurrency: 2, ..settings() });
    let engine = open(dir.path(), cfg, &recorder);
    let mut batch: Vec<Job> = (0..30).map(|i| job("stalled", &stalled.url, &format!("s{i}"))).collect();
    batch.extend((0..10).map(|i| job("healthy", &healthy.url, &format!("h{i}"))));
    engine.enqueue(batch).unwrap();
    // The shared queue holds 20 + 10, far from its limit of 100: others keep enqueueing.
    engine.enqueue((10..60).map(|i| job("healthy", &healthy.url, &format!("h{i}"))).collect()).unwrap();
    wait_for("the healthy deliveries", || recorder.count() == 60);
    let overflow = engine.dead_letters(Some("stalled")).unwrap();
    assert_eq!(overflow.len(), 10);
    assert!(overflow.iter().all(|d| d.attempts == 0 && d.error.status.is_none()));
    assert!(overflow[0].error.message.contains("the limit is 20"), "{}", overflow[0].error.message);
    let tags: HashSet<_> = overflow.iter().map(|d| String::from_utf8_lossy(&d.state).into_owned()).collect();
    assert_eq!(tags, (20..30).map(|i| format!("s{i}")).collect());
    let m = engine.destination_metrics("stalled").unwrap();
    assert_eq!((m.queued, m.dead_lettered), (20, 10));

    stalled.release();
    wait_for("the stalled destination to catch up", || engine.destination_metrics("stalled").unwrap().queued == 0);
    assert_eq!(engine.replay_all("stalled").unwrap(), 10);
    wait_for("every job", || recorder.count() == 90);
}

// Secrecy at rest: requests, states and error texts are sealed with the data dir's key.

/// Stands for a rendered secret input (an API key); it must never be in the queue's files.
const SENTINEL: &str = "SENTINEL-123";

/// A job whose request (URL, `Authorization` header, body) and state carry [`SENTINEL`].
fn secret_job(function_id: &str, base_url: &str, tag: &str) -> Job {
    let tag = format!("{tag} {SENTINEL}");
    let mut job = job(function_id, base_url, &tag);
    job.request.url = format!("{base_url}/hook?api_key={SENTINEL}");
    job.request.headers.push(("authorization".into(), format!("Bearer {SENTINEL}")));
    job
}

/// Fails when a file of the queue in `dir` (the database, its write-ahead log) holds `needle`.
fn assert_not_on_disk(dir: &Path, needle: &str, when: &str) {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("delivery.sqlite") {
            let bytes = std::fs::read(&path).unwrap();
            files += 1;
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds {needle:?} {when}",
                path.display()
            );
        }
    }
    assert!(files >= 1, "no queue files in {}", dir.display());
}

/// Copies the write-ahead log into the database file (what the next checkpoint would do).
fn checkpoint(dir: &Path) {
    let conn = rusqlite::Connection::open(dir.join("delivery.sqlite")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).unwrap();
    assert_eq!(busy, 0, "the checkpoint could not complete");
}

/// Every request of a [`secret_job`] (not the follow-ups) reached the server with the secret.
fn server_saw_the_secret(server: &TestServer) {
    let seen: Vec<_> = server.seen().into_iter().filter(|s| s.path == "/hook").collect();
    assert!(!seen.is_empty());
    for s in &seen {
        assert!(s.headers.contains(&("authorization".into(), format!("Bearer {SENTINEL}"))), "{:?}", s.headers);
        assert!(s.body.contains(SENTINEL), "{}", s.body);
    }
}

#[test]
fn secrets_in_requests_states_and_errors_never_reach_the_disk_in_plaintext() {
    // The service echoes the secret in its error answers: they are stored as the last error.
    let server = TestServer::start(Reply::status(500, &format!("rejected: Bearer {SENTINEL}")));
    let dir = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder { follow_up: Some(server.url.clone()), ..Recorder::default() });
    let mut cfg = config(DestinationSettings { max_attempts: 2, ..settings() });
    // Over its limit at once: its jobs go straight to the dead letters.
    cfg.destinations.insert("full".into(), DestinationSettings { max_queued: 0, ..settings() });
    let engine = open(dir.path(), cfg, &recorder);
    let sent = secret_job("f", &server.url, "a");
    let overflow = secret_job("full", &server.url, "b");
    engine.enqueue(vec![sent.clone(), overflow.clone()]).unwrap();
    wait_for("two dead letters", || engine.dead_letters(None).unwrap().len() == 2);
    assert_eq!(server.count(), 2, "a failure, a retry (its error stored), a second failure");
    // Every page ever committed is still in the write-ahead log: nothing was written in clear.
    assert_not_on_disk(dir.path(), SENTINEL, "after a retry and two dead letters (log not checkpointed)");
    checkpoint(dir.path());
    assert_not_on_disk(dir.path(), SENTINEL, "after a retry and two dead letters (checkpointed)");

    // Read back in full, by the engine and by another connection (the CLI's) with the same key.
    let cli = DeadLetters::open(dir.path(), &key()).unwrap();
    for list in [engine.dead_letters(None).unwrap(), cli.list(None).unwrap()] {
        let dl = list.iter().find(|d| d.function_id == "f").unwrap();
        assert_eq!((&dl.request, &dl.state), (&sent.request, &sent.state));
        assert_eq!(dl.error.message, format!("rejected: Bearer {SENTINEL}"));
        let full = list.iter().find(|d| d.function_id == "full").unwrap();
        assert_eq!((&full.request, &full.state), (&overflow.request, &overflow.state));
        assert!(full.error.message.contains("the limit is 0"), "{}", full.error.message);
    }

    // Replayed (sealed again for the queue), delivered with the secret, resumed, followed up.
    server.set_default(Reply::status(200, "ok"));
    let id = cli.list(Some("f")).unwrap()[0].id;
    cli.replay(id).unwrap();
    engine.replay_all("full").unwrap();
    wait_for("both jobs and their follow-ups", || recorder.count() == 4);
    let mut tags = recorder.tags();
    tags.sort();
    assert_eq!(
        tags,
        [format!("a {SENTINEL}"), format!("a {SENTINEL}/2"), format!("b {SENTINEL}"), format!("b {SENTINEL}/2")]
    );
    assert_eq!(server.count(), 6);
    server_saw_the_secret(&server);
    wait_for("the queue to empty", || engine.pending() == 0);
    drop(engine);
    assert_not_on_disk(dir.path(), SENTINEL, "after the replays and follow-ups (log not checkpointed)");
    checkpoint(dir.path());
    assert_not_on_disk(dir.path(), SENTINEL, "after the replays and follow-ups (checkpointed)");
    assert_not_on_disk(dir.path(), "Bearer", "at the end");
}

/// What versions before sealing created, and how they stored a job and a dead letter.
const EARLIER_SCHEMA: &str = "
    CREATE TABLE jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, function_id TEXT NOT NULL,
        team_id INTEGER NOT NULL, request TEXT NOT NULL, state BLOB NOT NULL, attempts INTEGER NOT NULL,
        next_at INTEGER NOT NULL, created_at INTEGER NOT NULL, last_error TEXT);
    CREATE INDEX jobs_by_function ON jobs (function_id, id);
    CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER NOT NULL,
        function_id TEXT NOT NULL, team_id INTEGER NOT NULL, request TEXT NOT NULL, state BLOB NOT NULL,
        attempts INTEGER NOT NULL, error_status INTEGER, error_message TEXT NOT NULL,
        created_at INTEGER NOT NULL, failed_at INTEGER NOT NULL);
    CREATE INDEX dead_letters_by_function ON dead_letters (function_id, id);";

fn insert_plaintext_job(conn: &rusqlite::Connection, job: &Job, last_error: Option<&str>) -> i64 {
    conn.execute(
        "INSERT INTO jobs (function_id, team_id, request, state, attempts, next_at, created_at, last_error)
         VALUES (?1, ?2, ?3, ?4, 1, 0, 1, ?5)",
        rusqlite::params![
            job.function_id,
            job.team_id as i64,
            serde_json::to_string(&job.request).unwrap(),
            job.state,
            last_error
        ],
    )
    .unwrap();
    conn.last_insert_rowid()
}

fn insert_plaintext_dead_letter(conn: &rusqlite::Connection, job: &Job, message: &str) {
    conn.execute(
        "INSERT INTO dead_letters (job_id, function_id, team_id, request, state, attempts, error_status,
            error_message, created_at, failed_at)
         VALUES (0, ?1, ?2, ?3, ?4, 5, 500, ?5, 1, 2)",
        rusqlite::params![
            job.function_id,
            job.team_id as i64,
            serde_json::to_string(&job.request).unwrap(),
            job.state,
            message
        ],
    )
    .unwrap();
}

fn file_holds(path: &Path, needle: &str) -> bool {
    std::fs::read(path).unwrap().windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_restart_with_the_same_key_resumes_pending_jobs_and_plaintext_rows_are_delivered() {
    let server = TestServer::start(Reply::Hang);
    let dir = tempfile::tempdir().unwrap();
    let s = DestinationSettings { concurrency: 2, ..settings() };
    let first = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(s.clone()), &first);
    engine.enqueue((0..10).map(|i| secret_job("f", &server.url, &i.to_string())).collect()).unwrap();
    wait_for("two requests in flight", || server.in_flight() == 2);
    drop(engine);
    assert_eq!(first.count(), 0);
    // Rows as a version before sealing wrote them, into a queue that is already sealed (a
    // replay by an older CLI, say): read as they are.
    {
        let conn = rusqlite::Connection::open(dir.path().join("delivery.sqlite")).unwrap();
        insert_plaintext_job(&conn, &secret_job("f", &server.url, "old-job"), Some("HTTP 500: earlier"));
        insert_plaintext_dead_letter(&conn, &secret_job("f", &server.url, "old-dead"), "HTTP 500: earlier");
    }

    let second = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(s), &second);
    assert_eq!(engine.pending(), 11);
    server.release();
    wait_for("the 11 jobs", || second.count() == 11);
    let dead = engine.dead_letters(None).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].state, format!("old-dead {SENTINEL}").into_bytes());
    assert_eq!(dead[0].error.message, "HTTP 500: earlier");
    engine.replay(dead[0].id).unwrap();
    wait_for("the replayed plaintext dead letter", || second.count() == 12);
    let mut tags = second.tags();
    tags.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("{i} {SENTINEL}")).collect();
    expected.extend([format!("old-dead {SENTINEL}"), format!("old-job {SENTINEL}")]);
    expected.sort();
    assert_eq!(tags, expected);
    server_saw_the_secret(&server);
    wait_for("the queue to empty", || engine.pending() == 0);
}

#[test]
fn a_queue_of_an_earlier_version_is_sealed_when_first_opened_then_delivered() {
    let server = TestServer::start(Reply::status(200, "ok"));
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("delivery.sqlite");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(EARLIER_SCHEMA).unwrap();
        insert_plaintext_job(&conn, &secret_job("f", &server.url, "pending"), None);
        insert_plaintext_job(&conn, &secret_job("f", &server.url, "retrying"), Some(&format!("echo {SENTINEL}")));
        insert_plaintext_dead_letter(&conn, &secret_job("f", &server.url, "dead"), &format!("echo {SENTINEL}"));
        // Delivered by the earlier version: deleted, their plaintext left in pages now free.
        for i in 0..40 {
            let mut delivered = secret_job("f", &server.url, &format!("delivered-earlier-{i}"));
            delivered.request.body = Some(format!("{}{SENTINEL}", "x".repeat(3000)));
            insert_plaintext_job(&conn, &delivered, None);
        }
        conn.execute("DELETE FROM jobs WHERE state LIKE 'delivered-earlier-%'", []).unwrap();
        let _: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).unwrap();
    }
    assert!(file_holds(&db, SENTINEL) && file_holds(&db, "delivered-earlier"), "the earlier version's file");

    // The first opener (here the CLI's) seals every row and rebuilds the file.
    let cli = DeadLetters::open(dir.path(), &key()).unwrap();
    assert_not_on_disk(dir.path(), SENTINEL, "after the first open");
    assert_not_on_disk(dir.path(), "delivered-earlier", "after the first open");
    assert_eq!(cli.pending(None).unwrap(), 2);
    let dead = cli.list(None).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].request, secret_job("f", &server.url, "dead").request);
    assert_eq!(dead[0].error.message, format!("echo {SENTINEL}"));
    drop(cli);

    let recorder = Arc::new(Recorder::default());
    let engine = open(dir.path(), config(settings()), &recorder);
    engine.replay_all("f").unwrap();
    wait_for("the three jobs", || recorder.count() == 3);
    let mut tags = recorder.tags();
    tags.sort();
    assert_eq!(tags, [format!("dead {SENTINEL}"), format!("pending {SENTINEL}"), format!("retrying {SENTINEL}")]);
    server_saw_the_secret(&server);
    wait_for("the queue to empty", || engine.pending() == 0);
    drop(engine);
    checkpoint(dir.path());
    assert_not_on_disk(dir.path(), SENTINEL, "at the end");
}

#[test]
fn a_replaced_key_file_is_refused_naming_both_files_and_the_rows_stay() {
    use hogpipe_destinations::secret_key::{self, IfMissing, KEY_FILE};
    let server = TestServer::start(Reply::Hang);
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("destinations");
    let key = secret_key::load(None, data.path(), IfMissing::Create).unwrap();
    let mut cfg = config(DestinationSettings { concurrency: 1, ..settings() });
    cfg.destinations.insert("full".into(), DestinationSettings { max_queued: 0, ..settings() });
    let recorder = Arc::new(Recorder::default());
    let engine = Engine::open(&dir, &key, cfg.clone(), recorder.clone()).unwrap();
    engine.enqueue((0..5).map(|i| secret_job("f", &server.url, &i.to_string())).collect()).unwrap();
    engine.enqueue(vec![secret_job("full", &server.url, "dead")]).unwrap();
    wait_for("a request in flight", || server.in_flight() == 1);
    drop(engine);
    let count = |table: &str| -> i64 {
        let conn = rusqlite::Connection::open(dir.join("delivery.sqlite")).unwrap();
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0)).unwrap()
    };
    assert_eq!((count("jobs"), count("dead_letters")), (5, 1));

    // Someone replaces secret.key (here: deletes it; the next start generates another).
    let key_file = data.path().join(KEY_FILE);
    let original = std::fs::read(&key_file).unwrap();
    std::fs::remove_file(&key_file).unwrap();
    let other = secret_key::load(None, data.path(), IfMissing::Create).unwrap();
    assert_ne!(other.as_bytes(), key.as_bytes());
    let errors = [
        Engine::open(&dir, &other, cfg.clone(), recorder.clone()).map(|_| ()).unwrap_err(),
        DeadLetters::open(&dir, &other).map(|_| ()).unwrap_err(),
    ];
    for err in errors {
        assert!(matches!(err, EngineError::WrongKey { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&key_file.display().to_string()), "names the key file: {text}");
        assert!(text.contains(&dir.join("delivery.sqlite").display().to_string()), "names the queue: {text}");
        assert!(text.contains("does not open the delivery queue"), "{text}");
    }
    assert_eq!((count("jobs"), count("dead_letters")), (5, 1), "nothing was dropped or moved");
    assert_eq!(recorder.count(), 0);

    // With the original key back, everything is there and delivered.
    std::fs::write(&key_file, original).unwrap();
    let key = secret_key::load(None, data.path(), IfMissing::Fail).unwrap();
    let engine = Engine::open(&dir, &key, cfg, recorder.clone()).unwrap();
    assert_eq!(engine.pending(), 5);
    server.release();
    wait_for("the five jobs", || recorder.count() == 5);
    let dead = engine.dead_letters(None).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].state, format!("dead {SENTINEL}").into_bytes());
    server_saw_the_secret(&server);
}
