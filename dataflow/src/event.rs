//! Events as the dataflow carries them, and their conversion to and from Hog values.

use std::borrow::Cow;

use hog_lang::stdlib::json_reader::{object_members, read_json, string_literal, JsonError};
use hog_lang::value::{Dict, Key, KeyRef, Text};
use hog_lang::Value;
use hogpipe_capture::event::{canonical_time, format_time, resolve_time, CapturedEvent, Stamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// A project as functions see it (`project` global).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Project (team) id.
    pub id: u64,
    /// Display name.
    pub name: String,
}

/// One event in the pipeline: PostHog's event shape after ingestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event's uuid; replays carry the same one, so sinks can be idempotent.
    pub uuid: String,
    /// Project (team) id.
    pub team_id: u64,
    /// Event name (`$pageview`, …).
    pub event: String,
    /// Distinct id.
    pub distinct_id: String,
    /// Properties (with `$set` / `$set_once` of the payload folded in when given at the top level).
    pub properties: Map<String, Json>,
    /// Event time, RFC 3339 UTC with milliseconds, after clock-skew correction.
    pub timestamp: String,
    /// Autocapture elements chain, empty when none.
    #[serde(default)]
    pub elements_chain: String,
    /// Client IP as captured.
    #[serde(default)]
    pub ip: String,
}

/// Why a log record could not become an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The record is not a captured event.
    #[error("the record is not a captured event: {0}")]
    Record(String),
    /// The event's `data` is not JSON.
    #[error("event {uuid}: `data` is not JSON: {error}")]
    Json {
        /// Which event.
        uuid: String,
        /// What is wrong, and where.
        error: JsonError,
    },
    /// The event's `data` is not a JSON object (in a string, as capture writes it).
    #[error("event {uuid}: `data` is not a JSON object in a string")]
    Data {
        /// Which event.
        uuid: String,
    },
    /// A transformation returned something that is not an event.
    #[error("the transformation returned {0}, not an event dict or null")]
    NotAnEvent(String),
}

/// Deepest nesting converted; deeper values become `null` (Hog values may even be cyclic).
const MAX_JSON_DEPTH: usize = 200;

/// Converts a Hog value to JSON: numbers that are not finite become `null` (as `JSON.stringify`
/// does), dict keys become strings, tuples become arrays, dates and date-times their ISO text,
/// functions and errors `null`.
pub fn to_json(value: &Value) -> Json {
    to_json_at(value, 0)
}

fn to_json_at(value: &Value, depth: usize) -> Json {
    if depth > MAX_JSON_DEPTH {
        return Json::Null;
    }
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => {
            // Whole numbers print without a fraction, as JavaScript prints them (to 2^63).
            if n.fract() == 0.0 && n.abs() < 9.223_372_036_854_775e18 {
                Json::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number)
            }
        }
        Value::Str(s) => Json::String(s.to_string()),
        Value::Array(items) | Value::Tuple(items) => {
            Json::Array(items.borrow().iter().map(|v| to_json_at(v, depth + 1)).collect())
        }
        Value::Dict(d) => {
            let d = d.borrow();
            let mut map = Map::with_capacity(d.len());
            for (k, v) in d.iter() {
                map.insert(key_text(k), to_json_at(v, depth + 1));
            }
            Json::Object(map)
        }
        Value::DateTime(_) | Value::Date(..) => Json::String(value.to_js_string()),
        Value::Error(_) | Value::Callable(_) | Value::Closure(_) => Json::Null,
    }
}

fn key_text(k: &Key) -> String {
    match k.as_ref_str() {
        Some(s) => s.to_string(),
        None => k.to_value().to_js_string(),
    }
}

/// An event inside a worker: its Hog form (the `event` global), built once from the log record and
/// handed from function to function without going back through JSON.
pub struct HogEvent {
    /// Project (team) id.
    pub team_id: u64,
    /// Client IP as captured.
    pub ip: String,
    /// `{uuid, event, distinct_id, properties, elements_chain, timestamp, url}`.
    pub value: Value,
}

/// A whole number of milliseconds as `serde_json::Number::as_i64` would give it.
fn whole_i64(n: f64) -> Option<i64> {
    (n.fract() == 0.0 && (-9.223_372_036_854_775e18..9.223_372_036_854_775e18).contains(&n)).then_some(n as i64)
}

/// A string field of an event dict, shared; an empty string when absent or not a string.
fn string_field(d: &Dict, key: &str) -> Value {
    match d.get(KeyRef::Str(key)) {
        Some(v @ Value::Str(_)) => v.clone(),
        _ => Value::from(""),
    }
}

