//! One destination's in-memory queue and its dispatcher: takes ready jobs within the concurrency
//! and rate limits, performs each request in its own task, and decides what follows (resume,
//! follow-up, retry or dead letter), telling the store thread.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::config::{DestinationSettings, RateLimit};
use super::dead_letters::LastError;
use super::metrics::{Counters, DestinationMetrics};
use super::retry::{backoff_delay, is_retryable_status, parse_retry_after};
use super::seal::{Column, Sealer};
use super::store::Op;
use super::{lock, now_ms, Shared};
use crate::http::{HttpRequest, HttpResponse, Next};

/// How much of a response body a dead letter keeps.
const EXCERPT_BYTES: usize = 1000;

/// A job held in memory.
#[derive(Debug)]
pub(crate) struct MemJob {
    pub id: i64,
    pub request: HttpRequest,
    pub state: Vec<u8>,
    /// Attempts made so far for the current request.
    pub attempts: u32,
    /// Not before this time (ms since the epoch).
    pub next_at: i64,
}

/// A job waiting for its retry time; the heap yields the earliest first.
#[derive(Debug)]
pub(crate) struct Delayed(MemJob);

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.0.next_at, other.0.id).cmp(&(self.0.next_at, self.0.id))
    }
}

/// A destination's jobs in memory.
#[derive(Debug, Default)]
pub(crate) struct DestQueue {
    /// Due now, oldest first.
    pub ready: VecDeque<MemJob>,
    /// Waiting for a retry time.
    pub delayed: BinaryHeap<Delayed>,
    /// Ready + delayed + in flight: what counts against the memory bound.
    pub in_memory: usize,
    /// Taken by the dispatcher and not finished yet.
    pub in_flight: usize,
    /// Some of this destination's jobs on disk (ids above `cursor`) are not in memory.
    pub spilled: bool,
    /// The highest job id taken into memory.
    pub cursor: i64,
    /// A load from disk was asked of the store thread and has not run yet.
    pub load_requested: bool,
}

impl DestQueue {
    /// Takes a new job (enqueued or loaded) into memory.
    pub fn admit(&mut self, job: MemJob, now: i64) {
        self.in_memory += 1;
        self.cursor = self.cursor.max(job.id);
        self.place(job, now);
    }

    fn place(&mut self, job: MemJob, now: i64) {
        if job.next_at <= now {
            self.ready.push_back(job);
        } else {
            self.delayed.push(Delayed(job));
        }
    }

    fn promote(&mut self, now: i64) {
        while self.delayed.peek().is_some_and(|d| d.0.next_at <= now) {
            if let Some(Delayed(job)) = self.delayed.pop() {
                self.ready.push_back(job);
            }
        }
    }
}

/// One destination (function id).
pub(crate) struct Dest {
    pub id: Arc<str>,
    settings: Mutex<Arc<DestinationSettings>>,
    pub queue: Mutex<DestQueue>,
    /// Wakes the dispatcher: a job became ready, a slot freed, settings changed, or stopping.
    pub wake: Notify,
    pub counters: Counters,
    /// The last URL parsed for this destination (a function usually sends to one URL; parsing
    /// with IDNA is a visible share of a request's cost).
    last_url: Mutex<Option<(String, reqwest::Url)>>,
}

