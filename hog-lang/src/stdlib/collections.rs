//! Containers: `length`, `keys`, `values`, `empty`, `notEmpty`, `tuple`, `arrayPushBack`.

use super::{arg, Ctx, NativeFunction, NativeResult};
use crate::value::Value;

/// The collections family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "length",
        signature: "length(value: string | array | tuple) -> integer",
        description: "Characters of a string (UTF-16 units, as JavaScript counts) or items of an array; null for null",
        min_args: 1,
        max_args: Some(1),
        func: length,
        examples: &[],
    },
    NativeFunction {
        name: "keys",
        signature: "keys(value: dict | array) -> array",
        description: "Keys of a dict in insertion order, or 0-based indexes of an array",
        min_args: 1,
        max_args: Some(1),
        func: keys,
        examples: &[],
    },
    NativeFunction {
        name: "values",
        signature: "values(value: dict | array) -> array",
        description: "Values of a dict in insertion order, or a copy of an array",
        min_args: 1,
        max_args: Some(1),
        func: values,
        examples: &[],
    },
    NativeFunction {
        name: "empty",
        signature: "empty(value) -> boolean",
        description: "True for null, '', [], {} and empty tuples; false for numbers and booleans",
        min_args: 1,
        max_args: Some(1),
        func: empty,
        examples: &[],
    },
    NativeFunction {
        name: "notEmpty",
        signature: "notEmpty(value) -> boolean",
        description: "The opposite of empty",
        min_args: 1,
        max_args: Some(1),
        func: not_empty,
        examples: &[],
    },
    NativeFunction {
        name: "tuple",
        signature: "tuple(...values) -> tuple",
        description: "A tuple of the arguments",
        min_args: 0,
        max_args: None,
        func: tuple,
        examples: &[],
    },
    NativeFunction {
        name: "arrayPushBack",
        signature: "arrayPushBack(array, item) -> array",
        description: "A new array with the item appended (a non-array becomes [item])",
        min_args: 2,
        max_args: Some(2),
        func: array_push_back,
        examples: &[],
    },
];

fn length(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(match &arg(args, 0) {
        Value::Str(s) => {
            let n = if s.is_ascii() { s.len() } else { s.encode_utf16().count() };
            Value::Number(n as f64)
        }
        Value::Array(a) | Value::Tuple(a) => Value::Number(a.borrow().len() as f64),
        _ => Value::Null,
    })
}

fn keys(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(match &arg(args, 0) {
        Value::Array(a) | Value::Tuple(a) => {
            Value::array((0..a.borrow().len()).map(|i| Value::Number(i as f64)).collect())
        }
        Value::Dict(d) => Value::array(d.borrow().keys().map(|k| k.to_value()).collect()),
        _ => Value::array(Vec::new()),
    })
}

fn values(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(match &arg(args, 0) {
        Value::Array(a) | Value::Tuple(a) => Value::array(a.borrow().clone()),
        Value::Dict(d) => Value::array(d.borrow().values().cloned().collect()),
        _ => Value::array(Vec::new()),
    })
}

/// Emptiness as PostHog defines it.
pub fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Str(s) => s.is_empty(),
        Value::Array(a) | Value::Tuple(a) => a.borrow().is_empty(),
        Value::Dict(d) => d.borrow().is_empty(),
        _ => false,
    }
}

fn empty(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(is_empty(&arg(args, 0))))
}

fn not_empty(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(!is_empty(&arg(args, 0))))
}

fn tuple(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::tuple(args.to_vec()))
}

fn array_push_back(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let item = arg(args, 1);
    Ok(match &arg(args, 0) {
        Value::Array(a) | Value::Tuple(a) => {
            let a = a.borrow();
            let mut v = Vec::with_capacity(a.len() + 1);
            v.extend(a.iter().cloned());
            v.push(item);
            Value::array(v)
        }
        _ => Value::array(vec![item]),
    })
}
