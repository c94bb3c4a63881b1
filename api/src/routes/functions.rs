//! `/api/projects/{project}/hog_functions`: create (from a template id plus inputs, or from Hog),
//! list, get, update (`PATCH`, also to enable, disable or delete), delete; logs and metrics of
//! real invocations. Hog is compiled on save: a compile error is a 400 listing every diagnostic
//! with line, column and message. Secret inputs are never returned (`{"secret": true}` instead).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::deploy::{compile_function, compile_hog, schema_of, KINDS};
use crate::error::{blocking, ApiError};
use crate::store::HogFunction;
use crate::ApiState;

/// A function to create, or the fields to change (PostHog's request shape).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionBody {
    /// `destination` (default), `transformation` or `source_webhook`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Display name (default: the template's name).
    pub name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Make the function from this template (`template-webhook`, see `/api/hog_function_templates`).
    pub template_id: Option<String>,
    /// Hog source (required unless `template_id` is given).
    pub hog: Option<String>,
    /// Input schema (default: the template's).
    #[schema(value_type = Option<Vec<Object>>)]
    pub inputs_schema: Option<Value>,
    /// Inputs: `{"url": {"value": "https://…"}}`.
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<Map<String, Value>>,
    /// Which events: `{"events": [{"id": "$pageview"}], "properties": [{"key", "value", "operator", "type"}]}`.
    #[schema(value_type = Option<Object>)]
    pub filters: Option<Value>,
    /// Default true.
    pub enabled: Option<bool>,
    /// `true` deletes the function (PostHog's soft delete).
    pub deleted: Option<bool>,
    /// Position in the project's transformation chain (lower first).
    pub execution_order: Option<i32>,
    /// PostHog sends these back on update; accepted and ignored.
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub bytecode: Option<Value>,
    /// Accepted and ignored (read-only).
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub id: Option<Value>,
    /// Accepted and ignored (read-only).
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub created_at: Option<Value>,
    /// Accepted and ignored (read-only).
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub updated_at: Option<Value>,
    /// Accepted and ignored (read-only).
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub status: Option<Value>,
}

/// A function as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionOut {
    /// uuid.
    pub id: String,
    /// `destination`, `transformation` or `source_webhook`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Runs only when enabled.
    pub enabled: bool,
    /// Always false (deleted functions are gone).
    pub deleted: bool,
    /// Hog source.
    pub hog: String,
    /// Compiled bytecode.
    #[schema(value_type = Vec<Object>)]
    pub bytecode: Value,
    /// Input schema.
    #[schema(value_type = Vec<Object>)]
    pub inputs_schema: Value,
    /// Inputs; secret ones as `{"secret": true}`.
    #[schema(value_type = Object)]
    pub inputs: Map<String, Value>,
    /// Filters.
    #[schema(value_type = Object)]
    pub filters: Value,
    /// Position in the transformation chain.
    pub execution_order: i32,
    /// The template it came from.
    pub template_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Health as the watcher sees it: `{"state": "healthy" | "degraded" | "disabled", "reason"}`.
    #[schema(value_type = Object)]
    pub status: Value,
}

/// A page of functions.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionList {
    /// How many.
    pub count: usize,
    /// Always null (one page).
    #[schema(value_type = Option<String>)]
    pub next: Option<String>,
    /// Always null.
    #[schema(value_type = Option<String>)]
    pub previous: Option<String>,
    /// The functions.
    pub results: Vec<FunctionOut>,
}

