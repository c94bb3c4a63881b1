//! JavaScript's implicit conversions, as PostHog's VM applies them to arguments: `String(x)`
//! (`js_string`, `write_js_string`) and `Number(x)` (`js_number`). Safe on any value: arrays that
//! contain themselves, deep nesting (an error past `MAX_DEPTH`) and huge results (a memory-limit
//! error past `MAX_BYTES`).

use super::StdlibError;
use crate::value::{format_number, js_string_to_number, Value};
use std::borrow::Cow;
use std::rc::Rc;

/// The largest string or collection a function may build.
pub const MAX_BYTES: usize = 64 << 20;

/// The deepest nesting conversions follow.
pub const MAX_DEPTH: usize = 1000;

/// A result would pass `MAX_BYTES`: reported as the memory limit.
pub fn too_large() -> StdlibError {
    StdlibError::Limit { limit: "memory", message: format!("the result would be larger than {} MB", MAX_BYTES >> 20) }
}

/// JavaScript's `String(value)` for the values PostHog's VM converts implicitly: arrays and tuples
/// join their items with `,` (null items empty, an array inside itself empty), dicts are
/// `[object Map]`, other objects `[object Object]`. Fails past 1000 levels of nesting or 64 MB.
pub fn js_string(v: &Value) -> Result<Cow<'_, str>, StdlibError> {
    match v {
        Value::Str(s) => Ok(Cow::Borrowed(&**s)),
        Value::Array(_) | Value::Tuple(_) => {
            let mut out = String::new();
            write_js_string(v, &mut out)?;
            Ok(Cow::Owned(out))
        }
        other => Ok(js_scalar_string(other)),
    }
}

/// Appends `String(value)` (see `js_string`) to `out`; fails when `out` would pass 64 MB.
pub fn write_js_string(v: &Value, out: &mut String) -> Result<(), StdlibError> {
    match v {
        Value::Array(_) | Value::Tuple(_) => write_js_items(v, out, &mut Vec::new()),
        Value::Str(s) => {
            out.push_str(s);
            check_size(out)
        }
        other => {
            write_js_scalar(other, out);
            check_size(out)
        }
    }
}

fn check_size(out: &str) -> Result<(), StdlibError> {
    if out.len() > MAX_BYTES {
        return Err(too_large());
    }
    Ok(())
}

/// `String(x)` of anything but an array or tuple.
pub fn js_scalar_string(v: &Value) -> Cow<'static, str> {
    match v {
        Value::Null => Cow::Borrowed("null"),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Number(n) => Cow::Owned(format_number(*n)),
        Value::Str(s) => Cow::Owned(s.to_string()),
        Value::Dict(_) => Cow::Borrowed("[object Map]"),
        _ => Cow::Borrowed("[object Object]"),
    }
}

fn write_js_scalar(v: &Value, out: &mut String) {
    match v {
        Value::Number(n) => crate::value::push_number(out, *n),
        Value::Str(s) => out.push_str(s),
        other => out.push_str(&js_scalar_string(other)),
    }
}

fn write_js_items(v: &Value, out: &mut String, seen: &mut Vec<*const ()>) -> Result<(), StdlibError> {
    join_js(v, out, seen, &mut write_js_scalar)
}

/// JavaScript's `Array.prototype.join(',')` of `v` into `out`, writing non-array items with
/// `scalar`: null items are empty, an array met again inside itself is empty (as in V8), nesting
/// past `MAX_DEPTH` and text past `MAX_BYTES` are errors.
pub fn join_js(
    v: &Value,
    out: &mut String,
    seen: &mut Vec<*const ()>,
    scalar: &mut dyn FnMut(&Value, &mut String),
) -> Result<(), StdlibError> {
    let (Value::Array(a) | Value::Tuple(a)) = v else {
        scalar(v, out);
        return Ok(());
    };
    let ptr = Rc::as_ptr(a) as *const ();
    if seen.contains(&ptr) {
        return Ok(());
    }
    if seen.len() >= MAX_DEPTH {
        return Err(StdlibError::Invalid(format!("arrays nested more than {MAX_DEPTH} deep")));
    }
    seen.push(ptr);
    for (i, item) in a.borrow().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Null => {}
            Value::Array(_) | Value::Tuple(_) => join_js(item, out, seen, scalar)?,
            other => scalar(other, out),
        }
        check_size(out)?;
    }
    seen.pop();
    Ok(())
}

/// JavaScript's `Number(value)`: like `Value::to_number`, but safe on arrays that contain themselves.
pub fn js_number(v: &Value) -> Result<f64, StdlibError> {
    match v {
        Value::Array(_) | Value::Tuple(_) => Ok(js_string_to_number(&js_string(v)?)),
        other => Ok(other.to_number()),
    }
}
