//! Captured events: what capture writes to the log, and how an SDK's payload becomes records.
//!
//! A payload is one event object, an array of events, or `{api_key, batch: [...], sent_at,
//! historical_migration}`. Each event becomes a [`CapturedEvent`] in PostHog's shape (`uuid,
//! distinct_id, ip, data, now, sent_at, token`), where `data` is the event's JSON text exactly as
//! the SDK sent it. Nothing is re-serialized on the common path: the event is scanned once for the
//! few fields capture needs, and its text is copied into the record.
//!
//! The event time is not decided here: like PostHog, capture keeps `now` and `sent_at` and the
//! reader calls [`resolve_timestamp`] (clock-skew correction).

use std::borrow::Cow;

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::log::Record;

/// Longest distinct id kept; longer ones are cut to this many characters (as PostHog does).
pub const MAX_DISTINCT_ID_CHARS: usize = 200;
/// Longest accepted project token.
pub const MAX_TOKEN_CHARS: usize = 64;
/// Events timestamped further than this in the future are placed at `now` instead.
pub const FUTURE_EVENT_CUTOFF_HOURS: i64 = 23;

/// The record capture writes to the event log, in PostHog's captured-event shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturedEvent {
    /// The event's uuid (from the SDK, or generated as a v7 uuid).
    pub uuid: String,
    /// The distinct id, always a string of at most [`MAX_DISTINCT_ID_CHARS`] characters.
    pub distinct_id: String,
    /// The client's IP (first `X-Forwarded-For` entry, else the peer address).
    pub ip: String,
    /// The event's JSON text as the SDK sent it.
    pub data: String,
    /// Server time when the request arrived, RFC 3339.
    pub now: String,
    /// Client time when the request was sent, RFC 3339, when the client said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// The project token.
    pub token: String,
    /// PostHog's `historical_migration` flag (imports that should not trigger real-time work).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub historical_migration: bool,
}

/// Borrowed form of [`CapturedEvent`] used when writing, so nothing is copied twice.
#[derive(Serialize)]
struct CapturedEventRef<'a> {
    uuid: &'a str,
    distinct_id: &'a str,
    ip: &'a str,
    data: &'a str,
    now: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sent_at: Option<&'a str>,
    token: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    historical_migration: bool,
}

impl CapturedEvent {
    /// The partitioning key, `token:distinct_id`, as PostHog uses for Kafka.
    pub fn key(&self) -> String {
        format!("{}:{}", self.token, self.distinct_id)
    }

    /// Parses a record value written by capture.
    pub fn from_json(bytes: &[u8]) -> Result<CapturedEvent, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The event's `data` parsed as JSON.
    pub fn data_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(&self.data)
    }
}

/// Which endpoint a payload came in on (it changes a few rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// `/e`, `/i/v0/e`, `/capture`, `/track`, `/batch`.
    Events,
    /// `/engage`: person updates; an event without a name becomes `$identify`.
    Engage,
}

/// What capture knows about a request besides its payload.
#[derive(Debug, Clone)]
pub struct RequestMeta<'a> {
    /// Which endpoint.
    pub kind: EndpointKind,
    /// Client IP.
    pub ip: &'a str,
    /// Server time of arrival.
    pub now: DateTime<Utc>,
    /// The `_` query parameter (client send time, ms).
    pub sent_at_ms: Option<i64>,
}

