//! The HogVM: a stack machine over pre-decoded bytecode, with PostHog's semantics.
//!
//! This interpreter is the semantic reference for hogpipe. Semantics follow PostHog's reference
//! VM (`@posthog/hogvm`), with two deliberate differences described in HOG.md: a `return` from
//! inside a `try` drops that `try`'s handler, and `null` never crashes comparisons or
//! string functions.

mod state;

pub use state::{StateError, ValueState, VmState, STATE_VERSION};

use crate::bytecode::{Chunk, Op, Opcode, Operand};
use crate::stdlib::{self, Ctx, NativeFunction, StdlibError};
use crate::value::{Key, KeyRef, Value};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How a function value runs.
#[derive(Debug, Clone)]
pub enum CallableKind {
    /// Bytecode in a chunk, starting at an instruction.
    Local {
        /// The chunk holding the body.
        chunk: Rc<Chunk>,
        /// First instruction of the body.
        ip: u32,
    },
    /// A native standard-library function.
    Native(&'static NativeFunction),
    /// A standard-library function written in Hog (`arrayMap`, …).
    BytecodeStl(&'static str),
    /// A function the host performs asynchronously (`fetch`, `sleep`, …).
    Async(Rc<str>),
}

/// A function before closing over its upvalues.
#[derive(Debug, Clone)]
pub struct Callable {
    /// Name (`lambda` for lambdas).
    pub name: Rc<str>,
    /// Declared parameter count.
    pub arg_count: u32,
    /// Number of upvalues its closure captures.
    pub upvalue_count: u32,
    /// How it runs.
    pub kind: CallableKind,
}

/// A function value: a callable and the ids of its captured upvalues.
#[derive(Debug, Clone)]
pub struct Closure {
    /// The function.
    pub callable: Rc<Callable>,
    /// Ids into the VM's upvalue table.
    pub upvalues: Box<[u32]>,
}

#[derive(Debug, Clone)]
struct Upvalue {
    location: usize,
    closed: bool,
    value: Value,
}

#[derive(Debug, Clone)]
struct Frame {
    chunk: Rc<Chunk>,
    ip: usize,
    stack_start: usize,
    closure: Option<Rc<Closure>>,
}

#[derive(Debug, Clone, Copy)]
struct TryFrame {
    call_depth: usize,
    stack_len: usize,
    catch_ip: usize,
}

/// Limits on one invocation. Exceeding one stops the invocation with an error, never the process.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock time for the synchronous part.
    pub timeout: Duration,
    /// Maximum nested calls.
    pub max_call_depth: usize,
    /// Maximum arguments to one call.
    pub max_args: usize,
    /// Maximum suspensions on async functions.
    pub max_async_steps: usize,
    /// Maximum operations executed (0 for none).
    pub max_ops: u64,
    /// Maximum bytes the program's live values may take (0 for none); measured on the values
    /// reachable from the stack and upvalues (strings by length, containers by their slots).
    pub max_memory: usize,
    /// Maximum lines printed per invocation (0 for none).
    pub max_print_lines: usize,
}

impl Limits {
    /// PostHog's limits for functions in the pipeline (CDP): 0.5 s, 64 MB, 1000 frames,
    /// 300 arguments, 5 async steps, 25 printed lines.
    pub fn function() -> Self {
        Limits { timeout: Duration::from_millis(500), max_async_steps: 5, max_print_lines: 25, ..Limits::default() }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(5),
            max_call_depth: 1000,
            max_args: 300,
            max_async_steps: 100,
            max_ops: 0,
            max_memory: 64 << 20,
            max_print_lines: 0,
        }
    }
}

/// What the VM needs from its embedder.
pub trait Host {
    /// A line printed with `print`.
    fn print(&mut self, line: &str);
    /// Whether the host provides a synchronous function of this name (checked before the
    /// standard library, so a host may override it).
    fn has_function(&self, _name: &str) -> bool {
        false
    }
    /// Calls a synchronous host function.
    fn call(&mut self, name: &str, _args: &[Value]) -> stdlib::NativeResult {
        Err(StdlibError::Unavailable(format!("host function {name}")))
    }
    /// Whether a call to this name suspends the VM for the host to perform.
    fn is_async(&self, name: &str) -> bool {
        stdlib::is_async(name)
    }
    /// Whether this host may take over a standard-library name (through `has_function` or
    /// `is_async`). Hosts that never do return false, and the VM then calls native functions
    /// without asking about each call.
    fn overrides_stdlib(&self) -> bool {
        true
    }
}

/// A host that collects printed lines.
#[derive(Debug, Default)]
pub struct CollectingHost {
    /// Printed lines, in order.
    pub lines: Vec<String>,
}

impl Host for CollectingHost {
    fn print(&mut self, line: &str) {
        self.lines.push(line.to_string());
    }
    fn overrides_stdlib(&self) -> bool {
        false
    }
}

/// How a run ended, when it did not fail.
#[derive(Debug)]
pub enum Outcome {
    /// The program finished with this value.
    Finished(Value),
    /// The program called an async function; perform it, then `resume` with its result.
    Suspended {
        /// Function name.
        name: Rc<str>,
        /// Its arguments.
        args: Vec<Value>,
    },
}

/// What kind of failure stopped a run.
#[derive(Debug, Clone, PartialEq)]
pub enum ErrorKind {
    /// A Hog error thrown and not caught.
    Uncaught {
        /// `Error`, `RetryError`, …
        error_type: String,
        /// Its payload.
        payload: Option<String>,
    },
    /// A limit was exceeded.
    Limit(&'static str),
    /// Anything else (bad operands, invalid bytecode, failing native function).
    Runtime,
}

/// A failed run: what happened and where.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("{}", self.render())]
pub struct VmError {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
    /// The operation that failed (`GET_PROPERTY`, `CALL_GLOBAL print`, …).
    pub operation: Option<String>,
    /// The function it happened in (`main` at top level).
    pub function: Option<String>,
    /// 1-based line and column in the source, when compiled from source here.
    pub position: Option<(usize, usize)>,
}

impl VmError {
    fn runtime(message: impl Into<String>) -> Box<Self> {
        Box::new(VmError {
            kind: ErrorKind::Runtime,
            message: message.into(),
            operation: None,
            function: None,
            position: None,
        })
    }

    fn limit(which: &'static str, message: impl Into<String>) -> Box<Self> {
        let mut e = VmError::runtime(message);
        e.kind = ErrorKind::Limit(which);
        e
    }

    /// The one-line description shown to users.
    pub fn render(&self) -> String {
        let mut s = match &self.kind {
            ErrorKind::Uncaught { error_type, payload } => {
                let mut s = format!(
                    "Uncaught {error_type}: {}",
                    if self.message.is_empty() { "(no message)" } else { &self.message }
                );
                if let Some(p) = payload {
                    s += &format!(" {p}");
                }
                s
            }
            ErrorKind::Limit(_) => self.message.clone(),
            ErrorKind::Runtime => match &self.operation {
                Some(op) => format!("{op}: {}", self.message),
                None => self.message.clone(),
            },
        };
        if let Some(f) = &self.function {
            s += &format!(" (in {f}");
            if let Some((l, c)) = self.position {
                s += &format!(" at {l}:{c}");
            }
            s += ")";
        } else if let Some((l, c)) = self.position {
            s += &format!(" (at {l}:{c})");
        }
        s
    }
}

type VmResult<T> = Result<T, Box<VmError>>;

/// A pattern that does not compile as a regular expression.
#[derive(Debug, Clone, Error, PartialEq)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct InvalidRegex {
    /// The pattern as given.
    pub pattern: String,
    /// What the regex engine said.
    pub reason: String,
}

/// Cache of compiled regexes, keyed by pattern (and case sensitivity).
#[derive(Debug, Default)]
pub struct RegexCache {
    /// Case-sensitive and case-insensitive patterns.
    maps: [PatternMap; 2],
    /// The same for `LIKE` patterns, by the pattern as written.
    like: [PatternMap; 2],
}

type PatternMap = HashMap<String, Rc<regex::Regex>, std::hash::BuildHasherDefault<crate::value::FxHasher>>;

impl RegexCache {
    /// The compiled regex for a pattern (PostHog uses RE2 syntax; `regex` is RE2-like).
    pub fn get(&mut self, pattern: &str) -> Result<Rc<regex::Regex>, InvalidRegex> {
        self.get_with(pattern, false)
    }

