//! The store's methods over SQLite or PostgreSQL: one set of SQL strings (see [`super::db`]),
//! API keys hashed with SHA-256, secret inputs sealed (see [`super::secrets`]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::db::{Conn, Db, Param, Row};
use super::secrets::Sealer;
use super::*;

/// The open state store (SQLite or PostgreSQL). Cheap to share behind an `Arc`; methods block.
/// Call them (and [`Store::open`]) from `spawn_blocking` or a plain thread: the PostgreSQL
/// client runs its own runtime and panics on a thread that is driving an async runtime.
pub struct Store {
    db: Db,
    sealer: Sealer,
    /// The SQLite file, when that is the database.
    sqlite_path: Option<PathBuf>,
}

/// Now, RFC 3339 in UTC with milliseconds.
pub(super) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A timestamp in the one form stored (UTC, milliseconds, `Z`), so that text order is time
/// order; text that does not parse is kept as it is.
fn canonical_time(text: &str) -> String {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Millis, true),
        Err(_) => text.to_string(),
    }
}

/// An hour bucket in the one form stored (`2026-11-25T10:00:00Z`).
fn canonical_bucket(text: &str) -> String {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.with_timezone(&Utc).to_rfc3339_opts(SecondsFormat::Secs, true),
        Err(_) => text.to_string(),
    }
}

/// An id or count as the BIGINT both databases store.
fn int(value: u64, what: &str) -> Result<Param, StoreError> {
    i64::try_from(value)
        .map(Param::Int)
        .map_err(|_| StoreError::Query(format!("{what} {value} is beyond the largest storable (2^63 - 1)")))
}

/// A stored BIGINT as the u64 it was.
fn unsigned(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is negative")))
}

fn to_json(value: &impl Serialize, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Query(format!("encoding {what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what} is not valid JSON: {e}")))
}

