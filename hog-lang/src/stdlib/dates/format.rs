//! `formatDateTime` and the ISO text of `toString`, as PostHog renders them: ClickHouse-style
//! `%` specifiers are translated into a luxon format string (text between them quoted) and that
//! string is formatted by luxon's rules, quirks included: adjacent specifiers that spell a longer
//! luxon token (`%m%c` is `MMMM`, the month's name) format as that token, and an apostrophe in
//! the text ends its quoting.

use super::luxon::{format_offset, pad, Fields, Ldt, OffsetFormat};
use crate::value::format_number;

/// ClickHouse specifier → luxon tokens (PostHog's `tokenTranslations`).
fn translate(c: char) -> Option<&'static str> {
    Some(match c {
        'a' => "EEE",
        'b' => "MMM",
        'c' => "MM",
        'C' => "yy",
        'd' => "dd",
        'D' => "MM/dd/yy",
        'e' => "d",
        'f' => "SSS",
        'F' => "yyyy-MM-dd",
        'g' => "yy",
        'G' => "yyyy",
        'h' => "hh",
        'H' => "HH",
        'i' => "mm",
        'I' => "hh",
        'j' => "ooo",
        'k' => "HH",
        'l' => "hh",
        'm' => "MM",
        'M' => "MMMM",
        'n' => "\n",
        'p' => "a",
        'Q' => "q",
        'r' => "hh:mm a",
        'R' => "HH:mm",
        's' => "ss",
        'S' => "ss",
        't' => "\t",
        'T' => "HH:mm:ss",
        'u' => "E",
        'V' => "WW",
        'w' => "E",
        'W' => "EEEE",
        'y' => "yy",
        'Y' => "yyyy",
        'z' => "ZZZ",
        '%' => "%",
        _ => return None,
    })
}

/// The luxon format string PostHog builds from a ClickHouse-style format.
fn luxon_format(format: &str) -> String {
    let mut out = String::with_capacity(format.len() * 2);
    let mut text = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        if !text.is_empty() {
            out.push('\'');
            out.push_str(&text);
            out.push('\'');
            text.clear();
        }
        match chars.next() {
            Some(spec) => {
                if let Some(tokens) = translate(spec) {
                    out.push_str(tokens);
                } else if u32::from(spec) > 0xFFFF {
                    // PostHog skips one UTF-16 unit: the other half prints as U+FFFD.
                    text.push('\u{FFFD}');
                }
            }
            None => break,
        }
    }
    if !text.is_empty() {
        out.push('\'');
        out.push_str(&text);
        out.push('\'');
    }
    out
}

/// luxon's `Formatter.parseFormat`: `(literal, text)` pieces; runs of one letter are tokens.
fn parse_format(fmt: &str) -> Vec<(bool, String)> {
    let mut splits = Vec::new();
    let mut current: Option<char> = None;
    let mut full = String::new();
    let mut bracketed = false;
    for c in fmt.chars() {
        if c == '\'' {
            if !full.is_empty() || bracketed {
                let val = if full.is_empty() { "'".to_string() } else { std::mem::take(&mut full) };
                splits.push((bracketed, val));
            }
            current = None;
            full.clear();
            bracketed = !bracketed;
        } else if bracketed || current == Some(c) {
            full.push(c);
        } else {
            if !full.is_empty() {
                splits.push((false, std::mem::take(&mut full)));
            }
            full.push(c);
            current = Some(c);
        }
    }
    if !full.is_empty() {
        splits.push((bracketed, full));
    }
    splits
}

