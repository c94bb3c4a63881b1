//! Encodings: `encodeURLComponent`, `decodeURLComponent`, `tryDecodeURLComponent`,
//! `base64Encode`, `base64Decode`, `tryBase64Decode`.
//!
//! PostHog runs these in Node: URL components are JavaScript's `encodeURIComponent` /
//! `decodeURIComponent` of the UTF-8 text, and base64 is Node's `Buffer`, whose decoder is
//! lenient (it skips characters outside the alphabet, takes the URL-safe `-` and `_` too, and
//! stops at the first `=`); decoded bytes that are not UTF-8 become U+FFFD.

use super::coerce::{js_number, js_string, too_large, MAX_BYTES};
use super::{Ctx, NativeFunction, NativeResult, StdlibError};
use crate::value::Value;
use base64::Engine;

/// The encoding family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "encodeURLComponent",
        signature: "encodeURLComponent(s: string) -> string",
        description: "Percent-encodes the UTF-8 bytes of s except A-Z a-z 0-9 - _ . ! ~ * ' ( ) (JavaScript's encodeURIComponent; null gives 'null')",
        min_args: 1,
        max_args: Some(1),
        func: encode_url_component,
        examples: &[
            ("encodeURLComponent('a b&c=d/é')", "'a%20b%26c%3Dd%2F%C3%A9'"),
            ("encodeURLComponent('it\\'s (ok)!')", "'it\\'s%20(ok)!'"),
            ("encodeURLComponent(12)", "'12'"),
        ],
    },
    NativeFunction {
        name: "decodeURLComponent",
        signature: "decodeURLComponent(s: string) -> string",
        description: "Decodes %XX escapes (JavaScript's decodeURIComponent: '+' stays '+'); fails on a malformed escape or invalid UTF-8",
        min_args: 1,
        max_args: Some(1),
        func: decode_url_component,
        examples: &[
            ("decodeURLComponent('a%20b%2Bc+d')", "'a b+c+d'"),
            ("decodeURLComponent('%C3%A9t%C3%A9')", "'été'"),
            ("decodeURLComponent('100%')", "error: URI malformed"),
            ("decodeURLComponent('%C3%28')", "error: URI malformed"),
        ],
    },
    NativeFunction {
        name: "tryDecodeURLComponent",
        signature: "tryDecodeURLComponent(s: string) -> string | null",
        description: "decodeURLComponent, but null instead of failing on malformed input",
        min_args: 1,
        max_args: Some(1),
        func: try_decode_url_component,
        examples: &[
            ("tryDecodeURLComponent('a%20b')", "'a b'"),
            ("tryDecodeURLComponent('100%')", "null"),
            ("tryDecodeURLComponent('%FF')", "null"),
        ],
    },
    NativeFunction {
        name: "base64Encode",
        signature: "base64Encode(s: string) -> string",
        description: "Base64 (standard alphabet, padded) of the UTF-8 bytes of s, or of an array of byte values; null stays null",
        min_args: 1,
        max_args: Some(1),
        func: base64_encode,
        examples: &[
            ("base64Encode('hello')", "'aGVsbG8='"),
            ("base64Encode('é')", "'w6k='"),
            ("base64Encode([104, 105])", "'aGk='"),
            ("base64Encode(null)", "null"),
            ("base64Encode(12)", "error: argument 1 must be a string or an array of bytes, got integer"),
        ],
    },
    NativeFunction {
        name: "base64Decode",
        signature: "base64Decode(s: string) -> string",
        description: "Decodes base64 as Node does (standard or URL-safe alphabet, padding optional, other characters skipped, stops at '='); invalid UTF-8 becomes U+FFFD; null stays null",
        min_args: 1,
        max_args: Some(1),
        func: base64_decode,
        examples: &[
            ("base64Decode('aGVsbG8=')", "'hello'"),
            ("base64Decode('aGVsbG8')", "'hello'"),
            ("base64Decode('w6k=')", "'é'"),
            ("base64Decode('/w==')", "'\u{FFFD}'"),
            ("base64Decode(12)", "error: argument 1 must be a string or an array of bytes, got integer"),
        ],
    },
    NativeFunction {
        name: "tryBase64Decode",
        signature: "tryBase64Decode(s: string) -> string",
        description: "base64Decode, but '' instead of failing (for null and other non-strings)",
        min_args: 1,
        max_args: Some(1),
        func: try_base64_decode,
        examples: &[
            ("tryBase64Decode('aGk=')", "'hi'"),
            ("tryBase64Decode('!!')", "''"),
            ("tryBase64Decode(12)", "''"),
            ("tryBase64Decode(null)", "''"),
        ],
    },
];

