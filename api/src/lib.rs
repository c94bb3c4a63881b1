//! hogpipe's REST API, served by `hogpipe serve` under `/api` on the capture port: projects and
//! personal API keys, Hog functions (CRUD, test runs, logs, metrics), the template catalog, dead
//! letters, the query API (HogQL with team isolation, trends, funnels, retention), live
//! aggregates, and the OpenAPI description at `/api/schema`.
//!
//! It owns the state store ([`store`]); query translation and insight SQL live in
//! `hogpipe-warehouse`, function execution in `hog-lang`, `hogpipe-dataflow` and
//! `hogpipe-destinations`.
#![warn(missing_docs)]

pub mod store;
