//! Hog's `fetch(url, {method, headers, body})` as an [`HttpRequest`], the response as the value
//! the function resumes with, and the host that collects a function's log lines.
//!
//! As PostHog's CDP (`hog.executor.ts`): the method defaults to `POST`; when no `headers` are
//! given they default to `{'Content-Type': 'application/json'}`; a string body is sent as is and
//! any other body as JSON. Additionally (the contract in `http.rs`), a non-string body sent with
//! headers that name no content type gets `content-type: application/json`.

use hog_lang::stdlib::json::parse_json;
use hog_lang::value::KeyRef;
use hog_lang::{stdlib, Host, Value};
use hogpipe_dataflow::event::to_json;

use crate::http::{HttpRequest, HttpResponse};
use crate::template::REDACTED;

/// Longest log line kept (PostHog's `MAX_LOG_LENGTH`).
const MAX_LOG_LENGTH: usize = 10_000;

/// Turns `fetch`'s arguments into a request; `Err` is the message the invocation fails with.
pub(crate) fn request(args: &[Value]) -> Result<HttpRequest, String> {
    let url = match args.first() {
        Some(Value::Str(s)) => s.to_string(),
        Some(other) => return Err(format!("fetch: the URL must be a string, not {}", other.type_name())),
        None => return Err("fetch: no URL given".into()),
    };
    let scheme_ok = url.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("http://"))
        || url.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("https://"));
    if !scheme_ok || url.len() <= 8 {
        return Err(format!("fetch: invalid URL {url:?}: only http:// and https:// URLs can be fetched"));
    }
    let options = match args.get(1) {
        None | Some(Value::Null) => None,
        Some(Value::Dict(d)) => Some(d.clone()),
        Some(other) => return Err(format!("fetch: the options must be a dict, not {}", other.type_name())),
    };
    let get = |key: &str| -> Value {
        options.as_ref().and_then(|d| d.borrow().get(KeyRef::Str(key)).cloned()).unwrap_or(Value::Null)
    };

    let method = match get("method") {
        v if !v.truthy() => "POST".to_string(),
        v => v.to_js_string().to_ascii_uppercase(),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_') {
        return Err(format!("fetch: invalid method {method:?}"));
    }

    let mut headers = Vec::new();
    match get("headers") {
        Value::Null => headers.push(("Content-Type".to_string(), "application/json".to_string())),
        Value::Dict(d) => {
            for (k, v) in d.borrow().iter() {
                let name = k.to_value().to_js_string();
                if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == b':' || b >= 0x7f) {
                    return Err(format!("fetch: invalid header name {name:?}"));
                }
                if v.is_null() {
                    continue;
                }
                let value = v.to_js_string();
                if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                    return Err(format!("fetch: the value of header {name:?} contains a line break"));
                }
                headers.push((name, value));
            }
        }
        other => return Err(format!("fetch: `headers` must be a dict, not {}", other.type_name())),
    }

    let body = match get("body") {
        Value::Null => None,
        Value::Str(s) => Some(s.to_string()),
        other => {
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
                headers.push(("content-type".to_string(), "application/json".to_string()));
            }
            Some(serde_json::to_string(&to_json(&other)).map_err(|e| format!("fetch: the body is not JSON: {e}"))?)
        }
    };
    Ok(HttpRequest { method, url, headers, body })
}

/// The value `fetch` returns: `{status, body}`, the body parsed when it is JSON (else the text).
pub(crate) fn response_value(response: &HttpResponse) -> Value {
    let body = match parse_json(&response.body) {
        Ok(v) if !response.body.trim().is_empty() => v,
        _ => Value::from(response.body.as_str()),
    };
    Value::dict_from([("status", Value::from(response.status as i64)), ("body", body)])
}

/// Collects a function's printed lines as PostHog's CDP logs them: arguments joined by `, `,
/// non-strings as JSON, secrets replaced by [`REDACTED`], at most `max` lines (the rest counted).
pub(crate) struct LogHost<'a> {
    /// Lines kept.
    pub lines: Vec<String>,
    /// Lines printed beyond the cap.
    pub dropped: usize,
    /// The cap.
    pub max: usize,
    /// Texts to redact.
    pub sensitive: &'a [String],
}

