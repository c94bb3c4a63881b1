//! `application/x-www-form-urlencoded` parsing for form bodies and query strings: split on `&`,
//! key and value on the first `=`, percent-decoding with `+` as space.
//!
//! Lenient the way browsers and Django are: a `%` not followed by two hex digits is kept as is,
//! empty pairs (`&&`) are skipped, a pair without `=` is a key with an empty value.

use std::borrow::Cow;

/// Calls `f(key, value)` for each `key=value` pair of `input` (both still percent-encoded).
pub(crate) fn for_each_pair<'a>(input: &'a [u8], mut f: impl FnMut(&'a [u8], &'a [u8])) {
    for pair in input.split(|&b| b == b'&') {
        if pair.is_empty() {
            continue;
        }
        match pair.iter().position(|&b| b == b'=') {
            Some(eq) => f(&pair[..eq], &pair[eq + 1..]),
            None => f(pair, &[]),
        }
    }
}

/// Percent-decodes `raw` with `+` as space. Borrows when there is nothing to decode.
pub(crate) fn percent_decode(raw: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = raw.iter().position(|&b| b == b'%' || b == b'+') else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    while i < raw.len() {
        match raw[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (raw.get(i + 1).and_then(|&h| hex(h)), raw.get(i + 2).and_then(|&l| hex(l))) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            _ => {
                // Copy the run up to the next escape in one go.
                let run = raw[i..].iter().position(|&b| b == b'%' || b == b'+').unwrap_or(raw.len() - i);
                out.extend_from_slice(&raw[i..i + run]);
                i += run;
            }
        }
    }
    Cow::Owned(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The fields of a form body or query string that capture reads, still percent-encoded.
#[derive(Debug, Default)]
pub(crate) struct Fields<'a> {
    /// `data`: the payload.
    pub data: Option<&'a [u8]>,
    /// How many `data` pairs there were (more than one is ambiguous).
    pub data_count: usize,
    /// `compression`.
    pub compression: Option<&'a [u8]>,
    /// `_`: the client's send time in ms.
    pub sent_at: Option<&'a [u8]>,
    /// `ver`.
    pub ver: Option<&'a [u8]>,
    /// `lib_version`.
    pub lib_version: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// Reads the known fields of `input`. The first occurrence of each wins; `data` is counted.
    pub(crate) fn parse(input: &'a [u8]) -> Self {
        let mut fields = Fields::default();
        for_each_pair(input, |key, value| {
            let key = percent_decode(key);
            let slot = match &*key {
                b"data" => {
                    fields.data_count += 1;
                    &mut fields.data
                }
                b"compression" => &mut fields.compression,
                b"_" => &mut fields.sent_at,
                b"ver" => &mut fields.ver,
                b"lib_version" => &mut fields.lib_version,
                _ => return,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        });
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_and_escapes_and_keeps_bad_escapes() {
        assert_eq!(&*percent_decode(b"a+b%2B%7b%zz%4"), b"a b+{%zz%4");
        assert!(matches!(percent_decode(b"plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn parses_fields_first_wins_and_counts_data() {
        let f = Fields::parse(b"&x=1&d%61ta=A&compression=lz64&data=B&_=17&ver&compression=gzip");
        assert_eq!(f.data, Some(&b"A"[..]));
        assert_eq!(f.data_count, 2);
        assert_eq!(f.compression, Some(&b"lz64"[..]));
        assert_eq!(f.sent_at, Some(&b"17"[..]));
        assert_eq!(f.ver, Some(&b""[..]));
        assert_eq!(f.lib_version, None);
    }
}
