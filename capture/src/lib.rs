//! hogpipe-capture: PostHog-compatible ingestion and the durable event log.
//!
//! This crate owns everything between an SDK's HTTP request and a record that is safe on disk (or in
//! Kafka): the capture endpoints ([`server`]), payload decoding ([`decode`]), event normalization
//! ([`event`]) and the event log behind one trait ([`log::EventLog`]) with its embedded segmented
//! WAL ([`log::wal`]) and Kafka ([`log::kafka`]) backends.
//!
//! It does not run Hog, resolve persons or write to the warehouse: the dataflow reads the log.
#![warn(missing_docs)]

pub mod decode;
pub mod event;
pub mod log;
pub mod metrics;
pub mod server;
