//! Insight queries in PostHog's shapes: [`trends`] (`TrendsQuery`), [`funnels`] (`FunnelsQuery`)
//! and [`retention`] (`RetentionQuery`), answered from `events` with the result shapes PostHog's
//! query runners return.
//!
//! [`run`] takes the query JSON as the API receives it, checks it against the supported subset
//! (anything else is [`InsightError::Invalid`] naming the field), builds SQL that runs on both
//! ClickHouse 18.16 and chDB 26.x, and shapes the answer. The team id is in every `WHERE`; event
//! names, property keys and values are user text and only ever enter SQL through [`sql_string`].
//! Unique users are `person_id` (person-on-events); trends and retention read `events FINAL` so a
//! re-delivered uuid counts once (funnels need not: see [`funnels`]); times are UTC.

pub mod dates;
pub mod funnels;
pub mod retention;
pub mod trends;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::{Rows, Warehouse, WarehouseError};

/// Why an insight query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum InsightError {
    /// The query is not one this crate answers: `field` is the path of the offending part
    /// (`series[1].math`), `message` says what is wrong with it.
    #[error("invalid query: {field}: {message}")]
    Invalid {
        /// Path of the field, e.g. `series[1].math` or `dateRange.date_from`.
        field: String,
        /// What is wrong, and what is accepted instead.
        message: String,
    },
    /// The warehouse failed to run the generated SQL.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

/// How queries are run; the defaults are what the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Read `events FINAL` (trends, retention), so duplicates of a uuid not yet merged away count
    /// once. Only the benchmark turns it off, to measure what `FINAL` costs.
    pub use_final: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { use_final: true }
    }
}

/// Answers an insight query (`query["kind"]`: `TrendsQuery`, `FunnelsQuery` or
/// `RetentionQuery`) for `team_id`, with relative dates taken from `now`.
pub fn run(warehouse: &Warehouse, team_id: u64, query: &Value, now: DateTime<Utc>) -> Result<Value, InsightError> {
    run_with(warehouse, team_id, query, now, RunOptions::default())
}

/// [`run`] with explicit [`RunOptions`].
pub fn run_with(
    warehouse: &Warehouse,
    team_id: u64,
    query: &Value,
    now: DateTime<Utc>,
    options: RunOptions,
) -> Result<Value, InsightError> {
    let ctx = Ctx { warehouse, team_id, now, options };
    if !query.is_object() {
        return Err(invalid("", "the query must be a JSON object with a \"kind\""));
    }
    match query.get("kind") {
        Some(Value::String(kind)) => match kind.as_str() {
            "TrendsQuery" => trends::run(&ctx, parse(query)?),
            "FunnelsQuery" => funnels::run(&ctx, parse(query)?),
            "RetentionQuery" => retention::run(&ctx, parse(query)?),
            other => Err(invalid(
                "kind",
                &format!("unsupported kind {other:?}: use \"TrendsQuery\", \"FunnelsQuery\" or \"RetentionQuery\""),
            )),
        },
        Some(_) => Err(invalid("kind", "must be a string")),
        None => Err(invalid("kind", "missing")),
    }
}

/// What every query builder needs.
pub(crate) struct Ctx<'a> {
    warehouse: &'a Warehouse,
    team_id: u64,
    now: DateTime<Utc>,
    options: RunOptions,
}

impl Ctx<'_> {
    /// `events FINAL` (or `events` when FINAL is off).
    fn events(&self) -> &'static str {
        if self.options.use_final {
            "events FINAL"
        } else {
            "events"
        }
    }

    fn query(&self, sql: &str) -> Result<Rows, InsightError> {
        tracing::debug!(sql, "insight query");
        Ok(self.warehouse.query(sql)?)
    }

    /// The team's first event time (for `date_from: "all"`).
    fn earliest(&self) -> Result<Option<DateTime<Utc>>, InsightError> {
        let rows = self.query(&format!(
            "SELECT toUInt32(toDateTime(min(timestamp))), count() FROM events WHERE team_id = {}",
            self.team_id
        ))?;
        let row = rows.results.first();
        let n = row.and_then(|r| r.get(1)).and_then(as_i64).unwrap_or(0);
        let secs = row.and_then(|r| r.first()).and_then(as_i64).unwrap_or(0);
        Ok(if n == 0 { None } else { DateTime::from_timestamp(secs, 0) })
    }
}

