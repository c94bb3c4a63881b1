//! Dates, times, time zones and intervals: `now`, `today`, `toDate`, `toDateTime`, `toTimeZone`,
//! `formatDateTime`, `fromUnixTimestamp`, `fromUnixTimestampMilli`, `toUnixTimestamp`,
//! `toUnixTimestampMilli`, `dateAdd`, `dateDiff`, `dateTrunc`, `addDays`, `toIntervalDay`,
//! `toIntervalHour`, `toIntervalMinute`, `toIntervalMonth`, `toMonth`, `toYear`, `toYYYYMM`,
//! `toStartOfDay`, `toStartOfHour`, `toStartOfMonth`, `toStartOfWeek`, `extract`.
//!
//! PostHog computes these with luxon; `luxon` models the parts they use so results agree to the
//! millisecond, across DST changes too. A `DateTime` keeps its zone name as written; functions
//! that build a new one from luxon name the zone as luxon does (`utc` becomes `UTC`). Strings are
//! read in PostHog's date-like grammar (`crate::value::parse_date_like`).
//!
//! Where PostHog's VM returns `NaN` dates or crashes, these are gentler: null in gives null out,
//! a string that is not a date gives null, a wrong type or an unknown zone or unit is an error.

mod format;
mod luxon;

use super::{arg, Ctx, NativeFunction, NativeResult, StdlibError};
use crate::value::{days_from_civil, escape_string, js_string_to_number, parse_date_like, DateTimeValue, Text, Value};
use luxon::{Fields, Ldt, Zone};
use std::rc::Rc;