    /// The compiled regex for a pattern, optionally case-insensitive (as a leading `(?i)`).
    pub fn get_with(&mut self, pattern: &str, case_insensitive: bool) -> Result<Rc<regex::Regex>, InvalidRegex> {
        let map = &mut self.maps[usize::from(case_insensitive)];
        if let Some(r) = map.get(pattern) {
            return Ok(r.clone());
        }
        let r = regex::RegexBuilder::new(&re2_classes(pattern))
            .case_insensitive(case_insensitive)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| InvalidRegex { pattern: pattern.to_string(), reason: e.to_string() })?;
        let r = Rc::new(r);
        if map.len() >= 64 {
            map.clear();
        }
        map.insert(pattern.to_string(), r.clone());
        Ok(r)
    }
}

/// One execution of a program (and its suspensions).
pub struct Vm {
    stack: Vec<Value>,
    frames: Vec<Frame>,
    throw_stack: Vec<TryFrame>,
    upvalues: Vec<Upvalue>,
    /// Upvalue ids sorted by stack location.
    sorted_upvalues: Vec<u32>,
    declared: HashMap<Rc<str>, (Rc<Chunk>, u32, u32)>,
    globals: Value,
    /// Limits in force.
    pub limits: Limits,
    regex: RegexCache,
    ops: u64,
    async_steps: usize,
    deadline: Instant,
    /// When the current `execute` started timing (see `execute`).
    clock: Option<Instant>,
    /// The running host's `overrides_stdlib` (asked once per run, not per call).
    host_overrides: bool,
    spent: Duration,
    /// The result of a finished run, on its way out of the loop.
    result: Value,
    /// The async call of a suspension, on its way out of the loop.
    pending: Option<(Rc<str>, Vec<Value>)>,
    /// Bytes of values created since memory was last measured.
    allocated: usize,
    /// Measure live memory when `allocated` passes this.
    memory_check_at: usize,
    /// Lines printed in this invocation.
    printed: usize,
    /// Undo records of journaled runs (see [`Vm::begin_journal`]).
    journal: Journal,
}

/// What a journaled run changed in containers that existed before it. A dict's changed keys are
/// recorded one by one (old value, or absent), which is cheap for the few assignments a
/// transformation makes; past [`MAX_KEY_RECORDS`] a dict is saved whole instead, and an array
/// always is, once per run. So the journal stays bounded by the size of what existed, however
/// many assignments the program makes.
#[derive(Default)]
struct Journal {
    active: bool,
    epoch: u64,
    saved: Vec<Saved>,
    /// `Saved::Key` records in this run.
    keyed: usize,
}

/// Single-key records per run before dicts are saved whole.
const MAX_KEY_RECORDS: usize = 64;

enum Saved {
    Array(Rc<crate::value::ArrayCell>, Vec<Value>),
    Dict(Rc<crate::value::DictCell>, crate::dict::Dict),
    /// One key of a dict before a change: its value, or `None` when it was absent.
    Key(Rc<crate::value::DictCell>, Key, Option<Value>),
}

/// Puts one key of a dict back as it was.
fn restore_key(d: &mut crate::dict::Dict, key: &Key, old: Option<Value>) {
    match old {
        Some(v) => {
            d.insert(key.clone(), v);
        }
        None => {
            d.shift_remove(key.as_ref());
        }
    }
}

impl Journal {
    /// Called before `obj[key]` is changed in place.
    #[inline]
    fn before_change(&mut self, obj: &Value, key: &Value) {
        match obj {
            Value::Dict(d) if d.stamp().get() < self.epoch => {
                // A dict the run did not build and has not saved whole.
                let Some(k) = key.to_key() else { return }; // the assignment fails
                if self.keyed < MAX_KEY_RECORDS {
                    self.keyed += 1;
                    let old = d.borrow().get(k.as_ref()).cloned();
                    self.saved.push(Saved::Key(d.clone(), k, old));
                } else {
                    // Saved whole as it is now: undone newest first, this copy and then the
                    // dict's earlier key records give back what it was before the run.
                    d.stamp().stamp_for(self.epoch);
                    let now = d.borrow().clone();
                    self.saved.push(Saved::Dict(d.clone(), now));
                }
            }
            Value::Array(a) | Value::Tuple(a) if a.stamp().stamp_for(self.epoch) => {
                let before = a.borrow().clone();
                self.saved.push(Saved::Array(a.clone(), before));
            }
            _ => {}
        }
    }
}

impl Vm {
    /// A VM that will see these globals (a dict, or null for none).
    pub fn new(globals: Value) -> Self {
        Vm {
            stack: Vec::with_capacity(64),
            frames: Vec::with_capacity(16),
            throw_stack: Vec::new(),
            upvalues: Vec::new(),
            sorted_upvalues: Vec::new(),
            declared: HashMap::new(),
            globals,
            limits: Limits::default(),
            regex: RegexCache::default(),
            ops: 0,
            async_steps: 0,
            deadline: Instant::now(),
            clock: None,
            host_overrides: true,
            spent: Duration::ZERO,
            result: Value::Null,
            pending: None,
            allocated: 0,
            memory_check_at: 0,
            printed: 0,
            journal: Journal::default(),
        }
    }

    /// Journals the runs that follow until [`Vm::end_journal`]: every dict or array that exists
    /// now is recorded before a program first changes it (a dict key by key, an array whole), so
    /// `end_journal(false)` puts back exactly what was there. A pipeline hands its event to a
    /// transformation this way instead of copying it, and restores it when the transformation
    /// fails. The cost is a record per changed dict key, and a shallow copy per changed array.
    pub fn begin_journal(&mut self) {
        self.end_journal(true);
        self.journal.epoch = crate::value::next_epoch();
        self.journal.keyed = 0;
        self.journal.active = true;
    }

    /// Whether the journal recorded a change to `value` (a dict or array that existed before it
    /// began). Ask before [`Vm::end_journal`].
    pub fn changed_in_journal(&self, value: &Value) -> bool {
        let epoch = self.journal.epoch;
        match value {
            Value::Dict(d) => {
                (epoch > 0 && d.stamp().get() == epoch)
                    || self.journal.saved.iter().any(|s| matches!(s, Saved::Key(cell, ..) if Rc::ptr_eq(cell, d)))
            }
            Value::Array(a) | Value::Tuple(a) => epoch > 0 && a.stamp().get() == epoch,
            _ => false,
        }
    }

    /// Ends the journal: keeps the changes (`keep`) or undoes every record, newest first. Returns
    /// how many records it held (a changed dict key, or a container saved whole).
    pub fn end_journal(&mut self, keep: bool) -> usize {
        self.journal.active = false;
        let changed = self.journal.saved.len();
        if keep {
            self.journal.saved.clear();
        } else {
            while let Some(saved) = self.journal.saved.pop() {
                match saved {
                    Saved::Dict(cell, before) => *cell.borrow_mut() = before,
                    Saved::Array(cell, before) => *cell.borrow_mut() = before,
                    Saved::Key(cell, key, old) => restore_key(&mut cell.borrow_mut(), &key, old),
                }
            }
        }
        changed
    }

    /// Operations executed so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Prepares the VM for a new invocation with these globals, keeping its allocations (limits
    /// stay as set).
    pub fn reset(&mut self, globals: Value) {
        self.globals = globals;
        self.declared.clear();
    }

    /// Runs a chunk from its start, as a new invocation (operation count, time spent and async
    /// steps start from zero; declared functions and globals stay).
    pub fn run(&mut self, chunk: Rc<Chunk>, host: &mut dyn Host) -> VmResult<Outcome> {
        self.start_run(chunk);
        self.execute(host, false)
    }

    /// [`Vm::run`] for a caller that has just read the clock: the time limit counts from
    /// `started`, which saves the VM reading the clock itself (a pipeline times every invocation
    /// anyway, and a clock read costs about as much as a short program's opcodes).
    pub fn run_from(&mut self, chunk: Rc<Chunk>, host: &mut dyn Host, started: Instant) -> VmResult<Outcome> {
        self.start_run(chunk);
        self.clock = Some(started);
        self.deadline = started + self.limits.timeout;
        self.execute_timed(host, false)
    }

    fn start_run(&mut self, chunk: Rc<Chunk>) {
        self.ops = 0;
        self.spent = Duration::ZERO;
        self.async_steps = 0;
        self.printed = 0;
        self.allocated = 0;
        self.memory_check_at = self.limits.max_memory;
        self.stack.clear();
        self.frames.clear();
        self.throw_stack.clear();
        self.upvalues.clear();
        self.sorted_upvalues.clear();
        self.frames.push(Frame { chunk, ip: 0, stack_start: 0, closure: None });
    }

