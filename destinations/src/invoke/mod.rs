//! Running destination invocations: a [`Destination`] is a compiled function (code and inputs),
//! the [`Invoker`] holds the live set of them and runs one event through one of them, suspending on
//! every `fetch` ([`Next::Fetch`]) and continuing when the delivery engine calls
//! [`Resume::resume`] with the answer.
//!
//! A suspended invocation is self-contained: its opaque state holds the saved VM (code, stack,
//! globals with the rendered inputs), the function's id and version, and the log lines so far, so
//! it can be stored and resumed in another process. Resuming needs the function to still exist
//! (deleting a destination fails its in-flight invocations) and continues with the code the
//! invocation started with, even if the function changed since.
//!
//! Only `fetch` suspends. `sleep` and `postHogCapture` fail the invocation with a clear error, as
//! in PostHog's CDP, whose destinations cannot call them either: the delivery engine's retries and
//! backoff are the way to wait.
//!
//! Not here: which events reach a destination (the dataflow's routing) and performing the requests
//! (the [`crate::engine`]).

mod fetch;
mod globals;
pub(crate) mod state;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use hog_lang::ast::Span;
use hog_lang::bytecode::{self, DecodeError, Item};
use hog_lang::vm::{Limits, VmState};
use hog_lang::{compile, Chunk, CompileOptions, Outcome, Vm, VmError};
use hogpipe_dataflow::event::{Event, Project};
use serde_json::{Map, Value as Json};

use crate::http::{HttpResponse, Next, Resume};
use crate::template::{CompiledInputs, InputSchema, InputsError, Template};

/// How invocations run.
#[derive(Debug, Clone)]
pub struct InvokerOptions {
    /// VM limits. The default is PostHog's CDP limits (`Limits::function()`: 0.5 s of VM time per
    /// invocation across its suspensions, 64 MB, 5 `fetch` calls), without a print limit: printed
    /// lines beyond `max_log_lines` are dropped and counted, not an error, as in PostHog.
    pub limits: Limits,
    /// Printed lines kept per invocation (PostHog keeps 25).
    pub max_log_lines: usize,
    /// The public URL of hogpipe, prefixed to `project.url`, `person.url`, `event.url` and
    /// `source.url` (empty: those URLs are paths).
    pub site_url: String,
}

impl Default for InvokerOptions {
    fn default() -> Self {
        InvokerOptions {
            limits: Limits { max_print_lines: 0, ..Limits::function() },
            max_log_lines: 25,
            site_url: String::new(),
        }
    }
}

/// Why a destination could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// The code does not compile.
    #[error("destination {id}: the code does not compile:\n{rendered}")]
    Compile {
        /// Function id.
        id: String,
        /// The diagnostics with line:col and a caret.
        rendered: String,
    },
    /// The bytecode is not valid HogVM bytecode.
    #[error("destination {id}: invalid bytecode: {error}")]
    Bytecode {
        /// Function id.
        id: String,
        /// What is wrong.
        error: DecodeError,
    },
    /// The inputs do not match the schema or do not compile.
    #[error("destination {id}: {errors}")]
    Inputs {
        /// Function id.
        id: String,
        /// Every problem, each naming its input.
        errors: InputsError,
    },
}

/// The code of a destination in a form threads can share (decoded into a chunk per thread).
#[derive(Debug)]
struct Code {
    items: Vec<Item>,
    version: i64,
    spans: Option<Vec<Option<Span>>>,
    source: Option<Arc<str>>,
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// A destination function, compiled: code and inputs. Create it once (when the function is saved)
/// and hand it to the [`Invoker`].
#[derive(Debug)]
pub struct Destination {
    /// Function id.
    pub id: String,
    /// The project (team) it belongs to.
    pub team_id: u64,
    /// Display name (`source.name`).
    pub name: String,
    /// A fingerprint of the code and inputs, recorded in suspended invocations.
    pub version: u64,
    /// Unique in the process: the key of the per-thread decoded chunk.
    uid: u64,
    code: Code,
    inputs: CompiledInputs,
}

/// FNV-1a: a fingerprint stable across processes and Rust versions.
fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

impl Destination {
    /// A destination made from a template with a user's inputs (validated against the template's
    /// schema, defaults applied).
    pub fn from_template(
        id: &str,
        team_id: u64,
        name: &str,
        template: &Template,
        inputs: &Map<String, Json>,
    ) -> Result<Destination, DestinationError> {
        Self::from_source(id, team_id, name, &template.code, &template.inputs_schema, inputs)
    }