impl LogHost<'_> {
    /// Replaces every sensitive text in `s`.
    pub fn redact(&self, s: &str) -> String {
        let mut out = s.to_string();
        for secret in self.sensitive {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// The kept lines, with a note of the dropped ones.
    pub fn finish(mut self) -> Vec<String> {
        if self.dropped > 0 {
            self.lines.push(format!(
                "{} more printed lines were dropped: a function keeps at most {} per invocation",
                self.dropped, self.max
            ));
        }
        self.lines
    }
}

impl Host for LogHost<'_> {
    fn print(&mut self, line: &str) {
        if self.lines.len() < self.max {
            let mut line = self.redact(line);
            if line.len() > MAX_LOG_LENGTH {
                let mut cut = MAX_LOG_LENGTH;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line.push_str("... (truncated)");
            }
            self.lines.push(line);
        } else {
            self.dropped += 1;
        }
    }

    fn has_function(&self, name: &str) -> bool {
        name == "print"
    }

    fn call(&mut self, name: &str, args: &[Value]) -> stdlib::NativeResult {
        if name == "print" {
            let line = args
                .iter()
                .map(|a| match a {
                    Value::Str(s) => s.to_string(),
                    other => serde_json::to_string(&to_json(other)).unwrap_or_default(),
                })
                .collect::<Vec<_>>()
                .join(", ");
            self.print(&line);
            return Ok(Value::Null);
        }
        Err(stdlib::StdlibError::Unavailable(format!("host function {name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hog_lang::value::from_json;
    use serde_json::json;

    fn req(url: &str, options: serde_json::Value) -> Result<HttpRequest, String> {
        request(&[Value::from(url), from_json(&options)])
    }

    #[test]
    fn defaults_follow_posthog() {
        let r = req("https://x.test/a?b=1", json!(null)).unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.headers, vec![("Content-Type".to_string(), "application/json".to_string())]);
        assert_eq!(r.body, None);

        let r = req("https://x.test", json!({"method": "get", "headers": {"X-A": 1, "X-B": null}})).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.headers, vec![("X-A".to_string(), "1".to_string())]);

        let r = req("http://x.test", json!({"headers": {}, "body": {"b": [1, 2.5, "x"], "a": null}})).unwrap();
        assert_eq!(r.body.as_deref(), Some(r#"{"b":[1,2.5,"x"],"a":null}"#));
        assert_eq!(r.headers, vec![("content-type".to_string(), "application/json".to_string())]);

        let r = req("http://x.test", json!({"headers": {"Content-Type": "text/plain"}, "body": "hi"})).unwrap();
        assert_eq!(r.body.as_deref(), Some("hi"));
        assert_eq!(r.headers.len(), 1);
    }

    #[test]
    fn bad_arguments_are_clear_errors() {
        assert!(req("ftp://x", json!(null)).unwrap_err().contains("only http:// and https://"));
        assert!(req("https://x.test", json!({"method": "GE T"})).unwrap_err().contains("invalid method"));
        assert!(req("https://x.test", json!({"headers": {"a": "b\r\nc: d"}})).unwrap_err().contains("line break"));
        assert!(req("https://x.test", json!({"headers": [1]})).unwrap_err().contains("must be a dict"));
        assert!(request(&[Value::from(1i64)]).unwrap_err().contains("must be a string"));
    }

    #[test]
    fn response_bodies_are_parsed_when_json() {
        let r =
            |body: &str| to_json(&response_value(&HttpResponse { status: 201, headers: vec![], body: body.into() }));
        assert_eq!(r(r#"{"ok":true}"#), json!({"status": 201, "body": {"ok": true}}));
        assert_eq!(r("not json"), json!({"status": 201, "body": "not json"}));
        assert_eq!(r(""), json!({"status": 201, "body": ""}));
    }
}