    /// Runs a chunk on top of the current stack, keeping top-level variables (REPL). On error the
    /// stack is restored to what it was.
    pub fn run_repl(&mut self, chunk: Rc<Chunk>, host: &mut dyn Host) -> VmResult<Outcome> {
        let depth = self.stack.len();
        self.frames.clear();
        self.throw_stack.clear();
        self.frames.push(Frame { chunk, ip: 0, stack_start: 0, closure: None });
        let r = self.execute(host, true);
        if r.is_err() {
            self.close_upvalues(depth);
            self.stack.truncate(depth);
        }
        r
    }

    /// Pops the value a REPL expression left on the stack.
    pub fn pop_repl_value(&mut self) -> Value {
        self.stack.pop().unwrap_or_default()
    }

    /// Resumes after a suspension with the async function's result.
    pub fn resume(&mut self, result: Value, host: &mut dyn Host) -> VmResult<Outcome> {
        self.stack.push(result);
        self.execute(host, false)
    }

    fn pop(&mut self) -> VmResult<Value> {
        self.stack.pop().ok_or_else(|| VmError::runtime("stack is empty, can not pop"))
    }

    fn capture_upvalue(&mut self, location: usize) -> u32 {
        for &id in self.sorted_upvalues.iter().rev() {
            let up = &self.upvalues[id as usize];
            if up.location < location {
                break;
            }
            if up.location == location && !up.closed {
                return id;
            }
        }
        let id = self.upvalues.len() as u32;
        self.upvalues.push(Upvalue { location, closed: false, value: Value::Null });
        let pos = self.sorted_upvalues.partition_point(|&u| self.upvalues[u as usize].location <= location);
        self.sorted_upvalues.insert(pos, id);
        id
    }

    /// Closes every open upvalue at or above `from`, copying the stack value into it.
    #[inline]
    fn close_upvalues(&mut self, from: usize) {
        match self.sorted_upvalues.last() {
            Some(&id) if self.upvalues[id as usize].location >= from => self.close_upvalues_slow(from),
            _ => {}
        }
    }

    #[inline(never)]
    fn close_upvalues_slow(&mut self, from: usize) {
        while let Some(&id) = self.sorted_upvalues.last() {
            let up = &mut self.upvalues[id as usize];
            if up.location < from {
                break;
            }
            if !up.closed {
                up.closed = true;
                up.value = self.stack.get(up.location).cloned().unwrap_or_default();
            }
            self.sorted_upvalues.pop();
        }
    }

    /// Counts `bytes` of newly created values; past the threshold, measures what is live.
    #[inline]
    fn charge(&mut self, bytes: usize) -> VmResult<()> {
        self.allocated += bytes;
        if self.limits.max_memory > 0 && self.allocated > self.memory_check_at {
            return self.check_memory();
        }
        Ok(())
    }

    /// Measures the live values; fails past the memory limit, else sets when to measure next
    /// (after as many new bytes as could bring live memory to the limit, so no overshoot is missed).
    #[inline(never)]
    fn check_memory(&mut self) -> VmResult<()> {
        let max = self.limits.max_memory;
        let roots = self.stack.iter().chain(self.upvalues.iter().filter(|u| u.closed).map(|u| &u.value));
        let live = crate::memory::live_bytes(roots, max.saturating_add(1));
        if live > max {
            return Err(VmError::limit(
                "memory",
                format!(
                    "Memory limit of {} exceeded: the program's values take more than that",
                    crate::memory::format_bytes(max)
                ),
            ));
        }
        self.allocated = 0;
        self.memory_check_at = (max - live).max(max / 16);
        Ok(())
    }

    fn check_time(&mut self) -> VmResult<()> {
        self.start_clock();
        if Instant::now() > self.deadline {
            return Err(VmError::limit(
                "timeout",
                format!(
                    "Execution timed out after {} seconds. Performed {} ops.",
                    self.limits.timeout.as_secs_f64(),
                    self.ops
                ),
            ));
        }
        if self.limits.max_ops > 0 && self.ops > self.limits.max_ops {
            return Err(VmError::limit("ops", format!("Exceeded the limit of {} operations", self.limits.max_ops)));
        }
        Ok(())
    }

    fn annotate(&self, mut e: Box<VmError>, chunk: &Chunk, ip: usize) -> Box<VmError> {
        if e.operation.is_none() {
            e.operation = chunk.ops.get(ip).map(op_name);
        }
        if e.function.is_none() {
            let f = self.frames.last().and_then(|f| f.closure.as_ref()).map(|c| c.callable.name.to_string());
            e.function = Some(match f {
                Some(name) => format!("function `{name}`"),
                None if chunk.name == "root" => "main".to_string(),
                None => format!("`{}`", chunk.name),
            });
        }
        if e.position.is_none() {
            e.position = chunk.position(ip);
        }
        e
    }

    /// Runs until the program finishes, fails or suspends. The clock starts lazily (at the first
    /// native call or time check, which comes every 1024 operations): a short transformation that
    /// calls no function never reads it, and nothing slow can run before it starts.
    fn execute(&mut self, host: &mut dyn Host, repl: bool) -> VmResult<Outcome> {
        self.clock = None;
        self.execute_timed(host, repl)
    }

    /// Runs with the clock as it is (started when a limit check or a native call first needs it).
    fn execute_timed(&mut self, host: &mut dyn Host, repl: bool) -> VmResult<Outcome> {
        self.host_overrides = host.overrides_stdlib();
        let r = self.execute_inner(host, repl);
        if let Some(started) = self.clock.take() {
            // Time spent only matters to a run that goes on later (it is part of the saved state).
            if matches!(r, Ok(Outcome::Suspended { .. })) {
                self.spent += started.elapsed();
            }
        }
        r
    }

    #[inline]
    fn start_clock(&mut self) {
        if self.clock.is_none() {
            let now = Instant::now();
            self.clock = Some(now);
            self.deadline = now + self.limits.timeout.saturating_sub(self.spent);
        }
    }

    fn execute_inner(&mut self, host: &mut dyn Host, repl: bool) -> VmResult<Outcome> {
        let frame = self.frames.last().ok_or_else(|| VmError::runtime("nothing to run"))?;
        let mut chunk = frame.chunk.clone();
        let mut ip = frame.ip;
        let mut base = frame.stack_start;
        loop {
            let Some(op) = chunk.code.get(ip) else {
                // Ran off the end of the chunk: return null from this frame.
                let done = self.frames.pop().expect("a frame is running");
                if self.frames.is_empty() {
                    let result = if repl { Value::Null } else { self.stack.pop().unwrap_or_default() };
                    return Ok(Outcome::Finished(result));
                }
                self.close_upvalues(done.stack_start);
                self.stack.truncate(done.stack_start);
                self.stack.push(Value::Null);
                self.drop_stale_handlers();
                let f = self.frames.last().expect("checked non-empty");
                chunk = f.chunk.clone();
                ip = f.ip;
                base = f.stack_start;
                continue;
            };
            self.ops += 1;
            if self.ops & 1023 == 0 {
                if let Err(e) = self.check_time() {
                    return Err(self.annotate(e, &chunk, ip));
                }
            }
            let step = self.step(op, &chunk, ip, base, host);
            match step {
                Ok(Flow::Next) => ip += 1,
                Ok(Flow::Goto(t)) => ip = t,
                Ok(Flow::Switch) => {
                    let f = self.frames.last().expect("a frame after a call or return");
                    chunk = f.chunk.clone();
                    ip = f.ip;
                    base = f.stack_start;
                }
                Ok(Flow::Done) => return Ok(Outcome::Finished(std::mem::take(&mut self.result))),
                Ok(Flow::Suspend) => {
                    if let Some(f) = self.frames.last_mut() {
                        f.ip = ip + 1;
                    }
                    let (name, args) = self.pending.take().expect("a suspension sets its call");
                    return Ok(Outcome::Suspended { name, args });
                }
                Err(e) => {
                    if let Some(f) = self.frames.last_mut() {
                        f.ip = ip;
                    }
                    return Err(self.annotate(e, &chunk, ip));
                }
            }
        }
    }

    /// Handlers whose frame has returned can never catch again.
    fn drop_stale_handlers(&mut self) {
        let depth = self.frames.len();
        while self.throw_stack.last().is_some_and(|t| t.call_depth > depth) {
            self.throw_stack.pop();
        }
    }

    #[inline(always)]
    fn local(&self, base: usize, i: u32) -> Value {
        self.stack.get(base + i as usize).cloned().unwrap_or_default()
    }

