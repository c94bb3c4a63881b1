//! Strings: `concat`, `lower`, `upper`.

use super::{print::value_to_string, Ctx, NativeFunction, NativeResult, StdlibError};
use crate::value::Value;

/// The strings family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "concat",
        signature: "concat(...values) -> string",
        description: "Joins the values as strings; null counts as ''",
        min_args: 0,
        max_args: None,
        func: concat,
        examples: &[],
    },
    NativeFunction {
        name: "lower",
        signature: "lower(s: string) -> string",
        description: "Lowercase; null stays null",
        min_args: 1,
        max_args: Some(1),
        func: lower,
        examples: &[],
    },
    NativeFunction {
        name: "upper",
        signature: "upper(s: string) -> string",
        description: "Uppercase; null stays null",
        min_args: 1,
        max_args: Some(1),
        func: upper,
        examples: &[],
    },
];

fn concat(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let mut out = String::new();
    for a in args {
        match a {
            Value::Null => {}
            Value::Str(s) => out.push_str(s),
            other => out.push_str(&value_to_string(other)),
        }
    }
    Ok(Value::from(out))
}

fn string_arg(args: &[Value], i: usize) -> Result<Option<&str>, StdlibError> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(other) => Err(StdlibError::wrong_type(i, "a string", other)),
    }
}

fn lower(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(string_arg(args, 0)?.map(|s| Value::from(s.to_lowercase())).unwrap_or_default())
}

fn upper(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(string_arg(args, 0)?.map(|s| Value::from(s.to_uppercase())).unwrap_or_default())
}
