//! lz-string's `decompressFromBase64`, bounded: the decoder behind posthog-js's `lz64` compression.
//!
//! The stream is read 6 bits per character of the alphabet `A-Za-z0-9+/` (`=` is padding and
//! reads as zero; a space reads as `+`, which form decoding turned into one). Codes are
//! `num_bits` wide, starting at 2 bits: 0 and 1 introduce a new 8-bit or 16-bit character, 2 ends
//! the stream, anything else is an LZW dictionary reference. Bits are taken from each character's
//! high bit down and assembled into a code low bit first.
//!
//! The output is UTF-16, as in JavaScript. Every dictionary entry is a slice of the output already
//! written (an entry is the previous output plus the first unit of the next), so an entry costs
//! 8 bytes however long it gets and never outgrows the output. The output is converted to UTF-8
//! in runs (surrogate pairs joined, lone surrogates become U+FFFD). Decoding stops with
//! `TooLarge` as soon as the UTF-16 output would hold more units, or the UTF-8 output more bytes,
//! than the limit: the quadratic growth lz-string allows (each code can repeat the longest entry
//! so far) is caught at the code that would pass it. Memory is at most `2 × limit` bytes of
//! UTF-16, `limit` bytes of UTF-8, and the dictionary: 2 entries (16 bytes) per code read, where
//! codes are fewer than both the output units and the input bits / 3.

use super::b64::{letters_and_digits, show_byte};
use super::DecodeError;

const INVALID: u8 = 0xFF;

/// 6-bit value of each byte of the alphabet; `=` and ` ` as lz-string reads them.
static TABLE: [u8; 256] = {
    let mut t = letters_and_digits(INVALID);
    t[b'+' as usize] = 62;
    t[b' ' as usize] = 62;
    t[b'/' as usize] = 63;
    // lz-string maps `=` to 64, whose low 6 bits (all the decoder reads) are zero.
    t[b'=' as usize] = 0;
    t
};

/// Reads the character stream as bits, high bit of each character first.
struct Bits<'a> {
    input: &'a [u8],
    /// Byte offset of `input` in the payload, for error positions.
    offset: usize,
    /// Next character of `input` to load.
    next: usize,
    /// Loaded bits not yet taken, in the low `avail` bits, oldest highest.
    buf: u64,
    avail: u32,
    /// Bits taken so far.
    taken: u64,
}

impl Bits<'_> {
    /// Takes `n` (1..=32) bits and returns them as lz-string assembles them (first bit lowest).
    /// Past the end of the input the bits are zero, as in lz-string.
    #[inline(always)]
    fn take(&mut self, n: u32) -> Result<u32, DecodeError> {
        if self.avail < n {
            self.refill();
            if self.avail < n {
                // Stopped at a character outside the alphabet, and its bits are needed.
                let c = self.input.get(self.next).copied().unwrap_or_default();
                return Err(DecodeError::Lz64(format!(
                    "invalid character {} at byte {} (lz64 uses A-Z a-z 0-9 + / =)",
                    show_byte(c),
                    self.offset + self.next
                )));
            }
        }
        self.avail -= n;
        self.taken += u64::from(n);
        let msb_first = ((self.buf >> self.avail) & ((1u64 << n) - 1)) as u32;
        Ok(msb_first.reverse_bits() >> (32 - n))
    }

    /// Loads whole characters while they fit in `buf` (then at least 59 bits are available),
    /// stopping early at a character outside the alphabet: it is an error only if its bits are
    /// needed (lz-string ignores what follows the end marker).
    #[inline]
    fn refill(&mut self) {
        while self.avail <= 64 - 6 {
            let v = match self.input.get(self.next) {
                Some(&c) => TABLE[c as usize],
                None => 0,
            };
            if v == INVALID {
                return;
            }
            self.next += 1;
            self.buf = self.buf << 6 | u64::from(v);
            self.avail += 6;
        }
    }

    /// Whether every bit of the input has been taken.
    fn exhausted(&self) -> bool {
        self.taken >= self.input.len() as u64 * 6
    }

    /// Byte position (in the payload) of the character holding the next bit.
    fn position(&self) -> usize {
        self.offset + (self.taken / 6) as usize
    }
}