fn text_of(d: &Dict, key: &str) -> Option<String> {
    match d.get(KeyRef::Str(key)) {
        Some(Value::Str(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// The fields of a log record (a [`CapturedEvent`] as JSON) the pipeline reads, borrowed from
/// the record's bytes: only `data` is decoded further. Other members are skipped.
pub struct RecordRef<'a> {
    uuid: Cow<'a, str>,
    distinct_id: Cow<'a, str>,
    ip: Cow<'a, str>,
    now: Cow<'a, str>,
    sent_at: Option<Cow<'a, str>>,
    token: Cow<'a, str>,
}

impl<'a> RecordRef<'a> {
    /// Reads a log record; the event's JSON text (`data`, a string in the record) is decoded
    /// into `data` as it is read.
    pub fn parse(bytes: &'a [u8], data: &mut String) -> Result<RecordRef<'a>, EventError> {
        let text = std::str::from_utf8(bytes).map_err(|e| EventError::Record(format!("not UTF-8: {e}")))?;
        let (mut uuid, mut distinct_id, mut ip, mut now, mut sent_at, mut token) = (None, None, None, None, None, None);
        let mut data_raw: Option<&str> = None;
        let mut bad: Option<String> = None;
        object_members(text, Some(("data", data)), |key, raw| {
            let mut text = |field: &str| match string_literal(raw) {
                Ok(s) => Some(s),
                Err(_) => {
                    bad.get_or_insert_with(|| format!("`{field}` is not a string"));
                    None
                }
            };
            match &*key {
                "uuid" => uuid = text("uuid"),
                "distinct_id" => distinct_id = text("distinct_id"),
                "ip" => ip = text("ip"),
                "data" => data_raw = Some(raw),
                "now" => now = text("now"),
                "sent_at" if raw == "null" => sent_at = None,
                "sent_at" => sent_at = text("sent_at"),
                "token" => token = text("token"),
                _ => {}
            }
        })
        .map_err(|e| EventError::Record(e.to_string()))?;
        if let Some(bad) = bad {
            return Err(EventError::Record(bad));
        }
        let missing = |field: &str| EventError::Record(format!("missing field `{field}`"));
        let uuid = uuid.ok_or_else(|| missing("uuid"))?;
        match data_raw {
            None => return Err(missing("data")),
            Some(raw) if !raw.starts_with('"') => return Err(EventError::Data { uuid: uuid.into_owned() }),
            Some(_) => {}
        }
        Ok(RecordRef {
            uuid,
            distinct_id: distinct_id.ok_or_else(|| missing("distinct_id"))?,
            ip: ip.ok_or_else(|| missing("ip"))?,
            now: now.ok_or_else(|| missing("now"))?,
            sent_at,
            token: token.ok_or_else(|| missing("token"))?,
        })
    }

    /// The project token.
    pub fn token(&self) -> &str {
        &self.token
    }
}

thread_local! {
    /// The event dict's keys, interned once per thread (the same texts programs' constants and
    /// JSON keys share), rather than looked up in the text cache for every event.
    static EVENT_KEYS: [Key; 7] =
        ["uuid", "event", "distinct_id", "properties", "elements_chain", "timestamp", "url"].map(Key::interned);
}

/// What an event's time and identity come from, besides its `data`.
struct Header<'a> {
    uuid: &'a str,
    distinct_id: &'a str,
    ip: &'a str,
    now: &'a str,
    sent_at: Option<&'a str>,
}

impl HogEvent {
    /// Builds the event of a log record, given its decoded `data` (see [`RecordRef::parse`]).
    pub fn from_record(record: &RecordRef<'_>, team_id: u64, data: &str) -> Result<HogEvent, EventError> {
        let uuid = &*record.uuid;
        let data = read_json(data).map_err(|error| EventError::Json { uuid: uuid.to_string(), error })?;
        let header = Header {
            uuid,
            distinct_id: &record.distinct_id,
            ip: &record.ip,
            now: &record.now,
            sent_at: record.sent_at.as_deref(),
        };
        Self::build(&header, data, team_id)
    }

    /// Builds the event of a captured event (parsing its `data`).
    pub fn from_captured(captured: &CapturedEvent, team_id: u64) -> Result<HogEvent, EventError> {
        let data =
            read_json(&captured.data).map_err(|error| EventError::Json { uuid: captured.uuid.clone(), error })?;
        let header = Header {
            uuid: &captured.uuid,
            distinct_id: &captured.distinct_id,
            ip: &captured.ip,
            now: &captured.now,
            sent_at: captured.sent_at.as_deref(),
        };
        Self::build(&header, data, team_id)
    }

    fn build(h: &Header<'_>, data: Value, team_id: u64) -> Result<HogEvent, EventError> {
        let Value::Dict(cell) = &data else {
            return Err(EventError::Data { uuid: h.uuid.to_string() });
        };
        let d = cell.borrow();
        let properties = match d.get(KeyRef::Str("properties")) {
            Some(p @ Value::Dict(_)) => p.clone(),
            _ => Value::dict(Dict::default()),
        };
        let Value::Dict(props) = &properties else { unreachable!("built as a dict above") };
        // The fields the event time depends on, for PostHog's clock-skew rules.
        let ignore_sent_at = matches!(props.borrow().get(KeyRef::Str("$ignore_sent_at")), Some(Value::Bool(true)));
        let stamp = match d.get(KeyRef::Str("timestamp")) {
            Some(Value::Str(s)) if !s.is_empty() => Some(Stamp::Text(s)),
            Some(Value::Number(n)) => Some(Stamp::Millis(whole_i64(*n))),
            _ => None,
        };
        let offset = match d.get(KeyRef::Str("offset")) {
            Some(Value::Number(n)) => Some(*n),
            _ => None,
        };
        let sent_at = if ignore_sent_at { None } else { h.sent_at };
        let timestamp = match (stamp, offset) {
            // No time of its own: the event happened when capture received it, and capture's
            // `now` is already written the way events' times are.
            (None, None) if canonical_time(h.now).is_some() => Value::from(h.now),
            _ => Value::from(format_time(resolve_time(h.now, sent_at, stamp, offset))),
        };
        {
            let mut props_mut = props.borrow_mut();
            for key in ["$set", "$set_once"] {
                if let Some(v) = d.get(KeyRef::Str(key)) {
                    if !props_mut.contains_key(KeyRef::Str(key)) {
                        props_mut.insert(Key::str(key), v.clone());
                    }
                }
            }
        }
        let url = Text::build(|url| {
            url.push_str("/project/");
            url.push_str(itoa::Buffer::new().format(team_id));
            url.push_str("/events/");
            url.push_str(h.uuid);
            Ok::<(), std::convert::Infallible>(())
        });
        let [k_uuid, k_event, k_distinct_id, k_properties, k_elements_chain, k_timestamp, k_url] =
            EVENT_KEYS.with(|keys| keys.clone());
        let value = Value::dict(Dict::Small(vec![
            (k_uuid, Value::from(h.uuid)),
            (k_event, string_field(&d, "event")),
            (k_distinct_id, Value::from(h.distinct_id)),
            (k_properties, properties.clone()),
            (k_elements_chain, string_field(&d, "elements_chain")),
            (k_timestamp, timestamp),
            (k_url, url.map_or(Value::Null, Value::Str)),
        ]));
        drop(d);
        Ok(HogEvent { team_id, ip: h.ip.to_string(), value })
    }

    /// A field of the event dict, shared (a string field when the event has none).
    pub fn field(&self, key: &str) -> Value {
        match &self.value {
            Value::Dict(d) => string_field(&d.borrow(), key),
            _ => Value::from(""),
        }
    }

    /// A field of the event dict as text.
    pub fn text(&self, key: &str) -> String {
        match &self.value {
            Value::Dict(d) => text_of(&d.borrow(), key).unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// The `properties` dict (shared, not copied).
    pub fn properties(&self) -> Value {
        match &self.value {
            Value::Dict(d) => d.borrow().get(KeyRef::Str("properties")).cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Replaces the event with what a transformation returned (a dict); the uuid stays.
    pub fn set_result(&mut self, result: Value) -> Result<(), EventError> {
        let Value::Dict(cell) = &result else {
            return Err(EventError::NotAnEvent(result.type_name().to_string()));
        };
        let uuid = self.field("uuid");
        let mut d = cell.borrow_mut();
        match d.get_mut(KeyRef::Str("uuid")) {
            Some(slot) => *slot = uuid,
            None => {
                d.insert(Key::str("uuid"), uuid);
            }
        }
        drop(d);
        self.value = result;
        Ok(())
    }

    /// The event for sinks (the one conversion back to JSON).
    pub fn to_event(&self) -> Event {
        let mut json = match to_json(&self.value) {
            Json::Object(m) => m,
            _ => Map::new(),
        };
        let take = |m: &mut Map<String, Json>, k: &str| match m.remove(k) {
            Some(Json::String(s)) => s,
            _ => String::new(),
        };
        Event {
            uuid: take(&mut json, "uuid"),
            team_id: self.team_id,
            event: take(&mut json, "event"),
            distinct_id: take(&mut json, "distinct_id"),
            properties: match json.remove("properties") {
                Some(Json::Object(p)) => p,
                _ => Map::new(),
            },
            timestamp: take(&mut json, "timestamp"),
            elements_chain: take(&mut json, "elements_chain"),
            ip: self.ip.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hogpipe_capture::event::resolve_timestamp;
    use serde_json::json;

    fn captured(data: &Json, sent_at: Option<&str>) -> CapturedEvent {
        CapturedEvent {
            uuid: "0193a000-0000-7000-8000-000000000001".into(),
            distinct_id: "user \"one\" é".into(),
            ip: "10.0.0.1".into(),
            data: data.to_string(),
            now: "2024-05-01T12:00:00.000Z".into(),
            sent_at: sent_at.map(str::to_string),
            token: "phc_t".into(),
            historical_migration: false,
        }
    }

    /// A record read from its stored bytes gives the same event as the captured event it
    /// encodes, with capture's own time rules, for every shape of time and text.
    #[test]
    fn records_read_from_bytes_match_captured_events() {
        let cases = [
            (json!({"event": "e", "properties": {"a": 1}}), None),
            (
                json!({"event": "e", "timestamp": "2024-05-01T11:59:00Z", "properties": {}}),
                Some("2024-05-01T12:00:30Z"),
            ),
            (
                json!({"event": "e", "timestamp": "2024-05-01T11:59:00Z", "properties": {"$ignore_sent_at": true}}),
                Some("2024-05-01T12:00:30Z"),
            ),
            (json!({"event": "e", "timestamp": 1_714_564_000_123_i64}), None),
            (json!({"event": "e", "timestamp": 1.5}), None),
            (json!({"event": "e", "offset": 1500}), None),
            (json!({"event": "e", "timestamp": "not a time"}), None),
            (json!({"event": "e", "timestamp": "2030-01-01T00:00:00Z"}), None),
            (
                json!({"event": "quote \" slash \\ tab \t nl \n 😀 \u{1}", "elements_chain": "a:b",
                       "$set": {"x": 1}, "$set_once": {"y": 2}, "properties": {"$set": {"kept": true}, "nested": [{"k": null}]}}),
                None,
            ),
        ];
        for (data, sent_at) in cases {
            let c = captured(&data, sent_at);
            let bytes = serde_json::to_vec(&c).unwrap();
            let mut text = String::new();
            let record = RecordRef::parse(&bytes, &mut text).unwrap();
            assert_eq!(record.token(), "phc_t");
            assert_eq!(text, c.data);
            let from_bytes = HogEvent::from_record(&record, 7, &text).unwrap().to_event();
            let from_captured = HogEvent::from_captured(&c, 7).unwrap().to_event();
            assert_eq!(from_bytes, from_captured, "{data}");
            assert_eq!(from_bytes.timestamp, format_time(resolve_timestamp(&c, &data)), "{data}");
            assert_eq!(from_bytes.distinct_id, c.distinct_id);
            assert_eq!(Json::from(from_bytes.event.clone()), data["event"]);
        }
    }

    #[test]
    fn unreadable_records_say_why() {
        let mut text = String::new();
        let not_json = captured(&json!(null), None);
        let mut bad = serde_json::to_value(&not_json).unwrap();
        bad["data"] = json!("{\"event\": ");
        let bytes = serde_json::to_vec(&bad).unwrap();
        let record = RecordRef::parse(&bytes, &mut text).unwrap();
        let err = HogEvent::from_record(&record, 1, &text).err().unwrap();
        assert!(err.to_string().contains("`data` is not JSON: unexpected end of input at line 1 column 11"), "{err}");
        bad["data"] = json!({"event": "not in a string"});
        let bytes = serde_json::to_vec(&bad).unwrap();
        let err = RecordRef::parse(&bytes, &mut text).err().unwrap();
        assert!(err.to_string().contains("not a JSON object in a string"), "{err}");
        bad["data"] = json!("[1]");
        let bytes = serde_json::to_vec(&bad).unwrap();
        let record = RecordRef::parse(&bytes, &mut text).unwrap();
        assert!(HogEvent::from_record(&record, 1, &text).is_err());
        let mut err =
            |bytes: &[u8]| RecordRef::parse(bytes, &mut text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(b"{\"uuid\": 1}").contains("`uuid` is not a string"));
        assert!(err(b"{\"uuid\": \"u\"}").contains("missing field `data`"));
        assert!(err(b"{\"uuid\": \"u\", \"data\": \"{}\"}").contains("missing field `distinct_id`"));
        assert!(err(b"{\"uuid\": \"u\"").contains("expected `,` or `}` at line 1 column 13"));
        assert!(err(b"{\"data\": \"\\x\"}").contains("invalid escape at line 1 column 11"));
        assert!(err(b"\xff").contains("not UTF-8"));
        // Members it does not read, of any shape, are skipped; `sent_at` may be null.
        let mut extra = serde_json::to_value(captured(&json!({"event": "e"}), None)).unwrap();
        extra["site_url"] = json!({"nested": [1, {"a": "\\\""}]});
        extra["sent_at"] = Json::Null;
        extra["historical_migration"] = json!(true);
        let bytes = serde_json::to_vec(&extra).unwrap();
        let record = RecordRef::parse(&bytes, &mut text).unwrap();
        assert_eq!(HogEvent::from_record(&record, 1, &text).unwrap().text("event"), "e");
    }
}
