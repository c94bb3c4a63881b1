//! The capture HTTP endpoints: PostHog's paths and answers, in front of an [`EventLog`].
//!
//! Routes (each with or without a trailing slash, GET/POST, OPTIONS for CORS preflight):
//! `/e`, `/i/v0/e`, `/capture`, `/track`, `/engage` (payloads up to [`CaptureConfig::max_body_bytes`])
//! and `/batch` (up to [`CaptureConfig::max_batch_body_bytes`]); `/_liveness`, `/_readiness` and
//! `/metrics`. A request is answered `200 {"status": 1}` only after every event in it is durable;
//! errors are `{"status": <http status>, "code": "...", "error": "..."}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use chrono::Utc;
use http_body_util::BodyExt;

use crate::decode::{self, DecodeError, DecodeLimits, Encoded};
use crate::event::{self, CaptureError, EndpointKind, ParseLimits, ParsedBatch, RequestMeta};
use crate::log::{EventLog, LogError};
use crate::metrics::Metrics;

/// Capture's limits and switches. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// Largest request body on the single-event endpoints (`/e`, `/i/v0/e`, `/capture`, `/track`,
    /// `/engage`), as received. Default 2 MiB.
    pub max_body_bytes: usize,
    /// Largest request body on `/batch`. Default 20 MiB.
    pub max_batch_body_bytes: usize,
    /// Largest payload after decompression/decoding on the single-event endpoints. Default 16 MiB.
    pub max_decoded_bytes: usize,
    /// Largest payload after decompression/decoding on `/batch`. Default 64 MiB.
    pub max_batch_decoded_bytes: usize,
    /// Largest single event record. Default 1 MiB (Kafka's default message size).
    pub max_event_bytes: usize,
    /// Request bodies being processed at once, in bytes, above which new requests get 503.
    /// Keeps memory flat under overload. Default 256 MiB.
    pub max_inflight_bytes: usize,
    /// Per-token rate limit; `None` (the default) means unlimited.
    pub rate_limit: Option<RateLimit>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            max_body_bytes: 2 << 20,
            max_batch_body_bytes: 20 << 20,
            max_decoded_bytes: 16 << 20,
            max_batch_decoded_bytes: 64 << 20,
            max_event_bytes: 1 << 20,
            max_inflight_bytes: 256 << 20,
            rate_limit: None,
        }
    }
}

/// A token-bucket limit on events per project token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained events per second.
    pub events_per_second: f64,
    /// Bucket size: events allowed in a burst.
    pub burst: f64,
}

/// Tells capture which tokens belong to a project.
pub trait TokenResolver: Send + Sync + 'static {
    /// The project id for a capture token, or `None` when the token is unknown.
    fn project_for_token(&self, token: &str) -> Option<u64>;
}

/// A fixed token → project map.
#[derive(Debug, Clone, Default)]
pub struct StaticTokens(pub HashMap<String, u64>);

impl TokenResolver for StaticTokens {
    fn project_for_token(&self, token: &str) -> Option<u64> {
        self.0.get(token).copied()
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Per-token token buckets.
#[derive(Debug, Default)]
struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes `n` events from the token's bucket; on refusal, returns how long until they would fit.
    fn take(&self, limit: &RateLimit, token: &str, n: usize) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        if !buckets.contains_key(token) {
            buckets.insert(token.to_string(), Bucket { tokens: limit.burst, updated: now });
        }
        let Some(bucket) = buckets.get_mut(token) else { return Ok(()) };
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.events_per_second).min(limit.burst);
        bucket.updated = now;
        let n = n as f64;
        if bucket.tokens >= n {
            bucket.tokens -= n;
            Ok(())
        } else {
            let missing = n.min(limit.burst) - bucket.tokens;
            let wait = if limit.events_per_second > 0.0 { missing / limit.events_per_second } else { 60.0 };
            Err(Duration::from_secs_f64(wait.clamp(0.0, 3600.0)))
        }
    }
}

/// Everything the handlers share.
pub struct CaptureState {
    /// Limits and switches.
    pub config: CaptureConfig,
    /// Where events go.
    pub log: Arc<dyn EventLog>,
    /// Which tokens are valid.
    pub tokens: Arc<dyn TokenResolver>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    limiter: RateLimiter,
    inflight_bytes: AtomicUsize,
}

impl CaptureState {
    /// Builds the shared state.
    pub fn new(config: CaptureConfig, log: Arc<dyn EventLog>, tokens: Arc<dyn TokenResolver>) -> Arc<CaptureState> {
        Arc::new(CaptureState {
            config,
            log,
            tokens,
            metrics: Arc::new(Metrics::default()),
            limiter: RateLimiter::default(),
            inflight_bytes: AtomicUsize::new(0),
        })
    }
}

