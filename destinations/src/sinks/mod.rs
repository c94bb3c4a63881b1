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
use serde::{Deserialize, Serialize};

mod file;
mod kafka;
mod postgres;
mod webhook;

pub use file::{FileSink, FileSinkConfig};
pub use kafka::{KafkaKey, KafkaSink, KafkaSinkConfig};
pub use postgres::{PostgresSink, PostgresSinkConfig};
pub use webhook::{WebhookSink, WebhookSinkConfig};

/// One `[[sinks]]` entry of `hogpipe.toml`, chosen by `type`:
///
/// ```toml
/// [[sinks]]
/// type = "file"        # or "kafka", "postgres", "webhook"
/// dir = "exports"      # the fields of that sink's config
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
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