/// Decompresses lz-string `compressToBase64` output into UTF-8.
pub(crate) fn decompress_from_base64(input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let start = input.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(input.len());
    let end = input.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    let text = &input[start..end];
    if text.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut bits = Bits { input: text, offset: start, next: 0, buf: 0, avail: 0, taken: 0 };
    // JSON compresses about 4:1 in lz64 characters; start near that, within the limit.
    let unit_cap = limit.min(u32::MAX as usize);
    let mut out = Utf16Out {
        units: Vec::with_capacity(text.len().saturating_mul(4).min(unit_cap)),
        converted: 0,
        utf8: Vec::with_capacity(text.len().saturating_mul(4).min(limit)),
        unit_cap,
        limit,
    };

    // The dictionary: (start, len) of each entry in `out.units`; 0..=2 are codes, not entries.
    let mut dict: Vec<(u32, u32)> = vec![(0, 0); 3];
    let mut num_bits: u32 = 3;
    let mut enlarge_in: u64 = 4;

    let first = match bits.take(2)? {
        0 => bits.take(8)?,
        1 => bits.take(16)?,
        2 => return Err(DecodeError::Empty),
        _ => {
            return Err(DecodeError::Lz64(format!(
                "the stream starts with code 3 at byte {start}: expected 0 or 1 (a first character) or 2 (end)"
            )))
        }
    };
    dict.push((0, 1));
    out.push(first as u16)?;
    // The previous entry written (lz-string's `w`): always the last `w.1` units of the output.
    let mut w: (u32, u32) = (0, 1);

    loop {
        if bits.exhausted() {
            return Err(DecodeError::Lz64(format!(
                "the stream ends at byte {end} without its end marker (truncated?)"
            )));
        }
        let at = bits.position();
        let code = bits.take(num_bits)?;
        let entry_start = out.units.len() as u32;
        match code {
            0 | 1 => {
                let unit = bits.take(if code == 0 { 8 } else { 16 })? as u16;
                // A new one-unit entry, written just below as this code's output.
                dict.push((entry_start, 1));
                out.push(unit)?;
                enlarge_in -= 1;
                if enlarge_in == 0 {
                    enlarge_in = 1u64 << num_bits;
                    num_bits += 1;
                }
            }
            2 => break,
            c if (c as usize) < dict.len() => {
                let (s, l) = dict[c as usize];
                out.copy(s, l)?;
            }
            c if c as usize == dict.len() => {
                // The entry being defined by this very code: `w` + `w[0]`.
                out.copy(w.0, w.1)?;
                out.push(out.units[w.0 as usize])?;
            }
            c => {
                return Err(DecodeError::Lz64(format!(
                    "reference to dictionary entry {c} at byte {at}, but the dictionary has only {} entries",
                    dict.len()
                )))
            }
        }
        // `w` + the first unit of this entry: it follows `w` in the output.
        dict.push((w.0, w.1.saturating_add(1)));
        w = (entry_start, out.units.len() as u32 - entry_start);
        enlarge_in -= 1;
        if enlarge_in == 0 {
            enlarge_in = 1u64 << num_bits;
            num_bits += 1;
        }
        if num_bits > 32 {
            return Err(DecodeError::Lz64(format!("the dictionary outgrew 2^32 entries at byte {at}")));
        }
        out.flush(false)?;
    }
    out.flush(true)?;
    Ok(out.utf8)
}

/// Pending UTF-16 units that trigger a conversion to UTF-8.
const FLUSH_UNITS: usize = 16 * 1024;

