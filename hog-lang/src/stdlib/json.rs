//! JSON: `jsonParse`, `jsonStringify`, `isValidJSON`, and the ClickHouse-style family as PostHog
//! implements it: `JSONHas`, `JSONLength`, `JSONExtract`, `JSONExtractArrayRaw`,
//! `JSONExtractBool`, `JSONExtractFloat`, `JSONExtractInt`, `JSONExtractString`.
//!
//! PostHog's VM runs on JavaScript, and these functions inherit its semantics, which we keep:
//! - Objects keep JavaScript's key order: keys that are array indexes (`"0"`, `"17"`) come first in
//!   ascending order, then the other keys in insertion order.
//! - The `JSON*` functions take a JSON string (parsed into plain objects) or an already-parsed
//!   value (dicts are JavaScript `Map`s). Paths are keys and 1-based (or negative) indexes; a
//!   number looks an index up in arrays and strings, and in parsed objects the key of index-1
//!   (`JSONExtract('{"0": 1}', 1)` is 1); a string key on an array is a 0-based property
//!   (`'0'`, `'length'`). An index of 0 is an error, as in PostHog.
//! - `JSONExtractInt`/`Float` apply JavaScript's `parseInt`/`parseFloat` to `String(value)`.
//!
//! Parsing uses `json_reader` (errors say line and column; at most 127 levels of nesting).

use super::json_reader::JsonError;
use super::{arg, Ctx, NativeFunction, NativeResult, StdlibError};
use crate::value::{format_number, Dict, Key, Text, Value};
use serde::Deserialize as _;
use std::borrow::Cow;
use std::rc::Rc;

/// Largest string these functions build (PostHog's memory limit).
const MAX_OUTPUT: usize = 64 * 1024 * 1024;
/// Deepest nesting `jsonStringify` and `String(value)` walk.
const MAX_DEPTH: usize = 1000;

