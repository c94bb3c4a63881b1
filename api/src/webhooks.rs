//! Source webhooks, as in PostHog: `POST /public/webhooks/{function id}` runs an enabled
//! `source_webhook` function with the request in its `request` global (`body`, `headers`,
//! `method`, `query`, `ip`, `stringBody`); every `postHogCapture({event, distinct_id,
//! properties})` it makes becomes an event of the function's project, validated like a capture
//! request and appended to the event log before the answer. No API key: the function's id is the
//! address (PostHog's model); a function that is not an enabled source webhook answers 404.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::Extensions;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use hog_lang::bytecode::decode_json_text;
use hog_lang::value::from_json;
use hog_lang::vm::Limits;
use hog_lang::{Host, Outcome, Value, Vm};
use hogpipe_capture::event::{parse_payload, EndpointKind, ParseLimits, RequestMeta};
use hogpipe_dataflow::event::to_json;
use serde_json::{json, Value as Json_};

use crate::deploy::flat_inputs;
use crate::error::{blocking, ApiError};
use crate::store::HogFunction;
use crate::ApiState;

/// Most events one webhook call may capture.
pub const MAX_EVENTS_PER_CALL: usize = 100;
/// Printed lines kept per call.
pub const MAX_LOG_LINES: usize = 25;

/// What a source function did with one request.
#[derive(Debug, Default)]
pub struct SourceRun {
    /// The events it captured (`{event, distinct_id, properties, …}`).
    pub events: Vec<Json_>,
    /// Its printed lines.
    pub logs: Vec<String>,
    /// Why it failed, if it did (events captured before the failure are kept).
    pub error: Option<String>,
}

#[derive(Default)]
struct Prints(Vec<String>);

impl Host for Prints {
    fn print(&mut self, line: &str) {
        if self.0.len() < MAX_LOG_LINES {
            self.0.push(line.to_string());
        }
    }
    fn overrides_stdlib(&self) -> bool {
        false
    }
}

/// Runs a source function on a request (`request` global as described in the module docs).
pub fn run_source(f: &HogFunction, project_name: &str, site_url: &str, request: Json_) -> SourceRun {
    let mut run = SourceRun::default();
    let chunk = match decode_json_text(&f.bytecode.to_string()) {
        Ok(c) => std::rc::Rc::new(c),
        Err(e) => {
            run.error = Some(format!("invalid bytecode: {e}"));
            return run;
        }
    };
    let globals = json!({
        "request": request,
        "inputs": flat_inputs(&f.inputs),
        "project": {"id": f.project_id, "name": project_name, "url": format!("{site_url}/project/{}", f.project_id)},
        "source": {"name": f.name, "url": format!("{site_url}/project/{}/functions/{}", f.project_id, f.id)},
    });
    let mut vm = Vm::new(from_json(&globals));
    vm.limits = Limits { max_async_steps: MAX_EVENTS_PER_CALL + 1, max_print_lines: 0, ..Limits::function() };
    let mut host = Prints::default();
    let mut outcome = vm.run(chunk, &mut host);
    loop {
        match outcome {
            Ok(Outcome::Finished(_)) => break,
            Ok(Outcome::Suspended { name, args }) if &*name == "postHogCapture" => {
                let event = args.first().map(to_json).unwrap_or(Json_::Null);
                if !event.is_object() {
                    run.error = Some("postHogCapture needs an event: {event, distinct_id, properties}".into());
                    break;
                }
                if run.events.len() >= MAX_EVENTS_PER_CALL {
                    run.error = Some(format!("more than {MAX_EVENTS_PER_CALL} events in one call"));
                    break;
                }
                run.events.push(event);
                outcome = vm.resume(Value::Null, &mut host);
            }
            Ok(Outcome::Suspended { name, .. }) => {
                run.error = Some(format!("`{name}` is not available in source webhooks; use postHogCapture"));
                break;
            }
            Err(e) => {
                run.error = Some(e.render());
                break;
            }
        }
    }
    run.logs = host.0;
    run
}

/// The `request` global of a webhook call.
pub fn request_global(
    method: &Method,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    ip: &str,
    body: &[u8],
) -> Json_ {
    let text = String::from_utf8_lossy(body).to_string();
    let parsed: Json_ = serde_json::from_slice(body).unwrap_or(Json_::Null);
    let headers: serde_json::Map<String, Json_> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_ascii_lowercase(), json!(v))))
        .collect();
    json!({"method": method.as_str(), "headers": headers, "query": query, "ip": ip, "body": parsed, "stringBody": text})
}

/// `POST /public/webhooks/{id}`: runs the source function on the request.
#[utoipa::path(post, path = "/public/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The source_webhook function's id")),
    request_body(content = Object, description = "Any body; JSON is parsed into `request.body`"),
    responses((status = 200, description = "`{status: \"ok\", events: n}`"),
               (status = 400, description = "The function failed or captured an invalid event"),
               (status = 404, description = "No enabled source webhook with this id")))]
pub async fn receive(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    extensions: Extensions,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(log) = state.log.clone() else {
        return Err(ApiError::Unavailable("source webhooks need the event log".into()));
    };
    let store = state.store.clone();
    let wanted = id.clone();
    let found = blocking(move || {
        let f = store.function_by_id(&wanted)?;
        let project = match &f {
            Some(f) => store.project(f.project_id)?,
            None => None,
        };
        Ok(f.zip(project))
    })
    .await?;
    let Some((function, project)) = found.filter(|(f, _)| f.kind == "source_webhook" && f.enabled) else {
        return Err(ApiError::not_found(format!("no webhook {id:?}")));
    };
    let ip = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
        .or_else(|| extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip().to_string()))
        .unwrap_or_default();
    let request = request_global(&method, &headers, &query, &ip, &body);
    let site_url = state.site_url.clone();
    let name = project.name.clone();
    let f = function.clone();
    let run = blocking(move || Ok(run_source(&f, &name, &site_url, request))).await?;
    if let Some(stats) = &state.stats {
        let lines = run.logs.iter().map(|m| hogpipe_dataflow::functions::LogLine {
            level: "info",
            event_uuid: String::new(),
            message: m.clone(),
        });
        let mut all: Vec<_> = lines.collect();
        if let Some(e) = &run.error {
            all.push(hogpipe_dataflow::functions::LogLine {
                level: "error",
                event_uuid: String::new(),
                message: e.clone(),
            });
        }
        stats.log(&function.id, all);
    }
    if !run.events.is_empty() {
        let batch = json!({"api_key": project.token, "batch": run.events});
        let meta = RequestMeta::new(EndpointKind::Events, &ip);
        let parsed = parse_payload(batch.to_string().as_bytes(), &meta, &ParseLimits::default())
            .map_err(|e| ApiError::invalid("postHogCapture", format!("the function captured an invalid event: {e}")))?;
        let n = parsed.records.len();
        log.append(parsed.records)
            .await
            .map_err(|e| ApiError::Unavailable(format!("the event log refused the events: {e}")))?;
        tracing::debug!(function = %function.id, events = n, "source webhook captured events");
    }
    if let Some(error) = run.error {
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({"status": "error", "error": error, "events": run.events.len()})),
        )
            .into_response());
    }
    Ok(Json(json!({"status": "ok", "events": run.events.len()})).into_response())
}
