//! The parts of luxon's `DateTime` and `Duration` that PostHog's date functions rely on, modelled
//! closely enough to give the same numbers: time zones (IANA names through chrono-tz, luxon's
//! `UTC±H[:MM]` fixed offsets), calendar fields, adding durations across DST changes
//! (`adjustTime`/`fixOffset`), and `diff` with its casual unit conversions.
//!
//! Instants are JavaScript time values: `f64` milliseconds, valid within ±8.64e15.

use super::StdlibError;
use crate::value::{days_from_civil, escape_string, Text};
use chrono::{Offset, TimeZone};
use chrono_tz::Tz;

/// Largest magnitude of a JavaScript time value, in milliseconds.
const MAX_TIME_MS: f64 = 8.64e15;
const MS_PER_DAY: f64 = 86_400_000.0;

thread_local! {
    static UTC_NAME: Text = Text::from("UTC");
}

/// The shared zone name `UTC`.
pub(super) fn utc_name() -> Text {
    UTC_NAME.with(Text::clone)
}

#[derive(Debug, Clone, Copy)]
enum ZoneKind {
    /// A fixed offset in minutes (luxon's `FixedOffsetZone`).
    Fixed(f64),
    /// An IANA zone (luxon's `IANAZone`).
    Iana(Tz),
}

/// A time zone as luxon resolves a zone name.
#[derive(Debug, Clone)]
pub(super) struct Zone {
    kind: ZoneKind,
    /// luxon's `zoneName`: `UTC`, `UTC+3`, or an IANA name as it was written.
    pub name: Text,
}

impl Zone {
    /// UTC.
    pub fn utc() -> Zone {
        Zone { kind: ZoneKind::Fixed(0.0), name: utc_name() }
    }

    /// Resolves a zone name like luxon: `utc`/`gmt` (any case), `UTC±H[:MM]`, `local`/`system`
    /// (the server's zone, UTC here), or an IANA name (any case).
    pub fn parse(name: &Text) -> Result<Zone, StdlibError> {
        if &**name == "UTC" {
            return Ok(Zone::utc());
        }
        let is = |word: &str| name.eq_ignore_ascii_case(word);
        if is("utc") || is("gmt") {
            return Ok(Zone::utc());
        }
        if is("local") || is("system") || is("default") {
            return Ok(Zone { kind: ZoneKind::Iana(Tz::UTC), name: utc_name() });
        }
        if let Some(minutes) = utc_specifier(name) {
            return Ok(Zone::fixed(minutes));
        }
        let tz = name
            .parse::<Tz>()
            .ok()
            .or_else(|| chrono_tz::TZ_VARIANTS.iter().copied().find(|tz| tz.name().eq_ignore_ascii_case(name)));
        match tz {
            Some(tz) => Ok(Zone { kind: ZoneKind::Iana(tz), name: name.clone() }),
            None => Err(StdlibError::Invalid(format!(
                "unknown time zone {}: use an IANA name like 'Europe/Paris', 'UTC' or 'UTC+3'",
                escape_string(name)
            ))),
        }
    }

    fn fixed(minutes: f64) -> Zone {
        if minutes == 0.0 {
            return Zone::utc();
        }
        Zone {
            kind: ZoneKind::Fixed(minutes),
            name: Text::from(format!("UTC{}", format_offset(minutes, OffsetFormat::Narrow))),
        }
    }

    /// Whether the offset never changes (luxon's `isOffsetFixed`).
    pub fn is_fixed(&self) -> bool {
        matches!(self.kind, ZoneKind::Fixed(_))
    }

    /// The IANA zone, if this is one.
    pub fn iana(&self) -> Option<Tz> {
        match self.kind {
            ZoneKind::Iana(tz) => Some(tz),
            ZoneKind::Fixed(_) => None,
        }
    }

