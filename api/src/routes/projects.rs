//! `/api/projects`: the projects the caller's key may use.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::store::Project;
use crate::ApiState;

/// A project (PostHog's team).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectOut {
    /// Project id.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// The capture token SDKs send (it can only send events).
    pub api_token: String,
    /// RFC 3339.
    pub created_at: String,
}

/// The projects of a key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    /// How many.
    pub count: usize,
    /// The projects.
    pub results: Vec<ProjectOut>,
}

fn out(p: Project) -> ProjectOut {
    ProjectOut { id: p.id, name: p.name, api_token: p.token, created_at: p.created_at }
}

/// Lists the projects the key may use.
#[utoipa::path(get, path = "/api/projects", tag = "projects",
    responses((status = 200, body = ProjectList), (status = 401)),
    security(("bearer" = [])))]
pub async fn list(State(state): State<Arc<ApiState>>, caller: Caller) -> Result<Json<ProjectList>, ApiError> {
    caller.require("project:read")?;
    let store = state.store.clone();
    let all = blocking(move || Ok(store.projects()?)).await?;
    let results: Vec<ProjectOut> = all.into_iter().filter(|p| caller.0.projects.contains(&p.id)).map(out).collect();
    Ok(Json(ProjectList { count: results.len(), results }))
}

/// One project.
#[utoipa::path(get, path = "/api/projects/{project_id}", tag = "projects",
    params(("project_id" = u64, Path, description = "Project id")),
    responses((status = 200, body = ProjectOut), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(project): Path<u64>,
) -> Result<Json<ProjectOut>, ApiError> {
    caller.check(project, "project:read")?;
    let store = state.store.clone();
    let p = blocking(move || Ok(store.project(project)?)).await?;
    p.map(|p| Json(out(p))).ok_or_else(|| ApiError::not_found(format!("project {project} not found")))
}
