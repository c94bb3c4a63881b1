//! Hog values, with the semantics of PostHog's reference VM (JavaScript): numbers are doubles,
//! arrays, tuples and dicts are shared mutable containers compared by identity, strings are
//! immutable and shared.
//!
//! A `Value` is 16 bytes and cheap to clone (a tag plus a number or one reference count).

use crate::vm::{Callable, Closure};
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;

pub use crate::text::Text;

/// A dict key. JavaScript's `Map` compares keys with SameValueZero: strings by content, numbers by
/// value (with `NaN` equal to itself and `-0` equal to `0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, by its normalised bits.
    Num(u64),
    /// A string.
    Str(Text),
}

impl Key {
    /// The key for a number.
    pub fn num(f: f64) -> Key {
        let f = if f == 0.0 {
            0.0
        } else if f.is_nan() {
            f64::NAN
        } else {
            f
        };
        Key::Num(f.to_bits())
    }

    /// The key for a string.
    pub fn str(s: &str) -> Key {
        Key::Str(Text::from(s))
    }

    /// The key for a string, shared through the thread's cache of short texts
    /// ([`Text::interned`]): for keys built again and again (an event's field names).
    pub fn interned(s: &str) -> Key {
        Key::Str(Text::interned(s))
    }

    /// The key as a value.
    pub fn to_value(&self) -> Value {
        match self {
            Key::Null => Value::Null,
            Key::Bool(b) => Value::Bool(*b),
            Key::Num(bits) => Value::Number(f64::from_bits(*bits)),
            Key::Str(s) => Value::Str(s.clone()),
        }
    }
}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state)
    }
}

impl Key {
    /// The key's text when it is a string.
    pub fn as_ref_str(&self) -> Option<&str> {
        match self {
            Key::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A borrowed view, for lookups.
    pub fn as_ref(&self) -> KeyRef<'_> {
        match self {
            Key::Null => KeyRef::Null,
            Key::Bool(b) => KeyRef::Bool(*b),
            Key::Num(n) => KeyRef::Num(*n),
            Key::Str(s) => KeyRef::Str(s),
        }
    }
}

/// A dict key borrowed from elsewhere: looks up a dict without allocating a `Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef<'a> {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, by its normalised bits (see `Key::num`).
    Num(u64),
    /// A string.
    Str(&'a str),
}

impl std::hash::Hash for KeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            KeyRef::Null => state.write_u8(0),
            KeyRef::Bool(b) => {
                state.write_u8(1);
                state.write_u8(u8::from(*b));
            }
            KeyRef::Num(n) => {
                state.write_u8(2);
                state.write_u64(*n);
            }
            KeyRef::Str(s) => {
                state.write_u8(3);
                state.write(s.as_bytes());
            }
        }
    }
}

impl indexmap::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self == key.as_ref()
    }
}

