//! `print` and `toString`.

use super::{arg, Ctx, NativeFunction, NativeResult};
use crate::value::Value;

/// The print family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "print",
        signature: "print(...values) -> null",
        description: "Prints the values separated by spaces; strings print raw, other values as Hog literals",
        min_args: 0,
        max_args: None,
        func: print,
        examples: &[("print('a', 1)", "null")],
    },
    NativeFunction {
        name: "toString",
        signature: "toString(value) -> string",
        description: "The value as a string: strings unchanged, dates as ISO text, others as Hog literals",
        min_args: 1,
        max_args: Some(1),
        func: to_string,
        examples: &[("toString(1.5)", "'1.5'"), ("toString([1, 'a'])", "'[1, \\'a\\']'"), ("toString(null)", "'null'")],
    },
];

fn print(ctx: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let line = args.iter().map(Value::to_print_string).collect::<Vec<_>>().join(" ");
    ctx.print(&line)?;
    Ok(Value::Null)
}

/// `toString` of one value (also used by `concat`).
pub fn value_to_string(v: &Value) -> String {
    match v {
        Value::Date(y, m, d) => format!("{y}-{m:02}-{d:02}"),
        Value::DateTime(d) => super::dates::iso_string(d).unwrap_or_default(),
        other => other.to_print_string(),
    }
}

fn to_string(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    if let Some(Value::Str(s)) = args.first() {
        // Strings are immutable: the same text.
        return Ok(Value::Str(s.clone()));
    }
    if let Some(Value::Number(n)) = args.first() {
        let Ok(text) = crate::value::Text::build(|out| {
            crate::value::push_number(out, *n);
            Ok::<(), std::convert::Infallible>(())
        });
        return Ok(Value::Str(text));
    }
    if let Value::DateTime(d) = &arg(args, 0) {
        // PostHog's ISO text of an unusable date-time (NaN, out of range) is null.
        return Ok(super::dates::iso_string(d).map_or(Value::Null, Value::from));
    }
    Ok(Value::from(value_to_string(&arg(args, 0))))
}
