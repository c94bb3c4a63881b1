//! Date ranges and intervals of insight queries, as PostHog reads them: relative forms (`-7d`,
//! `-24h`, `-2w`, `-3m`, `-1y`, `dStart`, `mStart`, `yStart`, `all`) and absolute dates or times,
//! resolved against a given `now`, all in UTC.
//!
//! Intervals are numbered the same way in Rust and in SQL (an hour, day, Sunday-based week or
//! month since 1970), so a bucket is an integer on both ClickHouse 18.16 and 26.x and no server
//! time zone is ever involved.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use serde::Deserialize;

use super::InsightError;

/// The width of a trends bucket or a retention period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    /// One hour.
    Hour,
    /// One day (the default).
    #[default]
    Day,
    /// A week starting on Sunday (PostHog's default week start).
    Week,
    /// A calendar month.
    Month,
}

impl Interval {
    /// The name PostHog uses (`day`), and the capitalised form of retention periods (`Day`).
    pub fn name(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }

    /// The number of the interval holding `t`.
    pub fn index(self, t: DateTime<Utc>) -> i64 {
        let secs = t.timestamp();
        match self {
            Interval::Hour => secs.div_euclid(3600),
            Interval::Day => secs.div_euclid(86_400),
            // 1970-01-01 was a Thursday: day 3 is the first Sunday.
            Interval::Week => (secs.div_euclid(86_400) + 4).div_euclid(7),
            Interval::Month => i64::from(t.year()) * 12 + i64::from(t.month0()),
        }
    }

    /// When interval number `index` starts.
    pub fn start(self, index: i64) -> DateTime<Utc> {
        match self {
            Interval::Hour => epoch(index * 3600),
            Interval::Day => epoch(index * 86_400),
            Interval::Week => epoch((index * 7 - 4) * 86_400),
            Interval::Month => {
                let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
                Utc.with_ymd_and_hms(year as i32, month0 as u32 + 1, 1, 0, 0, 0).single().unwrap_or_default()
            }
        }
    }

    /// The SQL expression of the interval number of the `timestamp` column (same as [`Self::index`]).
    pub fn sql_index(self) -> &'static str {
        match self {
            Interval::Hour => "intDiv(toUInt32(toDateTime(timestamp)), 3600)",
            Interval::Day => "intDiv(toUInt32(toDateTime(timestamp)), 86400)",
            Interval::Week => "intDiv(intDiv(toUInt32(toDateTime(timestamp)), 86400) + 4, 7)",
            // The column's own time zone is UTC on both dialects.
            Interval::Month => "(toYear(toDateTime(timestamp)) * 12 + toMonth(toDateTime(timestamp)) - 1)",
        }
    }

    /// `days` of a trends series: `2026-11-25`, or `2026-11-25 10:00:00` for hours.
    pub fn day_string(self, t: DateTime<Utc>) -> String {
        match self {
            Interval::Hour => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            _ => t.format("%Y-%m-%d").to_string(),
        }
    }

    /// `labels` of a trends series: `25-Nov-2026`, `25-Nov-2026 10:00`, `Nov 2026`.
    pub fn label(self, t: DateTime<Utc>) -> String {
        match self {
            Interval::Hour => t.format("%-d-%b-%Y %H:%M").to_string(),
            Interval::Day | Interval::Week => t.format("%-d-%b-%Y").to_string(),
            Interval::Month => t.format("%b %Y").to_string(),
        }
    }
}

fn epoch(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// `dateRange` of a query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateRangeSpec {
    /// Start: relative (`-7d`) or absolute; default `-7d`.
    #[serde(default)]
    pub date_from: Option<String>,
    /// End: relative or absolute; default now.
    #[serde(default)]
    pub date_to: Option<String>,
    /// When true, both ends are taken exactly instead of being widened to whole intervals.
    #[serde(default, rename = "explicitDate")]
    pub explicit_date: Option<bool>,
}

/// A resolved range: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First instant in the range.
    pub from: DateTime<Utc>,
    /// First instant after the range.
    pub to: DateTime<Utc>,
}

/// A parsed date string: the instant, and whether it was a bare date (`2026-11-01`).
struct Parsed {
    at: DateTime<Utc>,
    date_only: bool,
}