/// The dates family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "now",
        signature: "now() -> datetime",
        description: "The current time, in UTC, to the millisecond",
        min_args: 0,
        max_args: Some(1),
        func: now,
        examples: &[("typeof(now())", "'datetime'"), ("now().zone", "'UTC'"), ("now() > toDateTime('2024-01-01')", "true")],
    },
    NativeFunction {
        name: "today",
        signature: "today() -> date",
        description: "The current date in UTC",
        min_args: 0,
        max_args: Some(0),
        func: today,
        examples: &[("typeof(today())", "'date'"), ("today() >= toDate('2024-01-01')", "true")],
    },
    NativeFunction {
        name: "toDate",
        signature: "toDate(value: string | number | date | datetime, zone?: string) -> date",
        description: "The calendar date of a date string ('2024-01-31', '2024-01-31 10:00:00+02:00'), unix seconds or a datetime, in UTC or the zone; null for a string that is not a date",
        min_args: 1,
        max_args: Some(2),
        func: to_date,
        examples: &[
            ("toDate('2024-03-05')", "Date(2024, 3, 5)"),
            ("toDate('2024-03-05T23:30:00-02:00')", "Date(2024, 3, 6)"),
            ("toDate(86400 * 365)", "Date(1971, 1, 1)"),
            ("toDate('yesterday')", "null"),
            ("toDate(true)", "error: argument 1 must be"),
        ],
    },
    NativeFunction {
        name: "toDateTime",
        signature: "toDateTime(value: string | number | date | datetime, zone?: string) -> datetime",
        description: "A datetime from a date string, unix seconds, a date or a datetime; strings without an offset are read in the zone (default UTC); null for a string that is not a date",
        min_args: 1,
        max_args: Some(2),
        func: to_datetime,
        examples: &[
            ("toDateTime('2024-01-02 03:04:05')", "DateTime(1704164645.0, 'UTC')"),
            ("toDateTime('2024-01-02T03:04:05.678+01:00')", "DateTime(1704161045.678, 'UTC')"),
            ("toDateTime('2024-07-01 12:00', 'Europe/Paris')", "DateTime(1719828000.0, 'Europe/Paris')"),
            ("toDateTime(1700000000)", "DateTime(1700000000.0, 'UTC')"),
            ("toDateTime('2024-13-01')", "null"),
            ("toDateTime(0, 'Mars/Base')", "error: unknown time zone 'Mars/Base'"),
        ],
    },
    NativeFunction {
        name: "toTimeZone",
        signature: "toTimeZone(value: datetime, zone: string) -> datetime",
        description: "The same instant shown in another time zone",
        min_args: 2,
        max_args: Some(2),
        func: to_time_zone,
        examples: &[
            ("toTimeZone(toDateTime(0), 'Asia/Tokyo')", "DateTime(0.0, 'Asia/Tokyo')"),
            ("toString(toTimeZone(toDateTime(0), 'Asia/Tokyo'))", "'1970-01-01T09:00:00.000+09:00'"),
            ("toTimeZone(null, 'UTC')", "null"),
            ("toTimeZone(toDateTime(0), 'Nowhere')", "error: unknown time zone 'Nowhere'"),
            ("toTimeZone('2024-01-01', 'UTC')", "error: argument 1 must be a datetime"),
        ],
    },
    NativeFunction {
        name: "formatDateTime",
        signature: "formatDateTime(value: datetime, format: string, zone?: string) -> string",
        description: "Formats with ClickHouse-style specifiers: %Y %m %d %H %i %S %f %y %C %e %j %a %b %W %M %p %I %h %l %r %R %T %D %F %u %w %V %Q %z %n %t %% ; in the value's zone or the one given",
        min_args: 2,
        max_args: Some(3),
        func: format_date_time,
        examples: &[
            ("formatDateTime(toDateTime(1704164645.678), '%Y-%m-%d %H:%i:%S.%f')", "'2024-01-02 03:04:05.678'"),
            ("formatDateTime(toDateTime(1704164645), '%a %e %b %Y, %I:%i %p %z', 'America/New_York')", "'Mon 1 Jan 2024, 10:04 PM -0500'"),
            ("formatDateTime(null, '%Y')", "null"),
            ("formatDateTime(toDateTime(0), '')", "error: format must not be empty"),
        ],
    },
    NativeFunction {
        name: "fromUnixTimestamp",
        signature: "fromUnixTimestamp(seconds: number) -> datetime",
        description: "The UTC datetime of unix seconds",
        min_args: 1,
        max_args: Some(1),
        func: from_unix_timestamp,
        examples: &[
            ("fromUnixTimestamp(1700000000.5)", "DateTime(1700000000.5, 'UTC')"),
            ("fromUnixTimestamp('86400')", "DateTime(86400.0, 'UTC')"),
            ("fromUnixTimestamp(null)", "null"),
            ("fromUnixTimestamp('soon')", "error: argument 1 must be a number"),
        ],
    },
    NativeFunction {
        name: "fromUnixTimestampMilli",
        signature: "fromUnixTimestampMilli(milliseconds: number) -> datetime",
        description: "The UTC datetime of unix milliseconds",
        min_args: 1,
        max_args: Some(1),
        func: from_unix_timestamp_milli,
        examples: &[
            ("fromUnixTimestampMilli(1700000000123)", "DateTime(1700000000.123, 'UTC')"),
            ("fromUnixTimestampMilli(null)", "null"),
            ("fromUnixTimestampMilli([])", "error: argument 1 must be a number"),
        ],
    },
    NativeFunction {
        name: "toUnixTimestamp",
        signature: "toUnixTimestamp(value: datetime | date | string, zone?: string) -> number",
        description: "Unix seconds of a datetime, a date (midnight UTC) or a date string (read in the zone when it has no offset)",
        min_args: 1,
        max_args: Some(2),
        func: to_unix_timestamp,
        examples: &[
            ("toUnixTimestamp(toDateTime(1700000000.25))", "1700000000.25"),
            ("toUnixTimestamp(toDate('1970-01-02'))", "86400"),
            ("toUnixTimestamp('1970-01-01 01:00', 'Europe/London')", "0"),
            ("toUnixTimestamp('not a date')", "null"),
            ("toUnixTimestamp(5)", "error: argument 1 must be"),
        ],
    },
    NativeFunction {
        name: "toUnixTimestampMilli",
        signature: "toUnixTimestampMilli(value: datetime | date | string, zone?: string) -> number",
        description: "Unix milliseconds of a datetime, a date or a date string",
        min_args: 1,
        max_args: Some(2),
        func: to_unix_timestamp_milli,
        examples: &[
            ("toUnixTimestampMilli(toDateTime('2024-01-01T00:00:00.5Z'))", "1704067200500"),
            ("toUnixTimestampMilli(null)", "null"),
            ("toUnixTimestampMilli({})", "error: argument 1 must be"),
        ],
    },
    NativeFunction {
        name: "dateAdd",
        signature: "dateAdd(unit: string, amount: number, value: date | datetime) -> date | datetime",
        description: "Adds amount units (second, minute, hour, day, week, month, quarter, year); days and longer keep the wall clock across DST, months clamp to the month's last day",
        min_args: 3,
        max_args: Some(3),
        func: date_add,
        examples: &[
            ("dateAdd('month', 1, toDate('2024-01-31'))", "Date(2024, 2, 29)"),
            ("dateAdd('hour', -2, toDateTime(7200))", "DateTime(0.0, 'UTC')"),
            ("dateAdd('day', '2', toDate('2024-12-31'))", "Date(2025, 1, 2)"),
            ("dateAdd('fortnight', 1, toDate('2024-01-01'))", "error: unsupported unit 'fortnight'"),
            ("dateAdd('day', 'x', toDate('2024-01-01'))", "error: argument 2 must be a number"),
        ],
    },
    NativeFunction {
        name: "dateDiff",
        signature: "dateDiff(unit: string, start: date | datetime | string, end: date | datetime | string) -> integer",
        description: "end - start in units as PostHog counts them: whole elapsed seconds, minutes, hours, days and weeks (longer calendar spans count 30-day months and 365-day years); month, quarter and year boundaries crossed",
        min_args: 3,
        max_args: Some(3),
        func: date_diff,
        examples: &[
            ("dateDiff('day', toDate('2024-01-01'), toDate('2024-03-01'))", "60"),
            ("dateDiff('month', toDateTime('2024-01-31'), toDateTime('2024-02-01'))", "1"),
            ("dateDiff('hour', '2024-01-01 00:00:00', '2024-01-01 05:59:59')", "5"),
            ("dateDiff('day', null, toDate('2024-01-01'))", "null"),
            ("dateDiff('decade', toDate('2024-01-01'), toDate('2024-01-01'))", "error: unsupported unit 'decade'"),
        ],
    },
    NativeFunction {
        name: "dateTrunc",
        signature: "dateTrunc(unit: string, value: datetime | date) -> datetime",
        description: "The start of the year, quarter, month, week (Monday), day, hour, minute or second holding the value, in its zone",
        min_args: 2,
        max_args: Some(3),
        func: date_trunc,
        examples: &[
            ("dateTrunc('month', toDateTime('2024-05-17 10:20:30'))", "DateTime(1714521600.0, 'UTC')"),
            ("dateTrunc('day', toDateTime('2024-05-17 10:20:30', 'Asia/Tokyo'))", "DateTime(1715871600.0, 'Asia/Tokyo')"),
            ("dateTrunc('hour', null)", "null"),
            ("dateTrunc('era', toDateTime(0))", "error: unsupported unit 'era'"),
        ],
    },
    NativeFunction {
        name: "addDays",
        signature: "addDays(value: date | datetime, days: number) -> date | datetime",
        description: "dateAdd('day', days, value)",
        min_args: 2,
        max_args: Some(2),
        func: add_days,
        examples: &[
            ("addDays(toDate('2024-02-28'), 2)", "Date(2024, 3, 1)"),
            ("addDays(toDateTime(0), -1)", "DateTime(-86400.0, 'UTC')"),
            ("addDays(null, 1)", "null"),
            ("addDays('2024-01-01', 1)", "error: argument 1 must be a date or datetime"),
        ],
    },
    NativeFunction {
        name: "toIntervalDay",
        signature: "toIntervalDay(n) -> interval",
        description: "An interval of n days, as PostHog represents it: {'__hogInterval__': true, 'value': n, 'unit': 'day'}",
        min_args: 1,
        max_args: Some(1),
        func: interval_day,
        examples: &[("toIntervalDay(3)", "{'__hogInterval__': true, 'value': 3, 'unit': 'day'}")],
    },
    NativeFunction {
        name: "toIntervalHour",
        signature: "toIntervalHour(n) -> interval",
        description: "An interval of n hours: {'__hogInterval__': true, 'value': n, 'unit': 'hour'}",
        min_args: 1,
        max_args: Some(1),
        func: interval_hour,
        examples: &[("toIntervalHour(1.5).value", "1.5")],
    },
    NativeFunction {
        name: "toIntervalMinute",
        signature: "toIntervalMinute(n) -> interval",
        description: "An interval of n minutes: {'__hogInterval__': true, 'value': n, 'unit': 'minute'}",
        min_args: 1,
        max_args: Some(1),
        func: interval_minute,
        examples: &[("toIntervalMinute(null)", "{'__hogInterval__': true, 'value': null, 'unit': 'minute'}")],
    },
    NativeFunction {
        name: "toIntervalMonth",
        signature: "toIntervalMonth(n) -> interval",
        description: "An interval of n months: {'__hogInterval__': true, 'value': n, 'unit': 'month'}",
        min_args: 1,
        max_args: Some(1),
        func: interval_month,
        examples: &[("toIntervalMonth(2).unit", "'month'")],
    },
    NativeFunction {
        name: "toYear",
        signature: "toYear(value: date | datetime | string) -> integer",
        description: "The year, in the value's zone (strings in UTC)",
        min_args: 1,
        max_args: Some(1),
        func: to_year,
        examples: &[
            ("toYear(toDate('2024-06-01'))", "2024"),
            ("toYear(toDateTime('2024-12-31 23:00:00', 'Europe/Berlin'))", "2024"),
            ("toYear(null)", "null"),
            ("toYear(2024)", "error: argument 1 must be"),
        ],
    },
    NativeFunction {
        name: "toMonth",
        signature: "toMonth(value: date | datetime | string) -> integer",
        description: "The month, 1 to 12, in the value's zone (strings in UTC)",
        min_args: 1,
        max_args: Some(1),
        func: to_month,
        examples: &[
            ("toMonth(toDateTime('2024-01-31 23:30:00+00:00'))", "1"),
            ("toMonth(toTimeZone(toDateTime('2024-01-31 23:30:00'), 'Europe/Paris'))", "2"),
            ("toMonth('2024-07-04')", "7"),
            ("toMonth([])", "error: argument 1 must be"),
        ],
    },
    NativeFunction {
        name: "toYYYYMM",
        signature: "toYYYYMM(value: date | datetime | string) -> integer",
        description: "year * 100 + month",
        min_args: 1,
        max_args: Some(1),
        func: to_yyyymm,
        examples: &[("toYYYYMM(toDate('2024-03-09'))", "202403"), ("toYYYYMM(null)", "null"), ("toYYYYMM(1)", "error: argument 1 must be")],
    },
    NativeFunction {
        name: "toStartOfDay",
        signature: "toStartOfDay(value: datetime | date) -> datetime",
        description: "Midnight of the value's day, in its zone",
        min_args: 1,
        max_args: Some(2),
        func: to_start_of_day,
        examples: &[
            ("toStartOfDay(toDateTime('2024-05-17 10:20:30'))", "DateTime(1715904000.0, 'UTC')"),
            ("toStartOfDay(toDate('2024-05-17'))", "DateTime(1715904000.0, 'UTC')"),
            ("toStartOfDay(null)", "null"),
            ("toStartOfDay('2024-05-17')", "error: argument 1 must be a date or datetime"),
        ],
    },
    NativeFunction {
        name: "toStartOfHour",
        signature: "toStartOfHour(value: datetime | date) -> datetime",
        description: "The start of the value's hour, in its zone",
        min_args: 1,
        max_args: Some(1),
        func: to_start_of_hour,
        examples: &[
            ("toStartOfHour(toDateTime(5000))", "DateTime(3600.0, 'UTC')"),
            ("toStartOfHour(toDateTime(5000, 'Asia/Kolkata'))", "DateTime(1800.0, 'Asia/Kolkata')"),
            ("toStartOfHour(1)", "error: argument 1 must be a date or datetime"),
        ],
    },
    NativeFunction {
        name: "toStartOfMonth",
        signature: "toStartOfMonth(value: datetime | date) -> datetime",
        description: "Midnight of the first day of the value's month, in its zone",
        min_args: 1,
        max_args: Some(1),
        func: to_start_of_month,
        examples: &[
            ("toStartOfMonth(toDate('2024-02-29'))", "DateTime(1706745600.0, 'UTC')"),
            ("toStartOfMonth(null)", "null"),
            ("toStartOfMonth({})", "error: argument 1 must be a date or datetime"),
        ],
    },
    NativeFunction {
        name: "toStartOfWeek",
        signature: "toStartOfWeek(value: datetime | date) -> datetime",
        description: "Midnight of the Monday starting the value's week, in its zone",
        min_args: 1,
        max_args: Some(2),
        func: to_start_of_week,
        examples: &[
            ("toStartOfWeek(toDate('2024-05-19'))", "DateTime(1715558400.0, 'UTC')"),
            ("toStartOfWeek(toDateTime('2024-05-20 08:00:00'))", "DateTime(1716163200.0, 'UTC')"),
            ("toStartOfWeek(true)", "error: argument 1 must be a date or datetime"),
        ],
    },
    NativeFunction {
        name: "extract",
        signature: "extract(part: string, value: date | datetime | string) -> integer",
        description: "The year, month, day, hour, minute or second of the value, in its zone (strings in UTC)",
        min_args: 2,
        max_args: Some(2),
        func: extract,
        examples: &[
            ("extract('day', toDate('2024-05-17'))", "17"),
            ("extract('hour', toDateTime('2024-05-17 10:20:30', 'America/Chicago'))", "10"),
            ("extract('minute', '2024-05-17T10:20:30+05:30')", "50"),
            ("extract('week', toDate('2024-05-17'))", "error: unknown part 'week'"),
        ],
    },
];

