//! ClickHouse's `RowBinary` encoding, for the writer's `events` inserts on modern ClickHouse
//! (chDB): each value in column order, fixed-width numbers little-endian, strings as a LEB128
//! length then the bytes. Parsing it costs ClickHouse far less than `JSONEachRow` (no names to
//! match, no escapes to undo), and writing it costs us less (the properties JSON is copied as is,
//! not escaped into a JSON string).

use chrono::Datelike;

/// Appends a `String`.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len() as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(s.as_bytes());
}

/// Appends an `Int64`.
pub fn put_i64(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `UInt32` (also `DateTime`: seconds since the epoch).
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a `UUID`: ClickHouse keeps it as two 64-bit halves, each written little-endian, so
/// each half of the canonical byte order is reversed.
pub fn put_uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let b = id.as_bytes();
    out.extend(b[..8].iter().rev());
    out.extend(b[8..].iter().rev());
}

/// A uuid from its text; text that is not a UUID (events never carry one: capture checks them)
/// maps to a stable name-based one, so the row is kept and a replay of it still dedups.
pub fn uuid_of(text: &str) -> uuid::Uuid {
    uuid::Uuid::try_parse(text).unwrap_or_else(|_| {
        let hash = |seed: u64| text.bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
        let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x6c62_272e_07bb_0142));
        let mut bytes = ((u128::from(a) << 64) | u128::from(b)).to_be_bytes();
        // Version 8 (custom), RFC 4122 variant.
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        uuid::Uuid::from_bytes(bytes)
    })
}

/// Microseconds since the epoch of an RFC 3339 time. The form capture writes
/// (`2024-05-01T10:00:00.123Z`) is read directly; others go through chrono; unreadable text is
/// the epoch (as the JSON path stores it).
pub fn micros(rfc3339: &str) -> i64 {
    fast_micros(rfc3339.as_bytes())
        .unwrap_or_else(|| chrono::DateTime::parse_from_rfc3339(rfc3339).map_or(0, |t| t.timestamp_micros()))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, or `None`.
fn fast_micros(s: &[u8]) -> Option<i64> {
    fn digits(s: &[u8]) -> Option<i64> {
        s.iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
    }
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(&s[0..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    // `from_ymd_opt` below checks the month and the day in the month.
    let (hour, minute, second) = (digits(&s[11..13])?, digits(&s[14..16])?, digits(&s[17..19])?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut fraction = 0i64;
    if let [b'.', tail @ ..] = rest {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let mut micros = digits(&tail[..n.min(6)])?;
        for _ in n..6 {
            micros *= 10;
        }
        fraction = micros;
        rest = &tail[n..];
    }
    if !matches!(rest, [b'Z' | b'z']) {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month as u32, day as u32)?;
    let days = i64::from(date.num_days_from_ce()) - DAYS_BEFORE_EPOCH;
    Some(((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + fraction)
}

/// `num_days_from_ce` of 1970-01-01.
const DAYS_BEFORE_EPOCH: i64 = 719_163;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_match_chrono() {
        for t in [
            "2024-05-01T10:00:00.123Z",
            "2024-02-29T23:59:59.999999Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.5Z",
            "2000-03-01T00:00:00.000001Z",
            "2100-12-31T12:34:56.123456789Z",
            "1999-01-01 08:00:00Z",
        ] {
            let want = chrono::DateTime::parse_from_rfc3339(&t.replace(' ', "T")).unwrap().timestamp_micros();
            assert_eq!(fast_micros(t.as_bytes()), Some(want), "{t}");
            assert_eq!(micros(t), want, "{t}");
        }
        // Offsets are not the fast form; chrono reads them.
        assert_eq!(fast_micros(b"2024-05-01T12:00:00+02:00"), None);
        assert_eq!(micros("2024-05-01T12:00:00+02:00"), micros("2024-05-01T10:00:00Z"));
        for bad in ["2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-05-01T10:00:00.Z", "yesterday", ""] {
            assert_eq!(fast_micros(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(micros("yesterday"), 0);
    }

    #[test]
    fn strings_and_uuids() {
        let mut out = Vec::new();
        put_str(&mut out, "ab");
        put_str(&mut out, &"x".repeat(300));
        assert_eq!(&out[..3], &[2, b'a', b'b']);
        assert_eq!(&out[3..5], &[0xac, 0x02], "300 as LEB128");
        assert_eq!(out.len(), 5 + 300);

        // ClickHouse's documented example: 61f0c404-5cb3-11e7-907b-a6006ad3dba0.
        let mut out = Vec::new();
        put_uuid(&mut out, &uuid_of("61f0c404-5cb3-11e7-907b-a6006ad3dba0"));
        assert_eq!(
            out,
            [0xe7, 0x11, 0xb3, 0x5c, 0x04, 0xc4, 0xf0, 0x61, 0xa0, 0xdb, 0xd3, 0x6a, 0x00, 0xa6, 0x7b, 0x90]
        );

        let odd = uuid_of("not-a-uuid");
        assert_eq!(odd, uuid_of("not-a-uuid"), "stable");
        assert_ne!(odd, uuid_of("not-a-uuid2"));
    }
}
