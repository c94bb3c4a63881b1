//! Native sinks written in Rust (not Hog): every event of a batch goes to a Kafka topic
//! ([`KafkaSink`]), rotated JSON-lines files ([`FileSink`]), a PostgreSQL table
//! ([`PostgresSink`]) or a batched webhook ([`WebhookSink`]).
//!
//! Each implements the dataflow's [`EventSink`]: `write` returns only once the batch is durable at
//! the target, and on an error the dataflow retries the whole batch. Delivery is therefore
//! at-least-once: a batch that failed half-way is written again, so the same event (same `uuid`)
//! may arrive twice at the Kafka topic, the files and the webhook; the PostgreSQL table keeps one
//! row per `uuid`.
//!
//! `write` blocks the calling thread (the dataflow's workers are plain threads); it must not be
//! called from inside an async runtime.
//!
//! [`SinkConfig`] is one `[[sinks]]` entry of `hogpipe.toml`; [`SinkConfig::build`] makes the sink.
//! This module does not decide which events reach a sink: the dataflow does.

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use hogpipe_dataflow::sink::{EventSink, SinkError};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

mod file;
mod kafka;
mod postgres;
mod webhook;

pub use file::{FileSink, FileSinkConfig};
pub use kafka::{KafkaKey, KafkaSink, KafkaSinkConfig};
pub use postgres::{describe_target as describe_postgres, PostgresSink, PostgresSinkConfig};
pub use webhook::{WebhookSink, WebhookSinkConfig};

/// One `[[sinks]]` entry of `hogpipe.toml`, chosen by `type`:
///
/// ```toml
/// [[sinks]]
/// type = "file"        # or "kafka", "postgres", "webhook"
/// dir = "exports"      # the fields of that sink's config
/// ```
///
/// The form is serde's internally tagged enum (`#[serde(tag = "type", rename_all = "snake_case")]`),
/// deserialized by hand so that errors point into the entry: serde's derive reads an entry whole
/// and its errors point at the start of the array (line 1, whichever entry is wrong). Fields read
/// after `type` report their own line and column; fields read before it (with the `toml` crate's
/// default sorted tables: those whose names sort before `type`) report the entry's `[[sinks]]`
/// line and name the field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// Rotated JSON-lines files ([`FileSinkConfig`]).
    File(FileSinkConfig),
    /// A Kafka topic ([`KafkaSinkConfig`]).
    Kafka(KafkaSinkConfig),
    /// A PostgreSQL table ([`PostgresSinkConfig`]).
    Postgres(PostgresSinkConfig),
    /// A batched webhook ([`WebhookSinkConfig`]).
    Webhook(WebhookSinkConfig),
}

impl SinkConfig {
    /// Makes the sink. Relative paths (the file sink's `dir`) are under `data_dir`. Fails on a
    /// configuration the sink cannot work with (bad URL, header or table name, a directory that
    /// cannot be created); it does not wait for a server: Kafka, PostgreSQL and the webhook are
    /// reached on the first write.
    pub fn build(&self, data_dir: &Path) -> Result<Box<dyn EventSink>, SinkError> {
        Ok(match self {
            SinkConfig::File(config) => Box::new(FileSink::open(data_dir, config.clone())?),
            SinkConfig::Kafka(config) => Box::new(KafkaSink::new(config.clone())?),
            SinkConfig::Postgres(config) => Box::new(PostgresSink::new(config.clone())?),
            SinkConfig::Webhook(config) => Box::new(WebhookSink::new(config.clone())?),
        })
    }
}

/// The `type` of a `[[sinks]]` entry.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum SinkType {
    File,
    Kafka,
    Postgres,
    Webhook,
}

impl<'de> Deserialize<'de> for SinkConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SinkConfig, D::Error> {
        deserializer.deserialize_map(SinkConfigVisitor)
    }
}

struct SinkConfigVisitor;

impl<'de> Visitor<'de> for SinkConfigVisitor {
    type Value = SinkConfig;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sink: a table with `type` (file, kafka, postgres or webhook) and its fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SinkConfig, A::Error> {
        // Fields met before `type` (in the order the format gives them: `toml` sorts a table's
        // keys) are kept aside as JSON values; the rest stream from the document straight into
        // the sink's config, so their errors keep their line and column.
        let mut before = Vec::new();
        let kind = loop {
            let Some(key) = map.next_key::<String>()? else {
                return Err(de::Error::missing_field("type"));
            };
            if key == "type" {
                break map.next_value::<SinkType>()?;
            }
            before.push((key, map.next_value::<serde_json::Value>()?));
        };
        let fields = MapAccessDeserializer::new(Fields { before: before.into_iter(), pending: None, map });
        Ok(match kind {
            SinkType::File => SinkConfig::File(FileSinkConfig::deserialize(fields)?),
            SinkType::Kafka => SinkConfig::Kafka(KafkaSinkConfig::deserialize(fields)?),
            SinkType::Postgres => SinkConfig::Postgres(PostgresSinkConfig::deserialize(fields)?),
            SinkType::Webhook => SinkConfig::Webhook(WebhookSinkConfig::deserialize(fields)?),
        })
    }
}

/// A sink's fields: those read before `type`, then the rest of the document's table.
struct Fields<A> {
    before: std::vec::IntoIter<(String, serde_json::Value)>,
    pending: Option<(String, serde_json::Value)>,
    map: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Fields<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        if let Some((key, value)) = self.before.next() {
            let found = seed.deserialize(IntoDeserializer::<A::Error>::into_deserializer(key.as_str())).map(Some);
            self.pending = Some((key, value));
            return found;
        }
        self.map.next_key_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.pending.take() {
            Some((key, value)) => seed.deserialize(value).map_err(|e| de::Error::custom(format_args!("`{key}`: {e}"))),
            None => self.map.next_value_seed(seed),
        }
    }
}

/// Runs a future to completion on the calling thread (for futures that need no runtime, such as
/// librdkafka's delivery reports).
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}