// --- Values in and out ---

fn datetime(dt: f64, zone: Text) -> Value {
    Value::DateTime(Rc::new(DateTimeValue { dt, zone }))
}

/// A `Date` of wall-clock fields (null if the year does not fit).
fn date_of(c: &Fields) -> Value {
    match i32::try_from(c.year) {
        Ok(y) => Value::Date(y, c.month as u32, c.day as u32),
        Err(_) => Value::Null,
    }
}

fn interval(value: Value, unit: &str) -> Value {
    Value::dict_from([("__hogInterval__", Value::Bool(true)), ("value", value), ("unit", Value::from(unit))])
}

/// The zone argument `i`: absent for null or `''` (PostHog's `zone || 'UTC'`).
fn zone_arg(args: &[Value], i: usize) -> Result<Option<(Zone, Text)>, StdlibError> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) if s.is_empty() => Ok(None),
        Some(Value::Str(s)) => Ok(Some((Zone::parse(s)?, s.clone()))),
        Some(other) => Err(StdlibError::wrong_type(i, "a time zone name", other)),
    }
}

/// A number argument; numeric strings count (`'2'`), as JavaScript coerces them.
fn number_arg(args: &[Value], i: usize) -> Result<Option<f64>, StdlibError> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(*n)),
        Some(v @ Value::Str(s)) => {
            let n = js_string_to_number(s);
            if n.is_nan() || s.trim().is_empty() {
                Err(StdlibError::wrong_type(i, "a number", v))
            } else {
                Ok(Some(n))
            }
        }
        Some(other) => Err(StdlibError::wrong_type(i, "a number", other)),
    }
}

