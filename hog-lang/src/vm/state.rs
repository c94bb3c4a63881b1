//! A suspended VM as data: `Vm::save` captures everything needed to continue (code, stack,
//! frames, upvalues, try handlers, globals, counters) and `Vm::restore` rebuilds a VM from it, in
//! this process or another. Shared containers keep their sharing (and cycles) through a heap
//! table; code travels as bytecode. Two encodings: JSON (`to_json`) and a compact binary form
//! (`to_bytes`, postcard).

use super::{Callable, CallableKind, Closure, Frame, TryFrame, Upvalue, Vm};
use crate::ast::Span;
use crate::bytecode::{self, Chunk, Item, Opcode};
use crate::stdlib;
use crate::value::{ArrayCell, DateTimeValue, Dict, DictCell, ErrorValue, Text, Value};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// The format version of `VmState`.
pub const STATE_VERSION: u32 = 1;

/// A suspended VM, ready to serialize.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmState {
    /// `STATE_VERSION` of the writer.
    pub version: u32,
    /// Every chunk of code the state refers to.
    pub chunks: Vec<ChunkState>,
    /// Arrays, tuples, dicts and errors, referred to by index from values.
    pub heap: Vec<HeapState>,
    /// The value stack.
    pub stack: Vec<ValueState>,
    /// Call frames, outermost first.
    pub frames: Vec<FrameState>,
    /// Active try handlers: (call depth, stack length, catch instruction).
    pub handlers: Vec<(u32, u32, u32)>,
    /// Upvalues: (stack location, closed, value).
    pub upvalues: Vec<(u32, bool, ValueState)>,
    /// Upvalue ids sorted by location (the open ones the VM may still close).
    pub sorted_upvalues: Vec<u32>,
    /// Functions declared with the legacy `DECLARE_FN`: (name, chunk, body, argc).
    pub declared: Vec<(String, u32, u32, u32)>,
    /// The globals.
    pub globals: ValueState,
    /// Operations executed so far.
    pub ops: u64,
    /// Async calls made so far.
    pub async_steps: u32,
    /// Time spent running so far, in microseconds.
    pub spent_micros: u64,
    /// Lines printed so far.
    pub printed: u32,
}

/// Code: a program as bytecode, or a standard-library function by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChunkState {
    /// A program or library chunk, as bytecode.
    Bytecode {
        /// Chunk name (`root`, …).
        name: String,
        /// Format version.
        version: i64,
        /// The bytecode elements.
        items: Vec<ItemState>,
        /// Source spans of the elements, when compiled from source.
        spans: Option<Vec<Option<(u32, u32)>>>,
        /// The source, when compiled from source.
        source: Option<String>,
    },
    /// A Hog-written standard-library function (`arrayMap`, …), rebuilt from this binary.
    Stdlib(String),
}

/// One bytecode element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ItemState {
    /// An operation number.
    Op(u8),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// `null`.
    Null,
}

/// A shared value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HeapState {
    /// An array.
    Array(Vec<ValueState>),
    /// A tuple.
    Tuple(Vec<ValueState>),
    /// A dict, in order.
    Dict(Vec<(ValueState, ValueState)>),
    /// An error: type, message, payload.
    Error(String, String, ValueState),
}

/// A value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ValueState {
    /// `null`
    Null,
    /// A boolean.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    Str(String),
    /// A heap value by index.
    Ref(u32),
    /// A function before closing.
    Callable(CallableState),
    /// A function value.
    Closure(CallableState, Vec<u32>),
    /// A date-time: seconds and zone.
    DateTime(f64, String),
    /// A date.
    Date(i32, u32, u32),
}

/// A function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallableState {
    /// Name.
    pub name: String,
    /// Parameters.
    pub arg_count: u32,
    /// Upvalues captured.
    pub upvalue_count: u32,
    /// How it runs.
    pub kind: CallableKindState,
}

/// How a function runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CallableKindState {
    /// Bytecode: chunk index and first instruction.
    Local(u32, u32),
    /// A native standard-library function by name.
    Native(String),
    /// A Hog-written standard-library function by name.
    BytecodeStl(String),
    /// An async host function by name.
    Async(String),
}

/// A call frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameState {
    /// Chunk index.
    pub chunk: u32,
    /// Next instruction.
    pub ip: u32,
    /// First stack slot of the frame.
    pub stack_start: u32,
    /// The running closure, if any.
    pub closure: Option<ValueState>,
}

