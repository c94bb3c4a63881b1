//! Runs a project's Hog functions on events, inside one worker: the transformation chain and
//! the destination filters. One VM per worker is reused for every invocation.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use hog_lang::bytecode::decode_json_text;
use hog_lang::dict::Dict;
use hog_lang::value::{from_json, Key, KeyRef};
use hog_lang::vm::Limits;
use hog_lang::{Chunk, Host, Outcome, Value, Vm};
use serde_json::Value as Json;

use hogpipe_capture::event::CapturedEvent;

use crate::event::{Event, HogEvent, Project, RecordRef};
use crate::functions::{FunctionCounters, FunctionKind, FunctionSet, FunctionSpec, LogLine, SharedStats};
use crate::health::{Usage, Watcher};

/// Printed lines kept per invocation (PostHog's CDP keeps 25).
pub const MAX_LOG_LINES_PER_INVOCATION: usize = 25;

/// A function compiled for this worker.
struct Compiled {
    id: String,
    chunk: Option<Rc<Chunk>>,
    filter: Option<Rc<Chunk>>,
    /// Why it cannot run (bad bytecode), reported on each invocation.
    broken: Option<String>,
    inputs: serde_json::Map<String, Json>,
    /// Its globals, built at first use and reused (see [`Globals`]).
    globals: Option<Globals>,
    /// Counters and health usage since the last flush (kept here: no lookup per invocation).
    counters: FunctionCounters,
    usage: Usage,
    /// Disabled by the watcher (read at each batch start).
    disabled: bool,
}

/// A project's functions in this worker.
#[derive(Default)]
struct Team {
    transformations: Vec<Compiled>,
    destinations: Vec<Compiled>,
}

type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<hog_lang::value::FxHasher>>;

/// A function's globals dict, kept between invocations: only the event changes. The other
/// containers in it (`project`, `inputs`, …) are rebuilt when a run changed one of them, which
/// the VM's journal tells, so no invocation sees what an earlier one did to them.
struct Globals {
    dict: Value,
    /// The containers a program could change.
    parts: Vec<Value>,
}

impl Globals {
    fn new(entries: Vec<(&str, Value)>) -> Globals {
        let parts =
            entries.iter().filter(|(_, v)| matches!(v, Value::Dict(_) | Value::Array(_))).map(|(_, v)| v.clone());
        let parts = parts.collect();
        let entries = entries.into_iter().map(|(k, v)| (Key::interned(k), v)).collect();
        Globals { dict: Value::dict(Dict::Small(entries)), parts }
    }

    /// Replaces the value of one of the keys it was built with.
    fn set(&self, key: &str, value: Value) {
        if let Value::Dict(d) = &self.dict {
            if let Some(slot) = d.borrow_mut().get_mut(KeyRef::Str(key)) {
                *slot = value;
            }
        }
    }

    /// Whether the run changed one of the kept containers (ask before the journal ends).
    fn spoiled(&self, vm: &Vm) -> bool {
        self.parts.iter().any(|p| vm.changed_in_journal(p))
    }
}

/// Collects printed lines of one invocation, up to a cap.
#[derive(Default)]
struct LogHost {
    lines: Vec<String>,
    dropped: usize,
}

impl Host for LogHost {
    fn overrides_stdlib(&self) -> bool {
        false
    }
    fn print(&mut self, line: &str) {
        if self.lines.len() < MAX_LOG_LINES_PER_INVOCATION {
            self.lines.push(line.to_string());
        } else {
            self.dropped += 1;
        }
    }
}

/// The time since `clock`, which moves to now.
fn lap(clock: &mut Instant) -> std::time::Duration {
    let now = Instant::now();
    let took = now.saturating_duration_since(*clock);
    *clock = now;
    took
}

/// What became of one log record.
// Returned by value and unpacked at once: boxing the event would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
pub enum Processed {
    /// Not a captured event, or for a token no project has.
    Skipped,
    /// A transformation dropped it.
    Dropped,
    /// The event for the sinks, and the destinations whose filter matched.
    Kept(Event, Vec<String>),
}

/// Per-worker executor of one function set.
pub struct Runner {
    /// Reused buffer for each record's decoded `data`.
    scratch: String,
    version: u64,
    /// Index in `teams` of each project that has functions.
    team_index: FastMap<u64, usize>,
    teams: Vec<Team>,
    vm: Vm,
    host: LogHost,
    projects: Arc<HashMap<u64, Project>>,
    /// Counters and usage of functions replaced by a new set, not yet flushed.
    counters: HashMap<String, FunctionCounters>,
    usage: HashMap<String, Usage>,
    logs: HashMap<String, Vec<LogLine>>,
    stats: SharedStats,
    watcher: Arc<Watcher>,
}