/// A unit or part name argument (`None` for null).
fn name_arg<'a>(args: &'a [Value], i: usize, what: &'static str) -> Result<Option<&'a str>, StdlibError> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(other) => Err(StdlibError::wrong_type(i, what, other)),
    }
}

/// The luxon view of a `DateTime` in its own zone (`None` for a `NaN` instant).
fn ldt_of(d: &DateTimeValue) -> Result<(Option<Ldt>, Zone), StdlibError> {
    let zone = Zone::parse(&d.zone)?;
    Ok((Ldt::from_seconds(d.dt, &zone), zone))
}

/// Midnight UTC of a `Date`.
fn ldt_of_date(y: i32, m: u32, d: u32) -> Option<Ldt> {
    let days = days_from_civil(i64::from(y), i64::from(m), i64::from(d));
    Ldt::from_ts(days as f64 * 86_400_000.0, &Zone::utc())
}

/// The instant (milliseconds) of a date string, reading one without an offset in `zone`.
fn parse_millis(s: &str, zone: &Zone) -> Option<f64> {
    let p = parse_date_like(s)?;
    let wall = p.wall_millis() as f64;
    match p.offset_minutes {
        Some(offset) => Some(wall - f64::from(offset) * 60_000.0),
        None => Ldt::from_wall(wall, zone, None).map(|l| l.ts),
    }
}