/// Whether `encodeURIComponent` leaves this byte as it is.
fn uri_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')')
}

fn encode_url_component(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let s = js_string(args.first().unwrap_or(&Value::Null))?;
    let escaped = s.bytes().filter(|b| !uri_unreserved(*b)).count();
    if escaped == 0 {
        return Ok(match args.first() {
            Some(v @ Value::Str(_)) => v.clone(),
            _ => Value::from(s.into_owned()),
        });
    }
    if s.len() + 2 * escaped > MAX_BYTES {
        return Err(too_large());
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + 2 * escaped);
    for b in s.bytes() {
        if uri_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    Ok(Value::from(out))
}

/// The byte of the `%XX` escape at `i`, if there is one.
fn escaped_byte(b: &[u8], i: usize) -> Option<u8> {
    if b.get(i) != Some(&b'%') {
        return None;
    }
    let hex = |c: Option<&u8>| c.and_then(|c| char::from(*c).to_digit(16));
    let (hi, lo) = (hex(b.get(i + 1))?, hex(b.get(i + 2))?);
    u8::try_from(hi * 16 + lo).ok()
}

/// JavaScript's `decodeURIComponent`: every `%XX` is decoded; the escapes of one character must
/// form valid UTF-8. The error says what is malformed.
fn decode_uri_component(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let bad = |from: usize, to: usize| {
            let shown: String = String::from_utf8_lossy(&b[from..to.min(b.len())]).into_owned();
            format!("URI malformed: {shown:?} is not a valid percent-encoded UTF-8 character")
        };
        let Some(first) = escaped_byte(b, i) else { return Err(bad(i, i + 3)) };
        let n = match first {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return Err(bad(i, i + 3)),
        };
        let mut seq = [first, 0, 0, 0];
        for (k, slot) in seq.iter_mut().enumerate().take(n).skip(1) {
            *slot = escaped_byte(b, i + 3 * k).ok_or_else(|| bad(i, i + 3 * (k + 1)))?;
        }
        if std::str::from_utf8(&seq[..n]).is_err() {
            return Err(bad(i, i + 3 * n));
        }
        out.extend_from_slice(&seq[..n]);
        i += 3 * n;
    }
    String::from_utf8(out).map_err(|_| "URI malformed: the decoded text is not valid UTF-8".to_string())
}

fn decode_url_component(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let s = js_string(args.first().unwrap_or(&Value::Null))?;
    if !s.contains('%') {
        return Ok(Value::from(s.into_owned()));
    }
    decode_uri_component(&s).map(Value::from).map_err(StdlibError::Invalid)
}

fn try_decode_url_component(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let s = js_string(args.first().unwrap_or(&Value::Null))?;
    if !s.contains('%') {
        return Ok(Value::from(s.into_owned()));
    }
    Ok(decode_uri_component(&s).map(Value::from).unwrap_or_default())
}

/// JavaScript's `ToUint8`: how `Buffer.from(array)` stores each item.
fn to_uint8(x: f64) -> u8 {
    if !x.is_finite() {
        return 0;
    }
    let m = x.trunc().rem_euclid(256.0);
    if (0.0..256.0).contains(&m) {
        m as u8
    } else {
        0
    }
}

