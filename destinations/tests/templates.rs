//! Every destination template, run for real: each listed template has a case file
//! `tests/templates/<id>.toml` giving a user's inputs, optionally an event, and the requests the
//! service expects. The harness renders the template with those inputs and a sample event, sends
//! every `fetch` for real to an HTTP server on loopback (same method, path, query, headers and
//! body; only scheme, host and port are rewritten), and asserts what arrived. A second run answers
//! the first request with `400 {"error":"bad"}` and requires the invocation to fail with an error
//! naming the status.
//!
//! Case file:
//! ```toml
//! [inputs]                 # what a user configures; strings may be Hog templates
//! url = "https://example.com/hook"
//! [event]                  # optional: merged over the sample event (properties key by key)
//! event = "signed_up"
//! [event.properties]
//! plan = "pro"
//! [[expect]]               # one per fetch, in order
//! method = "POST"
//! url = "https://example.com/hook"            # the full URL the template built
//! headers = { "content-type" = "application/json" }   # must be present (names case-insensitive)
//! body_json = '''{"a": 1}'''                  # exact JSON equality; or body_text = "...",
//!                                             # body_form = { a = "1" } (urlencoded), no_body = true
//! response_status = 200                       # optional: what the server answers (default 200)
//! response_json = '''{"ok": true}'''          # optional (default {})
//! [failure]                                   # optional: the error run
//! at = 1                                      # which fetch gets the error answer (default 1)
//! status = 400                                # default 400
//! body = '''{"error":"bad"}'''                # default {"error":"bad"}
//! ```
//! Run one template: `HOGPIPE_TEMPLATE=template-slack cargo test -p hogpipe-destinations --test templates`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

use hogpipe_dataflow::event::{Event, Project};
use hogpipe_destinations::http::{HttpRequest, HttpResponse, Next, Resume};
use hogpipe_destinations::invoke::{Destination, Invoker, InvokerOptions};
use hogpipe_destinations::template::{listed_ids, load_all, templates, Template};

// ---------------------------------------------------------------------------------------------
// Case files

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(default)]
    inputs: Map<String, Json>,
    #[serde(default)]
    event: Map<String, Json>,
    #[serde(default)]
    expect: Vec<Expect>,
    #[serde(default)]
    failure: Failure,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body_json: Option<String>,
    body_text: Option<String>,
    body_form: Option<BTreeMap<String, String>>,
    #[serde(default)]
    no_body: bool,
    response_status: Option<u16>,
    response_json: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Failure {
    at: usize,
    status: u16,
    body: String,
}

impl Default for Failure {
    fn default() -> Self {
        Failure { at: 1, status: 400, body: r#"{"error":"bad"}"#.into() }
    }
}

fn cases_dir() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/templates")
}

fn load_case(id: &str) -> Result<Case, String> {
    let path = cases_dir().join(format!("{id}.toml"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!("missing case file tests/templates/{id}.toml ({e}): every template needs one, see the top of tests/templates.rs")
    })?;
    let case: Case = toml::from_str(&text).map_err(|e| {
        let (line, col) = e.span().map(|s| hog_lang::diagnostics::line_col(&text, s.start)).unwrap_or((1, 1));
        format!("tests/templates/{id}.toml:{line}:{col}: {}", e.message().trim())
    })?;
    if case.expect.is_empty() {
        return Err(format!("tests/templates/{id}.toml: no [[expect]]: say which requests the template makes"));
    }
    for (i, e) in case.expect.iter().enumerate() {
        let kinds = [e.body_json.is_some(), e.body_text.is_some(), e.body_form.is_some(), e.no_body];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(format!(
                "tests/templates/{id}.toml: expect #{}: give exactly one of body_json, body_text, body_form or no_body = true",
                i + 1
            ));
        }
    }
    if case.failure.at == 0 || case.failure.at > case.expect.len() {
        return Err(format!(
            "tests/templates/{id}.toml: [failure] at = {} but there are {} [[expect]]",
            case.failure.at,
            case.expect.len()
        ));
    }
    Ok(case)
}

// ---------------------------------------------------------------------------------------------
// The sample event