impl<'a> KeyRef<'a> {
    /// The key for a value usable as one (null, boolean, number, string).
    pub fn of(v: &'a Value) -> Option<KeyRef<'a>> {
        match v {
            Value::Null => Some(KeyRef::Null),
            Value::Bool(b) => Some(KeyRef::Bool(*b)),
            Value::Number(n) => match Key::num(*n) {
                Key::Num(bits) => Some(KeyRef::Num(bits)),
                _ => None,
            },
            Value::Str(s) => Some(KeyRef::Str(s)),
            _ => None,
        }
    }
}

pub use crate::dict::Dict;

/// A small fast hasher for dict keys (strings are short; collisions are not attacker-relevant
/// because the map is per-invocation and bounded by the memory limit).
#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

impl std::hash::Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.hash
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.hash;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
        self.hash = h;
    }
    fn write_u64(&mut self, i: u64) {
        self.hash = (self.hash.rotate_left(5) ^ i).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

/// A thrown error value: `Error('msg', payload)`.
#[derive(Debug, Clone)]
pub struct ErrorValue {
    /// `Error`, `RetryError`, …
    pub kind: Text,
    /// The message.
    pub message: Text,
    /// Optional payload (a dict, usually).
    pub payload: Value,
}

/// A point in time with a zone.
#[derive(Debug, Clone, PartialEq)]
pub struct DateTimeValue {
    /// Seconds since the epoch, fractional.
    pub dt: f64,
    /// IANA zone name.
    pub zone: Text,
}

thread_local! {
    /// The current journal epoch of this thread (see [`Vm::begin_journal`](crate::vm::Vm)):
    /// containers record it when created, so a journaled run tells the containers that existed
    /// before it (older epoch) from those it built itself.
    static EPOCH: Cell<u64> = const { Cell::new(0) };
}

/// The epoch containers created now are stamped with.
#[inline]
fn current_epoch() -> u64 {
    EPOCH.with(Cell::get)
}

/// Starts a new epoch on this thread and returns it: every container alive now is older.
pub(crate) fn next_epoch() -> u64 {
    EPOCH.with(|e| {
        let n = e.get() + 1;
        e.set(n);
        n
    })
}

/// The shared, mutable storage of an array or tuple (derefs to its `RefCell`). Dropping one never
/// recurses: nested containers are dropped one at a time (see `drop_nested`), so a program that
/// nests a million arrays cannot overflow the native stack when they are freed.
#[derive(Debug, Default)]
pub struct ArrayCell {
    items: RefCell<Vec<Value>>,
    stamp: Stamp,
}

/// The shared, mutable storage of a dict (derefs to its `RefCell`); dropped like `ArrayCell`.
#[derive(Debug, Default)]
pub struct DictCell {
    entries: RefCell<Dict>,
    stamp: Stamp,
}

/// A container's journal epoch: when it was created, or last saved whole by a journal.
#[derive(Debug)]
pub(crate) struct Stamp(Cell<u64>);

impl Default for Stamp {
    fn default() -> Self {
        Stamp(Cell::new(current_epoch()))
    }
}

impl Stamp {
    /// The epoch.
    pub(crate) fn get(&self) -> u64 {
        self.0.get()
    }

    /// True the first time it is asked in `epoch` about a container older than `epoch` (whose
    /// contents a journal must then save before the first change); stamps the container.
    pub(crate) fn stamp_for(&self, epoch: u64) -> bool {
        let older = self.0.get() < epoch;
        if older {
            self.0.set(epoch);
        }
        older
    }
}

impl ArrayCell {
    /// Storage holding these items.
    pub fn new(items: Vec<Value>) -> Self {
        ArrayCell { items: RefCell::new(items), stamp: Stamp::default() }
    }

    /// Its journal epoch.
    pub(crate) fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

impl DictCell {
    /// Storage holding this dict.
    pub fn new(d: Dict) -> Self {
        DictCell { entries: RefCell::new(d), stamp: Stamp::default() }
    }

    /// Its journal epoch.
    pub(crate) fn stamp(&self) -> &Stamp {
        &self.stamp
    }
}

impl std::ops::Deref for ArrayCell {
    type Target = RefCell<Vec<Value>>;
    fn deref(&self) -> &Self::Target {
        &self.items
    }
}

impl std::ops::Deref for DictCell {
    type Target = RefCell<Dict>;
    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl Drop for ArrayCell {
    fn drop(&mut self) {
        let items = std::mem::take(self.items.get_mut());
        drop_contents(items, |items| items.into_iter().filter(Value::owns_values).collect());
    }
}

impl Drop for DictCell {
    fn drop(&mut self) {
        let d = std::mem::take(self.entries.get_mut());
        drop_contents(d, |d| d.into_values().filter(Value::owns_values).collect());
    }
}

impl Drop for ErrorValue {
    fn drop(&mut self) {
        let payload = std::mem::take(&mut self.payload);
        drop_contents(payload, |p| if p.owns_values() { vec![p] } else { Vec::new() });
    }
}

/// How deep drops may recurse before handing nested values to the queue.
const MAX_DROP_DEPTH: u32 = 64;

thread_local! {
    static DROP_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    static DROP_QUEUE: RefCell<Vec<Value>> = const { RefCell::new(Vec::new()) };
}

/// Drops a container's contents: recursively while shallow (the common case, no extra work), and
/// past `MAX_DROP_DEPTH` by queueing the nested values, which the outermost drop then frees one at
/// a time. A program that nests a million arrays cannot overflow the native stack when they go.
fn drop_contents<T>(contents: T, nested: impl FnOnce(T) -> Vec<Value>) {
    let depth = DROP_DEPTH.with(|d| d.get());
    if depth >= MAX_DROP_DEPTH {
        let values = nested(contents);
        DROP_QUEUE.with(|q| q.borrow_mut().extend(values));
        return;
    }
    DROP_DEPTH.with(|d| d.set(depth + 1));
    drop(contents);
    if depth == 0 {
        while let Some(v) = DROP_QUEUE.with(|q| q.borrow_mut().pop()) {
            drop(v);
        }
    }
    DROP_DEPTH.with(|d| d.set(depth));
}

/// A Hog value.
#[derive(Debug, Default)]
pub enum Value {
    /// `null`
    #[default]
    Null,
    /// `true` / `false`
    Bool(bool),
    /// Every number is a double, as in JavaScript.
    Number(f64),
    /// An immutable shared string.
    Str(Text),
    /// A mutable shared array.
    Array(Rc<ArrayCell>),
    /// A tuple: an array that prints with parentheses.
    Tuple(Rc<ArrayCell>),
    /// A mutable shared dict.
    Dict(Rc<DictCell>),
    /// An error object.
    Error(Rc<ErrorValue>),
    /// A function before it is closed over (transient on the stack).
    Callable(Rc<Callable>),
    /// A function value.
    Closure(Rc<Closure>),
    /// A date and time.
    DateTime(Rc<DateTimeValue>),
    /// A calendar date.
    Date(i32, u32, u32),
}

impl Clone for Value {
    /// Cloning is a copy or one reference-count increment; inlined because the VM clones values
    /// on every local read.
    #[inline(always)]
    fn clone(&self) -> Self {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::Number(n) => Value::Number(*n),
            Value::Str(s) => Value::Str(s.clone()),
            Value::Array(a) => Value::Array(a.clone()),
            Value::Tuple(a) => Value::Tuple(a.clone()),
            Value::Dict(d) => Value::Dict(d.clone()),
            Value::Error(e) => Value::Error(e.clone()),
            Value::Callable(c) => Value::Callable(c.clone()),
            Value::Closure(c) => Value::Closure(c.clone()),
            Value::DateTime(d) => Value::DateTime(d.clone()),
            Value::Date(y, m, d) => Value::Date(*y, *m, *d),
        }
    }
}

impl Value {
    /// Whether dropping this value may drop further values (a container or an error).
    fn owns_values(&self) -> bool {
        matches!(self, Value::Array(_) | Value::Tuple(_) | Value::Dict(_) | Value::Error(_))
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Number(f)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Number(i as f64)
    }
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(Text::from(s))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(Text::from(s))
    }
}

impl Value {
    /// A new array value.
    pub fn array(items: Vec<Value>) -> Value {
        Value::Array(Rc::new(ArrayCell::new(items)))
    }

    /// A new tuple value.
    pub fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Rc::new(ArrayCell::new(items)))
    }

    /// A new dict value.
    pub fn dict(d: Dict) -> Value {
        Value::Dict(Rc::new(DictCell::new(d)))
    }

    /// A new dict from string keys.
    pub fn dict_from<'a>(items: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        let mut d = Dict::default();
        for (k, v) in items {
            d.insert(Key::str(k), v);
        }
        Value::dict(d)
    }

    /// A new error value.
    pub fn error(kind: &str, message: &str, payload: Value) -> Value {
        Value::Error(Rc::new(ErrorValue { kind: Text::from(kind), message: Text::from(message), payload }))
    }

    /// JavaScript truthiness: `null`, `false`, `0`, `NaN` and `''` are false; everything else,
    /// including `[]` and `{}`, is true.
    #[inline]
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::Str(s) => !s.is_empty(),
            _ => true,
        }
    }

    /// Whether this is `null`.
    #[inline]
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The name `typeof` gives this value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) => {
                if is_whole(*n) {
                    "integer"
                } else {
                    "float"
                }
            }
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "object",
            Value::Error(_) => "error",
            Value::Callable(_) | Value::Closure(_) => "function",
            Value::DateTime(_) => "datetime",
            Value::Date(..) => "date",
        }
    }

    /// JavaScript's `Number(x)`.
    pub fn to_number(&self) -> f64 {
        match self {
            Value::Null => 0.0,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Number(n) => *n,
            Value::Str(s) => js_string_to_number(s),
            Value::Array(_) | Value::Tuple(_) => crate::stdlib::js_number(self).unwrap_or(f64::NAN),
            _ => f64::NAN,
        }
    }
    /// JavaScript's `String(x)` (used where the reference VM coerces implicitly). Safe on arrays
    /// that contain themselves and on deep nesting; text past the size cap is cut short (callers
    /// that must report it use `stdlib`'s `js_string`).
    pub fn to_js_string(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            Value::Array(_) | Value::Tuple(_) => {
                let mut out = String::new();
                // On error (too deep or too large) `out` holds the text so far.
                let _ = crate::stdlib::write_js_string(self, &mut out);
                out
            }
            other => crate::stdlib::js_scalar_string(other).into_owned(),
        }
    }
    /// The value as a dict key, when it can be one.
    pub fn to_key(&self) -> Option<Key> {
        match self {
            Value::Null => Some(Key::Null),
            Value::Bool(b) => Some(Key::Bool(*b)),
            Value::Number(n) => Some(Key::num(*n)),
            Value::Str(s) => Some(Key::Str(s.clone())),
            _ => None,
        }
    }

    /// How PostHog prints a value inside a container: strings quoted.
    pub fn repr(&self) -> String {
        let mut out = String::new();
        write_repr(self, &mut out, &mut Vec::new());
        out
    }

    /// How `print` shows a value: top-level strings raw, everything else as `repr`.
    pub fn to_print_string(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            Value::Number(n) => {
                let mut out = String::new();
                push_number(&mut out, *n);
                out
            }
            Value::Null => "null".to_string(),
            Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
            other => other.repr(),
        }
    }

    /// Identity of a shared container, for cycle detection.
    fn container_ptr(&self) -> Option<usize> {
        match self {
            Value::Array(a) | Value::Tuple(a) => Some(Rc::as_ptr(a) as *const u8 as usize),
            Value::Dict(d) => Some(Rc::as_ptr(d) as *const u8 as usize),
            _ => None,
        }
    }

    /// Strict equality (`===`): by value for scalars, by identity for containers.
    pub fn strict_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Array(a), Value::Array(b)) | (Value::Tuple(a), Value::Tuple(b)) => Rc::ptr_eq(a, b),
            (Value::Dict(a), Value::Dict(b)) => Rc::ptr_eq(a, b),
            (Value::Error(a), Value::Error(b)) => Rc::ptr_eq(a, b),
            (Value::Closure(a), Value::Closure(b)) => Rc::ptr_eq(a, b),
            (Value::Callable(a), Value::Callable(b)) => Rc::ptr_eq(a, b),
            (Value::DateTime(a), Value::DateTime(b)) => Rc::ptr_eq(a, b),
            // PostHog's dates are objects compared by identity; a `Date` here has none, so the
            // same date is the same object (`d in [d]` holds).
            (Value::Date(y1, m1, d1), Value::Date(y2, m2, d2)) => (y1, m1, d1) == (y2, m2, d2),
            _ => false,
        }
    }

    /// SameValueZero, as `Array.prototype.includes` uses: like `===` but `NaN` equals `NaN`.
    pub fn same_value_zero(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) if a.is_nan() && b.is_nan() => true,
            _ => self.strict_eq(other),
        }
    }
}

