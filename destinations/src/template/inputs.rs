//! A function's inputs: validated against the template's schema, compiled once when the function
//! is created, rendered per event.
//!
//! Rendering follows PostHog (`generate_template_bytecode` when a function is saved,
//! `buildGlobalsWithInputs`/`formatInput` per event): every string of a `string`, `boolean`,
//! `json` or `dictionary` input, also inside arrays and objects, is a Hog template. Text between
//! `{` and `}` is a Hog expression; a string that is exactly one `{expr}` yields the expression's
//! value (a dict stays a dict), any other string yields text, as `concat` of its pieces (so `null`
//! becomes empty text). `\{` is a literal brace; `\n`, `\t`, `\\`, … are the usual escapes.
//! Inputs render in dependency order, and one may read another through `inputs.<key>`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hog_lang::ast::Span;
use hog_lang::bytecode::{self, Item};
use hog_lang::diagnostics::{did_you_mean, line_col};
use hog_lang::value::{from_json, Key, KeyRef};
use hog_lang::vm::Limits;
use hog_lang::{compile, Chunk, CompileOptions, Host, Outcome, Value, Vm};
use serde_json::{Map, Value as Json};

use super::{InputSchema, InputType, REDACTED};

/// One problem with one input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// A required input is missing, `null` or empty.
    #[error("input `{key}` is required")]
    Missing {
        /// The input.
        key: String,
    },
    /// The input is not in the schema.
    #[error("unknown input `{key}`{}", did_you_mean.as_ref().map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default())]
    Unknown {
        /// The input as given.
        key: String,
        /// The closest key of the schema.
        did_you_mean: Option<String>,
    },
    /// The value has the wrong type.
    #[error("input `{key}` must be {expected}, not {found}")]
    Type {
        /// The input.
        key: String,
        /// What the schema wants.
        expected: &'static str,
        /// What was given.
        found: String,
    },
    /// A `choice` input's value is not one of the choices.
    #[error("input `{key}` is {value}, which is not one of {allowed}")]
    Choice {
        /// The input.
        key: String,
        /// The value as JSON.
        value: String,
        /// The allowed values.
        allowed: String,
    },
    /// A template string does not compile.
    #[error("input `{path}`, column {column}: {message}")]
    Template {
        /// The input, with the path inside it (`body.text`, `blocks[1].text`).
        path: String,
        /// 1-based column in the string (in characters).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Inputs refer to each other in a circle.
    #[error("input `{key}` depends on itself through `inputs.…` references")]
    Cycle {
        /// One input of the cycle.
        key: String,
    },
}

impl InputError {
    /// The top-level input key this error is about.
    pub fn key(&self) -> &str {
        let k = match self {
            InputError::Missing { key }
            | InputError::Unknown { key, .. }
            | InputError::Type { key, .. }
            | InputError::Choice { key, .. }
            | InputError::Cycle { key } => key.as_str(),
            InputError::Template { path, .. } => path.as_str(),
        };
        let end = k.find(['.', '[']).unwrap_or(k.len());
        &k[..end]
    }
}

/// Every problem found with a function's inputs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InputsError(pub Vec<InputError>);