fn sample_event(overrides: &Map<String, Json>) -> Result<Event, String> {
    let mut event = json!({
        "uuid": "01890a5d-ac96-774b-b2ec-c4a52e8ae1a7",
        "team_id": 1,
        "event": "$pageview",
        "distinct_id": "user-42",
        "timestamp": "2024-05-01T12:34:56.789Z",
        "elements_chain": "",
        "ip": "203.0.113.7",
        "properties": {
            "$current_url": "https://shop.example.com/checkout?step=2",
            "$host": "shop.example.com",
            "$pathname": "/checkout",
            "$referrer": "https://www.google.com/",
            "$browser": "Chrome",
            "$browser_version": 124,
            "$os": "Mac OS X",
            "$device_type": "Desktop",
            "$lib": "web",
            "$session_id": "01890a5d-0000-7000-8000-00000000beef",
            "$ip": "203.0.113.7",
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "price": 49.9,
            "currency": "USD",
            "$set": {
                "email": "ada@example.com",
                "name": "Ada Lovelace",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "phone": "+15551234567",
                "plan": "pro",
                "company": "Analytical Engines"
            },
            "$set_once": {
                "$initial_referrer": "https://www.google.com/",
                "signed_up_at": "2024-01-15T09:00:00Z"
            }
        }
    });
    for (k, v) in overrides {
        match (k.as_str(), v) {
            ("properties", Json::Object(props)) => {
                if let Some(Json::Object(target)) = event.get_mut("properties") {
                    for (pk, pv) in props {
                        target.insert(pk.clone(), pv.clone());
                    }
                }
            }
            _ => {
                event[k] = v.clone();
            }
        }
    }
    serde_json::from_value(event).map_err(|e| format!("[event] does not make an event: {e}"))
}

fn sample_project() -> Project {
    Project { id: 1, name: "Hogpipe Shop".into() }
}

const SITE_URL: &str = "https://hogpipe.example.com";

// ---------------------------------------------------------------------------------------------
// The loopback server

#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Default)]
struct ServerState {
    requests: Vec<Recorded>,
    answer: (u16, String),
}

type Shared = Arc<Mutex<ServerState>>;

async fn record(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    s.requests.push(Recorded {
        method: method.to_string(),
        path_and_query: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body.to_vec(),
    });
    let (status, body) = s.answer.clone();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [("content-type", "application/json")], body).into_response()
}

struct Server {
    addr: SocketAddr,
    state: Shared,
}

async fn start_server() -> Server {
    let state: Shared = Arc::default();
    let app = Router::new().fallback(record).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server { addr, state }
}

/// `/path?query` of an absolute URL.
fn path_and_query(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    match after_scheme.find(['/', '?']) {
        Some(i) if after_scheme[i..].starts_with('?') => format!("/{}", &after_scheme[i..]),
        Some(i) => after_scheme[i..].to_string(),
        None => "/".to_string(),
    }
}

impl Server {
    /// Sends `request` to this server (scheme, host and port rewritten) answering `answer`;
    /// returns what arrived and the response.
    async fn send(&self, request: &HttpRequest, answer: (u16, String)) -> Result<(Recorded, HttpResponse), String> {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.answer = answer;
            s.requests.clear();
        }
        let target = path_and_query(&request.url);
        let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut builder = hyper::Request::builder().method(request.method.as_str()).uri(target.as_str());
        builder = builder.header("host", self.addr.to_string());
        for (k, v) in &request.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let body = Full::new(hyper::body::Bytes::from(request.body.clone().unwrap_or_default()));
        let req = builder
            .body(body)
            .map_err(|e| format!("the request is not valid HTTP ({e}): {} {}", request.method, request.url))?;
        let res = sender.send_request(req).await.map_err(|e| format!("sending: {e}"))?;
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = res.into_body().collect().await.map_err(|e| format!("reading the response: {e}"))?.to_bytes();
        let recorded = {
            let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.requests.first().cloned().ok_or("the server recorded no request")?
        };
        Ok((recorded, HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() }))
    }
}

// ---------------------------------------------------------------------------------------------
// Comparing

