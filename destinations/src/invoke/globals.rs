//! The globals a destination sees for one event, as PostHog's CDP builds them:
//! `event`, `person`, `groups`, `project`, `source` (and `inputs`, rendered by the caller).

use hog_lang::value::from_json;
use hog_lang::Value;
use hogpipe_dataflow::event::{Event, Project};
use serde_json::{Map, Value as Json};

/// PostHog's namespace for person UUIDs (`uuidFromDistinctId`: UUIDv5 of `team_id:distinct_id`).
const PERSON_UUID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_bytes([
    0x93, 0x29, 0x79, 0xb4, 0x65, 0xc3, 0x44, 0x24, 0x84, 0x67, 0x0b, 0x66, 0xec, 0x27, 0xbc, 0x22,
]);

/// Properties PostHog shows a person by, first present wins (its default display-name list).
const DISPLAY_NAME_PROPERTIES: &[&str] = &["email", "Email", "name", "Name", "username", "Username", "UserName"];

/// `encodeURIComponent`.
pub(crate) fn encode_uri_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The project's URL (`{site}/project/{id}`).
pub(crate) fn project_url(site_url: &str, team_id: u64) -> String {
    format!("{site_url}/project/{team_id}")
}

/// The person as the event describes it. hogpipe keeps no person store: the person's id is
/// PostHog's deterministic UUID for `(team, distinct_id)`, its properties are the event's
/// `$set_once` then `$set`, and an event sent with `$process_person_profile: false` has no person
/// (`null`), as in PostHog.
fn person(event: &Event, project_url: &str) -> Value {
    let props = &event.properties;
    if props.get("$process_person_profile") == Some(&Json::Bool(false)) {
        return Value::Null;
    }
    let mut properties = Map::new();
    if let Some(Json::Object(once)) = props.get("$set_once") {
        for (k, v) in once {
            properties.insert(k.clone(), v.clone());
        }
    }
    if let Some(Json::Object(set)) = props.get("$set") {
        for (k, v) in set {
            properties.insert(k.clone(), v.clone());
        }
    }
    let name = DISPLAY_NAME_PROPERTIES
        .iter()
        .filter_map(|k| properties.get(*k))
        .find_map(|v| match v {
            Json::String(s) if !s.is_empty() => Some(s.clone()),
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .unwrap_or_else(|| event.distinct_id.clone());
    let id = uuid::Uuid::new_v5(&PERSON_UUID_NAMESPACE, format!("{}:{}", event.team_id, event.distinct_id).as_bytes());
    Value::dict_from([
        ("id", Value::from(id.to_string())),
        ("properties", from_json(&Json::Object(properties))),
        ("name", Value::from(name.trim())),
        ("url", Value::from(format!("{project_url}/person/{}", encode_uri_component(&event.distinct_id)))),
    ])
}

/// Groups named by the event's `$groups` (`{type: key}`): `{id, type, properties}`. hogpipe keeps
/// no group store, so `properties` is empty and `index` and `url` are `null`.
fn groups(event: &Event) -> Value {
    let mut out = hog_lang::value::Dict::default();
    if let Some(Json::Object(g)) = event.properties.get("$groups") {
        for (kind, key) in g {
            let id = match key {
                Json::String(s) => Value::from(s.as_str()),
                other => from_json(other),
            };
            out.insert(
                hog_lang::value::Key::str(kind),
                Value::dict_from([
                    ("id", id),
                    ("type", Value::from(kind.as_str())),
                    ("index", Value::Null),
                    ("url", Value::Null),
                    ("properties", Value::dict_from([])),
                ]),
            );
        }
    }
    Value::dict(out)
}

/// The globals of one invocation, without `inputs`.
pub(crate) fn build(event: &Event, project: &Project, site_url: &str, function_id: &str, function_name: &str) -> Value {
    let project_url = project_url(site_url, project.id);
    let event_value = Value::dict_from([
        ("uuid", Value::from(event.uuid.as_str())),
        ("event", Value::from(event.event.as_str())),
        ("distinct_id", Value::from(event.distinct_id.as_str())),
        ("properties", from_json(&Json::Object(event.properties.clone()))),
        ("elements_chain", Value::from(event.elements_chain.as_str())),
        ("timestamp", Value::from(event.timestamp.as_str())),
        ("url", Value::from(format!("{project_url}/events/{}", encode_uri_component(&event.uuid)))),
    ]);
    Value::dict_from([
        ("event", event_value),
        ("person", person(event, &project_url)),
        ("groups", groups(event)),
        (
            "project",
            Value::dict_from([
                ("id", Value::from(project.id as i64)),
                ("name", Value::from(project.name.as_str())),
                ("url", Value::from(project_url.as_str())),
            ]),
        ),
        (
            "source",
            Value::dict_from([
                ("name", Value::from(function_name)),
                (
                    "url",
                    Value::from(format!(
                        "{project_url}/pipeline/destinations/hog-{}/configuration/",
                        encode_uri_component(function_id)
                    )),
                ),
            ]),
        ),
    ])
}
