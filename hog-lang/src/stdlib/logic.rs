//! Logic and comparisons as functions: `and`, `or`, `not`, `if`, `multiIf`, `coalesce`, `ifNull`,
//! `assumeNotNull`, `equals`, `notEquals`, `greater`, `greaterOrEquals`, `less`, `lessOrEquals`,
//! `in`, and `run`.
//!
//! The compiler lowers direct calls of `and`, `or`, `not`, `if`, `multiIf` and `ifNull` into jumps
//! (so their arguments are evaluated lazily); these natives serve function values
//! (`let f := equals`) and bytecode that calls them by name. Comparisons use the VM's own
//! `equals` and `order`, so `equals(a, b)` always agrees with `a = b` (and `less(null, 1)`, like
//! `null < 1`, is false).

use super::{arg, Ctx, NativeFunction, NativeResult, StdlibError};
use crate::bytecode::Opcode;
use crate::value::Value;
use crate::vm::{js_order, ordering_satisfies};

/// The logic family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "and",
        signature: "and(...values) -> boolean",
        description: "Whether every value is truthy",
        min_args: 1,
        max_args: None,
        func: and,
        examples: &[("and(true, 1, 'a')", "true"), ("and(true, 0)", "false"), ("and(null)", "false")],
    },
    NativeFunction {
        name: "or",
        signature: "or(...values) -> boolean",
        description: "Whether any value is truthy",
        min_args: 1,
        max_args: None,
        func: or,
        examples: &[("or(false, 0, 'a')", "true"), ("or(false, '', null)", "false")],
    },
    NativeFunction {
        name: "not",
        signature: "not(value) -> boolean",
        description: "Whether the value is falsy (null, false, 0, NaN or '')",
        min_args: 1,
        max_args: Some(1),
        func: not,
        examples: &[("not(true)", "false"), ("not('')", "true"), ("not([])", "false")],
    },
    NativeFunction {
        name: "if",
        signature: "if(condition, then, else) -> any",
        description: "then when the condition is truthy, else otherwise",
        min_args: 3,
        max_args: Some(3),
        func: if_fn,
        examples: &[("if(1 > 0, 'yes', 'no')", "'yes'"), ("if(null, 'yes', 'no')", "'no'")],
    },
    NativeFunction {
        name: "multiIf",
        signature: "multiIf(cond1, value1, cond2, value2, ..., else?) -> any",
        description: "The value after the first truthy condition; else (or null) when none is",
        min_args: 3,
        max_args: None,
        func: multi_if,
        examples: &[
            ("multiIf(false, 1, true, 2, 3)", "2"),
            ("multiIf(false, 1, false, 2, 3)", "3"),
            ("multiIf(false, 1, false, 2)", "null"),
        ],
    },
    NativeFunction {
        name: "coalesce",
        signature: "coalesce(...values) -> any",
        description: "The first value that is not null",
        min_args: 1,
        max_args: None,
        func: coalesce,
        examples: &[("coalesce(null, 0, 1)", "0"), ("coalesce(null, null)", "null")],
    },
    NativeFunction {
        name: "ifNull",
        signature: "ifNull(value, fallback) -> any",
        description: "The value, or the fallback when the value is null",
        min_args: 2,
        max_args: Some(2),
        func: if_null,
        examples: &[("ifNull(null, 'x')", "'x'"), ("ifNull('', 'x')", "''")],
    },
    NativeFunction {
        name: "assumeNotNull",
        signature: "assumeNotNull(value) -> any",
        description: "The value; fails when it is null",
        min_args: 1,
        max_args: Some(1),
        func: assume_not_null,
        examples: &[("assumeNotNull(0)", "0"), ("assumeNotNull(null)", "error: value is null")],
    },
    NativeFunction {
        name: "equals",
        signature: "equals(a, b) -> boolean",
        description: "a = b, with the same rules as the = operator",
        min_args: 2,
        max_args: Some(2),
        func: equals_fn,
        examples: &[("equals(1, 1.0)", "true"), ("equals(1, '1')", "false"), ("equals(null, 0)", "false")],
    },
    NativeFunction {
        name: "notEquals",
        signature: "notEquals(a, b) -> boolean",
        description: "a != b, with the same rules as the != operator",
        min_args: 2,
        max_args: Some(2),
        func: not_equals,
        examples: &[("notEquals(1, 2)", "true"), ("notEquals(null, 0)", "true"), ("notEquals(null, null)", "false")],
    },
    NativeFunction {
        name: "greater",
        signature: "greater(a, b) -> boolean",
        description: "a > b, with the same rules as the > operator (false when either is null)",
        min_args: 2,
        max_args: Some(2),
        func: greater,
        examples: &[("greater(2, 1)", "true"), ("greater('b', 'a')", "true"), ("greater(null, -1)", "false")],
    },
    NativeFunction {
        name: "greaterOrEquals",
        signature: "greaterOrEquals(a, b) -> boolean",
        description: "a >= b, with the same rules as the >= operator (false when either is null)",
        min_args: 2,
        max_args: Some(2),
        func: greater_or_equals,
        examples: &[("greaterOrEquals(2, 2)", "true"), ("greaterOrEquals(null, null)", "false")],
    },
    NativeFunction {
        name: "less",
        signature: "less(a, b) -> boolean",
        description: "a < b, with the same rules as the < operator (false when either is null)",
        min_args: 2,
        max_args: Some(2),
        func: less,
        examples: &[("less(1, 2)", "true"), ("less('10', '9')", "true"), ("less(null, 1)", "false")],
    },
    NativeFunction {
        name: "lessOrEquals",
        signature: "lessOrEquals(a, b) -> boolean",
        description: "a <= b, with the same rules as the <= operator (false when either is null)",
        min_args: 2,
        max_args: Some(2),
        func: less_or_equals,
        examples: &[
            ("lessOrEquals(2, 2)", "true"),
            ("lessOrEquals(3, 2)", "false"),
            ("lessOrEquals(null, 1)", "false"),
        ],
    },
    NativeFunction {
        name: "in",
        signature: "in(value, array | tuple) -> boolean",
        description: "Whether the array or tuple holds the value (strictly equal; false for anything else)",
        min_args: 2,
        max_args: Some(2),
        func: in_fn,
        examples: &[("in(2, [1, 2])", "true"), ("in('2', [1, 2])", "false"), ("in('a', 'abc')", "false")],
    },
    NativeFunction {
        name: "run",
        signature: "run(query: string) -> array",
        description: "Runs a HogQL query; only where the host provides a data warehouse",
        min_args: 1,
        max_args: Some(1),
        func: run,
        examples: &[("run('select 1')", "error: not available here")],
    },
];