impl<'a> RequestMeta<'a> {
    /// A request that arrived now on `kind` from `ip`, without a `_` send time.
    pub fn new(kind: EndpointKind, ip: &'a str) -> RequestMeta<'a> {
        RequestMeta { kind, ip, now: Utc::now(), sent_at_ms: None }
    }
}

/// Why a payload was refused. [`CaptureError::status`] and [`CaptureError::code`] give the HTTP
/// answer; the message says what to fix, naming the event (`batch[3]`) and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    /// The payload is not JSON, or not the shape of an event/batch.
    #[error("{0}")]
    InvalidPayload(String),
    /// A batch with no events.
    #[error("the batch is empty: send at least one event")]
    EmptyBatch,
    /// An event has no distinct id.
    #[error("{at}: no distinct id: set `distinct_id` (or `$distinct_id`, or `properties.distinct_id`)")]
    MissingDistinctId {
        /// Which event (`event` or `batch[i]`).
        at: String,
    },
    /// An event has no name.
    #[error("{at}: no event name: set `event` to a non-empty string")]
    MissingEventName {
        /// Which event.
        at: String,
    },
    /// A uuid that does not parse.
    #[error("{at}: `uuid` is not a valid UUID: {value}")]
    InvalidUuid {
        /// Which event.
        at: String,
        /// What was given.
        value: String,
    },
    /// No token anywhere.
    #[error("no project token: set `api_key` (or `token`, `$token`, `properties.token`)")]
    NoToken,
    /// A token that cannot be a project token.
    #[error("the project token is invalid: {0}")]
    InvalidToken(String),
    /// Events of one request carry different tokens.
    #[error("{at}: the events of one request must all have the same project token")]
    MultipleTokens {
        /// The first event with a different token.
        at: String,
    },
    /// The token does not belong to any project.
    #[error("unknown project token: check the token your SDK is configured with")]
    UnknownToken,
    /// One event is larger than the log accepts.
    #[error("{at}: the event is {size} bytes, larger than the limit of {limit} bytes")]
    EventTooLarge {
        /// Which event.
        at: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl CaptureError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            CaptureError::NoToken | CaptureError::InvalidToken(_) => 401,
            CaptureError::UnknownToken => 403,
            CaptureError::EventTooLarge { .. } => 413,
            _ => 400,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            CaptureError::InvalidPayload(_) => "invalid_payload",
            CaptureError::EmptyBatch => "empty_batch",
            CaptureError::MissingDistinctId { .. } => "missing_distinct_id",
            CaptureError::MissingEventName { .. } => "missing_event_name",
            CaptureError::InvalidUuid { .. } => "invalid_uuid",
            CaptureError::NoToken => "no_token",
            CaptureError::InvalidToken(_) => "invalid_token",
            CaptureError::MultipleTokens { .. } => "multiple_tokens",
            CaptureError::UnknownToken => "unknown_token",
            CaptureError::EventTooLarge { .. } => "event_too_large",
        }
    }
}

/// A payload turned into log records, all for one token.
#[derive(Debug)]
pub struct ParsedBatch {
    /// The project token shared by every event.
    pub token: String,
    /// One record per event, in payload order.
    pub records: Vec<Record>,
    /// Bytes of event JSON accepted.
    pub data_bytes: usize,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default)]
    api_key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    token: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sent_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    historical_migration: Option<&'a RawValue>,
}

/// The fields of an event capture reads; everything else is skipped and kept verbatim in `data`.
#[derive(Deserialize)]
struct EventPeek<'a> {
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    distinct_id: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "$distinct_id")]
    dollar_distinct_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    token: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "$token")]
    dollar_token: Option<&'a RawValue>,
    #[serde(borrow, default)]
    api_key: Option<&'a RawValue>,
    #[serde(borrow, default)]
    uuid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PropertiesPeek<'a> {
    #[serde(borrow, default)]
    token: Option<&'a RawValue>,
    #[serde(borrow, default)]
    distinct_id: Option<&'a RawValue>,
}

fn json_error(e: &serde_json::Error, what: &str) -> CaptureError {
    CaptureError::InvalidPayload(format!("{what} is not valid JSON: {e}"))
}

/// Reads a raw JSON value as text: strings unescaped, `null` as `None`, other scalars as their JSON text.
fn raw_text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?;
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'n') => None,
        Some(b'"') => {
            let inner = &text[1..text.len() - 1];
            if inner.contains('\\') {
                serde_json::from_str::<String>(text).ok().map(Cow::Owned)
            } else {
                Some(Cow::Borrowed(inner))
            }
        }
        _ => Some(Cow::Borrowed(text)),
    }
}

fn raw_string<'a>(raw: Option<&'a RawValue>, at: &str, field: &str) -> Result<Option<Cow<'a, str>>, CaptureError> {
    match raw {
        Some(r) if !r.get().starts_with('"') && r.get() != "null" => {
            Err(CaptureError::InvalidPayload(format!("{at}: `{field}` must be a string, got {}", short(r.get()))))
        }
        other => Ok(raw_text(other)),
    }
}

fn short(text: &str) -> String {
    if text.chars().count() <= 40 {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(40).collect::<String>())
    }
}

