//! Containers: `length`, `keys`, `values`, `empty`, `notEmpty`, `tuple`, `arrayPushBack`,
//! `arrayPushFront`, `arrayPopBack`, `arrayPopFront`, `arrayReverse`, `arraySort`,
//! `arrayReverseSort`, `has`, `indexOf`.
//!
//! The array functions never change their argument: they return a new array (also when given a
//! tuple). Given something that is not an array or tuple, they return `[]` (the push functions
//! `[item]`), as PostHog's VM does. Sorting is JavaScript's default sort: stable, by each item's
//! text (`String(x)`) compared in UTF-16 code units, so `[10, 9, 1]` sorts to `[1, 10, 9]`.

use super::coerce::write_js_string;
use super::{arg, Ctx, NativeFunction, NativeResult, StdlibError};
use crate::value::Value;
use std::cmp::Ordering;

/// The collections family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "length",
        signature: "length(value: string | array | tuple) -> integer",
        description: "Characters of a string (UTF-16 units, as JavaScript counts) or items of an array; null for null",
        min_args: 1,
        max_args: Some(1),
        func: length,
        examples: &[
            ("length('abc')", "3"),
            ("length('héllo 👋')", "8"),
            ("length([1, [2, 3]])", "2"),
            ("length(null)", "null"),
        ],
    },
    NativeFunction {
        name: "keys",
        signature: "keys(value: dict | array) -> array",
        description: "Keys of a dict in insertion order, or 0-based indexes of an array",
        min_args: 1,
        max_args: Some(1),
        func: keys,
        examples: &[("keys({'a': 1, 'b': 2})", "['a', 'b']"), ("keys([5, 6])", "[0, 1]"), ("keys(null)", "[]")],
    },
    NativeFunction {
        name: "values",
        signature: "values(value: dict | array) -> array",
        description: "Values of a dict in insertion order, or a copy of an array",
        min_args: 1,
        max_args: Some(1),
        func: values,
        examples: &[("values({'a': 1, 'b': [2]})", "[1, [2]]"), ("values((5, 6))", "[5, 6]"), ("values('abc')", "[]")],
    },
    NativeFunction {
        name: "empty",
        signature: "empty(value) -> boolean",
        description: "True for null, '', [], {} and empty tuples; false for numbers and booleans",
        min_args: 1,
        max_args: Some(1),
        func: empty,
        examples: &[
            ("empty('')", "true"),
            ("empty([0])", "false"),
            ("empty({})", "true"),
            ("empty(0)", "false"),
            ("empty(null)", "true"),
        ],
    },
    NativeFunction {
        name: "notEmpty",
        signature: "notEmpty(value) -> boolean",
        description: "The opposite of empty",
        min_args: 1,
        max_args: Some(1),
        func: not_empty,
        examples: &[("notEmpty('a')", "true"), ("notEmpty([])", "false"), ("notEmpty(null)", "false")],
    },
    NativeFunction {
        name: "tuple",
        signature: "tuple(...values) -> tuple",
        description: "A tuple of the arguments",
        min_args: 0,
        max_args: None,
        func: tuple,
        examples: &[("tuple(1, 'a')", "(1, 'a')"), ("tuple(1)", "tuple(1)"), ("tuple()", "tuple()")],
    },
    NativeFunction {
        name: "arrayPushBack",
        signature: "arrayPushBack(array, item) -> array",
        description: "A new array with the item appended (a non-array becomes [item])",
        min_args: 2,
        max_args: Some(2),
        func: array_push_back,
        examples: &[
            ("arrayPushBack([1, 2], 3)", "[1, 2, 3]"),
            ("arrayPushBack(null, 1)", "[1]"),
            ("arrayPushBack((1, 2), [3])", "[1, 2, [3]]"),
        ],
    },
    NativeFunction {
        name: "arrayPushFront",
        signature: "arrayPushFront(array, item) -> array",
        description: "A new array with the item prepended (a non-array becomes [item])",
        min_args: 2,
        max_args: Some(2),
        func: array_push_front,
        examples: &[
            ("arrayPushFront([1, 2], 0)", "[0, 1, 2]"),
            ("arrayPushFront(null, 1)", "[1]"),
            ("arrayPushFront('ab', 1)", "[1]"),
        ],
    },
    NativeFunction {
        name: "arrayPopBack",
        signature: "arrayPopBack(array) -> array",
        description: "A new array without the last item ([] for a non-array)",
        min_args: 1,
        max_args: Some(1),
        func: array_pop_back,
        examples: &[("arrayPopBack([1, 2, 3])", "[1, 2]"), ("arrayPopBack([])", "[]"), ("arrayPopBack(null)", "[]")],
    },
    NativeFunction {
        name: "arrayPopFront",
        signature: "arrayPopFront(array) -> array",
        description: "A new array without the first item ([] for a non-array)",
        min_args: 1,
        max_args: Some(1),
        func: array_pop_front,
        examples: &[
            ("arrayPopFront([1, 2, 3])", "[2, 3]"),
            ("arrayPopFront((1, 2))", "[2]"),
            ("arrayPopFront('abc')", "[]"),
        ],
    },
    NativeFunction {
        name: "arrayReverse",
        signature: "arrayReverse(array) -> array",
        description: "A new array with the items in reverse order ([] for a non-array)",
        min_args: 1,
        max_args: Some(1),
        func: array_reverse,
        examples: &[("arrayReverse([1, 2, 3])", "[3, 2, 1]"), ("arrayReverse(null)", "[]")],
    },
    NativeFunction {
        name: "arraySort",
        signature: "arraySort(array) -> array",
        description:
            "A new array sorted as JavaScript sorts: stable, by each item's text in UTF-16 order ([] for a non-array)",
        min_args: 1,
        max_args: None,
        func: array_sort,
        examples: &[
            ("arraySort(['b', 'a', 'B'])", "['B', 'a', 'b']"),
            ("arraySort([3, 10, 2])", "[10, 2, 3]"),
            ("arraySort([null, 'm', 1])", "[1, 'm', null]"),
            ("arraySort(null)", "[]"),
        ],
    },
    NativeFunction {
        name: "arrayReverseSort",
        signature: "arrayReverseSort(array) -> array",
        description: "arraySort, then reversed ([] for a non-array)",
        min_args: 1,
        max_args: None,
        func: array_reverse_sort,
        examples: &[
            ("arrayReverseSort(['b', 'a', 'c'])", "['c', 'b', 'a']"),
            ("arrayReverseSort([3, 10, 2])", "[3, 2, 10]"),
            ("arrayReverseSort(1)", "[]"),
        ],
    },
    NativeFunction {
        name: "has",
        signature: "has(array, item) -> boolean",
        description:
            "Whether the array or tuple holds the item (strictly equal, NaN equal to itself; false for anything else)",
        min_args: 2,
        max_args: Some(2),
        func: has,
        examples: &[
            ("has([1, 2], 2)", "true"),
            ("has([1, 2], '2')", "false"),
            ("has([null], null)", "true"),
            ("has('abc', 'a')", "false"),
        ],
    },
    NativeFunction {
        name: "indexOf",
        signature: "indexOf(array, item) -> integer",
        description: "1-based position of the first item strictly equal to item; 0 when absent or not an array",
        min_args: 2,
        max_args: Some(2),
        func: index_of,
        examples: &[
            ("indexOf(['a', 'b', 'b'], 'b')", "2"),
            ("indexOf([1, 2], 3)", "0"),
            ("indexOf('abc', 'b')", "0"),
            ("indexOf(null, 1)", "0"),
        ],
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

fn array_items(v: &Value) -> Option<std::cell::Ref<'_, Vec<Value>>> {
    match v {
        Value::Array(a) | Value::Tuple(a) => Some(a.borrow()),
        _ => None,
    }
}