fn and(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(args.iter().all(Value::truthy)))
}

fn or(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(args.iter().any(Value::truthy)))
}

fn not(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(!arg(args, 0).truthy()))
}

fn if_fn(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(if arg(args, 0).truthy() { arg(args, 1) } else { arg(args, 2) })
}

/// As PostHog's compiler lowers it: pairs of (condition, value), then an optional else; with an even
/// number of arguments there is no else and the result is null.
fn multi_if(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let mut pairs = args.chunks_exact(2);
    for pair in &mut pairs {
        if pair[0].truthy() {
            return Ok(pair[1].clone());
        }
    }
    Ok(pairs.remainder().first().cloned().unwrap_or_default())
}

fn coalesce(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(args.iter().find(|v| !v.is_null()).cloned().unwrap_or_default())
}

fn if_null(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let v = arg(args, 0);
    Ok(if v.is_null() { arg(args, 1) } else { v })
}

fn assume_not_null(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    match arg(args, 0) {
        Value::Null => Err(StdlibError::Invalid("value is null".into())),
        v => Ok(v),
    }
}

fn pair(args: &[Value]) -> (Value, Value) {
    (arg(args, 0), arg(args, 1))
}

/// PostHog's `equals` function is JavaScript's `===` (unlike the `=` operator, it does not align
/// types: `equals(1, '1')` is false; containers are equal only to themselves).
fn equals_fn(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let (a, b) = pair(args);
    Ok(Value::Bool(a.strict_eq(&b)))
}

fn not_equals(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let (a, b) = pair(args);
    Ok(Value::Bool(!a.strict_eq(&b)))
}

/// PostHog's ordering functions are JavaScript's `>`, `<`, … (no type alignment), except that, as
/// HOG.md requires, a null on either side makes them false.
fn compare(op: Opcode, args: &[Value]) -> NativeResult {
    let (a, b) = pair(args);
    if a.is_null() || b.is_null() {
        return Ok(Value::Bool(false));
    }
    Ok(Value::Bool(js_order(&a, &b).is_some_and(|o| ordering_satisfies(op, o))))
}

fn greater(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    compare(Opcode::GT, args)
}

fn greater_or_equals(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    compare(Opcode::GT_EQ, args)
}

fn less(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    compare(Opcode::LT, args)
}

fn less_or_equals(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    compare(Opcode::LT_EQ, args)
}

/// PostHog's `in` function (unlike the `in` operator) only looks into arrays and tuples, and
/// compares with JavaScript's `includes` (strict, `NaN` equal to itself).
fn in_fn(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let needle = arg(args, 0);
    Ok(Value::Bool(match args.get(1) {
        Some(Value::Array(a) | Value::Tuple(a)) => a.borrow().iter().any(|v| v.same_value_zero(&needle)),
        _ => false,
    }))
}

fn run(_: &mut Ctx<'_>, _: &[Value]) -> NativeResult {
    Err(StdlibError::Unavailable(
        "run(query) runs a HogQL query, which needs a host with a data warehouse; this host has none".into(),
    ))
}