/// JavaScript's `StringToNumber`: trims whitespace, empty is 0, decimal or `0x`/`0o`/`0b`
/// integers, `Infinity`; anything else is `NaN`.
pub fn js_string_to_number(s: &str) -> f64 {
    let t = s.trim_matches(is_js_space);
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(rest) = t.strip_prefix(prefix) {
            if rest.is_empty() || !rest.chars().all(|c| c.is_digit(radix)) {
                return f64::NAN;
            }
            return rest.chars().fold(0.0, |acc, c| acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0)));
        }
    }
    match t {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    // Only plain decimal syntax: digits, one dot, optional exponent, optional sign.
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let valid = !body.is_empty()
        && body.chars().all(|c| c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')
        && body.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '.')
        && body != ".";
    if !valid {
        return f64::NAN;
    }
    t.parse::<f64>().unwrap_or(f64::NAN)
}

/// Decimal digits of an integer, without going through `fmt` (numbers are printed constantly).
fn format_integer(i: i64) -> String {
    let mut out = String::with_capacity(20);
    push_integer(&mut out, i);
    out
}

fn push_integer(out: &mut String, i: i64) {
    out.push_str(itoa::Buffer::new().format(i));
}

/// Whether `n` is a whole number: the same as `n.fract() == 0.0`, without the call to `trunc`
/// that `fract` costs on baseline x86-64.
#[inline(always)]
pub fn is_whole(n: f64) -> bool {
    if n.abs() < 4_503_599_627_370_496.0 {
        (n as i64) as f64 == n
    } else {
        n.is_finite()
    }
}