fn check_token(token: &str) -> Result<(), CaptureError> {
    if token.is_empty() {
        return Err(CaptureError::NoToken);
    }
    if token.chars().count() > MAX_TOKEN_CHARS {
        return Err(CaptureError::InvalidToken(format!("longer than {MAX_TOKEN_CHARS} characters")));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CaptureError::InvalidToken("contains whitespace or control characters".into()));
    }
    Ok(())
}

/// Formats a time as PostHog does in `now`/`sent_at`: RFC 3339, UTC, milliseconds.
pub fn format_time(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let (year, nanos) = (t.year(), t.nanosecond());
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Years chrono writes with a sign or more digits, and leap seconds.
        return t.to_rfc3339_opts(SecondsFormat::Millis, true);
    }
    // Written by hand: this runs for every event, and chrono's formatter is several times slower.
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, digits: usize, mut n: u32| {
        for i in (at..at + digits).rev() {
            b[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    put(20, 3, nanos / 1_000_000);
    std::str::from_utf8(&b).map(str::to_string).unwrap_or_default()
}

/// Reads a time written by [`format_time`] (`YYYY-MM-DDTHH:MM:SS.mmmZ`, what capture stores as
/// `now` and `sent_at`); `None` for any other text, which [`parse_time`] reads the long way.
pub fn canonical_time(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    if b.len() != 24 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if b[19] != b'.' || b[23] != b'Z' {
        return None;
    }
    let num = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0, 4)? as i32, num(5, 7)?, num(8, 10)?)?;
    let time = date.and_hms_milli_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?)?;
    Some(Utc.from_utc_datetime(&time))
}

/// Parses an ISO 8601 / RFC 3339 time the way JavaScript's `Date` accepts the common forms:
/// with or without an offset (none means UTC), with or without fractional seconds, date only.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = canonical_time(text) {
        return Some(t);
    }
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text, fmt) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t));
    }
    None
}

fn sent_at_text(raw: Option<&RawValue>, meta: &RequestMeta<'_>) -> Option<String> {
    if let Some(text) = raw_text(raw) {
        if let Some(t) = parse_time(&text) {
            return Some(format_time(t));
        }
    }
    let ms = meta.sent_at_ms?;
    Utc.timestamp_millis_opt(ms).single().map(format_time)
}

fn truthy(raw: Option<&RawValue>) -> bool {
    matches!(raw.map(|r| r.get()), Some("true"))
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy)]
pub struct ParseLimits {
    /// Largest record value (the serialized [`CapturedEvent`]), in bytes.
    pub max_event_bytes: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits { max_event_bytes: 1024 * 1024 }
    }
}

