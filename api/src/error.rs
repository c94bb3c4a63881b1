//! One error type for every handler. 4xx bodies say exactly what to fix, in PostHog's shape
//! (`{type, code, detail, attr}`); 5xx bodies never carry internals (the log gets the detail).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No or an unknown API key.
    #[error("{0}")]
    Unauthorized(String),
    /// The key lacks a scope.
    #[error("this API key lacks the scope `{0}`")]
    Forbidden(String),
    /// Nothing there, or not the caller's (the same answer, so other projects stay invisible).
    #[error("{0}")]
    NotFound(String),
    /// A field is wrong: `attr` names it.
    #[error("{detail}")]
    Invalid {
        /// The field path (`inputs.url`, `query.query`), if one field is to blame.
        attr: Option<String>,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// Hog that does not compile: a 400 listing each diagnostic with line, column and message.
    #[error("the Hog code does not compile")]
    Compile {
        /// The field holding the code (`hog`, `filters`).
        attr: String,
        /// `[{line, column, message, code, …}]`.
        diagnostics: Value,
    },
    /// A conflict with stored state.
    #[error("{0}")]
    Conflict(String),
    /// The feature is off in this deployment (no warehouse, no dataflow).
    #[error("{0}")]
    Unavailable(String),
    /// A query ran too long or returned too much.
    #[error("{0}")]
    QueryFailed(String),
    /// Something broke on our side; the message goes to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 about one field.
    pub fn invalid(attr: impl Into<String>, detail: impl Into<String>) -> ApiError {
        ApiError::Invalid { attr: Some(attr.into()), detail: detail.into() }
    }

    /// A 404 for a missing object.
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::NotFound(what.into())
    }

    /// A 500; `detail` is logged, not returned.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        ApiError::Internal(detail.to_string())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Invalid { .. } | ApiError::Compile { .. } | ApiError::QueryFailed(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Unauthorized(detail) => {
                json!({"type": "authentication_error", "code": "not_authenticated", "detail": detail, "attr": null})
            }
            ApiError::Forbidden(_) => {
                json!({"type": "authentication_error", "code": "permission_denied", "detail": self.to_string(), "attr": null})
            }
            ApiError::NotFound(detail) => {
                json!({"type": "invalid_request", "code": "not_found", "detail": detail, "attr": null})
            }
            ApiError::Invalid { attr, detail } => {
                json!({"type": "validation_error", "code": "invalid_input", "detail": detail, "attr": attr})
            }
            ApiError::Compile { attr, diagnostics } => json!({
                "type": "validation_error", "code": "invalid_hog", "detail": "the Hog code does not compile",
                "attr": attr, "diagnostics": diagnostics,
            }),
            ApiError::Conflict(detail) => {
                json!({"type": "validation_error", "code": "conflict", "detail": detail, "attr": null})
            }
            ApiError::Unavailable(detail) => {
                json!({"type": "server_error", "code": "unavailable", "detail": detail, "attr": null})
            }
            ApiError::QueryFailed(detail) => {
                json!({"type": "validation_error", "code": "query_failed", "detail": detail, "attr": "query"})
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "API request failed");
                json!({"type": "server_error", "code": "error", "detail": "internal error; the server log has the details", "attr": null})
            }
        };
        (status, Json(body)).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        match e {
            crate::store::StoreError::Conflict(m) => ApiError::Conflict(m),
            other => ApiError::internal(other),
        }
    }
}

/// Runs blocking store work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?
}
