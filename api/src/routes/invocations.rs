//! `POST /api/projects/{project}/hog_functions/{id}/invocations`: test-runs a function on a
//! given event (or a sample one) with `fetch` mocked. The answer holds the result (the modified
//! event for a transformation, `null` when it drops the event), every request the function
//! would send, and its logs. Unsaved changes can be tried by sending them in `configuration`.
//! Nothing is delivered, stored or counted.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use hogpipe_capture::event::CapturedEvent;
use hogpipe_dataflow::event::{Event, Project};
use hogpipe_dataflow::functions::{FunctionSet, FunctionSpec, FunctionStats};
use hogpipe_dataflow::health::{HealthConfig, Watcher};
use hogpipe_dataflow::runner::Runner;
use hogpipe_destinations::http::{HttpRequest, HttpResponse, Next, Resume};
use hogpipe_destinations::invoke::{Destination, Invoker, InvokerOptions};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::deploy::compile_function;
use crate::error::{blocking, ApiError};
use crate::routes::functions::FunctionBody;
use crate::ApiState;

/// A mocked answer to a `fetch`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MockResponse {
    /// HTTP status (default 200).
    #[serde(default = "ok")]
    pub status: u16,
    /// The body: JSON, or a string sent as it is (default `{}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub body: Value,
    /// Response headers.
    #[serde(default)]
    pub headers: HashMap<String, String>,
}

fn ok() -> u16 {
    200
}

/// A test run.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvocationBody {
    /// `{"event": {...}}`: the event to run on (default: a sample `$pageview`). The event takes
    /// PostHog's shape: `event`, `distinct_id`, `properties`, `timestamp`, `uuid`, `elements_chain`.
    #[schema(value_type = Option<Object>)]
    pub globals: Option<Value>,
    /// Unsaved changes to try (the create body's fields).
    pub configuration: Option<FunctionBody>,
    /// Must be true or absent: test runs never call the real services.
    pub mock_async_functions: Option<bool>,
    /// Answers to the function's `fetch` calls, in order; the last repeats (default `200 {}`).
    pub mock_responses: Option<Vec<MockResponse>>,
}

/// One log line of the run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunLog {
    /// `info` for `print` output, `error` for failures.
    pub level: String,
    /// The text.
    pub message: String,
}

/// What a test run did.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvocationOut {
    /// `success`, `error`, or `skipped` (a destination whose filter does not match the event).
    pub status: String,
    /// Transformation: the event after the function (null when dropped). Destination: null.
    #[schema(value_type = Option<Object>)]
    pub result: Value,
    /// Every request the function sent, in order.
    #[schema(value_type = Vec<Object>)]
    pub requests: Vec<HttpRequest>,
    /// Printed lines and errors.
    pub logs: Vec<RunLog>,
    /// The error, when the status is `error`.
    pub error: Option<String>,
}

fn sample_event() -> Value {
    json!({
        "event": "$pageview",
        "distinct_id": "sample-distinct-id",
        "uuid": uuid::Uuid::now_v7().to_string(),
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "elements_chain": "",
        "properties": {
            "$current_url": "https://example.com/pricing",
            "$browser": "Chrome",
            "$os": "Mac OS X",
            "email": "sample@example.com",
            "$ip": "127.0.0.1"
        }
    })
}

fn event_of(globals: Option<&Value>) -> Result<Value, ApiError> {
    let event = match globals {
        None | Some(Value::Null) => return Ok(sample_event()),
        Some(Value::Object(g)) => match g.get("event") {
            None | Some(Value::Null) => return Ok(sample_event()),
            Some(e) => e.clone(),
        },
        Some(_) => return Err(ApiError::invalid("globals", "`globals` must be an object `{\"event\": {...}}`")),
    };
    let Value::Object(mut e) = event else {
        return Err(ApiError::invalid("globals.event", "must be an event object"));
    };
    match e.get("event") {
        Some(Value::String(_)) => {}
        _ => return Err(ApiError::invalid("globals.event.event", "the event needs a name (`event`)")),
    }
    if let Some(p) = e.get("properties") {
        if !p.is_object() && !p.is_null() {
            return Err(ApiError::invalid("globals.event.properties", "must be an object"));
        }
    }
    for key in ["distinct_id", "uuid", "timestamp"] {
        if let Some(v) = e.get(key) {
            if !v.is_string() && !v.is_null() {
                return Err(ApiError::invalid(format!("globals.event.{key}"), "must be a string"));
            }
        }
    }
    e.entry("distinct_id").or_insert(json!("sample-distinct-id"));
    e.entry("uuid").or_insert(json!(uuid::Uuid::now_v7().to_string()));
    Ok(Value::Object(e))
}