pub(crate) fn invalid(field: &str, message: &str) -> InsightError {
    InsightError::Invalid { field: field.to_string(), message: message.to_string() }
}

/// Deserializes a query, turning serde's error into [`InsightError::Invalid`] at its path.
pub(crate) fn parse<T: DeserializeOwned>(query: &Value) -> Result<T, InsightError> {
    serde_path_to_error::deserialize(query).map_err(|e| {
        let mut field = e.path().to_string();
        if field == "." {
            field.clear();
        }
        let message = e.inner().to_string();
        // `missing field `x`` is reported at the parent: name the field itself.
        if let Some(name) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
            field = if field.is_empty() { name.to_string() } else { format!("{field}.{name}") };
        }
        InsightError::Invalid { field, message }
    })
}

/// A ClickHouse string literal holding `text` exactly: quotes and backslashes are escaped, so
/// nothing in `text` can end the literal.
pub fn sql_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// An integer from a JSONCompact value (64-bit integers arrive as strings).
pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// A string from a JSONCompact value.
pub(crate) fn as_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `kind` of a series node: only `EventsNode` is supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum NodeKind {
    /// A series of events by name.
    EventsNode,
}

/// A series (trends) or step (funnels): events by name, with filters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsNode {
    /// Always `EventsNode`.
    pub kind: NodeKind,
    /// The event name; `null` for all events.
    #[serde(default)]
    pub event: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The user's name for the series.
    #[serde(default)]
    pub custom_name: Option<String>,
    /// Aggregation (trends): `total` (default), `dau` or `unique_session`.
    #[serde(default)]
    pub math: Option<Math>,
    /// Filters on this series' events.
    #[serde(default)]
    pub properties: Option<Vec<PropertyFilter>>,
}

impl EventsNode {
    /// The SQL condition selecting this node's events (without the team and date conditions).
    /// `path` names the node in errors (`series[1]`).
    pub(crate) fn condition(&self, path: &str) -> Result<String, InsightError> {
        let mut parts = Vec::new();
        if let Some(event) = &self.event {
            parts.push(format!("event = {}", sql_string(event)));
        }
        for (i, filter) in self.properties.iter().flatten().enumerate() {
            parts.push(filter.sql(&format!("{path}.properties[{i}]"))?);
        }
        Ok(if parts.is_empty() { "1".to_string() } else { format!("({})", parts.join(" AND ")) })
    }

    /// `series[i].event`, or "All events".
    pub(crate) fn display_name(&self) -> String {
        self.event.clone().unwrap_or_else(|| "All events".to_string())
    }
}

/// How a trends series aggregates events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Math {
    /// Number of events.
    #[default]
    Total,
    /// Unique persons (`person_id`).
    Dau,
    /// Unique `$session_id` values.
    UniqueSession,
}

/// A property filter (`{key, value, operator, type}`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyFilter {
    /// The property name.
    pub key: String,
    /// What to compare with (a string, number, boolean or list of them).
    #[serde(default)]
    pub value: Option<Value>,
    /// The comparison (default `exact`).
    #[serde(default)]
    pub operator: Operator,
    /// Whose property: `event` (default) or `person`.
    #[serde(default, rename = "type")]
    pub kind: PropertyType,
}

/// Comparison of a [`PropertyFilter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Equal to the value (or one of the listed values).
    #[default]
    Exact,
    /// Not equal to the value (nor any listed value).
    IsNot,
    /// Contains the value, ignoring case.
    Icontains,
    /// Does not contain the value, ignoring case.
    NotIcontains,
    /// Present and not null.
    IsSet,
    /// Absent or null.
    IsNotSet,
    /// Greater than the number.
    Gt,
    /// Less than the number.
    Lt,
}

