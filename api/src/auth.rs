//! `Authorization: Bearer <personal API key>` on every `/api` route. A key sees only its own
//! projects: any other project id answers 404, exactly like one that does not exist. Capture
//! tokens (`phc_…`) are not API keys and are refused.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::{blocking, ApiError};
use crate::store::Principal;
use crate::ApiState;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Fails with 404 unless the key may use `project`.
    pub fn project(&self, project: u64) -> Result<(), ApiError> {
        if self.0.projects.contains(&project) {
            Ok(())
        } else {
            Err(ApiError::not_found(format!("project {project} not found")))
        }
    }

    /// Fails with 403 unless the key has `scope` (`hog_function:write`, …).
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.0.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(scope.to_string()))
        }
    }

    /// Both checks, project first (so a foreign project is a 404 whatever the scopes).
    pub fn check(&self, project: u64, scope: &str) -> Result<(), ApiError> {
        self.project(project)?;
        self.require(scope)
    }
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Caller, ApiError> {
        let header = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let Some(value) = header else {
            return Err(ApiError::Unauthorized("send a personal API key: `Authorization: Bearer phx_...`".into()));
        };
        let key = match value.split_once(' ') {
            Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim().to_string(),
            _ => {
                return Err(ApiError::Unauthorized(
                    "the Authorization header must be `Bearer <personal API key>`".into(),
                ))
            }
        };
        if key.is_empty() {
            return Err(ApiError::Unauthorized("the Authorization header has an empty key".into()));
        }
        if key.starts_with("phc_") {
            return Err(ApiError::Unauthorized(
                "this is a project capture token: it can only send events; use a personal API key (phx_...)".into(),
            ));
        }
        let store = state.store.clone();
        let principal = blocking(move || Ok(store.authenticate(&key)?)).await?;
        match principal {
            Some(p) => Ok(Caller(p)),
            None => Err(ApiError::Unauthorized("this API key is not valid".into())),
        }
    }
}
