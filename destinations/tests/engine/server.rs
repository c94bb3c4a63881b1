//! A loopback HTTP server the engine tests control: scripted answers (status, headers, body,
//! delay, hang until released), a default answer that can change ("recover on command"), and a
//! record of every request with the time it arrived and the time its answer left.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::watch;

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer at once.
    Status { status: u16, headers: Vec<(String, String)>, body: String },
    /// Answer after a delay.
    Delayed { delay: Duration, status: u16 },
    /// Never answer until [`TestServer::release`]; then answer 200.
    Hang,
}

impl Reply {
    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Status { status, headers: Vec::new(), body: body.to_string() }
    }

    pub fn with_header(status: u16, name: &str, value: &str) -> Reply {
        Reply::Status { status, headers: vec![(name.to_string(), value.to_string())], body: String::new() }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub arrived: SystemTime,
    /// When the answer was handed to the HTTP stack (`None` while hanging).
    pub answered: Option<SystemTime>,
    pub status: Option<u16>,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

struct State {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    seen: Mutex<Vec<Seen>>,
    released: watch::Sender<bool>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The server; stops when dropped.
pub struct TestServer {
    pub url: String,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

struct InFlight<'a>(&'a State);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let _guard = InFlight(&state);
    let index = {
        let mut seen = state.seen.lock().unwrap();
        seen.push(Seen {
            arrived: SystemTime::now(),
            answered: None,
            status: None,
            method: method.to_string(),
            path: uri.path().to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        seen.len() - 1
    };
    let reply = {
        let next = state.script.lock().unwrap().pop_front();
        next.unwrap_or_else(|| state.default.lock().unwrap().clone())
    };
    let (status, extra, text) = match reply {
        Reply::Status { status, headers, body } => (status, headers, body),
        Reply::Delayed { delay, status } => {
            tokio::time::sleep(delay).await;
            (status, Vec::new(), String::new())
        }
        Reply::Hang => {
            let mut rx = state.released.subscribe();
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
            (200, Vec::new(), String::new())
        }
    };
    {
        let mut seen = state.seen.lock().unwrap();
        seen[index].answered = Some(SystemTime::now());
        seen[index].status = Some(status);
    }
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    for (k, v) in extra {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            axum::http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    response
}

impl TestServer {
    /// Starts a server answering `default` to everything not scripted.
    pub fn start(default: Reply) -> TestServer {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (released, _) = watch::channel(false);
        let state = Arc::new(State {
            script: Mutex::new(VecDeque::new()),
            default: Mutex::new(default),
            seen: Mutex::new(Vec::new()),
            released,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(state.clone());
        runtime.spawn(async move { axum::serve(listener, app).await });
        TestServer { url, state, _runtime: runtime }
    }

    /// Answers the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Changes the answer to everything not scripted.
    pub fn set_default(&self, reply: Reply) {
        *self.state.default.lock().unwrap() = reply;
    }

    /// Lets every hanging request (and any later `Hang`) answer 200.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    /// Requests being answered right now.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests ever being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}