fn load(json: &Json) -> Result<Rc<Chunk>, String> {
    decode_json_text(&json.to_string()).map(Rc::new).map_err(|e| format!("invalid bytecode: {e}"))
}

impl Runner {
    /// An empty runner (no functions).
    pub fn new(projects: Arc<HashMap<u64, Project>>, stats: SharedStats, watcher: Arc<Watcher>) -> Runner {
        let mut vm = Vm::new(Value::Null);
        vm.limits = Limits::function();
        Runner {
            scratch: String::new(),
            version: 0,
            team_index: FastMap::default(),
            teams: Vec::new(),
            vm,
            host: LogHost::default(),
            projects,
            counters: HashMap::new(),
            usage: HashMap::new(),
            logs: HashMap::new(),
            stats,
            watcher,
        }
    }

    /// The version of the function set in use.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Switches to `set` if it is newer (decodes each function once per version).
    pub fn use_set(&mut self, set: &FunctionSet) {
        if set.version == self.version {
            return;
        }
        // What the functions of the old set counted is flushed with the next batch.
        for team in std::mem::take(&mut self.teams) {
            for f in team.transformations.into_iter().chain(team.destinations) {
                Self::pend(&mut self.counters, &mut self.usage, &f.id, f.counters, f.usage);
            }
        }
        self.team_index.clear();
        let disabled = self.watcher.disabled();
        let mut specs: Vec<&FunctionSpec> = set.functions.iter().filter(|f| f.enabled).collect();
        specs.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.id.cmp(&b.id)));
        for spec in specs {
            let mut broken = None;
            let chunk = match spec.kind {
                FunctionKind::Transformation => match load(&spec.bytecode) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        broken = Some(e);
                        None
                    }
                },
                // Destinations run in the delivery engine; here only their filter matters.
                FunctionKind::Destination => None,
            };
            let filter = match &spec.filter {
                Some(f) => match load(f) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        broken = Some(format!("filter: {e}"));
                        None
                    }
                },
                None => None,
            };
            let compiled = Compiled {
                id: spec.id.clone(),
                chunk,
                filter,
                broken,
                inputs: spec.inputs.clone(),
                globals: None,
                counters: FunctionCounters::default(),
                usage: Usage::default(),
                disabled: disabled.contains(&spec.id),
            };
            let teams = &mut self.teams;
            let i = *self.team_index.entry(spec.project_id).or_insert_with(|| {
                teams.push(Team::default());
                teams.len() - 1
            });
            match spec.kind {
                FunctionKind::Transformation => teams[i].transformations.push(compiled),
                FunctionKind::Destination => teams[i].destinations.push(compiled),
            }
        }
        self.version = set.version;
    }

    /// The globals of a transformation (all but `event`, set per invocation). The event itself
    /// is shared, not copied: the run is journaled (`Vm::begin_journal`) and a failed run's
    /// changes are undone.
    fn transformation_globals(&self, team_id: u64, f: &Compiled) -> Globals {
        let name = self.projects.get(&team_id).map_or("", |p| p.name.as_str());
        let project = Value::dict_from([
            ("id", Value::from(team_id as i64)),
            ("name", Value::from(name)),
            ("url", Value::from(format!("/project/{team_id}"))),
        ]);
        Globals::new(vec![
            ("event", Value::Null),
            ("person", Value::Null),
            ("groups", Value::dict_from([])),
            ("project", project),
            ("source", Value::dict_from([("name", Value::from(f.id.as_str())), ("url", Value::from(""))])),
            ("inputs", from_json(&Json::Object(f.inputs.clone()))),
        ])
    }

    /// The globals of a filter: the event's fields, set per invocation, and an empty person.
    fn filter_globals() -> Globals {
        let person_properties = Value::dict_from([]);
        let mut g = Globals::new(vec![
            ("event", Value::Null),
            ("uuid", Value::Null),
            ("distinct_id", Value::Null),
            ("timestamp", Value::Null),
            ("elements_chain", Value::Null),
            ("properties", Value::Null),
            ("person", Value::dict_from([("properties", person_properties.clone())])),
        ]);
        g.parts.push(person_properties);
        g
    }

    fn clear_filter_event(g: &Globals) {
        for key in ["event", "uuid", "distinct_id", "timestamp", "elements_chain", "properties"] {
            g.set(key, Value::Null);
        }
    }

    fn set_filter_event(g: &Globals, event: &HogEvent) {
        for key in ["event", "uuid", "distinct_id", "timestamp", "elements_chain"] {
            g.set(key, event.field(key));
        }
        g.set("properties", event.properties());
    }

    /// Runs `chunk` with `globals`, its time limit counted from `started`; `Err` carries the
    /// message for the function's log.
    fn invoke(&mut self, chunk: &Rc<Chunk>, globals: Value, started: Instant) -> Result<Value, String> {
        self.host.lines.clear();
        self.host.dropped = 0;
        self.vm.reset(globals);
        let outcome = self.vm.run_from(chunk.clone(), &mut self.host, started);
        let result = match outcome {
            Ok(Outcome::Finished(v)) => Ok(v),
            Ok(Outcome::Suspended { name, .. }) => {
                Err(format!("`{name}` is asynchronous and cannot be called from a transformation or filter"))
            }
            Err(e) => Err(e.render()),
        };
        // Release what the invocation built before the next one.
        self.vm.reset(Value::Null);
        result
    }

    fn note(&mut self, id: &str, event: &HogEvent, error: Option<&str>) {
        if self.host.lines.is_empty() && self.host.dropped == 0 && error.is_none() {
            return;
        }
        let uuid = event.text("uuid");
        let uuid = uuid.as_str();
        let lines = self.logs.entry(id.to_string()).or_default();
        for line in self.host.lines.drain(..) {
            lines.push(LogLine { level: "info", event_uuid: uuid.to_string(), message: line });
        }
        if self.host.dropped > 0 {
            lines.push(LogLine {
                level: "warn",
                event_uuid: uuid.to_string(),
                message: format!(
                    "{} more printed lines dropped (limit {MAX_LOG_LINES_PER_INVOCATION})",
                    self.host.dropped
                ),
            });
        }
        if let Some(e) = error {
            lines.push(LogLine { level: "error", event_uuid: uuid.to_string(), message: e.to_string() });
        }
    }

    /// Runs the project's transformation chain and routing on one captured event: `None` when
    /// a transformation dropped it, else the event and the destinations whose filter matched.
    /// A failing transformation is logged and counted; the event goes on unchanged.
    pub fn process(&mut self, team: u64, captured: &CapturedEvent) -> Option<(Event, Vec<String>)> {
        match HogEvent::from_captured(captured, team) {
            Ok(event) => self.process_event(event),
            Err(e) => {
                tracing::warn!(uuid = %captured.uuid, error = %e, "skipping an event that cannot be read");
                None
            }
        }
    }

    /// [`Runner::process`] on a log record as it is stored (a captured event as JSON), for the
    /// project `team_of` gives its token; `Skipped` for a record that is not a captured event or
    /// whose token belongs to no project.
    pub fn process_record(&mut self, bytes: &[u8], team_of: impl Fn(&str) -> Option<u64>) -> Processed {
        let mut data = std::mem::take(&mut self.scratch);
        let event = match RecordRef::parse(bytes, &mut data) {
            Ok(record) => team_of(record.token()).map(|team| HogEvent::from_record(&record, team, &data)),
            Err(e) => Some(Err(e)),
        };
        if data.capacity() <= 1 << 20 {
            self.scratch = data;
        }
        let Some(event) = event else { return Processed::Skipped };
        match event {
            Ok(event) => match self.process_event(event) {
                Some((event, routed)) => Processed::Kept(event, routed),
                None => Processed::Dropped,
            },
            Err(e) => {
                tracing::warn!(error = %e, "skipping an event that cannot be read");
                Processed::Skipped
            }
        }
    }

    fn process_event(&mut self, mut event: HogEvent) -> Option<(Event, Vec<String>)> {
        let Some(&i) = self.team_index.get(&event.team_id) else { return Some((event.to_event(), Vec::new())) };
        // Each invocation's time runs from the end of the previous one (one clock read each).
        let mut clock = Instant::now();
        // Taken out while they run (the runner is borrowed by the runs), then put back.
        let mut team = std::mem::take(&mut self.teams[i]);
        let kept = self.transform(&mut team.transformations, &mut event, &mut clock);
        let routed = if kept { self.route(&mut team.destinations, &event, &mut clock) } else { Vec::new() };
        self.teams[i] = team;
        kept.then(|| (event.to_event(), routed))
    }

    /// Returns false when a transformation dropped the event.
    fn transform(&mut self, chain: &mut [Compiled], event: &mut HogEvent, clock: &mut Instant) -> bool {
        for f in chain {
            if f.disabled {
                continue;
            }
            let outcome = match (&f.chunk, &f.broken) {
                (Some(chunk), _) => {
                    if f.globals.is_none() {
                        f.globals = Some(self.transformation_globals(event.team_id, f));
                    }
                    let globals = f.globals.as_ref().map_or(Value::Null, |g| {
                        g.set("event", event.value.clone());
                        g.dict.clone()
                    });
                    self.vm.begin_journal();
                    self.invoke(chunk, globals, *clock)
                }
                (None, broken) => Err(broken.clone().unwrap_or_else(|| "no bytecode".into())),
            };
            let outcome = match outcome {
                Ok(Value::Null) => Ok(false),
                Ok(v) => event.set_result(v).map(|()| true).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            let spoiled = f.globals.as_ref().is_some_and(|g| g.spoiled(&self.vm));
            // A failed transformation leaves the event as it was before it ran.
            self.vm.end_journal(outcome.is_ok());
            match &f.globals {
                Some(_) if spoiled => f.globals = None,
                Some(g) => g.set("event", Value::Null),
                None => {}
            }
            let c = self.account(f, lap(clock), outcome.is_err());
            match outcome {
                Ok(kept) => {
                    c.succeeded += 1;
                    if !kept {
                        c.dropped += 1;
                    }
                    self.note(&f.id, event, None);
                    if !kept {
                        return false;
                    }
                }
                Err(message) => {
                    c.failed += 1;
                    self.note(&f.id, event, Some(&message));
                }
            }
        }
        true
    }

    /// The enabled destinations of the event's project whose filter matches it.
    fn route(&mut self, destinations: &mut [Compiled], event: &HogEvent, clock: &mut Instant) -> Vec<String> {
        let mut matched = Vec::new();
        for d in destinations {
            if d.disabled {
                continue;
            }
            let outcome = match (&d.filter, &d.broken) {
                (_, Some(broken)) => Err(broken.clone()),
                (Some(filter), None) => {
                    let g = d.globals.get_or_insert_with(Self::filter_globals);
                    Self::set_filter_event(g, event);
                    let globals = g.dict.clone();
                    // Filters share the event's properties; whatever one changes is undone.
                    self.vm.begin_journal();
                    let matched = self.invoke(filter, globals, *clock).map(|v| v.truthy());
                    let spoiled = g.spoiled(&self.vm);
                    self.vm.end_journal(false);
                    Self::clear_filter_event(g);
                    if spoiled {
                        d.globals = None;
                    }
                    matched
                }
                (None, None) => Ok(true),
            };
            let c = self.account(d, lap(clock), outcome.is_err());
            match outcome {
                Ok(true) => {
                    c.succeeded += 1;
                    c.routed += 1;
                    matched.push(d.id.clone());
                }
                Ok(false) => {
                    c.succeeded += 1;
                    c.filtered += 1;
                }
                Err(message) => {
                    c.failed += 1;
                    self.note(&d.id, event, Some(&format!("filter failed: {message}")));
                }
            }
        }
        matched
    }

    /// Counts one invocation (and its cost for the health watcher); returns its counters.
    fn account<'f>(&self, f: &'f mut Compiled, took: std::time::Duration, failed: bool) -> &'f mut FunctionCounters {
        let config = self.watcher.config();
        let cost = config.cost(took, failed);
        if cost != 0.0 {
            f.usage.cost += cost;
            f.usage.failures += failed as u64;
            f.usage.slow += (took >= config.expensive_above) as u64;
        }
        let c = &mut f.counters;
        c.invocations += 1;
        c.record(took);
        c
    }

    /// Adds a function's counters and usage to those waiting for the next flush.
    fn pend(
        counters: &mut HashMap<String, FunctionCounters>,
        usage: &mut HashMap<String, Usage>,
        id: &str,
        c: FunctionCounters,
        u: Usage,
    ) {
        if c.invocations > 0 {
            counters.entry(id.to_string()).or_default().add(&c);
        }
        if u.cost != 0.0 || u.failures > 0 || u.slow > 0 {
            let all = usage.entry(id.to_string()).or_default();
            all.cost += u.cost;
            all.failures += u.failures;
            all.slow += u.slow;
        }
    }

    /// Reads which functions the watcher disabled (call at each batch start).
    pub fn refresh_health(&mut self) {
        let disabled = self.watcher.disabled();
        for team in &mut self.teams {
            for f in team.transformations.iter_mut().chain(team.destinations.iter_mut()) {
                f.disabled = disabled.contains(&f.id);
            }
        }
    }

    /// Hands this worker's counters, logs and usage to the shared stats and the watcher.
    pub fn flush_stats(&mut self) {
        for team in &mut self.teams {
            for f in team.transformations.iter_mut().chain(team.destinations.iter_mut()) {
                // The fraction of a microsecond not yet counted stays with the function.
                let carried = f.counters.carried_nanos;
                let c = std::mem::take(&mut f.counters);
                f.counters.carried_nanos = carried;
                Self::pend(&mut self.counters, &mut self.usage, &f.id, c, std::mem::take(&mut f.usage));
            }
        }
        if !self.usage.is_empty() {
            self.watcher.charge(&self.usage);
            self.usage.clear();
        }
        if !self.counters.is_empty() {
            self.stats.merge(&self.counters);
            self.counters.clear();
        }
        for (id, lines) in self.logs.drain() {
            self.stats.log(&id, lines);
        }
    }
}
