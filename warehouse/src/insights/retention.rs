//! `RetentionQuery`: cohorts of persons by the period they did the target event (the first time
//! ever, or every period they did it), and how many of each cohort did the returning event in
//! each later period. The range is `totalIntervals` periods ending with the one holding
//! `dateRange.date_to` (default now). Period 0 of a cohort is its size.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::dates::{self, DateRangeSpec, Interval};
use super::{as_i64, check_test_accounts, filters_sql, invalid, sql_string, Ctx, InsightError, PropertyFilter};

/// The supported subset of PostHog's `RetentionQuery`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetentionQuery {
    /// `RetentionQuery`.
    pub kind: String,
    /// Entities, period and type.
    pub retention_filter: RetentionFilter,
    /// `date_to` anchors the last period; `date_from` is ignored (the range is `totalIntervals`).
    #[serde(default)]
    pub date_range: Option<DateRangeSpec>,
    /// Filters applied to every event considered.
    #[serde(default)]
    pub properties: Option<Vec<PropertyFilter>>,
    /// Must be false or absent.
    #[serde(default)]
    pub filter_test_accounts: Option<bool>,
}

/// `retentionFilter`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RetentionFilter {
    /// The event that puts a person in a cohort (default `$pageview`).
    #[serde(default)]
    pub target_entity: Option<Entity>,
    /// The event that counts as coming back (default: the target).
    #[serde(default)]
    pub returning_entity: Option<Entity>,
    /// `Hour`, `Day` (default), `Week` or `Month`.
    #[serde(default)]
    pub period: Option<Period>,
    /// Number of periods (default 8).
    #[serde(default)]
    pub total_intervals: Option<u32>,
    /// `retention_recurring` (default) or `retention_first_time`.
    #[serde(default)]
    pub retention_type: Option<RetentionType>,
    /// How the UI shows percentages: accepted and not used.
    #[serde(default)]
    pub retention_reference: Option<Value>,
}

/// An entity of a retention query.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entity {
    /// The event name; `null` for all events.
    #[serde(default)]
    pub id: Option<String>,
    /// Only `events`.
    #[serde(default, rename = "type")]
    pub kind: Option<EntityType>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// The user's name.
    #[serde(default)]
    pub custom_name: Option<String>,
    /// Position in the UI.
    #[serde(default)]
    pub order: Option<u32>,
    /// Filters on this entity's events.
    #[serde(default)]
    pub properties: Option<Vec<PropertyFilter>>,
}

/// `type` of an [`Entity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityType {
    /// An event by name.
    Events,
}

/// Retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Period {
    /// Hours.
    Hour,
    /// Days.
    Day,
    /// Weeks (starting Sunday).
    Week,
    /// Calendar months.
    Month,
}

/// `retentionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionType {
    /// A person is in the cohort of every period they did the target event.
    RetentionRecurring,
    /// A person is in the cohort of the period of their first target event ever.
    RetentionFirstTime,
}

impl Entity {
    fn condition(&self, path: &str) -> Result<String, InsightError> {
        let mut parts = Vec::new();
        if let Some(event) = &self.id {
            parts.push(format!("event = {}", sql_string(event)));
        }
        for (i, f) in self.properties.iter().flatten().enumerate() {
            parts.push(f.sql(&format!("{path}.properties[{i}]"))?);
        }
        Ok(if parts.is_empty() { "1".into() } else { format!("({})", parts.join(" AND ")) })
    }
}

pub(crate) fn run(ctx: &Ctx, q: RetentionQuery) -> Result<Value, InsightError> {
    check_test_accounts(q.filter_test_accounts)?;
    let f = &q.retention_filter;
    let (period, name) = match f.period.unwrap_or(Period::Day) {
        Period::Hour => (Interval::Hour, "Hour"),
        Period::Day => (Interval::Day, "Day"),
        Period::Week => (Interval::Week, "Week"),
        Period::Month => (Interval::Month, "Month"),
    };
    let n = i64::from(f.total_intervals.unwrap_or(8));
    if !(1..=100).contains(&n) {
        return Err(invalid("retentionFilter.totalIntervals", "must be between 1 and 100"));
    }
    let default_target = Entity {
        id: Some("$pageview".into()),
        kind: None,
        name: None,
        custom_name: None,
        order: None,
        properties: None,
    };
    let target = f.target_entity.as_ref().unwrap_or(&default_target);
    let returning = f.returning_entity.as_ref().unwrap_or(target);
    let target_sql = target.condition("retentionFilter.targetEntity")?;
    let returning_sql = returning.condition("retentionFilter.returningEntity")?;
    let global = filters_sql(q.properties.as_ref())?;
    let anchor = dates::retention_anchor(q.date_range.as_ref(), ctx.now)?;
    let last = period.index(anchor);
    let first = last - n + 1;
    let (from, to) = (period.start(first).timestamp(), period.start(last + 1).timestamp());
    let p = period.sql_index();
    let (team, events) = (ctx.team_id, ctx.events());
    // Per person: the cohorts they belong to and the periods they returned in.
    let per_person = match f.retention_type.unwrap_or(RetentionType::RetentionRecurring) {
        RetentionType::RetentionFirstTime => format!(
            "SELECT person_id, minIf({p}, {target_sql}) AS cohort, \
               groupUniqArrayIf({p}, {returning_sql} AND timestamp >= toDateTime({from})) AS ret \
             FROM {events} \
             WHERE team_id = {team} AND timestamp < toDateTime({to}) AND ({target_sql} OR {returning_sql}) AND {global} \
             GROUP BY person_id HAVING countIf({target_sql}) > 0"
        ),
        RetentionType::RetentionRecurring => format!(
            "SELECT person_id, arrayJoin(targets) AS cohort, ret FROM ( \
               SELECT person_id, groupUniqArrayIf({p}, {target_sql}) AS targets, groupUniqArrayIf({p}, {returning_sql}) AS ret \
               FROM {events} \
               WHERE team_id = {team} AND timestamp >= toDateTime({from}) AND timestamp < toDateTime({to}) \
               AND ({target_sql} OR {returning_sql}) AND {global} \
               GROUP BY person_id)"
        ),
    };
    let sql = format!(
        "SELECT cohort, p - cohort AS k, count() FROM ( \
           SELECT cohort, arrayJoin(arrayConcat([cohort], arrayFilter(x -> x > cohort, ret))) AS p \
           FROM ({per_person}) WHERE cohort >= {first} \
         ) GROUP BY cohort, k"
    );
    let rows = ctx.query(&sql)?;
    let mut counts: HashMap<(i64, i64), u64> = HashMap::new();
    for row in rows.results {
        if let (Some(c), Some(k), Some(count)) =
            (row.first().and_then(as_i64), row.get(1).and_then(as_i64), row.get(2).and_then(as_i64))
        {
            counts.insert((c, k), count.max(0) as u64);
        }
    }
    let results: Vec<Value> = (0..n)
        .map(|i| {
            let values: Vec<Value> = (0..n - i)
                .map(|k| json!({"count": counts.get(&(first + i, k)).copied().unwrap_or(0), "label": format!("{name} {k}")}))
                .collect();
            json!({
                "date": period.start(first + i).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "label": format!("{name} {i}"),
                "values": values,
            })
        })
        .collect();
    Ok(json!({"results": results, "timezone": "UTC"}))
}