    /// A destination from Hog source and an inputs schema (validated as for a template).
    pub fn from_source(
        id: &str,
        team_id: u64,
        name: &str,
        source: &str,
        schema: &[InputSchema],
        inputs: &Map<String, Json>,
    ) -> Result<Destination, DestinationError> {
        let code = compile(source, &CompileOptions::default()).map_err(|d| DestinationError::Compile {
            id: id.to_string(),
            rendered: d.render(source, &format!("{id}.hog")),
        })?;
        let compiled_inputs = CompiledInputs::new(schema, inputs)
            .map_err(|errors| DestinationError::Inputs { id: id.to_string(), errors })?;
        let version = fingerprint(&[source.as_bytes(), Json::Object(inputs.clone()).to_string().as_bytes()]);
        Ok(Destination {
            id: id.to_string(),
            team_id,
            name: name.to_string(),
            version,
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            code: Code {
                items: code.items,
                version: bytecode::VERSION,
                spans: Some(code.spans),
                source: Some(source.into()),
            },
            inputs: compiled_inputs,
        })
    }

    /// A destination from HogVM bytecode (`["_H", 1, …]`, as PostHog stores functions). With a
    /// schema the inputs are validated against it; without one every string input is a template.
    pub fn from_bytecode(
        id: &str,
        team_id: u64,
        name: &str,
        bytecode: &Json,
        schema: Option<&[InputSchema]>,
        inputs: &Map<String, Json>,
    ) -> Result<Destination, DestinationError> {
        let bad = |error| DestinationError::Bytecode { id: id.to_string(), error };
        let (version, items) = bytecode::items_from_json(bytecode).map_err(bad)?;
        // Decode once here so invalid bytecode is refused when the function is created.
        bytecode::decode("root", version, &items, None, None).map_err(bad)?;
        let compiled_inputs = match schema {
            Some(schema) => CompiledInputs::new(schema, inputs),
            None => CompiledInputs::without_schema(inputs),
        }
        .map_err(|errors| DestinationError::Inputs { id: id.to_string(), errors })?;
        let fp = fingerprint(&[bytecode.to_string().as_bytes(), Json::Object(inputs.clone()).to_string().as_bytes()]);
        Ok(Destination {
            id: id.to_string(),
            team_id,
            name: name.to_string(),
            version: fp,
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            code: Code { items, version, spans: None, source: None },
            inputs: compiled_inputs,
        })
    }

    /// This thread's decoded chunk of the code.
    fn chunk(&self) -> Result<Rc<Chunk>, DecodeError> {
        CHUNKS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(c) = cache.get(&self.uid) {
                return Ok(c.clone());
            }
            let chunk = Rc::new(bytecode::decode(
                "root",
                self.code.version,
                &self.code.items,
                self.code.spans.as_deref(),
                self.code.source.as_deref().map(Rc::from),
            )?);
            if cache.len() >= CHUNK_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(self.uid, chunk.clone());
            Ok(chunk)
        })
    }
}

/// Per-thread decoded chunks kept, by destination; the cache is emptied when full.
const CHUNK_CACHE_ENTRIES: usize = 4096;

thread_local! {
    // Only code here: values (a cached VM) would be dropped after hog-lang's own thread-locals.
    static CHUNKS: RefCell<HashMap<u64, Rc<Chunk>>> = RefCell::new(HashMap::new());
}

/// The live destinations, by id, with a version that increases with every change.
#[derive(Debug, Default)]
struct DestinationSet {
    version: u64,
    by_id: HashMap<String, Arc<Destination>>,
}

/// Runs invocations of the live set of destinations; replace the set without stopping anything
/// (invocations in flight keep the destination they started with).
#[derive(Debug)]
pub struct Invoker {
    set: RwLock<Arc<DestinationSet>>,
    options: InvokerOptions,
}

impl Invoker {
    /// An invoker with no destinations.
    pub fn new(options: InvokerOptions) -> Invoker {
        Invoker { set: RwLock::new(Arc::new(DestinationSet::default())), options }
    }

    /// The options in force.
    pub fn options(&self) -> &InvokerOptions {
        &self.options
    }

