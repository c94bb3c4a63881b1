//! `POST /api/projects/{project}/query`, PostHog's query API: `{"query": {"kind": "HogQLQuery",
//! "query": "SELECT …"}}` runs SQL translated with the caller's team enforced on every table
//! (see `hogpipe_warehouse::hogql`) and answers `{columns, types, results}`; `TrendsQuery`,
//! `FunnelsQuery` and `RetentionQuery` run as insights (`hogpipe_warehouse::insights`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use hogpipe_warehouse::{hogql, insights, WarehouseError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{blocking, ApiError};
use crate::ApiState;

/// The request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct QueryBody {
    /// `{"kind": "HogQLQuery", "query": "SELECT …"}`, or a `TrendsQuery` / `FunnelsQuery` /
    /// `RetentionQuery` in PostHog's shape.
    #[schema(value_type = Object)]
    pub query: Value,
    /// Accepted for PostHog compatibility; every query runs fresh.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub refresh: Option<Value>,
    /// Accepted for PostHog compatibility.
    #[serde(default)]
    pub client_query_id: Option<String>,
    /// Accepted for PostHog compatibility.
    #[serde(default)]
    pub name: Option<String>,
}

/// A HogQL query's answer (insights answer in their own PostHog shapes).
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryOut {
    /// Column names.
    pub columns: Vec<String>,
    /// ClickHouse type of each column.
    pub types: Vec<String>,
    /// Rows.
    #[schema(value_type = Vec<Vec<Object>>)]
    pub results: Vec<Vec<Value>>,
    /// The query as sent.
    pub hogql: String,
}

/// A column type as the API reports it: without `LowCardinality(…)`, a storage choice of the
/// warehouse (event names are stored so) that changes nothing about the values.
fn public_type(t: &str) -> String {
    const WRAPPER: &str = "LowCardinality(";
    let mut out = t.to_string();
    while let Some(at) = out.find(WRAPPER) {
        let inner = at + WRAPPER.len();
        let mut depth = 1;
        let close = out[inner..].char_indices().find_map(|(i, c)| {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(inner + i)
        });
        let Some(close) = close else { break };
        out = format!("{}{}{}", &out[..at], &out[inner..close], &out[close + 1..]);
    }
    out
}

/// 64-bit integers arrive from ClickHouse as strings; numbers in the answer are numbers.
fn numbers(types: &[String], rows: &mut [Vec<Value>]) {
    let integer = |t: &str| {
        let t = t.strip_prefix("Nullable(").and_then(|t| t.strip_suffix(')')).unwrap_or(t);
        matches!(t, "Int64" | "UInt64")
    };
    let columns: Vec<usize> = types.iter().enumerate().filter(|(_, t)| integer(t)).map(|(i, _)| i).collect();
    if columns.is_empty() {
        return;
    }
    for row in rows {
        for &i in &columns {
            if let Some(Value::String(s)) = row.get(i) {
                let n = s.parse::<i64>().map(Value::from).or_else(|_| s.parse::<u64>().map(Value::from));
                if let Ok(n) = n {
                    row[i] = n;
                }
            }
        }
    }
}

fn warehouse_error(e: WarehouseError) -> ApiError {
    match e {
        WarehouseError::Query(m) => {
            let first = m.lines().next().unwrap_or_default();
            ApiError::QueryFailed(format!("the query failed: {}", first.chars().take(1000).collect::<String>()))
        }
        WarehouseError::Unavailable(m) => ApiError::Unavailable(format!("the warehouse is unavailable: {m}")),
        other => ApiError::internal(other),
    }
}

/// Runs a query for the project.
#[utoipa::path(post, path = "/api/projects/{project_id}/query", tag = "query",
    params(("project_id" = u64, Path, description = "Project id")),
    request_body = QueryBody,
    responses((status = 200, body = QueryOut, description = "HogQL rows, or an insight's results"),
               (status = 400, description = "Invalid or rejected query (with line and column)"),
               (status = 401), (status = 404), (status = 503)),
    security(("bearer" = [])))]
pub async fn query(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path(project): Path<u64>,
    Json(body): Json<QueryBody>,
) -> Result<Json<Value>, ApiError> {
    caller.check(project, "query:read")?;
    let warehouse = state
        .warehouse
        .clone()
        .ok_or_else(|| ApiError::Unavailable("there is no warehouse ([warehouse] backend = \"none\")".into()))?;
    let kind = match body.query.get("kind") {
        Some(Value::String(k)) => k.clone(),
        _ => {
            return Err(ApiError::invalid(
                "query.kind",
                "give the query's kind: HogQLQuery, TrendsQuery, FunnelsQuery or RetentionQuery",
            ))
        }
    };
    if kind == "HogQLQuery" {
        let Some(Value::String(text)) = body.query.get("query") else {
            return Err(ApiError::invalid("query.query", "a HogQLQuery needs the SQL text in `query`"));
        };
        let text = text.clone();
        let limits = state.limits.clone();
        let out = blocking(move || {
            let ctx = hogql::Context {
                team_id: project,
                dialect: warehouse.dialect(),
                default_limit: limits.default_limit,
                max_limit: limits.max_limit,
                max_execution_time_secs: limits.max_execution_time_secs,
                ..hogql::Context::default()
            };
            let sql = hogql::translate(&text, &ctx).map_err(|e| ApiError::invalid("query.query", e.to_string()))?;
            let mut rows = warehouse.query(&sql).map_err(warehouse_error)?;
            let types: Vec<String> = rows.types.iter().map(|t| public_type(t)).collect();
            numbers(&types, &mut rows.results);
            Ok(QueryOut { columns: rows.columns, types, results: rows.results, hogql: text })
        })
        .await?;
        return serde_json::to_value(out).map(Json).map_err(ApiError::internal);
    }
    let query = body.query;
    let out = blocking(move || {
        insights::run(&warehouse, project, &query, chrono::Utc::now()).map_err(|e| match e {
            insights::InsightError::Invalid { field, message } => ApiError::invalid(format!("query.{field}"), message),
            insights::InsightError::Warehouse(w) => warehouse_error(w),
        })
    })
    .await?;
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::public_type;

    #[test]
    fn storage_wrappers_are_not_reported() {
        assert_eq!(public_type("LowCardinality(String)"), "String");
        assert_eq!(public_type("Array(LowCardinality(Nullable(String)))"), "Array(Nullable(String))");
        assert_eq!(public_type("Map(LowCardinality(String), UInt64)"), "Map(String, UInt64)");
        assert_eq!(public_type("UInt64"), "UInt64");
        assert_eq!(public_type("LowCardinality(String"), "LowCardinality(String", "malformed: as is");
    }
}
