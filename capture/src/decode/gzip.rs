//! Bounded gzip decompression (RFC 1952, one or more members back to back).
//!
//! The output never grows past `limit + 1` bytes: decompression stops there and fails with
//! `TooLarge`, so a gzip bomb costs at most `limit` bytes of memory and the time to inflate them.

use std::io::{ErrorKind, Read};

use flate2::bufread::MultiGzDecoder;

use super::DecodeError;

/// The first two bytes of every gzip member.
pub(crate) const MAGIC: [u8; 2] = [0x1f, 0x8b];

/// First read size; the buffer then doubles, capped at `limit + 1`.
const FIRST_CHUNK: usize = 16 * 1024;

/// Inflates `input` (all its members), failing as soon as the output passes `limit` bytes.
pub(crate) fn decode(input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    if !input.starts_with(&MAGIC) {
        return Err(DecodeError::Gzip(format!(
            "the payload does not start with the gzip magic bytes 1f 8b (it starts with {})",
            hex_prefix(input)
        )));
    }
    let cap = limit.saturating_add(1);
    let mut decoder = MultiGzDecoder::new(input);
    // JSON compresses about 10:1; start near that, within the limit.
    let mut out = vec![0u8; input.len().saturating_mul(8).clamp(FIRST_CHUNK, FIRST_CHUNK * 64).min(cap)];
    let mut filled = 0;
    loop {
        if filled == out.len() {
            if out.len() >= cap {
                return Err(DecodeError::TooLarge { limit });
            }
            let grown = out.len().saturating_mul(2).min(cap);
            // `resize` alone would let the Vec double its capacity past `cap`.
            out.reserve_exact(grown - out.len());
            out.resize(grown, 0);
        }
        match decoder.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                let at = input.len() - decoder.get_ref().len();
                let what = if e.kind() == ErrorKind::UnexpectedEof {
                    "the data is truncated".to_owned()
                } else {
                    e.to_string()
                };
                return Err(DecodeError::Gzip(format!(
                    "{what} (near compressed byte {at} of {}, after {filled} decompressed bytes)",
                    input.len()
                )));
            }
        }
        if filled > limit {
            return Err(DecodeError::TooLarge { limit });
        }
    }
    out.truncate(filled);
    Ok(out)
}

/// Up to the first 4 bytes of `data` in hex, for error messages.
fn hex_prefix(data: &[u8]) -> String {
    if data.is_empty() {
        return "nothing".to_owned();
    }
    let mut s = String::new();
    for b in data.iter().take(4) {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}