/// Why a state could not be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The JSON text is not a state.
    #[error("invalid VM state JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The binary form is not a state.
    #[error("invalid VM state bytes: {0}")]
    Binary(#[from] postcard::Error),
    /// Written by an incompatible version.
    #[error("VM state version {found} is not supported (this build reads version {STATE_VERSION})")]
    Version {
        /// The version found.
        found: u32,
    },
    /// The state refers to something that does not exist or is inconsistent.
    #[error("invalid VM state: {0}")]
    Invalid(String),
    /// Its bytecode does not decode.
    #[error("invalid VM state: bytecode of chunk {name}: {error}")]
    Bytecode {
        /// Chunk name.
        name: String,
        /// The decoder's error.
        error: bytecode::DecodeError,
    },
}

impl VmState {
    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("a VM state always serializes to JSON: {e}"))
    }

    /// Reads the JSON form.
    pub fn from_json(text: &str) -> Result<Self, StateError> {
        Ok(serde_json::from_str(text)?)
    }

    /// The compact binary form.
    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_else(|e| unreachable!("a VM state always serializes: {e}"))
    }

    /// Reads the binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
        Ok(postcard::from_bytes(bytes)?)
    }
}

struct Saver {
    chunks: Vec<ChunkState>,
    chunk_ids: HashMap<*const Chunk, u32>,
    heap: Vec<HeapState>,
    heap_ids: HashMap<*const (), u32>,
    /// Referenced containers whose entries are not written yet.
    pending: Vec<(u32, Value)>,
}

impl Saver {
    fn chunk(&mut self, c: &Rc<Chunk>) -> u32 {
        let ptr = Rc::as_ptr(c);
        if let Some(&id) = self.chunk_ids.get(&ptr) {
            return id;
        }
        let id = self.chunks.len() as u32;
        let state = match c.name.strip_prefix("stl/") {
            Some(name) if stdlib::bytecode_stl_name(name).is_some() => ChunkState::Stdlib(name.to_string()),
            _ => ChunkState::Bytecode {
                name: c.name.clone(),
                version: c.version,
                items: c.bytecode.iter().map(item_state).collect(),
                spans: c
                    .bytecode_spans
                    .as_ref()
                    .map(|s| s.iter().map(|sp| sp.map(|sp| (sp.start as u32, sp.end as u32))).collect()),
                source: c.source.as_deref().map(str::to_string),
            },
        };
        self.chunks.push(state);
        self.chunk_ids.insert(ptr, id);
        id
    }

    /// The state of a value. Containers and errors become references to heap entries that
    /// `fill_heap` writes afterwards, so nesting depth never turns into recursion here or in the
    /// serialized form.
    fn value(&mut self, v: &Value) -> ValueState {
        match v {
            Value::Null => ValueState::Null,
            Value::Bool(b) => ValueState::Bool(*b),
            Value::Number(n) => ValueState::Number(*n),
            Value::Str(s) => ValueState::Str(s.to_string()),
            Value::Array(a) | Value::Tuple(a) => self.reference(Rc::as_ptr(a) as *const (), v),
            Value::Dict(d) => self.reference(Rc::as_ptr(d) as *const (), v),
            Value::Error(e) => self.reference(Rc::as_ptr(e) as *const (), v),
            Value::Callable(c) => ValueState::Callable(self.callable(c)),
            Value::Closure(c) => ValueState::Closure(self.callable(&c.callable), c.upvalues.to_vec()),
            Value::DateTime(d) => ValueState::DateTime(d.dt, d.zone.to_string()),
            Value::Date(y, m, d) => ValueState::Date(*y, *m, *d),
        }
    }

    fn reference(&mut self, ptr: *const (), v: &Value) -> ValueState {
        if let Some(&id) = self.heap_ids.get(&ptr) {
            return ValueState::Ref(id);
        }
        let id = self.reserve(ptr);
        self.pending.push((id, v.clone()));
        ValueState::Ref(id)
    }