fn captured(event: &Value) -> CapturedEvent {
    let text = |k: &str| event.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    CapturedEvent {
        uuid: text("uuid"),
        distinct_id: text("distinct_id"),
        ip: String::new(),
        data: event.to_string(),
        now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        sent_at: None,
        token: String::new(),
        historical_migration: false,
    }
}

/// What the dataflow's runner did with the event: the event and the destinations it was routed
/// to (`None`: dropped), the logs, and whether the function failed.
type RunnerOutcome = (Option<(Event, Vec<String>)>, Vec<RunLog>, bool);

/// Runs the transformation chain of one function (or a destination's filter) like the dataflow.
fn run_in_runner(spec: FunctionSpec, project: Project, event: &Value) -> RunnerOutcome {
    let stats = Arc::new(FunctionStats::default());
    let projects = Arc::new(HashMap::from([(project.id, project.clone())]));
    let mut runner = Runner::new(projects, stats.clone(), Arc::new(Watcher::new(HealthConfig::default())));
    let id = spec.id.clone();
    runner.use_set(&FunctionSet { version: 1, functions: vec![FunctionSpec { enabled: true, ..spec }] });
    let out = runner.process(project.id, &captured(event));
    runner.flush_stats();
    let failed = stats.counters(&id).failed > 0;
    let logs = stats.logs(&id).into_iter().map(|l| RunLog { level: l.level.to_string(), message: l.message }).collect();
    (out, logs, failed)
}

fn response_of(mock: &MockResponse) -> HttpResponse {
    HttpResponse {
        status: mock.status,
        headers: mock.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
        body: match &mock.body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    }
}

fn run_destination(
    destination: Destination,
    project: &Project,
    event: Event,
    mocks: &[MockResponse],
    site_url: &str,
) -> (Vec<HttpRequest>, Vec<RunLog>, Option<String>) {
    let invoker = Invoker::new(InvokerOptions { site_url: site_url.to_string(), ..InvokerOptions::default() });
    let id = destination.id.clone();
    invoker.upsert(destination);
    let default = MockResponse { status: 200, body: json!({}), headers: HashMap::new() };
    let mut requests = Vec::new();
    let mut next = invoker.start(&id, &event, project);
    loop {
        match next {
            // The VM's async-step limit (as for real invocations) bounds the number of fetches.
            Next::Fetch { request, state } => {
                let mock = mocks.get(requests.len()).or(mocks.last()).unwrap_or(&default);
                requests.push(request);
                next = invoker.resume(&state, &response_of(mock));
            }
            Next::Done { logs } => {
                let logs = logs.into_iter().map(|m| RunLog { level: "info".into(), message: m }).collect();
                return (requests, logs, None);
            }
            Next::Failed { error, logs } => {
                let mut logs: Vec<RunLog> =
                    logs.into_iter().map(|m| RunLog { level: "info".into(), message: m }).collect();
                logs.push(RunLog { level: "error".into(), message: error.clone() });
                return (requests, logs, Some(error));
            }
        }
    }
}

/// Secret input values never leave the API: they are replaced by `***` in what the run shows.
fn redact(mut out: InvocationOut, secrets: &[String]) -> InvocationOut {
    let hide = |s: &mut String| {
        for secret in secrets {
            if s.contains(secret.as_str()) {
                *s = s.replace(secret.as_str(), "***");
            }
        }
    };
    for r in &mut out.requests {
        hide(&mut r.url);
        for (_, v) in &mut r.headers {
            hide(v);
        }
        if let Some(b) = &mut r.body {
            hide(b);
        }
    }
    for l in &mut out.logs {
        hide(&mut l.message);
    }
    if let Some(e) = &mut out.error {
        hide(e);
    }
    out
}

/// Test-runs a function with `fetch` mocked.
#[utoipa::path(post, path = "/api/projects/{project_id}/hog_functions/{id}/invocations", tag = "hog_functions",
    params(("project_id" = u64, Path, description = "Project id"), ("id" = String, Path, description = "Function id")),
    request_body = InvocationBody,
    responses((status = 200, body = InvocationOut), (status = 400), (status = 401), (status = 404)),
    security(("bearer" = [])))]