/// The json family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "jsonParse",
        signature: "jsonParse(json: string) -> any",
        description: "Parses JSON: objects become dicts (JavaScript key order), numbers floats; serialized dates and errors come back as such",
        min_args: 1,
        max_args: Some(1),
        func: json_parse,
        examples: &[
            ("jsonParse('{\"b\": [1, 2.5, null], \"a\": true}')", "{'b': [1, 2.5, null], 'a': true}"),
            ("jsonParse('{\"b\": 1, \"2\": 2, \"1\": 3}')", "{'1': 3, '2': 2, 'b': 1}"),
            ("jsonParse(null)", "null"),
            ("jsonParse('{\"a\": }')", "error: invalid JSON: expected a value at line 1 column 7"),
        ],
    },
    NativeFunction {
        name: "jsonStringify",
        signature: "jsonStringify(value, indent?: number) -> string",
        description: "Serializes a value as JSON, indented by `indent` spaces (at most 10) when positive; a value containing itself gives null there",
        min_args: 1,
        max_args: Some(2),
        func: json_stringify,
        examples: &[
            ("jsonStringify({'a': [1, 2.5, null, 'x'], 'b': (1, true)})", "'{\"a\":[1,2.5,null,\"x\"],\"b\":[1,true]}'"),
            ("jsonStringify({'a': [1]}, 2)", "'{\\n  \"a\": [\\n    1\\n  ]\\n}'"),
            ("jsonStringify([1.0, 1e21, 0.1])", "'[1,1e+21,0.1]'"),
            ("jsonStringify(null)", "'null'"),
            ("(() -> { let a := [1]; a[1] := a; return jsonStringify(Error('x', a)) })()", "error: contains itself"),
        ],
    },
    NativeFunction {
        name: "isValidJSON",
        signature: "isValidJSON(json: string) -> boolean",
        description: "Whether the string is valid JSON (like JSON.parse, numbers and null given directly count as valid)",
        min_args: 1,
        max_args: Some(1),
        func: is_valid_json,
        examples: &[("isValidJSON('{\"a\": [1]}')", "true"), ("isValidJSON('{a: 1}')", "false"), ("isValidJSON('')", "false")],
    },
    NativeFunction {
        name: "JSONHas",
        signature: "JSONHas(json: string | value, ...path) -> boolean",
        description: "Whether the path of keys and 1-based (or negative) indexes exists; strings met on the way are parsed as JSON",
        min_args: 1,
        max_args: None,
        func: json_has,
        examples: &[
            ("JSONHas('{\"a\": [1, {\"b\": null}]}', 'a', 2, 'b')", "true"),
            ("JSONHas('{\"a\": [1, 2]}', 'a', 3)", "false"),
            ("JSONHas({'a': {'b': 1}}, 'a', 'c')", "false"),
            ("JSONHas('{\"a\": null}', 'a', 'b')", "false"),
        ],
    },
    NativeFunction {
        name: "JSONLength",
        signature: "JSONLength(json: string | value, ...path) -> integer",
        description: "Length of the array or object at the path; 0 for anything else or invalid JSON",
        min_args: 1,
        max_args: None,
        func: json_length,
        examples: &[
            ("JSONLength('{\"a\": [1, 2, 3]}', 'a')", "3"),
            ("JSONLength({'a': 1, 'b': 2})", "2"),
            ("JSONLength('{\"a\": 1}', 'b')", "0"),
            ("JSONLength('[1]', 0)", "error: Hog arrays start from index 1"),
        ],
    },
    NativeFunction {
        name: "JSONExtract",
        signature: "JSONExtract(json: string | value, ...path, type) -> any",
        description: "The value at the path; the last argument is a ClickHouse type name that PostHog ignores",
        min_args: 2,
        max_args: None,
        func: json_extract,
        examples: &[
            ("JSONExtract('{\"a\": {\"b\": [1, 2, 3]}}', 'a', 'b', -1, 'Int64')", "3"),
            ("JSONExtract('{\"a\": {\"b\": 1}}', 'a', 'String')", "{'b': 1}"),
            ("JSONExtract('{\"a\": 1}', 'b', 'Int64')", "null"),
            ("JSONExtract('[1]', 0, 'Int64')", "error: Hog arrays start from index 1"),
        ],
    },
    NativeFunction {
        name: "JSONExtractArrayRaw",
        signature: "JSONExtractArrayRaw(json: string | value, ...path) -> array",
        description: "The array at the path (its values, as parsed), or null when it is not an array",
        min_args: 1,
        max_args: None,
        func: json_extract_array_raw,
        examples: &[
            ("JSONExtractArrayRaw('{\"a\": [1, \"x\", {\"b\": 2}]}', 'a')", "[1, 'x', {'b': 2}]"),
            ("JSONExtractArrayRaw('{\"a\": 1}', 'a')", "null"),
            ("JSONExtractArrayRaw('[1', 'a')", "null"),
        ],
    },
    NativeFunction {
        name: "JSONExtractBool",
        signature: "JSONExtractBool(json: string | value, ...path) -> boolean",
        description: "The boolean at the path; false for anything else",
        min_args: 1,
        max_args: None,
        func: json_extract_bool,
        examples: &[
            ("JSONExtractBool('{\"a\": [true]}', 'a', 1)", "true"),
            ("JSONExtractBool('{\"a\": 1}', 'a')", "false"),
            ("JSONExtractBool('true')", "true"),
        ],
    },
    NativeFunction {
        name: "JSONExtractFloat",
        signature: "JSONExtractFloat(json: string | value, ...path) -> float",
        description: "parseFloat of the value at the path (strings holding numbers count); null when it is not a number",
        min_args: 1,
        max_args: None,
        func: json_extract_float,
        examples: &[
            ("JSONExtractFloat('{\"a\": 1.5}', 'a')", "1.5"),
            ("JSONExtractFloat('{\"a\": \" 2.5e1kg\"}', 'a')", "25"),
            ("JSONExtractFloat('{\"a\": \"x\"}', 'a')", "null"),
        ],
    },
    NativeFunction {
        name: "JSONExtractInt",
        signature: "JSONExtractInt(json: string | value, ...path) -> integer",
        description: "parseInt of the value at the path (floats truncate, strings holding numbers count); null when it is not a number",
        min_args: 1,
        max_args: None,
        func: json_extract_int,
        examples: &[
            ("JSONExtractInt('{\"a\": 12.9}', 'a')", "12"),
            ("JSONExtractInt('{\"a\": \"42px\"}', 'a')", "42"),
            ("JSONExtractInt('{\"a\": true}', 'a')", "null"),
        ],
    },
    NativeFunction {
        name: "JSONExtractString",
        signature: "JSONExtractString(json: string | value, ...path) -> string",
        description: "String(value) of the value at the path; null when it is missing or null",
        min_args: 1,
        max_args: None,
        func: json_extract_string,
        examples: &[
            ("JSONExtractString('{\"a\": {\"b\": \"x\"}}', 'a', 'b')", "'x'"),
            ("JSONExtractString('{\"a\": [1, null, 2.5]}', 'a')", "'1,,2.5'"),
            ("JSONExtractString('{\"a\": 1}', 'b')", "null"),
        ],
    },
];