/// Appends `format_number(n)` to `out` (whole numbers without an intermediate string).
pub fn push_number(out: &mut String, n: f64) {
    if n.abs() < 9.007_199_254_740_992e15 && is_whole(n) {
        // -0 prints as 0, as in JavaScript.
        push_integer(out, n as i64);
    } else {
        out.push_str(&format_number(n));
    }
}

/// JavaScript's white space and line terminators (Rust's `is_whitespace` adds U+0085 and lacks
/// U+FEFF).
pub fn is_js_space(c: char) -> bool {
    c == '\u{FEFF}' || (c.is_whitespace() && c != '\u{85}')
}

/// JavaScript's `Number.prototype.toString()`: shortest round-trip digits, exponent form below
/// 1e-6 and from 1e21.
pub fn format_number(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if n == 0.0 {
        return "0".into();
    }
    if n.fract() == 0.0 && n.abs() < 1e21 {
        // Exact integer below 1e21: plain digits.
        if n.abs() < 9.007_199_254_740_992e15 {
            return format_integer(n as i64);
        }
    }
    let sci = format!("{:e}", n.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let point = exp + 1; // position of the decimal point relative to the digits
    let mut out = String::new();
    if n < 0.0 {
        out.push('-');
    }
    if k <= point && point <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (point - k) as usize));
    } else if 0 < point && point <= 21 {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    } else if -6 < point && point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = point - 1;
        let _ = write!(out, "e{}{}", if e >= 0 { "+" } else { "-" }, e.abs());
    }
    out
}