    /// Writes the heap entries of every referenced container, one at a time.
    fn fill_heap(&mut self) {
        while let Some((id, v)) = self.pending.pop() {
            let state = match &v {
                Value::Array(a) | Value::Tuple(a) => {
                    let items: Vec<ValueState> = a.borrow().iter().map(|x| self.value(x)).collect();
                    if matches!(v, Value::Array(_)) {
                        HeapState::Array(items)
                    } else {
                        HeapState::Tuple(items)
                    }
                }
                Value::Dict(d) => HeapState::Dict(
                    d.borrow().iter().map(|(k, x)| (self.value(&k.to_value()), self.value(x))).collect(),
                ),
                Value::Error(e) => {
                    let payload = self.value(&e.payload);
                    HeapState::Error(e.kind.to_string(), e.message.to_string(), payload)
                }
                _ => continue,
            };
            self.heap[id as usize] = state;
        }
    }

    fn reserve(&mut self, ptr: *const ()) -> u32 {
        let id = self.heap.len() as u32;
        self.heap.push(HeapState::Array(Vec::new()));
        self.heap_ids.insert(ptr, id);
        id
    }

    fn callable(&mut self, c: &Callable) -> CallableState {
        let kind = match &c.kind {
            CallableKind::Local { chunk, ip } => CallableKindState::Local(self.chunk(chunk), *ip),
            CallableKind::Native(f) => CallableKindState::Native(f.name.to_string()),
            CallableKind::BytecodeStl(name) => CallableKindState::BytecodeStl(name.to_string()),
            CallableKind::Async(name) => CallableKindState::Async(name.to_string()),
        };
        CallableState { name: c.name.to_string(), arg_count: c.arg_count, upvalue_count: c.upvalue_count, kind }
    }
}

fn item_state(i: &Item) -> ItemState {
    match i {
        Item::Op(op) => ItemState::Op(*op as u8),
        Item::Int(n) => ItemState::Int(*n),
        Item::Float(f) => ItemState::Float(*f),
        Item::Str(s) => ItemState::Str(s.clone()),
        Item::Bool(b) => ItemState::Bool(*b),
        Item::Null => ItemState::Null,
    }
}

fn item(i: &ItemState) -> Result<Item, StateError> {
    Ok(match i {
        ItemState::Op(n) => {
            Item::Op(Opcode::from_u8(*n).ok_or_else(|| StateError::Invalid(format!("unknown operation {n}")))?)
        }
        ItemState::Int(n) => Item::Int(*n),
        ItemState::Float(f) => Item::Float(*f),
        ItemState::Str(s) => Item::Str(s.clone()),
        ItemState::Bool(b) => Item::Bool(*b),
        ItemState::Null => Item::Null,
    })
}

struct Loader {
    chunks: Vec<Rc<Chunk>>,
    heap: Vec<Value>,
    upvalue_count: usize,
}

impl Loader {
    fn chunk(&self, id: u32) -> Result<Rc<Chunk>, StateError> {
        self.chunks.get(id as usize).cloned().ok_or_else(|| StateError::Invalid(format!("no chunk {id}")))
    }

    fn value(&self, v: &ValueState) -> Result<Value, StateError> {
        Ok(match v {
            ValueState::Null => Value::Null,
            ValueState::Bool(b) => Value::Bool(*b),
            ValueState::Number(n) => Value::Number(*n),
            ValueState::Str(s) => Value::from(s.as_str()),
            ValueState::Ref(id) => self
                .heap
                .get(*id as usize)
                .cloned()
                .ok_or_else(|| StateError::Invalid(format!("no heap value {id}")))?,
            ValueState::Callable(c) => Value::Callable(Rc::new(self.callable(c)?)),
            ValueState::Closure(c, ups) => {
                if let Some(bad) = ups.iter().find(|&&u| u as usize >= self.upvalue_count) {
                    return Err(StateError::Invalid(format!("closure refers to missing upvalue {bad}")));
                }
                Value::Closure(Rc::new(Closure {
                    callable: Rc::new(self.callable(c)?),
                    upvalues: ups.clone().into_boxed_slice(),
                }))
            }
            ValueState::DateTime(dt, zone) => {
                Value::DateTime(Rc::new(DateTimeValue { dt: *dt, zone: Text::from(zone.as_str()) }))
            }
            ValueState::Date(y, m, d) => Value::Date(*y, *m, *d),
        })
    }

