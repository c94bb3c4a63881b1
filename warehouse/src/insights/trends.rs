//! `TrendsQuery`: per series, events (or unique persons, or sessions) per hour, day, week or
//! month over a date range, optionally broken down by a property; every interval of the range
//! is present, zeros filled.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{json, Value};

use super::dates::{self, DateRangeSpec, Interval, Range};
use super::{
    as_i64, as_string, check_test_accounts, filters_sql, invalid, sql_string, Breakdown, BreakdownFilter, Ctx,
    EventsNode, InsightError, Math, PropertyFilter, BREAKDOWN_OTHER,
};

/// The supported subset of PostHog's `TrendsQuery`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TrendsQuery {
    /// `TrendsQuery`.
    pub kind: String,
    /// One or more series.
    pub series: Vec<EventsNode>,
    /// Bucket width (default `day`).
    #[serde(default)]
    pub interval: Option<Interval>,
    /// Date range (default the last 7 days and today).
    #[serde(default)]
    pub date_range: Option<DateRangeSpec>,
    /// Breakdown by a property.
    #[serde(default)]
    pub breakdown_filter: Option<BreakdownFilter>,
    /// Filters applied to every series.
    #[serde(default)]
    pub properties: Option<Vec<PropertyFilter>>,
    /// Must be false or absent.
    #[serde(default)]
    pub filter_test_accounts: Option<bool>,
    /// Display options (chart type, …): accepted and not used.
    #[serde(default)]
    pub trends_filter: Option<Value>,
}

/// One series' numbers per bucket and breakdown value ('' without breakdown).
type Counts = HashMap<String, BTreeMap<i64, u64>>;

pub(crate) fn run(ctx: &Ctx, q: TrendsQuery) -> Result<Value, InsightError> {
    check_test_accounts(q.filter_test_accounts)?;
    if q.series.is_empty() {
        return Err(invalid("series", "needs at least one series"));
    }
    let interval = q.interval.unwrap_or_default();
    let range = dates::resolve(q.date_range.as_ref(), interval, ctx.now, || ctx.earliest())?;
    let breakdown = Breakdown::from_filter(q.breakdown_filter.as_ref())?;
    let global = filters_sql(q.properties.as_ref())?;
    let buckets: Vec<i64> = dates::indexes(range, interval).collect();
    let days: Vec<String> = buckets.iter().map(|&i| interval.day_string(interval.start(i))).collect();
    let labels: Vec<String> = buckets.iter().map(|&i| interval.label(interval.start(i))).collect();

    let mut results = Vec::new();
    for (order, series) in q.series.iter().enumerate() {
        let condition = series.condition(&format!("series[{order}]"))?;
        let math = series.math.unwrap_or_default();
        let base = Select { ctx, range, interval, math, condition: &condition, global: &global };
        let series_label = series.display_name();
        let action = json!({
            "id": series.event,
            "type": "events",
            "order": order,
            "name": series_label,
            "custom_name": series.custom_name,
            "math": math,
            "properties": series.properties.clone().unwrap_or_default(),
        });
        let mut emit = |label: String, counts: &BTreeMap<i64, u64>, breakdown_value: Option<&str>| {
            let data: Vec<u64> = buckets.iter().map(|b| counts.get(b).copied().unwrap_or(0)).collect();
            let total: u64 = data.iter().sum();
            let mut object = json!({
                "action": action,
                "label": label,
                "count": total as f64,
                "data": data,
                "labels": labels,
                "days": days,
            });
            if let Some(v) = breakdown_value {
                object["breakdown_value"] = json!(v);
            }
            results.push(object);
        };
        match &breakdown {
            None => {
                let counts = base.counts(None, None)?;
                emit(series_label.clone(), counts.get("").unwrap_or(&BTreeMap::new()), None);
            }
            Some(b) => {
                let mut counts = base.counts(Some(&b.sql()), None)?;
                let mut values: Vec<(String, u64)> =
                    counts.iter().map(|(v, by)| (v.clone(), by.values().sum::<u64>())).collect();
                values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                if values.len() > b.limit {
                    let kept: Vec<String> = values[..b.limit].iter().map(|(v, _)| v.clone()).collect();
                    if math == Math::Total {
                        // Event counts add up: merge the rest here.
                        let mut other = BTreeMap::new();
                        for (v, _) in &values[b.limit..] {
                            for (bucket, n) in counts.remove(v).unwrap_or_default() {
                                *other.entry(bucket).or_insert(0) += n;
                            }
                        }
                        counts.insert(BREAKDOWN_OTHER.to_string(), other);
                    } else {
                        // Unique counts do not: ask again with the rest folded into one value.
                        counts = base.counts(Some(&b.sql()), Some(&kept))?;
                    }
                    values.truncate(b.limit);
                    if !b.hide_other {
                        values.push((BREAKDOWN_OTHER.to_string(), 0));
                    }
                }
                for (raw, _) in values {
                    let value = Breakdown::value(raw.clone());
                    let shown = Breakdown::label(&value);
                    let label = if q.series.len() > 1 { format!("{series_label} - {shown}") } else { shown };
                    emit(label, counts.get(&raw).unwrap_or(&BTreeMap::new()), Some(&value));
                }
            }
        }
    }
    Ok(json!({"results": results, "hasMore": false, "timezone": "UTC"}))
}

/// The parts of one series' SELECT.
struct Select<'a> {
    ctx: &'a Ctx<'a>,
    range: Range,
    interval: Interval,
    math: Math,
    condition: &'a str,
    global: &'a str,
}

impl Select<'_> {
    /// Numbers per breakdown value and bucket; with `keep`, values not in it become "Other".
    fn counts(&self, breakdown: Option<&str>, keep: Option<&[String]>) -> Result<Counts, InsightError> {
        let value = match (breakdown, keep) {
            (None, _) => "''".to_string(),
            (Some(b), None) => b.to_string(),
            (Some(b), Some(keep)) => {
                let list: Vec<String> = keep.iter().map(|k| sql_string(k)).collect();
                format!("if({b} IN ({}), {b}, {})", list.join(", "), sql_string(BREAKDOWN_OTHER))
            }
        };
        let aggregate = match self.math {
            Math::Total => "count()",
            Math::Dau => "uniqExact(person_id)",
            Math::UniqueSession => {
                "uniqExactIf(visitParamExtractString(properties, '$session_id'), visitParamExtractString(properties, '$session_id') != '')"
            }
        };
        let sql = format!(
            "SELECT {bucket} AS bucket, {value} AS breakdown_value, {aggregate} AS total \
             FROM {events} \
             WHERE team_id = {team} AND timestamp >= toDateTime({from}) AND timestamp < toDateTime({to}) \
             AND {condition} AND {global} \
             GROUP BY bucket, breakdown_value",
            bucket = self.interval.sql_index(),
            events = self.ctx.events(),
            team = self.ctx.team_id,
            from = self.range.from.timestamp(),
            to = self.range.to.timestamp(),
            condition = self.condition,
            global = self.global,
        );
        let rows = self.ctx.query(&sql)?;
        let mut counts = Counts::new();
        for row in rows.results {
            let (Some(bucket), Some(value), Some(total)) =
                (row.first().and_then(as_i64), row.get(1).map(as_string), row.get(2).and_then(as_i64))
            else {
                continue;
            };
            *counts.entry(value).or_default().entry(bucket).or_insert(0) += total.max(0) as u64;
        }
        Ok(counts)
    }
}