/// A refused request: the HTTP answer, in PostHog's error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What was wrong and how to fix it.
    pub message: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
}

impl Rejection {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection { status, code, message: message.into(), retry_after: None }
    }
}

impl From<CaptureError> for Rejection {
    fn from(e: CaptureError) -> Rejection {
        Rejection::new(e.status(), e.code(), e.to_string())
    }
}

impl From<DecodeError> for Rejection {
    fn from(e: DecodeError) -> Rejection {
        match e {
            DecodeError::TooLarge { .. } => Rejection::new(413, "payload_too_large", e.to_string()),
            _ => Rejection::new(400, "invalid_payload", e.to_string()),
        }
    }
}

impl From<LogError> for Rejection {
    fn from(e: LogError) -> Rejection {
        match &e {
            LogError::RecordTooLarge { .. } => Rejection::new(413, "event_too_large", e.to_string()),
            LogError::Full { .. } => Rejection {
                retry_after: Some(1),
                ..Rejection::new(503, "log_behind", "the event log is behind; retry shortly")
            },
            _ => {
                tracing::error!(error = %e, "event log append failed");
                Rejection {
                    retry_after: Some(5),
                    ..Rejection::new(503, "log_unavailable", "the event log is unavailable; retry shortly")
                }
            }
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = serde_json::json!({"status": self.status, "code": self.code, "error": self.message});
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[derive(Debug, Clone, Copy)]
struct Endpoint {
    name: &'static str,
    kind: EndpointKind,
    batch: bool,
}

const ENDPOINTS: [(&str, Endpoint); 6] = [
    ("/e", Endpoint { name: "e", kind: EndpointKind::Events, batch: false }),
    ("/i/v0/e", Endpoint { name: "i_v0_e", kind: EndpointKind::Events, batch: false }),
    ("/capture", Endpoint { name: "capture", kind: EndpointKind::Events, batch: false }),
    ("/track", Endpoint { name: "track", kind: EndpointKind::Events, batch: false }),
    ("/engage", Endpoint { name: "engage", kind: EndpointKind::Engage, batch: false }),
    ("/batch", Endpoint { name: "batch", kind: EndpointKind::Events, batch: true }),
];

/// The capture router, with every endpoint. `serve` adds connection info; without it (in
/// `oneshot` tests) the client IP is `127.0.0.1` unless `X-Forwarded-For` says otherwise.
pub fn app(state: Arc<CaptureState>) -> Router {
    let mut router = Router::new();
    for (path, endpoint) in ENDPOINTS {
        let handler =
            any(move |State(state): State<Arc<CaptureState>>, request: Request| capture(state, endpoint, request));
        router = router.route(path, handler.clone()).route(&format!("{path}/"), handler);
    }
    router
        .route("/_liveness", get(|| async { "ok" }))
        .route(
            "/_readiness",
            get(|State(state): State<Arc<CaptureState>>| async move {
                if state.log.is_ready() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "the event log is not ready")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(state): State<Arc<CaptureState>>| async move {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
            }),
        )
        .with_state(state)
}

/// Gives back reserved in-flight bytes when a request finishes, however it finishes.
struct Inflight<'a> {
    counter: &'a AtomicUsize,
    bytes: usize,
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

fn reserve(state: &CaptureState, bytes: usize) -> Result<Inflight<'_>, Rejection> {
    let before = state.inflight_bytes.fetch_add(bytes, Ordering::Relaxed);
    let guard = Inflight { counter: &state.inflight_bytes, bytes };
    if before > 0 && before + bytes > state.config.max_inflight_bytes {
        return Err(Rejection {
            retry_after: Some(1),
            ..Rejection::new(503, "overloaded", "capture is busy with other requests; retry shortly")
        });
    }
    Ok(guard)
}

async fn capture(state: Arc<CaptureState>, endpoint: Endpoint, request: Request) -> Response {
    let origin = request.headers().get(header::ORIGIN).cloned();
    let mut response = if request.method() == Method::OPTIONS {
        preflight(request.headers())
    } else {
        let result = handle(&state, endpoint, request).await;
        let response = match result {
            Ok(events) => {
                state.metrics.accepted(events);
                (StatusCode::OK, axum::Json(serde_json::json!({"status": 1}))).into_response()
            }
            Err((rejection, events)) => {
                state.metrics.rejected(rejection.code, events.max(1));
                rejection.into_response()
            }
        };
        state.metrics.request(endpoint.name, response.status().as_u16());
        response
    };
    add_cors(response.headers_mut(), origin);
    response
}

fn add_cors(headers: &mut HeaderMap, origin: Option<HeaderValue>) {
    match origin {
        Some(origin) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        None => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    }
}

fn preflight(request_headers: &HeaderMap) -> Response {
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    let allow = request_headers
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned()
        .unwrap_or(HeaderValue::from_static("Content-Type, Content-Encoding, Authorization"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, allow);
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

fn client_ip(request: &Request) -> String {
    if let Some(forwarded) = request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        if let Some(first) = forwarded.split(',').map(str::trim).find(|s| !s.is_empty()) {
            return first.to_string();
        }
    }
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => addr.ip().to_string(),
        None => "127.0.0.1".to_string(),
    }
}

/// Bodies above this size are decoded and parsed on the blocking pool, off the I/O threads.
const INLINE_DECODE_BYTES: usize = 256 * 1024;

async fn handle(state: &Arc<CaptureState>, endpoint: Endpoint, request: Request) -> Result<usize, (Rejection, usize)> {
    let method = request.method().clone();
    if method != Method::GET && method != Method::POST {
        return Err((
            Rejection::new(405, "method_not_allowed", format!("{method} is not allowed: use POST or GET")),
            0,
        ));
    }
    let (max_body, max_decoded) = if endpoint.batch {
        (state.config.max_batch_body_bytes, state.config.max_batch_decoded_bytes)
    } else {
        (state.config.max_body_bytes, state.config.max_decoded_bytes)
    };
    let ip = client_ip(&request);
    let now = Utc::now();
    let (parts, body) = request.into_parts();
    let declared =
        parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = declared {
        if len > max_body {
            return Err((too_large(max_body), 0));
        }
    }
    let _inflight = reserve(state, declared.unwrap_or(0)).map_err(|r| (r, 0))?;
    let body = read_body(body, max_body).await.map_err(|r| (r, 0))?;
    state.metrics.bytes(body.len());
    let _inflight_body = if declared.is_none() { Some(reserve(state, body.len()).map_err(|r| (r, 0))?) } else { None };

    let header_text =
        |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let owned = OwnedRequest {
        is_get: method == Method::GET,
        content_type: header_text(header::CONTENT_TYPE),
        content_encoding: header_text(header::CONTENT_ENCODING),
        query: parts.uri.query().map(str::to_string),
        body,
        ip,
        kind: endpoint.kind,
        max_decoded,
        max_event_bytes: state.config.max_event_bytes,
    };
    let parsed = if owned.body.len() > INLINE_DECODE_BYTES {
        match tokio::task::spawn_blocking(move || prepare(&owned, now)).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "decoding task failed");
                return Err((Rejection::new(500, "internal", "internal error while decoding"), 0));
            }
        }
    } else {
        prepare(&owned, now)
    }
    .map_err(|r| (r, 0))?;

    let events = parsed.records.len();
    if state.tokens.project_for_token(&parsed.token).is_none() {
        return Err((CaptureError::UnknownToken.into(), events));
    }
    if let Some(limit) = &state.config.rate_limit {
        if let Err(wait) = state.limiter.take(limit, &parsed.token, events) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let rejection = Rejection {
                retry_after: Some(secs),
                ..Rejection::new(
                    429,
                    "rate_limited",
                    format!("this project's token is over its limit of {} events/s", limit.events_per_second),
                )
            };
            return Err((rejection, events));
        }
    }
    let started = Instant::now();
    let result = state.log.append(parsed.records).await;
    state.metrics.append_latency.observe(started.elapsed());
    result.map_err(|e| (Rejection::from(e), events))?;
    Ok(events)
}

