//! The native sinks against real things: files with fsync, librdkafka's mock cluster (the real
//! Kafka protocol on loopback), a real PostgreSQL server (Debian's, started by
//! `scripts/postgres.sh`), loopback HTTP servers; and `[[sinks]]` configuration parsing.

#[path = "sinks/config.rs"]
mod config;
#[path = "sinks/file.rs"]
mod file;
#[path = "sinks/kafka.rs"]
mod kafka;
#[path = "sinks/postgres.rs"]
mod postgres;
#[path = "sinks/webhook.rs"]
mod webhook;

use hogpipe_dataflow::event::Event;
use serde_json::json;

/// Only to turn a hang into a failure; never a speed expectation.
pub const HANG_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Event `i` of a test: a valid v4-shaped uuid derived from `i` and `salt`, five distinct ids.
pub fn event(salt: u32, i: u32) -> Event {
    let mut properties = serde_json::Map::new();
    properties.insert("$current_url".into(), json!(format!("https://example.com/p/{i}")));
    properties.insert("n".into(), json!(i));
    properties.insert("nested".into(), json!({"a": [1, 2, {"b": null}], "ü": "ñ"}));
    Event {
        uuid: format!("{salt:08x}-0000-4000-8000-{i:012x}"),
        team_id: 2,
        event: if i.is_multiple_of(3) { "signed_up".into() } else { "$pageview".into() },
        distinct_id: format!("user-{}", i % 5),
        properties,
        timestamp: format!("2024-05-06T07:08:{:02}.{:03}Z", i % 60, i % 1000),
        elements_chain: if i.is_multiple_of(2) { String::new() } else { "a:nth-child=\"1\"".into() },
        ip: "10.0.0.1".into(),
    }
}

/// Events `from..to`.
pub fn events(salt: u32, from: u32, to: u32) -> Vec<Event> {
    (from..to).map(|i| event(salt, i)).collect()
}

/// The references a sink takes.
pub fn refs(events: &[Event]) -> Vec<&Event> {
    events.iter().collect()
}
