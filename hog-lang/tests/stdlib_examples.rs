//! Runs every standard-library function's documented examples (`NativeFunction::examples`,
//! `HogFunction::examples`) and checks each result, so the examples `hogpipe hog functions` shows
//! are true. Every function must have at least one example.

use hog_lang::stdlib;
use hog_lang::{run_source, CompileOptions};

#[test]
fn every_example_holds() {
    let mut failures = Vec::new();
    let mut missing = Vec::new();
    let mut checked = 0;
    for (name, examples) in stdlib::examples_all() {
        if examples.is_empty() {
            missing.push(name);
        }
        for (expr, expected) in examples {
            checked += 1;
            let source = format!("return {expr}");
            let got = match run_source(&source, &CompileOptions::default()) {
                Ok(out) => out.result.repr(),
                Err(e) => format!("error: {e}"),
            };
            let ok = match expected.strip_prefix("error: ") {
                Some(text) => got.starts_with("error: ") && got.contains(text),
                None => got == *expected,
            };
            if !ok {
                failures.push(format!("{name}: {expr}\n    expected {expected}\n    got      {got}"));
            }
        }
    }
    assert!(missing.is_empty(), "functions without examples: {}", missing.join(", "));
    assert!(failures.is_empty(), "{} of {checked} examples failed:\n{}", failures.len(), failures.join("\n"));
}