fn secret_keys(schema: &Value) -> Vec<String> {
    schema
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e.get("secret").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|e| e.get("key").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The values of a function's secret inputs (strings of 4 characters or more), to mask them
/// wherever the API would show them.
pub fn secret_values(f: &HogFunction) -> Vec<String> {
    let mut out = Vec::new();
    for key in secret_keys(&f.inputs_schema) {
        let mut stack: Vec<&Value> = f.inputs.get(&key).and_then(|v| v.get("value")).into_iter().collect();
        while let Some(v) = stack.pop() {
            match v {
                Value::String(s) if s.chars().count() >= 4 => out.push(s.clone()),
                Value::Array(a) => stack.extend(a),
                Value::Object(o) => stack.extend(o.values()),
                _ => {}
            }
        }
    }
    out
}

/// The API's view of a stored function: secret inputs masked, health attached.
pub fn present(f: HogFunction, state: &ApiState) -> FunctionOut {
    let secrets = secret_keys(&f.inputs_schema);
    let inputs = f
        .inputs
        .into_iter()
        .map(|(k, v)| if secrets.contains(&k) { (k, json!({"secret": true})) } else { (k, v) })
        .collect();
    let status = match state.deployment.as_ref().and_then(|d| d.watcher()) {
        Some(w) => serde_json::to_value(w.health(&f.id)).unwrap_or(Value::Null),
        None => Value::Null,
    };
    FunctionOut {
        id: f.id,
        kind: f.kind,
        name: f.name,
        description: f.description,
        enabled: f.enabled,
        deleted: false,
        hog: f.hog,
        bytecode: f.bytecode,
        inputs_schema: f.inputs_schema,
        inputs,
        filters: f.filters,
        execution_order: f.execution_order,
        template_id: f.template_id,
        created_at: f.created_at,
        updated_at: f.updated_at,
        status,
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Applies `body` onto `f` (a new function or a stored one), compiles and validates it.
fn merge(mut f: HogFunction, body: FunctionBody, creating: bool) -> Result<HogFunction, ApiError> {
    if let Some(kind) = body.kind {
        if !KINDS.contains(&kind.as_str()) {
            return Err(ApiError::invalid("type", format!("unknown type {kind:?}: use {}", KINDS.join(", "))));
        }
        if !creating && kind != f.kind {
            return Err(ApiError::invalid("type", "the type of a function cannot change; create a new one"));
        }
        f.kind = kind;
    }
    if let Some(id) = body.template_id {
        if !creating && Some(&id) != f.template_id.as_ref() {
            return Err(ApiError::invalid("template_id", "the template of a function cannot change"));
        }
        let template = hogpipe_destinations::template::template(&id).ok_or_else(|| {
            ApiError::invalid("template_id", format!("no template {id:?} (see GET /api/hog_function_templates)"))
        })?;
        if template.kind.as_str() != f.kind {
            return Err(ApiError::invalid(
                "template_id",
                format!("template {id:?} makes a {} function, not a {}", template.kind.as_str(), f.kind),
            ));
        }
        if creating {
            f.hog = template.code.clone();
            f.inputs_schema = serde_json::to_value(&template.inputs_schema).map_err(ApiError::internal)?;
            f.name = template.name.clone();
            f.description = template.description.clone();
        }
        f.template_id = Some(id);
    }
    if let Some(name) = body.name {
        if name.trim().is_empty() {
            return Err(ApiError::invalid("name", "the name cannot be empty"));
        }
        f.name = name;
    }
    if let Some(d) = body.description {
        f.description = d;
    }
    if let Some(hog) = body.hog {
        f.hog = hog;
    }
    if let Some(schema) = body.inputs_schema {
        schema_of(&schema)?;
        f.inputs_schema = schema;
    }
    if let Some(inputs) = body.inputs {
        let secrets = secret_keys(&f.inputs_schema);
        let mut merged = Map::new();
        for (key, value) in inputs {
            let Value::Object(obj) = &value else {
                return Err(ApiError::invalid(format!("inputs.{key}"), "each input is an object `{\"value\": …}`"));
            };
            // `{"secret": true}` is what GET showed: keep the stored value.
            if obj.get("secret") == Some(&Value::Bool(true)) && !obj.contains_key("value") && secrets.contains(&key) {
                if let Some(old) = f.inputs.get(&key) {
                    merged.insert(key, old.clone());
                }
                continue;
            }
            if !obj.contains_key("value") {
                return Err(ApiError::invalid(format!("inputs.{key}"), "each input is an object `{\"value\": …}`"));
            }
            merged.insert(key, value);
        }
        f.inputs = merged;
    }
    if let Some(filters) = body.filters {
        f.filters = filters;
    }
    if let Some(enabled) = body.enabled {
        f.enabled = enabled;
    }
    if let Some(order) = body.execution_order {
        f.execution_order = order;
    }
    if f.hog.trim().is_empty() {
        return Err(ApiError::invalid("hog", "give the function's Hog code in `hog`, or a `template_id`"));
    }
    if f.name.trim().is_empty() {
        f.name = format!("{} {}", f.kind, &f.id[..8.min(f.id.len())]);
    }
    f.bytecode = compile_hog(&f.hog, "hog")?;
    f.updated_at = now();
    Ok(f)
}

async fn load(state: &Arc<ApiState>, project: u64, id: String) -> Result<HogFunction, ApiError> {
    let store = state.store.clone();
    let wanted = id.clone();
    blocking(move || Ok(store.function(project, &wanted)?))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no function {id:?} in project {project}")))
}

/// Compiles, stores and deploys.
async fn save(state: &Arc<ApiState>, f: HogFunction) -> Result<HogFunction, ApiError> {
    let compiled = compile_function(&f)?;
    let store = state.store.clone();
    let saved = f.clone();
    blocking(move || Ok(store.save_function(&saved)?)).await?;
    if let Some(d) = &state.deployment {
        d.apply(compiled, &f.id);
    }
    Ok(f)
}

/// Creates a function.
#[utoipa::path(post, path = "/api/projects/{project_id}/hog_functions", tag = "hog_functions",
    params(("project_id" = u64, Path, description = "Project id")),
    request_body = FunctionBody,
    responses((status = 201, body = FunctionOut), (status = 400, description = "Invalid input or Hog that does not compile"),
               (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(project): Path<u64>,
    Json(body): Json<FunctionBody>,
) -> Result<(StatusCode, Json<FunctionOut>), ApiError> {
    caller.check(project, "hog_function:write")?;
    let id = uuid::Uuid::now_v7().to_string();
    let at = now();
    let blank = HogFunction {
        id,
        project_id: project,
        kind: "destination".into(),
        name: String::new(),
        description: String::new(),
        enabled: true,
        template_id: None,
        hog: String::new(),
        bytecode: Value::Null,
        inputs_schema: json!([]),
        inputs: Map::new(),
        filters: json!({}),
        execution_order: 0,
        created_at: at.clone(),
        updated_at: at,
    };
    if body.deleted == Some(true) {
        return Err(ApiError::invalid("deleted", "a new function cannot be deleted"));
    }
    let f = merge(blank, body, true)?;
    let f = save(&state, f).await?;
    Ok((StatusCode::CREATED, Json(present(f, &state))))
}

/// Query of the function list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only this type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) functions.
    pub enabled: Option<bool>,
}

/// Lists a project's functions.
#[utoipa::path(get, path = "/api/projects/{project_id}/hog_functions", tag = "hog_functions",
    params(("project_id" = u64, Path, description = "Project id"), ListQuery),
    responses((status = 200, body = FunctionList), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(project): Path<u64>,
    Query(q): Query<ListQuery>,
) -> Result<Json<FunctionList>, ApiError> {
    caller.check(project, "hog_function:read")?;
    let store = state.store.clone();
    let all = blocking(move || Ok(store.functions(Some(project))?)).await?;
    let results: Vec<FunctionOut> = all
        .into_iter()
        .filter(|f| q.kind.as_ref().is_none_or(|k| &f.kind == k))
        .filter(|f| q.enabled.is_none_or(|e| f.enabled == e))
        .map(|f| present(f, &state))
        .collect();
    Ok(Json(FunctionList { count: results.len(), next: None, previous: None, results }))
}

/// One function.
#[utoipa::path(get, path = "/api/projects/{project_id}/hog_functions/{id}", tag = "hog_functions",
    params(("project_id" = u64, Path, description = "Project id"), ("id" = String, Path, description = "Function id")),
    responses((status = 200, body = FunctionOut), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, id)): Path<(u64, String)>,
) -> Result<Json<FunctionOut>, ApiError> {
    caller.check(project, "hog_function:read")?;
    let f = load(&state, project, id).await?;
    Ok(Json(present(f, &state)))
}

/// Changes a function: any field of the create body; `enabled` to enable or disable (enabling
/// also clears a health watcher's disable), `deleted: true` to delete.
#[utoipa::path(patch, path = "/api/projects/{project_id}/hog_functions/{id}", tag = "hog_functions",
    params(("project_id" = u64, Path, description = "Project id"), ("id" = String, Path, description = "Function id")),
    request_body = FunctionBody,
    responses((status = 200, body = FunctionOut), (status = 400), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, id)): Path<(u64, String)>,
    Json(body): Json<FunctionBody>,
) -> Result<Json<FunctionOut>, ApiError> {
    caller.check(project, "hog_function:write")?;
    let f = load(&state, project, id.clone()).await?;
    if body.deleted == Some(true) {
        remove(&state, project, &id).await?;
        let mut gone = present(f, &state);
        gone.deleted = true;
        return Ok(Json(gone));
    }
    let enabling = body.enabled == Some(true);
    let f = merge(f, body, false)?;
    let f = save(&state, f).await?;
    if enabling {
        if let Some(w) = state.deployment.as_ref().and_then(|d| d.watcher()) {
            w.enable(&f.id);
        }
    }
    Ok(Json(present(f, &state)))
}