    fn current_closure(&self) -> VmResult<Rc<Closure>> {
        self.frames
            .last()
            .and_then(|f| f.closure.clone())
            .ok_or_else(|| VmError::runtime("no upvalues outside a function"))
    }

    /// Runs the original (unfused) instruction at `ip`: the slow path of a fused instruction.
    #[inline(never)]
    fn step_original(&mut self, chunk: &Rc<Chunk>, ip: usize, base: usize, host: &mut dyn Host) -> VmResult<Flow> {
        self.step(&chunk.ops[ip], chunk, ip, base, host)
    }

    /// A fused instruction's result: pushed, or stored into local `dst`. False when that local
    /// does not exist (the caller then runs the original instructions, which report it).
    #[inline(always)]
    fn put(&mut self, base: usize, dst: Option<u32>, v: Value) -> bool {
        match dst {
            None => self.stack.push(v),
            Some(d) => match self.stack.get_mut(base + d as usize) {
                Some(slot) => *slot = v,
                None => return false,
            },
        }
        true
    }

    #[inline(always)]
    fn operand(&self, base: usize, o: Operand) -> Option<f64> {
        match o {
            Operand::Num(n) => Some(n),
            Operand::Local(i) => match self.stack.get(base + i as usize) {
                Some(Value::Number(n)) => Some(*n),
                _ => None,
            },
        }
    }