impl Dest {
    pub fn new(id: Arc<str>, settings: DestinationSettings) -> Dest {
        Dest {
            id,
            settings: Mutex::new(Arc::new(settings)),
            queue: Mutex::new(DestQueue::default()),
            wake: Notify::new(),
            counters: Counters::default(),
            last_url: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> Arc<DestinationSettings> {
        lock(&self.settings).clone()
    }

    pub fn set_settings(&self, settings: DestinationSettings) {
        *lock(&self.settings) = Arc::new(settings);
        self.wake.notify_one();
    }

    /// Parses a request URL (`http` or `https` only), reusing the last one when it is the same.
    fn parse_url(&self, url: &str) -> Result<reqwest::Url, String> {
        if let Some((text, parsed)) = &*lock(&self.last_url) {
            if text == url {
                return Ok(parsed.clone());
            }
        }
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            Ok(u) => return Err(format!("unsupported URL scheme {:?} in {url}", u.scheme())),
            Err(e) => return Err(format!("invalid URL {url:?}: {e}")),
        };
        *lock(&self.last_url) = Some((url.to_string(), parsed.clone()));
        Ok(parsed)
    }

    pub fn metrics(&self) -> DestinationMetrics {
        let mut m = self.counters.snapshot(&self.id);
        let q = lock(&self.queue);
        m.in_flight = q.in_flight as u64;
        m.in_memory = q.in_memory as u64;
        m
    }
}

/// Token bucket state of one dispatcher.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Takes a token; returns how long to wait before using it.
    fn take(&mut self, limit: &RateLimit) -> Duration {
        let now = Instant::now();
        let burst = f64::from(limit.burst);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / limit.per_second)
        }
    }
}

enum Step {
    Send(MemJob),
    Wait(Option<i64>),
}

/// The dispatcher of one destination: runs until the engine stops.
pub(crate) async fn run_dispatcher(shared: Arc<Shared>, dest: Arc<Dest>) {
    let mut bucket: Option<Bucket> = None;
    loop {
        if shared.stopping.load(Relaxed) {
            return;
        }
        let settings = dest.settings();
        let step = {
            let mut q = lock(&dest.queue);
            q.promote(now_ms());
            if q.in_flight >= settings.concurrency {
                Step::Wait(None)
            } else if let Some(job) = q.ready.pop_front() {
                q.in_flight += 1;
                Step::Send(job)
            } else {
                Step::Wait(q.delayed.peek().map(|d| d.0.next_at))
            }
        };
        match step {
            Step::Send(job) => {
                if let Some(limit) = &settings.rate_limit {
                    let b =
                        bucket.get_or_insert_with(|| Bucket { tokens: f64::from(limit.burst), last: Instant::now() });
                    let wait = b.take(limit);
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                } else {
                    bucket = None;
                }
                tokio::spawn(attempt(shared.clone(), dest.clone(), job, settings));
            }
            Step::Wait(until) => {
                let notified = dest.wake.notified();
                match until {
                    Some(at) => {
                        tokio::select! {
                            _ = notified => {}
                            _ = tokio::time::sleep(until_ms(at)) => {}
                        }
                    }
                    None => notified.await,
                }
            }
        }
    }
}

/// How long until `at` (ms since the epoch), rounded up so a retry is never early.
fn until_ms(at: i64) -> Duration {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let at = Duration::from_millis(u64::try_from(at).unwrap_or(0));
    at.saturating_sub(now) + Duration::from_micros(500)
}

/// What a request came to.
pub(crate) enum Outcome {
    /// The service answered (any status).
    Answer(HttpResponse),
    /// No answer: connection failure, timeout, or a broken response.
    Network(String),
    /// The request cannot be sent at all (bad method, URL or header): never retried.
    Invalid(String),
}

/// What happens to the job after an attempt.
enum After {
    /// Back into the queue (a follow-up request, or a retry later).
    Requeue(MemJob),
    /// Out of memory (finished or dead-lettered).
    Remove,
}

