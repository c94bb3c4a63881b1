//! Live aggregates in `serve`: `GET /api/projects/{id}/live/{aggregate}` answers the current rows
//! (`?from=&to=` as RFC 3339 or milliseconds; default the last 24 hours), and a background thread
//! persists changed rows into the warehouse's `live_aggregates` table every second.
//!
//! Until the API's key store exists, a request needs `Authorization: Bearer <key>` with a key from
//! that project's `api_keys` in hogpipe.toml; any other key, or a project it does not own, is 404.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hogpipe_dataflow::live::{Live, LiveRow};
use hogpipe_warehouse::Warehouse;
use serde::Serialize;
use serde_json::json;

struct ApiState {
    live: Arc<Live>,
    /// API key → projects it may read.
    keys: HashMap<String, Vec<u64>>,
}

/// The `/api/projects/{id}/live/{aggregate}` route.
pub fn router(live: Arc<Live>, projects: &[crate::config::Project]) -> Router {
    let mut keys: HashMap<String, Vec<u64>> = HashMap::new();
    for p in projects {
        for k in &p.api_keys {
            keys.entry(k.clone()).or_default().push(p.id);
        }
    }
    Router::new()
        .route("/api/projects/{id}/live/{aggregate}", get(live_rows))
        .with_state(Arc::new(ApiState { live, keys }))
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"status": status.as_u16(), "error": message}))).into_response()
}

fn time_ms(value: &str) -> Option<i64> {
    value.parse::<i64>().ok().or_else(|| chrono::DateTime::parse_from_rfc3339(value).ok().map(|t| t.timestamp_millis()))
}

#[derive(Serialize)]
struct RowOut<'a> {
    bucket: &'a str,
    event: &'a str,
    groups: &'a [Option<String>],
    value: f64,
    count: u64,
}

async fn live_rows(
    State(state): State<Arc<ApiState>>,
    Path((project, aggregate)): Path<(u64, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(key) = key else {
        return error(StatusCode::UNAUTHORIZED, "send a personal API key: `Authorization: Bearer phx_...`");
    };
    let Some(allowed) = state.keys.get(key) else {
        return error(StatusCode::UNAUTHORIZED, "this API key is not valid");
    };
    let definition = state.live.registry().get(&aggregate);
    let Some(definition) = definition.filter(|d| d.project_id == project && allowed.contains(&project)) else {
        return error(StatusCode::NOT_FOUND, &format!("no live aggregate {aggregate:?} in project {project}"));
    };
    let now = chrono::Utc::now().timestamp_millis();
    let parse = |name: &str, default: i64| -> Result<i64, String> {
        match query.get(name) {
            None => Ok(default),
            Some(v) => time_ms(v)
                .ok_or_else(|| format!("`{name}` must be RFC 3339 or milliseconds since the epoch, got {v:?}")),
        }
    };
    let (from, to) = match (parse("from", now - 86_400_000), parse("to", now + 60_000)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(m), _) | (_, Err(m)) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let rows = state.live.store().query(&aggregate, from, to);
    let out: Vec<RowOut> = rows
        .iter()
        .map(|r| RowOut {
            bucket: &r.bucket,
            event: &r.event,
            groups: &r.groups,
            value: r.value.as_f64(),
            count: r.count,
        })
        .collect();
    Json(json!({
        "aggregate": aggregate,
        "measure": definition.measure.name(),
        "interval": definition.interval.name(),
        "group_by": definition.group_by,
        "results": out,
    }))
    .into_response()
}

#[derive(Serialize)]
struct PersistedRow<'a> {
    team_id: u64,
    aggregate_id: &'a str,
    bucket: String,
    event: &'a str,
    group_1: &'a str,
    group_2: &'a str,
    value: f64,
    version: u64,
}

/// Writes changed live rows into `live_aggregates` every second until `stop`.
pub fn persist(live: Arc<Live>, warehouse: Arc<Warehouse>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut seen = 0u64;
        let mut pending: Vec<LiveRow> = Vec::new();
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            let (rows, next) = live.store().changes_since(seen);
            seen = next;
            pending.extend(rows);
            if !pending.is_empty() {
                let mut data = Vec::new();
                for r in &pending {
                    let team_id = live.registry().get(&r.definition).map_or(0, |d| d.project_id);
                    let g = |i: usize| r.groups.get(i).and_then(|g| g.as_deref()).unwrap_or("");
                    let row = PersistedRow {
                        team_id,
                        aggregate_id: &r.definition,
                        bucket: chrono::DateTime::from_timestamp_millis(r.bucket_start_ms)
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default(),
                        event: &r.event,
                        group_1: g(0),
                        group_2: g(1),
                        value: r.value.as_f64(),
                        // Rows of buckets that began before this process started miss the events
                        // processed before: version 0 lets a row stored before a restart win over
                        // them, while a bucket with no stored row still gets one.
                        version: if r.partial { 0 } else { r.version },
                    };
                    if serde_json::to_writer(&mut data, &row).is_ok() {
                        data.push(b'\n');
                    }
                }
                match warehouse.backend().insert("live_aggregates", "JSONEachRow", &data) {
                    Ok(()) => pending.clear(),
                    // Kept and retried next second: versions make a late write harmless.
                    Err(e) => {
                        tracing::warn!(error = %e, rows = pending.len(), "persisting live aggregates failed; retrying")
                    }
                }
            }
            if stopping {
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    })
}