fn array_push_front(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let item = arg(args, 1);
    Ok(match array_items(&arg(args, 0)) {
        Some(a) => {
            let mut v = Vec::with_capacity(a.len() + 1);
            v.push(item);
            v.extend(a.iter().cloned());
            Value::array(v)
        }
        None => Value::array(vec![item]),
    })
}

fn array_pop_back(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::array(match array_items(&arg(args, 0)) {
        Some(a) => a[..a.len().saturating_sub(1)].to_vec(),
        None => Vec::new(),
    }))
}

fn array_pop_front(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::array(match array_items(&arg(args, 0)) {
        Some(a) => a.get(1..).unwrap_or_default().to_vec(),
        None => Vec::new(),
    }))
}

fn array_reverse(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::array(match array_items(&arg(args, 0)) {
        Some(a) => a.iter().rev().cloned().collect(),
        None => Vec::new(),
    }))
}

/// The first UTF-16 code unit of a character, then the character: ordering by this pair orders
/// strings as JavaScript does (by UTF-16 code units, where astral characters sort below U+E000).
fn utf16_key(c: char) -> (u32, u32) {
    let n = c as u32;
    let unit = if n >= 0x1_0000 { 0xD800 + ((n - 0x1_0000) >> 10) } else { n };
    (unit, n)
}

/// Compares strings by UTF-16 code units, as JavaScript does.
fn js_str_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.chars(), b.chars());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c == d => {}
            (Some(c), Some(d)) => return utf16_key(c).cmp(&utf16_key(d)),
        }
    }
}

/// JavaScript's default `Array.prototype.sort` of a copy: stable, by `String(item)`.
fn sorted(v: &Value) -> Result<Vec<Value>, StdlibError> {
    let Some(items) = array_items(v).map(|a| a.clone()) else {
        return Ok(Vec::new());
    };
    // Every item's text, one after another in one buffer (at most 64 MB in all).
    let mut text = String::new();
    let mut spans = Vec::with_capacity(items.len());
    for item in &items {
        let start = text.len();
        write_js_string(item, &mut text)?;
        spans.push(start..text.len());
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&i, &j| js_str_cmp(&text[spans[i].clone()], &text[spans[j].clone()]));
    Ok(order.into_iter().map(|i| items[i].clone()).collect())
}

fn array_sort(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::array(sorted(&arg(args, 0))?))
}

fn array_reverse_sort(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let mut v = sorted(&arg(args, 0))?;
    v.reverse();
    Ok(Value::array(v))
}

fn has(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let item = arg(args, 1);
    Ok(Value::Bool(array_items(&arg(args, 0)).is_some_and(|a| a.iter().any(|v| v.same_value_zero(&item)))))
}

fn index_of(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let item = arg(args, 1);
    let found = array_items(&arg(args, 0)).and_then(|a| a.iter().position(|v| v.strict_eq(&item)));
    Ok(Value::Number(found.map_or(0.0, |i| (i + 1) as f64)))
}
