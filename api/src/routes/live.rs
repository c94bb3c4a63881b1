//! Live aggregates: `GET /api/projects/{project}/live/{aggregate}` answers the current rows
//! (`?from=&to=` as RFC 3339 or milliseconds; default the last 24 hours), and
//! `/api/projects/{project}/live_aggregates` lists, defines (`POST`, the `[[aggregates]]` shape)
//! and deletes definitions. A new definition counts events from the moment it is added.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hogpipe_dataflow::live::{AggregateDef, Live};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::store::StoredAggregate;
use crate::ApiState;

fn live(state: &ApiState) -> Result<Arc<Live>, ApiError> {
    state
        .live
        .clone()
        .ok_or_else(|| ApiError::Unavailable("live aggregates are off: the dataflow is not running".into()))
}

fn time_ms(value: &str) -> Option<i64> {
    value.parse::<i64>().ok().or_else(|| chrono::DateTime::parse_from_rfc3339(value).ok().map(|t| t.timestamp_millis()))
}

/// One row of a live aggregate.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveRowOut {
    /// Bucket start, RFC 3339.
    pub bucket: String,
    /// Event name.
    pub event: String,
    /// Values of the group-by properties.
    pub groups: Vec<Option<String>>,
    /// The measure.
    pub value: f64,
    /// Events counted.
    pub count: u64,
}

/// The rows of one aggregate.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveOut {
    /// Aggregate id.
    pub aggregate: String,
    /// `count`, `unique_distinct_ids` or `sum`.
    pub measure: String,
    /// `minute`, `hour` or `day`.
    pub interval: String,
    /// Group-by properties.
    pub group_by: Vec<String>,
    /// Rows.
    pub results: Vec<LiveRowOut>,
}

/// The current rows of a live aggregate.
#[utoipa::path(get, path = "/api/projects/{project_id}/live/{aggregate}", tag = "live",
    params(("project_id" = u64, Path, description = "Project id"), ("aggregate" = String, Path, description = "Aggregate id"),
           ("from" = Option<String>, Query, description = "RFC 3339 or ms"), ("to" = Option<String>, Query, description = "RFC 3339 or ms")),
    responses((status = 200, body = LiveOut), (status = 400), (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn rows(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, aggregate)): Path<(u64, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<LiveOut>, ApiError> {
    caller.check(project, "live:read")?;
    let live = live(&state)?;
    let definition = live
        .registry()
        .get(&aggregate)
        .filter(|d| d.project_id == project)
        .ok_or_else(|| ApiError::not_found(format!("no live aggregate {aggregate:?} in project {project}")))?;
    let now = chrono::Utc::now().timestamp_millis();
    let parse = |name: &str, default: i64| -> Result<i64, ApiError> {
        match query.get(name) {
            None => Ok(default),
            Some(v) => time_ms(v).ok_or_else(|| {
                ApiError::invalid(name, format!("must be RFC 3339 or milliseconds since the epoch, got {v:?}"))
            }),
        }
    };
    let from = parse("from", now - 86_400_000)?;
    let to = parse("to", now + 60_000)?;
    let results = live
        .store()
        .query(&aggregate, from, to)
        .into_iter()
        .map(|r| LiveRowOut {
            bucket: r.bucket,
            event: r.event,
            groups: r.groups,
            value: r.value.as_f64(),
            count: r.count,
        })
        .collect();
    Ok(Json(LiveOut {
        aggregate,
        measure: definition.measure.name().to_string(),
        interval: definition.interval.name().to_string(),
        group_by: definition.group_by.clone(),
        results,
    }))
}

/// The definitions of a project.
#[utoipa::path(get, path = "/api/projects/{project_id}/live_aggregates", tag = "live",
    params(("project_id" = u64, Path, description = "Project id")),
    responses((status = 200, description = "`{results: [definition]}`"), (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn definitions(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(project): Path<u64>,
) -> Result<Json<Value>, ApiError> {
    caller.check(project, "live:read")?;
    let live = live(&state)?;
    let defs: Vec<AggregateDef> =
        live.registry().snapshot().definitions.iter().filter(|d| d.project_id == project).cloned().collect();
    Ok(Json(json!({"count": defs.len(), "results": defs})))
}

/// Defines (or replaces) a live aggregate: `{id, event?, measure, property?, group_by, interval}`.
#[utoipa::path(post, path = "/api/projects/{project_id}/live_aggregates", tag = "live",
    params(("project_id" = u64, Path, description = "Project id")),
    request_body(content = Object, description = "An `[[aggregates]]` entry as JSON (project_id is the path's)"),
    responses((status = 201, description = "The definition"), (status = 400), (status = 401), (status = 404), (status = 409), (status = 503)),
    security(("bearer" = [])))]
pub async fn define(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(project): Path<u64>,
    Json(mut body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.check(project, "live:write")?;
    let live = live(&state)?;
    let Some(obj) = body.as_object_mut() else {
        return Err(ApiError::invalid("body", "send the definition as a JSON object"));
    };
    obj.insert("project_id".into(), json!(project));
    let def: AggregateDef =
        serde_json::from_value(body.clone()).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    if let Some(existing) = live.registry().get(&def.id) {
        if existing.project_id != project {
            return Err(ApiError::Conflict(format!("the aggregate id {:?} is taken; choose another", def.id)));
        }
    }
    // Checked, then stored, then running: a definition that runs is always one the store has.
    def.validate().map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let stored = StoredAggregate {
        project_id: project,
        id: def.id.clone(),
        definition: serde_json::to_value(&def).map_err(ApiError::internal)?,
    };
    let store = state.store.clone();
    blocking(move || Ok(store.save_aggregate(&stored)?)).await?;
    live.registry().upsert(def.clone()).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    Ok((StatusCode::CREATED, Json(serde_json::to_value(&def).map_err(ApiError::internal)?)))
}

/// Deletes a definition defined through the API (its rows stop updating).
#[utoipa::path(delete, path = "/api/projects/{project_id}/live_aggregates/{aggregate}", tag = "live",
    params(("project_id" = u64, Path, description = "Project id"), ("aggregate" = String, Path, description = "Aggregate id")),
    responses((status = 204), (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn undefine(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, aggregate)): Path<(u64, String)>,
) -> Result<StatusCode, ApiError> {
    caller.check(project, "live:write")?;
    let live = live(&state)?;
    let store = state.store.clone();
    let id = aggregate.clone();
    let existed = blocking(move || Ok(store.delete_aggregate(project, &id)?)).await?;
    if !existed {
        return Err(ApiError::not_found(format!(
            "no live aggregate {aggregate:?} defined through the API in project {project}"
        )));
    }
    let _ = live.registry().remove(&aggregate);
    Ok(StatusCode::NO_CONTENT)
}
