//! Runtime errors and limits: each stops only the invocation, with a message that says what,
//! in which function and where.

use hog_lang::vm::{ErrorKind, Limits};
use hog_lang::{compile_chunk, run_source, CollectingHost, CompileOptions, RunError, Value, Vm};
use std::time::Duration;

fn run_err(source: &str, limits: Limits) -> Box<hog_lang::VmError> {
    let chunk = compile_chunk(source, &CompileOptions::default()).expect("compiles");
    let mut vm = Vm::new(Value::Null);
    vm.limits = limits;
    let mut host = CollectingHost::default();
    vm.run(chunk, &mut host).expect_err("fails at run time")
}

#[test]
fn uncaught_error_names_type_function_and_position() {
    let e = run_err("fun check(x) {\n  throw Error('bad value', {'x': x})\n}\ncheck(1)\n", Limits::default());
    assert!(matches!(&e.kind, ErrorKind::Uncaught { error_type, .. } if error_type == "Error"));
    let text = e.to_string();
    assert!(text.contains("Uncaught Error: bad value"), "{text}");
    assert!(text.contains("function `check`"), "{text}");
    assert!(text.contains("at 2:3"), "{text}");
}

#[test]
fn zero_index_at_run_time_names_the_operation() {
    let e = run_err("let a := [1, 2]\nlet i := 0\nprint(a[i])\n", Limits::default());
    let text = e.to_string();
    assert!(text.contains("GET_PROPERTY"), "{text}");
    assert!(text.contains("start from index 1"), "{text}");
    assert!(text.contains("main at 3:7"), "{text}");
}

#[test]
fn infinite_loop_times_out() {
    let limits = Limits { timeout: Duration::from_millis(100), ..Limits::default() };
    let e = run_err("let i := 0\nwhile (true) { i := i + 1 }\n", limits);
    assert_eq!(e.kind, ErrorKind::Limit("timeout"));
    assert!(e.to_string().contains("timed out"), "{e}");
}

#[test]
fn operation_budget_is_enforced() {
    let limits = Limits { max_ops: 10_000, ..Limits::default() };
    let e = run_err("while (true) {}\n", limits);
    assert_eq!(e.kind, ErrorKind::Limit("ops"));
}

#[test]
fn deep_recursion_hits_the_call_depth_limit() {
    let e = run_err("fun f(n) { return f(n + 1) }\nf(0)\n", Limits::default());
    assert_eq!(e.kind, ErrorKind::Limit("call depth"));
    assert!(e.to_string().contains("1000"), "{e}");
}

#[test]
fn recursion_below_the_limit_works() {
    let out = run_source(
        "fun f(n) { if (n = 0) { return 0 } return 1 + f(n - 1) }\nprint(f(900))\n",
        &CompileOptions::default(),
    )
    .expect("runs");
    assert_eq!(out.lines, vec!["900"]);
}

#[test]
fn too_many_arguments_to_a_closure() {
    let e = run_err("let f := (a) -> a\nlet g := f\ng(1, 2)\n", Limits::default());
    assert!(e.to_string().contains("Too many arguments"), "{e}");
}

#[test]
fn throwing_a_non_error_is_rejected() {
    let e = run_err("throw 'oops'\n", Limits::default());
    assert!(e.to_string().contains("not of type Error"), "{e}");
}

#[test]
fn calling_a_non_function() {
    let e = run_err("let x := 5\nlet y := x\ny := 7\nlet z := [y]\nz[1](1)\n", Limits::default());
    assert!(e.to_string().contains("is not a function"), "{e}");
}

#[test]
fn async_call_suspends_and_resumes() {
    let chunk = compile_chunk("let r := fetch('https://example.com')\nprint(r.status)\n", &CompileOptions::default())
        .expect("compiles");
    let mut vm = Vm::new(Value::Null);
    let mut host = CollectingHost::default();
    match vm.run(chunk, &mut host).expect("runs") {
        hog_lang::Outcome::Suspended { name, args } => {
            assert_eq!(&*name, "fetch");
            assert_eq!(args[0].as_str(), Some("https://example.com"));
        }
        other => panic!("expected a suspension, got {other:?}"),
    }
    let response = Value::dict_from([("status", Value::from(200i64))]);
    vm.resume(response, &mut host).expect("resumes");
    assert_eq!(host.lines, vec!["200"]);
}

#[test]
fn run_source_reports_suspension_without_a_host() {
    let r = run_source("sleep(1)\n", &CompileOptions::default());
    assert!(matches!(r, Err(RunError::Suspended(name)) if name == "sleep"));
}