/// The first place where `actual` differs from `expected`, as `path: expected X, got Y`.
fn json_difference(path: &str, expected: &Json, actual: &Json) -> Option<String> {
    match (expected, actual) {
        (Json::Object(e), Json::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    None => return Some(format!("{p}: expected {ev}, but the key is missing")),
                    Some(av) => {
                        if let Some(d) = json_difference(&p, ev, av) {
                            return Some(d);
                        }
                    }
                }
            }
            a.keys().find(|k| !e.contains_key(*k)).map(|k| format!("{path}.{k}: not expected, got {}", a[k]))
        }
        (Json::Array(e), Json::Array(a)) => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                if let Some(d) = json_difference(&format!("{path}[{i}]"), ev, av) {
                    return Some(d);
                }
            }
            (e.len() != a.len()).then(|| format!("{path}: expected {} items, got {}", e.len(), a.len()))
        }
        (Json::Number(e), Json::Number(a)) if e.as_f64() == a.as_f64() => None,
        (e, a) if e == a => None,
        (e, a) => Some(format!("{path}: expected {e}, got {a}")),
    }
}

fn form_decode(s: &str) -> Result<BTreeMap<String, String>, String> {
    fn unescape(s: &str) -> Result<String, String> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = s.get(i + 1..i + 3).ok_or_else(|| format!("bad escape in {s:?}"))?;
                    out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad escape in {s:?}"))?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| format!("not UTF-8: {s:?}"))
    }
    let mut out = BTreeMap::new();
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(unescape(k)?, unescape(v)?);
    }
    Ok(out)
}

