//! `FunnelsQuery`: how many persons did step 1, then step 2, … in order, each within the
//! conversion window of their step 1, inside the date range.
//!
//! The furthest step per person follows ClickHouse's `windowFunnel` (whole seconds; a step counts
//! when it comes at or after the previous step and at most the window after the step 1 that
//! started its chain; the latest start is kept). On old servers (18.16) `windowFunnel` itself
//! computes it. On modern ones (chDB) the same rule runs on arrays, faster there: each person's
//! matching events are packed as `seconds since the range start << bits | step` (UInt32 when it
//! fits) into one sorted array, in which the earliest chain from each step-1, step-2 pair is
//! followed with `arrayReverseFill` (see [`modern_level`]).
//!
//! Funnels read `events` without `FINAL`: a re-delivered event repeats a (person, second, step)
//! entry already there, which changes no person's furthest step, so merging duplicates away
//! first would only cost time (a lot of it on freshly written, unmerged parts).
//!
//! Conversion times (`average_conversion_time`, `median_conversion_time`) are `null`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::dates::{self, DateRangeSpec, Interval};
use super::{
    as_i64, as_string, check_test_accounts, filters_sql, invalid, Breakdown, BreakdownFilter, Ctx, EventsNode,
    InsightError, PropertyFilter, BREAKDOWN_OTHER,
};
use crate::schema::Dialect;

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
    let level = match ctx.warehouse.dialect() {
        Dialect::Legacy => format!("windowFunnel({window})(toDateTime(timestamp), {})", steps.join(", ")),
        Dialect::Modern => {
            let span = range.to.timestamp().saturating_sub(range.from.timestamp()).max(0) as u64;
            modern_level(&steps, &q.series, window, range.from.timestamp(), span)
        }
    };
    let sql = format!(
        "SELECT breakdown_value, level, count() FROM ( \
           SELECT {level} AS level, {bv} AS breakdown_value \
           FROM events \
           WHERE team_id = {team} AND timestamp >= toDateTime({from}) AND timestamp < toDateTime({to}) \
           AND ({any}) AND {global} \
           GROUP BY person_id \
         ) WHERE level > 0 GROUP BY breakdown_value, level",
        any = steps.join(" OR "),
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

/// The furthest step of one person (an aggregate expression over the person's rows), with
/// `windowFunnel`'s rule computed on arrays (modern ClickHouse).
///
/// Each matching event becomes `entry = (second - from + 1) << bits | step` (1-based step), so
/// sorting the person's entries orders them by time, and within a second by step, as
/// `windowFunnel` orders its events. When every step names a different event, a row matches one
/// step and makes one entry; otherwise a row makes one entry per step it matches.
///
/// `windowFunnel` keeps the latest start of each step's chain, so a person reached step k ≥ 2
/// exactly when the sorted entries hold a chain of step 1, step 2, …, step k entries in that
/// order whose last entry is at most the window after its first. If one exists, so does one that
/// starts at a step-1 entry `p` followed by a step-2 entry `s` with no step-1 or step-2 entry
/// between them (a later start and an earlier step 2 only help) and then takes the first step-3
/// entry after `s`, the first step-4 entry after that, and so on. So: `_funnel_f` keeps the
/// step-1 and step-2 entries, `_funnel_p` holds for each step-2 entry the entry before it in
/// `_funnel_f` (a step-1 entry where the pair is such a `p`, `s`), and for step k a chain of
/// `arrayReverseFill`s (steps k, k − 1, …, 3) gives at each step-2 entry the end of the earliest
/// chain from it. Step 1, usually the most frequent event, needs no fill, and the later steps'
/// fills have few runs: on the arrays of `hogpipe bench query`'s funnel the work after the sort
/// fell from ~80 to ~45 ms of CPU against carrying each step's chain start forward with
/// `arrayFill`.
fn modern_level(steps: &[String], series: &[super::EventsNode], window: u64, from: i64, span: u64) -> String {
    let n = steps.len();
    let bits = usize::BITS - n.leading_zeros();
    let radix = 1u64 << bits;
    // Seconds since `from` plus one (no entry is 0, which stands for no step), shifted. Entries
    // are UInt32 when the range allows (the whole entry is converted: ClickHouse widens
    // `UInt32 * UInt8` to UInt64), which measured ~8 % faster than UInt64 on the 3-step benchmark
    // funnel.
    let wide = (span + 2).checked_mul(radix).is_none_or(|max| max > u64::from(u32::MAX));
    let int = if wide { "toUInt64" } else { "toUInt32" };
    let offset = format!("toUInt64(toUInt32(toDateTime(timestamp)) - {from} + 1) * {radix}");
    let mut names: Vec<&str> = series.iter().filter_map(|s| s.event.as_deref()).collect();
    names.sort_unstable();
    names.dedup();
    let exclusive = names.len() == n && series.iter().all(|s| s.event.is_some());
    let entries = if exclusive {
        let mut arms: Vec<String> = steps[..n - 1].iter().enumerate().map(|(i, c)| format!("{c}, {}", i + 1)).collect();
        arms.push(n.to_string());
        format!("groupArray({int}({offset} + multiIf({})))", arms.join(", "))
    } else {
        let each: Vec<String> =
            steps.iter().enumerate().map(|(i, c)| format!("if({c}, {int}({offset} + {}), {int}(0))", i + 1)).collect();
        format!("groupArrayArray(arrayFilter(x -> x != 0, [{}]))", each.join(", "))
    };
    // `arrayReverseFill` keeps the last element as it is, so in a chain of two fills or more (four
    // steps or more) a last step-k entry would pass back as a step-(k-1) one: a trailing 0 (no
    // step) ends every chain instead.
    let sorted =
        if n >= 4 { format!("arrayPushBack(arraySort({entries}), 0)") } else { format!("arraySort({entries})") };
    // Each array is named where it is built (ClickHouse aliases are query-wide; the multiIf arms
    // may use a name before the arm that defines it) and then used by name.
    let e = "_funnel_entries";
    let p = format!(
        "(arrayFilter((p, x) -> x % {radix} = 2, \
           arrayShiftRight((arrayFilter(x -> x % {radix} <= 2, ({sorted} AS {e})) AS _funnel_f), 1), _funnel_f) \
         AS _funnel_p)"
    );
    // Step k is reached when a pair `p`, `s` has an end within the window: `end - p <= window <<
    // bits + k - 1` compares the seconds, as `end` carries step k and `p` step 1.
    let within = |k: u64| radix * window + k - 1;
    let mut reached = vec![
        format!("arrayExists(x -> x % {radix} = 1, {e})"),
        format!(
            "arrayExists((p, s) -> p % {radix} = 1 AND s <= p + {}, {p}, arrayFilter(x -> x % {radix} = 2, _funnel_f))",
            within(2)
        ),
    ];
    for k in 3..=n as u64 {
        let mut end = format!("arrayReverseFill(x -> x % {radix} = {k}, {e})");
        for j in (3..k).rev() {
            end = format!("arrayReverseFill((v, x) -> x % {radix} = {j}, {end}, {e})");
        }
        reached.push(format!(
            "arrayExists((p, b) -> p % {radix} = 1 AND b % {radix} = {k} AND b <= p + {}, _funnel_p, \
             arrayFilter((v, x) -> x % {radix} = 2, {end}, {e}))",
            within(k)
        ));
    }
    // The furthest step first.
    let arms: Vec<String> = reached.iter().enumerate().rev().map(|(i, r)| format!("{r}, {}", i + 1)).collect();
    format!("multiIf({}, 0)", arms.join(", "))
}

#[cfg(test)]
mod tests {
    use super::modern_level;

    #[test]
    fn entries_are_32_bits_while_the_range_fits_and_64_beyond() {
        let node = |e: &str| serde_json::from_value(serde_json::json!({"kind": "EventsNode", "event": e})).unwrap();
        let series = [node("a"), node("b"), node("c"), node("d")];
        let steps: Vec<String> = ["a", "b", "c", "d"].iter().map(|e| format!("event = '{e}'")).collect();
        // Four steps: 3 bits per entry, so 2^29 seconds (17 years) fit in 32 bits.
        let month = modern_level(&steps, &series, 60, 0, 30 * 86_400);
        assert!(month.contains("groupArray(toUInt32(") && !month.contains("groupArray(toUInt64("), "{month}");
        let decades = modern_level(&steps, &series, 60, 0, 30 * 365 * 86_400);
        assert!(decades.contains("groupArray(toUInt64("), "{decades}");
        // Steps sharing an event make one entry per matching step, in the same width.
        let shared = modern_level(&steps[..2], &[node("a"), node("a")], 60, 0, 30 * 86_400);
        assert!(shared.contains("groupArrayArray(") && shared.contains("toUInt32(0)"), "{shared}");
    }
}
