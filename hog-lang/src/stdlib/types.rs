//! `typeof`, `isNull`, `isNotNull`.

use super::{arg, Ctx, NativeFunction, NativeResult};
use crate::value::Value;

/// The type family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "typeof",
        signature: "typeof(value) -> string",
        description: "null, boolean, integer, float, string, array, tuple, object, error, function, date or datetime",
        min_args: 1,
        max_args: Some(1),
        func: type_of,
        examples: &[
            ("typeof(1)", "'integer'"),
            ("typeof(1.5)", "'float'"),
            ("typeof((1, 2))", "'tuple'"),
            ("typeof(null)", "'null'"),
        ],
    },
    NativeFunction {
        name: "isNull",
        signature: "isNull(value) -> boolean",
        description: "Whether the value is null",
        min_args: 1,
        max_args: Some(1),
        func: is_null,
        examples: &[("isNull(null)", "true"), ("isNull(0)", "false")],
    },
    NativeFunction {
        name: "isNotNull",
        signature: "isNotNull(value) -> boolean",
        description: "Whether the value is not null",
        min_args: 1,
        max_args: Some(1),
        func: is_not_null,
        examples: &[("isNotNull('')", "true"), ("isNotNull(null)", "false")],
    },
];

fn type_of(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::from(arg(args, 0).type_name()))
}

fn is_null(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(arg(args, 0).is_null()))
}

fn is_not_null(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(!arg(args, 0).is_null()))
}