#[test]
fn version_zero_bytecode_reverses_call_arguments() {
    // ["_h", push 'b', push 'a', CALL_GLOBAL concat 2, RETURN]: version 0 pops arguments in order.
    let chunk =
        hog_lang::bytecode::decode_json_text(r#"["_h", 32, "b", 32, "a", 2, "concat", 2, 38]"#).expect("decodes");
    let out = hog_lang::run_chunk(std::rc::Rc::new(chunk), Value::Null).expect("runs");
    assert_eq!(out.result.as_str(), Some("ab"));
}

#[test]
fn posthog_style_globals_are_read() {
    let globals = hog_lang::value::from_json(&serde_json::json!({
        "event": {"event": "$pageview", "properties": {"$browser": "Chrome"}}
    }));
    let chunk = compile_chunk(
        "print(event.properties.$browser, event.properties.missing, event?.nope?.deeper)",
        &CompileOptions::default(),
    )
    .expect("compiles");
    let out = hog_lang::run_chunk(chunk, globals).expect("runs");
    assert_eq!(out.lines, vec!["Chrome null null"]);
}

#[test]
fn pathological_nesting_is_a_diagnostic_not_a_crash() {
    let deep_parens = format!("print({}1{})", "(".repeat(5000), ")".repeat(5000));
    let long_chain = format!("print(1{})", " + 1".repeat(50_000));
    let prefix_run = format!("print({}1)", "- ".repeat(5000));
    let nots = format!("print({}true)", "not ".repeat(5000));
    for source in [deep_parens, long_chain, prefix_run, nots] {
        match hog_lang::compile(&source, &CompileOptions::default()) {
            Err(d) => assert!(d.0.iter().any(|x| x.code.as_str() == "E0017"), "{d}"),
            Ok(_) => panic!("expected a too-complex diagnostic"),
        }
    }
    // Reasonable nesting still compiles and runs.
    let ok = format!("print({}1{})", "(".repeat(100), ")".repeat(100));
    assert_eq!(run_source(&ok, &CompileOptions::default()).expect("runs").lines, vec!["1"]);
}

fn result_of(source: &str) -> String {
    run_source(source, &CompileOptions::default()).expect("runs").result.repr()
}

#[test]
fn regex_classes_are_ascii_as_in_re2() {
    // Arabic-Indic digit three, a non-breaking space, an accented letter.
    assert_eq!(result_of("return '\u{663}' =~ '\\\\d'"), "false");
    assert_eq!(result_of("return '7' =~ '^\\\\d$'"), "true");
    assert_eq!(result_of("return '\u{a0}' =~ '\\\\s'"), "false");
    assert_eq!(result_of("return 'é' =~ '^\\\\w$'"), "false");
    assert_eq!(result_of("return 'a_1' =~ '^[\\\\w]+$'"), "true");
    // (`\\b` in a Hog string literal is a backspace after PostHog's escapes, so call the VM directly.)
    let mut cache = hog_lang::vm::RegexCache::default();
    let m = |c: &mut hog_lang::vm::RegexCache, p: &str, v: &str| {
        hog_lang::vm::regex_match(c, &Value::from(p), &Value::from(v), false).expect("valid")
    };
    assert!(m(&mut cache, r"\bx\b", "x y"));
    assert!(!m(&mut cache, r"\bé", "é"), "é is not an ASCII word character, so there is no boundary before it");
    assert_eq!(result_of("return 'a]' =~ '[]a]+'"), "true");
}

#[test]
fn like_wildcards_do_not_cross_lines() {
    assert_eq!(result_of("return 'a\\nb' like 'a%b'"), "false");
    assert_eq!(result_of("return 'axxb' like 'a%b'"), "true");
}

#[test]
fn doubling_a_string_hits_the_memory_limit_fast() {
    let chunk = compile_chunk(
        "let s := 'ab'\nfor (let i := 0; i < 100; i := i + 1) {\n  print(i)\n  s := concat(s, s)\n}\n",
        &CompileOptions::default(),
    )
    .expect("compiles");
    let mut vm = Vm::new(Value::Null);
    let mut host = CollectingHost::default();
    let e = vm.run(chunk, &mut host).expect_err("stops at the memory limit");
    assert_eq!(e.kind, ErrorKind::Limit("memory"), "{e}");
    assert!(e.to_string().contains("Memory limit of 64 MB exceeded"), "{e}");
    // 'ab' doubled 25 times is 64 MB: it stops within a doubling or two of that, not at 2^100.
    assert!((24..=27).contains(&host.lines.len()), "stopped after {} doublings", host.lines.len());
}

#[test]
fn memory_limit_is_configurable_and_counts_live_values_only() {
    let small = Limits { max_memory: 1 << 20, ..Limits::default() };
    // 4 MB of live strings in an array fails under a 1 MB limit …
    let e = run_err(
        "let s := 'x'\nfor (let j := 0; j < 10; j := j + 1) {\n  s := concat(s, s)\n}\nlet a := []\nfor (let i := 0; i < 4096; i := i + 1) {\n  a := arrayPushBack(a, concat(s, toString(i)))\n}\n",
        small.clone(),
    );
    assert_eq!(e.kind, ErrorKind::Limit("memory"), "{e}");
    // … but creating far more than 1 MB of garbage over time is fine.
    let chunk = compile_chunk(
        "let n := 0\nfor (let i := 0; i < 20000; i := i + 1) {\n  let s := concat('some text to throw away ', toString(i))\n  n := n + length(s)\n}\nreturn n",
        &CompileOptions::default(),
    )
    .expect("compiles");
    let mut vm = Vm::new(Value::Null);
    vm.limits = small;
    let out = vm.run(chunk, &mut CollectingHost::default()).expect("garbage does not count");
    assert!(matches!(out, hog_lang::Outcome::Finished(Value::Number(n)) if n > 400_000.0));
}

#[test]
fn deeply_nested_values_are_built_printed_and_freed_without_crashing() {
    // 200 000 nested arrays fit under the memory limit; printing stops at a depth of 1000 with
    // `...`, and freeing them does not recurse.
    let out = run_source(
        "let a := []\nfor (let i := 0; i < 200000; i := i + 1) {\n  a := [a]\n}\nlet s := toString(a)\nprint(length(s), s like '%...%')\nreturn 1",
        &CompileOptions::default(),
    )
    .expect("runs");
    assert_eq!(out.lines, vec!["2003 true"]);
}

#[test]
fn printed_lines_limit_stops_the_invocation() {
    let limits = Limits { max_print_lines: 3, ..Limits::default() };
    let e = run_err("for (let i := 0; i < 10; i := i + 1) {\n  print(i)\n}\n", limits);
    assert_eq!(e.kind, ErrorKind::Limit("printed lines"), "{e}");
    assert!(e.to_string().contains("at most 3 lines"), "{e}");
    let f = Limits::function();
    assert_eq!((f.max_print_lines, f.max_async_steps, f.max_memory), (25, 5, 64 << 20));
}

#[test]
fn too_many_async_steps() {
    let chunk = compile_chunk("for (let i := 0; i < 10; i := i + 1) {\n  sleep(1)\n}\n", &CompileOptions::default())
        .expect("compiles");
    let mut vm = Vm::new(Value::Null);
    vm.limits = Limits { max_async_steps: 3, ..Limits::default() };
    let mut host = CollectingHost::default();
    let mut outcome = vm.run(chunk, &mut host);
    let mut steps = 0;
    while let Ok(hog_lang::Outcome::Suspended { .. }) = outcome {
        steps += 1;
        outcome = vm.resume(Value::Null, &mut host);
    }
    let e = outcome.expect_err("the fourth sleep is refused");
    assert_eq!(steps, 3);
    assert_eq!(e.kind, ErrorKind::Limit("async steps"), "{e}");
}

#[test]
fn arrays_that_contain_themselves_convert_without_crashing() {
    // JavaScript's join gives '' for an array met again inside itself.
    assert_eq!(result_of("let a := [1]\na.2 := a\nreturn a =~ '^1,$'"), "true");
    assert_eq!(result_of("let a := [1]\na.2 := a\nreturn a + 1"), "NaN");
    assert_eq!(result_of("let a := []\na.1 := a\nreturn a < 'x'"), "true");
}

#[test]
fn growing_arrays_by_assignment_counts_against_memory() {
    let e = run_err(
        "let all := []\nfor (let i := 0; i < 100; i := i + 1) {\n  let a := []\n  a[1000000] := i\n  all := arrayPushBack(all, a)\n}\n",
        Limits::default(),
    );
    assert_eq!(e.kind, ErrorKind::Limit("memory"), "{e}");
}

#[test]
fn fused_instructions_fall_back_for_values_that_are_not_numbers() {
    // Operand arithmetic folded into a string on the stack.
    assert_eq!(result_of("let s := '4'\nreturn 2 * 3 + s"), "10");
    assert_eq!(result_of("let s := 'x'\nreturn 2 * 3 + s"), "NaN");
    // Compare-and-branch on strings and nulls.
    assert_eq!(result_of("let a := 'b'\nif (a > 'a' and a < 'c') { return 1 }\nreturn 0"), "1");
    assert_eq!(result_of("let a := null\nif (a < 3) { return 1 }\nreturn 0"), "0");
    // Increment of a string local, and indexing a dict by a local key.
    assert_eq!(result_of("let i := '1'\ni := i + 1\nreturn i"), "2");
    assert_eq!(result_of("let d := {'k': 5}\nlet k := 'k'\nlet v := d[k]\nreturn v"), "5");
}

/// A journaled run restores what existed before it when told to, and saves each changed container
/// once, however many assignments the program makes; containers it built itself are not saved.
#[test]
fn a_journal_undoes_changes_to_what_existed_before_the_run() {
    let event = hog_lang::value::from_json(&serde_json::json!({
        "name": "a", "props": {"list": [1, 2], "inner": {"k": "v"}}, "untouched": {"x": 1}
    }));
    let source = "let e := event\nfor (let i := 0; i < 1000; i := i + 1) { e.props.list[1] := i }\n\
                  e.props.list[4] := 'grown'\ne.props.inner.k := 'w'\ne.props.added := {'n': [1]}\n\
                  e.props.added.n[1] := 2\ne.name := 'b'\nreturn e";
    let chunk = compile_chunk(source, &CompileOptions::default()).expect("compiles");
    let globals = || Value::dict_from([("event", event.clone())]);
    let before = event.repr();
    let mut vm = Vm::new(Value::Null);
    let mut host = CollectingHost::default();

    vm.reset(globals());
    vm.begin_journal();
    vm.run(chunk.clone(), &mut host).expect("runs");
    // The top dict, `props`, `list` and `inner`: four containers, each saved once.
    assert_eq!(vm.end_journal(false), 4);
    assert_eq!(event.repr(), before, "everything put back");

    vm.reset(globals());
    vm.begin_journal();
    vm.run(chunk.clone(), &mut host).expect("runs");
    assert_eq!(vm.end_journal(true), 4);
    let kept = event.repr();
    let expected = hog_lang::value::from_json(&serde_json::json!({
        "name": "b", "props": {"list": [999, 2, null, "grown"], "inner": {"k": "w"}, "added": {"n": [2]}},
        "untouched": {"x": 1}
    }));
    assert_eq!(kept, expected.repr());

    // A later journal protects the containers the kept run built, too.
    let undo_added = compile_chunk("event.props.added.n[1] := 3", &CompileOptions::default()).unwrap();
    vm.reset(globals());
    vm.begin_journal();
    vm.run(undo_added, &mut host).expect("runs");
    assert_eq!(vm.end_journal(false), 1);
    assert_eq!(event.repr(), kept);

    // Without a journal, changes simply stay.
    let rename = compile_chunk("let e := event\ne.name := 'c'", &CompileOptions::default()).unwrap();
    vm.reset(globals());
    vm.run(rename, &mut host).expect("runs");
    assert_eq!(vm.end_journal(false), 0);
    assert!(event.repr().starts_with("{'name': 'c'"), "{}", event.repr());
}

/// Dicts are recorded key by key up to a bound, then saved whole; either way a rollback restores
/// values, absent keys and key order exactly, also across the switch to a hashed dict.
#[test]
fn a_journal_stays_bounded_and_restores_key_order() {
    let event = hog_lang::value::from_json(&serde_json::json!({"a": 1, "b": {"x": 1}, "c": 3}));
    let globals = || Value::dict_from([("event", event.clone())]);
    let before = event.repr();
    let mut vm = Vm::new(Value::Null);
    let mut host = CollectingHost::default();
    let programs = [
        // Many assignments to keys of pre-existing dicts, new keys among them.
        "let e := event\nfor (let i := 0; i < 5000; i := i + 1) { e.a := i\ne.b.x := i\ne[f'k{i % 40}'] := i }\nreturn e",
        // New keys past the small-dict size, then an old key changed, then a failure.
        "let e := event\nfor (let i := 0; i < 30; i := i + 1) { e[f'n{i}'] := i }\ne.c := 'changed'\nthrow Error('x')",
    ];
    for source in programs {
        let chunk = compile_chunk(source, &CompileOptions::default()).expect("compiles");
        vm.reset(globals());
        vm.begin_journal();
        let _ = vm.run(chunk, &mut host);
        let records = vm.end_journal(false);
        assert!(records <= 64 + 2, "{records} records");
        assert_eq!(event.repr(), before);
    }
}
