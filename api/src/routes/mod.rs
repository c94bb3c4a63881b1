//! The `/api` routes, one file per area, and the OpenAPI description built from their
//! annotations (`GET /api/schema`).

pub mod compile;
pub mod dead_letters;
pub mod functions;
pub mod invocations;
pub mod live;
pub mod projects;
pub mod query;
pub mod templates;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ApiError;
use crate::ApiState;

/// Largest request body on `/api`, bytes.
pub const MAX_BODY_BYTES: usize = 2 << 20;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("phx_...").build()),
        );
    }
}

/// The OpenAPI description of every route.
#[derive(OpenApi)]
#[openapi(
    info(title = "hogpipe API", description = "PostHog-compatible REST and query API of hogpipe. Every route needs `Authorization: Bearer <personal API key>`."),
    paths(
        projects::list, projects::get,
        functions::create, functions::list, functions::get, functions::update, functions::delete,
        functions::logs, functions::metrics, invocations::invoke,
        templates::list, templates::get, compile::compile,
        dead_letters::list, dead_letters::get, dead_letters::replay, dead_letters::replay_function, dead_letters::discard,
        query::query,
        live::rows, live::definitions, live::define, live::undefine,
        crate::webhooks::receive,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// `GET /api/schema`: the OpenAPI 3 description (JSON).
async fn schema() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such API route (see GET /api/schema)")
}

/// Every `/api` route.
pub fn router(state: Arc<ApiState>) -> Router {
    let api = Router::new()
        .route("/api/projects", get(projects::list))
        .route("/api/projects/{project_id}", get(projects::get))
        .route("/api/projects/{project_id}/hog_functions", get(functions::list).post(functions::create))
        .route(
            "/api/projects/{project_id}/hog_functions/{id}",
            get(functions::get).patch(functions::update).delete(functions::delete),
        )
        .route("/api/projects/{project_id}/hog_functions/{id}/invocations", post(invocations::invoke))
        .route("/api/projects/{project_id}/hog_functions/{id}/logs", get(functions::logs))
        .route("/api/projects/{project_id}/hog_functions/{id}/metrics", get(functions::metrics))
        .route("/api/projects/{project_id}/hog_functions/{id}/dead_letters/replay", post(dead_letters::replay_function))
        .route("/api/projects/{project_id}/dead_letters", get(dead_letters::list))
        .route("/api/projects/{project_id}/dead_letters/{id}", get(dead_letters::get).delete(dead_letters::discard))
        .route("/api/projects/{project_id}/dead_letters/{id}/replay", post(dead_letters::replay))
        .route("/api/projects/{project_id}/query", post(query::query))
        .route("/api/projects/{project_id}/live/{aggregate}", get(live::rows))
        .route("/api/projects/{project_id}/live_aggregates", get(live::definitions).post(live::define))
        .route("/api/projects/{project_id}/live_aggregates/{aggregate}", axum::routing::delete(live::undefine))
        .route("/api/hog_function_templates", get(templates::list))
        .route("/api/hog_function_templates/{id}", get(templates::get))
        .route("/api/hog/compile", post(compile::compile))
        .route("/api/schema", get(schema))
        .route("/public/webhooks/{id}", post(crate::webhooks::receive))
        .route("/api/{*rest}", axum::routing::any(not_found))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    api.with_state(state)
}
