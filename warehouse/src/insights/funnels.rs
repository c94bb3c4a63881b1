//! `FunnelsQuery`: how many persons did step 1, then step 2, … in order, each within the
//! conversion window of their step 1, inside the date range. Counted with ClickHouse's
//! `windowFunnel` (on `toDateTime(timestamp)`, so whole seconds), which 18.16 and 26.x share.
//!
//! Conversion times (`average_conversion_time`, `median_conversion_time`) are `null`:
//! `windowFunnel` returns only the step reached, and recovering the matched timestamps needs
//! window functions or `arrayFold`, which 18.16 lacks.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::dates::{self, DateRangeSpec, Interval};
use super::{
    as_i64, as_string, check_test_accounts, filters_sql, invalid, Breakdown, BreakdownFilter, Ctx, EventsNode,
    InsightError, PropertyFilter, BREAKDOWN_OTHER,
};

/// The supported subset of PostHog's `FunnelsQuery`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FunnelsQuery {
    /// `FunnelsQuery`.
    pub kind: String,
    /// The steps, in order (at least two).
    pub series: Vec<EventsNode>,
    /// Window and order.
    #[serde(default)]
    pub funnels_filter: Option<FunnelsFilter>,
    /// Date range (default the last 7 days and today).
    #[serde(default)]
    pub date_range: Option<DateRangeSpec>,
    /// Breakdown by a property of each person's first step-1 event.
    #[serde(default)]
    pub breakdown_filter: Option<BreakdownFilter>,
    /// Filters applied to every step.
    #[serde(default)]
    pub properties: Option<Vec<PropertyFilter>>,
    /// Must be false or absent.
    #[serde(default)]
    pub filter_test_accounts: Option<bool>,
    /// Interval of funnel trends: accepted and not used (only the steps view is answered).
    #[serde(default)]
    pub interval: Option<Interval>,
}

/// `funnelsFilter`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FunnelsFilter {
    /// Conversion window length (default 14).
    #[serde(default)]
    pub funnel_window_interval: Option<u32>,
    /// Conversion window unit (default `day`).
    #[serde(default)]
    pub funnel_window_interval_unit: Option<WindowUnit>,
    /// Only `ordered` (the default) is supported.
    #[serde(default)]
    pub funnel_order_type: Option<OrderType>,
    /// Only `steps` (the default) is supported.
    #[serde(default)]
    pub funnel_viz_type: Option<VizType>,
}

/// Unit of the conversion window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowUnit {
    /// Seconds.
    Second,
    /// Minutes.
    Minute,
    /// Hours.
    Hour,
    /// Days.
    Day,
    /// Weeks.
    Week,
}

/// `funnelOrderType`: only `ordered` is answered; `strict` and `unordered` are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    /// Steps in order, other events allowed between them.
    Ordered,
    /// Steps in order with nothing between (not supported).
    Strict,
    /// Steps in any order (not supported).
    Unordered,
}

/// `funnelVizType`: only `steps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VizType {
    /// Conversion per step.
    Steps,
}