    fn callable(&self, c: &CallableState) -> Result<Callable, StateError> {
        let kind = match &c.kind {
            CallableKindState::Local(chunk, ip) => CallableKind::Local { chunk: self.chunk(*chunk)?, ip: *ip },
            CallableKindState::Native(name) => CallableKind::Native(
                stdlib::lookup(name).ok_or_else(|| StateError::Invalid(format!("unknown function {name}")))?,
            ),
            CallableKindState::BytecodeStl(name) => CallableKind::BytecodeStl(
                stdlib::bytecode_stl_name(name)
                    .ok_or_else(|| StateError::Invalid(format!("unknown function {name}")))?,
            ),
            CallableKindState::Async(name) => CallableKind::Async(Rc::from(name.as_str())),
        };
        Ok(Callable { name: Rc::from(c.name.as_str()), arg_count: c.arg_count, upvalue_count: c.upvalue_count, kind })
    }
}

impl Vm {
    /// Captures this VM (normally right after it suspended) as data.
    pub fn save(&self) -> VmState {
        let mut s = Saver {
            chunks: Vec::new(),
            chunk_ids: HashMap::new(),
            heap: Vec::new(),
            heap_ids: HashMap::new(),
            pending: Vec::new(),
        };
        let stack = self.stack.iter().map(|v| s.value(v)).collect();
        let frames = self
            .frames
            .iter()
            .map(|f| FrameState {
                chunk: s.chunk(&f.chunk),
                ip: f.ip as u32,
                stack_start: f.stack_start as u32,
                closure: f.closure.as_ref().map(|c| s.value(&Value::Closure(c.clone()))),
            })
            .collect();
        let upvalues = self.upvalues.iter().map(|u| (u.location as u32, u.closed, s.value(&u.value))).collect();
        let mut declared: Vec<(String, u32, u32, u32)> = self
            .declared
            .iter()
            .map(|(name, (chunk, body, argc))| (name.to_string(), s.chunk(chunk), *body, *argc))
            .collect();
        declared.sort();
        let globals = s.value(&self.globals);
        s.fill_heap();
        VmState {
            version: STATE_VERSION,
            chunks: s.chunks,
            heap: s.heap,
            stack,
            frames,
            handlers: self
                .throw_stack
                .iter()
                .map(|t| (t.call_depth as u32, t.stack_len as u32, t.catch_ip as u32))
                .collect(),
            upvalues,
            sorted_upvalues: self.sorted_upvalues.clone(),
            declared,
            globals,
            ops: self.ops,
            async_steps: self.async_steps as u32,
            spent_micros: self.spent.as_micros() as u64,
            printed: self.printed as u32,
        }
    }