/// Quotes a string the way PostHog prints strings inside containers.
pub fn escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            '\u{b}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Quotes an identifier when it is not a plain name.
pub fn escape_identifier(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if plain {
        return s.to_string();
    }
    let mut out = String::from("`");
    for c in s.chars() {
        match c {
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            '\u{b}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '`' => out.push_str("``"),
            c => out.push(c),
        }
    }
    out.push('`');
    out
}

/// Containers nested deeper than this print as `...` (JavaScript would fail with a stack
/// overflow; printing must never take the process down).
pub const MAX_PRINT_DEPTH: usize = 1000;

fn write_repr(v: &Value, out: &mut String, seen: &mut Vec<usize>) {
    if let Some(ptr) = v.container_ptr() {
        if seen.contains(&ptr) {
            out.push_str("null");
            return;
        }
        if seen.len() >= MAX_PRINT_DEPTH {
            out.push_str("...");
            return;
        }
        seen.push(ptr);
        match v {
            Value::Array(a) => {
                out.push('[');
                write_items(&a.borrow(), out, seen);
                out.push(']');
            }
            Value::Tuple(a) => {
                let a = a.borrow();
                if a.len() < 2 {
                    out.push_str("tuple(");
                } else {
                    out.push('(');
                }
                write_items(&a, out, seen);
                out.push(')');
            }
            Value::Dict(d) => {
                out.push('{');
                for (i, (k, val)) in d.borrow().iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(&k.to_value(), out, seen);
                    out.push_str(": ");
                    write_repr(val, out, seen);
                }
                out.push('}');
            }
            _ => {}
        }
        seen.pop();
        return;
    }
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => push_number(out, *n),
        Value::Str(s) => out.push_str(&escape_string(s)),
        Value::Error(e) => {
            out.push_str(&e.kind);
            out.push('(');
            out.push_str(&escape_string(&e.message));
            // JavaScript truthiness, as PostHog prints: containers always show, `null` never does.
            if e.payload.truthy() {
                out.push_str(", ");
                if seen.len() >= MAX_PRINT_DEPTH {
                    out.push_str("...");
                } else {
                    seen.push(Rc::as_ptr(e) as usize);
                    write_repr(&e.payload, out, seen);
                    seen.pop();
                }
            }
            out.push(')');
        }
        Value::Callable(c) => write_callable(c, out),
        Value::Closure(c) => write_callable(&c.callable, out),
        Value::DateTime(d) => {
            let millis = format_number(d.dt);
            let _ = write!(
                out,
                "DateTime({}{}, {})",
                millis,
                if millis.contains('.') { "" } else { ".0" },
                escape_string(&d.zone)
            );
        }
        Value::Date(y, m, d) => {
            let _ = write!(out, "Date({y}, {m}, {d})");
        }
        Value::Array(_) | Value::Tuple(_) | Value::Dict(_) => {
            unreachable!("containers handled above")
        }
    }
}