/// The bytes of `Buffer.from(items)`.
fn array_bytes(items: &[Value]) -> Result<Vec<u8>, StdlibError> {
    items.iter().map(|v| js_number(v).map(to_uint8)).collect()
}

/// Node's lenient base64 decoder (`Buffer.from(s, 'base64')`): each UTF-16 unit is read as its low
/// byte; characters outside the standard and URL-safe alphabets are skipped; the first `=` ends
/// the input; a trailing group of 2 or 3 characters gives 1 or 2 bytes.
fn node_base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut n = 0;
    let mut take = |byte: u8| -> bool {
        let v = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => return false,
            _ => return true,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            acc = 0;
            n = 0;
        }
        true
    };
    if s.is_ascii() {
        for byte in s.bytes() {
            if !take(byte) {
                break;
            }
        }
    } else {
        for unit in s.encode_utf16() {
            if !take(unit.to_le_bytes()[0]) {
                break;
            }
        }
    }
    match n {
        2 => out.push((acc >> 4) as u8),
        3 => out.extend_from_slice(&[(acc >> 10) as u8, (acc >> 2) as u8]),
        _ => {}
    }
    out
}

fn base64_encode(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let bytes: Vec<u8>;
    let input: &[u8] = match args.first().unwrap_or(&Value::Null) {
        Value::Null => return Ok(Value::Null),
        Value::Str(s) => s.as_bytes(),
        Value::Array(a) | Value::Tuple(a) => {
            bytes = array_bytes(&a.borrow())?;
            &bytes
        }
        other => return Err(StdlibError::wrong_type(0, "a string or an array of bytes", other)),
    };
    if input.len().div_ceil(3).saturating_mul(4) > MAX_BYTES {
        return Err(too_large());
    }
    Ok(Value::from(base64::engine::general_purpose::STANDARD.encode(input)))
}

/// The decoded text of a string or byte array; `None` for other types.
fn decode_base64_value(v: &Value) -> Result<Option<String>, StdlibError> {
    let bytes = match v {
        Value::Str(s) => node_base64_decode(s),
        Value::Array(a) | Value::Tuple(a) => array_bytes(&a.borrow())?,
        _ => return Ok(None),
    };
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn base64_decode(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let v = args.first().unwrap_or(&Value::Null);
    if v.is_null() {
        return Ok(Value::Null);
    }
    match decode_base64_value(v)? {
        Some(text) => Ok(Value::from(text)),
        None => Err(StdlibError::wrong_type(0, "a string or an array of bytes", v)),
    }
}

fn try_base64_decode(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let v = args.first().unwrap_or(&Value::Null);
    Ok(Value::from(decode_base64_value(v)?.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_base64_is_lenient() {
        assert_eq!(node_base64_decode("aGk="), b"hi");
        assert_eq!(node_base64_decode("aG k"), b"hi");
        assert_eq!(node_base64_decode("YW=Jj"), b"a");
        assert_eq!(node_base64_decode("a"), b"");
        assert_eq!(node_base64_decode("YWJjZ"), b"abc");
        // Node reads the low byte of each UTF-16 unit: U+0151 is 'Q', U+00E9 is skipped.
        assert_eq!(node_base64_decode("Y\u{151}Q"), b"a\x04");
        assert_eq!(node_base64_decode("Y\u{e9}Q"), b"a");
        // The high surrogate of U+1F600 has low byte '=': decoding stops.
        assert_eq!(node_base64_decode("Y😀Q"), b"");
    }

    #[test]
    fn uri_decoding_rejects_what_javascript_rejects() {
        for bad in ["%", "%4", "%zz", "%C3", "%C3%41", "%ED%A0%80", "%C0%80", "%F4%90%80%80", "%FF", "%80"] {
            assert!(decode_uri_component(bad).is_err(), "{bad}");
        }
        assert_eq!(decode_uri_component("%F0%9F%98%80%41+").unwrap(), "😀A+");
        assert_eq!(decode_uri_component("%25zz").unwrap(), "%zz");
    }
}