/// One attempt of one job, then its consequences.
async fn attempt(shared: Arc<Shared>, dest: Arc<Dest>, mut job: MemJob, settings: Arc<DestinationSettings>) {
    dest.counters.sent.fetch_add(1, Relaxed);
    let outcome = match dest.parse_url(&job.request.url) {
        Ok(url) => perform(&shared.client, url, &job.request, settings.timeout, shared.config.max_response_body).await,
        Err(message) => Outcome::Invalid(message),
    };
    job.attempts = job.attempts.saturating_add(1);
    let after = match outcome {
        Outcome::Answer(response) if !is_retryable_status(response.status) => finish(&shared, &dest, job, &response),
        Outcome::Answer(response) => {
            let now = SystemTime::now();
            let retry_after = response
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, v)| parse_retry_after(v, now));
            let error = LastError { status: Some(response.status), message: excerpt(&response.body) };
            retry_or_dead(&shared, &dest, &settings, job, error, retry_after)
        }
        Outcome::Network(message) => {
            retry_or_dead(&shared, &dest, &settings, job, LastError { status: None, message }, None)
        }
        Outcome::Invalid(message) => dead(&shared, &dest, job, LastError { status: None, message }),
    };
    let now = now_ms();
    let mut q = lock(&dest.queue);
    q.in_flight = q.in_flight.saturating_sub(1);
    match after {
        After::Requeue(job) => q.place(job, now),
        After::Remove => {
            q.in_memory = q.in_memory.saturating_sub(1);
            let room = settings.memory_queue.saturating_sub(q.in_memory);
            if q.spilled && !q.load_requested && (room >= (settings.memory_queue / 4).max(1) || q.in_memory == 0) {
                q.load_requested = true;
                shared.send(Op::Load(dest.clone()));
            }
        }
    }
    drop(q);
    dest.wake.notify_one();
}

/// A final answer: resume the invocation, then remove the job or queue its follow-up.
fn finish(shared: &Shared, dest: &Arc<Dest>, mut job: MemJob, response: &HttpResponse) -> After {
    if response.status < 400 {
        dest.counters.succeeded.fetch_add(1, Relaxed);
    } else {
        dest.counters.failed.fetch_add(1, Relaxed);
    }
    let next = std::panic::catch_unwind(AssertUnwindSafe(|| shared.resume.resume(&job.state, response)));
    match next {
        Ok(Next::Fetch { request, state }) => match seal_follow_up(&shared.sealer, &request, &state) {
            Ok((sealed_request, sealed_state)) => {
                shared.send(Op::FollowUp { id: job.id, request: sealed_request, state: sealed_state });
                job.request = request;
                job.state = state;
                job.attempts = 0;
                job.next_at = now_ms();
                After::Requeue(job)
            }
            Err(e) => dead(
                shared,
                dest,
                job,
                LastError {
                    status: Some(response.status),
                    message: format!("the follow-up request cannot be stored: {e}"),
                },
            ),
        },
        Ok(Next::Done { .. } | Next::Failed { .. }) => {
            shared.send(Op::Finish { dest: dest.clone(), id: job.id });
            After::Remove
        }
        Err(_) => {
            tracing::error!(function_id = %dest.id, job = job.id, "resuming the invocation panicked");
            dead(
                shared,
                dest,
                job,
                LastError {
                    status: Some(response.status),
                    message: "resuming the function panicked (a bug in hogpipe)".to_string(),
                },
            )
        }
    }
}

/// A follow-up's request (encoded) and state, sealed for `jobs` (on this thread, not the store's).
fn seal_follow_up(sealer: &Sealer, request: &HttpRequest, state: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let json = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let request = sealer.seal(Column::JobRequest, &json).map_err(|e| e.to_string())?;
    let state = sealer.seal(Column::JobState, state).map_err(|e| e.to_string())?;
    Ok((request, state))
}