fn write_callable(c: &Callable, out: &mut String) {
    let _ = write!(out, "fn<{}({})>", escape_identifier(&c.name), c.arg_count);
}

fn write_items(items: &[Value], out: &mut String, seen: &mut Vec<usize>) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_repr(item, out, seen);
    }
}

/// Converts JSON into a Hog value (objects become dicts, keeping key order).
pub fn from_json(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::array(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            // Room for a few more keys: transformations usually add properties.
            let mut d = Dict::with_capacity(o.len() + 4);
            for (k, v) in o {
                // Shared short keys, as JSON read by the pipeline has: lookups compare pointers.
                d.insert(Key::interned(k), from_json(v));
            }
            Value::dict(d)
        }
    }
}

/// A string in PostHog's shared date-like grammar (the same in all of PostHog's VMs):
/// `YYYY-MM-DD`, optionally followed by `T`, `t` or a space and `HH:MM[:SS[.fraction]]` with an
/// optional `Z` or `±HH[[:]MM]` offset; surrounding whitespace ignored. Fractions keep milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateLike {
    /// Year, 1 to 9999.
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of the month.
    pub day: u32,
    /// Hour, 0 to 23.
    pub hour: u32,
    /// Minute.
    pub minute: u32,
    /// Second.
    pub second: u32,
    /// Millisecond (further digits are truncated).
    pub millisecond: u32,
    /// Minutes east of UTC when the string carries `Z` or an offset.
    pub offset_minutes: Option<i32>,
}

impl DateLike {
    /// Milliseconds since the epoch of the wall-clock time read as UTC (the offset not applied).
    pub fn wall_millis(&self) -> i64 {
        let days = days_from_civil(i64::from(self.year), i64::from(self.month), i64::from(self.day));
        days * 86_400_000
            + i64::from(self.hour) * 3_600_000
            + i64::from(self.minute) * 60_000
            + i64::from(self.second) * 1000
            + i64::from(self.millisecond)
    }

    /// Seconds since the epoch, reading a string without an offset as UTC.
    pub fn utc_seconds(&self) -> f64 {
        let offset = i64::from(self.offset_minutes.unwrap_or(0)) * 60_000;
        (self.wall_millis() - offset) as f64 / 1000.0
    }
}