// ---------------------------------------------------------------------------------------------
// Parsing

/// Where a value came from, which decides how keys look things up in it: JSON parsed by a
/// `JSON*` function gives plain JavaScript objects, Hog dicts are JavaScript `Map`s.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Hog,
    Parsed,
}

/// The index when `s` is a JavaScript array index (`"0"`, `"42"`, up to 2^32-2), which objects
/// list before their other keys.
pub(super) fn array_index(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 10 || !b[0].is_ascii_digit() || (b[0] == b'0' && b.len() > 1) {
        return None;
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = s.parse().ok()?;
    (n < u64::from(u32::MAX)).then_some(n as u32)
}

/// Reorders keys as JavaScript lists an object's properties: array indexes ascending first.
pub(super) fn js_key_order(d: &mut Dict) {
    let rank = |k: &Key| match k {
        Key::Str(s) => array_index(s).map_or(u64::MAX, u64::from),
        _ => u64::MAX,
    };
    d.sort_by(|a, _, b, _| rank(a).cmp(&rank(b)));
}

/// `jsonParse`'s revival of serialized Hog objects (`{"__hogDateTime__": true, "dt", "zone"}`,
/// `{"__hogDate__": true, "year", "month", "day"}`, `{"__hogError__": true, "type", "message",
/// "payload"}`), where the fields fit our value types.
pub(super) fn hog_object(d: &Dict) -> Option<Value> {
    let get = |k: &str| d.get(&Key::str(k)).cloned().unwrap_or_default();
    if get("__hogDateTime__").truthy() {
        let Value::Number(dt) = get("dt") else { return None };
        let zone = match get("zone") {
            Value::Str(z) if !z.is_empty() => z,
            z if !z.truthy() => Text::from("UTC"),
            _ => return None,
        };
        return Some(Value::DateTime(Rc::new(crate::value::DateTimeValue { dt, zone })));
    }
    if get("__hogDate__").truthy() {
        let part = |k: &str| match get(k) {
            Value::Number(n) if n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&n) => Some(n),
            _ => None,
        };
        let (y, m, day) = (part("year")?, part("month")?, part("day")?);
        if y > f64::from(i32::MAX) {
            return None;
        }
        return Some(Value::Date(y as i32, m as u32, day as u32));
    }
    if get("__hogError__").truthy() {
        let kind = get("type");
        let message = get("message");
        let kind = if kind.truthy() { js_string(&kind, Origin::Parsed).ok()? } else { "Error".into() };
        let message =
            if message.truthy() { js_string(&message, Origin::Parsed).ok()? } else { "An error occurred".into() };
        return Some(Value::error(&kind, &message, get("payload")));
    }
    None
}

/// Parses JSON text straight into Hog values (objects become dicts in key order; numbers are
/// doubles), without an intermediate `serde_json::Value`. For hosts that hand JSON to functions
/// (events, `fetch` responses); see [`super::json_reader`].
pub fn parse_json(text: &str) -> Result<Value, super::json_reader::JsonError> {
    super::json_reader::read_json(text)
}

/// Parses JSON text into Hog values; `hog_objects` revives serialized dates, datetimes and errors
/// (as `jsonParse` does).
pub(super) fn parse(text: &str, hog_objects: bool) -> Result<Value, JsonError> {
    super::json_reader::read(text, hog_objects)
}

/// Whether JSON.parse accepts the text (no nesting limit, any number size, lone surrogates).
fn valid(text: &str) -> bool {
    let mut de = serde_json::Deserializer::from_str(text);
    serde::de::IgnoredAny::deserialize(&mut de).is_ok() && de.end().is_ok()
}