/// What a function that reads calendar fields got: a moment, an unusable (`NaN`) moment, or
/// nothing (null, or a string that is not a date).
enum Moment {
    At(Ldt),
    Invalid,
    Nothing,
}

/// A date, datetime or (with `strings`) date string argument, in its zone (strings in UTC).
fn moment_arg(args: &[Value], i: usize, strings: bool) -> Result<Moment, StdlibError> {
    let expected = if strings { "a date, datetime or date string" } else { "a date or datetime" };
    Ok(match args.get(i) {
        None | Some(Value::Null) => Moment::Nothing,
        Some(Value::DateTime(d)) => match ldt_of(d)?.0 {
            Some(l) => Moment::At(l),
            None => Moment::Invalid,
        },
        Some(Value::Date(y, m, d)) => ldt_of_date(*y, *m, *d).map_or(Moment::Invalid, Moment::At),
        Some(Value::Str(s)) if strings => {
            let utc = Zone::utc();
            match parse_millis(s, &utc).and_then(|ts| Ldt::from_ts(ts, &utc)) {
                Some(l) => Moment::At(l),
                None => Moment::Nothing,
            }
        }
        Some(other) => return Err(StdlibError::wrong_type(i, expected, other)),
    })
}

// --- Current time ---

fn now_millis() -> f64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as f64,
        Err(e) => -(e.duration().as_millis() as f64),
    }
}

fn now(_: &mut Ctx<'_>, _: &[Value]) -> NativeResult {
    // PostHog's VM ignores the zone argument.
    Ok(datetime(now_millis() / 1000.0, luxon::utc_name()))
}

fn today(_: &mut Ctx<'_>, _: &[Value]) -> NativeResult {
    Ok(Ldt::from_ts(now_millis(), &Zone::utc()).map_or(Value::Null, |l| date_of(&l.c)))
}

// --- Conversions ---