/// Why inputs could not be rendered for an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("input `{path}`: {message}")]
pub struct RenderError {
    /// The input and the path inside it.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

fn type_name(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(_) => "a boolean".into(),
        Json::Number(_) => "a number".into(),
        Json::String(_) => "a string".into(),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

/// Python's truthiness, as PostHog's validation uses it (`if not value: skip the type checks`).
fn is_falsy(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
    }
}

/// Checks inputs against a schema and returns them with defaults applied (keys in schema order).
/// With `refuse_unknown`, keys the schema does not list are errors.
pub fn validate(
    schema: &[InputSchema],
    inputs: &Map<String, Json>,
    refuse_unknown: bool,
) -> Result<Map<String, Json>, InputsError> {
    let mut errors = Vec::new();
    if refuse_unknown {
        for key in inputs.keys() {
            if !schema.iter().any(|i| &i.key == key) {
                let hint = did_you_mean(key, schema.iter().map(|i| i.key.as_str())).map(str::to_string);
                errors.push(InputError::Unknown { key: key.clone(), did_you_mean: hint });
            }
        }
    }
    let mut out = Map::with_capacity(schema.len());
    for item in schema {
        let given = inputs.get(&item.key).filter(|v| !v.is_null());
        let Some(value) = given.or(item.default.as_ref()) else {
            if item.required {
                errors.push(InputError::Missing { key: item.key.clone() });
            }
            continue;
        };
        if item.required && (value.is_null() || value.as_str() == Some("")) {
            errors.push(InputError::Missing { key: item.key.clone() });
            continue;
        }
        if let Err(e) = check_value(item, value) {
            errors.push(e);
            continue;
        }
        out.insert(item.key.clone(), value.clone());
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(InputsError(errors))
    }
}

/// Checks one value's type against its schema item (falsy values pass, as in PostHog).
pub(crate) fn check_value(item: &InputSchema, value: &Json) -> Result<(), InputError> {
    if is_falsy(value) {
        return Ok(());
    }
    let wrong = |expected: &'static str| InputError::Type { key: item.key.clone(), expected, found: type_name(value) };
    match item.kind {
        InputType::String | InputType::IntegrationField => {
            if !value.is_string() {
                return Err(wrong("a string"));
            }
        }
        InputType::Number => {
            if !value.is_number() {
                return Err(wrong("a number"));
            }
        }
        InputType::Boolean => {
            if !(value.is_boolean() || (item.templating && value.is_string())) {
                return Err(wrong(if item.templating { "a boolean or a template string" } else { "a boolean" }));
            }
        }
        InputType::Dictionary => {
            if !value.is_object() {
                return Err(wrong("an object"));
            }
        }
        InputType::Integration => {
            if !value.is_object() {
                return Err(wrong("an object with the account's credentials"));
            }
        }
        InputType::Json => {}
        InputType::Choice => {
            let choices = item.choices.as_deref().unwrap_or_default();
            if !choices.is_empty() && !choices.iter().any(|c| &c.value == value) {
                let allowed = choices.iter().map(|c| c.value.to_string()).collect::<Vec<_>>().join(", ");
                return Err(InputError::Choice { key: item.key.clone(), value: value.to_string(), allowed });
            }
        }
    }
    Ok(())
}

/// The inputs with every sensitive value (secret inputs and integrations) replaced by
/// [`REDACTED`].
pub fn redact(schema: &[InputSchema], inputs: &Map<String, Json>) -> Map<String, Json> {
    inputs
        .iter()
        .map(|(k, v)| {
            let sensitive = schema.iter().any(|i| &i.key == k && i.is_sensitive());
            (k.clone(), if sensitive && !v.is_null() { Json::String(REDACTED.into()) } else { v.clone() })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Template strings

enum Piece {
    Text(String),
    /// An expression and its byte offset in the template string.
    Expr(String, usize),
}

/// Splits a template string into text and `{expression}` pieces, as PostHog's lexer does
/// for "full template strings".
fn split(s: &str) -> Result<Vec<Piece>, (usize, String)> {
    let bytes = s.as_bytes();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() => {
                let mapped = match bytes[i + 1] {
                    b'{' => Some("{"),
                    b'b' => Some("\u{8}"),
                    b'f' => Some("\u{c}"),
                    b'r' => Some("\r"),
                    b'n' => Some("\n"),
                    b't' => Some("\t"),
                    b'0' => Some(""),
                    b'a' => Some("\u{7}"),
                    b'v' => Some("\u{b}"),
                    b'\\' => Some("\\"),
                    _ => None,
                };
                match mapped {
                    Some(m) => {
                        text.push_str(m);
                        i += 2;
                    }
                    None => {
                        text.push('\\');
                        i += 1;
                    }
                }
            }
            b'{' => {
                let end = closing_brace(bytes, i + 1).ok_or((i, "`{` is never closed by `}`".to_string()))?;
                let expr = &s[i + 1..end];
                if expr.trim().is_empty() {
                    return Err((i, "empty `{}`: write an expression between the braces, or `\\{` for a brace".into()));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Expr(expr.to_string(), i + 1));
                i = end + 1;
            }
            _ => {
                // Copy one whole character.
                let len = s[i..].chars().next().map_or(1, char::len_utf8);
                text.push_str(&s[i..i + len]);
                i += len;
            }
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The index of the `}` closing a `{` whose contents start at `from`, skipping quoted strings and
/// nested braces.
fn closing_brace(bytes: &[u8], from: usize) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A template string compiled to bytecode (`Send`: decoded into a chunk per thread).
#[derive(Debug)]
struct CompiledTemplate {
    items: Vec<Item>,
    spans: Vec<Option<Span>>,
    source: Arc<str>,
}

/// A compiled string: its value when constant, else the compiled template.
enum Compiled {
    Const(String),
    Template(CompiledTemplate),
}

/// Compiles one template string; errors carry the 1-based column in the original string.
fn compile_string(s: &str) -> Result<Compiled, (usize, String)> {
    let column = |offset: usize| line_col(s, offset).1;
    let pieces = split(s).map_err(|(at, msg)| (column(at), msg))?;
    let mut source = String::from("return ");
    // (offset in `source`, offset in `s`, length) of each expression.
    let mut map: Vec<(usize, usize, usize)> = Vec::new();
    let mut push_expr = |source: &mut String, expr: &str, at: usize| {
        source.push_str("(\n");
        map.push((source.len(), at, expr.len()));
        source.push_str(expr);
        source.push_str("\n)");
    };
    match pieces.as_slice() {
        [] => return Ok(Compiled::Const(String::new())),
        [Piece::Text(t)] => return Ok(Compiled::Const(t.clone())),
        [Piece::Expr(e, at)] => push_expr(&mut source, e, *at),
        _ => {
            source.push_str("concat(");
            for (n, p) in pieces.iter().enumerate() {
                if n > 0 {
                    source.push_str(", ");
                }
                match p {
                    Piece::Text(t) => source.push_str(&hog_lang::value::escape_string(t)),
                    Piece::Expr(e, at) => push_expr(&mut source, e, *at),
                }
            }
            source.push(')');
        }
    }
    let code = compile(&source, &CompileOptions::default()).map_err(|d| {
        let first = d.0.into_iter().next();
        let (start, message) = match first {
            Some(diag) => (diag.span.start, diag.message),
            None => (0, "does not compile".to_string()),
        };
        let original = map
            .iter()
            .find(|(gen, _, len)| start >= *gen && start <= gen + len)
            .map(|(gen, orig, _)| orig + (start - gen))
            .or_else(|| map.first().map(|m| m.1))
            .unwrap_or(0);
        (column(original), message)
    })?;
    Ok(Compiled::Template(CompiledTemplate { items: code.items, spans: code.spans, source: Arc::from(source) }))
}

/// Names `X` of `inputs.X` mentioned in a template string's expressions.
fn input_references(s: &str, out: &mut Vec<String>) {
    let Ok(pieces) = split(s) else { return };
    for p in pieces {
        let Piece::Expr(e, _) = p else { continue };
        let mut rest = e.as_str();
        while let Some(at) = rest.find("inputs.") {
            let before_ok =
                at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric() && rest.as_bytes()[at - 1] != b'_';
            let tail = &rest[at + "inputs.".len()..];
            let name: String =
                tail.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '$').collect();
            if before_ok && !name.is_empty() {
                out.push(name);
            }
            rest = tail;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compiled inputs

/// An input value with its templates compiled; `Template(i)` is the `i`th compiled template.
#[derive(Debug)]
enum Node {
    Const(Json),
    Template(usize),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

impl Node {
    /// The value of a `Const` node (`null` for any other).
    fn into_const(self) -> Json {
        match self {
            Node::Const(j) => j,
            _ => Json::Null,
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A function's inputs, validated and compiled once; [`CompiledInputs::render`] evaluates them per
/// event. Cheap to share between threads (`Arc`); each thread decodes the bytecode once.
#[derive(Debug)]
pub struct CompiledInputs {
    /// Unique in the process: the key of the per-thread decoded chunks.
    id: u64,
    /// `(key, value)` in render order (dependencies first).
    entries: Vec<(String, Node)>,
    templates: Vec<CompiledTemplate>,
    /// Paths of the templates (`body.text`), for errors.
    paths: Vec<String>,
    /// Keys whose values are sensitive (secret inputs and integrations).
    sensitive: Vec<String>,
}

impl CompiledInputs {
    /// Validates `inputs` against `schema` (unknown keys refused), applies defaults and compiles
    /// every templated string.
    pub fn new(schema: &[InputSchema], inputs: &Map<String, Json>) -> Result<CompiledInputs, InputsError> {
        let values = validate(schema, inputs, true)?;
        Self::compile_only(schema, &values)
    }

    /// Compiles inputs that need no schema (every string is a template, as for `json` inputs).
    pub fn without_schema(inputs: &Map<String, Json>) -> Result<CompiledInputs, InputsError> {
        Self::build(inputs.iter().map(|(k, v)| (k.clone(), v.clone(), true, false)).collect())
    }

    /// Compiles values already validated against `schema` (no checks; keys not in the schema are
    /// compiled like `json` inputs).
    pub fn compile_only(schema: &[InputSchema], values: &Map<String, Json>) -> Result<CompiledInputs, InputsError> {
        let mut items = Vec::with_capacity(values.len());
        for (key, value) in values {
            let item = schema.iter().find(|i| &i.key == key);
            let templated = item.is_none_or(|i| i.templating && i.kind.is_templated());
            let sensitive = item.is_some_and(InputSchema::is_sensitive);
            items.push((key.clone(), value.clone(), templated, sensitive));
        }
        Self::build(items)
    }

    fn build(items: Vec<(String, Json, bool, bool)>) -> Result<CompiledInputs, InputsError> {
        let mut errors = Vec::new();
        let mut templates = Vec::new();
        let mut paths = Vec::new();
        let mut nodes = Vec::with_capacity(items.len());
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(items.len());
        let keys: Vec<&str> = items.iter().map(|(k, ..)| k.as_str()).collect();
        for (key, value, templated, _) in &items {
            let mut refs = Vec::new();
            let node = if *templated {
                compile_node(value, key, &mut templates, &mut paths, &mut errors, &mut refs)
            } else {
                Node::Const(value.clone())
            };
            nodes.push(Some(node));
            deps.push(refs.iter().filter_map(|r| keys.iter().position(|k| k == r)).collect());
        }
        // Render order: dependencies first, otherwise as given.
        let mut order = Vec::with_capacity(items.len());
        let mut state = vec![0u8; items.len()]; // 0 new, 1 visiting, 2 done
        for i in 0..items.len() {
            if let Err(k) = visit(i, &deps, &mut state, &mut order) {
                errors.push(InputError::Cycle { key: items[k].0.clone() });
                break;
            }
        }
        if !errors.is_empty() {
            return Err(InputsError(errors));
        }
        let entries = order.into_iter().filter_map(|i| nodes[i].take().map(|n| (items[i].0.clone(), n))).collect();
        Ok(CompiledInputs {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            entries,
            templates,
            paths,
            sensitive: items.iter().filter(|i| i.3).map(|i| i.0.clone()).collect(),
        })
    }

    /// Keys of the inputs, in render order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Renders every input for one event: `globals` is the dict the function will see (`event`,
    /// `person`, …); its `inputs` entry is set to the rendered inputs as they are built (so an input
    /// may read one rendered before it), and that dict is returned.
    pub fn render(&self, globals: &Value) -> Result<Value, RenderError> {
        let Value::Dict(g) = globals else {
            return Err(RenderError { path: String::new(), message: "the globals are not a dict".into() });
        };
        let inputs = Value::dict_from([]);
        g.borrow_mut().insert(Key::str("inputs"), inputs.clone());
        if self.entries.is_empty() {
            return Ok(inputs);
        }
        let chunks = self.chunks()?;
        let mut vm = render_vm(globals.clone());
        for (key, node) in &self.entries {
            let v = self.render_node(node, &chunks, &mut vm)?;
            if let Value::Dict(d) = &inputs {
                d.borrow_mut().insert(Key::str(key), v);
            }
        }
        Ok(inputs)
    }

    /// Renders the inputs to JSON (for tests and previews).
    pub fn render_json(&self, globals: &Value) -> Result<Json, RenderError> {
        self.render(globals).map(|v| hogpipe_dataflow::event::to_json(&v))
    }

    fn render_node(&self, node: &Node, chunks: &[Rc<Chunk>], vm: &mut Vm) -> Result<Value, RenderError> {
        Ok(match node {
            Node::Const(j) => from_json(j),
            Node::Template(i) => {
                let path = || self.paths.get(*i).cloned().unwrap_or_default();
                let Some(chunk) = chunks.get(*i) else {
                    return Err(RenderError { path: path(), message: "missing compiled template".into() });
                };
                let mut host = InputHost;
                match vm.run(chunk.clone(), &mut host) {
                    Ok(Outcome::Finished(v)) => v,
                    Ok(Outcome::Suspended { name, .. }) => {
                        return Err(RenderError {
                            path: path(),
                            message: format!("`{name}` is asynchronous and cannot be used in an input"),
                        });
                    }
                    Err(e) => return Err(RenderError { path: path(), message: e.render() }),
                }
            }
            Node::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for n in items {
                    out.push(self.render_node(n, chunks, vm)?);
                }
                Value::array(out)
            }
            Node::Object(entries) => {
                let mut d = hog_lang::value::Dict::with_capacity(entries.len());
                for (k, n) in entries {
                    d.insert(Key::str(k), self.render_node(n, chunks, vm)?);
                }
                Value::dict(d)
            }
        })
    }

    /// This thread's decoded chunks of the templates (decoded on first use).
    fn chunks(&self) -> Result<Rc<[Rc<Chunk>]>, RenderError> {
        CHUNKS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some(c) = cache.get(&self.id) {
                return Ok(c.clone());
            }
            let mut out = Vec::with_capacity(self.templates.len());
            for (i, t) in self.templates.iter().enumerate() {
                let chunk =
                    bytecode::decode("input", bytecode::VERSION, &t.items, Some(&t.spans), Some(Rc::from(&*t.source)))
                        .map_err(|e| RenderError {
                            path: self.paths.get(i).cloned().unwrap_or_default(),
                            message: e.to_string(),
                        })?;
                out.push(Rc::new(chunk));
            }
            let chunks: Rc<[Rc<Chunk>]> = out.into();
            if cache.len() >= CHUNK_CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(self.id, chunks.clone());
            Ok(chunks)
        })
    }

    /// The rendered values of sensitive inputs (strings, and the strings directly inside dicts),
    /// to redact from log lines as PostHog does.
    pub fn sensitive_values(&self, rendered: &Value) -> Vec<String> {
        let mut out = Vec::new();
        let Value::Dict(d) = rendered else { return out };
        let d = d.borrow();
        for key in &self.sensitive {
            match d.get(KeyRef::Str(key)) {
                Some(Value::Str(s)) => out.push(s.to_string()),
                Some(Value::Dict(inner)) => {
                    for v in inner.borrow().values() {
                        if let Value::Str(s) = v {
                            out.push(s.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        out.retain(|s| !s.trim().is_empty());
        out
    }
}

/// Per-thread decoded chunks kept, by [`CompiledInputs`] id; the cache is emptied when full.
const CHUNK_CACHE_ENTRIES: usize = 4096;

thread_local! {
    // Only code here: values (a cached VM) would be dropped after hog-lang's own thread-locals.
    static CHUNKS: RefCell<HashMap<u64, Rc<[Rc<Chunk>]>>> = RefCell::new(HashMap::new());
}

/// PostHog renders inputs with a 100 ms budget and no async calls.
fn render_vm(globals: Value) -> Vm {
    let mut vm = Vm::new(globals);
    vm.limits = Limits { timeout: Duration::from_millis(100), max_async_steps: 1, ..Limits::function() };
    vm.limits.max_print_lines = 0;
    vm
}

/// Inputs may not print (their lines would go nowhere): `print` is accepted and ignored.
struct InputHost;

impl Host for InputHost {
    fn print(&mut self, _line: &str) {}
    fn overrides_stdlib(&self) -> bool {
        false
    }
}

fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], order: &mut Vec<usize>) -> Result<(), usize> {
    match state[i] {
        2 => return Ok(()),
        1 => return Err(i),
        _ => {}
    }
    state[i] = 1;
    for &d in &deps[i] {
        if d != i {
            visit(d, deps, state, order)?;
        }
    }
    state[i] = 2;
    order.push(i);
    Ok(())
}

fn compile_node(
    value: &Json,
    path: &str,
    templates: &mut Vec<CompiledTemplate>,
    paths: &mut Vec<String>,
    errors: &mut Vec<InputError>,
    refs: &mut Vec<String>,
) -> Node {
    match value {
        Json::String(s) => {
            if !s.contains(['{', '\\']) {
                return Node::Const(value.clone());
            }
            input_references(s, refs);
            match compile_string(s) {
                Ok(Compiled::Const(text)) => Node::Const(Json::String(text)),
                Ok(Compiled::Template(t)) => {
                    templates.push(t);
                    paths.push(path.to_string());
                    Node::Template(templates.len() - 1)
                }
                Err((column, message)) => {
                    errors.push(InputError::Template { path: path.to_string(), column, message });
                    Node::Const(Json::Null)
                }
            }
        }
        Json::Array(items) => {
            let nodes: Vec<Node> = items
                .iter()
                .enumerate()
                .map(|(i, v)| compile_node(v, &format!("{path}[{}]", i + 1), templates, paths, errors, refs))
                .collect();
            if nodes.iter().all(|n| matches!(n, Node::Const(_))) {
                Node::Const(Json::Array(nodes.into_iter().map(Node::into_const).collect()))
            } else {
                Node::Array(nodes)
            }
        }
        Json::Object(map) => {
            let nodes: Vec<(String, Node)> = map
                .iter()
                .map(|(k, v)| (k.clone(), compile_node(v, &format!("{path}.{k}"), templates, paths, errors, refs)))
                .collect();
            if nodes.iter().all(|(_, n)| matches!(n, Node::Const(_))) {
                Node::Const(Json::Object(nodes.into_iter().map(|(k, n)| (k, n.into_const())).collect()))
            } else {
                Node::Object(nodes)
            }
        }
        other => Node::Const(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Choice;
    use serde_json::json;

    fn item(key: &str, kind: InputType) -> InputSchema {
        InputSchema {
            key: key.into(),
            kind,
            label: key.into(),
            description: None,
            required: false,
            secret: false,
            hidden: false,
            default: None,
            choices: None,
            templating: true,
            integration: None,
            integration_key: None,
            integration_field: None,
        }
    }

    fn obj(v: Json) -> Map<String, Json> {
        match v {
            Json::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn globals() -> Value {
        Value::dict_from([
            ("event", from_json(&json!({"event": "$pageview", "properties": {"name": "Ada", "tags": ["a", "b"]}}))),
            ("person", Value::Null),
        ])
    }

    fn render(inputs: Json) -> Result<Json, RenderError> {
        let compiled = CompiledInputs::without_schema(&obj(inputs))
            .map_err(|e| RenderError { path: String::new(), message: e.to_string() })?;
        compiled.render_json(&globals())
    }

    #[test]
    fn a_lone_expression_keeps_its_type_and_text_concatenates() {
        let out = render(json!({
            "props": "{event.properties}",
            "tags": "{event.properties.tags}",
            "greeting": "Hi {event.properties.name}!",
            "missing": "[{event.properties.nope}]",
            "plain": "no braces",
            "number": 5,
            "nested": {"list": ["{event.event}", 1, {"deep": "{event.properties.name}"}]},
        }))
        .unwrap();
        assert_eq!(
            out,
            json!({
                "props": {"name": "Ada", "tags": ["a", "b"]},
                "tags": ["a", "b"],
                "greeting": "Hi Ada!",
                "missing": "[]",
                "plain": "no braces",
                "number": 5,
                "nested": {"list": ["$pageview", 1, {"deep": "Ada"}]},
            })
        );
    }

    #[test]
    fn escapes_and_braces_inside_strings() {
        let out = render(json!({
            "brace": "\\{event.event}",
            "newline": "a\\nb",
            "quoted": "{concat('}', event.event)}",
            "quote": "it's {event.event}",
        }))
        .unwrap();
        assert_eq!(
            out,
            json!({"brace": "{event.event}", "newline": "a\nb", "quoted": "}$pageview", "quote": "it's $pageview"})
        );
    }

    #[test]
    fn inputs_render_after_the_inputs_they_read() {
        let out = render(json!({"a": "{inputs.b}-a", "b": "{event.event}"})).unwrap();
        assert_eq!(out, json!({"b": "$pageview", "a": "$pageview-a"}));
        let err = CompiledInputs::without_schema(&obj(json!({"a": "{inputs.b}", "b": "{inputs.a}"}))).unwrap_err();
        assert!(matches!(err.0[0], InputError::Cycle { .. }), "{err}");
    }

    #[test]
    fn compile_errors_name_the_path_and_column() {
        let err = CompiledInputs::without_schema(&obj(json!({"body": {"text": "Hi {evnt.name}"}}))).unwrap_err();
        match &err.0[0] {
            InputError::Template { path, column, message } => {
                assert_eq!(path, "body.text");
                assert_eq!(*column, 5, "{message}");
                assert!(message.contains("evnt"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let err = CompiledInputs::without_schema(&obj(json!({"x": ["ok", "oops {"]}))).unwrap_err();
        assert_eq!(err.to_string(), "input `x[2]`, column 6: `{` is never closed by `}`");
        assert_eq!(err.0[0].key(), "x");
    }

    #[test]
    fn runtime_errors_name_the_path() {
        let compiled = CompiledInputs::without_schema(&obj(json!({"x": {"y": "{jsonParse('{')}"}}))).unwrap();
        let err = compiled.render(&globals()).unwrap_err();
        assert_eq!(err.path, "x.y");
        let compiled = CompiledInputs::without_schema(&obj(json!({"x": "{fetch('http://a')}"}))).unwrap();
        let err = compiled.render(&globals()).unwrap_err();
        assert!(err.message.contains("asynchronous"), "{err}");
    }

    #[test]
    fn validation_reports_every_problem_by_key() {
        let mut url = item("url", InputType::String);
        url.required = true;
        let mut method = item("method", InputType::Choice);
        method.choices = Some(vec![
            Choice { label: "POST".into(), value: json!("POST") },
            Choice { label: "GET".into(), value: json!("GET") },
        ]);
        method.default = Some(json!("POST"));
        let debug = item("debug", InputType::Boolean);
        let headers = item("headers", InputType::Dictionary);
        let schema = vec![url, method, debug, headers];

        let err = validate(&schema, &obj(json!({"methd": "GET", "debug": 3, "headers": "x"})), true).unwrap_err();
        let text: Vec<String> = err.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "unknown input `methd` (did you mean `method`?)",
                "input `url` is required",
                "input `debug` must be a boolean or a template string, not a number",
                "input `headers` must be an object, not a string",
            ]
        );
        let err = validate(&schema, &obj(json!({"url": "", "method": "PUT"})), true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "input `url` is required; input `method` is \"PUT\", which is not one of \"POST\", \"GET\""
        );
        let ok = validate(&schema, &obj(json!({"url": "https://x", "debug": "{event.event == 'a'}"})), true).unwrap();
        assert_eq!(Json::Object(ok), json!({"url": "https://x", "method": "POST", "debug": "{event.event == 'a'}"}));
    }

    #[test]
    fn choices_and_integrations_are_not_templated_and_secrets_are_redacted() {
        let mut method = item("method", InputType::Choice);
        method.choices = Some(vec![Choice { label: "x".into(), value: json!("{x}") }]);
        let mut token = item("token", InputType::String);
        token.secret = true;
        let account = item("account", InputType::Integration);
        let schema = vec![method, token, account];
        let inputs = obj(json!({"method": "{x}", "token": "s3cret", "account": {"access_token": "xoxb"}}));
        let compiled = CompiledInputs::new(&schema, &inputs).unwrap();
        let rendered = compiled.render(&globals()).unwrap();
        assert_eq!(
            hogpipe_dataflow::event::to_json(&rendered),
            json!({"method": "{x}", "token": "s3cret", "account": {"access_token": "xoxb"}})
        );
        assert_eq!(compiled.sensitive_values(&rendered), vec!["s3cret", "xoxb"]);
        assert_eq!(
            Json::Object(redact(&schema, &inputs)),
            json!({"method": "{x}", "token": REDACTED, "account": REDACTED})
        );
    }
}