/// Whose property a filter or breakdown reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyType {
    /// The event's `properties`.
    #[default]
    Event,
    /// The person's properties at the event (`person_properties`).
    Person,
}

impl PropertyType {
    fn column(self) -> &'static str {
        match self {
            PropertyType::Event => "properties",
            PropertyType::Person => "person_properties",
        }
    }
}

/// The raw JSON text of property `key` (empty when absent). `visitParam*` runs on 18.16 and
/// 26.x alike, so both servers give the same answers.
fn raw_property(kind: PropertyType, key: &str) -> String {
    format!("visitParamExtractRaw({}, {})", kind.column(), json_key(key))
}

/// The key as `visitParam*` must be given it: it looks for `"<name>":` in the JSON text, so a key
/// with quotes, backslashes or control characters is written JSON-escaped, as the writer stored it.
fn json_key(key: &str) -> String {
    let quoted = serde_json::to_string(key).unwrap_or_default();
    let inner = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or_default();
    sql_string(inner)
}

/// The value of property `key` as a string: strings unescaped, numbers and booleans as written,
/// and `''` for absent, null or empty. Strings (the common case) are read once; the raw text is
/// read only for the rest (ClickHouse evaluates `if` branches lazily).
/// A materialized column ([`crate::schema::MATERIALIZED_PROPERTIES`]) holds exactly this value
/// and is used instead when `materialized`.
pub(crate) fn property_string(kind: PropertyType, key: &str, materialized: bool) -> String {
    if materialized && kind == PropertyType::Event {
        if let Some(column) = crate::schema::materialized_column(key) {
            return column;
        }
    }
    let raw = raw_property(kind, key);
    let string = format!("visitParamExtractString({}, {})", kind.column(), json_key(key));
    format!("if({string} != '', {string}, if({raw} IN ('null', '\"\"'), '', {raw}))")
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl PropertyFilter {
    /// The SQL condition of this filter; `path` names it in errors (`properties[0]`).
    pub(crate) fn sql(&self, path: &str) -> Result<String, InsightError> {
        let value_field = &format!("{path}.value");
        let texts = || -> Result<Vec<String>, InsightError> {
            let list = match &self.value {
                Some(Value::Array(items)) => items.iter().map(scalar_text).collect::<Option<Vec<_>>>(),
                Some(v) => scalar_text(v).map(|t| vec![t]),
                None => None,
            };
            match list {
                Some(l) if !l.is_empty() => Ok(l),
                _ => Err(invalid(value_field, "needs a string, number or boolean (or a non-empty list of them)")),
            }
        };
        let value = property_string(self.kind, &self.key, true);
        let raw = raw_property(self.kind, &self.key);
        let list = |l: Vec<String>| l.iter().map(|t| sql_string(t)).collect::<Vec<_>>().join(", ");
        Ok(match self.operator {
            Operator::Exact => format!("{value} IN ({})", list(texts()?)),
            Operator::IsNot => format!("{value} NOT IN ({})", list(texts()?)),
            Operator::Icontains | Operator::NotIcontains => {
                let t = texts()?;
                if t.len() != 1 {
                    return Err(invalid(value_field, "icontains takes one value"));
                }
                let cmp = if self.operator == Operator::Icontains { ">" } else { "=" };
                format!("positionCaseInsensitiveUTF8({value}, {}) {cmp} 0", sql_string(&t[0]))
            }
            Operator::IsSet => format!("{raw} NOT IN ('', 'null')"),
            Operator::IsNotSet => format!("{raw} IN ('', 'null')"),
            Operator::Gt | Operator::Lt => {
                let n = match &self.value {
                    Some(Value::Number(n)) => n.as_f64(),
                    Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|n| n.is_finite())
                .ok_or_else(|| invalid(value_field, "gt and lt need a number"))?;
                let cmp = if self.operator == Operator::Gt { ">" } else { "<" };
                format!("toFloat64OrNull({value}) {cmp} {n:?}")
            }
        })
    }
}

/// The SQL condition of a list of filters (all must hold).
pub(crate) fn filters_sql(filters: Option<&Vec<PropertyFilter>>) -> Result<String, InsightError> {
    let mut parts = Vec::new();
    for (i, f) in filters.into_iter().flatten().enumerate() {
        parts.push(f.sql(&format!("properties[{i}]"))?);
    }
    Ok(if parts.is_empty() { "1".to_string() } else { parts.join(" AND ") })
}

/// `breakdownFilter`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakdownFilter {
    /// The property to break down by; none means no breakdown.
    #[serde(default)]
    pub breakdown: Option<String>,
    /// Whose property: `event` (default) or `person`.
    #[serde(default)]
    pub breakdown_type: Option<PropertyType>,
    /// How many values get their own series (default 25); the rest are merged as "Other".
    #[serde(default)]
    pub breakdown_limit: Option<u32>,
    /// Leave out the merged "Other" series.
    #[serde(default)]
    pub breakdown_hide_other_aggregation: Option<bool>,
}