/// The UTF-16 output and its UTF-8 conversion, both bounded.
struct Utf16Out {
    units: Vec<u16>,
    /// `units[..converted]` are in `utf8`.
    converted: usize,
    utf8: Vec<u8>,
    /// Most UTF-16 units allowed (each becomes at least one UTF-8 byte).
    unit_cap: usize,
    /// Most UTF-8 bytes allowed.
    limit: usize,
}

impl Utf16Out {
    /// Makes room for `n` more units: `TooLarge` past the cap; the buffer doubles but never
    /// beyond the cap.
    #[inline]
    fn reserve(&mut self, n: usize) -> Result<(), DecodeError> {
        let len = self.units.len();
        if n > self.unit_cap - len {
            return Err(DecodeError::TooLarge { limit: self.limit });
        }
        if n > self.units.capacity() - len {
            let want = (len + n).max(self.units.capacity().saturating_mul(2)).min(self.unit_cap);
            self.units.reserve_exact(want - len);
        }
        Ok(())
    }

    #[inline]
    fn push(&mut self, unit: u16) -> Result<(), DecodeError> {
        self.reserve(1)?;
        self.units.push(unit);
        Ok(())
    }

    /// Appends a copy of `units[start..start + len]` (always within the output).
    #[inline]
    fn copy(&mut self, start: u32, len: u32) -> Result<(), DecodeError> {
        self.reserve(len as usize)?;
        let (start, len) = (start as usize, len as usize);
        if len <= 8 {
            // Most entries are short: a loop beats a call to memmove.
            for k in start..start + len {
                let unit = self.units[k];
                self.units.push(unit);
            }
        } else {
            self.units.extend_from_within(start..start + len);
        }
        Ok(())
    }

    /// Converts the units written since the last call to UTF-8. Unless `last`, a trailing high
    /// surrogate waits for the unit after it, and nothing is done until enough units are pending
    /// (the UTF-16 buffer is bounded by itself; converting in runs is faster).
    fn flush(&mut self, last: bool) -> Result<(), DecodeError> {
        if !last && self.units.len() - self.converted < FLUSH_UNITS {
            return Ok(());
        }
        let units = &self.units[..];
        let utf8 = &mut self.utf8;
        let mut i = self.converted;
        let n = units.len();
        // At least one byte per unit; like the units, double but stay within the limit.
        let (len, cap) = (utf8.len(), utf8.capacity());
        if n - i > cap - len {
            let want = (len + n - i).max(cap.saturating_mul(2)).min(self.limit.saturating_add(1));
            utf8.reserve_exact(want.saturating_sub(len));
        }
        while i < n {
            // A run of ASCII, copied in one go.
            let run = units[i..].iter().position(|&u| u >= 0x80).unwrap_or(n - i);
            if run > 0 {
                if utf8.len() + run > self.limit {
                    return Err(DecodeError::TooLarge { limit: self.limit });
                }
                utf8.extend(units[i..i + run].iter().map(|&u| u as u8));
                i += run;
                continue;
            }
            let u = units[i];
            let c = match u {
                0xD800..=0xDBFF => match units.get(i + 1) {
                    Some(&lo @ 0xDC00..=0xDFFF) => {
                        i += 1;
                        0x10000 + ((u32::from(u) - 0xD800) << 10) + (u32::from(lo) - 0xDC00)
                    }
                    None if !last => break,
                    _ => 0xFFFD,
                },
                0xDC00..=0xDFFF => 0xFFFD,
                _ => u32::from(u),
            };
            i += 1;
            // All values here are scalar values: surrogates were replaced above.
            let ch = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut buf = [0u8; 4];
            utf8.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            if utf8.len() > self.limit {
                return Err(DecodeError::TooLarge { limit: self.limit });
            }
        }
        self.converted = i;
        if self.utf8.len() > self.limit {
            return Err(DecodeError::TooLarge { limit: self.limit });
        }
        Ok(())
    }
}