    fn snapshot(&self) -> Arc<DestinationSet> {
        match self.set.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn change(&self, f: impl FnOnce(&mut HashMap<String, Arc<Destination>>)) -> u64 {
        let mut guard = match self.set.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut by_id = guard.by_id.clone();
        f(&mut by_id);
        let version = guard.version + 1;
        *guard = Arc::new(DestinationSet { version, by_id });
        version
    }

    /// Adds or replaces one destination (by id); returns the new version of the set.
    pub fn upsert(&self, destination: Destination) -> u64 {
        self.change(|m| {
            m.insert(destination.id.clone(), Arc::new(destination));
        })
    }

    /// Removes a destination; returns the new version of the set.
    pub fn remove(&self, id: &str) -> u64 {
        self.change(|m| {
            m.remove(id);
        })
    }

    /// Replaces every destination; returns the new version of the set.
    pub fn replace(&self, destinations: Vec<Destination>) -> u64 {
        self.change(|m| {
            *m = destinations.into_iter().map(|d| (d.id.clone(), Arc::new(d))).collect();
        })
    }

    /// Replaces every destination with already shared ones (kept by the caller to rebuild the
    /// set later); returns the new version of the set.
    pub fn replace_shared(&self, destinations: Vec<Arc<Destination>>) -> u64 {
        self.change(|m| {
            *m = destinations.into_iter().map(|d| (d.id.clone(), d)).collect();
        })
    }

    /// The version of the set (0 before any change).
    pub fn version(&self) -> u64 {
        self.snapshot().version
    }

    /// The destination of this id.
    pub fn get(&self, id: &str) -> Option<Arc<Destination>> {
        self.snapshot().by_id.get(id).cloned()
    }

    /// Runs destination `function_id` on `event` until it finishes, fails or calls `fetch`.
    pub fn start(&self, function_id: &str, event: &Event, project: &Project) -> Next {
        let Some(dest) = self.get(function_id) else {
            return Next::Failed { error: format!("unknown destination function `{function_id}`"), logs: Vec::new() };
        };
        let globals = globals::build(event, project, &self.options.site_url, &dest.id, &dest.name);
        let rendered = match dest.inputs.render(&globals) {
            Ok(r) => r,
            Err(e) => return Next::Failed { error: format!("Error building inputs: {e}"), logs: Vec::new() },
        };
        let sensitive = dest.inputs.sensitive_values(&rendered);
        let chunk = match dest.chunk() {
            Ok(c) => c,
            Err(e) => return Next::Failed { error: format!("invalid bytecode: {e}"), logs: Vec::new() },
        };
        let host =
            fetch::LogHost { lines: Vec::new(), dropped: 0, max: self.options.max_log_lines, sensitive: &sensitive };
        let mut vm = Vm::new(globals);
        vm.limits = self.options.limits.clone();
        let mut host = host;
        let outcome = vm.run(chunk, &mut host);
        let saved = state::Saved {
            function_id: dest.id.clone(),
            team_id: dest.team_id,
            version: dest.version,
            logs: Vec::new(),
            dropped: 0,
            sensitive: sensitive.clone(),
        };
        finish(&vm, outcome, host, saved)
    }
}

/// What a run's outcome means for the invocation.
fn finish(vm: &Vm, outcome: Result<Outcome, Box<VmError>>, host: fetch::LogHost<'_>, mut saved: state::Saved) -> Next {
    match outcome {
        Ok(Outcome::Finished(_)) => Next::Done { logs: host.finish() },
        Ok(Outcome::Suspended { name, args }) if &*name == "fetch" => match fetch::request(&args) {
            Ok(request) => {
                saved.logs = host.lines;
                saved.dropped = host.dropped;
                Next::Fetch { request, state: state::encode(&saved, &vm.save()) }
            }
            Err(error) => {
                let error = host.redact(&error);
                Next::Failed { error, logs: host.finish() }
            }
        },
        Ok(Outcome::Suspended { name, .. }) => {
            let error = format!(
                "`{name}` is not available in destinations: only `fetch` is (use the delivery engine's retries to wait)"
            );
            Next::Failed { error, logs: host.finish() }
        }
        Err(e) => {
            let error = host.redact(&e.render());
            Next::Failed { error, logs: host.finish() }
        }
    }
}

impl Resume for Invoker {
    fn resume(&self, state: &[u8], response: &HttpResponse) -> Next {
        let (saved, vm_state): (state::Saved, VmState) = match state::decode(state) {
            Ok(s) => s,
            Err(e) => return Next::Failed { error: format!("cannot resume the invocation: {e}"), logs: Vec::new() },
        };
        if self.get(&saved.function_id).is_none() {
            return Next::Failed {
                error: format!("destination `{}` was removed while its request was in flight", saved.function_id),
                logs: saved.logs,
            };
        }
        let mut vm = match Vm::restore(&vm_state) {
            Ok(vm) => vm,
            Err(e) => {
                return Next::Failed { error: format!("cannot resume the invocation: {e}"), logs: saved.logs };
            }
        };
        vm.limits = self.options.limits.clone();
        let sensitive = saved.sensitive.clone();
        let mut host = fetch::LogHost {
            lines: saved.logs.clone(),
            dropped: saved.dropped,
            max: self.options.max_log_lines,
            sensitive: &sensitive,
        };
        let outcome = vm.resume(fetch::response_value(response), &mut host);
        finish(&vm, outcome, host, saved)
    }
}