/// SHA-256 of a key, hex: what the database holds instead of the key.
fn key_hash(plaintext: &str) -> String {
    let digest = Sha256::digest(plaintext.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// `phx_ab…wxyz`: the first 6 and last 4 characters; less of a key shorter than 20 characters.
fn key_mask(plaintext: &str) -> String {
    let chars: Vec<char> = plaintext.chars().collect();
    let (head, tail) = if chars.len() >= 20 { (6, 4) } else { (chars.len() / 5, chars.len() / 5) };
    let first: String = chars[..head].iter().collect();
    let last: String = chars[chars.len() - tail..].iter().collect();
    format!("{first}…{last}")
}

const PROJECT_COLUMNS: &str = "id, name, token, created_at";

fn project_of(row: &Row) -> Result<Project, StoreError> {
    Ok(Project {
        id: unsigned(row.int(0)?, "project id")?,
        name: row.text(1)?,
        token: row.text(2)?,
        created_at: row.text(3)?,
    })
}

const FUNCTION_COLUMNS: &str = "id, project_id, kind, name, description, enabled, template_id, hog, bytecode, \
     inputs_schema, inputs, filters, execution_order, created_at, updated_at";

const LOG_COLUMNS: &str = "project_id, function_id, timestamp, level, invocation_id, message";

fn log_of(row: &Row) -> Result<FunctionLog, StoreError> {
    Ok(FunctionLog {
        project_id: unsigned(row.int(0)?, "project id")?,
        function_id: row.text(1)?,
        timestamp: row.text(2)?,
        level: row.text(3)?,
        invocation_id: row.text(4)?,
        message: row.text(5)?,
    })
}

/// The projects granted to a key, by id.
fn key_projects(conn: &mut dyn Conn, key_id: &str) -> Result<Vec<u64>, StoreError> {
    conn.query("SELECT project_id FROM api_key_projects WHERE key_id = ?1 ORDER BY project_id", &[key_id.into()])?
        .iter()
        .map(|row| unsigned(row.int(0)?, "project id"))
        .collect()
}

/// Inserts a key (by hash) unless it is there; its id either way.
fn insert_key(
    conn: &mut dyn Conn,
    plaintext: &str,
    label: &str,
    scopes: &[String],
) -> Result<(String, bool), StoreError> {
    let hash = key_hash(plaintext);
    if let Some(row) = conn.query("SELECT id FROM api_keys WHERE hash = ?1", &[hash.clone().into()])?.first() {
        return Ok((row.text(0)?, false));
    }
    let id = uuid::Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO api_keys (id, label, hash, mask, scopes, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        &[
            id.clone().into(),
            label.into(),
            hash.into(),
            key_mask(plaintext).into(),
            to_json(&scopes, "scopes")?.into(),
            now().into(),
        ],
    )?;
    Ok((id, true))
}

fn grant(conn: &mut dyn Conn, key_id: &str, project: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO api_key_projects (key_id, project_id) VALUES (?1, ?2) ON CONFLICT (key_id, project_id) DO NOTHING",
        &[key_id.into(), int(project, "project id")?],
    )?;
    Ok(())
}

fn key_info(conn: &mut dyn Conn, row: &Row) -> Result<ApiKeyInfo, StoreError> {
    let id = row.text(0)?;
    Ok(ApiKeyInfo {
        projects: key_projects(conn, &id)?,
        label: row.text(1)?,
        mask: row.text(2)?,
        scopes: from_json(&row.text(3)?, "a key's scopes")?,
        created_at: row.text(4)?,
        id,
    })
}

/// The project (other than `except`) holding `token`, if any.
fn token_owner(conn: &mut dyn Conn, token: &str, except: Option<i64>) -> Result<Option<u64>, StoreError> {
    let rows = conn.query("SELECT id FROM projects WHERE token = ?1", &[token.into()])?;
    for row in &rows {
        let id = row.int(0)?;
        if Some(id) != except {
            return Ok(Some(unsigned(id, "project id")?));
        }
    }
    Ok(None)
}

impl Store {
    /// Opens (creating if needed) the configured database and applies migrations; loads or
    /// generates the secret key.
    pub fn open(config: &StoreConfig, data_dir: &Path) -> Result<Store, StoreError> {
        let sealer = Sealer::load(config.secret_key.as_deref(), data_dir)?;
        match &config.url {
            Some(url) if url.starts_with("sqlite:") => Err(StoreError::Unavailable(
                "[state] url is for PostgreSQL (postgres://…); give a SQLite file as [state] path".into(),
            )),
            Some(url) => Ok(Store { db: Db::open_postgres(url)?, sealer, sqlite_path: None }),
            None => {
                let path = config.path.clone().unwrap_or_else(|| default_sqlite_path(data_dir));
                Ok(Store { db: Db::open_sqlite(&path)?, sealer, sqlite_path: Some(path) })
            }
        }
    }

    /// `sqlite` or `postgres` and where, for logs (never a password).
    pub fn describe(&self) -> String {
        self.db.describe(self.sqlite_path.as_deref())
    }

    /// Makes the store hold these projects and keys (from hogpipe.toml): inserts or updates
    /// each project's name and token, adds missing keys (label `hogpipe.toml`, scope `*`, the
    /// project granted). Keys and projects not in the list are left alone. Tokens may move
    /// between the listed projects; `Conflict` when two listed projects share a token or a
    /// listed token belongs to a project not listed. All or nothing.
    pub fn sync_projects(&self, seeds: &[ProjectSeed]) -> Result<(), StoreError> {
        let mut tokens = BTreeSet::new();
        for seed in seeds {
            if !tokens.insert(seed.token.as_str()) {
                return Err(StoreError::Conflict(format!("project token {:?} is given to two projects", seed.token)));
            }
        }
        let ids: Vec<Param> = seeds.iter().map(|s| int(s.id, "project id")).collect::<Result<_, _>>()?;
        let everything = vec!["*".to_string()];
        self.db.write(&|conn| {
            for (seed, id) in seeds.iter().zip(&ids) {
                let Param::Int(id) = id else { continue };
                if let Some(owner) = token_owner(conn, &seed.token, Some(*id))? {
                    if !seeds.iter().any(|s| s.id == owner) {
                        return Err(StoreError::Conflict(format!(
                            "project {}: token {:?} belongs to project {owner}",
                            seed.id, seed.token
                        )));
                    }
                }
            }
            // Listed projects give up their tokens first, so that tokens can move between them.
            for id in &ids {
                conn.execute(
                    "UPDATE projects SET token = 'hogpipe-sync-' || CAST(id AS TEXT) WHERE id = ?1",
                    std::slice::from_ref(id),
                )?;
            }
            for (seed, id) in seeds.iter().zip(&ids) {
                conn.execute(
                    "INSERT INTO projects (id, name, token, created_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, token = excluded.token",
                    &[id.clone(), seed.name.as_str().into(), seed.token.as_str().into(), now().into()],
                )?;
                for key in &seed.api_keys {
                    let (key_id, _) = insert_key(conn, key, "hogpipe.toml", &everything)?;
                    grant(conn, &key_id, seed.id)?;
                }
            }
            Ok(())
        })
    }

    /// Every project, by id.
    pub fn projects(&self) -> Result<Vec<Project>, StoreError> {
        self.db.read(&|conn| {
            conn.query(&format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY id"), &[])?
                .iter()
                .map(project_of)
                .collect()
        })
    }

    /// One project.
    pub fn project(&self, id: u64) -> Result<Option<Project>, StoreError> {
        let id = int(id, "project id")?;
        self.db.read(&|conn| {
            conn.query(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?1"), std::slice::from_ref(&id))?
                .first()
                .map(project_of)
                .transpose()
        })
    }

    /// A new project with the next free id; `Conflict` when the token is taken.
    pub fn create_project(&self, name: &str, token: &str) -> Result<Project, StoreError> {
        self.db.write(&|conn| {
            if let Some(owner) = token_owner(conn, token, None)? {
                return Err(StoreError::Conflict(format!("the token {token:?} belongs to project {owner}")));
            }
            let rows = conn.query("SELECT COALESCE(MAX(id), 0) + 1 FROM projects", &[])?;
            let id = rows.first().map_or(Ok(1), |row| row.int(0))?;
            let project = Project {
                id: unsigned(id, "project id")?,
                name: name.to_string(),
                token: token.to_string(),
                created_at: now(),
            };
            conn.execute(
                "INSERT INTO projects (id, name, token, created_at) VALUES (?1, ?2, ?3, ?4)",
                &[id.into(), name.into(), token.into(), project.created_at.as_str().into()],
            )?;
            Ok(project)
        })
    }

    /// Stores a key given in plain text (hashed), for these projects and scopes. `Conflict` when
    /// the key is already stored.
    pub fn add_api_key(
        &self,
        plaintext: &str,
        label: &str,
        projects: &[u64],
        scopes: &[String],
    ) -> Result<ApiKeyInfo, StoreError> {
        self.db.write(&|conn| {
            let (id, new) = insert_key(conn, plaintext, label, scopes)?;
            if !new {
                return Err(StoreError::Conflict(format!("this key is already stored (id {id})")));
            }
            for project in projects {
                grant(conn, &id, *project)?;
            }
            let rows =
                conn.query("SELECT id, label, mask, scopes, created_at FROM api_keys WHERE id = ?1", &[id.into()])?;
            let row = rows.first().ok_or_else(|| StoreError::Query("the new key vanished".into()))?;
            key_info(conn, row)
        })
    }

    /// The caller behind a key, if the key is known. (The key is hashed and the hash looked up:
    /// the same work whatever the key.)
    pub fn authenticate(&self, plaintext: &str) -> Result<Option<Principal>, StoreError> {
        let hash = key_hash(plaintext);
        self.db.read(&|conn| {
            let rows = conn.query("SELECT id, scopes FROM api_keys WHERE hash = ?1", &[hash.as_str().into()])?;
            let Some(row) = rows.first() else { return Ok(None) };
            let key_id = row.text(0)?;
            Ok(Some(Principal {
                projects: key_projects(conn, &key_id)?,
                scopes: from_json(&row.text(1)?, "a key's scopes")?,
                key_id,
            }))
        })
    }

    /// Every key (masked), oldest first.
    pub fn api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        self.db.read(&|conn| {
            let rows =
                conn.query("SELECT id, label, mask, scopes, created_at FROM api_keys ORDER BY created_at, id", &[])?;
            rows.iter().map(|row| key_info(conn, row)).collect()
        })
    }

    /// Deletes a key; false when there was none.
    pub fn delete_api_key(&self, id: &str) -> Result<bool, StoreError> {
        self.db.write(&|conn| {
            conn.execute("DELETE FROM api_key_projects WHERE key_id = ?1", &[id.into()])?;
            Ok(conn.execute("DELETE FROM api_keys WHERE id = ?1", &[id.into()])? > 0)
        })
    }

    /// Inserts or replaces a function (by id). Secret inputs (per `inputs_schema`) are sealed.
    /// A replacement keeps the stored `created_at`; `Conflict` when the id belongs to a function
    /// of another project.
    pub fn save_function(&self, function: &HogFunction) -> Result<(), StoreError> {
        let inputs = self.sealer.seal_inputs(&function.id, &function.inputs_schema, &function.inputs)?;
        let params = vec![
            function.id.as_str().into(),
            int(function.project_id, "project id")?,
            function.kind.as_str().into(),
            function.name.as_str().into(),
            function.description.as_str().into(),
            Param::Int(function.enabled.into()),
            function.template_id.clone().map_or(Param::NullText, Param::Text),
            function.hog.as_str().into(),
            to_json(&function.bytecode, "bytecode")?.into(),
            to_json(&function.inputs_schema, "inputs_schema")?.into(),
            to_json(&inputs, "inputs")?.into(),
            to_json(&function.filters, "filters")?.into(),
            Param::Int(function.execution_order.into()),
            function.created_at.as_str().into(),
            function.updated_at.as_str().into(),
        ];
        let id = function.id.as_str();
        self.db.write(&|conn| {
            let changed = conn.execute(
                &format!(
                    "INSERT INTO hog_functions ({FUNCTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                     ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
                     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, name = excluded.name, \
                     description = excluded.description, enabled = excluded.enabled, \
                     template_id = excluded.template_id, hog = excluded.hog, bytecode = excluded.bytecode, \
                     inputs_schema = excluded.inputs_schema, inputs = excluded.inputs, filters = excluded.filters, \
                     execution_order = excluded.execution_order, updated_at = excluded.updated_at \
                     WHERE hog_functions.project_id = excluded.project_id"
                ),
                &params,
            )?;
            if changed == 0 {
                return Err(StoreError::Conflict(format!("function id {id} belongs to another project")));
            }
            Ok(())
        })
    }

    fn function_of(&self, row: &Row) -> Result<HogFunction, StoreError> {
        let id = row.text(0)?;
        let inputs_schema: Value = from_json(&row.text(9)?, "inputs_schema")?;
        let sealed: Map<String, Value> = from_json(&row.text(10)?, "inputs")?;
        let inputs = self.sealer.open_inputs(&id, &inputs_schema, sealed)?;
        Ok(HogFunction {
            project_id: unsigned(row.int(1)?, "project id")?,
            kind: row.text(2)?,
            name: row.text(3)?,
            description: row.text(4)?,
            enabled: row.int(5)? != 0,
            template_id: row.opt_text(6)?,
            hog: row.text(7)?,
            bytecode: from_json(&row.text(8)?, "bytecode")?,
            inputs_schema,
            inputs,
            filters: from_json(&row.text(11)?, "filters")?,
            execution_order: i32::try_from(row.int(12)?)
                .map_err(|_| StoreError::Corrupt("execution_order beyond 32 bits".into()))?,
            created_at: row.text(13)?,
            updated_at: row.text(14)?,
            id,
        })
    }

    /// One function of a project, secrets opened.
    pub fn function(&self, project_id: u64, id: &str) -> Result<Option<HogFunction>, StoreError> {
        let project = int(project_id, "project id")?;
        let rows = self.db.read(&|conn| {
            conn.query(
                &format!("SELECT {FUNCTION_COLUMNS} FROM hog_functions WHERE project_id = ?1 AND id = ?2"),
                &[project.clone(), id.into()],
            )
        })?;
        rows.first().map(|row| self.function_of(row)).transpose()
    }

    /// A function by id alone, whatever its project (for public addresses such as source
    /// webhooks, where the id is the address), secrets opened.
    pub fn function_by_id(&self, id: &str) -> Result<Option<HogFunction>, StoreError> {
        let rows = self.db.read(&|conn| {
            conn.query(&format!("SELECT {FUNCTION_COLUMNS} FROM hog_functions WHERE id = ?1"), &[id.into()])
        })?;
        rows.first().map(|row| self.function_of(row)).transpose()
    }

    /// The functions of one project, or of all projects; ordered by project, execution order,
    /// creation time (then id).
    pub fn functions(&self, project_id: Option<u64>) -> Result<Vec<HogFunction>, StoreError> {
        let project = project_id.map(|p| int(p, "project id")).transpose()?;
        let rows = self.db.read(&|conn| match &project {
            Some(project) => conn.query(
                &format!(
                    "SELECT {FUNCTION_COLUMNS} FROM hog_functions WHERE project_id = ?1 \
                     ORDER BY project_id, execution_order, created_at, id"
                ),
                std::slice::from_ref(project),
            ),
            None => conn.query(
                &format!(
                    "SELECT {FUNCTION_COLUMNS} FROM hog_functions ORDER BY project_id, execution_order, created_at, id"
                ),
                &[],
            ),
        })?;
        rows.iter().map(|row| self.function_of(row)).collect()
    }

    /// Deletes a function (its logs and metrics stay until trimmed); false when there was none.
    pub fn delete_function(&self, project_id: u64, id: &str) -> Result<bool, StoreError> {
        let project = int(project_id, "project id")?;
        self.db.write(&|conn| {
            Ok(conn.execute(
                "DELETE FROM hog_functions WHERE project_id = ?1 AND id = ?2",
                &[project.clone(), id.into()],
            )? > 0)
        })
    }

    /// Appends log lines; keeps at most the newest `max_per_function` lines per function (newest
    /// by insertion). Timestamps are stored as UTC with milliseconds.
    pub fn append_logs(&self, logs: &[FunctionLog], max_per_function: usize) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(logs.len());
        let mut touched = BTreeSet::new();
        for log in logs {
            let project = int(log.project_id, "project id")?;
            rows.push(vec![
                project.clone(),
                log.function_id.as_str().into(),
                canonical_time(&log.timestamp).into(),
                log.level.as_str().into(),
                log.invocation_id.as_str().into(),
                log.message.as_str().into(),
            ]);
            touched.insert((log.project_id, log.function_id.as_str()));
        }
        let keep = i64::try_from(max_per_function).unwrap_or(i64::MAX);
        self.db.write(&|conn| {
            for row in &rows {
                conn.execute(
                    &format!("INSERT INTO function_logs ({LOG_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                    row,
                )?;
            }
            for (project, function) in &touched {
                let project = int(*project, "project id")?;
                if keep == 0 {
                    conn.execute(
                        "DELETE FROM function_logs WHERE project_id = ?1 AND function_id = ?2",
                        &[project, (*function).into()],
                    )?;
                    continue;
                }
                // The id of the oldest line kept; everything older goes.
                let nth = conn.query(
                    "SELECT id FROM function_logs WHERE project_id = ?1 AND function_id = ?2 \
                     ORDER BY id DESC LIMIT 1 OFFSET ?3",
                    &[project.clone(), (*function).into(), Param::Int(keep - 1)],
                )?;
                if let Some(row) = nth.first() {
                    conn.execute(
                        "DELETE FROM function_logs WHERE project_id = ?1 AND function_id = ?2 AND id < ?3",
                        &[project, (*function).into(), Param::Int(row.int(0)?)],
                    )?;
                }
            }
            Ok(())
        })
    }

    /// A function's newest log lines first, at most `limit`, older than `before` (an RFC 3339
    /// timestamp) when given.
    pub fn logs(
        &self,
        project_id: u64,
        function_id: &str,
        limit: usize,
        before: Option<&str>,
    ) -> Result<Vec<FunctionLog>, StoreError> {
        let project = int(project_id, "project id")?;
        let limit = Param::Int(i64::try_from(limit).unwrap_or(i64::MAX));
        let before = before.map(canonical_time);
        let rows = self.db.read(&|conn| match &before {
            Some(before) => conn.query(
                &format!(
                    "SELECT {LOG_COLUMNS} FROM function_logs WHERE project_id = ?1 AND function_id = ?2 \
                     AND timestamp < ?3 ORDER BY timestamp DESC, id DESC LIMIT ?4"
                ),
                &[project.clone(), function_id.into(), before.as_str().into(), limit.clone()],
            ),
            None => conn.query(
                &format!(
                    "SELECT {LOG_COLUMNS} FROM function_logs WHERE project_id = ?1 AND function_id = ?2 \
                     ORDER BY timestamp DESC, id DESC LIMIT ?3"
                ),
                &[project.clone(), function_id.into(), limit.clone()],
            ),
        })?;
        rows.iter().map(log_of).collect()
    }

    /// Adds the deltas to their hourly counters.
    pub fn add_metrics(&self, deltas: &[MetricDelta]) -> Result<(), StoreError> {
        let rows = deltas
            .iter()
            .map(|d| {
                Ok(vec![
                    int(d.project_id, "project id")?,
                    d.function_id.as_str().into(),
                    d.metric.as_str().into(),
                    canonical_bucket(&d.bucket).into(),
                    int(d.count, "metric count")?,
                ])
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        if rows.is_empty() {
            return Ok(());
        }
        self.db.write(&|conn| {
            for row in &rows {
                conn.execute(
                    "INSERT INTO function_metrics (project_id, function_id, metric, bucket, count) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (project_id, function_id, metric, bucket) \
                     DO UPDATE SET count = function_metrics.count + excluded.count",
                    row,
                )?;
            }
            Ok(())
        })
    }

    /// A function's counters from `after` (inclusive, RFC 3339) on, ordered by bucket and metric.
    pub fn metrics(&self, project_id: u64, function_id: &str, after: &str) -> Result<Vec<MetricDelta>, StoreError> {
        let project = int(project_id, "project id")?;
        let after = canonical_bucket(after);
        let rows = self.db.read(&|conn| {
            conn.query(
                "SELECT project_id, function_id, metric, bucket, count FROM function_metrics \
                 WHERE project_id = ?1 AND function_id = ?2 AND bucket >= ?3 ORDER BY bucket, metric",
                &[project.clone(), function_id.into(), after.as_str().into()],
            )
        })?;
        rows.iter()
            .map(|row| {
                Ok(MetricDelta {
                    project_id: unsigned(row.int(0)?, "project id")?,
                    function_id: row.text(1)?,
                    metric: row.text(2)?,
                    bucket: row.text(3)?,
                    count: unsigned(row.int(4)?, "metric count")?,
                })
            })
            .collect()
    }

    /// Inserts or replaces a live aggregate definition.
    pub fn save_aggregate(&self, aggregate: &StoredAggregate) -> Result<(), StoreError> {
        let params = [
            int(aggregate.project_id, "project id")?,
            aggregate.id.as_str().into(),
            to_json(&aggregate.definition, "the aggregate definition")?.into(),
        ];
        self.db.write(&|conn| {
            conn.execute(
                "INSERT INTO live_aggregates (project_id, id, definition) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (project_id, id) DO UPDATE SET definition = excluded.definition",
                &params,
            )?;
            Ok(())
        })
    }

    /// Every stored live aggregate definition, by project and id.
    pub fn aggregates(&self) -> Result<Vec<StoredAggregate>, StoreError> {
        let rows = self.db.read(&|conn| {
            conn.query("SELECT project_id, id, definition FROM live_aggregates ORDER BY project_id, id", &[])
        })?;
        rows.iter()
            .map(|row| {
                Ok(StoredAggregate {
                    project_id: unsigned(row.int(0)?, "project id")?,
                    id: row.text(1)?,
                    definition: from_json(&row.text(2)?, "an aggregate definition")?,
                })
            })
            .collect()
    }

    /// Deletes one; false when there was none.
    pub fn delete_aggregate(&self, project_id: u64, id: &str) -> Result<bool, StoreError> {
        let project = int(project_id, "project id")?;
        self.db.write(&|conn| {
            Ok(conn.execute(
                "DELETE FROM live_aggregates WHERE project_id = ?1 AND id = ?2",
                &[project.clone(), id.into()],
            )? > 0)
        })
    }
}
