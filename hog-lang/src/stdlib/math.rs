//! Numbers: `plus`, `minus`, `floor`, `round`, `min2`, `max2`, `randomFloat`, `toInt`, `toFloat`,
//! `range`.
//!
//! PostHog's VM runs these as JavaScript: `plus` is JavaScript's `+` (a string on either side
//! concatenates), `floor` and `round` are `Math.floor` / `Math.round` of `Number(x)`, `toInt` is
//! `parseInt(String(x))` and `toFloat` is `parseFloat(String(x))` (so `toInt('12abc')` is 12,
//! `toInt('1.9')` is 1 and `toFloat('x')` is null). The parsers live here
//! (`parse_int`, `parse_float`); `String(x)` and `Number(x)` are in `coerce`.

use super::coerce::{js_number, js_scalar_string, js_string, MAX_BYTES as MAX_STRING, MAX_DEPTH};
use super::{arg, Ctx, NativeFunction, NativeResult, StdlibError};
use crate::bytecode::Opcode;
use crate::value::{days_from_civil, format_number, is_js_space, Value};
use crate::vm::order;
use std::borrow::Cow;

/// The most elements `range` makes.
pub const MAX_RANGE: f64 = 10_000_000.0;

/// The math family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "plus",
        signature: "plus(a, b) -> number | string",
        description: "a + b as JavaScript adds: numbers add, a string on either side concatenates",
        min_args: 2,
        max_args: Some(2),
        func: plus,
        examples: &[("plus(1, 2.5)", "3.5"), ("plus('a', 1)", "'a1'"), ("plus(null, 1)", "1")],
    },
    NativeFunction {
        name: "minus",
        signature: "minus(a, b) -> number",
        description: "a - b, both taken as numbers (null is 0)",
        min_args: 2,
        max_args: Some(2),
        func: minus,
        examples: &[("minus(5, 7)", "-2"), ("minus('5', 2)", "3"), ("minus('x', 1)", "NaN")],
    },
    NativeFunction {
        name: "floor",
        signature: "floor(x: number) -> number",
        description: "The largest integer not above x (a second argument is accepted and ignored, as in PostHog)",
        min_args: 1,
        max_args: Some(2),
        func: floor,
        examples: &[("floor(1.9)", "1"), ("floor(-1.5)", "-2"), ("floor('7.5')", "7"), ("floor(null)", "0")],
    },
    NativeFunction {
        name: "round",
        signature: "round(x: number) -> number",
        description: "x rounded to the nearest integer, halves up (as Math.round; a second argument is ignored)",
        min_args: 1,
        max_args: Some(2),
        func: round,
        examples: &[("round(2.5)", "3"), ("round(-2.5)", "-2"), ("round(1.49)", "1"), ("round('x')", "NaN")],
    },
    NativeFunction {
        name: "min2",
        signature: "min2(a, b) -> any",
        description: "The smaller of a and b (compared as the < operator does); null when either is null",
        min_args: 2,
        max_args: Some(2),
        func: min2,
        examples: &[("min2(3, 2)", "2"), ("min2('a', 'b')", "'a'"), ("min2(1, null)", "null")],
    },
    NativeFunction {
        name: "max2",
        signature: "max2(a, b) -> any",
        description: "The larger of a and b (compared as the > operator does); null when either is null",
        min_args: 2,
        max_args: Some(2),
        func: max2,
        examples: &[("max2(3, 2)", "3"), ("max2('a', 'b')", "'b'"), ("max2(null, 1)", "null")],
    },
    NativeFunction {
        name: "randomFloat",
        signature: "randomFloat() -> float",
        description: "A uniformly random number in [0, 1) (not cryptographically secure)",
        min_args: 0,
        max_args: Some(0),
        func: random_float,
        examples: &[("randomFloat() < 1 and randomFloat() >= 0", "true")],
    },
    NativeFunction {
        name: "toInt",
        signature: "toInt(value) -> integer",
        description: "parseInt of the value as text (leading digits, 0x for hex; null when there are none); \
                      a datetime gives its epoch seconds, a date its days since 1970-01-01",
        min_args: 1,
        max_args: Some(1),
        func: to_int,
        examples: &[
            ("toInt('12abc')", "12"),
            ("toInt('1.9')", "1"),
            ("toInt(-3.7)", "-3"),
            ("toInt('abc')", "null"),
            ("toInt(true)", "null"),
        ],
    },
    NativeFunction {
        name: "toFloat",
        signature: "toFloat(value) -> float",
        description: "parseFloat of the value as text (the leading decimal number; null when there is none); \
                      a datetime gives its epoch seconds, a date its days since 1970-01-01",
        min_args: 1,
        max_args: Some(1),
        func: to_float,
        examples: &[
            ("toFloat('1.5kg')", "1.5"),
            ("toFloat(' -2e3')", "-2000"),
            ("toFloat('x')", "null"),
            ("toFloat(null)", "null"),
        ],
    },
    NativeFunction {
        name: "range",
        signature: "range(end) | range(start, end) | range(start, end, step) -> array",
        description: "Numbers from start (default 0) up to but not including end, by step (default 1; \
                      with a step all arguments must be integers); at most 10 million",
        min_args: 1,
        max_args: Some(3),
        func: range,
        examples: &[
            ("range(3)", "[0, 1, 2]"),
            ("range(2, 5)", "[2, 3, 4]"),
            ("range(10, 0, -3)", "[10, 7, 4, 1]"),
            ("range(5, 2)", "[]"),
            ("range(1e12)", "error: too many"),
        ],
    },
];