fn invalid(field: &str, message: String) -> InsightError {
    InsightError::Invalid { field: field.to_string(), message }
}

fn start_of_day(t: DateTime<Utc>) -> DateTime<Utc> {
    Interval::Day.start(Interval::Day.index(t))
}

fn months_back(t: DateTime<Utc>, months: i64) -> Option<DateTime<Utc>> {
    let total = i64::from(t.year()) * 12 + i64::from(t.month0()) - months;
    let (year, month0) = (total.div_euclid(12) as i32, total.rem_euclid(12) as u32);
    // The same day of the month, or the month's last day.
    (0..4)
        .find_map(|back| {
            let day = t.day().checked_sub(back)?;
            NaiveDate::from_ymd_opt(year, month0 + 1, day)
        })
        .and_then(|d| d.and_hms_opt(t.hour(), t.minute(), t.second()))
        .map(|d| Utc.from_utc_datetime(&d))
}

/// Parses one of PostHog's date strings against `now`.
fn parse(text: &str, now: DateTime<Utc>, field: &str) -> Result<Parsed, InsightError> {
    let s = text.trim();
    let bad = || {
        invalid(
            field,
            format!(
                "cannot read date {text:?}: use a relative form (-24h, -7d, -2w, -3m, -1y, dStart, mStart, yStart) \
                 or an absolute date (2026-11-01, 2026-11-01T10:00:00Z)"
            ),
        )
    };
    let relative = |at: Option<DateTime<Utc>>| at.map(|at| Parsed { at, date_only: false }).ok_or_else(bad);
    match s {
        "dStart" => return relative(Some(start_of_day(now))),
        "mStart" => return relative(Some(Interval::Month.start(Interval::Month.index(now)))),
        "yStart" => {
            return relative(Utc.with_ymd_and_hms(now.year(), 1, 1, 0, 0, 0).single());
        }
        _ => {}
    }
    if let Some(rest) = s.strip_prefix('-') {
        let unit = rest.chars().last().ok_or_else(bad)?;
        let number: i64 = rest[..rest.len() - unit.len_utf8()].parse().map_err(|_| bad())?;
        if !(0..=100_000).contains(&number) {
            return Err(bad());
        }
        let at = match unit {
            'M' => now.checked_sub_signed(Duration::minutes(number)).map(|t| epoch(t.timestamp().div_euclid(60) * 60)),
            'h' => {
                now.checked_sub_signed(Duration::hours(number)).map(|t| Interval::Hour.start(Interval::Hour.index(t)))
            }
            'd' => now.checked_sub_signed(Duration::days(number)).map(start_of_day),
            'w' => now.checked_sub_signed(Duration::weeks(number)).map(start_of_day),
            'm' => months_back(now, number).map(start_of_day),
            'q' => months_back(now, number * 3).map(start_of_day),
            'y' => months_back(now, number * 12).map(start_of_day),
            _ => None,
        };
        return relative(at);
    }
    if let Ok(date) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let at = date.and_hms_opt(0, 0, 0).map(|d| Utc.from_utc_datetime(&d)).ok_or_else(bad)?;
        return Ok(Parsed { at, date_only: true });
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Parsed { at: t.with_timezone(&Utc), date_only: false });
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(Parsed { at: Utc.from_utc_datetime(&t), date_only: false });
        }
    }
    Err(bad())
}

/// The most intervals one query may cover.
pub const MAX_INTERVALS: i64 = 10_000;

