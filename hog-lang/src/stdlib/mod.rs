//! The Hog standard library: one explicit list of native functions (`FUNCTIONS`), the functions
//! written in Hog itself (`hog_written`), and the names of async host functions.
//!
//! Adding a function: write it in the file of its family, add its entry to that file's `FUNCTIONS`
//! slice, and add a test case. Nothing else needs to change.

use crate::bytecode::Chunk;
use crate::value::Value;
use crate::vm::{Callable, CallableKind, Closure, Host, RegexCache};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;

mod coerce;

pub use coerce::{js_number, js_scalar_string, js_string, write_js_string};
mod collections;
mod crypto;
mod dates;
mod encoding;
mod errors;
mod hog_written;
mod ip;
pub mod json;
pub mod json_reader;
mod logic;
mod math;
mod print;
mod strings;
mod types;

/// What a native function can reach while it runs.
pub struct Ctx<'a> {
    /// The embedder (printing, host services).
    pub host: &'a mut dyn Host,
    /// Compiled regexes.
    pub regex: &'a mut RegexCache,
    /// Lines printed so far in this invocation (see `Ctx::print`).
    pub printed: &'a mut usize,
    /// Most lines an invocation may print (0 for no limit).
    pub max_printed: usize,
}

impl Ctx<'_> {
    /// Prints a line through the host, counting it against the printed-lines limit.
    pub fn print(&mut self, line: &str) -> Result<(), StdlibError> {
        *self.printed += 1;
        if self.max_printed > 0 && *self.printed > self.max_printed {
            return Err(StdlibError::Limit {
                limit: "printed lines",
                message: format!(
                    "printed-lines limit reached: an invocation may print at most {} lines",
                    self.max_printed
                ),
            });
        }
        self.host.print(line);
        Ok(())
    }
}

/// Why a standard-library (or host) function call failed. The VM reports it with the function's
/// name as the operation (`jsonParse(): …`); the message says what was wrong with which argument.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StdlibError {
    /// An argument has a type the function does not take.
    #[error("argument {position} must be {expected}, got {got}")]
    WrongType {
        /// 1-based argument position.
        position: usize,
        /// What the function takes (`a string`, `an array or null`, …).
        expected: &'static str,
        /// The type name of what it got.
        got: &'static str,
    },
    /// An argument has an acceptable type but a value the function cannot use.
    #[error("{0}")]
    Invalid(String),
    /// The function needs something this host does not provide.
    #[error("not available here: {0}")]
    Unavailable(String),
    /// A sandbox limit was reached inside the function (reported as that limit).
    #[error("{message}")]
    Limit {
        /// Which limit (`memory`, `printed lines`).
        limit: &'static str,
        /// What happened.
        message: String,
    },
}

impl StdlibError {
    /// `WrongType` for argument `index` (0-based) holding `got`.
    pub fn wrong_type(index: usize, expected: &'static str, got: &Value) -> Self {
        StdlibError::WrongType { position: index + 1, expected, got: got.type_name() }
    }
}

/// What a native function returns.
pub type NativeResult = Result<Value, StdlibError>;

/// A native function's implementation.
pub type NativeFn = fn(&mut Ctx<'_>, &[Value]) -> NativeResult;

/// A standard-library function implemented in Rust.
pub struct NativeFunction {
    /// Name as called from Hog.
    pub name: &'static str,
    /// Human signature, shown by `hogpipe hog functions` and in arity errors.
    pub signature: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Fewest arguments.
    pub min_args: usize,
    /// Most arguments (`None` for variadic). Missing arguments up to this count are `null`.
    pub max_args: Option<usize>,
    /// The implementation.
    pub func: NativeFn,
    /// Examples, each a Hog expression and the `repr` of its value (`'abc'`, `[1, 2]`, `null`), or
    /// `error: TEXT` when the call must fail with a message containing TEXT. Every example is run
    /// by `tests/stdlib_examples.rs`; a function without one fails that test.
    pub examples: &'static [(&'static str, &'static str)],
}

impl std::fmt::Debug for NativeFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NativeFunction({})", self.name)
    }
}

/// Every native function family, in one explicit list.
const FAMILIES: &[&[NativeFunction]] = &[
    print::FUNCTIONS,
    types::FUNCTIONS,
    errors::FUNCTIONS,
    collections::FUNCTIONS,
    strings::FUNCTIONS,
    encoding::FUNCTIONS,
    json::FUNCTIONS,
    crypto::FUNCTIONS,
    ip::FUNCTIONS,
    dates::FUNCTIONS,
    logic::FUNCTIONS,
    math::FUNCTIONS,
];

