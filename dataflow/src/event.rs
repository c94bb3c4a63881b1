//! Events as the dataflow carries them, and their conversion to and from Hog values.

use hog_lang::stdlib::json::parse_json;
use hog_lang::value::{Dict, Key, KeyRef};
use hog_lang::Value;
use hogpipe_capture::event::{format_time, resolve_timestamp, CapturedEvent};
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
    Record(serde_json::Error),
    /// The event's `data` is not a JSON object.
    #[error("event {uuid}: `data` is not a JSON object")]
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

fn text_of(d: &Dict, key: &str) -> Option<String> {
    match d.get(KeyRef::Str(key)) {
        Some(Value::Str(s)) => Some(s.to_string()),
        _ => None,
    }
}

impl HogEvent {
    /// Parses a captured record's `data` straight into Hog values.
    pub fn from_captured(captured: &CapturedEvent, team_id: u64) -> Result<HogEvent, EventError> {
        let data = parse_json(&captured.data).map_err(EventError::Record)?;
        let Value::Dict(cell) = &data else {
            return Err(EventError::Data { uuid: captured.uuid.clone() });
        };
        let d = cell.borrow();
        // The few fields the event time depends on, for PostHog's clock-skew rules.
        let mut time_fields = Map::new();
        for key in ["timestamp", "offset"] {
            if let Some(v) = d.get(KeyRef::Str(key)) {
                time_fields.insert(key.to_string(), to_json(v));
            }
        }
        let properties = match d.get(KeyRef::Str("properties")) {
            Some(p @ Value::Dict(_)) => p.clone(),
            _ => Value::dict(Dict::default()),
        };
        if let Value::Dict(props) = &properties {
            let props_ref = props.borrow();
            if let Some(v) = props_ref.get(KeyRef::Str("$ignore_sent_at")) {
                time_fields.insert("properties".into(), serde_json::json!({"$ignore_sent_at": to_json(v)}));
            }
        }
        if let Value::Dict(props) = &properties {
            let mut props_mut = props.borrow_mut();
            for key in ["$set", "$set_once"] {
                if let Some(v) = d.get(KeyRef::Str(key)) {
                    if !props_mut.contains_key(KeyRef::Str(key)) {
                        props_mut.insert(Key::str(key), v.clone());
                    }
                }
            }
        }
        let timestamp = format_time(resolve_timestamp(captured, &Json::Object(time_fields)));
        let value = Value::dict_from([
            ("uuid", Value::from(captured.uuid.as_str())),
            ("event", Value::from(text_of(&d, "event").unwrap_or_default())),
            ("distinct_id", Value::from(captured.distinct_id.as_str())),
            ("properties", properties),
            ("elements_chain", Value::from(text_of(&d, "elements_chain").unwrap_or_default())),
            ("timestamp", Value::from(timestamp)),
            ("url", Value::from(format!("/project/{team_id}/events/{}", captured.uuid))),
        ]);
        drop(d);
        Ok(HogEvent { team_id, ip: captured.ip.clone(), value })
    }

    /// A field of the event dict, shared (a string field when the event has none).
    pub fn field(&self, key: &str) -> Value {
        match &self.value {
            Value::Dict(d) => match d.borrow().get(KeyRef::Str(key)) {
                Some(v @ Value::Str(_)) => v.clone(),
                _ => Value::from(""),
            },
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
        let uuid = self.text("uuid");
        cell.borrow_mut().insert(Key::str("uuid"), Value::from(uuid));
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
