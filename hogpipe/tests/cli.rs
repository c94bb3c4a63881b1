//! The `hogpipe hog` commands, run as a user runs them.

use std::io::Write;
use std::process::{Command, Stdio};

fn hogpipe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hogpipe"))
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hogpipe-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}

#[test]
fn runs_the_example() {
    let root = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("..");
    let out = hogpipe().args(["hog", "run"]).arg(root.join("examples/hello.hog")).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = std::fs::read_to_string(root.join("examples/hello.stdout")).expect("expected output");
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn compiles_then_runs_bytecode() {
    let src = temp_file("prog.hog", "let x := [1, 2, 3]\nprint(x[-1] * 2)\n");
    let out = hogpipe().args(["hog", "compile"]).arg(&src).output().expect("compiles");
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bytecode is JSON");
    assert_eq!(json[0], "_H");
    assert_eq!(json[1], 1);
    let hoge = temp_file("prog.hoge", &json.to_string());
    let out = hogpipe().args(["hog", "run"]).arg(&hoge).output().expect("runs");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "6\n");
}

#[test]
fn compile_error_exits_non_zero_with_diagnostic() {
    let src = temp_file("bad.hog", "print(lenght('abc'))\n");
    let out = hogpipe().args(["hog", "run"]).arg(&src).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error[E0003]: unknown function `lenght`"), "{err}");
    assert!(err.contains("bad.hog:1:7"), "{err}");
    assert!(err.contains("did you mean `length`?"), "{err}");
}

#[test]
fn runtime_error_exits_non_zero_after_printing() {
    let src = temp_file("throws.hog", "print('before')\nthrow Error('stop here')\n");
    let out = hogpipe().args(["hog", "run"]).arg(&src).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "before\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Uncaught Error: stop here"), "{err}");
    assert!(err.contains("2:1"), "{err}");
}

#[test]
fn invalid_bytecode_is_rejected_cleanly() {
    let hoge = temp_file("bad.hoge", r#"["_H", 1, 39, 99]"#);
    let out = hogpipe().args(["hog", "run"]).arg(&hoge).output().expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jumps to element"));
}

#[test]
fn globals_file_is_visible() {
    let g = temp_file("globals.json", r#"{"event": {"event": "signup", "properties": {"plan": "pro"}}}"#);
    let src = temp_file("uses_globals.hog", "print(event.event, event.properties.plan)\n");
    let out = hogpipe().args(["hog", "run"]).arg(&src).arg("--globals").arg(&g).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "signup pro\n");
}

#[test]
fn repl_keeps_variables_and_prints_values() {
    let mut child = hogpipe()
        .args(["hog", "repl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"let x := 40\nx + 2\nlenght(x)\nfun double(n) { return n * 2 }\ndouble(x)\nprint('done')\n")
        .expect("write");
    let out = child.wait_with_output().expect("exits");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n80\ndone\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown function `lenght`"));
}

#[test]
fn functions_lists_the_standard_library() {
    let out = hogpipe().args(["hog", "functions"]).output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("length(value: string | array | tuple) -> integer"), "{text}");
    assert!(text.contains("arrayMap("), "{text}");
}

#[test]
fn a_suspended_program_resumes_in_another_process() {
    let src = temp_file(
        "suspend.hog",
        "let seen := {'n': 0}\nfun call(url) {\n  let r := fetch(url)\n  seen.n := seen.n + 1\n  return r.status\n}\nprint('first', call('https://a'))\nprint('second', call('https://b'), seen.n)\nreturn seen\n",
    );
    let state = src.with_extension("state.json");
    let out = hogpipe().args(["hog", "run"]).arg(&src).arg("--state-out").arg(&state).output().expect("runs");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("suspended on fetch('https://a')"));
    let out = hogpipe()
        .args(["hog", "resume"])
        .arg(&state)
        .args(["--result", r#"{"status": 201}"#])
        .output()
        .expect("resumes");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first 201\n");
    let out = hogpipe()
        .args(["hog", "resume"])
        .arg(&state)
        .args(["--result", r#"{"status": 202}"#, "--print-result"])
        .output()
        .expect("resumes");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "second 202 2\n{'n': 2}\n");
    // A broken state file is a clear error.
    std::fs::write(&state, "{\"state\": 1}").expect("write");
    let out = hogpipe().args(["hog", "resume"]).arg(&state).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a saved VM state"));
}
