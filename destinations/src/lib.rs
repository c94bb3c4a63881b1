//! Destinations: where routed events leave hogpipe.
//!
//! - [`template`]: destination templates as data (`templates/<id>.hog` + `<id>.toml`), their input
//!   schemas, and rendering a function's inputs per event.
//! - [`invoke`]: running one destination invocation (a Hog function that calls `fetch`), suspending
//!   on every `fetch` and resuming with the response.
//! - [`engine`]: the delivery engine that performs those requests (pooled connections, per-destination
//!   concurrency and rate limits, retries with backoff, persisted queue, dead letters).
//! - [`sinks`]: native sinks written in Rust (Kafka topic, rotated JSON-lines files, PostgreSQL
//!   table, batched webhook).
//! - [`secret_key`]: the data dir's key sealing secrets at rest. It lives here because the delivery
//!   queue seals with it and `hogpipe-api` (whose state store seals secret inputs with the same
//!   key) depends on this crate, not the other way round.
//!
//! This crate does not decide which events reach a destination: the dataflow's routing does.
#![warn(missing_docs)]

pub mod deliver;
pub mod engine;
pub mod http;
pub mod invoke;
pub mod secret_key;
pub mod sinks;
pub mod template;
