//! Error constructors: `Error`, `HogError`, `RetryError`, `NotImplementedError`.

use super::{arg, Ctx, NativeFunction, NativeResult};
use crate::value::Value;

/// The error family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "Error",
        signature: "Error(message?: string, payload?) -> error",
        description: "An error of type Error, to throw",
        min_args: 0,
        max_args: Some(2),
        func: error,
        examples: &[("Error('x', {'a': 1})", "Error('x', {'a': 1})")],
    },
    NativeFunction {
        name: "RetryError",
        signature: "RetryError(message?: string, payload?) -> error",
        description: "An error of type RetryError: the destination asks to be retried",
        min_args: 0,
        max_args: Some(2),
        func: retry_error,
        examples: &[("RetryError()", "RetryError('An error occurred')")],
    },
    NativeFunction {
        name: "NotImplementedError",
        signature: "NotImplementedError(message?: string, payload?) -> error",
        description: "An error of type NotImplementedError",
        min_args: 0,
        max_args: Some(2),
        func: not_implemented_error,
        examples: &[("NotImplementedError('later')", "NotImplementedError('later')")],
    },
    NativeFunction {
        name: "HogError",
        signature: "HogError(type: string, message?: string, payload?) -> error",
        description: "An error of any type",
        min_args: 1,
        max_args: Some(3),
        func: hog_error,
        examples: &[("HogError('CustomError', 'bad')", "CustomError('bad')")],
    },
];

/// PostHog's `newHogError`: empty type becomes `Error`, empty message a default text.
fn make(kind: &Value, message: &Value, payload: &Value) -> Value {
    let kind = if kind.truthy() { kind.to_js_string() } else { "Error".to_string() };
    let message = if message.truthy() { message.to_js_string() } else { "An error occurred".to_string() };
    Value::error(&kind, &message, payload.clone())
}

fn error(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(make(&Value::from("Error"), &arg(args, 0), &arg(args, 1)))
}

fn retry_error(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(make(&Value::from("RetryError"), &arg(args, 0), &arg(args, 1)))
}

fn not_implemented_error(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(make(&Value::from("NotImplementedError"), &arg(args, 0), &arg(args, 1)))
}

fn hog_error(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(make(&arg(args, 0), &arg(args, 1), &arg(args, 2)))
}