/// Resolves a trends or funnel `dateRange` (default `-7d` to now). Unless `explicitDate`, the
/// start is moved back to the start of its interval and the end forward to the end of its
/// interval, as PostHog does. `earliest` is asked for the first event's time when `date_from`
/// is `all`.
pub fn resolve(
    spec: Option<&DateRangeSpec>,
    interval: Interval,
    now: DateTime<Utc>,
    earliest: impl FnOnce() -> Result<Option<DateTime<Utc>>, InsightError>,
) -> Result<Range, InsightError> {
    let default = DateRangeSpec::default();
    let spec = spec.unwrap_or(&default);
    let explicit = spec.explicit_date.unwrap_or(false);
    let from_text = spec.date_from.as_deref().unwrap_or("-7d");
    let from = if from_text.trim() == "all" {
        earliest()?.unwrap_or(now)
    } else {
        parse(from_text, now, "dateRange.date_from")?.at
    };
    let to = match spec.date_to.as_deref() {
        None => Parsed { at: now, date_only: false },
        Some(text) => parse(text, now, "dateRange.date_to")?,
    };
    let range = if explicit {
        let to = if to.date_only { to.at + Duration::days(1) } else { to.at + Duration::seconds(1) };
        Range { from, to }
    } else {
        let last = if to.date_only { to.at + Duration::days(1) - Duration::seconds(1) } else { to.at };
        Range { from: interval.start(interval.index(from)), to: interval.start(interval.index(last) + 1) }
    };
    if range.to <= range.from {
        return Err(invalid("dateRange.date_to", "the range ends before it starts".into()));
    }
    let count = interval.index(range.to - Duration::seconds(1)) - interval.index(range.from) + 1;
    if count > MAX_INTERVALS {
        return Err(invalid(
            "interval",
            format!("{count} {}s in the date range; at most {MAX_INTERVALS} (use a longer interval)", interval.name()),
        ));
    }
    Ok(range)
}

/// The end anchor of a retention query: `dateRange.date_to` (default now).
pub fn retention_anchor(spec: Option<&DateRangeSpec>, now: DateTime<Utc>) -> Result<DateTime<Utc>, InsightError> {
    match spec.and_then(|s| s.date_to.as_deref()) {
        None => Ok(now),
        Some(text) => {
            let p = parse(text, now, "dateRange.date_to")?;
            Ok(if p.date_only { p.at + Duration::days(1) - Duration::seconds(1) } else { p.at })
        }
    }
}

/// The interval numbers a range covers, first to last.
pub fn indexes(range: Range, interval: Interval) -> std::ops::RangeInclusive<i64> {
    interval.index(range.from)..=interval.index(range.to - Duration::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 16, 30, 0).unwrap()
    }

    #[test]
    fn intervals_round_trip() {
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 16, 30, 0).unwrap();
        assert_eq!(Interval::Week.start(Interval::Week.index(t)), Utc.with_ymd_and_hms(2026, 11, 22, 0, 0, 0).unwrap());
        assert_eq!(
            Interval::Month.start(Interval::Month.index(t)),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(Interval::Hour.label(t), "25-Nov-2026 16:30");
        assert_eq!(Interval::Day.label(t), "25-Nov-2026");
        assert_eq!(Interval::Month.label(t), "Nov 2026");
    }

    #[test]
    fn relative_and_absolute_ranges() {
        let r = resolve(
            Some(&DateRangeSpec { date_from: Some("-7d".into()), ..Default::default() }),
            Interval::Day,
            now(),
            || Ok(None),
        )
        .unwrap();
        assert_eq!(r.from, Utc.with_ymd_and_hms(2026, 11, 18, 0, 0, 0).unwrap());
        assert_eq!(r.to, Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap());
        assert_eq!(indexes(r, Interval::Day).count(), 8);
        let r = resolve(
            Some(&DateRangeSpec { date_from: Some("-24h".into()), ..Default::default() }),
            Interval::Hour,
            now(),
            || Ok(None),
        )
        .unwrap();
        assert_eq!(indexes(r, Interval::Hour).count(), 25);
        let spec = DateRangeSpec {
            date_from: Some("2026-11-01".into()),
            date_to: Some("2026-11-03".into()),
            explicit_date: None,
        };
        let r = resolve(Some(&spec), Interval::Day, now(), || Ok(None)).unwrap();
        assert_eq!(indexes(r, Interval::Day).count(), 3);
        let r = resolve(
            Some(&DateRangeSpec { date_from: Some("-1m".into()), ..Default::default() }),
            Interval::Day,
            now(),
            || Ok(None),
        )
        .unwrap();
        assert_eq!(r.from, Utc.with_ymd_and_hms(2026, 10, 25, 0, 0, 0).unwrap());
        let err = resolve(
            Some(&DateRangeSpec { date_from: Some("yesterday".into()), ..Default::default() }),
            Interval::Day,
            now(),
            || Ok(None),
        )
        .unwrap_err();
        assert!(matches!(err, InsightError::Invalid { ref field, .. } if field == "dateRange.date_from"), "{err}");
    }
}