    /// Minutes east of UTC at an instant; `NaN` outside the range of time values.
    pub fn offset_at(&self, ts: f64) -> f64 {
        match self.kind {
            ZoneKind::Fixed(minutes) => minutes,
            ZoneKind::Iana(tz) => {
                if ts.is_nan() || ts.abs() > MAX_TIME_MS {
                    return f64::NAN;
                }
                // luxon reads the zone's wall clock to the second.
                let mut seconds = (ts.trunc() as i64).div_euclid(1000);
                if seconds >= TABLE_END_SECONDS {
                    seconds += equivalent_year_shift(seconds);
                }
                match chrono::DateTime::from_timestamp(seconds, 0) {
                    Some(utc) => {
                        f64::from(tz.offset_from_utc_datetime(&utc.naive_utc()).fix().local_minus_utc()) / 60.0
                    }
                    None => f64::NAN,
                }
            }
        }
    }
}

/// 2100-01-01: chrono-tz lists transitions until 2099; ICU keeps applying a zone's last rules.
const TABLE_END_SECONDS: i64 = 4_102_444_800;

/// Seconds to move an instant from 2100 on into 2072-2099, to a year whose calendar is the same
/// (leap year, weekday of January 1st), so that its zone's recurring rules give the same offset.
fn equivalent_year_shift(seconds: i64) -> i64 {
    let days = seconds.div_euclid(86_400);
    let (year, _, _) = civil_from_days(days);
    let jan1 = days_from_civil(year, 1, 1);
    let target = (2072..2100)
        .find(|y| is_leap(*y) == is_leap(year) && iso_weekday(days_from_civil(*y, 1, 1)) == iso_weekday(jan1))
        .unwrap_or(2072);
    (days_from_civil(target, 1, 1) - jan1) * 86_400
}

/// luxon's `FixedOffsetZone.parseSpecifier`: `UTC+3`, `utc-05:30`.
fn utc_specifier(name: &str) -> Option<f64> {
    let rest = name.get(3..).filter(|_| name.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("utc")))?;
    let sign = match rest.as_bytes().first()? {
        b'+' => 1.0,
        b'-' => -1.0,
        _ => return None,
    };
    let rest = &rest[1..];
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) => (h, Some(m)),
        None => (rest, None),
    };
    let all_digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    if hours.is_empty() || hours.len() > 2 || !all_digits(hours) {
        return None;
    }
    let minutes = match minutes {
        Some(m) if m.len() == 2 && all_digits(m) => m.parse::<f64>().ok()?,
        Some(_) => return None,
        None => 0.0,
    };
    let hours: f64 = hours.parse().ok()?;
    Some(sign * (hours * 60.0 + minutes))
}

/// luxon's offset formats.
#[derive(Clone, Copy)]
pub(super) enum OffsetFormat {
    /// `+5`, `+5:30`
    Narrow,
    /// `+05:00`
    Short,
    /// `+0500`
    Techie,
}

/// luxon's `formatOffset`.
pub(super) fn format_offset(minutes: f64, format: OffsetFormat) -> String {
    let hours = (minutes / 60.0).abs().trunc();
    let mins = (minutes % 60.0).abs().trunc();
    let sign = if minutes >= 0.0 { '+' } else { '-' };
    match format {
        OffsetFormat::Narrow if mins > 0.0 => format!("{sign}{hours}:{mins}"),
        OffsetFormat::Narrow => format!("{sign}{hours}"),
        OffsetFormat::Short => format!("{sign}{}:{}", pad(hours as i64, 2), pad(mins as i64, 2)),
        OffsetFormat::Techie => format!("{sign}{}{}", pad(hours as i64, 2), pad(mins as i64, 2)),
    }
}

/// luxon's `padStart` of an integer: zero-padded digits, sign in front.
pub(super) fn pad(n: i64, width: usize) -> String {
    if n < 0 {
        format!("-{:0width$}", n.unsigned_abs())
    } else {
        format!("{n:0width$}")
    }
}

/// JavaScript's `Math.min` of two numbers (`NaN` wins).
fn js_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// Days in a month; months outside 1 to 12 roll into neighbouring years (luxon's `daysInMonth`).
fn days_in_month(year: f64, month: f64) -> f64 {
    let m = (month - 1.0).rem_euclid(12.0) + 1.0;
    let y = year + (month - m) / 12.0;
    match m as i64 {
        2 if y.is_finite() && y.abs() < 1e15 && is_leap(y as i64) => 29.0,
        2 => 28.0,
        4 | 6 | 9 | 11 => 30.0,
        _ => 31.0,
    }
}

