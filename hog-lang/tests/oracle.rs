//! The oracle: every corpus program is compiled by hogpipe and run through PostHog's own VM
//! (`@posthog/hogvm@1.0.71` under Node, installed by `scripts/install-oracle.sh`). What it prints
//! must equal the expected `.stdout` (which `tests/cases.rs` also holds hogpipe's VM to), except
//! for the programs listed with a reason in `oracle_differences.txt`.
//!
//! Without Node or the package this test fails under CI (`CI` set) and is skipped loudly elsewhere.

use hog_lang::{compile, CompileOptions};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;

fn oracle_dir() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/oracle")
}

fn oracle_available() -> Result<(), String> {
    let pkg = oracle_dir().join("node_modules/@posthog/hogvm/package.json");
    if !pkg.exists() {
        return Err(format!("{} is missing: run scripts/install-oracle.sh", pkg.display()));
    }
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("node is not installed".into()),
    }
}

fn differences() -> HashMap<String, String> {
    let text = std::fs::read_to_string(
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("tests/oracle_differences.txt"),
    )
    .expect("oracle_differences.txt exists");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':').map(|(a, b)| (a.trim().to_string(), b.trim().to_string())))
        .collect()
}

#[test]
fn corpus_matches_posthog_vm() {
    if let Err(why) = oracle_available() {
        if std::env::var_os("CI").is_some() || std::env::var_os("HOGPIPE_REQUIRE_ORACLE").is_some() {
            panic!("the oracle must run in CI: {why}");
        }
        eprintln!("\n*** SKIPPING the PostHog VM oracle: {why} ***\n");
        return;
    }
    let cases_dir =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("tests/cases");
    let tmp = std::env::temp_dir().join(format!("hog-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
        .expect("cases dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hog"))
        .collect();
    entries.sort();
    assert!(entries.len() >= 150, "the corpus must have at least 150 programs, has {}", entries.len());
    for path in &entries {
        let source = std::fs::read_to_string(path).expect("readable case");
        let code = compile(&source, &CompileOptions::default())
            .unwrap_or_else(|d| panic!("{} does not compile:\n{}", path.display(), d.render(&source, "case")));
        let out = tmp.join(path.file_name().expect("name")).with_extension("hoge");
        std::fs::write(&out, code.to_json().to_string()).expect("write bytecode");
        files.insert(out.to_string_lossy().into_owned(), path.clone());
    }
    // Dates that depend on the local zone (luxon defaults) are compared in UTC, as hogpipe runs.
    let output = Command::new("node")
        .env("TZ", "UTC")
        .arg(oracle_dir().join("run.js"))
        .args(files.keys())
        .output()
        .expect("node runs");
    assert!(output.status.success(), "oracle runner failed: {}", String::from_utf8_lossy(&output.stderr));
    let results: serde_json::Value = serde_json::from_slice(&output.stdout).expect("oracle prints JSON");
    let diffs = differences();
    let mut failures = Vec::new();
    for (hoge, case) in &files {
        let name = case.file_name().expect("name").to_string_lossy().into_owned();
        let r = &results[hoge.as_str()];
        let expected = std::fs::read_to_string(case.with_extension("stdout")).unwrap_or_default();
        let stdout = r["stdout"].as_str().unwrap_or_default();
        let error = r["error"].as_str();
        let agrees = error.is_none() && stdout == expected;
        match (diffs.contains_key(&name), agrees) {
            (false, false) => failures.push(format!(
                "{name}: PostHog's VM {}\n--- expected\n{expected}--- PostHog's VM printed\n{stdout}",
                error.map(|e| format!("failed: {e}")).unwrap_or_else(|| "printed something else".into())
            )),
            (true, true) => failures.push(format!("{name} is listed in oracle_differences.txt but now agrees")),
            _ => {}
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(failures.is_empty(), "{} program(s) differ:\n{}", failures.len(), failures.join("\n"));
}