/// Turns a decoded payload into log records. Validates every event first; any invalid event
/// rejects the whole request (nothing is written), with the event's position in the message.
pub fn parse_payload(json: &[u8], meta: &RequestMeta<'_>, limits: &ParseLimits) -> Result<ParsedBatch, CaptureError> {
    let text = std::str::from_utf8(json)
        .map_err(|e| CaptureError::InvalidPayload(format!("the payload is not UTF-8 (at byte {})", e.valid_up_to())))?;
    let trimmed = text.trim_start();
    let (events, single, batch_token, sent_at_raw, historical): (Vec<&RawValue>, bool, _, _, bool) = match trimmed
        .as_bytes()
        .first()
    {
        Some(b'[') => {
            let events: Vec<&RawValue> = serde_json::from_str(trimmed).map_err(|e| json_error(&e, "the payload"))?;
            (events, false, None, None, false)
        }
        Some(b'{') => {
            let env: Envelope<'_> = serde_json::from_str(trimmed).map_err(|e| json_error(&e, "the payload"))?;
            let token = raw_string(env.api_key, "payload", "api_key")?
                .or(raw_string(env.token, "payload", "token")?)
                .map(Cow::into_owned);
            match env.batch {
                Some(batch) => (batch, false, token, env.sent_at, truthy(env.historical_migration)),
                None => {
                    let raw: &RawValue = serde_json::from_str(trimmed).map_err(|e| json_error(&e, "the payload"))?;
                    (vec![raw], true, None, env.sent_at, truthy(env.historical_migration))
                }
            }
        }
        Some(_) => {
            return Err(CaptureError::InvalidPayload(
                "the payload must be a JSON object (one event or {\"batch\": [...]}) or an array of events".into(),
            ))
        }
        None => return Err(CaptureError::InvalidPayload("the payload is empty".into())),
    };
    if events.is_empty() {
        return Err(CaptureError::EmptyBatch);
    }
    let now = format_time(meta.now);
    let sent_at = sent_at_text(sent_at_raw, meta);
    let mut token: Option<String> = batch_token;
    let mut checked = Vec::with_capacity(events.len());
    for (i, raw) in events.iter().enumerate() {
        let at = || if single { "event".to_string() } else { format!("batch[{i}]") };
        let event = check_event(raw.get(), meta.kind, &at)?;
        if let Some(t) = &event.token {
            match &token {
                None => token = Some(t.to_string()),
                Some(known) if known != t => return Err(CaptureError::MultipleTokens { at: at() }),
                Some(_) => {}
            }
        }
        checked.push(event);
    }
    let token = token.ok_or(CaptureError::NoToken)?;
    check_token(&token)?;

    let mut records = Vec::with_capacity(checked.len());
    let mut data_bytes = 0;
    for (i, event) in checked.iter().enumerate() {
        let record = CapturedEventRef {
            uuid: &event.uuid,
            distinct_id: &event.distinct_id,
            ip: meta.ip,
            data: &event.data,
            now: &now,
            sent_at: sent_at.as_deref(),
            token: &token,
            historical_migration: historical,
        };
        let value = serde_json::to_vec(&record)
            .map_err(|e| CaptureError::InvalidPayload(format!("batch[{i}]: cannot be encoded: {e}")))?;
        if value.len() > limits.max_event_bytes {
            let at = if single { "event".to_string() } else { format!("batch[{i}]") };
            return Err(CaptureError::EventTooLarge { at, size: value.len(), limit: limits.max_event_bytes });
        }
        data_bytes += event.data.len();
        let mut key = Vec::with_capacity(token.len() + 1 + event.distinct_id.len());
        key.extend_from_slice(token.as_bytes());
        key.push(b':');
        key.extend_from_slice(event.distinct_id.as_bytes());
        records.push(Record { key, value, timestamp_ms: meta.now.timestamp_millis(), historical });
    }
    Ok(ParsedBatch { token, records, data_bytes })
}

/// One event after validation: what goes into its record.
struct CheckedEvent<'a> {
    token: Option<Cow<'a, str>>,
    distinct_id: Cow<'a, str>,
    uuid: String,
    data: Cow<'a, str>,
}

fn check_event<'a>(
    data: &'a str,
    kind: EndpointKind,
    at: &dyn Fn() -> String,
) -> Result<CheckedEvent<'a>, CaptureError> {
    if !data.starts_with('{') {
        return Err(CaptureError::InvalidPayload(format!(
            "{}: an event must be a JSON object, got {}",
            at(),
            short(data)
        )));
    }
    let peek: EventPeek<'a> = serde_json::from_str(data).map_err(|e| json_error(&e, &at()))?;
    let props: Option<PropertiesPeek<'a>> = match peek.properties {
        Some(p) if p.get().starts_with('{') => Some(serde_json::from_str(p.get()).map_err(|e| json_error(&e, &at()))?),
        Some(p) if p.get() == "null" => None,
        Some(p) => {
            return Err(CaptureError::InvalidPayload(format!(
                "{}: `properties` must be an object, got {}",
                at(),
                short(p.get())
            )))
        }
        None => None,
    };
    let token = raw_string(peek.token, &at(), "token")?
        .or(raw_string(peek.dollar_token, &at(), "$token")?)
        .or(raw_string(peek.api_key, &at(), "api_key")?)
        .or(raw_string(props.as_ref().and_then(|p| p.token), &at(), "properties.token")?);

    let name = raw_string(peek.event, &at(), "event")?;
    let needs_name = name.as_deref().is_none_or(str::is_empty);
    if needs_name && kind != EndpointKind::Engage {
        return Err(CaptureError::MissingEventName { at: at() });
    }

    // Distinct id: a string; numbers and other scalars become their JSON text.
    let distinct = raw_text(peek.distinct_id)
        .or(raw_text(peek.dollar_distinct_id))
        .or(raw_text(props.as_ref().and_then(|p| p.distinct_id)));
    let distinct_id = match distinct {
        Some(d) if !d.is_empty() => d,
        _ => return Err(CaptureError::MissingDistinctId { at: at() }),
    };
    let distinct_id: Cow<'a, str> = match distinct_id.char_indices().nth(MAX_DISTINCT_ID_CHARS) {
        Some((cut, _)) => Cow::Owned(distinct_id[..cut].to_string()),
        None => distinct_id,
    };

    // uuid: validated when given, generated (v7, time-ordered) when not.
    let uuid = match raw_string(peek.uuid, &at(), "uuid")? {
        Some(u) if !u.is_empty() => match uuid::Uuid::try_parse(&u) {
            Ok(parsed) => parsed.hyphenated().to_string(),
            Err(_) => return Err(CaptureError::InvalidUuid { at: at(), value: short(&u) }),
        },
        _ => uuid::Uuid::now_v7().hyphenated().to_string(),
    };

    // /engage events without a name become `$identify`: the only case where `data` is rewritten.
    let data: Cow<'a, str> = if needs_name {
        let mut object: serde_json::Map<String, Value> =
            serde_json::from_str(data).map_err(|e| json_error(&e, &at()))?;
        object.insert("event".into(), Value::String("$identify".into()));
        Cow::Owned(Value::Object(object).to_string())
    } else {
        Cow::Borrowed(data)
    };
    Ok(CheckedEvent { token, distinct_id, uuid, data })
}

