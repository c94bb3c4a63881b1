//! The batched webhook sink: POSTs the events as a JSON array (at most `max_events_per_request`
//! per request; a bigger batch is split and its requests sent in order), with configured headers,
//! over pooled keep-alive connections (reqwest, rustls).
//!
//! Network errors, timeouts, 5xx and 429 are retried with exponential backoff and full jitter, and
//! never sooner than a `Retry-After` asks (seconds or an HTTP date, capped by
//! `max_retry_after_secs`), up to `max_attempts` in all; then the write fails, naming the URL and
//! the last status. Any other answer that is not 2xx (4xx, 3xx: redirects are not followed) fails
//! at once. When a later request of a split batch fails, the earlier ones were delivered and are
//! sent again with the retried batch (at-least-once).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hogpipe_dataflow::event::Event;
use hogpipe_dataflow::sink::{EventSink, SinkError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

/// The most of an error answer's body kept for the error message.
const BODY_EXCERPT_BYTES: usize = 512;
/// The most of an answer's body read (so the connection can be reused); the rest is dropped.
const BODY_READ_LIMIT: usize = 64 << 10;

/// `[[sinks]] type = "webhook"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSinkConfig {
    /// The `http://` or `https://` URL to POST to.
    pub url: String,
    /// Extra request headers (e.g. `authorization`); `content-type` defaults to `application/json`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Events per request at most; bigger batches are split. Default 500.
    #[serde(default = "default_max_events_per_request")]
    pub max_events_per_request: usize,
    /// Attempts per request, the first included. Default 5.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Backoff before the first retry, milliseconds (doubling, with full jitter). Default 500.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest backoff between attempts, milliseconds. Default 30 000.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Longest `Retry-After` honoured, seconds (longer ones wait this long). Default 300.
    #[serde(default = "default_max_retry_after_secs")]
    pub max_retry_after_secs: u64,
    /// Timeout of one request (connecting, sending and the answer), milliseconds. Default 10 000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_max_events_per_request() -> usize {
    500
}
fn default_max_attempts() -> u32 {
    5
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    30_000
}
fn default_max_retry_after_secs() -> u64 {
    300
}
fn default_timeout_ms() -> u64 {
    10_000
}

impl WebhookSinkConfig {
    /// A config for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> WebhookSinkConfig {
        WebhookSinkConfig {
            url: url.into(),
            headers: BTreeMap::new(),
            max_events_per_request: default_max_events_per_request(),
            max_attempts: default_max_attempts(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            max_retry_after_secs: default_max_retry_after_secs(),
            timeout_ms: default_timeout_ms(),
        }
    }
}

/// A batched webhook; see the module docs.
pub struct WebhookSink {
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    config: WebhookSinkConfig,
    runtime: tokio::runtime::Runtime,
    /// xorshift state for the jitter.
    jitter: AtomicU64,
    /// The URL without credentials, for messages.
    shown_url: String,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink").field("url", &self.shown_url).finish_non_exhaustive()
    }
}

/// Why one request did not succeed.
struct Failure {
    /// What to say: the status and a body excerpt, or the network error.
    message: String,
    /// Whether trying again may help.
    retry: bool,
    /// What the service's `Retry-After` asked for.
    retry_after: Option<Duration>,
}