fn to_date(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let zone = zone_arg(args, 1)?.map(|z| z.0);
    let in_zone = |ts: f64, own: &Zone| {
        let zone = zone.as_ref().unwrap_or(own);
        Ldt::from_ts(ts, zone).map_or(Value::Null, |l| date_of(&l.c))
    };
    Ok(match arg(args, 0) {
        Value::Null => Value::Null,
        Value::Number(n) => in_zone(n * 1000.0, &Zone::utc()),
        Value::Str(s) => {
            let zone = zone.clone().unwrap_or_else(Zone::utc);
            match parse_millis(&s, &zone) {
                Some(ts) => in_zone(ts, &zone),
                None => Value::Null,
            }
        }
        Value::DateTime(d) => {
            let own = Zone::parse(&d.zone)?;
            in_zone(d.dt * 1000.0, &own)
        }
        date @ Value::Date(..) => date,
        other => return Err(StdlibError::wrong_type(0, "a date string, unix timestamp, date or datetime", &other)),
    })
}

fn to_datetime(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let zone = zone_arg(args, 1)?;
    let (zone, name) = match zone {
        Some((z, n)) => (z, Some(n)),
        None => (Zone::utc(), None),
    };
    let named = |own: Option<&Text>| name.clone().or_else(|| own.cloned()).unwrap_or_else(luxon::utc_name);
    Ok(match arg(args, 0) {
        Value::Null => Value::Null,
        Value::Number(n) => datetime(n, named(None)),
        Value::Str(s) => match parse_millis(&s, &zone) {
            Some(ts) => datetime(ts / 1000.0, named(None)),
            None => Value::Null,
        },
        Value::DateTime(d) => datetime(d.dt, named(Some(&d.zone))),
        Value::Date(y, m, d) => {
            let wall = Fields::date(i64::from(y), i64::from(m), i64::from(d)).wall_millis();
            let dt = Ldt::from_wall(wall, &zone, None).map_or(f64::NAN, |l| l.seconds());
            datetime(dt, named(None))
        }
        other => return Err(StdlibError::wrong_type(0, "a date string, unix timestamp, date or datetime", &other)),
    })
}