/// The event time, as PostHog's ingestion computes it from a captured event:
/// - with `timestamp` and `sent_at` (and no `$ignore_sent_at` property): `now + (timestamp -
///   sent_at)`, correcting the client's clock skew;
/// - with `timestamp` only: the timestamp;
/// - with `offset` (ms before sending): `now - offset`;
/// - otherwise `now`.
///
/// A result more than [`FUTURE_EVENT_CUTOFF_HOURS`] after `now`, or an unparseable timestamp,
/// gives `now`.
pub fn resolve_timestamp(event: &CapturedEvent, data: &Value) -> DateTime<Utc> {
    let ignore_sent_at =
        data.get("properties").and_then(|p| p.get("$ignore_sent_at")).is_some_and(|v| v.as_bool().unwrap_or(false));
    let timestamp = match data.get("timestamp") {
        Some(Value::String(s)) if !s.is_empty() => Some(Stamp::Text(s)),
        Some(Value::Number(n)) => Some(Stamp::Millis(n.as_i64())),
        _ => None,
    };
    let offset = data.get("offset").and_then(Value::as_f64);
    let sent_at = if ignore_sent_at { None } else { event.sent_at.as_deref() };
    resolve_time(&event.now, sent_at, timestamp, offset)
}

/// An event's own `timestamp`, as [`resolve_time`] takes it.
#[derive(Debug, Clone, Copy)]
pub enum Stamp<'a> {
    /// A non-empty string.
    Text(&'a str),
    /// A number of milliseconds since the epoch (`None`: not a whole number that fits).
    Millis(Option<i64>),
}