fn check_request(n: usize, expect: &Expect, sent: &HttpRequest, got: &Recorded) -> Vec<String> {
    let mut problems = Vec::new();
    if sent.url != expect.url {
        problems.push(format!("fetch #{n}: url: expected {:?}, got {:?}", expect.url, sent.url));
    }
    if got.path_and_query != path_and_query(&sent.url) {
        problems.push(format!("fetch #{n}: the server saw path {:?} for the URL {:?}", got.path_and_query, sent.url));
    }
    if !got.method.eq_ignore_ascii_case(&expect.method) {
        problems.push(format!("fetch #{n}: method: expected {}, got {}", expect.method, got.method));
    }
    for (name, value) in &expect.headers {
        let found: Vec<&str> =
            got.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect();
        if found.is_empty() {
            let names: Vec<&str> = got.headers.iter().map(|(k, _)| k.as_str()).collect();
            problems
                .push(format!("fetch #{n}: header `{name}`: expected {value:?}, but it is missing (sent: {names:?})"));
        } else if !found.contains(&value.as_str()) {
            problems.push(format!("fetch #{n}: header `{name}`: expected {value:?}, got {found:?}"));
        }
    }
    let body = String::from_utf8_lossy(&got.body);
    if let Some(expected) = &expect.body_json {
        match (serde_json::from_str::<Json>(expected), serde_json::from_str::<Json>(&body)) {
            (Err(e), _) => problems.push(format!("fetch #{n}: body_json in the case file is not JSON: {e}")),
            (_, Err(e)) => problems.push(format!("fetch #{n}: body: expected JSON, got {body:?} ({e})")),
            (Ok(e), Ok(a)) => {
                if let Some(d) = json_difference("body", &e, &a) {
                    problems.push(format!("fetch #{n}: {d}\n  whole body: {a}"));
                }
            }
        }
    }
    if let Some(expected) = &expect.body_text {
        if body != *expected {
            problems.push(format!("fetch #{n}: body: expected {expected:?}, got {body:?}"));
        }
    }
    if let Some(expected) = &expect.body_form {
        match form_decode(&body) {
            Err(e) => problems.push(format!("fetch #{n}: body is not a form ({e}): {body:?}")),
            Ok(a) if a != *expected => {
                problems.push(format!("fetch #{n}: form body: expected {expected:?}, got {a:?}"))
            }
            Ok(_) => {}
        }
    }
    if expect.no_body && !got.body.is_empty() {
        problems.push(format!("fetch #{n}: expected no body, got {body:?}"));
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// Running cases

fn selected() -> Vec<&'static Template> {
    let only = std::env::var("HOGPIPE_TEMPLATE").ok();
    templates().iter().filter(|t| only.as_deref().is_none_or(|o| o == t.id)).collect()
}

fn invoker_for(template: &Template, case: &Case) -> Result<Invoker, String> {
    let invoker = Invoker::new(InvokerOptions { site_url: SITE_URL.into(), ..InvokerOptions::default() });
    let d = Destination::from_template("fn-under-test", 1, &template.name, template, &case.inputs)
        .map_err(|e| format!("the case's inputs are refused: {e}"))?;
    invoker.upsert(d);
    Ok(invoker)
}

/// Runs the case; `fail_at` answers that fetch with the failure answer and expects the invocation to
/// fail. Returns the problems found.
async fn run_case(server: &Server, template: &Template, case: &Case, fail_at: Option<usize>) -> Vec<String> {
    let invoker = match invoker_for(template, case) {
        Ok(i) => i,
        Err(e) => return vec![e],
    };
    let event = match sample_event(&case.event) {
        Ok(e) => e,
        Err(e) => return vec![e],
    };
    let mut next = invoker.start("fn-under-test", &event, &sample_project());
    let mut n = 0;
    let mut problems = Vec::new();
    loop {
        match next {
            Next::Fetch { request, state } => {
                n += 1;
                if fail_at.is_some_and(|at| n > at) {
                    problems.push(format!(
                        "fetch #{} was answered {} but the function went on with fetch #{n} ({} {}) instead of failing \
                         (check `res.status` and `throw Error(...)`)",
                        n - 1,
                        case.failure.status,
                        request.method,
                        request.url
                    ));
                    return problems;
                }
                let Some(expect) = case.expect.get(n - 1) else {
                    problems.push(format!(
                        "fetch #{n} ({} {}) is not in the case file, which expects {} fetches",
                        request.method,
                        request.url,
                        case.expect.len()
                    ));
                    return problems;
                };
                let answer = if fail_at == Some(n) {
                    (case.failure.status, case.failure.body.clone())
                } else {
                    (expect.response_status.unwrap_or(200), expect.response_json.clone().unwrap_or_else(|| "{}".into()))
                };
                let (recorded, response) = match server.send(&request, answer).await {
                    Ok(r) => r,
                    Err(e) => {
                        problems.push(format!("fetch #{n}: {e}"));
                        return problems;
                    }
                };
                if fail_at.is_none() {
                    problems.extend(check_request(n, expect, &request, &recorded));
                }
                next = invoker.resume(&state, &response);
            }
            Next::Done { logs } => {
                if let Some(at) = fail_at {
                    problems.push(format!(
                        "fetch #{at} was answered {} {} but the function finished without error \
                         (check `res.status` and `throw Error(...)`); logs: {logs:?}",
                        case.failure.status, case.failure.body
                    ));
                } else if n < case.expect.len() {
                    problems.push(format!(
                        "the function finished after {n} fetches; the case expects {}; logs: {logs:?}",
                        case.expect.len()
                    ));
                }
                return problems;
            }
            Next::Failed { error, logs } => {
                match fail_at {
                    Some(_) => {
                        let status = case.failure.status.to_string();
                        if !error.contains(&status) {
                            problems.push(format!(
                                "the function failed, but its error does not name the status {status}: {error:?}"
                            ));
                        }
                    }
                    None => problems.push(format!("the function failed after {n} fetches: {error}; logs: {logs:?}")),
                }
                return problems;
            }
        }
    }
}

async fn run_all(fail: bool) {
    let server = start_server().await;
    let mut failures = Vec::new();
    for template in selected() {
        let case = match load_case(&template.id) {
            Ok(c) => c,
            Err(e) => {
                failures.push(format!("{}: {e}", template.id));
                continue;
            }
        };
        let fail_at = fail.then_some(case.failure.at);
        for p in run_case(&server, template, &case, fail_at).await {
            failures.push(format!("{}: {p}", template.id));
        }
    }
    assert!(failures.is_empty(), "\n{}\n", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn templates_all_load() {
    let mut failures = Vec::new();
    for result in load_all() {
        if let Err(e) = result {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "templates that do not load:\n{}", failures.join("\n"));
    assert_eq!(templates().len(), listed_ids().count());
}

#[test]
fn every_case_file_belongs_to_a_listed_template() {
    let ids: Vec<&str> = listed_ids().collect();
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(cases_dir()).expect("tests/templates exists") {
        let path = entry.expect("a directory entry").path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else { continue };
        if path.extension().and_then(|e| e.to_str()) != Some("toml") || !ids.contains(&stem) {
            orphans.push(path.display().to_string());
        }
    }
    assert!(orphans.is_empty(), "case files without a listed template (add it to src/template/list.rs): {orphans:?}");
}

#[tokio::test]
async fn every_template_sends_what_the_service_expects() {
    run_all(false).await;
}

#[tokio::test]
async fn every_template_fails_on_an_error_answer() {
    run_all(true).await;
}
