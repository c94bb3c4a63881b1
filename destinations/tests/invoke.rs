//! Invocations: start, suspend on `fetch`, resume with answers, fail clearly.

use hogpipe_dataflow::event::{Event, Project};
use hogpipe_destinations::http::{HttpResponse, Next, Resume};
use hogpipe_destinations::invoke::{Destination, Invoker, InvokerOptions};
use hogpipe_destinations::template::{InputSchema, InputType};
use serde_json::{json, Map, Value as Json};

fn event() -> Event {
    let properties = json!({
        "$current_url": "https://shop.example/cart",
        "$set": {"email": "ada@example.com", "plan": "pro"},
        "$set_once": {"first_seen": "2024-01-01", "plan": "free"},
        "$groups": {"company": "acme"},
    });
    Event {
        uuid: "0190b6a4-0000-7000-8000-000000000001".into(),
        team_id: 7,
        event: "$pageview".into(),
        distinct_id: "user 1".into(),
        properties: match properties {
            Json::Object(m) => m,
            _ => Map::new(),
        },
        timestamp: "2024-05-01T12:00:00.000Z".into(),
        elements_chain: String::new(),
        ip: "127.0.0.1".into(),
    }
}

fn project() -> Project {
    Project { id: 7, name: "Shop".into() }
}

fn input(key: &str, kind: InputType, secret: bool) -> InputSchema {
    let mut schema: InputSchema = serde_json::from_value(json!({"key": key, "type": "string", "label": key})).unwrap();
    schema.kind = kind;
    schema.secret = secret;
    schema
}

fn invoker(source: &str, schema: &[InputSchema], inputs: Json) -> Invoker {
    let invoker = Invoker::new(InvokerOptions { site_url: "https://hog.example".into(), ..InvokerOptions::default() });
    let inputs = match inputs {
        Json::Object(m) => m,
        _ => Map::new(),
    };
    let d = Destination::from_source("fn-1", 7, "My hook", source, schema, &inputs).unwrap();
    invoker.upsert(d);
    invoker
}

fn ok(body: &str) -> HttpResponse {
    HttpResponse { status: 200, headers: vec![], body: body.into() }
}

#[track_caller]
fn expect_fetch(next: Next) -> (hogpipe_destinations::http::HttpRequest, Vec<u8>) {
    match next {
        Next::Fetch { request, state } => (request, state),
        other => panic!("expected a fetch, got {other:?}"),
    }
}

#[test]
fn globals_are_posthogs() {
    let inv = invoker(
        "print(event.url, event.distinct_id, person.id, person.name, project, source.url)\n\
         print(person.properties, groups.company.id, person.url)",
        &[],
        json!({}),
    );
    let Next::Done { logs } = inv.start("fn-1", &event(), &project()) else { panic!() };
    assert_eq!(
        logs,
        vec![
            "https://hog.example/project/7/events/0190b6a4-0000-7000-8000-000000000001, user 1, \
             c5ffca57-4b45-5190-b994-0d2bc171ae87, ada@example.com, \
             {\"id\":7,\"name\":\"Shop\",\"url\":\"https://hog.example/project/7\"}, \
             https://hog.example/project/7/pipeline/destinations/hog-fn-1/configuration/"
                .to_string(),
            "{\"first_seen\":\"2024-01-01\",\"plan\":\"pro\",\"email\":\"ada@example.com\"}, acme, \
             https://hog.example/project/7/person/user%201"
                .to_string(),
        ]
    );
}