/// JavaScript's `+`: string concatenation when either side is (or converts to) a string, else
/// numeric addition.
fn plus(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let (a, b) = (arg(args, 0), arg(args, 1));
    if let (Value::Number(x), Value::Number(y)) = (&a, &b) {
        return Ok(Value::Number(x + y));
    }
    let stringy = |v: &Value| !matches!(v, Value::Null | Value::Bool(_) | Value::Number(_));
    if stringy(&a) || stringy(&b) {
        let (x, y) = (js_string(&a)?, js_string(&b)?);
        if x.len() + y.len() > MAX_STRING {
            return Err(super::coerce::too_large());
        }
        return Ok(Value::from(format!("{x}{y}")));
    }
    Ok(Value::Number(a.to_number() + b.to_number()))
}

fn minus(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Number(js_number(&arg(args, 0))? - js_number(&arg(args, 1))?))
}

fn floor(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Number(js_number(&arg(args, 0))?.floor()))
}

/// `Math.round`: the nearest integer, halves towards +∞.
pub fn js_round(x: f64) -> f64 {
    let r = x.round();
    // `round` takes halves away from zero; JavaScript takes negative halves up. `r - x` is exact here.
    if r - x == -0.5 {
        r + 1.0
    } else {
        r
    }
}

fn round(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Number(js_round(js_number(&arg(args, 0))?)))
}

fn pick(args: &[Value], op: Opcode) -> NativeResult {
    let (a, b) = (arg(args, 0), arg(args, 1));
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    Ok(if order(op, &a, &b) { a } else { b })
}

fn min2(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    pick(args, Opcode::LT)
}

fn max2(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    pick(args, Opcode::GT)
}

fn random_float(_: &mut Ctx<'_>, _: &[Value]) -> NativeResult {
    Ok(Value::Number(fastrand::f64()))
}

/// The beginning of `String(value)`, as far as a number can reach: the text of a scalar, or of an
/// array's first item (what follows it is a `,`, which ends any number).
fn leading_text(v: &Value) -> Cow<'_, str> {
    let mut cur = match v {
        Value::Str(s) => return Cow::Borrowed(s),
        Value::Array(_) | Value::Tuple(_) => v.clone(),
        other => return js_scalar_string(other),
    };
    for _ in 0..MAX_DEPTH {
        let first = match &cur {
            Value::Array(a) | Value::Tuple(a) => a.borrow().first().cloned(),
            Value::Str(s) => return Cow::Owned(s.to_string()),
            other => return js_scalar_string(other),
        };
        match first {
            None | Some(Value::Null) => return Cow::Borrowed(""),
            Some(f) => cur = f,
        }
    }
    Cow::Borrowed("")
}

/// JavaScript's `parseInt(s)`: optional sign, `0x` for hex, then as many digits as there are;
/// `NaN` when there are none.
pub fn parse_int(s: &str) -> f64 {
    let t = s.trim_start_matches(is_js_space);
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, t) = match t.get(..2) {
        Some("0x" | "0X") => (16, &t[2..]),
        _ => (10, t),
    };
    let end = t.find(|c: char| !c.is_digit(radix)).unwrap_or(t.len());
    let digits = &t[..end];
    if digits.is_empty() {
        return f64::NAN;
    }
    let value = if radix == 10 {
        digits.parse::<f64>().unwrap_or(f64::NAN)
    } else {
        let digits = digits.trim_start_matches('0');
        let head = &digits[..digits.len().min(32)];
        let rest = (digits.len() - head.len()) as i32;
        let head = if head.is_empty() { 0 } else { u128::from_str_radix(head, 16).unwrap_or(0) };
        head as f64 * 16f64.powi(rest.min(400))
    };
    if negative {
        -value
    } else {
        value
    }
}