/// Async functions performed by the host: name, min and max arguments, signature.
pub const ASYNC_FUNCTIONS: &[(&str, usize, usize, &str)] = &[
    ("fetch", 1, 2, "fetch(url: string, options?: {method, headers, body}) -> {status, body}"),
    ("sleep", 1, 1, "sleep(seconds: number) -> null"),
    ("postHogCapture", 1, 1, "postHogCapture(event: {event, distinct_id, properties}) -> null"),
];

fn registry() -> &'static HashMap<&'static str, &'static NativeFunction> {
    static REG: OnceLock<HashMap<&'static str, &'static NativeFunction>> = OnceLock::new();
    REG.get_or_init(|| FAMILIES.iter().flat_map(|f| f.iter()).map(|f| (f.name, f)).collect())
}

/// The native function of this name.
pub fn lookup(name: &str) -> Option<&'static NativeFunction> {
    registry().get(name).copied()
}

/// Every native function, sorted by name.
pub fn natives() -> Vec<&'static NativeFunction> {
    let mut v: Vec<_> = registry().values().copied().collect();
    v.sort_by_key(|f| f.name);
    v
}

/// Whether this name is an async host function.
pub fn is_async(name: &str) -> bool {
    ASYNC_FUNCTIONS.iter().any(|(n, ..)| *n == name)
}

/// Whether any standard-library function (native, Hog-written or async) has this name.
pub fn is_function(name: &str) -> bool {
    lookup(name).is_some() || bytecode_stl_name(name).is_some() || is_async(name)
}

/// Every standard-library function name.
pub fn all_names() -> impl Iterator<Item = &'static str> {
    registry()
        .keys()
        .copied()
        .chain(hog_written::FUNCTIONS.iter().map(|f| f.name))
        .chain(ASYNC_FUNCTIONS.iter().map(|f| f.0))
}

/// Minimum and maximum argument counts of a standard-library function.
pub fn arity(name: &str) -> Option<(usize, Option<usize>)> {
    if let Some(f) = lookup(name) {
        return Some((f.min_args, f.max_args));
    }
    if let Some(f) = hog_written::FUNCTIONS.iter().find(|f| f.name == name) {
        return Some((f.params.len(), Some(f.params.len())));
    }
    ASYNC_FUNCTIONS.iter().find(|f| f.0 == name).map(|f| (f.1, Some(f.2)))
}

/// Name, signature and description of every function, for listings.
pub fn describe_all() -> Vec<(&'static str, String, &'static str)> {
    let mut out: Vec<(&'static str, String, &'static str)> =
        natives().into_iter().map(|f| (f.name, f.signature.to_string(), f.description)).collect();
    for f in hog_written::FUNCTIONS {
        out.push((f.name, f.signature.to_string(), f.description));
    }
    for (name, _, _, sig) in ASYNC_FUNCTIONS {
        out.push((name, sig.to_string(), "async: suspends the VM while the host performs it"));
    }
    out.sort_by_key(|f| f.0);
    out
}

/// Every function's name and examples (natives and Hog-written ones), sorted by name.
pub fn examples_all() -> Vec<(&'static str, &'static [(&'static str, &'static str)])> {
    let mut out: Vec<_> = natives().into_iter().map(|f| (f.name, f.examples)).collect();
    out.extend(hog_written::FUNCTIONS.iter().map(|f| (f.name, f.examples)));
    out.sort_by_key(|f| f.0);
    out
}

/// The static name of a Hog-written function.
pub fn bytecode_stl_name(name: &str) -> Option<&'static str> {
    hog_written::FUNCTIONS.iter().find(|f| f.name == name).map(|f| f.name)
}

/// The parameter count and compiled chunk of a Hog-written function (compiled once per thread).
pub fn bytecode_stl_chunk(name: &str) -> Option<(usize, Rc<Chunk>)> {
    hog_written::chunk(name)
}

/// A standard-library function as a value (`let f := length`).
pub fn function_value(name: &str) -> Option<Value> {
    let (kind, argc) = if let Some(f) = lookup(name) {
        (CallableKind::Native(f), f.max_args.unwrap_or(0))
    } else if let Some(n) = bytecode_stl_name(name) {
        (CallableKind::BytecodeStl(n), arity(name).map(|a| a.0).unwrap_or(0))
    } else if is_async(name) {
        (CallableKind::Async(Rc::from(name)), arity(name).and_then(|a| a.1).unwrap_or(0))
    } else {
        return None;
    };
    let callable = Callable { name: Rc::from(name), arg_count: argc as u32, upvalue_count: 0, kind };
    Some(Value::Closure(Rc::new(Closure { callable: Rc::new(callable), upvalues: Box::new([]) })))
}

/// Argument `i`, or null when it was not passed.
pub(crate) fn arg(args: &[Value], i: usize) -> Value {
    args.get(i).cloned().unwrap_or_default()
}