fn parse_error(e: &JsonError) -> StdlibError {
    if e.message.starts_with("recursion limit exceeded") {
        StdlibError::Invalid(format!(
            "invalid JSON: nested more than 127 levels deep at line {} column {}",
            e.line, e.column
        ))
    } else {
        StdlibError::Invalid(format!("invalid JSON: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// JavaScript conversions

/// JavaScript's `String(value)`: arrays join their items with commas (null items empty, cyclic
/// ones empty), dicts are `[object Map]` (or `[object Object]` when parsed from JSON).
fn js_string(v: &Value, origin: Origin) -> Result<String, StdlibError> {
    match v {
        Value::Str(s) => Ok(s.to_string()),
        Value::Array(_) | Value::Tuple(_) => {
            let mut out = String::new();
            join_items(v, origin, &mut out)?;
            Ok(out)
        }
        other => Ok(js_scalar_string(other, origin).into_owned()),
    }
}

fn js_scalar_string(v: &Value, origin: Origin) -> Cow<'static, str> {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => if *b { "true" } else { "false" }.into(),
        Value::Number(n) => format_number(*n).into(),
        Value::Str(s) => s.to_string().into(),
        Value::Dict(_) if origin == Origin::Hog => "[object Map]".into(),
        _ => "[object Object]".into(),
    }
}

fn join_items(v: &Value, origin: Origin, out: &mut String) -> Result<(), StdlibError> {
    super::coerce::join_js(v, out, &mut Vec::new(), &mut |x, out| out.push_str(&js_scalar_string(x, origin)))
}

// ---------------------------------------------------------------------------------------------
// Paths

/// A property name, as JavaScript turns a key into one.
enum Prop {
    /// A number (an array index when whole and in range).
    Index(f64),
    /// Any other name.
    Name(Text),
}

impl Prop {
    fn of(key: &Value, origin: Origin) -> Result<Prop, StdlibError> {
        Ok(match key {
            Value::Number(n) => Prop::Index(*n),
            Value::Str(s) => match array_index(s) {
                Some(i) => Prop::Index(f64::from(i)),
                None => Prop::Name(s.clone()),
            },
            other => {
                let s = js_string(other, origin)?;
                match array_index(&s) {
                    Some(i) => Prop::Index(f64::from(i)),
                    None => Prop::Name(Text::from(s)),
                }
            }
        })
    }

    fn name(&self) -> Text {
        match self {
            Prop::Index(n) => Text::from(format_number(*n)),
            Prop::Name(s) => s.clone(),
        }
    }
}

/// Whether JavaScript's `typeof` says `object` (null aside).
fn is_object(v: &Value) -> bool {
    matches!(
        v,
        Value::Array(_)
            | Value::Tuple(_)
            | Value::Dict(_)
            | Value::Error(_)
            | Value::DateTime(_)
            | Value::Date(..)
            | Value::Closure(_)
            | Value::Callable(_)
    )
}

/// A whole number in `0..len`, as an index.
fn index_in(x: f64, len: usize) -> Option<usize> {
    (x >= 0.0 && x.fract() == 0.0 && x < len as f64).then_some(x as usize)
}

/// The UTF-16 unit at `i` as a string (a lone surrogate becomes U+FFFD).
fn code_unit(s: &str, i: usize) -> Value {
    if s.is_ascii() {
        return Value::from(&s[i..=i]);
    }
    let unit = s.encode_utf16().nth(i).unwrap_or(0xfffd);
    Value::from(char::from_u32(u32::from(unit)).unwrap_or('\u{fffd}').to_string())
}

fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.encode_utf16().count()
    }
}

