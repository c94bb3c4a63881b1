//! No standard-library function panics, whatever it is given: every native function is called
//! with every combination of awkward values (nulls, NaN, huge numbers, empty and non-ASCII
//! strings, nested and empty containers, errors, dates, functions) for up to two arguments, and
//! with a third argument from a smaller set. A wrong argument must come back as an error value.

use hog_lang::stdlib::{self, Ctx};
use hog_lang::vm::RegexCache;
use hog_lang::{run_source, CollectingHost, CompileOptions, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};

const AWKWARD: &[&str] = &[
    "null",
    "0",
    "-1",
    "1e308",
    "0 / 0",
    "-1e21",
    "''",
    "'x'",
    "'😀é\\n'",
    "'2024-01-01T00:00:00Z'",
    "'%Y-%m %H'",
    "'Europe/Paris'",
    "[]",
    "{}",
    "[[1], 'a', null]",
    "(1, 2)",
    "Error('x', {'a': 1})",
    "toDateTime(0)",
    "toDate('2024-02-29')",
    "x -> x",
];

fn value(expr: &str) -> Value {
    run_source(&format!("return {expr}"), &CompileOptions::default()).expect("a test value").result
}

#[test]
fn no_function_panics_on_awkward_arguments() {
    let values: Vec<Value> = AWKWARD.iter().map(|e| value(e)).collect();
    // An array that contains itself.
    let cyclic = value("[1]");
    if let Value::Array(a) = &cyclic {
        a.borrow_mut().push(cyclic.clone());
    }
    let mut values = values;
    values.push(cyclic);
    let mut argument_lists: Vec<Vec<Value>> = vec![vec![]];
    for a in &values {
        argument_lists.push(vec![a.clone()]);
        for b in &values {
            argument_lists.push(vec![a.clone(), b.clone()]);
        }
        for c in [&values[0], &values[7], &values[2]] {
            argument_lists.push(vec![a.clone(), c.clone(), a.clone()]);
        }
    }
    let mut panics = Vec::new();
    let mut calls = 0;
    for f in stdlib::natives() {
        if f.name == "print" {
            continue;
        }
        for args in &argument_lists {
            if args.len() < f.min_args || f.max_args.is_some_and(|m| args.len() > m) {
                continue;
            }
            let mut args = args.clone();
            if let Some(max) = f.max_args {
                args.resize(max, Value::Null);
            }
            let mut host = CollectingHost::default();
            let mut regex = RegexCache::default();
            let mut printed = 0;
            let result = catch_unwind(AssertUnwindSafe(|| {
                let mut ctx = Ctx { host: &mut host, regex: &mut regex, printed: &mut printed, max_printed: 0 };
                let _ = (f.func)(&mut ctx, &args);
            }));
            calls += 1;
            if result.is_err() {
                let shown: Vec<String> = args.iter().map(Value::repr).collect();
                panics.push(format!("{}({})", f.name, shown.join(", ")));
            }
        }
    }
    assert!(calls > 20_000, "only {calls} calls");
    assert!(panics.is_empty(), "{} calls panicked:\n{}", panics.len(), panics.join("\n"));
}
