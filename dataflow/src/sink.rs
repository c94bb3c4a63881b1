//! Where processed events go. A sink takes a whole batch; the dataflow commits the log position
//! only after every sink took it, so a sink may see an event again after a crash (same `uuid`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::event::Event;

/// Why a sink could not take a batch; the dataflow retries it (with backoff) until it does.
#[derive(Debug, thiserror::Error)]
#[error("{sink}: {message}")]
pub struct SinkError {
    /// Which sink.
    pub sink: String,
    /// What went wrong.
    pub message: String,
}

/// Takes processed events (the warehouse writer, live aggregates, files).
///
/// `write` either stores the batch durably or keeps it in a buffer (a warehouse writer gathers
/// rows into larger inserts); `flush` makes everything written so far durable. The dataflow calls
/// `flush` before every commit of the read positions, so a buffered event is never committed
/// before it is stored. Both may block to push back on the dataflow when the target is slow.
pub trait EventSink: Send + Sync + 'static {
    /// Takes a batch (or fails, and the dataflow retries it).
    fn write(&self, events: &[&Event]) -> Result<(), SinkError>;

    /// Makes every event taken so far durable (nothing to do for sinks that do not buffer).
    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Takes events routed to destinations, as `(function id, event)`.
pub trait InvocationSink: Send + Sync + 'static {
    /// Queues a batch of invocations (durably, or buffered until `flush`).
    fn invoke(&self, invocations: &[(&str, &Event)]) -> Result<(), SinkError>;

    /// Makes every invocation taken so far durable.
    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Hands every batch to several event sinks in turn (the warehouse, files, native sinks).
pub struct FanOut {
    sinks: Vec<std::sync::Arc<dyn EventSink>>,
}

impl FanOut {
    /// A sink writing to each of `sinks`.
    pub fn new(sinks: Vec<std::sync::Arc<dyn EventSink>>) -> FanOut {
        FanOut { sinks }
    }
}

impl EventSink for FanOut {
    fn write(&self, events: &[&Event]) -> Result<(), SinkError> {
        // A retried batch reaches every sink again; sinks are idempotent by uuid or at-least-once.
        self.sinks.iter().try_for_each(|s| s.write(events))
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.sinks.iter().try_for_each(|s| s.flush())
    }
}

/// Hands every batch of invocations to several invocation sinks in turn.
pub struct FanOutInvocations {
    sinks: Vec<std::sync::Arc<dyn InvocationSink>>,
}

impl FanOutInvocations {
    /// A sink handing invocations to each of `sinks`.
    pub fn new(sinks: Vec<std::sync::Arc<dyn InvocationSink>>) -> FanOutInvocations {
        FanOutInvocations { sinks }
    }
}

impl InvocationSink for FanOutInvocations {
    fn invoke(&self, invocations: &[(&str, &Event)]) -> Result<(), SinkError> {
        self.sinks.iter().try_for_each(|s| s.invoke(invocations))
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.sinks.iter().try_for_each(|s| s.flush())
    }
}

/// Discards everything (when nothing is configured).
#[derive(Debug, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn write(&self, _events: &[&Event]) -> Result<(), SinkError> {
        Ok(())
    }
}

impl InvocationSink for NullSink {
    fn invoke(&self, _invocations: &[(&str, &Event)]) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Appends JSON lines to a file, fsynced per batch.
#[derive(Debug)]
pub struct JsonLinesSink {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonLinesSink {
    /// Opens (creating) the file for appending.
    pub fn open(path: &Path) -> Result<JsonLinesSink, SinkError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| SinkError { sink: path.display().to_string(), message: e.to_string() })?;
        Ok(JsonLinesSink { path: path.to_path_buf(), file: Mutex::new(file) })
    }

    fn append<T: serde::Serialize>(&self, items: &[T]) -> Result<(), SinkError> {
        let err = |message: String| SinkError { sink: self.path.display().to_string(), message };
        let mut buf = Vec::with_capacity(items.len() * 512);
        for item in items {
            serde_json::to_writer(&mut buf, item).map_err(|e| err(e.to_string()))?;
            buf.push(b'\n');
        }
        let mut file = self.file.lock().map_err(|_| err("poisoned lock".into()))?;
        file.write_all(&buf).map_err(|e| err(e.to_string()))?;
        file.sync_data().map_err(|e| err(e.to_string()))
    }
}

impl EventSink for JsonLinesSink {
    fn write(&self, events: &[&Event]) -> Result<(), SinkError> {
        self.append(events)
    }
}

impl InvocationSink for JsonLinesSink {
    fn invoke(&self, invocations: &[(&str, &Event)]) -> Result<(), SinkError> {
        self.append(invocations)
    }
}
