//! `[[sinks]]` entries of `hogpipe.toml`: types, defaults, unknown fields, and `build`.

use std::collections::BTreeMap;

use hogpipe_destinations::sinks::{
    FileSinkConfig, KafkaKey, KafkaSinkConfig, PostgresSinkConfig, SinkConfig, WebhookSinkConfig,
};
use serde::Deserialize;

use super::{events, refs};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    sinks: Vec<SinkConfig>,
}

fn parse(text: &str) -> Result<Vec<SinkConfig>, String> {
    toml::from_str::<File>(text).map(|f| f.sinks).map_err(|e| e.to_string())
}

#[test]
fn every_type_with_its_defaults() {
    let sinks = parse(
        r#"
        [[sinks]]
        type = "file"
        dir = "exports"

        [[sinks]]
        type = "kafka"
        brokers = "k1:9092,k2:9092"
        topic = "events_out"

        [[sinks]]
        type = "postgres"
        url = "postgres://hogpipe@db/analytics"

        [[sinks]]
        type = "webhook"
        url = "https://example.com/ingest"
        "#,
    )
    .expect("parse");
    assert_eq!(
        sinks,
        [
            SinkConfig::File(FileSinkConfig::new("exports")),
            SinkConfig::Kafka(KafkaSinkConfig::new("k1:9092,k2:9092", "events_out")),
            SinkConfig::Postgres(PostgresSinkConfig::new("postgres://hogpipe@db/analytics")),
            SinkConfig::Webhook(WebhookSinkConfig::new("https://example.com/ingest")),
        ]
    );
    let SinkConfig::File(file) = &sinks[0] else { unreachable!() };
    assert_eq!((file.max_bytes, file.max_age_secs, file.keep), (128 << 20, 3600, 0));
    let SinkConfig::Webhook(hook) = &sinks[3] else { unreachable!() };
    assert_eq!((hook.max_events_per_request, hook.max_attempts, hook.timeout_ms), (500, 5, 10_000));
}

#[test]
fn every_field_can_be_set() {
    let sinks = parse(
        r#"
        [[sinks]]
        type = "file"
        dir = "/var/lib/out"
        max_bytes = 1000
        max_age_secs = 0
        keep = 3

        [[sinks]]
        type = "kafka"
        brokers = "k:9092"
        topic = "t"
        key = "uuid"
        message_timeout_ms = 500
        properties = { "linger.ms" = "50" }

        [[sinks]]
        type = "postgres"
        url = "postgres://u@h/d"
        table = "analytics.events"
        connect_timeout_secs = 3

        [[sinks]]
        type = "webhook"
        url = "http://h/x"
        headers = { authorization = "Bearer x" }
        max_events_per_request = 10
        max_attempts = 2
        backoff_initial_ms = 1
        backoff_max_ms = 2
        max_retry_after_secs = 3
        timeout_ms = 4
        "#,
    )
    .expect("parse");
    assert_eq!(
        sinks[0],
        SinkConfig::File(FileSinkConfig { dir: "/var/lib/out".into(), max_bytes: 1000, max_age_secs: 0, keep: 3 })
    );
    assert_eq!(
        sinks[1],
        SinkConfig::Kafka(KafkaSinkConfig {
            brokers: "k:9092".into(),
            topic: "t".into(),
            key: KafkaKey::Uuid,
            message_timeout_ms: 500,
            properties: BTreeMap::from([("linger.ms".to_string(), "50".to_string())]),
        })
    );
    assert_eq!(
        sinks[2],
        SinkConfig::Postgres(PostgresSinkConfig {
            url: "postgres://u@h/d".into(),
            table: "analytics.events".into(),
            connect_timeout_secs: 3
        })
    );
    assert_eq!(
        sinks[3],
        SinkConfig::Webhook(WebhookSinkConfig {
            url: "http://h/x".into(),
            headers: BTreeMap::from([("authorization".to_string(), "Bearer x".to_string())]),
            max_events_per_request: 10,
            max_attempts: 2,
            backoff_initial_ms: 1,
            backoff_max_ms: 2,
            max_retry_after_secs: 3,
            timeout_ms: 4,
        })
    );
}