/// `obj[prop]` when `prop` is an own property of `obj` (JavaScript's `hasOwnProperty`); `Map`
/// entries are not properties.
fn own_property(obj: &Value, prop: &Prop, origin: Origin) -> Option<Value> {
    match obj {
        Value::Array(a) | Value::Tuple(a) => match prop {
            Prop::Index(x) => {
                let a = a.borrow();
                index_in(*x, a.len()).map(|i| a[i].clone())
            }
            Prop::Name(n) if &**n == "length" => Some(Value::Number(a.borrow().len() as f64)),
            Prop::Name(_) => None,
        },
        Value::Str(s) => match prop {
            Prop::Index(x) => index_in(*x, utf16_len(s)).map(|i| code_unit(s, i)),
            Prop::Name(n) if &**n == "length" => Some(Value::Number(utf16_len(s) as f64)),
            Prop::Name(_) => None,
        },
        Value::Dict(d) if origin == Origin::Parsed => d.borrow().get(&Key::Str(prop.name())).cloned(),
        Value::Error(e) => match &*prop.name() {
            "__hogError__" => Some(Value::Bool(true)),
            "type" => Some(Value::Str(e.kind.clone())),
            "message" => Some(Value::Str(e.message.clone())),
            "payload" => Some(e.payload.clone()),
            _ => None,
        },
        Value::DateTime(d) => match &*prop.name() {
            "__hogDateTime__" => Some(Value::Bool(true)),
            "dt" => Some(Value::Number(d.dt)),
            "zone" => Some(Value::Str(d.zone.clone())),
            _ => None,
        },
        Value::Date(y, m, day) => match &*prop.name() {
            "__hogDate__" => Some(Value::Bool(true)),
            "year" => Some(Value::Number(f64::from(*y))),
            "month" => Some(Value::Number(f64::from(*m))),
            "day" => Some(Value::Number(f64::from(*day))),
            _ => None,
        },
        _ => None,
    }
}

/// `obj.length` as a number, for negative indexes (NaN when it has none).
fn js_length(obj: &Value, origin: Origin) -> f64 {
    match obj {
        Value::Array(a) | Value::Tuple(a) => a.borrow().len() as f64,
        Value::Str(s) => utf16_len(s) as f64,
        Value::Dict(d) if origin == Origin::Parsed => {
            d.borrow().get(&Key::str("length")).and_then(Value::as_number).unwrap_or(f64::NAN)
        }
        _ => f64::NAN,
    }
}

fn index_zero() -> StdlibError {
    StdlibError::Invalid("Hog arrays start from index 1".into())
}

/// PostHog's `getNestedValue(obj, path, nullish = true)`.
fn nested(obj: &Value, path: &[Value], origin: Origin) -> NativeResult {
    if !is_object(obj) {
        return Ok(Value::Null);
    }
    let mut cur = obj.clone();
    for key in path {
        if cur.is_null() {
            return Ok(Value::Null);
        }
        cur = match (&cur, origin) {
            (Value::Dict(d), Origin::Hog) => match key.to_key() {
                Some(k) => d.borrow().get(&k).cloned().unwrap_or_default(),
                None => Value::Null,
            },
            _ => {
                let prop = match key {
                    Value::Number(n) if *n == 0.0 => return Err(index_zero()),
                    Value::Number(n) if *n > 0.0 => Prop::Index(n - 1.0),
                    Value::Number(n) => Prop::Index(js_length(&cur, origin) + n),
                    other => Prop::of(other, origin)?,
                };
                own_property(&cur, &prop, origin).unwrap_or_default()
            }
        };
    }
    Ok(cur)
}

/// The first argument as PostHog's JSON functions take it: a string is parsed (None when it is
/// not valid JSON), anything else is used as it is.
fn input(v: &Value) -> Option<(Value, Origin)> {
    match v {
        Value::Str(s) => parse(s, false).ok().map(|v| (v, Origin::Parsed)),
        other => Some((other.clone(), Origin::Hog)),
    }
}

/// The value at the path (`JSONExtract*`), None when the input is not valid JSON.
fn extract(args: &[Value]) -> Result<Option<(Value, Origin)>, StdlibError> {
    let Some((obj, origin)) = input(&arg(args, 0)) else { return Ok(None) };
    let path = args.get(1..).unwrap_or_default();
    Ok(Some((nested(&obj, path, origin)?, origin)))
}

// ---------------------------------------------------------------------------------------------
// Functions

fn json_parse(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    match &arg(args, 0) {
        Value::Null => Ok(Value::Null),
        Value::Str(s) => parse(s, true).map_err(|e| parse_error(&e)),
        // JSON.parse reads String(x): numbers and booleans come back as they are.
        v @ (Value::Number(_) | Value::Bool(_)) => {
            parse(&js_string(v, Origin::Hog)?, true).map_err(|e| parse_error(&e))
        }
        other => Err(StdlibError::wrong_type(0, "a string", other)),
    }
}

fn is_valid_json(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    // JSON.parse(String(x)): null and numbers are valid, dicts are not.
    let v = arg(args, 0);
    Ok(Value::Bool(match &v {
        Value::Str(s) => valid(s),
        other => valid(&js_string(other, Origin::Hog)?),
    }))
}