fn to_time_zone(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    match (arg(args, 0), arg(args, 1)) {
        (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
        (Value::DateTime(d), Value::Str(zone)) => {
            Zone::parse(&zone)?;
            Ok(datetime(d.dt, zone))
        }
        (Value::DateTime(_), other) => Err(StdlibError::wrong_type(1, "a time zone name", &other)),
        (other, _) => Err(StdlibError::wrong_type(0, "a datetime", &other)),
    }
}

fn format_date_time(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let format = match arg(args, 1) {
        Value::Null => return Ok(Value::Null),
        Value::Str(f) if f.is_empty() => {
            return Err(StdlibError::Invalid("the format must not be empty".into()));
        }
        Value::Str(f) => f,
        other => return Err(StdlibError::wrong_type(1, "a format string", &other)),
    };
    let zone = zone_arg(args, 2)?.map(|z| z.0);
    let (seconds, own) = match arg(args, 0) {
        Value::Null => return Ok(Value::Null),
        Value::DateTime(d) => (d.dt, d.zone.clone()),
        Value::Date(y, m, d) => {
            ((days_from_civil(i64::from(y), i64::from(m), i64::from(d)) * 86_400) as f64, luxon::utc_name())
        }
        other => return Err(StdlibError::wrong_type(0, "a datetime", &other)),
    };
    let zone = match zone {
        Some(z) => z,
        None => Zone::parse(&own)?,
    };
    Ok(Value::from(match Ldt::from_seconds(seconds, &zone) {
        Some(l) => format::format(&l, &format),
        None => "Invalid DateTime".to_string(),
    }))
}

/// `toString` of a datetime: ISO 8601 in its zone, to the millisecond (luxon's `toISO`); `None`
/// for an unusable instant or zone, where PostHog gives null.
pub(crate) fn iso_string(d: &DateTimeValue) -> Option<String> {
    match ldt_of(d) {
        Ok((Some(l), _)) => Some(format::iso(&l)),
        _ => None,
    }
}

fn from_unix_timestamp(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(number_arg(args, 0)?.map_or(Value::Null, |n| datetime(n, luxon::utc_name())))
}

fn from_unix_timestamp_milli(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(number_arg(args, 0)?.map_or(Value::Null, |n| datetime(n / 1000.0, luxon::utc_name())))
}

/// Unix seconds of a datetime, date or date string (`None`: null, or not a date).
fn unix_seconds(args: &[Value]) -> Result<Option<f64>, StdlibError> {
    Ok(match arg(args, 0) {
        Value::Null => None,
        Value::DateTime(d) => Some(d.dt),
        v @ Value::Date(..) => v.temporal_seconds(),
        Value::Str(s) => {
            let zone = zone_arg(args, 1)?.map_or_else(Zone::utc, |z| z.0);
            parse_millis(&s, &zone).map(|ms| ms / 1000.0)
        }
        other => return Err(StdlibError::wrong_type(0, "a datetime, date or date string", &other)),
    })
}

fn to_unix_timestamp(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(unix_seconds(args)?.map_or(Value::Null, Value::Number))
}

fn to_unix_timestamp_milli(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(unix_seconds(args)?.map_or(Value::Null, |s| Value::Number(s * 1000.0)))
}

// --- Arithmetic ---

/// Resolves a `dateAdd` unit to luxon's unit and a multiplier (weeks are 7 days, quarters 3 and
/// years 12 months, as PostHog adds them).
fn add_unit(unit: &str) -> Result<(usize, f64), StdlibError> {
    Ok(match unit {
        "second" => (luxon::SECONDS, 1.0),
        "minute" => (luxon::MINUTES, 1.0),
        "hour" => (luxon::HOURS, 1.0),
        "day" => (luxon::DAYS, 1.0),
        "week" => (luxon::DAYS, 7.0),
        "month" => (luxon::MONTHS, 1.0),
        "quarter" => (luxon::MONTHS, 3.0),
        "year" => (luxon::MONTHS, 12.0),
        other => {
            return Err(StdlibError::Invalid(format!(
                "unsupported unit {}: use second, minute, hour, day, week, month, quarter or year",
                escape_string(other)
            )))
        }
    })
}

/// Adds `amount` of a unit to the date or datetime argument `at`.
fn add(args: &[Value], at: usize, unit: &str, amount_at: usize) -> NativeResult {
    let (unit, factor) = add_unit(unit)?;
    // PostHog leaves the value unchanged for a null amount.
    let amount = number_arg(args, amount_at)?.unwrap_or(0.0) * factor;
    if !amount.is_finite() {
        return Err(StdlibError::Invalid(format!("cannot add {} units", crate::value::format_number(amount))));
    }
    match arg(args, at) {
        Value::Null => Ok(Value::Null),
        Value::DateTime(d) => {
            let (ldt, zone) = ldt_of(&d)?;
            let dt = ldt.and_then(|l| l.plus_unit(unit, amount)).map_or(f64::NAN, |l| l.seconds());
            Ok(datetime(dt, zone.name))
        }
        Value::Date(y, m, d) => {
            Ok(ldt_of_date(y, m, d).and_then(|l| l.plus_unit(unit, amount)).map_or(Value::Null, |l| date_of(&l.c)))
        }
        other => Err(StdlibError::wrong_type(at, "a date or datetime", &other)),
    }
}

fn date_add(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    match name_arg(args, 0, "a unit name")? {
        Some(unit) => add(args, 2, unit, 1),
        None => Ok(Value::Null),
    }
}

fn add_days(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    add(args, 0, "day", 1)
}

fn date_diff(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some(unit) = name_arg(args, 0, "a unit name")? else {
        return Ok(Value::Null);
    };
    if !matches!(unit, "second" | "minute" | "hour" | "day" | "week" | "month" | "quarter" | "year") {
        return Err(StdlibError::Invalid(format!(
            "unsupported unit {}: use second, minute, hour, day, week, month, quarter or year",
            escape_string(unit)
        )));
    }
    let (start, end) = match (moment_arg(args, 1, true)?, moment_arg(args, 2, true)?) {
        (Moment::Nothing, _) | (_, Moment::Nothing) => return Ok(Value::Null),
        (Moment::At(s), Moment::At(e)) => (s, e),
        _ => return Ok(Value::Number(f64::NAN)),
    };
    let (s, e) = (&start.c, &end.c);
    let n = match unit {
        "day" => ((end.ts - start.ts) / 86_400_000.0).floor(),
        "month" => ((e.year - s.year) * 12 + (e.month - s.month)) as f64,
        "quarter" => ((e.year - s.year) * 4 + (e.quarter() - s.quarter())) as f64,
        "year" => (e.year - s.year) as f64,
        _ => match end.diff(&start) {
            Some(dur) => match unit {
                "hour" => luxon::duration_as(&dur, luxon::HOURS).floor(),
                "minute" => luxon::duration_as(&dur, luxon::MINUTES).floor(),
                "second" => luxon::duration_as(&dur, luxon::SECONDS).floor(),
                _ => (luxon::duration_as(&dur, luxon::DAYS) / 7.0).floor(),
            },
            None => f64::NAN,
        },
    };
    Ok(Value::Number(n))
}

/// Truncation units of `dateTrunc`.
#[derive(Clone, Copy)]
enum Trunc {
    Year,
    Quarter,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
}

/// The start of the `unit` holding the date or datetime argument `at`, as a datetime in its zone.
fn truncate(args: &[Value], at: usize, unit: Trunc) -> NativeResult {
    let (ldt, zone) = match arg(args, at) {
        Value::Null => return Ok(Value::Null),
        Value::DateTime(d) => ldt_of(&d)?,
        Value::Date(y, m, d) => (ldt_of_date(y, m, d), Zone::utc()),
        other => return Err(StdlibError::wrong_type(at, "a date or datetime", &other)),
    };
    let start = ldt.and_then(|l| {
        let c = l.c;
        let wall = |month, day, hour, minute, second| {
            Fields { year: c.year, month, day, hour, minute, second, millisecond: 0 }.wall_millis()
        };
        let local = match unit {
            Trunc::Year => wall(1, 1, 0, 0, 0),
            Trunc::Quarter => wall((c.quarter() - 1) * 3 + 1, 1, 0, 0, 0),
            Trunc::Month => wall(c.month, 1, 0, 0, 0),
            // luxon's `minus({days: weekday - 1}).startOf('day')`.
            Trunc::Week => return l.plus_unit(luxon::DAYS, -((c.weekday() - 1) as f64) + 0.0)?.start_of_day(),
            Trunc::Day => wall(c.month, c.day, 0, 0, 0),
            Trunc::Hour => wall(c.month, c.day, c.hour, 0, 0),
            Trunc::Minute => wall(c.month, c.day, c.hour, c.minute, 0),
            Trunc::Second => wall(c.month, c.day, c.hour, c.minute, c.second),
        };
        Ldt::from_wall(local, &l.zone, Some(l.o))
    });
    Ok(datetime(start.map_or(f64::NAN, |l| l.seconds()), zone.name))
}

fn date_trunc(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some(unit) = name_arg(args, 0, "a unit name")? else {
        return Ok(Value::Null);
    };
    let unit = match unit {
        "year" => Trunc::Year,
        "quarter" => Trunc::Quarter,
        "month" => Trunc::Month,
        "week" => Trunc::Week,
        "day" => Trunc::Day,
        "hour" => Trunc::Hour,
        "minute" => Trunc::Minute,
        "second" => Trunc::Second,
        other => {
            return Err(StdlibError::Invalid(format!(
                "unsupported unit {}: use year, quarter, month, week, day, hour, minute or second",
                escape_string(other)
            )))
        }
    };
    truncate(args, 1, unit)
}

fn to_start_of_day(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    truncate(args, 0, Trunc::Day)
}

fn to_start_of_hour(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    truncate(args, 0, Trunc::Hour)
}

fn to_start_of_month(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    truncate(args, 0, Trunc::Month)
}

fn to_start_of_week(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    truncate(args, 0, Trunc::Week)
}

// --- Intervals ---

fn interval_day(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(interval(arg(args, 0), "day"))
}

fn interval_hour(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(interval(arg(args, 0), "hour"))
}

fn interval_minute(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(interval(arg(args, 0), "minute"))
}

fn interval_month(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(interval(arg(args, 0), "month"))
}

// --- Parts ---

/// Calendar fields of the argument `at` by `pick` (null for null or a non-date string, `NaN`
/// for an unusable instant).
fn part(args: &[Value], at: usize, pick: impl Fn(&Fields) -> i64) -> NativeResult {
    Ok(match moment_arg(args, at, true)? {
        Moment::At(l) => Value::Number(pick(&l.c) as f64),
        Moment::Invalid => Value::Number(f64::NAN),
        Moment::Nothing => Value::Null,
    })
}

fn to_year(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    part(args, 0, |c| c.year)
}

fn to_month(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    part(args, 0, |c| c.month)
}

fn to_yyyymm(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    part(args, 0, |c| c.year * 100 + c.month)
}

fn extract(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some(name) = name_arg(args, 0, "a part name")? else {
        return Ok(Value::Null);
    };
    let pick: fn(&Fields) -> i64 = match name {
        "year" => |c| c.year,
        "month" => |c| c.month,
        "day" => |c| c.day,
        "hour" => |c| c.hour,
        "minute" => |c| c.minute,
        "second" => |c| c.second,
        other => {
            return Err(StdlibError::Invalid(format!(
                "unknown part {}: use year, month, day, hour, minute or second",
                escape_string(other)
            )))
        }
    };
    part(args, 1, pick)
}
