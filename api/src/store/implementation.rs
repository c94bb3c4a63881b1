//! The store's methods over SQLite or PostgreSQL. (Signatures fixed by the API layer; bodies
//! being written.)
#![allow(unused_variables, clippy::todo)]

use std::path::Path;

use super::*;

/// The open state store (SQLite or PostgreSQL). Cheap to share behind an `Arc`; methods block.
pub struct Store {
    _private: (),
}

impl Store {
    /// Opens (creating if needed) the configured database and applies migrations; loads or
    /// generates the secret key.
    pub fn open(config: &StoreConfig, data_dir: &Path) -> Result<Store, StoreError> {
        todo!()
    }

    /// `sqlite` or `postgres` and where, for logs (never a password).
    pub fn describe(&self) -> String {
        todo!()
    }

    /// Makes the store hold these projects and keys (from hogpipe.toml): inserts or updates
    /// each project's name and token, adds missing keys (label `hogpipe.toml`, scope `*`, the
    /// project granted). Keys and projects not in the list are left alone.
    pub fn sync_projects(&self, seeds: &[ProjectSeed]) -> Result<(), StoreError> {
        todo!()
    }

    /// Every project, by id.
    pub fn projects(&self) -> Result<Vec<Project>, StoreError> {
        todo!()
    }

    /// One project.
    pub fn project(&self, id: u64) -> Result<Option<Project>, StoreError> {
        todo!()
    }

    /// A new project with the next free id; `Conflict` when the token is taken.
    pub fn create_project(&self, name: &str, token: &str) -> Result<Project, StoreError> {
        todo!()
    }

    /// Stores a key given in plain text (hashed), for these projects and scopes.
    pub fn add_api_key(
        &self,
        plaintext: &str,
        label: &str,
        projects: &[u64],
        scopes: &[String],
    ) -> Result<ApiKeyInfo, StoreError> {
        todo!()
    }

    /// The caller behind a key, if the key is known.
    pub fn authenticate(&self, plaintext: &str) -> Result<Option<Principal>, StoreError> {
        todo!()
    }

    /// Every key (masked).
    pub fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        todo!()
    }

    /// Deletes a key; false when there was none.
    pub fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        todo!()
    }

    /// Inserts or replaces a function (by id). Secret inputs (per `inputs_schema`) are sealed.
    pub fn save_function(&self, function: &HogFunction) -> Result<(), StoreError> {
        todo!()
    }

    /// One function of a project (not deleted), secrets opened.
    pub fn function(&self, project_id: u64, id: &str) -> Result<Option<HogFunction>, StoreError> {
        todo!()
    }

    /// The functions of one project, or of all projects; ordered by project, execution order,
    /// creation time.
    pub fn functions(&self, project_id: Option<u64>) -> Result<Vec<HogFunction>, StoreError> {
        todo!()
    }

    /// Deletes a function; false when there was none.
    pub fn delete_function(&self, project_id: u64, id: &str) -> Result<bool, StoreError> {
        todo!()
    }

    /// Appends log lines; keeps at most the newest `max_per_function` lines per function.
    pub fn append_logs(&self, logs: &[FunctionLog], max_per_function: usize) -> Result<(), StoreError> {
        todo!()
    }

    /// A function's newest log lines first, at most `limit`, older than `before` when given.
    pub fn logs(
        &self,
        project_id: u64,
        function_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<FunctionLog>, StoreError> {
        todo!()
    }

    /// Adds the deltas to their hourly counters.
    pub fn add_metrics(&self, deltas: &[MetricDelta]) -> Result<(), StoreError> {
        todo!()
    }

    /// A function's counters from `after` (inclusive, RFC 3339) on, ordered by bucket and metric.
    pub fn metrics(&self, project_id: u64, function_id: &str, after: &str) -> Result<Vec<MetricDelta>, StoreError> {
        todo!()
    }

    /// Inserts or replaces a live aggregate definition.
    pub fn save_aggregate(&self, aggregate: &StoredAggregate) -> Result<(), StoreError> {
        todo!()
    }

    /// Every stored live aggregate definition.
    pub fn aggregates(&self) -> Result<Vec<StoredAggregate>, StoreError> {
        todo!()
    }

    /// Deletes one; false when there was none.
    pub fn delete_aggregate(&self, project_id: u64, id: &str) -> Result<bool, StoreError> {
        todo!()
    }
}