    /// A VM continuing from a saved state (with default limits; set `limits` before resuming).
    pub fn restore(state: &VmState) -> Result<Vm, StateError> {
        if state.version != STATE_VERSION {
            return Err(StateError::Version { found: state.version });
        }
        let mut chunks = Vec::with_capacity(state.chunks.len());
        for c in &state.chunks {
            let chunk = match c {
                ChunkState::Stdlib(name) => {
                    stdlib::bytecode_stl_chunk(name)
                        .ok_or_else(|| StateError::Invalid(format!("unknown standard-library chunk {name}")))?
                        .1
                }
                ChunkState::Bytecode { name, version, items, spans, source } => {
                    let items = items.iter().map(item).collect::<Result<Vec<_>, _>>()?;
                    let spans: Option<Vec<Option<Span>>> = spans.as_ref().map(|s| {
                        s.iter().map(|sp| sp.map(|(a, b)| Span { start: a as usize, end: b as usize })).collect()
                    });
                    if spans.as_ref().is_some_and(|s| s.len() != items.len()) {
                        return Err(StateError::Invalid(format!("chunk {name}: spans do not match its bytecode")));
                    }
                    let chunk =
                        bytecode::decode(name, *version, &items, spans.as_deref(), source.as_deref().map(Rc::from))
                            .map_err(|error| StateError::Bytecode { name: name.clone(), error })?;
                    Rc::new(chunk)
                }
            };
            chunks.push(chunk);
        }
        let mut loader =
            Loader { chunks, heap: Vec::with_capacity(state.heap.len()), upvalue_count: state.upvalues.len() };
        // Containers first (empty), so references between them, cycles included, resolve.
        for h in &state.heap {
            loader.heap.push(match h {
                HeapState::Array(_) => Value::Array(Rc::new(ArrayCell::new(Vec::new()))),
                HeapState::Tuple(_) => Value::Tuple(Rc::new(ArrayCell::new(Vec::new()))),
                HeapState::Dict(_) => Value::Dict(Rc::new(DictCell::new(Dict::default()))),
                HeapState::Error(..) => Value::Null,
            });
        }
        // Errors are immutable: build each once the errors its payload is (directly) have been
        // built. Containers inside payloads are already in place and filled below.
        let mut pending: Vec<usize> =
            (0..state.heap.len()).filter(|&i| matches!(state.heap[i], HeapState::Error(..))).collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut still = Vec::new();
            for i in pending {
                let HeapState::Error(kind, message, payload) = &state.heap[i] else { continue };
                if let ValueState::Ref(p) = payload {
                    let p = *p as usize;
                    if matches!(state.heap.get(p), Some(HeapState::Error(..))) && loader.heap[p].is_null() {
                        still.push(i);
                        continue;
                    }
                }
                let payload = loader.value(payload)?;
                loader.heap[i] = Value::Error(Rc::new(ErrorValue {
                    kind: Text::from(kind.as_str()),
                    message: Text::from(message.as_str()),
                    payload,
                }));
            }
            if still.len() == before {
                return Err(StateError::Invalid("errors whose payloads refer to each other".into()));
            }
            pending = still;
        }
        for (i, h) in state.heap.iter().enumerate() {
            match (h, &loader.heap[i]) {
                (HeapState::Array(items) | HeapState::Tuple(items), Value::Array(cell) | Value::Tuple(cell)) => {
                    let items = items.iter().map(|v| loader.value(v)).collect::<Result<Vec<_>, _>>()?;
                    *cell.borrow_mut() = items;
                }
                (HeapState::Dict(entries), Value::Dict(cell)) => {
                    let mut d = Dict::default();
                    for (k, v) in entries {
                        let key = loader.value(k)?.to_key().ok_or_else(|| {
                            StateError::Invalid("a dict key is not a string, number or boolean".into())
                        })?;
                        d.insert(key, loader.value(v)?);
                    }
                    *cell.borrow_mut() = d;
                }
                _ => {}
            }
        }
        let stack = state.stack.iter().map(|v| loader.value(v)).collect::<Result<Vec<_>, _>>()?;
        let mut frames = Vec::with_capacity(state.frames.len());
        for f in &state.frames {
            let closure = match &f.closure {
                None => None,
                Some(c) => match loader.value(c)? {
                    Value::Closure(c) => Some(c),
                    _ => return Err(StateError::Invalid("a frame's closure is not a function".into())),
                },
            };
            if f.stack_start as usize > stack.len() {
                return Err(StateError::Invalid("a frame starts beyond the stack".into()));
            }
            frames.push(Frame {
                chunk: loader.chunk(f.chunk)?,
                ip: f.ip as usize,
                stack_start: f.stack_start as usize,
                closure,
            });
        }
        if frames.is_empty() {
            return Err(StateError::Invalid("no call frames".into()));
        }
        let upvalues = state
            .upvalues
            .iter()
            .map(|(location, closed, v)| {
                Ok(Upvalue { location: *location as usize, closed: *closed, value: loader.value(v)? })
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        if state.sorted_upvalues.iter().any(|&u| u as usize >= upvalues.len()) {
            return Err(StateError::Invalid("an open upvalue does not exist".into()));
        }
        let mut declared = HashMap::new();
        for (name, chunk, body, argc) in &state.declared {
            declared.insert(Rc::from(name.as_str()), (loader.chunk(*chunk)?, *body, *argc));
        }
        let mut vm = Vm::new(loader.value(&state.globals)?);
        vm.stack = stack;
        vm.frames = frames;
        vm.throw_stack = state
            .handlers
            .iter()
            .map(|&(d, s, c)| TryFrame { call_depth: d as usize, stack_len: s as usize, catch_ip: c as usize })
            .collect();
        vm.upvalues = upvalues;
        vm.sorted_upvalues = state.sorted_upvalues.clone();
        vm.declared = declared;
        vm.ops = state.ops;
        vm.async_steps = state.async_steps as usize;
        vm.spent = Duration::from_micros(state.spent_micros);
        vm.printed = state.printed as usize;
        vm.memory_check_at = vm.limits.max_memory;
        Ok(vm)
    }
}
