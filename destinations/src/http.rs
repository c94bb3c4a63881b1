//! The contract between invocations and the delivery engine: the HTTP request a suspended Hog
//! function wants performed, the response it is resumed with, and what it wants next.

use serde::{Deserialize, Serialize};

/// A request made by Hog's `fetch(url, {method, headers, body})`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// Upper-case method (`POST` when the function gave none, as in HOG.md).
    pub method: String,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Headers in the order the function gave them.
    pub headers: Vec<(String, String)>,
    /// The body as sent: a dict body is serialized to JSON (and `content-type: application/json`
    /// is added when the function set none).
    pub body: Option<String>,
}

/// What the service answered (after the engine's retries of network errors, 5xx and 429).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// The body as text (the function sees it parsed as JSON when it is JSON).
    pub body: String,
}

/// What an invocation does next, after it started or was resumed.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// The function suspended on `fetch`: perform `request`, then resume `state` with the answer.
    Fetch {
        /// The request to perform.
        request: HttpRequest,
        /// The suspended invocation (VM state and context), opaque to the engine.
        state: Vec<u8>,
    },
    /// The function finished.
    Done {
        /// Its printed lines.
        logs: Vec<String>,
    },
    /// The function failed (threw, hit a limit, or an input could not be rendered).
    Failed {
        /// What went wrong, for the function's log.
        error: String,
        /// Its printed lines up to the failure.
        logs: Vec<String>,
    },
}

/// Resumes suspended invocations; implemented by [`crate::invoke`], called by the engine.
pub trait Resume: Send + Sync + 'static {
    /// Continues the invocation saved in `state` with the service's answer.
    fn resume(&self, state: &[u8], response: &HttpResponse) -> Next;
}