/// `formatDateTime(dt, format)` once the zone is resolved.
pub(super) fn format(dt: &Ldt, format: &str) -> String {
    let mut out = String::new();
    for (literal, piece) in parse_format(&luxon_format(format)) {
        if literal {
            out.push_str(&piece);
        } else {
            token(dt, &piece, &mut out);
        }
    }
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

fn short(name: &str) -> &str {
    name.get(..3).unwrap_or(name)
}

fn narrow(name: &str) -> &str {
    name.get(..1).unwrap_or(name)
}

/// The last two characters of a number's digits, as luxon's `yy` reads them (`-5` stays `-05`).
fn two_digits(n: i64) -> String {
    let s = n.to_string();
    let tail = &s[s.len().saturating_sub(2)..];
    pad(tail.parse().unwrap_or(0), 2)
}

/// One luxon token (unknown runs print as themselves).
fn token(dt: &Ldt, tok: &str, out: &mut String) {
    let c = &dt.c;
    let hour12 = if c.hour % 12 == 0 { 12 } else { c.hour % 12 };
    let month = MONTHS[(c.month - 1).clamp(0, 11) as usize];
    let weekday = WEEKDAYS[(c.weekday() - 1).clamp(0, 6) as usize];
    let s = match tok {
        "S" => c.millisecond.to_string(),
        "u" | "SSS" => pad(c.millisecond, 3),
        "s" => c.second.to_string(),
        "ss" => pad(c.second, 2),
        "uu" => pad(c.millisecond / 10, 2),
        "uuu" => (c.millisecond / 100).to_string(),
        "m" => c.minute.to_string(),
        "mm" => pad(c.minute, 2),
        "h" => hour12.to_string(),
        "hh" => pad(hour12, 2),
        "H" => c.hour.to_string(),
        "HH" => pad(c.hour, 2),
        "Z" => format_offset(dt.o, OffsetFormat::Narrow),
        "ZZ" => format_offset(dt.o, OffsetFormat::Short),
        "ZZZ" => format_offset(dt.o, OffsetFormat::Techie),
        "ZZZZ" => zone_name(dt, false),
        "ZZZZZ" => zone_name(dt, true),
        "z" => dt.zone.name.to_string(),
        "a" => meridiem(c).into(),
        "d" => c.day.to_string(),
        "dd" => pad(c.day, 2),
        "c" | "E" => c.weekday().to_string(),
        "ccc" | "EEE" => short(weekday).into(),
        "cccc" | "EEEE" => weekday.into(),
        "ccccc" | "EEEEE" => narrow(weekday).into(),
        "L" | "M" => c.month.to_string(),
        "LL" | "MM" => pad(c.month, 2),
        "LLL" | "MMM" => short(month).into(),
        "LLLL" | "MMMM" => month.into(),
        "LLLLL" | "MMMMM" => narrow(month).into(),
        "y" => c.year.to_string(),
        "yy" => two_digits(c.year),
        "yyyy" => pad(c.year, 4),
        "yyyyyy" => pad(c.year, 6),
        "G" => (if c.year < 0 { "BC" } else { "AD" }).into(),
        "GG" => (if c.year < 0 { "Before Christ" } else { "Anno Domini" }).into(),
        "GGGGG" => (if c.year < 0 { "B" } else { "A" }).into(),
        "kk" => two_digits(c.week(4, 1).0),
        "kkkk" => pad(c.week(4, 1).0, 4),
        "W" => c.week(4, 1).1.to_string(),
        "WW" => pad(c.week(4, 1).1, 2),
        // Local weeks, as for en-US: from Sunday, the first week holds January 1st.
        "n" => c.week(1, 7).1.to_string(),
        "nn" => pad(c.week(1, 7).1, 2),
        "ii" => two_digits(c.week(1, 7).0),
        "iiii" => pad(c.week(1, 7).0, 4),
        "o" => c.ordinal().to_string(),
        "ooo" => pad(c.ordinal(), 3),
        "q" => c.quarter().to_string(),
        "qq" => pad(c.quarter(), 2),
        "X" => format_number((dt.ts / 1000.0).floor()),
        "x" => format_number((dt.ts * 1000.0).round() / 1000.0),
        _ => return macro_token(dt, tok, out),
    };
    out.push_str(&s);
}

fn meridiem(c: &Fields) -> &'static str {
    if c.hour < 12 {
        "AM"
    } else {
        "PM"
    }
}

