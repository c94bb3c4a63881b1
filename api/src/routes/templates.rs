//! `/api/hog_function_templates`: the destination templates (`destinations/templates/`).

use axum::extract::Path;
use axum::Json;
use hogpipe_destinations::template::{template, templates, Template};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;

/// A template, in PostHog's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateOut {
    /// `template-webhook`, …
    pub id: String,
    /// Display name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// `destination`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Categories.
    pub category: Vec<String>,
    /// `stable`, `beta`, `alpha`.
    #[schema(value_type = String)]
    pub status: Value,
    /// Hog source.
    pub hog: String,
    /// Inputs.
    #[schema(value_type = Vec<Object>)]
    pub inputs_schema: Value,
}

/// The catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// How many.
    pub count: usize,
    /// The templates, by id.
    pub results: Vec<TemplateOut>,
}

fn out(t: &Template) -> TemplateOut {
    TemplateOut {
        id: t.id.clone(),
        name: t.name.clone(),
        description: t.description.clone(),
        kind: t.kind.as_str().to_string(),
        category: t.category.clone(),
        status: serde_json::to_value(t.status).unwrap_or(Value::Null),
        hog: t.code.clone(),
        inputs_schema: serde_json::to_value(&t.inputs_schema).unwrap_or(Value::Null),
    }
}

/// Every template.
#[utoipa::path(get, path = "/api/hog_function_templates", tag = "hog_functions",
    responses((status = 200, body = TemplateList), (status = 401)),
    security(("bearer" = [])))]
pub async fn list(_caller: Caller) -> Json<TemplateList> {
    let results: Vec<TemplateOut> = templates().iter().map(out).collect();
    Json(TemplateList { count: results.len(), results })
}

/// One template.
#[utoipa::path(get, path = "/api/hog_function_templates/{id}", tag = "hog_functions",
    params(("id" = String, Path, description = "Template id")),
    responses((status = 200, body = TemplateOut), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn get(_caller: Caller, Path(id): Path<String>) -> Result<Json<TemplateOut>, ApiError> {
    template(&id).map(|t| Json(out(t))).ok_or_else(|| ApiError::not_found(format!("no template {id:?}")))
}