    #[inline(always)]
    fn step(&mut self, op: &Op, chunk: &Rc<Chunk>, ip: usize, base: usize, host: &mut dyn Host) -> VmResult<Flow> {
        match op {
            Op::Nop => {}
            Op::Str(s) => self.stack.push(Value::Str(s.clone())),
            Op::Num(n) => self.stack.push(Value::Number(*n)),
            Op::True => self.stack.push(Value::Bool(true)),
            Op::False => self.stack.push(Value::Bool(false)),
            Op::Null => self.stack.push(Value::Null),
            Op::Pop => {
                self.pop()?;
            }
            Op::Not => {
                let v = self.pop()?;
                self.stack.push(Value::Bool(!v.truthy()));
            }
            Op::And(n) | Op::Or(n) => {
                let is_and = matches!(op, Op::And(_));
                let n = *n as usize;
                if n > self.stack.len() {
                    return Err(VmError::runtime("stack is empty, can not pop"));
                }
                let start = self.stack.len() - n;
                let r = if is_and {
                    self.stack[start..].iter().all(Value::truthy)
                } else {
                    self.stack[start..].iter().any(Value::truthy)
                };
                self.stack.truncate(start);
                self.stack.push(Value::Bool(r));
            }
            Op::Plus | Op::Minus | Op::Multiply | Op::Divide | Op::Mod => {
                let left = self.pop()?;
                let right = self.pop()?;
                let (a, b) = match (&left, &right) {
                    (Value::Number(a), Value::Number(b)) => (*a, *b),
                    _ => (left.to_number(), right.to_number()),
                };
                let r = match op {
                    Op::Plus => a + b,
                    Op::Minus => a - b,
                    Op::Multiply => a * b,
                    Op::Divide => a / b,
                    _ => crate::bytecode::js_rem(a, b),
                };
                self.stack.push(Value::Number(r));
            }
            Op::Compare(op) => {
                let left = self.pop()?;
                let right = self.pop()?;
                let r = match (&left, &right) {
                    (Value::Number(a), Value::Number(b)) if is_numeric_compare(*op) => compare_numbers(*op, *a, *b),
                    _ => self.compare(*op, left, right)?,
                };
                self.stack.push(Value::Bool(r));
            }
            Op::GetGlobal(n) => {
                let n = *n as usize;
                if n == 0 || n > self.stack.len() {
                    return Err(VmError::runtime("invalid global lookup"));
                }
                let start = self.stack.len() - n;
                let v = self.get_global(start)?;
                self.stack.truncate(start);
                self.stack.push(v);
            }
            Op::GetLocal(i) => {
                let v = self.local(base, *i);
                self.stack.push(v);
            }
            Op::SetLocal(i) => {
                let v = self.pop()?;
                let at = base + *i as usize;
                match self.stack.get_mut(at) {
                    Some(slot) => *slot = v,
                    None => return Err(VmError::runtime(format!("invalid local variable {i}"))),
                }
            }
            Op::Return => {
                let result = self.pop()?;
                let done = self.frames.pop().expect("a frame is running");
                if self.frames.is_empty() {
                    self.result = result;
                    return Ok(Flow::Done);
                }
                self.close_upvalues(done.stack_start);
                self.stack.truncate(done.stack_start);
                self.stack.push(result);
                self.drop_stale_handlers();
                return Ok(Flow::Switch);
            }
            Op::Jump(t) => return Ok(Flow::Goto(*t as usize)),
            Op::JumpIfFalse(t) => {
                if !self.pop()?.truthy() {
                    return Ok(Flow::Goto(*t as usize));
                }
            }
            Op::JumpIfStackNotNull(t) => {
                if self.stack.last().is_some_and(|v| !v.is_null()) {
                    return Ok(Flow::Goto(*t as usize));
                }
            }
            Op::DeclareFn { name, argc, body, end } => {
                self.declared.insert(name.clone(), (chunk.clone(), *body, *argc));
                return Ok(Flow::Goto(*end as usize));
            }
            Op::Dict(n) => {
                let n = 2 * *n as usize;
                if n > self.stack.len() {
                    return Err(VmError::runtime("stack is empty, can not pop"));
                }
                let start = self.stack.len() - n;
                let mut d = crate::value::Dict::with_capacity(n / 2);
                let mut it = self.stack.drain(start..);
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    let key = k.to_key().ok_or_else(|| {
                        VmError::runtime(format!(
                            "a dict key must be a string, number, boolean or null, not {}",
                            k.type_name()
                        ))
                    })?;
                    d.insert(key, v);
                }
                drop(it);
                self.charge(crate::memory::DICT_BASE + n / 2 * crate::memory::DICT_ENTRY)?;
                self.stack.push(Value::dict(d));
            }
            Op::Array(n) | Op::Tuple(n) => {
                let n = *n as usize;
                if n > self.stack.len() {
                    return Err(VmError::runtime("stack is empty, can not pop"));
                }
                let start = self.stack.len() - n;
                let items: Vec<Value> = self.stack.drain(start..).collect();
                self.charge(crate::memory::ARRAY_BASE + n * crate::memory::SLOT)?;
                let v = if matches!(op, Op::Array(_)) { Value::array(items) } else { Value::tuple(items) };
                self.stack.push(v);
            }
            Op::GetProperty | Op::GetPropertyNullish => {
                let key = self.pop()?;
                let obj = self.pop()?;
                let v = get_property(&obj, &key)?;
                self.stack.push(v);
            }
            Op::SetProperty => {
                let value = self.pop()?;
                let key = self.pop()?;
                let obj = self.pop()?;
                if self.journal.active {
                    self.journal.before_change(&obj, &key);
                }
                let grown = set_property(&obj, &key, value)?;
                if grown > 0 {
                    self.charge(grown)?;
                }
            }
            Op::Throw => {
                let exception = self.pop()?;
                let err = match &exception {
                    Value::Error(e) => e.clone(),
                    _ => return Err(VmError::runtime("Can not throw: value is not of type Error")),
                };
                match self.throw_stack.pop() {
                    Some(t) => {
                        self.close_upvalues(t.stack_len);
                        self.stack.truncate(t.stack_len);
                        self.frames.truncate(t.call_depth.max(1));
                        self.stack.push(exception);
                        let f = self.frames.last_mut().expect("handler frame exists");
                        f.ip = t.catch_ip;
                        return Ok(Flow::Switch);
                    }
                    None => {
                        return Err(Box::new(VmError {
                            kind: ErrorKind::Uncaught {
                                error_type: err.kind.to_string(),
                                payload: if err.payload.is_null() { None } else { Some(err.payload.repr()) },
                            },
                            message: err.message.to_string(),
                            operation: None,
                            function: None,
                            position: None,
                        }))
                    }
                }
            }
            Op::Try(t) => self.throw_stack.push(TryFrame {
                call_depth: self.frames.len(),
                stack_len: self.stack.len(),
                catch_ip: *t as usize,
            }),
            Op::PopTry => {
                if self.throw_stack.pop().is_none() {
                    return Err(VmError::runtime("Invalid operation POP_TRY: no try block to pop"));
                }
            }
            Op::Callable { name, argc, upvalue_count, body, end } => {
                let callable = Callable {
                    name: name.clone(),
                    arg_count: *argc,
                    upvalue_count: *upvalue_count,
                    kind: CallableKind::Local { chunk: chunk.clone(), ip: *body },
                };
                self.stack.push(Value::Callable(Rc::new(callable)));
                return Ok(Flow::Goto(*end as usize));
            }
            Op::Closure(ups) => {
                let callable = match self.pop()? {
                    Value::Callable(c) => c,
                    other => return Err(VmError::runtime(format!("Invalid callable: {}", other.repr()))),
                };
                if ups.len() != callable.upvalue_count as usize {
                    return Err(VmError::runtime(format!(
                        "Invalid upvalue count. Expected {}, got {}",
                        callable.upvalue_count,
                        ups.len()
                    )));
                }
                let mut ids = Vec::with_capacity(ups.len());
                for &(is_local, index) in ups.iter() {
                    if is_local {
                        ids.push(self.capture_upvalue(base + index as usize));
                    } else {
                        let cl = self.current_closure()?;
                        let id = cl
                            .upvalues
                            .get(index as usize)
                            .copied()
                            .ok_or_else(|| VmError::runtime(format!("Invalid upvalue index: {index}")))?;
                        ids.push(id);
                    }
                }
                self.stack.push(Value::Closure(Rc::new(Closure { callable, upvalues: ids.into_boxed_slice() })));
            }
            Op::GetUpvalue(i) => {
                let id = self.upvalue_id(*i)?;
                let up = &self.upvalues[id];
                let v =
                    if up.closed { up.value.clone() } else { self.stack.get(up.location).cloned().unwrap_or_default() };
                self.stack.push(v);
            }
            Op::SetUpvalue(i) => {
                let id = self.upvalue_id(*i)?;
                let v = self.pop()?;
                let up = &mut self.upvalues[id];
                if up.closed {
                    up.value = v;
                } else if let Some(slot) = self.stack.get_mut(up.location) {
                    *slot = v;
                }
            }
            Op::Arith { op: arith, left, right, dst } => {
                let (Some(a), Some(b)) = (self.operand(base, *left), self.operand(base, *right)) else {
                    return self.step_original(chunk, ip, base, host);
                };
                if !self.put(base, *dst, Value::Number(arith.apply(a, b))) {
                    return self.step_original(chunk, ip, base, host);
                }
                self.ops += op.covers() as u64 - 1;
                return Ok(Flow::Goto(ip + op.covers()));
            }
            Op::CompareJump { op: cmp, target, next } => {
                let n = self.stack.len();
                let (a, b) = match self.stack.get(n.wrapping_sub(2)..) {
                    Some([Value::Number(b), Value::Number(a)]) => (*a, *b),
                    _ => return self.step_original(chunk, ip, base, host),
                };
                self.stack.truncate(n - 2);
                self.ops += 1;
                return Ok(Flow::Goto(if compare_numbers(*cmp, a, b) { *next } else { *target } as usize));
            }
            Op::CompareOperandsJump { op: cmp, left, right, target, next } => {
                let (Some(a), Some(b)) = (self.operand(base, *left), self.operand(base, *right)) else {
                    return self.step_original(chunk, ip, base, host);
                };
                self.ops += 3;
                return Ok(Flow::Goto(if compare_numbers(*cmp, a, b) { *next } else { *target } as usize));
            }
            Op::Arith2 { op: first, left, right, then } => {
                let (Some(a), Some(b)) = (self.operand(base, *left), self.operand(base, *right)) else {
                    return self.step_original(chunk, ip, base, host);
                };
                match self.stack.last_mut() {
                    Some(Value::Number(top)) => *top = then.apply(first.apply(a, b), *top),
                    _ => return self.step_original(chunk, ip, base, host),
                }
                self.ops += 3;
                return Ok(Flow::Goto(ip + 4));
            }
            Op::PopJump(t) => {
                self.pop()?;
                self.ops += 1;
                return Ok(Flow::Goto(*t as usize));
            }
            Op::ArithSet { op: arith, dst } => {
                let n = self.stack.len();
                let d = base + *dst as usize;
                let r = match self.stack.get(n.wrapping_sub(2)..) {
                    Some([Value::Number(b), Value::Number(a)]) if d < n - 2 => arith.apply(*a, *b),
                    _ => return self.step_original(chunk, ip, base, host),
                };
                self.stack.truncate(n - 2);
                self.stack[d] = Value::Number(r);
                self.ops += 1;
                return Ok(Flow::Goto(ip + 2));
            }
            Op::GetPropertyConst(key) => {
                let obj = self.pop()?;
                let v = get_property(&obj, key)?;
                self.stack.push(v);
                self.ops += 1;
                return Ok(Flow::Goto(ip + 2));
            }
            Op::GetLocalProperty { local, key } => {
                let v = match self.stack.get(base + *local as usize) {
                    Some(obj) => get_property(obj, key)?,
                    None => return self.step_original(chunk, ip, base, host),
                };
                self.stack.push(v);
                self.ops += 2;
                return Ok(Flow::Goto(ip + 3));
            }
            Op::GetLocalIndex { obj, index, dst } => {
                let (o, i) = (base + *obj as usize, base + *index as usize);
                let v = match (self.stack.get(o), self.stack.get(i)) {
                    (Some(obj), Some(key)) => match get_property(obj, key) {
                        Ok(v) => v,
                        // Errors are reported by the original instructions, with their names.
                        Err(_) => return self.step_original(chunk, ip, base, host),
                    },
                    _ => return self.step_original(chunk, ip, base, host),
                };
                if !self.put(base, *dst, v) {
                    return self.step_original(chunk, ip, base, host);
                }
                self.ops += op.covers() as u64 - 1;
                return Ok(Flow::Goto(ip + op.covers()));
            }
            Op::MoveLocal { from, to } => {
                let v = self.local(base, *from);
                match self.stack.get_mut(base + *to as usize) {
                    Some(slot) => *slot = v,
                    None => return self.step_original(chunk, ip, base, host),
                }
                self.ops += 1;
                return Ok(Flow::Goto(ip + 2));
            }
            Op::CloseUpvalue => {
                if self.stack.is_empty() {
                    return Err(VmError::runtime("stack is empty, can not pop"));
                }
                self.close_upvalues(self.stack.len() - 1);
                self.stack.pop();
            }
            Op::CallLocal(argc) => {
                let closure = match self.pop()? {
                    Value::Closure(c) => c,
                    other => {
                        return Err(VmError::runtime(format!("Invalid closure: {} is not a function", other.repr())))
                    }
                };
                let argc = *argc as usize;
                self.check_args(argc)?;
                return self.call_closure(closure, argc, chunk, ip, host);
            }
            Op::CallGlobal { name, argc, native } => {
                let argc = *argc as usize;
                self.check_args(argc)?;
                // The common case inline: a standard-library function that no declared function
                // and no host function (synchronous or async) overrides; `call_global` has the
                // full lookup order.
                if let Some(f) = native {
                    if self.declared.is_empty()
                        && (!self.host_overrides || (!host.has_function(name) && !host.is_async(name)))
                    {
                        self.call_native(f, argc, chunk.version, false, host)?;
                        return Ok(Flow::Next);
                    }
                }
                return self.call_global(name, argc, *native, chunk, ip, host);
            }
        }
        Ok(Flow::Next)
    }

    #[inline]
    fn upvalue_id(&self, i: u32) -> VmResult<usize> {
        let closure = self.frames.last().and_then(|f| f.closure.as_deref());
        match closure.and_then(|c| c.upvalues.get(i as usize)) {
            Some(&id) if (id as usize) < self.upvalues.len() => Ok(id as usize),
            _ if closure.is_none() => Err(VmError::runtime("no upvalues outside a function")),
            _ => Err(VmError::runtime(format!("Invalid upvalue index: {i}"))),
        }
    }

    fn check_args(&self, argc: usize) -> VmResult<()> {
        if argc > self.stack.len() {
            return Err(VmError::runtime("Not enough arguments on the stack"));
        }
        if argc > self.limits.max_args {
            return Err(VmError::limit(
                "arguments",
                format!("Too many arguments: {argc} (the limit is {})", self.limits.max_args),
            ));
        }
        Ok(())
    }

    fn push_frame(&mut self, frame: Frame) -> VmResult<Flow> {
        self.frames.push(frame);
        if self.frames.len() > self.limits.max_call_depth {
            return Err(VmError::limit(
                "call depth",
                format!("Call stack exceeded maximum length of {}", self.limits.max_call_depth),
            ));
        }
        Ok(Flow::Switch)
    }

    fn call_closure(
        &mut self,
        closure: Rc<Closure>,
        argc: usize,
        chunk: &Rc<Chunk>,
        ip: usize,
        host: &mut dyn Host,
    ) -> VmResult<Flow> {
        match &closure.callable.kind {
            CallableKind::Local { chunk: target, ip: body } => {
                let want = closure.callable.arg_count as usize;
                if argc > want {
                    return Err(VmError::runtime(format!("Too many arguments. Passed {argc}, expected {want}")));
                }
                for _ in argc..want {
                    self.stack.push(Value::Null);
                }
                self.frames.last_mut().expect("caller frame").ip = ip + 1;
                let frame = Frame {
                    chunk: target.clone(),
                    ip: *body as usize,
                    stack_start: self.stack.len() - want,
                    closure: Some(closure.clone()),
                };
                self.push_frame(frame)
            }
            CallableKind::Native(f) => {
                self.call_native(f, argc, chunk.version, true, host)?;
                Ok(Flow::Next)
            }
            CallableKind::BytecodeStl(name) => self.call_bytecode_stl(name, argc, ip),
            CallableKind::Async(name) => self.suspend(name.clone(), argc),
        }
    }

    fn call_native(
        &mut self,
        f: &'static NativeFunction,
        argc: usize,
        version: i64,
        pad: bool,
        host: &mut dyn Host,
    ) -> VmResult<()> {
        if argc < f.min_args {
            return Err(VmError::runtime(format!("Function {} requires at least {} arguments", f.name, f.min_args)));
        }
        if let Some(max) = f.max_args {
            if argc > max {
                return Err(VmError::runtime(format!("Function {} requires at most {max} arguments", f.name)));
            }
            if pad {
                for _ in argc..max {
                    self.stack.push(Value::Null);
                }
            }
        }
        self.start_clock();
        let n = if pad { f.max_args.unwrap_or(argc).max(argc) } else { argc };
        let start = self.stack.len() - n;
        let result = {
            let mut ctx = Ctx {
                host,
                regex: &mut self.regex,
                printed: &mut self.printed,
                max_printed: self.limits.max_print_lines,
            };
            if version == 0 {
                let mut args: Vec<Value> = self.stack[start..].to_vec();
                args.reverse();
                (f.func)(&mut ctx, &args)
            } else {
                (f.func)(&mut ctx, &self.stack[start..])
            }
        };
        self.stack.truncate(start);
        let v = result.map_err(|m| {
            let mut e = match m {
                StdlibError::Limit { limit, message } => VmError::limit(limit, message),
                other => VmError::runtime(other.to_string()),
            };
            e.operation = Some(format!("{}()", f.name));
            e
        })?;
        let cost = crate::memory::cost(&v);
        self.stack.push(v);
        self.charge(cost)
    }

    fn call_bytecode_stl(&mut self, name: &'static str, argc: usize, ip: usize) -> VmResult<Flow> {
        let (params, stl_chunk) = stdlib::bytecode_stl_chunk(name)
            .ok_or_else(|| VmError::runtime(format!("Unsupported function call: {name}")))?;
        if params != argc {
            return Err(VmError::runtime(format!("Function {name} requires exactly {params} arguments")));
        }
        self.frames.last_mut().expect("caller frame").ip = ip + 1;
        let callable = Callable {
            name: Rc::from(name),
            arg_count: params as u32,
            upvalue_count: 0,
            kind: CallableKind::Local { chunk: stl_chunk.clone(), ip: 0 },
        };
        let closure = Rc::new(Closure { callable: Rc::new(callable), upvalues: Box::new([]) });
        let frame = Frame { chunk: stl_chunk, ip: 0, stack_start: self.stack.len() - argc, closure: Some(closure) };
        self.push_frame(frame)
    }

    fn suspend(&mut self, name: Rc<str>, argc: usize) -> VmResult<Flow> {
        if self.async_steps >= self.limits.max_async_steps {
            return Err(VmError::limit(
                "async steps",
                format!("Exceeded maximum number of async steps: {}", self.limits.max_async_steps),
            ));
        }
        self.async_steps += 1;
        let start = self.stack.len() - argc;
        let args: Vec<Value> = self.stack.drain(start..).collect();
        self.pending = Some((name, args));
        Ok(Flow::Suspend)
    }

    fn call_global(
        &mut self,
        name: &Rc<str>,
        argc: usize,
        native: Option<&'static NativeFunction>,
        chunk: &Rc<Chunk>,
        ip: usize,
        host: &mut dyn Host,
    ) -> VmResult<Flow> {
        if !self.declared.is_empty() && &**name != "toString" {
            if let Some((target, body, want)) = self.declared.get(name).cloned() {
                for _ in argc..want as usize {
                    self.stack.push(Value::Null);
                }
                self.frames.last_mut().expect("caller frame").ip = ip + 1;
                let n = (want as usize).max(argc);
                let frame =
                    Frame { chunk: target, ip: body as usize, stack_start: self.stack.len() - n, closure: None };
                return self.push_frame(frame);
            }
        }
        if host.has_function(name) {
            self.start_clock();
            let start = self.stack.len() - argc;
            let mut args: Vec<Value> = self.stack.drain(start..).collect();
            if chunk.version == 0 {
                args.reverse();
            }
            let v = host.call(name, &args).map_err(|m| {
                let mut e = VmError::runtime(m.to_string());
                e.operation = Some(format!("{name}()"));
                e
            })?;
            let cost = crate::memory::cost(&v);
            self.stack.push(v);
            self.charge(cost)?;
            return Ok(Flow::Next);
        }
        if &**name != "toString" && host.is_async(name) {
            return self.suspend(name.clone(), argc);
        }
        if let Some(f) = native {
            self.call_native(f, argc, chunk.version, false, host)?;
            return Ok(Flow::Next);
        }
        if let Some(stl) = stdlib::bytecode_stl_name(name) {
            return self.call_bytecode_stl(stl, argc, ip);
        }
        Err(VmError::runtime(format!("Unsupported function call: {name}")))
    }

    /// Looks up the global whose chain is on the stack from `start` (pushed last part first).
    fn get_global(&self, start: usize) -> VmResult<Value> {
        let chain = &self.stack[start..];
        let first = &chain[chain.len() - 1];
        if let Value::Dict(d) = &self.globals {
            let root = match first {
                Value::Str(s) => d.borrow().get(KeyRef::Str(s)).cloned(),
                other => d.borrow().get(KeyRef::Str(&other.to_js_string())).cloned(),
            };
            if let Some(mut v) = root {
                for key in chain[..chain.len() - 1].iter().rev() {
                    if v.is_null() {
                        return Ok(Value::Null);
                    }
                    v = get_property(&v, key)?;
                }
                return Ok(v);
            }
        }
        if chain.len() == 1 {
            if let Some(c) = stdlib::function_value(&first.to_js_string()) {
                return Ok(c);
            }
        }
        let path: Vec<String> = chain.iter().rev().map(Value::to_js_string).collect();
        Err(VmError::runtime(format!("Global variable not found: {}", path.join("."))))
    }

    #[inline(never)]
    fn compare(&mut self, op: Opcode, left: Value, right: Value) -> VmResult<bool> {
        Ok(match op {
            Opcode::EQ => equals(&left, &right),
            Opcode::NOT_EQ => !equals(&left, &right),
            Opcode::GT | Opcode::GT_EQ | Opcode::LT | Opcode::LT_EQ => order(op, &left, &right),
            Opcode::LIKE | Opcode::ILIKE | Opcode::NOT_LIKE | Opcode::NOT_ILIKE => {
                let ci = matches!(op, Opcode::ILIKE | Opcode::NOT_ILIKE);
                let m = like(&mut self.regex, &left, &right, ci).map_err(|e| VmError::runtime(e.to_string()))?;
                if matches!(op, Opcode::LIKE | Opcode::ILIKE) {
                    m
                } else {
                    !m
                }
            }
            Opcode::IN | Opcode::NOT_IN => {
                let found = contains(&right, &left)?;
                if op == Opcode::IN {
                    found
                } else {
                    !found
                }
            }
            Opcode::REGEX | Opcode::NOT_REGEX | Opcode::IREGEX | Opcode::NOT_IREGEX => {
                let ci = matches!(op, Opcode::IREGEX | Opcode::NOT_IREGEX);
                let m = regex_match(&mut self.regex, &right, &left, ci).map_err(|e| VmError::runtime(e.to_string()))?;
                if matches!(op, Opcode::REGEX | Opcode::IREGEX) {
                    m
                } else {
                    !m
                }
            }
            _ => {
                return Err(VmError::runtime(
                    "cohorts cannot be used in real-time functions; inline the cohort's conditions",
                ))
            }
        })
    }
}

