//! From stored functions to running ones: compiling a [`HogFunction`] into the dataflow's
//! [`FunctionSpec`] (transformations, and the filter of destinations) and the delivery engine's
//! [`Destination`], and [`Deployment`], which keeps the running set equal to hogpipe.toml's
//! functions plus the stored ones. A change applies at the next batch of the dataflow.

use std::sync::{Arc, Mutex};

use hog_lang::{compile, CompileOptions};
use hogpipe_dataflow::functions::{FunctionKind, FunctionSpec, Registry};
use hogpipe_dataflow::health::Watcher;
use hogpipe_destinations::invoke::{Destination, DestinationError, Invoker};
use hogpipe_destinations::template::InputSchema;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::filters::{self, Filter};
use crate::store::{HogFunction, Store};

/// Function types the API accepts.
pub const KINDS: &[&str] = &["destination", "transformation", "source_webhook"];

/// A stored function compiled for running.
pub struct Compiled {
    /// For the dataflow (none for `source_webhook`).
    pub spec: Option<FunctionSpec>,
    /// For the delivery engine (destinations only).
    pub destination: Option<Destination>,
}

/// `{key: {"value": v}}` → `{key: v}` (PostHog's API shape to the runtime's).
pub fn flat_inputs(inputs: &Map<String, Value>) -> Map<String, Value> {
    inputs
        .iter()
        .filter_map(|(k, v)| match v {
            Value::Object(o) => o.get("value").map(|v| (k.clone(), v.clone())),
            _ => None,
        })
        .collect()
}

/// The schema entries of a function (`inputs_schema`), checked.
pub fn schema_of(inputs_schema: &Value) -> Result<Vec<InputSchema>, ApiError> {
    match inputs_schema {
        Value::Null => Ok(Vec::new()),
        v => serde_json::from_value(v.clone())
            .map_err(|e| ApiError::invalid("inputs_schema", format!("not a valid inputs schema: {e}"))),
    }
}

/// Compiles Hog source; a compile error is a 400 with the diagnostics of `attr`.
pub fn compile_hog(source: &str, attr: &str) -> Result<Value, ApiError> {
    compile(source, &CompileOptions::default())
        .map(|code| code.to_json())
        .map_err(|d| ApiError::Compile { attr: attr.to_string(), diagnostics: d.to_json(source) })
}

/// The filter bytecode of `filters` (none: every event).
pub fn compile_filter(filters: &Value) -> Result<Option<Value>, ApiError> {
    match filters::parse(filters)? {
        Filter::All => Ok(None),
        Filter::Bytecode(b) => Ok(Some(b)),
        Filter::Hog(expr) => {
            let program = format!("return ({expr})");
            let options = CompileOptions { globals: None, ..Default::default() };
            compile(&program, &options)
                .map(|code| Some(code.to_json()))
                .map_err(|d| ApiError::Compile { attr: "filters".into(), diagnostics: d.to_json(&program) })
        }
    }
}

fn inputs_error(e: DestinationError) -> ApiError {
    match e {
        DestinationError::Inputs { errors, .. } => {
            let attr = errors.0.first().map(|e| format!("inputs.{}", e.key())).unwrap_or_else(|| "inputs".into());
            ApiError::invalid(attr, errors.to_string())
        }
        DestinationError::Compile { rendered, .. } => ApiError::invalid("hog", rendered),
        DestinationError::Bytecode { error, .. } => ApiError::invalid("bytecode", error.to_string()),
    }
}