async fn remove(state: &Arc<ApiState>, project: u64, id: &str) -> Result<(), ApiError> {
    let store = state.store.clone();
    let wanted = id.to_string();
    let existed = blocking(move || Ok(store.delete_function(project, &wanted)?)).await?;
    if !existed {
        return Err(ApiError::not_found(format!("no function {id:?} in project {project}")));
    }
    if let Some(d) = &state.deployment {
        d.remove(id);
    }
    Ok(())
}

/// Deletes a function (it stops at the next batch; deliveries already queued still run).
#[utoipa::path(delete, path = "/api/projects/{project_id}/hog_functions/{id}", tag = "hog_functions",
    params(("project_id" = u64, Path, description = "Project id"), ("id" = String, Path, description = "Function id")),
    responses((status = 204), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, id)): Path<(u64, String)>,
) -> Result<StatusCode, ApiError> {
    caller.check(project, "hog_function:write")?;
    remove(&state, project, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of the logs route.
#[derive(Debug, Deserialize, IntoParams)]
pub struct LogsQuery {
    /// At most this many lines (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Only lines older than this RFC 3339 time (to page back).
    pub before: Option<String>,
}

/// One log line.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogOut {
    /// RFC 3339.
    pub timestamp: String,
    /// `info`, `warn`, `error`, `debug`.
    pub level: String,
    /// The event (invocation) it came from.
    pub instance_id: String,
    /// The text.
    pub message: String,
}

/// A page of log lines, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogList {
    /// The lines.
    pub results: Vec<LogOut>,
}