fn json_has(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    // PostHog walks the path, parsing every string it meets on the way as JSON. `None` is
    // JavaScript's `undefined` (a fractional or NaN index).
    let mut cur = Some(arg(args, 0));
    let mut origin = Origin::Hog;
    for key in args.get(1..).unwrap_or_default() {
        let parsed = match &cur {
            None => return Ok(Value::Bool(false)),
            Some(Value::Str(s)) => match parse(s, false) {
                Ok(v) => {
                    origin = Origin::Parsed;
                    v
                }
                Err(_) => return Ok(Value::Bool(false)),
            },
            Some(v) => v.clone(),
        };
        match (&parsed, origin) {
            (Value::Dict(d), Origin::Hog) => {
                let found = key.to_key().and_then(|k| d.borrow().get(&k).cloned());
                match found {
                    Some(v) => cur = Some(v),
                    None => return Ok(Value::Bool(false)),
                }
            }
            (v, _) if is_object(v) || v.is_null() => match key {
                Value::Number(n) => {
                    if let Value::Array(a) | Value::Tuple(a) = v {
                        let len = a.borrow().len() as f64;
                        let n = *n;
                        let at = if n < 0.0 {
                            if n < -len {
                                return Ok(Value::Bool(false));
                            }
                            len + n
                        } else if n == 0.0 {
                            return Ok(Value::Bool(false));
                        } else {
                            if n > len {
                                return Ok(Value::Bool(false));
                            }
                            n - 1.0
                        };
                        cur = own_property(v, &Prop::Index(at), origin);
                    }
                    // A number on anything but an array leaves the walk where it is (as PostHog).
                }
                other => {
                    // (PostHog's VM throws a TypeError for a key looked up in null.)
                    if v.is_null() {
                        return Ok(Value::Bool(false));
                    }
                    match own_property(v, &Prop::of(other, origin)?, origin) {
                        Some(found) => cur = Some(found),
                        None => return Ok(Value::Bool(false)),
                    }
                }
            },
            _ => return Ok(Value::Bool(false)),
        }
    }
    Ok(Value::Bool(true))
}

fn json_length(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some((obj, origin)) = input(&arg(args, 0)) else { return Ok(Value::Number(0.0)) };
    if !is_object(&obj) {
        // (PostHog's VM throws a TypeError for null.)
        return Ok(Value::Number(0.0));
    }
    let value = nested(&obj, args.get(1..).unwrap_or_default(), origin)?;
    // Object.keys() counts of PostHog's own objects, for completeness.
    let n = match &value {
        Value::Array(a) | Value::Tuple(a) => a.borrow().len(),
        Value::Dict(d) => d.borrow().len(),
        Value::DateTime(_) | Value::Closure(_) => 3,
        Value::Date(..) | Value::Error(_) => 4,
        Value::Callable(_) => 6,
        // (PostHog's VM throws a TypeError for a missing path.)
        _ => 0,
    };
    Ok(Value::Number(n as f64))
}

fn json_extract(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    if args.len() < 2 {
        return Ok(Value::Null);
    }
    let Some((obj, origin)) = input(&args[0]) else { return Ok(Value::Null) };
    // The last argument is the ClickHouse return type, which PostHog ignores.
    nested(&obj, &args[1..args.len() - 1], origin)
}

fn json_extract_array_raw(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(match extract(args)? {
        Some((v @ (Value::Array(_) | Value::Tuple(_)), _)) => v,
        _ => Value::Null,
    })
}

fn json_extract_bool(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some((obj, origin)) = input(&arg(args, 0)) else { return Ok(Value::Bool(false)) };
    let path = args.get(1..).unwrap_or_default();
    let v = if path.is_empty() { obj } else { nested(&obj, path, origin)? };
    Ok(Value::Bool(matches!(v, Value::Bool(true))))
}

fn json_extract_float(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some((v, origin)) = extract(args)? else { return Ok(Value::Null) };
    let f = match v {
        Value::Number(n) => n,
        other => super::math::parse_float(&js_string(&other, origin)?),
    };
    Ok(if f.is_nan() { Value::Null } else { Value::Number(f) })
}

fn json_extract_int(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some((v, origin)) = extract(args)? else { return Ok(Value::Null) };
    let i = super::math::parse_int(&js_string(&v, origin)?);
    Ok(if i.is_nan() { Value::Null } else { Value::Number(i) })
}