/// Whether `compare_numbers` handles this comparison.
#[inline(always)]
fn is_numeric_compare(op: Opcode) -> bool {
    matches!(op, Opcode::EQ | Opcode::NOT_EQ | Opcode::LT | Opcode::LT_EQ | Opcode::GT | Opcode::GT_EQ)
}

/// `left op right` for two numbers (JavaScript semantics: NaN compares false, except `!=`).
#[inline(always)]
fn compare_numbers(op: Opcode, left: f64, right: f64) -> bool {
    match op {
        Opcode::EQ => left == right,
        Opcode::NOT_EQ => left != right,
        Opcode::LT => left < right,
        Opcode::LT_EQ => left <= right,
        Opcode::GT => left > right,
        _ => left >= right,
    }
}

enum Flow {
    Next,
    Goto(usize),
    Switch,
    /// Finished; the result is in `Vm::result`.
    Done,
    /// Suspended; the call is in `Vm::pending`.
    Suspend,
}

/// PostHog's name of a decoded operation.
fn op_name(op: &Op) -> String {
    let code = match op {
        Op::Nop => return "NOP".into(),
        Op::GetGlobal(_) => Opcode::GET_GLOBAL,
        Op::CallGlobal { name, .. } => return format!("CALL_GLOBAL {name}"),
        Op::And(_) => Opcode::AND,
        Op::Or(_) => Opcode::OR,
        Op::Not => Opcode::NOT,
        Op::Plus => Opcode::PLUS,
        Op::Minus => Opcode::MINUS,
        Op::Multiply => Opcode::MULTIPLY,
        Op::Divide => Opcode::DIVIDE,
        Op::Mod => Opcode::MOD,
        Op::Compare(c) => *c,
        Op::True => Opcode::TRUE,
        Op::False => Opcode::FALSE,
        Op::Null => Opcode::NULL,
        Op::Str(_) => Opcode::STRING,
        Op::Num(_) => Opcode::FLOAT,
        Op::Pop => Opcode::POP,
        Op::GetLocal(_) => Opcode::GET_LOCAL,
        Op::SetLocal(_) => Opcode::SET_LOCAL,
        Op::Return => Opcode::RETURN,
        Op::Jump(_) => Opcode::JUMP,
        Op::JumpIfFalse(_) => Opcode::JUMP_IF_FALSE,
        Op::JumpIfStackNotNull(_) => Opcode::JUMP_IF_STACK_NOT_NULL,
        Op::DeclareFn { .. } => Opcode::DECLARE_FN,
        Op::Dict(_) => Opcode::DICT,
        Op::Array(_) => Opcode::ARRAY,
        Op::Tuple(_) => Opcode::TUPLE,
        Op::GetProperty => Opcode::GET_PROPERTY,
        Op::GetPropertyNullish => Opcode::GET_PROPERTY_NULLISH,
        Op::SetProperty => Opcode::SET_PROPERTY,
        Op::Throw => Opcode::THROW,
        Op::Try(_) => Opcode::TRY,
        Op::PopTry => Opcode::POP_TRY,
        Op::Callable { .. } => Opcode::CALLABLE,
        Op::Closure(_) => Opcode::CLOSURE,
        Op::CallLocal(_) => Opcode::CALL_LOCAL,
        Op::GetUpvalue(_) => Opcode::GET_UPVALUE,
        Op::SetUpvalue(_) => Opcode::SET_UPVALUE,
        Op::CloseUpvalue => Opcode::CLOSE_UPVALUE,
        // Fused instructions are named by what they start with (errors name `Chunk::ops`).
        Op::Arith { left, .. } | Op::CompareOperandsJump { left, .. } => match left {
            Operand::Local(_) => Opcode::GET_LOCAL,
            Operand::Num(_) => Opcode::FLOAT,
        },
        Op::CompareJump { op, .. } => *op,
        Op::Arith2 { left, .. } => match left {
            Operand::Local(_) => Opcode::GET_LOCAL,
            Operand::Num(_) => Opcode::FLOAT,
        },
        Op::PopJump(_) => Opcode::POP,
        Op::ArithSet { op, .. } => match op {
            crate::bytecode::Arith::Plus => Opcode::PLUS,
            crate::bytecode::Arith::Minus => Opcode::MINUS,
            crate::bytecode::Arith::Multiply => Opcode::MULTIPLY,
            crate::bytecode::Arith::Divide => Opcode::DIVIDE,
            crate::bytecode::Arith::Mod => Opcode::MOD,
        },
        Op::MoveLocal { .. } | Op::GetLocalProperty { .. } | Op::GetLocalIndex { .. } => Opcode::GET_LOCAL,
        Op::GetPropertyConst(_) => Opcode::STRING,
    };
    code.name().to_string()
}

