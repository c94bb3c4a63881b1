//! Async suspension: a VM suspended on `fetch`, `sleep` or `postHogCapture` is saved, serialized
//! (JSON and binary), restored into a fresh VM and resumed; the output must be exactly what the
//! same program prints when resumed in place.

use hog_lang::vm::{Outcome, VmState};
use hog_lang::{compile_chunk, CollectingHost, CompileOptions, Value, Vm};

#[derive(Clone, Copy, Debug)]
enum Mode {
    InPlace,
    Json,
    Binary,
}

/// The host's side of an async call: `fetch` answers with the request it got.
fn perform(name: &str, args: &[Value], host: &mut CollectingHost) -> Value {
    match name {
        "fetch" => {
            let url = args.first().cloned().unwrap_or_default();
            let method = match args.get(1) {
                Some(Value::Dict(d)) => {
                    d.borrow().get(&hog_lang::value::Key::str("method")).cloned().unwrap_or(Value::from("POST"))
                }
                _ => Value::from("POST"),
            };
            let status = if url.to_js_string().contains("fail") { 500.0 } else { 200.0 };
            Value::dict_from([
                ("status", Value::Number(status)),
                ("body", Value::dict_from([("url", url), ("method", method)])),
            ])
        }
        "postHogCapture" => {
            host.lines.push(format!("[captured {}]", args.first().map(Value::repr).unwrap_or_default()));
            Value::Null
        }
        _ => Value::Null,
    }
}

fn run(source: &str, mode: Mode) -> (Vec<String>, String, usize) {
    let chunk = compile_chunk(source, &CompileOptions::default()).expect("compiles");
    let globals = Value::dict_from([(
        "event",
        Value::dict_from([
            ("event", Value::from("$pageview")),
            ("properties", Value::dict_from([("n", Value::Number(3.0))])),
        ]),
    )]);
    let mut vm = Vm::new(globals);
    let mut host = CollectingHost::default();
    let mut outcome = vm.run(chunk, &mut host).expect("runs");
    let mut suspensions = 0;
    loop {
        match outcome {
            Outcome::Finished(v) => return (host.lines, v.repr(), suspensions),
            Outcome::Suspended { name, args } => {
                suspensions += 1;
                let result = perform(&name, &args, &mut host);
                match mode {
                    Mode::InPlace => {}
                    Mode::Json => {
                        let text = vm.save().to_json();
                        drop(vm);
                        vm = Vm::restore(&VmState::from_json(&text).expect("reads")).expect("restores");
                    }
                    Mode::Binary => {
                        let bytes = vm.save().to_bytes();
                        drop(vm);
                        vm = Vm::restore(&VmState::from_bytes(&bytes).expect("reads")).expect("restores");
                    }
                }
                outcome = vm.resume(result, &mut host).expect("resumes");
            }
        }
    }
}

fn same_everywhere(source: &str) -> Vec<String> {
    let expected = run(source, Mode::InPlace);
    assert!(expected.2 > 0, "the program must suspend at least once");
    for mode in [Mode::Json, Mode::Binary] {
        assert_eq!(run(source, mode), expected, "{mode:?}");
    }
    expected.0
}

#[test]
fn closures_and_upvalues_survive() {
    let lines = same_everywhere(
        "fun counter() {
            let n := 0
            return () -> { n := n + 1; return n }
        }
        let c := counter()
        print(c())
        let r := fetch('https://example.com/a')
        print(c(), r.status, r.body.url)
        let total := 0
        for (let i := 0; i < 3; i := i + 1) {
            let bump := () -> { total := total + i }
            sleep(0.01)
            bump()
        }
        print(total, c())
        return total",
    );
    assert_eq!(lines, ["1", "2 200 https://example.com/a", "3 3"]);
}

#[test]
fn shared_and_cyclic_containers_keep_their_identity() {
    same_everywhere(
        "let a := [1, 2]
        let d := {'list': a, 'name': 'x'}
        d.self := d
        let t := (a, d)
        sleep(1)
        a[1] := 10
        print(d.list, t.1, d.self.name, d.self.self.list == a)
        let res := fetch('https://example.com/b', {'method': 'GET'})
        d.self.name := res.body.method
        print(d.name, t.2.name)
        return d.list",
    );
}

#[test]
fn try_catch_and_frames_across_suspension() {
    let lines = same_everywhere(
        "fun send(url) {
            let res := fetch(url)
            if (res.status >= 400) {
                throw Error(f'failed with {res.status}', {'url': url})
            }
            return res.body.url
        }
        fun deliver(urls) {
            let ok := []
            for (let u in urls) {
                try {
                    ok := arrayPushBack(ok, send(u))
                } catch (e) {
                    print('caught', e.message, e.payload.url)
                }
            }
            return ok
        }
        print(deliver(['https://a', 'https://fail', 'https://b']))
        let err := Error('kept', {'n': 1})
        sleep(1)
        print(err)
        return length(deliver(['https://c']))",
    );
    assert_eq!(lines, ["caught failed with 500 https://fail", "['https://a', 'https://b']", "Error('kept', {'n': 1})"]);
}

#[test]
fn suspending_inside_a_library_function_callback() {
    same_everywhere(
        "let urls := ['https://x/1', 'https://x/2']
        let statuses := arrayMap(u -> fetch(u).status, urls)
        print(statuses)
        postHogCapture({'event': 'done', 'distinct_id': event.event, 'properties': {'n': event.properties.n}})
        return statuses",
    );
}