/// PostHog's clock-skew rules (see [`resolve_timestamp`]) on the parts they need: the server time
/// `now`, the client's `sent_at` (`None` when absent or ignored), the event's `timestamp` and its
/// `offset` in milliseconds.
pub fn resolve_time(
    now: &str,
    sent_at: Option<&str>,
    timestamp: Option<Stamp<'_>>,
    offset: Option<f64>,
) -> DateTime<Utc> {
    let now = parse_time(now).unwrap_or_else(Utc::now);
    let sent_at = sent_at.and_then(parse_time);
    let timestamp = match timestamp {
        Some(Stamp::Text(s)) => Some(parse_time(s)),
        Some(Stamp::Millis(ms)) => Some(ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())),
        None => None,
    };
    let resolved = match timestamp {
        Some(Some(ts)) => match sent_at {
            Some(sent) => now + (ts - sent),
            None => ts,
        },
        Some(None) => now,
        None => match offset {
            Some(offset) if offset.is_finite() => now - Duration::milliseconds(offset as i64),
            _ => now,
        },
    };
    if resolved > now + Duration::hours(FUTURE_EVENT_CUTOFF_HOURS) {
        now
    } else {
        resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_chrono_formats_them() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let check = |t: DateTime<Utc>| assert_eq!(format_time(t), t.to_rfc3339_opts(SecondsFormat::Millis, true));
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Years -500 to 10 500, every millisecond and sub-millisecond position.
            let secs = (x % (11_000 * 366 * 86_400)) as i64 - 2_500 * 366 * 86_400 - 62_135_596_800;
            let t = Utc.timestamp_opt(secs, ((x >> 40) % 1_000_000_000) as u32).unwrap();
            check(t);
            // What was written reads back the short way exactly as the long way.
            let text = format_time(t);
            let long = DateTime::parse_from_rfc3339(&text).ok().map(|t| t.with_timezone(&Utc));
            assert_eq!(canonical_time(&text), long.filter(|_| text.len() == 24), "{text}");
        }
        for text in [
            "2024-02-30T00:00:00.000Z",
            "2024-05-01T24:00:00.000Z",
            "2024-05-01T12:00:00.000+01:00",
            "2024-05-01T12:00:00Z",
            "2024-05-01 12:00:00.000Z",
            "2024-05-01T12:00:0x.000Z",
            "+2024-05-01T12:00:00.00Z",
        ] {
            assert_eq!(canonical_time(text), None, "{text}");
        }
        check(Utc.timestamp_opt(0, 0).unwrap());
        check(Utc.timestamp_opt(1_483_228_799, 1_500_000_000).unwrap()); // a leap second
    }

    fn captured(now: &str, sent_at: Option<&str>) -> CapturedEvent {
        CapturedEvent {
            uuid: "u".into(),
            distinct_id: "d".into(),
            ip: "127.0.0.1".into(),
            data: String::new(),
            now: now.into(),
            sent_at: sent_at.map(str::to_string),
            token: "t".into(),
            historical_migration: false,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        parse_time(text).unwrap()
    }

    #[test]
    fn clock_skew_is_corrected_with_sent_at() {
        // The client's clock is 1 h behind: it stamped the event 10 s before sending.
        let e = captured("2024-05-01T12:00:00.000Z", Some("2024-05-01T11:00:10.000Z"));
        let data = serde_json::json!({"timestamp": "2024-05-01T11:00:00.000Z"});
        assert_eq!(resolve_timestamp(&e, &data), at("2024-05-01T11:59:50Z"));
        // `$ignore_sent_at` keeps the client's timestamp.
        let data =
            serde_json::json!({"timestamp": "2024-05-01T11:00:00.000Z", "properties": {"$ignore_sent_at": true}});
        assert_eq!(resolve_timestamp(&e, &data), at("2024-05-01T11:00:00Z"));
    }

    #[test]
    fn timestamp_offset_or_now() {
        let e = captured("2024-05-01T12:00:00.000Z", None);
        assert_eq!(
            resolve_timestamp(&e, &serde_json::json!({"timestamp": "2024-04-30T08:00:00+02:00"})),
            at("2024-04-30T06:00:00Z")
        );
        assert_eq!(resolve_timestamp(&e, &serde_json::json!({"offset": 1500})), at("2024-05-01T11:59:58.500Z"));
        assert_eq!(resolve_timestamp(&e, &serde_json::json!({})), at("2024-05-01T12:00:00Z"));
        assert_eq!(resolve_timestamp(&e, &serde_json::json!({"timestamp": "garbage"})), at("2024-05-01T12:00:00Z"));
        assert_eq!(
            resolve_timestamp(&e, &serde_json::json!({"timestamp": "2024-04-30 06:00:00"})),
            at("2024-04-30T06:00:00Z")
        );
    }

    #[test]
    fn far_future_is_clamped_to_now() {
        let e = captured("2024-05-01T12:00:00.000Z", None);
        assert_eq!(
            resolve_timestamp(&e, &serde_json::json!({"timestamp": "2024-05-03T00:00:00Z"})),
            at("2024-05-01T12:00:00Z")
        );
        assert_eq!(
            resolve_timestamp(&e, &serde_json::json!({"timestamp": "2024-05-02T10:00:00Z"})),
            at("2024-05-02T10:00:00Z")
        );
    }

    #[test]
    fn time_formats() {
        assert_eq!(format_time(at("2024-05-01")), "2024-05-01T00:00:00.000Z");
        assert_eq!(format_time(at("2024-05-01T10:11:12.345678+01:00")), "2024-05-01T09:11:12.345Z");
        assert!(parse_time("not a time").is_none());
    }
}