/// The newest log lines of real invocations (persisted every second).
#[utoipa::path(get, path = "/api/projects/{project_id}/hog_functions/{id}/logs", tag = "hog_functions",
    params(("project_id" = u64, Path, description = "Project id"), ("id" = String, Path, description = "Function id"), LogsQuery),
    responses((status = 200, body = LogList), (status = 400), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn logs(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, id)): Path<(u64, String)>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<LogList>, ApiError> {
    caller.check(project, "hog_function:read")?;
    let known = state.deployment.as_ref().is_some_and(|d| d.is_config_function(&id));
    if !known {
        load(&state, project, id.clone()).await?;
    }
    if let Some(b) = &q.before {
        chrono::DateTime::parse_from_rfc3339(b)
            .map_err(|e| ApiError::invalid("before", format!("not an RFC 3339 time: {e}")))?;
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let store = state.store.clone();
    let rows = blocking(move || Ok(store.logs(project, &id, limit, q.before.as_deref())?)).await?;
    Ok(Json(LogList {
        results: rows
            .into_iter()
            .map(|l| LogOut {
                timestamp: l.timestamp,
                level: l.level,
                instance_id: l.invocation_id,
                message: l.message,
            })
            .collect(),
    }))
}

/// Query of the metrics route.
#[derive(Debug, Deserialize, IntoParams)]
pub struct MetricsQuery {
    /// From this RFC 3339 time (default: 24 hours ago).
    pub after: Option<String>,
}

/// Counters of a function per hour, and their totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsOut {
    /// Hour buckets: `{bucket, metric, count}`.
    #[schema(value_type = Vec<Object>)]
    pub results: Vec<Value>,
    /// Sums per metric over the range.
    #[schema(value_type = Object)]
    pub totals: Map<String, Value>,
}

/// Invocation counters: invocations, succeeded, failed, filtered, dropped, routed, and a
/// duration histogram (`duration_le_<ms>`), per hour.
#[utoipa::path(get, path = "/api/projects/{project_id}/hog_functions/{id}/metrics", tag = "hog_functions",
    params(("project_id" = u64, Path, description = "Project id"), ("id" = String, Path, description = "Function id"), MetricsQuery),
    responses((status = 200, body = MetricsOut), (status = 400), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn metrics(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, id)): Path<(u64, String)>,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<MetricsOut>, ApiError> {
    caller.check(project, "hog_function:read")?;
    let known = state.deployment.as_ref().is_some_and(|d| d.is_config_function(&id));
    if !known {
        load(&state, project, id.clone()).await?;
    }
    let after = match q.after {
        Some(a) => chrono::DateTime::parse_from_rfc3339(&a)
            .map_err(|e| ApiError::invalid("after", format!("not an RFC 3339 time: {e}")))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now() - chrono::Duration::hours(24),
    };
    let after = crate::persist::hour_bucket(after.timestamp_millis());
    let store = state.store.clone();
    let rows = blocking(move || Ok(store.metrics(project, &id, &after)?)).await?;
    let mut totals = Map::new();
    for r in &rows {
        let t = totals.entry(r.metric.clone()).or_insert(json!(0));
        *t = json!(t.as_u64().unwrap_or(0) + r.count);
    }
    Ok(Json(MetricsOut {
        results: rows.into_iter().map(|r| json!({"bucket": r.bucket, "metric": r.metric, "count": r.count})).collect(),
        totals,
    }))
}

/// `changes` applied to a stored function, compiled and checked (for test runs of unsaved edits).
pub fn apply_changes(f: HogFunction, changes: FunctionBody) -> Result<HogFunction, ApiError> {
    if changes.deleted == Some(true) {
        return Err(ApiError::invalid("configuration.deleted", "a test run cannot delete"));
    }
    merge(f, changes, false)
}
