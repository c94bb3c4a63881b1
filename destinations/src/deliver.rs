//! The dataflow's invocation sink for destinations: every routed `(function id, event)` starts an
//! invocation; one that suspends on `fetch` becomes a job of the delivery engine, queued durably
//! before the dataflow commits the log position (so a crash re-runs it, never loses it).

use std::collections::HashMap;
use std::sync::Arc;

use hogpipe_dataflow::event::{Event, Project};
use hogpipe_dataflow::functions::{FunctionStats, LogLine};
use hogpipe_dataflow::sink::{InvocationSink, SinkError};

use crate::engine::{Engine, EngineError, Job};
use crate::http::Next;
use crate::invoke::Invoker;

/// Starts destination invocations and queues their requests in the engine.
pub struct DeliverySink {
    invoker: Arc<Invoker>,
    engine: Arc<Engine>,
    projects: HashMap<u64, Project>,
    stats: Arc<FunctionStats>,
}

impl DeliverySink {
    /// A sink starting invocations with `invoker` and queueing them in `engine`; function logs
    /// (prints and errors of invocations that end before any `fetch`) go to `stats`.
    pub fn new(invoker: Arc<Invoker>, engine: Arc<Engine>, projects: Vec<Project>, stats: Arc<FunctionStats>) -> Self {
        DeliverySink { invoker, engine, projects: projects.into_iter().map(|p| (p.id, p)).collect(), stats }
    }
}

impl InvocationSink for DeliverySink {
    fn invoke(&self, invocations: &[(&str, &Event)]) -> Result<(), SinkError> {
        let mut jobs = Vec::with_capacity(invocations.len());
        for (function_id, event) in invocations {
            let project = self
                .projects
                .get(&event.team_id)
                .cloned()
                .unwrap_or(Project { id: event.team_id, name: String::new() });
            let line =
                |level: &'static str, message: String| LogLine { level, event_uuid: event.uuid.clone(), message };
            match self.invoker.start(function_id, event, &project) {
                Next::Fetch { request, state } => {
                    jobs.push(Job { function_id: function_id.to_string(), team_id: event.team_id, request, state })
                }
                Next::Done { logs } => {
                    self.stats.log(function_id, logs.into_iter().map(|m| line("info", m)));
                }
                Next::Failed { error, logs } => {
                    let lines: Vec<LogLine> =
                        logs.into_iter().map(|m| line("info", m)).chain([line("error", error)]).collect();
                    self.stats.log(function_id, lines);
                }
            }
        }
        self.engine.enqueue(jobs).map_err(|e| SinkError {
            sink: "destinations".into(),
            message: match e {
                EngineError::Full { pending, max } => {
                    format!(
                        "the delivery queue is full ({pending} of {max} pending); waiting for destinations to catch up"
                    )
                }
                other => other.to_string(),
            },
        })
    }
}
