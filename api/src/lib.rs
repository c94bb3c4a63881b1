//! hogpipe's REST API, served by `hogpipe serve` under `/api` on the capture port: projects,
//! Hog functions (CRUD, test runs, logs, metrics), the template catalog, dead letters, the query
//! API (HogQL with team isolation, trends, funnels, retention), live aggregates, and the OpenAPI
//! description at `/api/schema`.
//!
//! It owns the state store ([`store`]) and the HTTP layer. Query translation and insight SQL are
//! `hogpipe-warehouse`'s; running functions is `hog-lang`'s, `hogpipe-dataflow`'s and
//! `hogpipe-destinations`'s. Every handler authenticates with a personal API key ([`auth`]).
#![warn(missing_docs)]

pub mod auth;
pub mod deploy;
pub mod error;
pub mod filters;
pub mod persist;
pub mod routes;
pub mod store;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use hogpipe_dataflow::functions::FunctionStats;
use hogpipe_dataflow::live::Live;
use hogpipe_destinations::engine::Engine;
use hogpipe_warehouse::Warehouse;

pub use error::ApiError;

/// Limits on queries sent to `/api/projects/:id/query` (`[query]` in `hogpipe.toml`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryLimits {
    /// Rows returned when the query says no LIMIT.
    pub default_limit: u64,
    /// The largest LIMIT honoured.
    pub max_limit: u64,
    /// Seconds a query may run.
    pub max_execution_time_secs: u64,
}

impl QueryLimits {
    /// Why these limits cannot be used, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.default_limit == 0 {
            return Err("query.default_limit must be at least 1".into());
        }
        if self.max_limit < self.default_limit {
            return Err(format!(
                "query.max_limit ({}) must be at least query.default_limit ({})",
                self.max_limit, self.default_limit
            ));
        }
        if self.max_execution_time_secs == 0 || self.max_execution_time_secs > 3600 {
            return Err("query.max_execution_time_secs must be between 1 and 3600".into());
        }
        Ok(())
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits { default_limit: 100, max_limit: 10_000, max_execution_time_secs: 30 }
    }
}

/// What the handlers share. Parts of a deployment that are off (`[warehouse] backend = "none"`,
/// `[dataflow] enabled = false`) are `None`, and their routes answer 503 saying so.
pub struct ApiState {
    /// Projects, keys, functions, logs, metrics.
    pub store: Arc<store::Store>,
    /// The warehouse, for the query API.
    pub warehouse: Option<Arc<Warehouse>>,
    /// The running functions, changed when the API changes a function.
    pub deployment: Option<Arc<deploy::Deployment>>,
    /// The delivery engine, for dead letters.
    pub engine: Option<Arc<Engine>>,
    /// Live aggregates.
    pub live: Option<Arc<Live>>,
    /// In-memory counters of the running functions (the store has the persisted history).
    pub stats: Option<Arc<FunctionStats>>,
    /// Query limits.
    pub limits: QueryLimits,
    /// `site_url` for function globals in test runs.
    pub site_url: String,
    /// The event log, where source webhooks append the events they capture.
    pub log: Option<Arc<dyn hogpipe_capture::log::EventLog>>,
}

impl ApiState {
    /// State with only a store (tests, and deployments without a dataflow or warehouse).
    pub fn new(store: Arc<store::Store>) -> ApiState {
        ApiState {
            store,
            warehouse: None,
            deployment: None,
            engine: None,
            live: None,
            stats: None,
            limits: QueryLimits::default(),
            site_url: "http://localhost:8000".into(),
            log: None,
        }
    }
}

/// Every `/api` route, ready to merge with capture's router.
pub fn app(state: Arc<ApiState>) -> Router {
    routes::router(state)
}