fn json_extract_string(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(match extract(args)? {
        Some((Value::Null, _)) | None => Value::Null,
        Some((v @ Value::Str(_), _)) => v,
        Some((v, origin)) => Value::from(js_string(&v, origin)?),
    })
}

// ---------------------------------------------------------------------------------------------
// jsonStringify

fn json_stringify(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    // PostHog indents when the argument is a positive number: JSON.stringify's `space`, at most
    // 10; V8 still breaks lines when it truncates to 0 (e.g. 0.5).
    let indent = match arg(args, 1) {
        Value::Number(n) if n > 0.0 => Some(n.min(10.0) as usize),
        _ => None,
    };
    let mut w = JsonWriter { out: String::new(), gap: indent, seen: Vec::new() };
    w.value(&arg(args, 0), 0, false)?;
    Ok(Value::from(w.out))
}

/// Writes JSON as PostHog's `jsonStringify` produces it: its conversion of Hog values to
/// JavaScript objects, then `JSON.stringify`.
struct JsonWriter {
    out: String,
    /// Indentation width when pretty-printing.
    gap: Option<usize>,
    /// Containers being written (a container met again inside itself is written as null).
    seen: Vec<usize>,
}

/// One member of an object being written.
enum Member<'a> {
    Value(&'a Value),
    Owned(Value),
}

