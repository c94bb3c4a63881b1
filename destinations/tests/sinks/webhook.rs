//! The webhook sink against loopback HTTP servers that answer as each test tells them.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::EventSink;
use hogpipe_destinations::sinks::{WebhookSink, WebhookSinkConfig};

use super::{events, refs};

/// One request the server saw.
struct Seen {
    headers: HeaderMap,
    events: Vec<Event>,
}

/// An answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, &'static str)>, &'static str);

#[derive(Default)]
struct Script {
    /// Answers to give, in order; when empty, `fallback`.
    answers: VecDeque<Answer>,
    fallback: u16,
    seen: Vec<Seen>,
}

/// A loopback HTTP server on its own runtime.
struct Server {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    _runtime: tokio::runtime::Runtime,
}

async fn hook(State(script): State<Arc<Mutex<Script>>>, headers: HeaderMap, body: Bytes) -> Response {
    let events: Vec<Event> = serde_json::from_slice(&body).expect("the body is a JSON array of events");
    let mut script = script.lock().expect("lock");
    script.seen.push(Seen { headers, events });
    let (status, headers, body) = script.answers.pop_front().unwrap_or((script.fallback, Vec::new(), ""));
    let mut response = (StatusCode::from_u16(status).expect("a status"), body).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().expect("a header value"));
    }
    response
}

impl Server {
    fn start(fallback: u16, answers: Vec<Answer>) -> Server {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let script = Arc::new(Mutex::new(Script { answers: answers.into(), fallback, seen: Vec::new() }));
        let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(Arc::clone(&script));
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("address");
        runtime.spawn(async move { axum::serve(listener, app).await });
        Server { addr, script, _runtime: runtime }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        std::mem::take(&mut self.script.lock().expect("lock").seen)
    }
}

fn fast(url: String) -> WebhookSinkConfig {
    WebhookSinkConfig { backoff_initial_ms: 5, backoff_max_ms: 20, ..WebhookSinkConfig::new(url) }
}

#[test]
fn retries_503_and_429_then_delivers_once() {
    let server = Server::start(
        200,
        vec![(503, vec![], "busy"), (429, vec![("retry-after", "0")], "slow down"), (200, vec![], "ok")],
    );
    let mut config = fast(server.url());
    config.headers.insert("Authorization".into(), "Bearer t0ken".into());
    config.headers.insert("x-hogpipe-test".into(), "1".into());
    let sink = WebhookSink::new(config).expect("create the sink");
    let written = events(30, 0, 10);
    sink.write(&refs(&written)).expect("delivered on the third attempt");
    let seen = server.seen();
    assert_eq!(seen.len(), 3, "two failures, one success");
    for request in &seen {
        assert_eq!(request.events, written, "every attempt carries the whole batch");
        assert_eq!(request.headers["authorization"], "Bearer t0ken");
        assert_eq!(request.headers["x-hogpipe-test"], "1");
        assert_eq!(request.headers["content-type"], "application/json");
    }
}

#[test]
fn splits_big_batches_in_order() {
    let server = Server::start(200, vec![]);
    let config = WebhookSinkConfig { max_events_per_request: 3, ..fast(server.url()) };
    let sink = WebhookSink::new(config).expect("create the sink");
    let written = events(31, 0, 7);
    sink.write(&refs(&written)).expect("delivered");
    let sizes: Vec<usize> = server.seen().iter().map(|s| s.events.len()).collect();
    assert_eq!(sizes, [3, 3, 1]);
    sink.write(&refs(&written)).expect("delivered again");
    let again: Vec<Event> = server.seen().into_iter().flat_map(|s| s.events).collect();
    assert_eq!(again, written, "in order");
}

#[test]
fn gives_up_after_the_attempts_naming_url_and_status() {
    let server = Server::start(500, vec![]);
    let config = WebhookSinkConfig { max_attempts: 4, ..fast(server.url()) };
    let sink = WebhookSink::new(config).expect("create the sink");
    let err = sink.write(&refs(&events(32, 0, 2))).expect_err("the server always fails");
    let text = err.to_string();
    assert!(text.contains(&server.url()), "{text}");
    assert!(text.contains("500"), "{text}");
    assert!(text.contains("4 attempts"), "{text}");
    assert_eq!(server.seen().len(), 4);
}

#[test]
fn a_4xx_fails_at_once() {
    let server = Server::start(200, vec![(400, vec![], "{\"error\":\"bad field x\"}")]);
    let sink = WebhookSink::new(fast(server.url())).expect("create the sink");
    let err = sink.write(&refs(&events(33, 0, 2))).expect_err("400 is final");
    let text = err.to_string();
    assert!(text.contains("400") && text.contains("bad field x") && text.contains(&server.url()), "{text}");
    assert_eq!(server.seen().len(), 1, "no retry");
}

#[test]
fn network_errors_are_retried_then_reported() {
    // Bind, then close: nothing listens there any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let url = format!("http://{addr}/hook");
    let config = WebhookSinkConfig { max_attempts: 3, ..fast(url.clone()) };
    let sink = WebhookSink::new(config).expect("create the sink");
    let err = sink.write(&refs(&events(34, 0, 1))).expect_err("connection refused");
    let text = err.to_string();
    assert!(text.contains(&url) && text.contains("3 attempts"), "{text}");
}

#[test]
fn bad_urls_and_headers_are_rejected() {
    let err = WebhookSink::new(WebhookSinkConfig::new("ftp://example.com/x")).expect_err("not http");
    assert!(err.to_string().contains("ftp://example.com/x"), "{err}");
    let err = WebhookSink::new(WebhookSinkConfig::new("not a url")).expect_err("no url");
    assert!(err.to_string().contains("not a url"), "{err}");
    let mut config = WebhookSinkConfig::new("http://127.0.0.1:9/");
    config.headers.insert("bad header".into(), "v".into());
    let err = WebhookSink::new(config).expect_err("bad name");
    assert!(err.to_string().contains("headers.bad header"), "{err}");
    let mut config = WebhookSinkConfig::new("http://127.0.0.1:9/");
    config.headers.insert("authorization".into(), "secret\nvalue".into());
    let err = WebhookSink::new(config).expect_err("bad value");
    assert!(err.to_string().contains("headers.authorization") && !err.to_string().contains("secret"), "{err}");
}

#[test]
fn writers_on_several_threads_share_the_sink() {
    let server = Server::start(200, vec![]);
    let sink = WebhookSink::new(fast(server.url())).expect("create the sink");
    let per_thread: Vec<Vec<Event>> = (0..4).map(|t| events(35 + t, 0, 50)).collect();
    std::thread::scope(|scope| {
        for batch in &per_thread {
            let sink = &sink;
            scope.spawn(move || {
                for chunk in batch.chunks(10) {
                    sink.write(&refs(chunk)).expect("delivered");
                }
            });
        }
    });
    let mut got: Vec<String> = server.seen().into_iter().flat_map(|s| s.events).map(|e| e.uuid).collect();
    let mut want: Vec<String> = per_thread.iter().flatten().map(|e| e.uuid.clone()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "every event once");
}