/// JavaScript's `Date.UTC` of calendar fields that may overflow (month 1-based); `NaN` out of range.
fn make_time(year: f64, month: f64, day: f64, hour: f64, minute: f64, second: f64, ms: f64) -> f64 {
    let all = [year, month, day, hour, minute, second, ms];
    if all.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    let m0 = month.trunc() - 1.0;
    let y = year.trunc() + (m0 / 12.0).floor();
    if y.abs() > 400_000.0 {
        return f64::NAN;
    }
    let mn = m0.rem_euclid(12.0);
    let days = days_from_civil(y as i64, mn as i64 + 1, 1) as f64 + day.trunc() - 1.0;
    let time = hour.trunc() * 3_600_000.0 + minute.trunc() * 60_000.0 + second.trunc() * 1000.0 + ms.trunc();
    let t = days * MS_PER_DAY + time;
    if t.abs() > MAX_TIME_MS {
        f64::NAN
    } else {
        t.trunc() + 0.0
    }
}

/// Calendar fields of a wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fields {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    pub millisecond: i64,
}

impl Fields {
    /// The fields of whole milliseconds since the epoch.
    fn from_millis(ms: i64) -> Fields {
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        Fields {
            year,
            month,
            day,
            hour: rem / 3_600_000,
            minute: rem / 60_000 % 60,
            second: rem / 1000 % 60,
            millisecond: rem % 1000,
        }
    }

    /// Midnight of a date.
    pub fn date(year: i64, month: i64, day: i64) -> Fields {
        Fields { year, month, day, hour: 0, minute: 0, second: 0, millisecond: 0 }
    }

    /// The wall-clock time as milliseconds since the epoch read as UTC (`NaN` out of range).
    pub fn wall_millis(&self) -> f64 {
        make_time(
            self.year as f64,
            self.month as f64,
            self.day as f64,
            self.hour as f64,
            self.minute as f64,
            self.second as f64,
            self.millisecond as f64,
        )
    }

    fn epoch_days(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day)
    }

    /// ISO weekday: Monday 1 to Sunday 7.
    pub fn weekday(&self) -> i64 {
        iso_weekday(self.epoch_days())
    }

    /// Day of the year, from 1.
    pub fn ordinal(&self) -> i64 {
        self.epoch_days() - days_from_civil(self.year, 1, 1) + 1
    }

    /// Quarter, 1 to 4.
    pub fn quarter(&self) -> i64 {
        (self.month - 1) / 3 + 1
    }

    /// `(week year, week number)` for weeks starting on `start_of_week` (ISO weekday) whose first
    /// week holds at least `min_days` days of January (luxon's `gregorianToWeek`).
    pub fn week(&self, min_days: i64, start_of_week: i64) -> (i64, i64) {
        let weekday = local_weekday(self.weekday(), start_of_week);
        let number = (self.ordinal() - weekday + 14 - min_days).div_euclid(7);
        if number < 1 {
            (self.year - 1, weeks_in_week_year(self.year - 1, min_days, start_of_week))
        } else if number > weeks_in_week_year(self.year, min_days, start_of_week) {
            (self.year + 1, 1)
        } else {
            (self.year, number)
        }
    }
}

fn iso_weekday(epoch_days: i64) -> i64 {
    // 1970-01-01 was a Thursday.
    (epoch_days + 3).rem_euclid(7) + 1
}

fn local_weekday(iso: i64, start_of_week: i64) -> i64 {
    (iso - start_of_week + 7) % 7 + 1
}

fn weeks_in_week_year(year: i64, min_days: i64, start_of_week: i64) -> i64 {
    let first_week_offset = |y: i64| {
        let weekday = local_weekday(iso_weekday(days_from_civil(y, 1, min_days)), start_of_week);
        -weekday + min_days - 1
    };
    let days = if is_leap(year) { 366 } else { 365 };
    (days - first_week_offset(year) + first_week_offset(year + 1)) / 7
}