fn too_large(limit: usize) -> Rejection {
    Rejection::new(413, "payload_too_large", format!("the request body is larger than {limit} bytes"))
}

async fn read_body(mut body: Body, limit: usize) -> Result<Vec<u8>, Rejection> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| Rejection::new(400, "invalid_body", format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

struct OwnedRequest {
    is_get: bool,
    content_type: Option<String>,
    content_encoding: Option<String>,
    query: Option<String>,
    body: Vec<u8>,
    ip: String,
    kind: EndpointKind,
    max_decoded: usize,
    max_event_bytes: usize,
}

fn prepare(req: &OwnedRequest, now: chrono::DateTime<Utc>) -> Result<ParsedBatch, Rejection> {
    let encoded = Encoded {
        is_get: req.is_get,
        content_type: req.content_type.as_deref(),
        content_encoding: req.content_encoding.as_deref(),
        query: req.query.as_deref(),
        body: &req.body,
    };
    let decoded = decode::decode(encoded, &DecodeLimits { max_decoded_bytes: req.max_decoded })?;
    let meta = RequestMeta { kind: req.kind, ip: &req.ip, now, sent_at_ms: decoded.sent_at_ms };
    Ok(event::parse_payload(&decoded.json, &meta, &ParseLimits { max_event_bytes: req.max_event_bytes })?)
}