/// `container[key]` with PostHog's rules: 1-based array indexes, negative from the end, `null`
/// for anything missing or for non-containers.
pub fn get_property(obj: &Value, key: &Value) -> VmResult<Value> {
    Ok(match obj {
        Value::Dict(d) => match KeyRef::of(key) {
            Some(k) => d.borrow().get(k).cloned().unwrap_or_default(),
            None => Value::Null,
        },
        Value::Array(a) | Value::Tuple(a) => match key {
            Value::Number(n) => {
                let a = a.borrow();
                let n = *n;
                if n == 0.0 {
                    return Err(VmError::runtime("Hog arrays start from index 1"));
                }
                let idx = if n > 0.0 { n - 1.0 } else { a.len() as f64 + n };
                if idx >= 0.0 && crate::value::is_whole(idx) {
                    a.get(idx as usize).cloned().unwrap_or_default()
                } else {
                    Value::Null
                }
            }
            Value::Str(s) if &**s == "length" => Value::Number(a.borrow().len() as f64),
            _ => Value::Null,
        },
        Value::Error(e) => match key.as_str() {
            Some("type") => Value::Str(e.kind.clone()),
            Some("message") => Value::Str(e.message.clone()),
            Some("payload") => e.payload.clone(),
            _ => Value::Null,
        },
        // PostHog's dates are plain objects: their marker key reads `true`, a number key is an
        // array index (`0` fails like on arrays), anything else is missing.
        Value::DateTime(_) | Value::Date(..) if matches!(key, Value::Number(n) if *n == 0.0) => {
            return Err(VmError::runtime("Hog arrays start from index 1"));
        }
        Value::DateTime(d) => match key.as_str() {
            Some("dt") => Value::Number(d.dt),
            Some("zone") => Value::Str(d.zone.clone()),
            Some("__hogDateTime__") => Value::Bool(true),
            _ => Value::Null,
        },
        Value::Date(y, m, d) => match key.as_str() {
            Some("year") => Value::Number(f64::from(*y)),
            Some("month") => Value::Number(f64::from(*m)),
            Some("day") => Value::Number(f64::from(*d)),
            Some("__hogDate__") => Value::Bool(true),
            _ => Value::Null,
        },
        _ => Value::Null,
    })
}

/// `container[key] := value`.
/// `obj[key] := value`. Returns how many bytes of slots the container grew by (for the memory
/// limit): a new dict entry, or the slots an array assignment past its end adds.
pub fn set_property(obj: &Value, key: &Value, value: Value) -> VmResult<usize> {
    match obj {
        Value::Dict(d) => {
            let k = key.to_key().ok_or_else(|| {
                VmError::runtime(format!(
                    "a dict key must be a string, number, boolean or null, not {}",
                    key.type_name()
                ))
            })?;
            let fresh = d.borrow_mut().insert(k, value).is_none();
            Ok(if fresh { crate::memory::DICT_ENTRY } else { 0 })
        }
        Value::Array(a) | Value::Tuple(a) => match key {
            Value::Number(n) if *n > 0.0 && crate::value::is_whole(*n) => {
                let idx = (*n - 1.0) as usize;
                let mut a = a.borrow_mut();
                let mut grown = 0;
                if idx >= a.len() {
                    if idx > a.len() + 1_000_000 {
                        return Err(VmError::runtime(format!("index {n} is too far past the end of the array")));
                    }
                    grown = (idx + 1 - a.len()) * crate::memory::SLOT;
                    a.resize(idx + 1, Value::Null);
                }
                a[idx] = value;
                Ok(grown)
            }
            Value::Number(_) => Err(VmError::runtime("Hog arrays start from index 1")),
            other => Err(VmError::runtime(format!("Can not set {} on an array", other.to_js_string()))),
        },
        other => Err(VmError::runtime(format!(
            "Can not set {} on element of type {}",
            key.to_js_string(),
            other.type_name()
        ))),
    }
}