pub(crate) fn run(ctx: &Ctx, q: FunnelsQuery) -> Result<Value, InsightError> {
    check_test_accounts(q.filter_test_accounts)?;
    if q.series.len() < 2 {
        return Err(invalid("series", "a funnel needs at least two steps"));
    }
    if q.series.len() > 20 {
        return Err(invalid("series", "a funnel has at most 20 steps"));
    }
    let filter = q.funnels_filter.clone().unwrap_or_default();
    match filter.funnel_order_type.unwrap_or(OrderType::Ordered) {
        OrderType::Ordered => {}
        other => {
            return Err(invalid(
                "funnelsFilter.funnelOrderType",
                &format!("{other:?} funnels are not supported; use \"ordered\"").to_lowercase(),
            ))
        }
    }
    let amount = u64::from(filter.funnel_window_interval.unwrap_or(14));
    let unit = match filter.funnel_window_interval_unit.unwrap_or(WindowUnit::Day) {
        WindowUnit::Second => 1,
        WindowUnit::Minute => 60,
        WindowUnit::Hour => 3600,
        WindowUnit::Day => 86_400,
        WindowUnit::Week => 7 * 86_400,
    };
    let window = amount * unit;
    if window == 0 || window > 366 * 86_400 {
        return Err(invalid("funnelsFilter.funnelWindowInterval", "the window must be between 1 second and 366 days"));
    }
    let range = dates::resolve(q.date_range.as_ref(), Interval::Day, ctx.now, || ctx.earliest())?;
    let breakdown = Breakdown::from_filter(q.breakdown_filter.as_ref())?;
    let global = filters_sql(q.properties.as_ref())?;
    let steps: Vec<String> =
        q.series.iter().enumerate().map(|(i, s)| s.condition(&format!("series[{i}]"))).collect::<Result<_, _>>()?;
    let bv = match &breakdown {
        Some(b) => format!("argMinIf({}, timestamp, {})", b.sql(), steps[0]),
        None => "''".to_string(),
    };
    let sql = format!(
        "SELECT breakdown_value, level, count() FROM ( \
           SELECT person_id, windowFunnel({window})(toDateTime(timestamp), {conds}) AS level, {bv} AS breakdown_value \
           FROM {events} \
           WHERE team_id = {team} AND timestamp >= toDateTime({from}) AND timestamp < toDateTime({to}) \
           AND ({any}) AND {global} \
           GROUP BY person_id \
         ) WHERE level > 0 GROUP BY breakdown_value, level",
        conds = steps.join(", "),
        any = steps.join(" OR "),
        events = ctx.events(),
        team = ctx.team_id,
        from = range.from.timestamp(),
        to = range.to.timestamp(),
    );
    let rows = ctx.query(&sql)?;
    // Persons per breakdown value whose furthest step is `level` (1-based).
    let mut reached: HashMap<String, Vec<u64>> = HashMap::new();
    for row in rows.results {
        let (Some(value), Some(level), Some(n)) =
            (row.first().map(as_string), row.get(1).and_then(as_i64), row.get(2).and_then(as_i64))
        else {
            continue;
        };
        let levels = reached.entry(value).or_insert_with(|| vec![0; q.series.len()]);
        if let Some(slot) = usize::try_from(level).ok().and_then(|l| l.checked_sub(1)).and_then(|l| levels.get_mut(l)) {
            *slot += n.max(0) as u64;
        }
    }
    // Persons reaching at least each step.
    let counts = |levels: &[u64]| -> Vec<u64> { (0..levels.len()).map(|step| levels[step..].iter().sum()).collect() };
    let format_steps = |counts: &[u64], breakdown_value: Option<&str>| -> Value {
        let steps: Vec<Value> = q
            .series
            .iter()
            .enumerate()
            .map(|(order, s)| {
                let mut step = json!({
                    "action_id": s.event,
                    "name": s.display_name(),
                    "custom_name": s.custom_name,
                    "order": order,
                    "count": counts[order],
                    "type": "events",
                    "average_conversion_time": null,
                    "median_conversion_time": null,
                });
                if let Some(v) = breakdown_value {
                    step["breakdown"] = json!(v);
                    step["breakdown_value"] = json!(v);
                }
                step
            })
            .collect();
        Value::Array(steps)
    };
    let results = match &breakdown {
        None => format_steps(&counts(reached.get("").map(Vec::as_slice).unwrap_or(&vec![0; q.series.len()])), None),
        Some(b) => {
            let mut values: Vec<(String, Vec<u64>)> = reached.into_iter().map(|(v, l)| (v, counts(&l))).collect();
            values.sort_by(|a, b| b.1[0].cmp(&a.1[0]).then_with(|| a.0.cmp(&b.0)));
            if values.len() > b.limit {
                // Each person has one value, so the rest add up into "Other".
                let rest = values.split_off(b.limit);
                if !b.hide_other {
                    let mut other = vec![0; q.series.len()];
                    for (_, c) in rest {
                        for (o, n) in other.iter_mut().zip(c) {
                            *o += n;
                        }
                    }
                    values.push((BREAKDOWN_OTHER.to_string(), other));
                }
            }
            Value::Array(
                values
                    .into_iter()
                    .map(|(raw, c)| {
                        let value = if raw == BREAKDOWN_OTHER { raw } else { Breakdown::value(raw) };
                        format_steps(&c, Some(&value))
                    })
                    .collect(),
            )
        }
    };
    Ok(json!({"results": results, "timezone": "UTC"}))
}