/// `(year, month, day)` of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// luxon's `fixOffset`: the instant of a wall-clock time, starting from a guessed offset. A time
/// in a DST gap moves forward by the gap; an ambiguous one keeps the guessed offset if it fits.
fn fix_offset(local: f64, guess: f64, zone: &Zone) -> f64 {
    let mut utc = local - guess * 60.0 * 1000.0;
    let o2 = zone.offset_at(utc);
    if guess == o2 {
        return utc;
    }
    utc -= (o2 - guess) * 60.0 * 1000.0;
    let o3 = zone.offset_at(utc);
    if o2 == o3 {
        return utc;
    }
    local - js_min(o2, o3) * 60.0 * 1000.0
}

/// Duration units in luxon's order.
pub(super) const YEARS: usize = 0;
pub(super) const QUARTERS: usize = 1;
pub(super) const MONTHS: usize = 2;
pub(super) const WEEKS: usize = 3;
pub(super) const DAYS: usize = 4;
pub(super) const HOURS: usize = 5;
pub(super) const MINUTES: usize = 6;
pub(super) const SECONDS: usize = 7;
pub(super) const MILLISECONDS: usize = 8;

/// A duration's values by unit (`None`: the unit is absent).
pub(super) type Dur = [Option<f64>; 9];

/// luxon's casual conversion matrix: how many of unit `to` make one of unit `from` (`from < to`).
fn matrix(from: usize, to: usize) -> f64 {
    const MS: [f64; 9] = [
        365.0 * 86_400_000.0,
        91.0 * 86_400_000.0,
        30.0 * 86_400_000.0,
        7.0 * 86_400_000.0,
        86_400_000.0,
        3_600_000.0,
        60_000.0,
        1000.0,
        1.0,
    ];
    match (from, to) {
        (YEARS, QUARTERS) => 4.0,
        (YEARS, MONTHS) => 12.0,
        (YEARS, WEEKS) => 52.0,
        (QUARTERS, MONTHS) => 3.0,
        (QUARTERS, WEEKS) => 13.0,
        (MONTHS, WEEKS) => 4.0,
        // From days down, and from any unit to days or smaller, the ratio of their milliseconds.
        _ => MS[from] / MS[to],
    }
}

/// luxon's `Duration.shiftTo(unit).get(unit)` (what `as(unit)` returns).
pub(super) fn duration_as(vals: &Dur, target: usize) -> f64 {
    let mut acc: Dur = [None; 9];
    let mut built = 0.0;
    for k in 0..9 {
        if k == target {
            let mut own = 0.0;
            for (ak, slot) in acc.iter_mut().enumerate().take(k) {
                if let Some(a) = *slot {
                    own += matrix(ak, k) * a;
                    *slot = Some(0.0);
                }
            }
            if let Some(v) = vals[k] {
                own += v;
            }
            let i = own.trunc();
            built = i;
            acc[k] = Some((own * 1000.0 - i * 1000.0) / 1000.0);
        } else if let Some(v) = vals[k] {
            acc[k] = Some(v);
        }
    }
    for (key, a) in acc.iter().enumerate() {
        if let Some(a) = *a {
            if a != 0.0 {
                built += if key == target { a } else { a / matrix(target, key) };
            }
        }
    }
    built
}

/// `Duration.fromMillis(ms).shiftTo('hours', 'minutes', 'seconds')` as `(hours, minutes, seconds)`.
fn hours_minutes_seconds(ms: f64) -> (f64, f64, f64) {
    let (mut h, mut m, mut s) = (0.0, 0.0, 0.0);
    if ms != 0.0 {
        s += ms / 1000.0;
    }
    // normalizeValues: roll seconds up into minutes and minutes into hours, then push fractions down.
    let factor = if s < 0.0 { -1.0 } else { 1.0 };
    let roll = (s * factor / 60.0).floor();
    m += roll * factor;
    s -= roll * 60.0 * factor;
    let roll = (m * factor / 60.0).floor();
    h += roll * factor;
    m -= roll * 60.0 * factor;
    let fraction = h % 1.0;
    h -= fraction;
    m += fraction * 60.0;
    let fraction = m % 1.0;
    m -= fraction;
    s += fraction * 60.0;
    (h, m, s)
}