pub async fn invoke(
    State(state): State<Arc<ApiState>>,
    caller: Caller,
    Path((project_id, id)): Path<(u64, String)>,
    Json(body): Json<InvocationBody>,
) -> Result<Json<InvocationOut>, ApiError> {
    caller.check(project_id, "hog_function:write")?;
    if body.mock_async_functions == Some(false) {
        return Err(ApiError::invalid(
            "mock_async_functions",
            "test runs always mock `fetch`; to deliver for real, enable the function",
        ));
    }
    let store = state.store.clone();
    let wanted = id.clone();
    let (stored, project) =
        blocking(move || Ok((store.function(project_id, &wanted)?, store.project(project_id)?))).await?;
    let stored = stored.ok_or_else(|| ApiError::not_found(format!("no function {id:?} in project {project_id}")))?;
    let project = Project { id: project_id, name: project.map(|p| p.name).unwrap_or_default() };
    let function = match body.configuration {
        Some(changes) => crate::routes::functions::apply_changes(stored, changes)?,
        None => stored,
    };
    let compiled = compile_function(&function)?;
    let secrets = crate::routes::functions::secret_values(&function);
    let event = event_of(body.globals.as_ref())?;
    let mocks = body.mock_responses.unwrap_or_default();
    let site_url = state.site_url.clone();
    let kind = function.kind.clone();
    if kind == "source_webhook" {
        // The request the webhook would receive: `globals.request`, else a sample JSON body.
        let request = match body.globals.as_ref().and_then(|g| g.get("request")) {
            Some(r) if r.is_object() => r.clone(),
            Some(_) => {
                return Err(ApiError::invalid("globals.request", "must be an object {body, headers, query, method}"))
            }
            None => json!({"method": "POST", "headers": {}, "query": {}, "ip": "127.0.0.1",
                           "body": {"event": "sample", "distinct_id": "sample-distinct-id"}, "stringBody": ""}),
        };
        let f = function.clone();
        let project_name = project.name.clone();
        let run = blocking(move || Ok(crate::webhooks::run_source(&f, &project_name, &site_url, request))).await?;
        let mut logs: Vec<RunLog> = run.logs.into_iter().map(|m| RunLog { level: "info".into(), message: m }).collect();
        if let Some(e) = &run.error {
            logs.push(RunLog { level: "error".into(), message: e.clone() });
        }
        let out = InvocationOut {
            status: if run.error.is_some() { "error" } else { "success" }.into(),
            result: json!({"events": run.events}),
            requests: Vec::new(),
            logs,
            error: run.error,
        };
        return Ok(Json(redact(out, &secrets)));
    }
    let out = blocking(move || {
        let Some(spec) = compiled.spec else {
            return Err(ApiError::invalid("type", format!("{kind} functions cannot be test-run yet")));
        };
        let fid = spec.id.clone();
        let (processed, mut logs, failed) = run_in_runner(spec, project.clone(), &event);
        if kind == "transformation" {
            let error = failed.then(|| logs.iter().rev().find(|l| l.level == "error").map(|l| l.message.clone()));
            let result = match &processed {
                Some((e, _)) => serde_json::to_value(e).map_err(ApiError::internal)?,
                None => Value::Null,
            };
            return Ok(InvocationOut {
                status: if failed { "error" } else { "success" }.into(),
                result,
                requests: Vec::new(),
                logs,
                error: error.flatten(),
            });
        }
        let Some((event, routed)) = processed else {
            return Err(ApiError::internal("the event could not be read"));
        };
        if failed {
            let error = logs.iter().rev().find(|l| l.level == "error").map(|l| l.message.clone());
            return Ok(InvocationOut {
                status: "error".into(),
                result: Value::Null,
                requests: Vec::new(),
                logs,
                error,
            });
        }
        if !routed.contains(&fid) {
            logs.push(RunLog {
                level: "info".into(),
                message: "the event does not match the function's filters".into(),
            });
            return Ok(InvocationOut {
                status: "skipped".into(),
                result: Value::Null,
                requests: Vec::new(),
                logs,
                error: None,
            });
        }
        let Some(destination) = compiled.destination else {
            return Err(ApiError::internal("a destination without code"));
        };
        let (requests, mut run_logs, error) = run_destination(destination, &project, event, &mocks, &site_url);
        logs.append(&mut run_logs);
        Ok(InvocationOut {
            status: if error.is_some() { "error" } else { "success" }.into(),
            result: Value::Null,
            requests,
            logs,
            error,
        })
    })
    .await?;
    Ok(Json(redact(out, &secrets)))
}
