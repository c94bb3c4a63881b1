//! The Hog corpus: every `tests/cases/*.hog` runs through the compiler and the VM, and what it
//! prints must equal the `.stdout` file beside it. The same files run through PostHog's own VM in
//! `tests/oracle.rs`.

use hog_lang::{run_source, CompileOptions};
use std::path::Path;

fn run_case(path: &Path) -> datatest_stable::Result<()> {
    let source = std::fs::read_to_string(path)?;
    let expected_path = path.with_extension("stdout");
    let expected = std::fs::read_to_string(&expected_path)
        .map_err(|e| format!("{}: {e} (generate it with scripts/oracle-expected.sh)", expected_path.display()))?;
    let out = run_source(&source, &CompileOptions::default()).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut actual = out.lines.join("\n");
    actual.push('\n');
    if actual != expected {
        return Err(format!("{}: output differs\n--- expected\n{expected}--- actual\n{actual}", path.display()).into());
    }
    Ok(())
}

datatest_stable::harness! {
    { test = run_case, root = "tests/cases", pattern = r"\.hog$" },
}