/// Parses PostHog's date-like grammar (see [`DateLike`]); `None` for anything else, including
/// impossible dates like `2024-02-30` and year `0000`.
pub fn parse_date_like(s: &str) -> Option<DateLike> {
    // JavaScript's `trim`: Unicode white space and line terminators plus U+FEFF, but not U+0085.
    let s = s.trim_matches(|c: char| (c.is_whitespace() && c != '\u{85}') || c == '\u{FEFF}');
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> Option<u32> {
        let part = b.get(from..from + n)?;
        part.iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0')))
    };
    let year = digits(0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (month, day) = (digits(5, 2)?, digits(8, 2)?);
    let mut out =
        DateLike { year: year as i32, month, day, hour: 0, minute: 0, second: 0, millisecond: 0, offset_minutes: None };
    let mut i = 10;
    if i < b.len() {
        if !matches!(b[i], b'T' | b't' | b' ') || b.get(i + 3) != Some(&b':') {
            return None;
        }
        out.hour = digits(i + 1, 2).filter(|h| *h <= 23)?;
        out.minute = digits(i + 4, 2).filter(|m| *m <= 59)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            out.second = digits(i + 1, 2).filter(|s| *s <= 59)?;
            i += 3;
            if matches!(b.get(i), Some(b'.' | b',')) {
                let n = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if !(1..=9).contains(&n) {
                    return None;
                }
                let frac = &b[i + 1..i + 1 + n.min(3)];
                let ms = frac.iter().fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
                out.millisecond = ms * 10u32.pow(3 - frac.len() as u32);
                i += 1 + n;
            }
        }
        match b.get(i) {
            None => {}
            Some(b'Z' | b'z') => {
                out.offset_minutes = Some(0);
                i += 1;
            }
            Some(&sign @ (b'+' | b'-')) => {
                let hours = digits(i + 1, 2).filter(|h| *h <= 23)?;
                i += 3;
                let colon = usize::from(b.get(i) == Some(&b':'));
                let minutes = match digits(i + colon, 2) {
                    Some(m) if m <= 59 => {
                        i += colon + 2;
                        m
                    }
                    _ if colon == 0 => 0,
                    _ => return None,
                };
                let total = (hours * 60 + minutes) as i32;
                out.offset_minutes = Some(if sign == b'-' { -total } else { total });
            }
            Some(_) => return None,
        }
        if i != b.len() {
            return None;
        }
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let valid_day =
        month.checked_sub(1).and_then(|m| month_days.get(m as usize)).is_some_and(|n| (1..=*n).contains(&day));
    (year != 0 && valid_day).then_some(out)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (month 1 to 12).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Value {
    /// Seconds since the epoch of a `DateTime`, or of a `Date` at midnight UTC; `None` otherwise.
    /// PostHog compares and orders dates and date-times by this.
    pub fn temporal_seconds(&self) -> Option<f64> {
        match self {
            Value::DateTime(d) => Some(d.dt),
            Value::Date(y, m, d) => {
                Some((days_from_civil(i64::from(*y), i64::from(*m), i64::from(*d)) * 86_400) as f64)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_like_javascript() {
        assert_eq!(format_number(1.0), "1");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(3.5), "3.5");
        assert_eq!(format_number(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_number(1e21), "1e+21");
        assert_eq!(format_number(1.5e-7), "1.5e-7");
        assert_eq!(format_number(0.000001), "0.000001");
        assert_eq!(format_number(123456789012345680000.0), "123456789012345680000");
        assert_eq!(format_number(10.0 / 3.0), "3.3333333333333335");
        assert_eq!(format_number(f64::NAN), "NaN");
        assert_eq!(format_number(-f64::INFINITY), "-Infinity");
        assert_eq!(format_number(2f64.powi(60)), "1152921504606847000");
    }

    #[test]
    fn string_to_number() {
        assert_eq!(js_string_to_number(" 12 "), 12.0);
        assert_eq!(js_string_to_number(""), 0.0);
        assert!(js_string_to_number("abc").is_nan());
        assert!(js_string_to_number("1a").is_nan());
        assert_eq!(js_string_to_number("0x10"), 16.0);
        assert_eq!(js_string_to_number("1e3"), 1000.0);
        assert_eq!(js_string_to_number(".5"), 0.5);
    }

    #[test]
    fn value_is_small() {
        assert_eq!(std::mem::size_of::<Value>(), 16);
    }
}