/// The breakdown value of events whose property is absent or empty.
pub const BREAKDOWN_NULL: &str = "$$_posthog_breakdown_null_$$";
/// The breakdown value merging values beyond the limit.
pub const BREAKDOWN_OTHER: &str = "$$_posthog_breakdown_other_$$";

/// A checked breakdown: property, whose, limit.
pub(crate) struct Breakdown {
    pub key: String,
    pub kind: PropertyType,
    pub limit: usize,
    pub hide_other: bool,
}

impl Breakdown {
    pub(crate) fn from_filter(filter: Option<&BreakdownFilter>) -> Result<Option<Breakdown>, InsightError> {
        let Some(f) = filter else { return Ok(None) };
        let Some(key) = &f.breakdown else { return Ok(None) };
        let limit = f.breakdown_limit.unwrap_or(25);
        if limit == 0 || limit > 1000 {
            return Err(invalid("breakdownFilter.breakdown_limit", "must be between 1 and 1000"));
        }
        Ok(Some(Breakdown {
            key: key.clone(),
            kind: f.breakdown_type.unwrap_or_default(),
            limit: limit as usize,
            hide_other: f.breakdown_hide_other_aggregation.unwrap_or(false),
        }))
    }

    /// The SQL of the breakdown value ('' when absent).
    pub(crate) fn sql(&self) -> String {
        property_string(self.kind, &self.key, true)
    }

    /// What the API shows for a value from SQL.
    pub(crate) fn value(raw: String) -> String {
        if raw.is_empty() {
            BREAKDOWN_NULL.to_string()
        } else {
            raw
        }
    }

    /// The label of a breakdown value.
    pub(crate) fn label(value: &str) -> String {
        match value {
            BREAKDOWN_NULL => "None".to_string(),
            BREAKDOWN_OTHER => "Other".to_string(),
            v => v.to_string(),
        }
    }
}

/// Refuses `filterTestAccounts: true` (there is no test-account definition here).
pub(crate) fn check_test_accounts(flag: Option<bool>) -> Result<(), InsightError> {
    if flag == Some(true) {
        return Err(invalid(
            "filterTestAccounts",
            "test-account filters are not supported; send false or leave it out",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_literals_escape_quotes_and_backslashes() {
        assert_eq!(sql_string(r"it's \ x"), r"'it\'s \\ x'");
        assert_eq!(sql_string("a\\'); DROP"), r"'a\\\'); DROP'");
    }

    #[test]
    fn serde_errors_name_the_field() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Q {
            series: Vec<EventsNode>,
        }
        let err = parse::<Q>(
            &serde_json::json!({"series": [{"kind": "EventsNode"}, {"kind": "EventsNode", "math": "bogus"}]}),
        )
        .unwrap_err();
        assert!(matches!(&err, InsightError::Invalid { field, .. } if field == "series[1].math"), "{err}");
        let err = parse::<Q>(&serde_json::json!({})).unwrap_err();
        assert!(matches!(&err, InsightError::Invalid { field, .. } if field == "series"), "{err}");
    }
}