impl JsonWriter {
    /// `raw`: inside an error's payload, which PostHog hands to JSON.stringify unconverted (dicts
    /// show as `{}`, a cycle is an error).
    fn value(&mut self, v: &Value, level: usize, raw: bool) -> Result<(), StdlibError> {
        if self.out.len() > MAX_OUTPUT {
            return Err(super::coerce::too_large());
        }
        match v {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) if n.is_finite() => self.out.push_str(&format_number(*n)),
            Value::Number(_) => self.out.push_str("null"),
            Value::Str(s) => write_json_string(&mut self.out, s),
            Value::Array(a) | Value::Tuple(a) => {
                let ptr = Rc::as_ptr(a) as usize;
                if !self.enter(ptr, raw)? {
                    return Ok(());
                }
                let items = a.borrow();
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.separator(i, level + 1);
                    self.value(item, level + 1, raw)?;
                }
                self.close(b']', items.is_empty(), level);
                self.seen.pop();
            }
            Value::Dict(d) => {
                if raw {
                    self.out.push_str("{}");
                    return Ok(());
                }
                let ptr = Rc::as_ptr(d) as usize;
                if !self.enter(ptr, raw)? {
                    return Ok(());
                }
                let d = d.borrow();
                let members = object_members(&d);
                self.object(&members, level, raw)?;
                self.seen.pop();
            }
            Value::DateTime(d) => self.object(
                &[
                    (Rc::from("__hogDateTime__"), Member::Owned(Value::Bool(true))),
                    (Rc::from("dt"), Member::Owned(Value::Number(d.dt))),
                    (Rc::from("zone"), Member::Owned(Value::Str(d.zone.clone()))),
                ],
                level,
                raw,
            )?,
            Value::Date(y, m, day) => self.object(
                &[
                    (Rc::from("__hogDate__"), Member::Owned(Value::Bool(true))),
                    (Rc::from("year"), Member::Owned(Value::Number(f64::from(*y)))),
                    (Rc::from("month"), Member::Owned(Value::Number(f64::from(*m)))),
                    (Rc::from("day"), Member::Owned(Value::Number(f64::from(*day)))),
                ],
                level,
                raw,
            )?,
            Value::Error(e) => {
                let mut members = vec![
                    (Rc::from("__hogError__"), Member::Owned(Value::Bool(true))),
                    (Rc::from("type"), Member::Owned(Value::Str(e.kind.clone()))),
                    (Rc::from("message"), Member::Owned(Value::Str(e.message.clone()))),
                ];
                // Error('x') has no payload in PostHog (undefined, left out of the JSON).
                if !e.payload.is_null() {
                    members.push((Rc::from("payload"), Member::Value(&e.payload)));
                }
                let ptr = Rc::as_ptr(e) as usize;
                if !self.enter(ptr, raw)? {
                    return Ok(());
                }
                // The payload goes to JSON.stringify unconverted.
                self.object(&members, level, true)?;
                self.seen.pop();
            }
            Value::Closure(c) => write_json_string(&mut self.out, &fn_name(&c.callable)),
            Value::Callable(c) => write_json_string(&mut self.out, &fn_name(c)),
        }
        Ok(())
    }

    /// Marks a container as being written; false when it is already (a cycle: written as null).
    fn enter(&mut self, ptr: usize, raw: bool) -> Result<bool, StdlibError> {
        if self.seen.contains(&ptr) {
            if raw {
                return Err(StdlibError::Invalid("cannot serialize an error payload that contains itself".into()));
            }
            self.out.push_str("null");
            return Ok(false);
        }
        if self.seen.len() >= MAX_DEPTH {
            return Err(StdlibError::Invalid(format!("value nested deeper than {MAX_DEPTH} levels")));
        }
        self.seen.push(ptr);
        Ok(true)
    }

    fn object(&mut self, members: &[(Rc<str>, Member<'_>)], level: usize, raw: bool) -> Result<(), StdlibError> {
        self.out.push('{');
        for (i, (k, v)) in members.iter().enumerate() {
            self.separator(i, level + 1);
            write_json_string(&mut self.out, k);
            self.out.push(':');
            if self.gap.is_some() {
                self.out.push(' ');
            }
            match v {
                Member::Value(v) => self.value(v, level + 1, raw)?,
                Member::Owned(v) => self.value(v, level + 1, raw)?,
            }
        }
        self.close(b'}', members.is_empty(), level);
        Ok(())
    }

    fn separator(&mut self, i: usize, level: usize) {
        if i > 0 {
            self.out.push(',');
        }
        if let Some(gap) = self.gap {
            self.out.push('\n');
            self.out.extend(std::iter::repeat_n(' ', gap * level));
        }
    }

    fn close(&mut self, bracket: u8, empty: bool, level: usize) {
        if let (Some(gap), false) = (self.gap, empty) {
            self.out.push('\n');
            self.out.extend(std::iter::repeat_n(' ', gap * level));
        }
        self.out.push(bracket as char);
    }
}

/// `fn<name(argCount)>`, as PostHog serializes functions.
fn fn_name(c: &crate::vm::Callable) -> String {
    let name = if c.name.is_empty() { "lambda" } else { &c.name };
    format!("fn<{name}({})>", c.arg_count)
}

/// A dict's members as the JavaScript object PostHog converts it to: keys become property names
/// (`1` and `'1'` are the same name, the later value wins), array-index names first, and
/// `__proto__` is not a property.
fn object_members(d: &Dict) -> Vec<(Rc<str>, Member<'_>)> {
    let mut members: Vec<(Rc<str>, Member<'_>)> = Vec::with_capacity(d.len());
    let all_strings = d.keys().all(|k| matches!(k, Key::Str(_)));
    let mut index_keys = false;
    for (k, v) in d {
        let name: Rc<str> = match k {
            Key::Str(s) => Rc::from(&**s),
            Key::Null => Rc::from("null"),
            Key::Bool(b) => Rc::from(if *b { "true" } else { "false" }),
            Key::Num(bits) => Rc::from(format_number(f64::from_bits(*bits))),
        };
        if &*name == "__proto__" {
            continue;
        }
        index_keys |= array_index(&name).is_some();
        if !all_strings {
            if let Some(existing) = members.iter_mut().find(|(n, _)| *n == name) {
                existing.1 = Member::Value(v);
                continue;
            }
        }
        members.push((name, Member::Value(v)));
    }
    if index_keys {
        let rank = |k: &str| array_index(k).map_or(u64::MAX, u64::from);
        members.sort_by_key(|a| rank(&a.0));
    }
    members
}

/// A JSON string literal, escaped as JSON.stringify does.
fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let v = parse(r#"["\ud83d", "ok", "\ud83d\ude00"]"#, false).map(|v| v.repr()).ok();
        assert_eq!(v.as_deref(), Some("['\u{fffd}', 'ok', '😀']"));
    }

    #[test]
    fn array_indexes() {
        assert_eq!(array_index("0"), Some(0));
        assert_eq!(array_index("4294967294"), Some(4_294_967_294));
        assert_eq!(array_index("4294967295"), None);
        assert_eq!(array_index("01"), None);
        assert_eq!(array_index("-1"), None);
        assert_eq!(array_index(""), None);
    }
}
