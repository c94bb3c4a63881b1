//! Lenient base64 decoding, as PostHog's capture accepts it from SDKs and form encoders.
//!
//! Accepts the standard and the URL-safe alphabet (even mixed), a space where a `+` was (form
//! decoding turns `+` into a space), missing or extra `=` padding, and ASCII whitespace around
//! the text or line breaks inside it. Anything else is an error naming the byte and its position.

use super::DecodeError;

const INVALID: u8 = 0xFF;
const SKIP: u8 = 0xFE;
const PAD: u8 = 0xFD;

/// A table mapping `A-Z`, `a-z`, `0-9` to 0..=61 and every other byte to `other` (the part of
/// the base64 alphabet all variants share; callers add `+ / - _ =` as they read them).
pub(super) const fn letters_and_digits(other: u8) -> [u8; 256] {
    let mut t = [other; 256];
    let mut i = 0;
    while i < 26 {
        t[b'A' as usize + i] = i as u8;
        t[b'a' as usize + i] = 26 + i as u8;
        i += 1;
    }
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = 52 + d as u8;
        d += 1;
    }
    t
}

/// Value of each byte: 0..=63, or one of `INVALID`, `SKIP` (line breaks, tabs), `PAD`.
static TABLE: [u8; 256] = {
    let mut t = letters_and_digits(INVALID);
    t[b'+' as usize] = 62;
    t[b'-' as usize] = 62;
    t[b' ' as usize] = 62;
    t[b'/' as usize] = 63;
    t[b'_' as usize] = 63;
    t[b'\n' as usize] = SKIP;
    t[b'\r' as usize] = SKIP;
    t[b'\t' as usize] = SKIP;
    t[b'=' as usize] = PAD;
    t
};

/// Decodes `input`, failing with `TooLarge` as soon as the output would pass `limit` bytes.
pub(crate) fn decode(input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    // Leading and trailing whitespace, spaces included, is not part of the text (a trailing `+`
    // turned into a space by a form encoder cannot end base64 of a JSON document: `}`, `]` and
    // whitespace never encode to it).
    let start = input.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(input.len());
    let end = input.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    let text = &input[start..end];

    let mut out = Vec::with_capacity((text.len() / 4 * 3 + 3).min(limit.saturating_add(1)));
    let mut acc: u32 = 0;
    let mut n = 0u32;
    let mut last = 0; // position of the last alphabet character, for the lone-character error
    let mut i = 0;
    while i < text.len() {
        // Fast path: four alphabet characters make three bytes.
        if n == 0 && i + 4 <= text.len() {
            let (a, b, c, d) = (
                TABLE[text[i] as usize],
                TABLE[text[i + 1] as usize],
                TABLE[text[i + 2] as usize],
                TABLE[text[i + 3] as usize],
            );
            if (a | b | c | d) < 64 {
                if out.len() + 3 > limit {
                    return Err(DecodeError::TooLarge { limit });
                }
                let v = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
                out.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
                last = i + 3;
                i += 4;
                continue;
            }
        }
        let b = text[i];
        let v = TABLE[b as usize];
        if v < 64 {
            acc = acc << 6 | u32::from(v);
            n += 1;
            last = i;
            if n == 4 {
                if out.len() + 3 > limit {
                    return Err(DecodeError::TooLarge { limit });
                }
                out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                acc = 0;
                n = 0;
            }
        } else if v == SKIP {
        } else if v == PAD {
            // Padding ends the text: only more padding and whitespace may follow.
            if let Some(j) = text[i..].iter().position(|&c| c != b'=' && !c.is_ascii_whitespace()) {
                let at = start + i + j;
                return Err(DecodeError::Base64(format!(
                    "unexpected {} at byte {at} after the `=` padding",
                    show_byte(input[at])
                )));
            }
            break;
        } else {
            return Err(DecodeError::Base64(format!("invalid character {} at byte {}", show_byte(b), start + i)));
        }
        i += 1;
    }
    // A partial last group: 2 characters hold one byte, 3 hold two, 1 holds none.
    let tail: &[u8] = match n {
        0 => &[],
        1 => {
            return Err(DecodeError::Base64(format!(
                "the text ends with a lone character at byte {} (base64 needs at least 2 per group)",
                start + last
            )))
        }
        2 => &[(acc >> 4) as u8],
        _ => &[(acc >> 10) as u8, (acc >> 2) as u8],
    };
    if out.len() + tail.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    out.extend_from_slice(tail);
    Ok(out)
}

/// `'x'` for printable ASCII, `0xNN` otherwise.
pub(crate) fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("`{}`", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_urlsafe_spaces_padding() {
        assert_eq!(decode(b"eyJhIjoxfQ==", 100).unwrap(), br#"{"a":1}"#);
        assert_eq!(decode(b" eyJhIjoxfQ \n", 100).unwrap(), br#"{"a":1}"#);
        assert_eq!(decode(b"+/-_ +/8=", 100).unwrap(), [0xfb, 0xff, 0xbf, 0xfb, 0xef, 0xfc]);
        assert_eq!(decode(b"QQ", 100).unwrap(), b"A");
        assert_eq!(decode(b"QUI", 100).unwrap(), b"AB");
    }

    #[test]
    fn errors_say_where() {
        assert_eq!(decode(b"QU!=", 100), Err(DecodeError::Base64("invalid character `!` at byte 2".into())));
        assert_eq!(
            decode(b"QQ==QQ", 100),
            Err(DecodeError::Base64("unexpected `Q` at byte 4 after the `=` padding".into()))
        );
        assert!(matches!(decode(b"QUJDR", 100), Err(DecodeError::Base64(m)) if m.contains("byte 4")));
        assert_eq!(decode(b"QUJDRA", 3), Err(DecodeError::TooLarge { limit: 3 }));
        assert_eq!(decode(b"QUJD", 3).unwrap(), b"ABC");
    }
}