/// Aligns types for comparison the way PostHog's VM does.
fn unify(left: &Value, right: &Value) -> Option<(Value, Value)> {
    use Value::*;
    Some(match (left, right) {
        (Number(_), Str(s)) => (left.clone(), Number(crate::value::js_string_to_number(s))),
        (Str(s), Number(_)) => (Number(crate::value::js_string_to_number(s)), right.clone()),
        (Bool(_), Str(s)) => (left.clone(), Bool(&**s == "true")),
        (Str(s), Bool(_)) => (Bool(&**s == "true"), right.clone()),
        (Bool(b), Number(_)) => (Number(f64::from(u8::from(*b))), right.clone()),
        (Number(_), Bool(b)) => (left.clone(), Number(f64::from(u8::from(*b)))),
        // Dates and date-times compare by epoch seconds (a date at midnight UTC), also against a
        // string in PostHog's date-like grammar.
        (DateTime(_) | Date(..), DateTime(_) | Date(..)) => {
            (Number(left.temporal_seconds()?), Number(right.temporal_seconds()?))
        }
        (DateTime(_) | Date(..), Str(s)) => {
            (Number(left.temporal_seconds()?), Number(crate::value::parse_date_like(s)?.utc_seconds()))
        }
        (Str(s), DateTime(_) | Date(..)) => {
            (Number(crate::value::parse_date_like(s)?.utc_seconds()), Number(right.temporal_seconds()?))
        }
        _ => return None,
    })
}

/// Lexicographic comparison of two arrays of finite numbers.
fn numeric_arrays(left: &Value, right: &Value) -> Option<std::cmp::Ordering> {
    let (a, b) = match (left, right) {
        (Value::Array(a) | Value::Tuple(a), Value::Array(b) | Value::Tuple(b)) => (a.borrow(), b.borrow()),
        _ => return None,
    };
    let finite = |v: &Value| matches!(v, Value::Number(n) if n.is_finite());
    if !a.iter().all(finite) || !b.iter().all(finite) {
        return None;
    }
    for (x, y) in a.iter().zip(b.iter()) {
        let (x, y) = (x.as_number().unwrap_or(0.0), y.as_number().unwrap_or(0.0));
        if x != y {
            return Some(if x < y { std::cmp::Ordering::Less } else { std::cmp::Ordering::Greater });
        }
    }
    Some(a.len().cmp(&b.len()))
}

/// `left = right`.
pub fn equals(left: &Value, right: &Value) -> bool {
    if let Some((l, r)) = unify(left, right) {
        return l.strict_eq(&r);
    }
    if let Some(o) = numeric_arrays(left, right) {
        return o == std::cmp::Ordering::Equal;
    }
    left.strict_eq(right)
}

/// `<`, `<=`, `>`, `>=`. Any comparison with `null` is false.
pub fn order(op: Opcode, left: &Value, right: &Value) -> bool {
    if left.is_null() || right.is_null() {
        return false;
    }
    let ord = if let Some((l, r)) = unify(left, right) {
        js_order(&l, &r)
    } else if let Some(o) = numeric_arrays(left, right) {
        Some(o)
    } else {
        js_order(left, right)
    };
    ord.is_some_and(|o| ordering_satisfies(op, o))
}

/// Whether an ordering satisfies `>`, `>=`, `<` or `<=` (anything else is taken as `<=`).
pub fn ordering_satisfies(op: Opcode, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Opcode::GT => o == Greater,
        Opcode::GT_EQ => o != Less,
        Opcode::LT => o == Less,
        _ => o != Greater,
    }
}

/// JavaScript's abstract relational comparison: strings by code units, otherwise numerically.
pub fn js_order(left: &Value, right: &Value) -> Option<std::cmp::Ordering> {
    let prim = |v: &Value| -> Value {
        match v {
            Value::Array(_)
            | Value::Tuple(_)
            | Value::Dict(_)
            | Value::Error(_)
            | Value::Closure(_)
            | Value::DateTime(_)
            | Value::Date(..) => Value::from(v.to_js_string()),
            other => other.clone(),
        }
    };
    let (l, r) = (prim(left), prim(right));
    if let (Value::Str(a), Value::Str(b)) = (&l, &r) {
        return Some(a.encode_utf16().cmp(b.encode_utf16()));
    }
    l.to_number().partial_cmp(&r.to_number())
}

/// `needle in haystack`: element of an array or tuple, substring of a string, key of a dict.
pub fn contains(haystack: &Value, needle: &Value) -> VmResult<bool> {
    Ok(match haystack {
        Value::Array(a) | Value::Tuple(a) => a.borrow().iter().any(|v| v.same_value_zero(needle)),
        Value::Str(s) => match needle {
            Value::Str(n) => s.contains(&**n),
            other => s.contains(other.to_js_string().as_str()),
        },
        Value::Dict(d) => needle.to_key().is_some_and(|k| d.borrow().contains_key(&k)),
        Value::Null => false,
        other => {
            return Err(VmError::runtime(format!(
                "`in` needs an array, tuple, string or dict, not {}",
                other.type_name()
            )))
        }
    })
}

/// RE2 (PostHog's engine) and JavaScript make `\d`, `\w`, `\s` and `\b` ASCII-only; Rust's
/// `regex` makes them Unicode-aware. Rewrites them to their ASCII forms so `match('٣', '\\d')` is
/// false as in PostHog. Negated classes inside brackets (`[\D]`) are left as they are.
fn re2_classes(pattern: &str) -> std::borrow::Cow<'_, str> {
    if !pattern.contains('\\') {
        return std::borrow::Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut in_class = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push(c);
                    break;
                };
                match (n, in_class) {
                    ('d', false) => out.push_str("[0-9]"),
                    ('D', false) => out.push_str("[^0-9]"),
                    ('w', false) => out.push_str("[0-9A-Za-z_]"),
                    ('W', false) => out.push_str("[^0-9A-Za-z_]"),
                    ('s', false) => out.push_str("[\\t\\n\\x0B\\x0C\\r ]"),
                    ('S', false) => out.push_str("[^\\t\\n\\x0B\\x0C\\r ]"),
                    ('b', false) => out.push_str("(?-u:\\b)"),
                    ('B', false) => out.push_str("(?-u:\\B)"),
                    ('d', true) => out.push_str("0-9"),
                    ('w', true) => out.push_str("0-9A-Za-z_"),
                    ('s', true) => out.push_str("\\t\\n\\x0B\\x0C\\r "),
                    _ => {
                        out.push(c);
                        out.push(n);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` right after `[` or `[^` is a literal.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push(']');
                    chars.next();
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// SQL `LIKE`: `%` any run, `_` one character; the rest literal.
pub fn like(
    cache: &mut RegexCache,
    value: &Value,
    pattern: &Value,
    case_insensitive: bool,
) -> Result<bool, InvalidRegex> {
    let pattern = text_of(pattern);
    let map = &mut cache.like[usize::from(case_insensitive)];
    let r = match map.get(&*pattern) {
        Some(r) => r.clone(),
        None => {
            let mut re = String::with_capacity(pattern.len() + 8);
            if case_insensitive {
                re.push_str("(?i)");
            }
            for c in pattern.chars() {
                match c {
                    '%' => re.push_str(".*"),
                    '_' => re.push('.'),
                    c => re.push_str(&regex::escape(c.encode_utf8(&mut [0; 4]))),
                }
            }
            let r = cache.get(&re)?;
            let map = &mut cache.like[usize::from(case_insensitive)];
            if map.len() >= 64 {
                map.clear();
            }
            map.insert(pattern.to_string(), r.clone());
            r
        }
    };
    Ok(r.is_match(&text_of(value)))
}

/// `value =~ pattern`: false when either side is falsy, as in PostHog.
pub fn regex_match(
    cache: &mut RegexCache,
    pattern: &Value,
    value: &Value,
    case_insensitive: bool,
) -> Result<bool, InvalidRegex> {
    if !pattern.truthy() || !value.truthy() {
        return Ok(false);
    }
    let r = cache.get_with(&text_of(pattern), case_insensitive)?;
    Ok(r.is_match(&text_of(value)))
}

/// A value's text for matching: strings as they are, anything else through `String(x)`.
fn text_of(v: &Value) -> std::borrow::Cow<'_, str> {
    match v {
        Value::Str(s) => std::borrow::Cow::Borrowed(&**s),
        other => std::borrow::Cow::Owned(other.to_js_string()),
    }
}
