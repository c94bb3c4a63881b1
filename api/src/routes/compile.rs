//! `POST /api/hog/compile`: Hog source to bytecode, or diagnostics (for editors).

use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::deploy::compile_hog;
use crate::error::ApiError;

/// Largest source accepted, bytes.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;

/// Source to compile.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompileBody {
    /// Hog source.
    pub hog: String,
}

/// Compiled bytecode.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompileOut {
    /// `["_H", 1, …]`.
    #[schema(value_type = Vec<Object>)]
    pub bytecode: Value,
}

/// Compiles Hog: 200 with bytecode, or 400 with `diagnostics: [{line, column, message, …}]`.
#[utoipa::path(post, path = "/api/hog/compile", tag = "hog",
    request_body = CompileBody,
    responses((status = 200, body = CompileOut), (status = 400, description = "Diagnostics"), (status = 401)),
    security(("bearer" = [])))]
pub async fn compile(_caller: Caller, Json(body): Json<CompileBody>) -> Result<Json<CompileOut>, ApiError> {
    if body.hog.len() > MAX_SOURCE_BYTES {
        return Err(ApiError::invalid("hog", format!("the source is larger than {MAX_SOURCE_BYTES} bytes")));
    }
    let bytecode =
        tokio::task::spawn_blocking(move || compile_hog(&body.hog, "hog")).await.map_err(ApiError::internal)??;
    Ok(Json(CompileOut { bytecode }))
}