/// JavaScript's `parseFloat(s)`: the longest leading decimal number (or `Infinity`), `NaN` when
/// there is none.
pub fn parse_float(s: &str) -> f64 {
    let t = s.trim_start_matches(is_js_space);
    let b = t.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    if t[i..].starts_with("Infinity") {
        return if b[0] == b'-' { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int = digits(i);
    i += int;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        frac = digits(i + 1);
        if int > 0 || frac > 0 {
            i += 1 + frac;
        }
    }
    if int == 0 && frac == 0 {
        return f64::NAN;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp = digits(j);
        if exp > 0 {
            i = j + exp;
        }
    }
    t[..i].parse::<f64>().unwrap_or(f64::NAN)
}

fn number_or_null(n: f64) -> Value {
    if n.is_nan() {
        Value::Null
    } else {
        Value::Number(n)
    }
}

fn to_int(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(match &arg(args, 0) {
        Value::DateTime(d) => Value::Number(d.dt.floor()),
        Value::Date(y, m, d) => Value::Number(days_from_civil(i64::from(*y), i64::from(*m), i64::from(*d)) as f64),
        other => number_or_null(parse_int(&leading_text(other))),
    })
}

fn to_float(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(match &arg(args, 0) {
        Value::DateTime(d) => Value::Number(d.dt),
        Value::Date(y, m, d) => Value::Number(days_from_civil(i64::from(*y), i64::from(*m), i64::from(*d)) as f64),
        other => number_or_null(parse_float(&leading_text(other))),
    })
}

/// JavaScript's `ToLength`: NaN is 0, fractions truncate, negatives are 0.
fn to_length(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        0.0
    } else {
        x.trunc()
    }
}

fn range(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let (a, b, c) = (arg(args, 0), arg(args, 1), arg(args, 2));
    // A missing argument arrives as null (function values are padded), so trailing nulls are absent.
    let (start, step, count) = if !c.is_null() {
        let mut ints = [0.0; 3];
        for (i, v) in [&a, &b, &c].into_iter().enumerate() {
            let n = js_number(v)?;
            if !n.is_finite() || n.fract() != 0.0 {
                return Err(StdlibError::Invalid(format!(
                    "with a step, every argument must be an integer; argument {} is {}",
                    i + 1,
                    v.repr()
                )));
            }
            ints[i] = n;
        }
        let [start, end, step] = ints;
        if step == 0.0 {
            return Err(StdlibError::Invalid("the step must not be 0".into()));
        }
        (start, step, to_length(((end - start) / step).ceil()))
    } else if !b.is_null() {
        let start = js_number(&a)?;
        (start, 1.0, to_length(js_number(&b)? - start))
    } else {
        (0.0, 1.0, to_length(js_number(&a)?))
    };
    if count > MAX_RANGE {
        return Err(StdlibError::Invalid(format!(
            "too many numbers: {} (the most is {})",
            format_number(count),
            format_number(MAX_RANGE)
        )));
    }
    let count = count as usize;
    Ok(Value::array((0..count).map(|i| Value::Number(start + i as f64 * step)).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_int_is_javascripts() {
        assert_eq!(parse_int("12abc"), 12.0);
        assert_eq!(parse_int("  -0x1f"), -31.0);
        assert_eq!(parse_int("1e5"), 1.0);
        assert_eq!(parse_int("\u{a0}7"), 7.0);
        assert!(parse_int("\u{85}7").is_nan());
        assert!(parse_int("0x").is_nan());
        assert!(parse_int("").is_nan());
        assert_eq!(parse_int("12345678901234567890123"), 1.2345678901234568e22);
        assert_eq!(parse_int("0x10000000000000000000000000000000000"), 2f64.powi(136));
    }

    #[test]
    fn parse_float_is_javascripts() {
        assert_eq!(parse_float("1."), 1.0);
        assert_eq!(parse_float(".5e1x"), 5.0);
        assert_eq!(parse_float("1e+"), 1.0);
        assert_eq!(parse_float("-Infinityx"), f64::NEG_INFINITY);
        assert_eq!(parse_float("0x10"), 0.0);
        assert!(parse_float("+.e1").is_nan());
        assert!(parse_float("-").is_nan());
    }

    #[test]
    fn rounding_is_javascripts() {
        assert_eq!(js_round(2.5), 3.0);
        assert_eq!(js_round(-2.5), -2.0);
        assert_eq!(js_round(0.49999999999999994), 0.0);
        assert_eq!(js_round(-0.5), 0.0);
        assert_eq!(js_round(-0.5000000000000001), -1.0);
    }

    #[test]
    fn epoch_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 3, 1), 19783);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn cyclic_arrays_convert() {
        let a = Value::array(vec![Value::from(1.0)]);
        if let Value::Array(inner) = &a {
            inner.borrow_mut().push(a.clone());
        }
        assert_eq!(js_string(&a).unwrap(), "1,");
        assert!(js_number(&a).unwrap().is_nan());
    }
}