/// luxon's localized macro tokens (`D`, `t`, `ff`, …) as en-US `Intl` renders them.
fn macro_token(dt: &Ldt, tok: &str, out: &mut String) {
    let c = &dt.c;
    // Intl counts years before 1 as years BC.
    let year = if c.year <= 0 { 1 - c.year } else { c.year };
    let month = MONTHS[(c.month - 1).clamp(0, 11) as usize];
    let weekday = WEEKDAYS[(c.weekday() - 1).clamp(0, 6) as usize];
    let hour12 = if c.hour % 12 == 0 { 12 } else { c.hour % 12 };
    // luxon formats fixed zones as `Etc/GMT±N` when one exists; otherwise as UTC, through
    // `formatToParts`, which keeps ICU's narrow no-break space before AM/PM.
    let etc_gmt = dt.zone.is_fixed() && dt.o != 0.0 && dt.o % 60.0 == 0.0 && (-720.0..=840.0).contains(&dt.o);
    let space = if dt.zone.is_fixed() && !etc_gmt { '\u{202F}' } else { ' ' };
    let zone = |long: bool| {
        if etc_gmt {
            let style = if long { OffsetFormat::Short } else { OffsetFormat::Narrow };
            format!("GMT{}", format_offset(dt.o, style))
        } else {
            zone_name(dt, long)
        }
    };
    let numeric = format!("{}/{}/{year}", c.month, c.day);
    let medium = format!("{} {}, {year}", short(month), c.day);
    let long = format!("{month} {}, {year}", c.day);
    let huge = format!("{weekday}, {month} {}, {year}", c.day);
    let t = format!("{hour12}:{:02}{space}{}", c.minute, meridiem(c));
    let tt = format!("{hour12}:{:02}:{:02}{space}{}", c.minute, c.second, meridiem(c));
    let s = match tok {
        "D" => numeric,
        "DD" => medium,
        "DDD" => long,
        "DDDD" => huge,
        "t" => t,
        "tt" => tt,
        "ttt" => format!("{tt} {}", zone(false)),
        "tttt" => format!("{tt} {}", zone(true)),
        "T" => format!("{:02}:{:02}", c.hour, c.minute),
        "TT" => format!("{:02}:{:02}:{:02}", c.hour, c.minute, c.second),
        "TTT" => format!("{:02}:{:02}:{:02} {}", c.hour, c.minute, c.second, zone(false)),
        "TTTT" => format!("{:02}:{:02}:{:02} {}", c.hour, c.minute, c.second, zone(true)),
        "f" => format!("{numeric}, {t}"),
        "ff" => format!("{medium}, {t}"),
        "fff" => format!("{long} at {t} {}", zone(false)),
        "ffff" => format!("{huge} at {t} {}", zone(true)),
        "F" => format!("{numeric}, {tt}"),
        "FF" => format!("{medium}, {tt}"),
        "FFF" => format!("{long} at {tt} {}", zone(false)),
        "FFFF" => format!("{huge} at {tt} {}", zone(true)),
        other => other.to_string(),
    };
    out.push_str(&s);
}

/// Names en-US `Intl` gives zones: `(abbreviation, offset in minutes, long name, short name)`.
const ZONE_NAMES: &[(&str, i32, &str, bool)] = &[
    ("EST", -300, "Eastern Standard Time", true),
    ("EDT", -240, "Eastern Daylight Time", true),
    ("CST", -360, "Central Standard Time", true),
    ("CDT", -300, "Central Daylight Time", true),
    ("MST", -420, "Mountain Standard Time", true),
    ("MDT", -360, "Mountain Daylight Time", true),
    ("PST", -480, "Pacific Standard Time", true),
    ("PDT", -420, "Pacific Daylight Time", true),
    ("AKST", -540, "Alaska Standard Time", true),
    ("AKDT", -480, "Alaska Daylight Time", true),
    ("HST", -600, "Hawaii-Aleutian Standard Time", true),
    ("HDT", -540, "Hawaii-Aleutian Daylight Time", true),
    ("GMT", 0, "Greenwich Mean Time", true),
    ("BST", 60, "British Summer Time", false),
    ("WET", 0, "Western European Standard Time", false),
    ("WEST", 60, "Western European Summer Time", false),
    ("CET", 60, "Central European Standard Time", false),
    ("CEST", 120, "Central European Summer Time", false),
    ("EET", 120, "Eastern European Standard Time", false),
    ("EEST", 180, "Eastern European Summer Time", false),
    ("IST", 330, "India Standard Time", false),
    ("CST", 480, "China Standard Time", false),
    ("JST", 540, "Japan Standard Time", false),
    ("AEST", 600, "Australian Eastern Standard Time", false),
    ("AEDT", 660, "Australian Eastern Daylight Time", false),
];

