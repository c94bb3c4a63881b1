//! PostHog's `filters` object of a Hog function, turned into the Hog filter expression the
//! dataflow evaluates for every event: `{"events": [{"id": "$pageview"}], "properties": [{"key":
//! "$browser", "value": ["Chrome"], "operator": "exact", "type": "event"}]}` means "a
//! `$pageview` whose `$browser` is Chrome". Events are OR-ed, properties AND-ed. A `bytecode`
//! field alone (as PostHog exports it) is used as it is.

use hog_lang::value::escape_string as hog_string;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// What a function's `filters` compile to.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Matches every event.
    All,
    /// Hog source of a boolean expression over the filter globals.
    Hog(String),
    /// Ready bytecode (PostHog's `filters.bytecode`).
    Bytecode(Value),
}

/// Parses `filters` (the API's field) into a [`Filter`]; errors name the field.
pub fn parse(filters: &Value) -> Result<Filter, ApiError> {
    let obj = match filters {
        Value::Null => return Ok(Filter::All),
        Value::Object(o) => o,
        _ => return Err(ApiError::invalid("filters", "`filters` must be an object")),
    };
    let events = list(obj, "events")?;
    let properties = list(obj, "properties")?;
    if events.is_empty() && properties.is_empty() {
        return match obj.get("bytecode") {
            Some(b @ Value::Array(_)) => Ok(Filter::Bytecode(b.clone())),
            Some(Value::Null) | None => Ok(Filter::All),
            Some(_) => Err(ApiError::invalid("filters.bytecode", "must be a bytecode array (`[\"_H\", 1, …]`)")),
        };
    }
    let mut clauses = Vec::new();
    if !events.is_empty() {
        let mut names = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let attr = format!("filters.events[{i}]");
            let id = e
                .get("id")
                .ok_or_else(|| ApiError::invalid(&attr, "each event filter needs an `id` (the event name)"))?;
            match id {
                // PostHog's "All events" entry.
                Value::Null => names.clear(),
                Value::String(name) => names.push(format!("event = {}", hog_string(name))),
                _ => return Err(ApiError::invalid(format!("{attr}.id"), "must be an event name")),
            }
            if id.is_null() {
                break;
            }
        }
        if !names.is_empty() {
            clauses.push(format!("({})", names.join(" or ")));
        }
    }
    for (i, p) in properties.iter().enumerate() {
        clauses.push(property(p, &format!("filters.properties[{i}]"))?);
    }
    Ok(if clauses.is_empty() { Filter::All } else { Filter::Hog(clauses.join(" and ")) })
}

fn list<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a [Value], ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(ApiError::invalid(format!("filters.{key}"), "must be a list")),
    }
}