/// A valid luxon `DateTime`: an instant, its zone, the zone's offset then and the wall clock.
#[derive(Debug, Clone)]
pub(super) struct Ldt {
    /// Milliseconds since the epoch (may be fractional).
    pub ts: f64,
    /// Offset in minutes.
    pub o: f64,
    /// Wall-clock fields.
    pub c: Fields,
    /// The zone.
    pub zone: Zone,
}

impl Ldt {
    /// The instant `ts` in `zone`; `None` where luxon's DateTime would be invalid or unusable.
    pub fn from_ts(ts: f64, zone: &Zone) -> Option<Ldt> {
        if ts.is_nan() {
            return None;
        }
        let o = zone.offset_at(ts);
        let local = ts + o * 60.0 * 1000.0;
        if local.is_nan() || local.abs() > MAX_TIME_MS {
            return None;
        }
        Some(Ldt { ts, o, c: Fields::from_millis(local.trunc() as i64), zone: zone.clone() })
    }

    /// `DateTime.fromSeconds(seconds, {zone})`.
    pub fn from_seconds(seconds: f64, zone: &Zone) -> Option<Ldt> {
        Ldt::from_ts(seconds * 1000.0, zone)
    }

    /// The wall-clock time `local` (milliseconds read as UTC) in `zone`. With a guessed offset this
    /// is luxon's `fixOffset`; without one, an ambiguous time resolves to its earlier instant.
    pub fn from_wall(local: f64, zone: &Zone, guess: Option<f64>) -> Option<Ldt> {
        if local.is_nan() {
            return None;
        }
        let ts = match guess {
            Some(g) => fix_offset(local, g, zone),
            None => {
                let before = fix_offset(local, zone.offset_at(local - 2.0 * MS_PER_DAY), zone);
                let after = fix_offset(local, zone.offset_at(local + 2.0 * MS_PER_DAY), zone);
                js_min(before, after)
            }
        };
        Ldt::from_ts(ts, zone)
    }

    /// Seconds since the epoch (`toSeconds`).
    pub fn seconds(&self) -> f64 {
        self.ts / 1000.0
    }

    /// luxon's `plus` (through `adjustTime`): calendar units move the wall clock and keep the
    /// offset when they can; fractions of them and clock units add exact milliseconds.
    pub fn plus(&self, dur: &Dur) -> Option<Ldt> {
        let v = |u: usize| dur[u].unwrap_or(0.0);
        let c = &self.c;
        let year = c.year as f64 + v(YEARS).trunc();
        let month = c.month as f64 + v(MONTHS).trunc() + v(QUARTERS).trunc() * 3.0;
        let day = js_min(c.day as f64, days_in_month(year, month)) + v(DAYS).trunc() + v(WEEKS).trunc() * 7.0;
        let fractions: Dur = [
            Some(v(YEARS) - v(YEARS).trunc()),
            Some(v(QUARTERS) - v(QUARTERS).trunc()),
            Some(v(MONTHS) - v(MONTHS).trunc()),
            Some(v(WEEKS) - v(WEEKS).trunc()),
            Some(v(DAYS) - v(DAYS).trunc()),
            Some(v(HOURS)),
            Some(v(MINUTES)),
            Some(v(SECONDS)),
            Some(v(MILLISECONDS)),
        ];
        let millis = duration_as(&fractions, MILLISECONDS);
        let local = make_time(year, month, day, c.hour as f64, c.minute as f64, c.second as f64, c.millisecond as f64);
        let mut ts = fix_offset(local, self.o, &self.zone);
        if millis != 0.0 {
            ts += millis;
        }
        Ldt::from_ts(ts, &self.zone)
    }

    /// `plus` of a single unit.
    pub fn plus_unit(&self, unit: usize, amount: f64) -> Option<Ldt> {
        let mut dur: Dur = [None; 9];
        dur[unit] = Some(amount);
        self.plus(&dur)
    }

    /// The same day at midnight (luxon's `startOf('day')`, keeping the current offset if it fits).
    pub fn start_of_day(&self) -> Option<Ldt> {
        let local = Fields::date(self.c.year, self.c.month, self.c.day).wall_millis();
        Ldt::from_wall(local, &self.zone, Some(self.o))
    }

