//! hogpipe-dataflow: the timely graph every event goes through.
//!
//! Workers read the event log (each its share of partitions), turn records into [`event::Event`]s,
//! run each project's Hog transformations in order ([`runner`]), route events to the destinations
//! whose filter matches, and hand batches to the sinks ([`sink`]). The read position is committed
//! only after every sink took a batch (at-least-once; the event `uuid` makes replays idempotent).
//! Functions change while running through the [`functions::Registry`], at batch boundaries.
//! Live aggregates ([`live`]) are computed with differential dataflow on the processed events.
//!
//! It does not deliver to destinations (that is `hogpipe-destinations`) or write the warehouse
//! (`hogpipe-warehouse`): those are sinks.
#![warn(missing_docs)]

pub mod event;
pub mod functions;
pub mod graph;
pub mod health;
pub mod live;
pub mod runner;
pub mod sink;
pub mod workload;