impl WebhookSink {
    /// Checks the URL and headers and builds the client; connects on the first write.
    pub fn new(config: WebhookSinkConfig) -> Result<WebhookSink, SinkError> {
        let err = |message: String| SinkError { sink: "webhook sink".into(), message };
        let url = Url::parse(&config.url).map_err(|e| err(format!("the URL {:?} does not parse: {e}", config.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(err(format!("the URL {:?} is not http:// or https://", config.url)));
        }
        let mut shown = url.clone();
        if shown.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        let shown_url = shown.to_string();
        let mut headers = HeaderMap::new();
        for (key, value) in &config.headers {
            let name = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| err(format!("headers.{key}: not a valid header name")))?;
            // The value may be a secret: the message does not repeat it.
            let value =
                HeaderValue::from_str(value).map_err(|_| err(format!("headers.{key}: not a valid header value")))?;
            headers.append(name, value);
        }
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(config.timeout_ms.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hogpipe/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| err(format!("building the HTTP client: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err(format!("starting the HTTP runtime: {e}")))?;
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish() | 1;
        Ok(WebhookSink { client, url, headers, config, runtime, jitter: AtomicU64::new(seed), shown_url })
    }

    fn error(&self, message: String) -> SinkError {
        SinkError { sink: format!("webhook sink {}", self.shown_url), message }
    }

    /// A random number of milliseconds in `0..=bound`.
    fn jittered(&self, bound: u64) -> u64 {
        let mut x = self.jitter.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter.store(x, Ordering::Relaxed);
        x % bound.saturating_add(1)
    }

    /// The wait before attempt `attempt + 1` (`attempt` ≥ 1 failed so far).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.config.backoff_initial_ms.saturating_mul(1u64 << (attempt - 1).min(32));
        let backoff = Duration::from_millis(self.jittered(exp.min(self.config.backoff_max_ms)));
        match retry_after {
            Some(asked) => backoff.max(asked.min(Duration::from_secs(self.config.max_retry_after_secs))),
            None => backoff,
        }
    }

    /// One request; Ok on 2xx.
    async fn attempt(&self, body: Bytes) -> Result<(), Failure> {
        let request = self.client.post(self.url.clone()).headers(self.headers.clone()).body(body);
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                let message = format!("{}", ErrorChain(&e));
                return Err(Failure { message, retry: !e.is_builder(), retry_after: None });
            }
        };
        let status = response.status();
        let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        // Read (a bounded part of) the body, so the connection goes back to the pool.
        let mut excerpt = Vec::new();
        let mut read = 0usize;
        while read <= BODY_READ_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    read += chunk.len();
                    let room = BODY_EXCERPT_BYTES.saturating_sub(excerpt.len());
                    excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        if status.is_success() {
            return Ok(());
        }
        let retry = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        let body = String::from_utf8_lossy(&excerpt);
        let message =
            if body.trim().is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {}", body.trim()) };
        Err(Failure { message, retry, retry_after })
    }

    /// One request with its retries.
    async fn send(&self, body: Bytes, events: usize) -> Result<(), SinkError> {
        let max_attempts = self.config.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self.attempt(body.clone()).await {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            if !failure.retry || attempt >= max_attempts {
                let tries = if attempt == 1 { "1 attempt".to_string() } else { format!("{attempt} attempts") };
                return Err(self
                    .error(format!("POST {} ({events} events): {} (after {tries})", self.shown_url, failure.message)));
            }
            let wait = self.backoff(attempt, failure.retry_after);
            tracing::debug!(url = %self.shown_url, attempt, error = %failure.message, wait_ms = wait.as_millis() as u64, "webhook sink: retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// `Retry-After`: delay seconds or an HTTP date.
fn parse_retry_after(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// An error with its sources (reqwest's own message rarely says "connection refused").
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

impl EventSink for WebhookSink {
    fn write(&self, events: &[&Event]) -> Result<(), SinkError> {
        let per_request = self.config.max_events_per_request.max(1);
        self.runtime.block_on(async {
            for chunk in events.chunks(per_request) {
                let body = serde_json::to_vec(chunk).map_err(|e| self.error(format!("encoding the events: {e}")))?;
                self.send(Bytes::from(body), chunk.len()).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let parsed = parse_retry_after(&later).unwrap_or_default();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120), "{parsed:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let mut config = WebhookSinkConfig::new("http://127.0.0.1:9/");
        config.backoff_initial_ms = 100;
        config.backoff_max_ms = 1_000;
        config.max_retry_after_secs = 60;
        let sink = WebhookSink::new(config).unwrap();
        for attempt in 1..40 {
            let wait = sink.backoff(attempt, None);
            let cap = (100u64 << (attempt - 1).min(32)).min(1_000);
            assert!(wait <= Duration::from_millis(cap), "attempt {attempt}: {wait:?}");
        }
        assert!(sink.backoff(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        assert_eq!(sink.backoff(1, Some(Duration::from_secs(3600))), Duration::from_secs(60));
    }
}