#[test]
fn state_json_is_plain_data() {
    let chunk = compile_chunk("let x := {'a': [1]}\nsleep(2)\nreturn x", &CompileOptions::default()).expect("compiles");
    let mut vm = Vm::new(Value::Null);
    let mut host = CollectingHost::default();
    assert!(matches!(vm.run(chunk, &mut host).expect("runs"), Outcome::Suspended { .. }));
    let state = vm.save();
    let json: serde_json::Value = serde_json::from_str(&state.to_json()).expect("JSON");
    assert_eq!(json["version"], 1);
    assert!(json["chunks"][0]["Bytecode"]["items"].is_array());
    assert!(state.to_bytes().len() < state.to_json().len());
}

#[test]
fn bad_states_are_errors_not_panics() {
    assert!(VmState::from_json("{").is_err());
    assert!(VmState::from_bytes(&[1, 2, 3]).is_err());
    let chunk = compile_chunk("sleep(1)\nreturn 1", &CompileOptions::default()).expect("compiles");
    let mut vm = Vm::new(Value::Null);
    let mut host = CollectingHost::default();
    vm.run(chunk, &mut host).expect("runs");
    let good = vm.save();
    let mut bad = good.clone();
    bad.version = 99;
    assert!(Vm::restore(&bad).err().expect("refused").to_string().contains("version 99"));
    let mut bad = good.clone();
    bad.frames[0].chunk = 7;
    assert!(Vm::restore(&bad).is_err());
    let mut bad = good.clone();
    bad.stack.push(hog_lang::vm::ValueState::Ref(3));
    assert!(Vm::restore(&bad).is_err());
    // Every truncation of the binary form fails cleanly or restores.
    let bytes = good.to_bytes();
    for n in 0..bytes.len() {
        if let Ok(s) = VmState::from_bytes(&bytes[..n]) {
            let _ = Vm::restore(&s);
        }
    }
}

/// Every corpus program, with `sleep(0)` before each top-level statement, prints the same when its
/// VM is saved, serialized (alternately JSON and binary) and restored at every one of those
/// suspensions: the state carries everything a real program can have live between statements.
#[test]
fn every_corpus_program_survives_serialization_between_statements() {
    let dir = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/cases");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "hog"))
        .collect();
    paths.sort();
    let mut checked = 0;
    for path in paths {
        let source = std::fs::read_to_string(&path).expect("read");
        let Ok(program) = hog_lang::parser::parse_program(&source) else { continue };
        let mut instrumented = String::new();
        let mut last = 0;
        for stmt in &program.body {
            instrumented.push_str(&source[last..stmt.span.start]);
            instrumented.push_str("sleep(0)\n");
            last = stmt.span.start;
        }
        instrumented.push_str(&source[last..]);
        let expected = std::fs::read_to_string(path.with_extension("stdout")).expect("expected output");
        let Ok(chunk) = compile_chunk(&instrumented, &CompileOptions::default()) else { continue };
        let mut vm = Vm::new(Value::Null);
        vm.limits.max_async_steps = 100_000;
        let mut host = CollectingHost::default();
        let mut outcome = vm.run(chunk, &mut host);
        let mut n = 0;
        while let Ok(Outcome::Suspended { .. }) = outcome {
            n += 1;
            let state = vm.save();
            vm = if n % 2 == 0 {
                Vm::restore(&VmState::from_json(&state.to_json()).expect("json")).expect("restore")
            } else {
                Vm::restore(&VmState::from_bytes(&state.to_bytes()).expect("bytes")).expect("restore")
            };
            vm.limits.max_async_steps = 100_000;
            outcome = vm.resume(Value::Null, &mut host);
        }
        outcome.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut actual = host.lines.join("\n");
        actual.push('\n');
        assert_eq!(actual, expected, "{}", path.display());
        checked += 1;
    }
    assert!(checked > 200, "only {checked} programs checked");
}

/// A host may make a standard-library name async (a warehouse host performs `run(query)`): the
/// call suspends instead of running the native function.
#[test]
fn a_host_can_make_a_library_function_async() {
    struct Warehouse(CollectingHost);
    impl hog_lang::Host for Warehouse {
        fn print(&mut self, line: &str) {
            self.0.print(line)
        }
        fn is_async(&self, name: &str) -> bool {
            name == "run" || hog_lang::stdlib::is_async(name)
        }
    }
    let chunk =
        compile_chunk("let rows := run('select 1')\nprint(rows)\nreturn length(rows)", &CompileOptions::default())
            .expect("compiles");
    let mut vm = Vm::new(Value::Null);
    let mut host = Warehouse(CollectingHost::default());
    match vm.run(chunk, &mut host).expect("runs") {
        Outcome::Suspended { name, args } => {
            assert_eq!(&*name, "run");
            assert_eq!(args.len(), 1);
        }
        other => panic!("expected a suspension, got {other:?}"),
    }
    let out = vm.resume(Value::array(vec![Value::Number(1.0)]), &mut host).expect("resumes");
    assert!(matches!(out, Outcome::Finished(Value::Number(n)) if n == 1.0));
    assert_eq!(host.0.lines, ["[1]"]);
}
