//! Dead letters of a project's destinations: deliveries that exhausted their retries.
//! `GET /api/projects/{project}/dead_letters[?function_id=]`, `GET …/dead_letters/{id}`,
//! `POST …/dead_letters/{id}/replay`, `POST …/hog_functions/{fid}/dead_letters/replay` (all of a
//! function), `DELETE …/dead_letters/{id}`. Requests are shown with secret input values and
//! `Authorization` headers replaced by `***`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use hogpipe_destinations::engine::{DeadLetter, Engine};
use hogpipe_destinations::http::HttpRequest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::ApiState;

/// A dead letter as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterOut {
    /// Id (for replay and delete).
    pub id: i64,
    /// The destination function.
    pub function_id: String,
    /// The last request, secrets masked.
    #[schema(value_type = Object)]
    pub request: Value,
    /// Attempts made.
    pub attempts: u32,
    /// The last error (`HTTP 500: …` or a network error).
    pub error: String,
    /// The last HTTP status, if any.
    pub status: Option<u16>,
    /// RFC 3339: first queued.
    pub created_at: String,
    /// RFC 3339: gave up.
    pub failed_at: String,
}

/// Dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterList {
    /// How many.
    pub count: usize,
    /// Oldest first.
    pub results: Vec<DeadLetterOut>,
}

/// Filter of the list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeadLetterQuery {
    /// Only this function's.
    pub function_id: Option<String>,
}

fn engine(state: &ApiState) -> Result<Arc<Engine>, ApiError> {
    state
        .engine
        .clone()
        .ok_or_else(|| ApiError::Unavailable("the delivery engine is off ([dataflow] enabled = false)".into()))
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn mask(request: &HttpRequest, secrets: &[String]) -> Value {
    let hide = |s: &str| -> String {
        let mut out = s.to_string();
        for secret in secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    };
    let headers: Vec<Value> = request
        .headers
        .iter()
        .map(|(k, v)| {
            let value = if k.eq_ignore_ascii_case("authorization") { "***".to_string() } else { hide(v) };
            json!([k, value])
        })
        .collect();
    json!({"method": request.method, "url": hide(&request.url), "headers": headers, "body": request.body.as_deref().map(hide)})
}

/// The secret input values of a project's stored functions, to mask them.
fn secrets(state: &ApiState, project: u64) -> Result<Vec<String>, ApiError> {
    Ok(state.store.functions(Some(project))?.iter().flat_map(crate::routes::functions::secret_values).collect())
}

fn out(d: DeadLetter, secrets: &[String]) -> DeadLetterOut {
    DeadLetterOut {
        id: d.id,
        request: mask(&d.request, secrets),
        function_id: d.function_id,
        attempts: d.attempts,
        error: d.error.to_string(),
        status: d.error.status,
        created_at: time(d.created_at_ms),
        failed_at: time(d.failed_at_ms),
    }
}

/// Lists a project's dead letters.
#[utoipa::path(get, path = "/api/projects/{project_id}/dead_letters", tag = "dead_letters",
    params(("project_id" = u64, Path, description = "Project id"), DeadLetterQuery),
    responses((status = 200, body = DeadLetterList), (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(project): Path<u64>,
    Query(q): Query<DeadLetterQuery>,
) -> Result<Json<DeadLetterList>, ApiError> {
    caller.check(project, "dead_letter:read")?;
    let engine = engine(&state)?;
    let results = blocking(move || {
        let secrets = secrets(&state, project)?;
        let all = engine.dead_letters(q.function_id.as_deref()).map_err(ApiError::internal)?;
        Ok(all.into_iter().filter(|d| d.team_id == project).map(|d| out(d, &secrets)).collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(DeadLetterList { count: results.len(), results }))
}

async fn find(state: &Arc<ApiState>, project: u64, id: i64) -> Result<DeadLetter, ApiError> {
    let engine = engine(state)?;
    let found = blocking(move || engine.dead_letter(id).map_err(ApiError::internal)).await?;
    found
        .filter(|d| d.team_id == project)
        .ok_or_else(|| ApiError::not_found(format!("no dead letter {id} in project {project}")))
}

/// One dead letter.
#[utoipa::path(get, path = "/api/projects/{project_id}/dead_letters/{id}", tag = "dead_letters",
    params(("project_id" = u64, Path, description = "Project id"), ("id" = i64, Path, description = "Dead letter id")),
    responses((status = 200, body = DeadLetterOut), (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, id)): Path<(u64, i64)>,
) -> Result<Json<DeadLetterOut>, ApiError> {
    caller.check(project, "dead_letter:read")?;
    let d = find(&state, project, id).await?;
    let s = state.clone();
    let secrets = blocking(move || secrets(&s, project)).await?;
    Ok(Json(out(d, &secrets)))
}

/// Queues a dead letter again (its retries start over).
#[utoipa::path(post, path = "/api/projects/{project_id}/dead_letters/{id}/replay", tag = "dead_letters",
    params(("project_id" = u64, Path, description = "Project id"), ("id" = i64, Path, description = "Dead letter id")),
    responses((status = 202, description = "Queued: `{\"job_id\": n}`"), (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn replay(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, id)): Path<(u64, i64)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.check(project, "dead_letter:write")?;
    find(&state, project, id).await?;
    let engine = engine(&state)?;
    let job = blocking(move || engine.replay(id).map_err(ApiError::internal)).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"job_id": job}))))
}

/// Queues every dead letter of a function again.
#[utoipa::path(post, path = "/api/projects/{project_id}/hog_functions/{id}/dead_letters/replay", tag = "dead_letters",
    params(("project_id" = u64, Path, description = "Project id"), ("id" = String, Path, description = "Function id")),
    responses((status = 202, description = "Queued: `{\"replayed\": n}`"), (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn replay_function(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, function)): Path<(u64, String)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.check(project, "dead_letter:write")?;
    let engine = engine(&state)?;
    let s = state.clone();
    let replayed = blocking(move || {
        let owned = s.store.function(project, &function)?.is_some()
            || s.deployment.as_ref().is_some_and(|d| d.is_config_function(&function))
                && engine
                    .dead_letters(Some(&function))
                    .map_err(ApiError::internal)?
                    .iter()
                    .all(|d| d.team_id == project);
        if !owned {
            return Err(ApiError::not_found(format!("no function {function:?} in project {project}")));
        }
        engine.replay_all(&function).map_err(ApiError::internal)
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"replayed": replayed}))))
}

/// Deletes a dead letter without replaying it.
#[utoipa::path(delete, path = "/api/projects/{project_id}/dead_letters/{id}", tag = "dead_letters",
    params(("project_id" = u64, Path, description = "Project id"), ("id" = i64, Path, description = "Dead letter id")),
    responses((status = 204), (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn discard(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project, id)): Path<(u64, i64)>,
) -> Result<StatusCode, ApiError> {
    caller.check(project, "dead_letter:write")?;
    find(&state, project, id).await?;
    let engine = engine(&state)?;
    blocking(move || engine.discard(id).map_err(ApiError::internal)).await?;
    Ok(StatusCode::NO_CONTENT)
}