#[test]
fn unknown_fields_types_and_missing_fields_are_errors_with_their_place() {
    // Errors point into the entry that is wrong: at the field itself when it is read after
    // `type` (tables keep their order, so that is every field written after `type`), else at the
    // entry's `[[sinks]]` line, naming the field.
    let two = |second: &str| format!("[[sinks]]\ntype = \"file\"\ndir = \"x\"\n\n[[sinks]]\n{second}");
    let err = parse(&two("type = \"file\"\ndir = \"y\"\nmax_size = 3\n")).expect_err("unknown field");
    // Read after `type` (tables keep their order), so the error points at the field itself.
    assert!(err.contains("max_size") && err.contains("max_bytes") && err.contains("line 8"), "{err}");
    let err = parse(&two("type = \"webhook\"\nurl = \"http://h/\"\nmax_attempts = \"five\"\n")).expect_err("a string");
    assert!(err.contains("line 8, column 16") && err.contains("max_attempts") && err.contains("five"), "{err}");
    let err = parse(&two("type = \"webhook\"\n\nurl = 5\n")).expect_err("a number");
    assert!(err.contains("line 8, column 7") && err.contains("url"), "{err}");
    let err = parse("[[sinks]]\ntype = \"s3\"\n").expect_err("unknown type");
    assert!(err.contains("s3") && err.contains("webhook") && err.contains("line 2"), "{err}");
    let err = parse("[[sinks]]\ntype = \"kafka\"\nbrokers = \"k:9092\"\n").expect_err("no topic");
    assert!(err.contains("topic"), "{err}");
    let err = parse("[[sinks]]\ndir = \"x\"\n").expect_err("no type");
    assert!(err.contains("type"), "{err}");
    let err =
        parse("[[sinks]]\ntype = \"kafka\"\nbrokers = \"k\"\ntopic = \"t\"\nkey = \"ip\"\n").expect_err("bad key");
    assert!(err.contains("ip") && err.contains("distinct_id"), "{err}");
}

#[test]
fn build_makes_a_working_sink_under_the_data_dir() {
    let data = tempfile::tempdir().expect("tempdir");
    let sink = SinkConfig::File(FileSinkConfig::new("exports")).build(data.path()).expect("build");
    sink.write(&refs(&events(40, 0, 3))).expect("write");
    let files: Vec<_> = std::fs::read_dir(data.path().join("exports")).expect("the dir exists").collect();
    assert_eq!(files.len(), 1);
}

/// The error `build` gives.
fn build_error(config: SinkConfig) -> String {
    let data = tempfile::tempdir().expect("tempdir");
    match config.build(data.path()) {
        Ok(_) => panic!("{config:?} builds"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn build_rejects_what_cannot_work() {
    let err = build_error(SinkConfig::Postgres(PostgresSinkConfig {
        table: "a-b".into(),
        ..PostgresSinkConfig::new("postgres://u@h/d")
    }));
    assert!(err.contains("a-b"), "{err}");
    let err = build_error(SinkConfig::Webhook(WebhookSinkConfig::new("nope")));
    assert!(err.contains("nope"), "{err}");
    let err = build_error(SinkConfig::Kafka(KafkaSinkConfig::new("k:9092", "")));
    assert!(err.contains("topic"), "{err}");
}

#[test]
fn type_may_come_anywhere_and_json_round_trips() {
    let sinks = parse("[[sinks]]\ndir = \"x\"\nkeep = 2\ntype = \"file\"\n").expect("type last");
    assert_eq!(sinks, [SinkConfig::File(FileSinkConfig { keep: 2, ..FileSinkConfig::new("x") })]);
    let err = parse("[[sinks]]\nkeep = 2\nmax_size = 1\ntype = \"file\"\n").expect_err("unknown field before type");
    assert!(err.contains("max_size"), "{err}");
    let err = parse("[[sinks]]\nkeep = \"two\"\ndir = \"x\"\ntype = \"file\"\n").expect_err("bad value before type");
    assert!(err.contains("two"), "{err}");

    let config = SinkConfig::Kafka(KafkaSinkConfig { key: KafkaKey::Uuid, ..KafkaSinkConfig::new("k:1", "t") });
    let json = serde_json::to_value(&config).expect("serialize");
    assert_eq!(json["type"], "kafka");
    assert_eq!(json["key"], "uuid");
    assert_eq!(serde_json::from_value::<SinkConfig>(json).expect("deserialize"), config);
}