/// Compiles a stored function: its code (already compiled into `bytecode` on save), filter and
/// inputs (checked against `inputs_schema`).
pub fn compile_function(f: &HogFunction) -> Result<Compiled, ApiError> {
    if !KINDS.contains(&f.kind.as_str()) {
        return Err(ApiError::invalid("type", format!("unknown type {:?}: use {}", f.kind, KINDS.join(", "))));
    }
    let inputs = flat_inputs(&f.inputs);
    let filter = compile_filter(&f.filters)?;
    let kind = match f.kind.as_str() {
        "transformation" => FunctionKind::Transformation,
        "destination" => FunctionKind::Destination,
        _ => return Ok(Compiled { spec: None, destination: None }),
    };
    let destination = if kind == FunctionKind::Destination {
        let schema = schema_of(&f.inputs_schema)?;
        let d = if f.hog.trim().is_empty() {
            Destination::from_bytecode(&f.id, f.project_id, &f.name, &f.bytecode, Some(&schema), &inputs)
        } else {
            Destination::from_source(&f.id, f.project_id, &f.name, &f.hog, &schema, &inputs)
        };
        Some(d.map_err(inputs_error)?)
    } else {
        None
    };
    let spec = FunctionSpec {
        id: f.id.clone(),
        project_id: f.project_id,
        name: f.name.clone(),
        kind,
        enabled: f.enabled,
        order: f.execution_order,
        bytecode: f.bytecode.clone(),
        filter,
        inputs,
    };
    Ok(Compiled { spec: Some(spec), destination })
}

/// The running set of functions: hogpipe.toml's plus the store's.
pub struct Deployment {
    registry: Arc<Registry>,
    invoker: Arc<Invoker>,
    watcher: Option<Arc<Watcher>>,
    store: Arc<Store>,
    /// The config file's functions, kept to rebuild the whole set.
    config: Mutex<ConfigFunctions>,
}

#[derive(Default)]
struct ConfigFunctions {
    specs: Vec<FunctionSpec>,
}

impl Deployment {
    /// A deployment driving this registry and invoker.
    pub fn new(
        registry: Arc<Registry>,
        invoker: Arc<Invoker>,
        watcher: Option<Arc<Watcher>>,
        store: Arc<Store>,
    ) -> Self {
        Deployment { registry, invoker, watcher, store, config: Mutex::new(ConfigFunctions::default()) }
    }

    /// The health watcher (to show and clear a function's degraded/disabled state).
    pub fn watcher(&self) -> Option<&Arc<Watcher>> {
        self.watcher.as_ref()
    }

    /// Installs hogpipe.toml's functions together with every stored one (at start and on a
    /// config reload). A stored function that no longer compiles is skipped with a warning.
    /// Returns the new version of the dataflow's function set.
    pub fn deploy(&self, specs: Vec<FunctionSpec>, destinations: Vec<Destination>) -> Result<u64, ApiError> {
        let stored = self.store.functions(None)?;
        let mut all_specs = specs.clone();
        let mut all_destinations: Vec<Arc<Destination>> = destinations.into_iter().map(Arc::new).collect();
        for f in &stored {
            match compile_function(f) {
                Ok(c) => {
                    all_specs.extend(c.spec);
                    all_destinations.extend(c.destination.map(Arc::new));
                }
                Err(e) => tracing::warn!(function = %f.id, error = %e, "stored function skipped: it does not compile"),
            }
        }
        {
            let mut config = self.config.lock().unwrap_or_else(|p| p.into_inner());
            *config = ConfigFunctions { specs };
        }
        // Destinations first: an event routed by the new set finds its destination.
        self.invoker.replace_shared(all_destinations);
        Ok(self.registry.replace(all_specs))
    }

    /// Applies one saved function (compiled by the caller with [`compile_function`]).
    pub fn apply(&self, compiled: Compiled, id: &str) {
        match compiled.destination {
            Some(d) => {
                self.invoker.upsert(d);
            }
            None => {
                self.invoker.remove(id);
            }
        }
        match compiled.spec {
            Some(spec) => {
                self.registry.upsert(spec);
            }
            None => {
                self.registry.remove(id);
            }
        }
    }

    /// Stops running a deleted function.
    pub fn remove(&self, id: &str) {
        self.registry.remove(id);
        self.invoker.remove(id);
    }

    /// Whether hogpipe.toml declares a function with this id.
    pub fn is_config_function(&self, id: &str) -> bool {
        self.config.lock().map(|c| c.specs.iter().any(|s| s.id == id)).unwrap_or(false)
    }
}