fn property(p: &Value, attr: &str) -> Result<String, ApiError> {
    let Some(p) = p.as_object() else {
        return Err(ApiError::invalid(attr, "each property filter is an object `{key, value, operator, type}`"));
    };
    let key = p
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(format!("{attr}.key"), "a property filter needs a `key` string"))?;
    let base = match p.get("type").and_then(Value::as_str).unwrap_or("event") {
        "event" => "properties",
        "person" => "person.properties",
        other => {
            return Err(ApiError::invalid(
                format!("{attr}.type"),
                format!("property filter type {other:?} is not supported: use \"event\" or \"person\""),
            ))
        }
    };
    let field = format!("{base}[{}]", hog_string(key));
    let operator = p.get("operator").and_then(Value::as_str).unwrap_or("exact");
    let values: Vec<&Value> = match p.get("value") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(v) => vec![v],
    };
    let text = |v: &Value| -> Result<String, ApiError> {
        match v {
            Value::String(s) => Ok(hog_string(s)),
            Value::Number(n) => Ok(hog_string(&n.to_string())),
            Value::Bool(b) => Ok(hog_string(&b.to_string())),
            _ => Err(ApiError::invalid(format!("{attr}.value"), "values must be strings, numbers or booleans")),
        }
    };
    let number = |v: &Value| -> Result<String, ApiError> {
        let n = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.is_finite() => Ok(format!("{n:?}")),
            _ => Err(ApiError::invalid(format!("{attr}.value"), format!("operator {operator:?} needs a number"))),
        }
    };
    let need_value = || -> Result<&Value, ApiError> {
        values
            .first()
            .copied()
            .ok_or_else(|| ApiError::invalid(format!("{attr}.value"), format!("operator {operator:?} needs a value")))
    };
    let any = |op: &str, join: &str| -> Result<String, ApiError> {
        if values.is_empty() {
            return Err(ApiError::invalid(format!("{attr}.value"), format!("operator {operator:?} needs a value")));
        }
        let parts: Result<Vec<String>, ApiError> =
            values.iter().map(|v| Ok(format!("toString({field}) {op} {}", text(v)?))).collect();
        Ok(format!("({})", parts?.join(join)))
    };
    let contains = |negate: bool| -> Result<String, ApiError> {
        let v = need_value()?;
        let needle = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let escaped = needle.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let op = if negate { "not ilike" } else { "ilike" };
        Ok(format!("(toString({field}) {op} {})", hog_string(&format!("%{escaped}%"))))
    };
    Ok(match operator {
        "exact" => any("=", " or ")?,
        "is_not" => any("!=", " and ")?,
        "icontains" => contains(false)?,
        "not_icontains" => contains(true)?,
        "regex" => format!("(toString({field}) =~ {})", text(need_value()?)?),
        "not_regex" => format!("(toString({field}) !~ {})", text(need_value()?)?),
        "is_set" => format!("({field} != null)"),
        "is_not_set" => format!("({field} = null)"),
        "gt" => format!("(toFloat({field}) > {})", number(need_value()?)?),
        "gte" => format!("(toFloat({field}) >= {})", number(need_value()?)?),
        "lt" => format!("(toFloat({field}) < {})", number(need_value()?)?),
        "lte" => format!("(toFloat({field}) <= {})", number(need_value()?)?),
        other => {
            return Err(ApiError::invalid(
                format!("{attr}.operator"),
                format!(
                    "operator {other:?} is not supported: use exact, is_not, icontains, not_icontains, regex, \
                     not_regex, is_set, is_not_set, gt, gte, lt or lte"
                ),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_and_properties() {
        let f = parse(&json!({
            "events": [{"id": "$pageview"}, {"id": "it's"}],
            "properties": [{"key": "$browser", "value": ["Chrome", "Firefox"], "operator": "exact", "type": "event"},
                           {"key": "email", "operator": "is_set", "type": "person"}]
        }))
        .unwrap();
        assert_eq!(
            f,
            Filter::Hog(
                "(event = '$pageview' or event = 'it\\'s') and (toString(properties['$browser']) = 'Chrome' or \
                 toString(properties['$browser']) = 'Firefox') and (person.properties['email'] != null)"
                    .into()
            )
        );
    }

    #[test]
    fn empty_and_bytecode() {
        assert_eq!(parse(&json!({})).unwrap(), Filter::All);
        assert_eq!(parse(&Value::Null).unwrap(), Filter::All);
        assert_eq!(parse(&json!({"events": [{"id": null}]})).unwrap(), Filter::All);
        assert_eq!(parse(&json!({"bytecode": ["_H", 1, 29]})).unwrap(), Filter::Bytecode(json!(["_H", 1, 29])));
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(&json!({"properties": [{"key": "a", "operator": "between", "value": 1}]})).unwrap_err();
        assert!(
            matches!(e, ApiError::Invalid { attr: Some(ref a), .. } if a == "filters.properties[0].operator"),
            "{e:?}"
        );
        let e = parse(&json!({"properties": [{"key": "a", "operator": "gt", "value": "x"}]})).unwrap_err();
        assert!(
            matches!(e, ApiError::Invalid { attr: Some(ref a), .. } if a == "filters.properties[0].value"),
            "{e:?}"
        );
        let e = parse(&json!({"events": "x"})).unwrap_err();
        assert!(matches!(e, ApiError::Invalid { attr: Some(ref a), .. } if a == "filters.events"), "{e:?}");
    }
}