#[test]
fn fetch_suspends_and_resumes_with_the_answer_several_times() {
    let source = "\
        let a := fetch(inputs.url, {'body': {'n': 1}})\n\
        print('first', a.status, a.body.id)\n\
        let b := fetch(f'{inputs.url}/2', {'method': 'put', 'headers': {'X-Id': a.body.id}, 'body': 'raw'})\n\
        print('second', b.status, b.body)";
    let inv =
        invoker(source, &[input("url", InputType::String, false)], json!({"url": "https://x.example/{event.event}"}));
    let (req, state) = expect_fetch(inv.start("fn-1", &event(), &project()));
    assert_eq!(req.method, "POST");
    assert_eq!(req.url, "https://x.example/$pageview");
    assert_eq!(req.body.as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(req.headers, vec![("Content-Type".to_string(), "application/json".to_string())]);

    // Resumed by another invoker, as in another process after a restart.
    let other =
        invoker(source, &[input("url", InputType::String, false)], json!({"url": "https://x.example/{event.event}"}));
    let (req, state) = expect_fetch(other.resume(&state, &ok(r#"{"id": "abc"}"#)));
    assert_eq!(req.method, "PUT");
    assert_eq!(req.url, "https://x.example/$pageview/2");
    assert_eq!(req.headers, vec![("X-Id".to_string(), "abc".to_string())]);
    assert_eq!(req.body.as_deref(), Some("raw"));

    let next = other.resume(&state, &HttpResponse { status: 202, headers: vec![], body: "accepted".into() });
    assert_eq!(next, Next::Done { logs: vec!["first, 200, abc".into(), "second, 202, accepted".into()] });
}

#[test]
fn an_error_status_thrown_by_the_function_fails_the_invocation() {
    let source = "let res := fetch('https://x.example', {})\n\
                  if (res.status >= 400) { throw Error(f'failed with {res.status}: {res.body}') }";
    let inv = invoker(source, &[], json!({}));
    let (_, state) = expect_fetch(inv.start("fn-1", &event(), &project()));
    let next = inv.resume(&state, &HttpResponse { status: 400, headers: vec![], body: r#"{"error":"bad"}"#.into() });
    match next {
        Next::Failed { error, .. } => assert!(error.contains("failed with 400: {'error': 'bad'}"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_fetch_suspends_and_limits_hold() {
    let inv = invoker("sleep(1)", &[], json!({}));
    match inv.start("fn-1", &event(), &project()) {
        Next::Failed { error, .. } => assert!(error.contains("`sleep` is not available in destinations"), "{error}"),
        other => panic!("{other:?}"),
    }

    let inv = invoker("for (let i := 0; i < 10; i := i + 1) { fetch('https://x.example') }", &[], json!({}));
    let mut next = inv.start("fn-1", &event(), &project());
    let mut fetches = 0;
    while let Next::Fetch { state, .. } = next {
        fetches += 1;
        next = inv.resume(&state, &ok("{}"));
    }
    assert_eq!(fetches, 5, "PostHog's CDP allows 5 async steps");
    match next {
        Next::Failed { error, .. } => assert!(error.contains("async steps"), "{error}"),
        other => panic!("{other:?}"),
    }

    let inv = invoker("fetch('file:///etc/passwd')", &[], json!({}));
    match inv.start("fn-1", &event(), &project()) {
        Next::Failed { error, .. } => assert!(error.contains("only http:// and https://"), "{error}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn logs_are_capped_and_secrets_redacted() {
    let source = "print('token', inputs.token)\n\
                  for (let i := 0; i < 30; i := i + 1) { print(i) }\n\
                  let r := fetch('https://x.example', {'headers': {'Authorization': f'Bearer {inputs.token}'}})\n\
                  throw Error(f'no good: {inputs.token}')";
    let inv = invoker(source, &[input("token", InputType::String, true)], json!({"token": "s3cr3t"}));
    let (req, state) = expect_fetch(inv.start("fn-1", &event(), &project()));
    assert_eq!(req.headers, vec![("Authorization".to_string(), "Bearer s3cr3t".to_string())]);
    let Next::Failed { error, logs } = inv.resume(&state, &ok("")) else { panic!() };
    assert_eq!(error, "Uncaught Error: no good: ***REDACTED*** (in main at 4:1)");
    assert_eq!(logs.len(), 26);
    assert_eq!(logs[0], "token, ***REDACTED***");
    assert_eq!(logs[24], "23");
    assert_eq!(logs[25], "6 more printed lines were dropped: a function keeps at most 25 per invocation");
}

#[test]
fn bad_ids_states_and_inputs_fail_clearly() {
    let inv = invoker(
        "fetch('https://x.example')",
        &[input("n", InputType::Json, false)],
        json!({"n": "{1 / jsonParse('[')}"}),
    );
    match inv.start("fn-1", &event(), &project()) {
        Next::Failed { error, .. } => assert!(error.starts_with("Error building inputs: input `n`"), "{error}"),
        other => panic!("{other:?}"),
    }
    match inv.start("nope", &event(), &project()) {
        Next::Failed { error, .. } => assert_eq!(error, "unknown destination function `nope`"),
        other => panic!("{other:?}"),
    }
    match inv.resume(b"garbage", &ok("")) {
        Next::Failed { error, .. } => assert!(error.contains("not a hogpipe invocation"), "{error}"),
        other => panic!("{other:?}"),
    }

    let inv = invoker("fetch('https://x.example')", &[], json!({}));
    let (_, state) = expect_fetch(inv.start("fn-1", &event(), &project()));
    inv.remove("fn-1");
    match inv.resume(&state, &ok("")) {
        Next::Failed { error, .. } => {
            assert_eq!(error, "destination `fn-1` was removed while its request was in flight")
        }
        other => panic!("{other:?}"),
    }

    let err = Destination::from_source("d", 1, "d", "let x := ", &[], &Map::new()).unwrap_err();
    assert!(err.to_string().contains("does not compile"), "{err}");
    let err = Destination::from_source("d", 1, "d", "1", &[input("url", InputType::String, false)], &{
        let mut m = Map::new();
        m.insert("ur".into(), json!("x"));
        m
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "destination d: unknown input `ur` (did you mean `url`?)");
    let err = Destination::from_bytecode("d", 1, "d", &json!(["_H", 1, 99]), None, &Map::new()).unwrap_err();
    assert!(err.to_string().contains("invalid bytecode"), "{err}");
}

#[test]
fn bytecode_from_posthog_runs() {
    // `fetch('https://x.example/a')` compiled by PostHog.
    let bytecode = json!(["_H", 1, 32, "https://x.example/a", 2, "fetch", 1, 35]);
    let inv = Invoker::new(InvokerOptions::default());
    inv.upsert(Destination::from_bytecode("b", 7, "b", &bytecode, None, &Map::new()).unwrap());
    let (req, state) = expect_fetch(inv.start("b", &event(), &project()));
    assert_eq!(req.url, "https://x.example/a");
    assert_eq!(inv.resume(&state, &ok("")), Next::Done { logs: vec![] });
}
