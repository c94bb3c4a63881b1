//! Events as the dataflow carries them, and their conversion to and from Hog values.

use hog_lang::value::{from_json, Key};
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

impl Event {
    /// Builds an event from a captured record for the given project.
    pub fn from_captured(captured: &CapturedEvent, team_id: u64) -> Result<Event, EventError> {
        let data: Json = serde_json::from_str(&captured.data).map_err(EventError::Record)?;
        let Json::Object(mut object) = data else {
            return Err(EventError::Data { uuid: captured.uuid.clone() });
        };
        let timestamp = format_time(resolve_timestamp(captured, &Json::Object(object.clone())));
        let mut properties = match object.remove("properties") {
            Some(Json::Object(p)) => p,
            _ => Map::new(),
        };
        for key in ["$set", "$set_once"] {
            if let Some(value) = object.remove(key) {
                properties.entry(key).or_insert(value);
            }
        }
        let event = match object.remove("event") {
            Some(Json::String(s)) => s,
            _ => String::new(),
        };
        let elements_chain = match object.remove("elements_chain") {
            Some(Json::String(s)) => s,
            _ => String::new(),
        };
        Ok(Event {
            uuid: captured.uuid.clone(),
            team_id,
            event,
            distinct_id: captured.distinct_id.clone(),
            properties,
            timestamp,
            elements_chain,
            ip: captured.ip.clone(),
        })
    }

    /// The `event` global as HOG.md describes it.
    pub fn to_hog(&self) -> Value {
        Value::dict_from([
            ("uuid", Value::from(self.uuid.as_str())),
            ("event", Value::from(self.event.as_str())),
            ("distinct_id", Value::from(self.distinct_id.as_str())),
            ("properties", from_json(&Json::Object(self.properties.clone()))),
            ("elements_chain", Value::from(self.elements_chain.as_str())),
            ("timestamp", Value::from(self.timestamp.as_str())),
            ("url", Value::from(format!("/project/{}/events/{}", self.team_id, self.uuid))),
        ])
    }

    /// Applies what a transformation returned: `null` drops the event; a dict replaces the event's
    /// name, distinct id, properties, timestamp and elements chain (the uuid and project stay).
    pub fn with_result(&self, result: &Value) -> Result<Option<Event>, EventError> {
        let json = match result {
            Value::Null => return Ok(None),
            Value::Dict(_) => to_json(result),
            other => return Err(EventError::NotAnEvent(other.type_name().to_string())),
        };
        let Json::Object(mut object) = json else {
            return Err(EventError::NotAnEvent("a dict that is not an object".into()));
        };
        let mut out = self.clone();
        if let Some(Json::String(s)) = object.remove("event") {
            out.event = s;
        }
        if let Some(Json::String(s)) = object.remove("distinct_id") {
            out.distinct_id = s;
        }
        match object.remove("properties") {
            Some(Json::Object(p)) => out.properties = p,
            Some(Json::Null) => out.properties = Map::new(),
            _ => {}
        }
        if let Some(Json::String(s)) = object.remove("timestamp") {
            out.timestamp = s;
        }
        if let Some(Json::String(s)) = object.remove("elements_chain") {
            out.elements_chain = s;
        }
        Ok(Some(out))
    }
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
            if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
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