    /// Midnight UTC of a wall-clock day, in milliseconds (luxon's `dayDiff` helper).
    fn utc_day_start(&self) -> f64 {
        self.c.epoch_days() as f64 * MS_PER_DAY
    }

    /// `self.diff(other, ['years', 'months', 'weeks', 'days', 'hours', 'minutes', 'seconds'])`:
    /// calendar units counted from the earlier side, the rest in clock time.
    pub fn diff(&self, other: &Ldt) -> Option<Dur> {
        let other_is_later = other.ts > self.ts;
        let (earlier, later) = if other_is_later { (self, other) } else { (other, self) };
        let mut results: Dur = [None; 9];
        let mut cursor = earlier.clone();
        for unit in [YEARS, MONTHS, WEEKS, DAYS] {
            let a = &cursor.c;
            let b = &later.c;
            let n = match unit {
                YEARS => (b.year - a.year) as f64,
                MONTHS => (b.month - a.month + (b.year - a.year) * 12) as f64,
                WEEKS => {
                    let days = day_diff(&cursor, later);
                    (days - days % 7.0) / 7.0
                }
                _ => day_diff(&cursor, later),
            };
            results[unit] = Some(n);
            let high_water = earlier.plus(&results)?;
            if high_water.ts > later.ts {
                results[unit] = Some(n - 1.0);
                cursor = earlier.plus(&results)?;
                if cursor.ts > later.ts {
                    results[unit] = Some(n - 2.0);
                    cursor = earlier.plus(&results)?;
                }
            } else {
                cursor = high_water;
            }
        }
        let (h, m, s) = hours_minutes_seconds(later.ts - cursor.ts);
        let mut out: Dur = [
            results[YEARS].map(|v| v + 0.0),
            None,
            results[MONTHS].map(|v| v + 0.0),
            results[WEEKS].map(|v| v + 0.0),
            results[DAYS].map(|v| v + 0.0),
            Some(0.0 + h),
            Some(0.0 + m),
            Some(0.0 + s),
            None,
        ];
        if !other_is_later {
            return Some(out);
        }
        for v in out.iter_mut().flatten() {
            *v = if *v == 0.0 { 0.0 } else { -*v };
        }
        Some(out)
    }
}

/// Whole calendar days between two wall-clock dates.
fn day_diff(earlier: &Ldt, later: &Ldt) -> f64 {
    let ms = later.utc_day_start() - earlier.utc_day_start();
    let mut vals: Dur = [None; 9];
    vals[MILLISECONDS] = Some(ms);
    duration_as(&vals, DAYS).floor()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -719_468, -1, 0, 1, 59, 365, 10_957, 19_723, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    }

    #[test]
    fn zones_resolve_like_luxon() {
        let z = |s: &str| Zone::parse(&Text::from(s)).map(|z| (z.name.to_string(), z.is_fixed()));
        assert_eq!(z("utc").unwrap(), ("UTC".into(), true));
        assert_eq!(z("GMT").unwrap(), ("UTC".into(), true));
        assert_eq!(z("utc-5:30").unwrap(), ("UTC-5:30".into(), true));
        assert_eq!(z("UTC+0").unwrap(), ("UTC".into(), true));
        assert_eq!(z("europe/london").unwrap(), ("europe/london".into(), false));
        assert!(z("Foo/Bar").is_err());
        assert!(z("").is_err());
        assert!(z("UTC+123").is_err());
    }

    #[test]
    fn dst_gap_moves_forward() {
        let ny = Zone::parse(&Text::from("America/New_York")).unwrap();
        // 2024-03-10 02:30 does not exist in New York; luxon gives 03:30 EDT.
        let local =
            Fields { year: 2024, month: 3, day: 10, hour: 2, minute: 30, second: 0, millisecond: 0 }.wall_millis();
        let l = Ldt::from_wall(local, &ny, None).unwrap();
        assert_eq!((l.c.hour, l.c.minute, l.o), (3, 30, -240.0));
    }
}