/// luxon's `offsetName` (`ZZZZ`, or with `long` `ZZZZZ`): fixed zones give their name; IANA zones
/// what en-US `Intl` shows (`EST`, `GMT+1`, `Central European Standard Time`). Zones outside the
/// table above fall back to `GMT+01:00`-style long names.
fn zone_name(dt: &Ldt, long: bool) -> String {
    let Some(tz) = dt.zone.iana() else {
        return dt.zone.name.to_string();
    };
    let name = tz.name();
    let utc_like =
        matches!(name, "UTC" | "UCT" | "Universal" | "Zulu" | "GMT" | "GMT0" | "GMT+0" | "GMT-0" | "Greenwich")
            || (name.starts_with("Etc/") && dt.o == 0.0);
    if utc_like {
        return if long { "Coordinated Universal Time" } else { "UTC" }.into();
    }
    let abbreviation = chrono::DateTime::from_timestamp((dt.ts.trunc() as i64).div_euclid(1000), 0).and_then(|utc| {
        use chrono::TimeZone;
        let offset = tz.offset_from_utc_datetime(&utc.naive_utc());
        chrono_tz::OffsetName::abbreviation(&offset).map(str::to_string)
    });
    let known = abbreviation
        .as_deref()
        .and_then(|a| ZONE_NAMES.iter().find(|(abbr, minutes, ..)| *abbr == a && f64::from(*minutes) == dt.o));
    match known {
        Some((abbr, _, long_name, has_short)) => {
            if long {
                return (*long_name).into();
            }
            if *has_short {
                return (*abbr).into();
            }
        }
        None if long => return format!("GMT{}", format_offset(dt.o, OffsetFormat::Short)),
        None => {}
    }
    if dt.o == 0.0 {
        "GMT".into()
    } else {
        format!("GMT{}", format_offset(dt.o, OffsetFormat::Narrow))
    }
}

/// luxon's `toISO()`: `2024-01-02T03:04:05.006Z`, or with the zone's offset (`+01:00`) unless the
/// zone is a fixed zero offset; years outside 0 to 9999 get six digits and a sign.
pub(super) fn iso(dt: &Ldt) -> String {
    let c = &dt.c;
    let mut s = String::with_capacity(32);
    if c.year > 9999 || c.year < 0 {
        if c.year >= 0 {
            s.push('+');
        }
        s.push_str(&pad(c.year, 6));
    } else {
        s.push_str(&pad(c.year, 4));
    }
    s.push_str(&format!(
        "-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}",
        c.month, c.day, c.hour, c.minute, c.second, c.millisecond
    ));
    if dt.zone.is_fixed() && dt.o == 0.0 {
        s.push('Z');
    } else {
        let sign = if dt.o < 0.0 { '-' } else { '+' };
        let o = dt.o.abs();
        s.push_str(&format!("{sign}{:02}:{:02}", (o / 60.0).trunc() as i64, (o % 60.0).trunc() as i64));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specifiers_become_luxon_tokens() {
        assert_eq!(luxon_format("%Y-%m-%d %H:%i:%S"), "yyyy'-'MM'-'dd' 'HH':'mm':'ss");
        assert_eq!(luxon_format("%%%x%"), "%");
        assert_eq!(luxon_format("at %Y"), "'at 'yyyy");
    }

    #[test]
    fn parse_format_like_luxon() {
        let p = parse_format("'it's 'yyyy");
        assert_eq!(p, vec![(true, "it".into()), (false, "s".into()), (false, " ".into()), (true, "yyyy".into())]);
        assert_eq!(parse_format("'''"), vec![(true, "'".into())]);
    }
}
