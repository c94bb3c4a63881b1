//! The benchmark workload of `hogpipe bench pipeline`: ANCHORS.md's event transformation. `$pageview` events with 10 properties go
//! through three transformations (add `email_hash`, the sha256 of `properties.email`, and delete
//! `email`; add `path`, the URL without its origin; keep only events whose path matches `^/p/1`)
//! and one destination whose filter keeps `$pageview`s. One event in nine is kept.

use hog_lang::{compile, CompileOptions};
use hogpipe_capture::event::{parse_payload, EndpointKind, ParseLimits, RequestMeta};
use hogpipe_capture::log::Record;

use crate::functions::{FunctionKind, FunctionSpec};

/// The project token of the events.
pub const TOKEN: &str = "phc_bench_pipeline";

/// The project id functions are registered for.
pub const PROJECT_ID: u64 = 1;

/// The transformations, in order: (id, Hog source).
pub const TRANSFORMATIONS: [(&str, &str); 3] = [
    ("hash-email", "let e := event\ne.properties.email_hash := sha256Hex(e.properties.email)\ne.properties.email := null\nreturn e"),
    ("path", "let e := event\ne.properties.path := replaceAll(e.properties.$current_url, 'https://example.com', '')\nreturn e"),
    ("keep-p1", "if (event.properties.path =~ '^/p/1') { return event }\nreturn null"),
];

/// The destination's id and filter.
pub const DESTINATION: (&str, &str) = ("pageviews", "return event == '$pageview'");

/// Events kept out of `n` (those whose URL ends in `/p/1`).
pub fn expected_kept(n: usize) -> usize {
    n / 9 + usize::from(n % 9 > 1)
}

/// Event `i`, as an SDK sends it.
pub fn event(i: usize) -> serde_json::Value {
    serde_json::json!({
        "event": "$pageview",
        "distinct_id": format!("user-{}", i % 10_000),
        "properties": {
            "$current_url": format!("https://example.com/p/{}", i % 9),
            "$browser": "Chrome",
            "$os": "Mac OS X",
            "$device_type": "Desktop",
            "$screen_width": 1920,
            "$lib": "web",
            "$lib_version": "1.200.0",
            "$session_id": format!("0193{:012x}", i % 700),
            "plan": "pro",
            "email": format!("user{}@example.com", i % 10_000)
        }
    })
}

fn spec(id: &str, kind: FunctionKind, order: i32, source: &str, filter: Option<&str>) -> Result<FunctionSpec, String> {
    let options = CompileOptions { globals: None, ..Default::default() };
    let compiled = |text: &str| compile(text, &options).map(|c| c.to_json()).map_err(|d| d.render(text, id));
    Ok(FunctionSpec {
        id: id.into(),
        project_id: PROJECT_ID,
        name: id.into(),
        kind,
        enabled: true,
        order,
        bytecode: compiled(source)?,
        filter: filter.map(compiled).transpose()?,
        inputs: serde_json::Map::new(),
    })
}

/// The three transformations and the destination, compiled.
pub fn functions() -> Result<Vec<FunctionSpec>, String> {
    let mut functions = Vec::new();
    for (order, (id, source)) in TRANSFORMATIONS.iter().enumerate() {
        functions.push(spec(id, FunctionKind::Transformation, order as i32, source, None)?);
    }
    functions.push(spec(DESTINATION.0, FunctionKind::Destination, 0, "return null", Some(DESTINATION.1))?);
    Ok(functions)
}

/// Log records of events `from..to`, as capture writes them (one `/batch` request per 1 000).
pub fn records(from: usize, to: usize) -> Result<Vec<Record>, String> {
    let mut out = Vec::with_capacity(to.saturating_sub(from));
    let mut i = from;
    while i < to {
        let count = 1000.min(to - i);
        let batch: Vec<_> = (i..i + count).map(event).collect();
        let body = serde_json::json!({"api_key": TOKEN, "batch": batch}).to_string();
        let meta = RequestMeta::new(EndpointKind::Events, "127.0.0.1");
        let parsed = parse_payload(body.as_bytes(), &meta, &ParseLimits::default())
            .map_err(|e| format!("generated batch refused: {e}"))?;
        out.extend(parsed.records);
        i += count;
    }
    Ok(out)
}