/// A failed attempt: schedule a retry, or dead-letter the job when it may not be retried.
fn retry_or_dead(
    shared: &Shared,
    dest: &Arc<Dest>,
    settings: &DestinationSettings,
    mut job: MemJob,
    mut error: LastError,
    retry_after: Option<Duration>,
) -> After {
    if job.attempts >= settings.max_attempts {
        return dead(shared, dest, job, error);
    }
    let mut delay = backoff_delay(job.attempts, settings.backoff_base, settings.backoff_max, fastrand::f64());
    if let Some(wait) = retry_after {
        if wait > settings.max_retry_after {
            error.message = format!(
                "{} (the service asked to retry after {} s, more than the maximum of {} s)",
                error.message,
                wait.as_secs(),
                settings.max_retry_after.as_secs()
            );
            return dead(shared, dest, job, error);
        }
        delay = delay.max(wait);
    }
    let at = SystemTime::now() + delay;
    let at = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    // Rounded up to the next millisecond: never sooner than asked.
    let next_at = i64::try_from(at.as_nanos().div_ceil(1_000_000)).unwrap_or(i64::MAX);
    tracing::debug!(function_id = %dest.id, job = job.id, attempts = job.attempts, %error, "delivery failed; retrying");
    shared.send(Op::Retry { id: job.id, attempts: job.attempts, next_at, error: error.to_string() });
    dest.counters.retried.fetch_add(1, Relaxed);
    job.next_at = next_at;
    After::Requeue(job)
}

fn dead(shared: &Shared, dest: &Arc<Dest>, job: MemJob, error: LastError) -> After {
    // Query strings and user info often carry API keys: the log shows the URL without them (the
    // sealed dead letter keeps the whole request).
    let url = loggable_url(&job.request.url);
    let message = error.to_string().replace(&job.request.url, &url);
    tracing::warn!(function_id = %dest.id, job = job.id, attempts = job.attempts, %url, error = %message, "delivery failed; moved to the dead letters");
    dest.counters.dead_lettered.fetch_add(1, Relaxed);
    shared.send(Op::Dead { dest: dest.clone(), id: job.id, attempts: job.attempts, error });
    After::Remove
}

/// The start of a body, cut on a character boundary.
fn excerpt(body: &str) -> String {
    if body.len() <= EXCERPT_BYTES {
        return body.to_string();
    }
    let mut end = EXCERPT_BYTES;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", body.get(..end).unwrap_or_default())
}

/// Sends one request to `url` (parsed from `req.url`) and reads the answer (the body cut at
/// `max_body` bytes).
pub(crate) async fn perform(
    client: &reqwest::Client,
    url: reqwest::Url,
    req: &HttpRequest,
    timeout: Duration,
    max_body: usize,
) -> Outcome {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let Ok(method) = reqwest::Method::from_bytes(req.method.as_bytes()) else {
        return Outcome::Invalid(format!("invalid HTTP method {:?} for {}", req.method, req.url));
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for (name, value) in &req.headers {
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            return Outcome::Invalid(format!("invalid header name {name:?} for {}", req.url));
        };
        let Ok(v) = HeaderValue::from_str(value) else {
            return Outcome::Invalid(format!("invalid value of header {name:?} for {}", req.url));
        };
        headers.append(n, v);
    }
    let mut builder = client.request(method, url).headers(headers).timeout(timeout);
    if let Some(body) = &req.body {
        builder = builder.body(body.clone());
    }
    let mut response = match builder.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Network(describe(&e, timeout)),
    };
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = max_body.saturating_sub(body.len()).min(chunk.len());
                body.extend_from_slice(chunk.get(..take).unwrap_or_default());
                if body.len() >= max_body {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => return Outcome::Network(describe(&e, timeout)),
        }
    }
    Outcome::Answer(HttpResponse { status, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// A reqwest error with its causes (reqwest's own message names the URL).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    use std::error::Error;
    let mut text = e.to_string();
    if e.is_timeout() {
        text.push_str(&format!(" (timed out after {} ms)", timeout.as_millis()));
    }
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// `url` without user info, query and fragment: what a log line may show.
fn loggable_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => url.split(['?', '#']).next().unwrap_or_default().rsplit('@').next().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod log_tests {
    use super::loggable_url;

    #[test]
    fn logged_urls_lose_keys() {
        assert_eq!(loggable_url("https://u:pw@api.example.com/v1/x?api_key=SECRET#f"), "https://api.example.com/v1/x");
        assert_eq!(loggable_url("https://api.example.com/track"), "https://api.example.com/track");
        assert_eq!(loggable_url("not a url?key=SECRET"), "not a url");
    }
}
