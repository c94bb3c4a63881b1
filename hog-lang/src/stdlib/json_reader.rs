//! A JSON reader that builds Hog values directly, for the hot path of the pipeline (every event's
//! `data` is parsed here). It gives exactly what the serde-based parser in `json.rs` gives without
//! Hog objects (`parse_json`): numbers as doubles (integers through `u64`/`i64` as serde does, so
//! `-0` is `0`), duplicate keys keep their first position and their last value, array-index keys
//! first in ascending order (JavaScript's property order), lone UTF-16 surrogates as U+FFFD, and
//! the same nesting limit (127 levels). What it saves: no intermediate `String` per string (a string
//! without escapes is copied once, into its `Text`), one exact allocation per small object, and
//! [`unescape_string`] reads an event's `data` out of its log record into a reused buffer.

use std::borrow::Cow;
use std::fmt;

use super::json::{array_index, hog_object, js_key_order};
use crate::dict::{Dict, SMALL_MAX};
use crate::text::{same_bytes, Text};
use crate::value::{Key, Value};

/// Deepest nesting accepted: 127 levels, as serde_json (and so `jsonParse`) has always allowed.
const MAX_DEPTH: usize = 127;

/// Why some text is not JSON: what, and at which line and column (1-based, in bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What was wrong.
    pub message: String,
    /// Line of the offending byte.
    pub line: usize,
    /// Column of the offending byte.
    pub column: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at line {} column {}", self.message, self.line, self.column)
    }
}

impl std::error::Error for JsonError {}

/// Parses JSON text into Hog values (see the module documentation for the exact rules).
pub fn read_json(text: &str) -> Result<Value, JsonError> {
    read(text, false)
}

/// [`read_json`], and with `hog_objects` serialized Hog dates, datetimes and errors
/// (`{"__hogDateTime__": true, …}`) become those values again, as `jsonParse` does.
pub(super) fn read(text: &str, hog_objects: bool) -> Result<Value, JsonError> {
    let mut r =
        Reader { text, b: text.as_bytes(), i: 0, depth: 0, hog_objects, entries: Vec::new(), scratch: String::new() };
    r.ws();
    let v = r.value().map_err(|f| f.locate(text))?;
    r.ws();
    if r.i < r.b.len() {
        return Err(r.error("trailing characters").locate(text));
    }
    Ok(v)
}

/// Reads a JSON object's members in order without building their values: `f` gets each key
/// (decoded) and the value's text exactly as written (a string with its quotes and escapes; see
/// [`string_literal`]). With `decode = Some((key, out))`, the string value of that key is also
/// decoded into `out` as it is read (one pass over it, for a record's big field); `out` is left
/// empty when the key is missing or its value is not a string.
pub fn object_members<'a>(
    text: &'a str,
    decode: Option<(&str, &mut String)>,
    f: impl FnMut(Cow<'a, str>, &'a str),
) -> Result<(), JsonError> {
    members(text, decode, f).map_err(|fail| fail.locate(text))
}

fn members<'a>(
    text: &'a str,
    mut decode: Option<(&str, &mut String)>,
    mut f: impl FnMut(Cow<'a, str>, &'a str),
) -> Result<(), Fail> {
    if let Some((_, out)) = &mut decode {
        out.clear();
    }
    let mut r = Reader {
        text,
        b: text.as_bytes(),
        i: 0,
        depth: 1,
        hog_objects: false,
        entries: Vec::new(),
        scratch: String::new(),
    };
    r.ws();
    if r.b.get(r.i) != Some(&b'{') {
        return Err(r.error("expected an object"));
    }
    r.i += 1;
    r.ws();
    if r.b.get(r.i) == Some(&b'}') {
        r.i += 1;
    } else {
        loop {
            r.ws();
            if r.b.get(r.i) != Some(&b'"') {
                return Err(r.error("expected a string key"));
            }
            let start = r.i;
            r.skip_string()?;
            let key = string_literal(&text[start..r.i]).map_err(|_| Fail(start, "invalid escape in a key"))?;
            r.ws();
            if r.b.get(r.i) != Some(&b':') {
                return Err(r.error("expected `:`"));
            }
            r.i += 1;
            r.ws();
            let start = r.i;
            match (&mut decode, r.b.get(r.i)) {
                (Some((wanted, out)), Some(b'"')) if *wanted == &*key => {
                    out.clear();
                    r.i = decode_run(text, r.i + 1, out)?;
                    if r.b.get(r.i) != Some(&b'"') {
                        return Err(r.error("unfinished string"));
                    }
                    r.i += 1;
                }
                (_, Some(b'"')) => r.skip_string()?,
                _ => {
                    r.value()?;
                }
            }
            f(key, &text[start..r.i]);
            if r.object_ends()? {
                break;
            }
        }
    }
    r.ws();
    if r.i < r.b.len() {
        return Err(r.error("trailing characters"));
    }
    Ok(())
}

/// The text of a JSON string literal given with its quotes (as [`object_members`] gives it):
/// borrowed when it has no escapes.
pub fn string_literal(raw: &str) -> Result<Cow<'_, str>, JsonError> {
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')).filter(|_| raw.len() >= 2) else {
        return Err(locate(raw, 0, "expected a string"));
    };
    if !inner.as_bytes().contains(&b'\\') {
        return Ok(Cow::Borrowed(inner));
    }
    let mut out = String::new();
    unescape_string(inner, &mut out).map_err(|mut e| {
        e.column += 1;
        e
    })?;
    Ok(Cow::Owned(out))
}

/// Decodes the contents of a JSON string literal (the text between its quotes, escapes and all)
/// into `out`, which is cleared first. Lone UTF-16 surrogates become U+FFFD.
pub fn unescape_string(raw: &str, out: &mut String) -> Result<(), JsonError> {
    out.clear();
    let end = decode_run(raw, 0, out).map_err(|f| f.locate(raw))?;
    if end < raw.len() {
        return Err(locate(raw, end, "unescaped quote in a string"));
    }
    Ok(())
}

/// Decodes string content from `i` into `out` up to an unescaped quote or the end of `text`;
/// returns where it stopped.
///
/// Built for a record's `data` (an event's JSON in a string: a quote escaped every few bytes):
/// plain bytes are copied a word at a time into a buffer with a word of room to spare, so a run
/// between two escapes costs a few instructions, not a call to `memcpy`.
fn decode_run(text: &str, mut i: usize, out: &mut String) -> Result<usize, Fail> {
    let b = text.as_bytes();
    let mut buf = std::mem::take(out).into_bytes();
    let mut o = buf.len();
    // Decoded text is never longer than its escaped form.
    buf.resize(o + b.len().saturating_sub(i) + 8, 0);
    let result = loop {
        while let Some(chunk) = b.get(i..i + 8) {
            buf[o..o + 8].copy_from_slice(chunk);
            let flags = special_flags(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
            if flags != 0 {
                let plain = (flags.trailing_zeros() / 8) as usize;
                i += plain;
                o += plain;
                break;
            }
            i += 8;
            o += 8;
        }
        while let Some(&c) = b.get(i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                break;
            }
            buf[o] = c;
            o += 1;
            i += 1;
        }
        match b.get(i) {
            None | Some(b'"') => break Ok(i),
            // The common escape (every quote of an event's JSON), without the general decoder.
            Some(b'\\') if b.get(i + 1) == Some(&b'"') => {
                buf[o] = b'"';
                o += 1;
                i += 2;
            }
            Some(b'\\') => match escaped(b, i) {
                Ok((c, next)) => {
                    o += c.encode_utf8(&mut buf[o..o + 4]).len();
                    i = next;
                }
                Err((at, m)) => break Err(Fail(at, m)),
            },
            Some(_) => break Err(Fail(i, "control character in a string")),
        }
    };
    buf.truncate(o);
    // Whole UTF-8 sequences were copied (every stop is at an ASCII byte) and escapes decode to
    // whole chars, so this cannot fail; if it did, nothing is lost but this string.
    match String::from_utf8(buf) {
        Ok(decoded) => *out = decoded,
        Err(_) => return Err(Fail(i, "invalid UTF-8 in a string")),
    }
    result
}

/// The high bit of each byte of `w` that is `"`, `\\` or a control character (exact for the
/// lowest flagged byte, which is the one used).
#[inline(always)]
fn special_flags(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = w ^ (ONES * u64::from(b'"'));
    let slash = w ^ (ONES * u64::from(b'\\'));
    (quote.wrapping_sub(ONES) & !quote | slash.wrapping_sub(ONES) & !slash | w.wrapping_sub(ONES * 0x20) & !w) & HIGH
}

/// The index of the first byte at or after `from` that is `"`, `\\` or a control character (or
/// `b.len()`), eight bytes at a time: strings are mostly plain runs between escapes.
#[inline]
fn special(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let flags = special_flags(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

/// Decodes the escape at `b[i] == '\\'` into `out`; returns the index after it.
fn escape(text: &str, i: usize, out: &mut String) -> Result<usize, (usize, &'static str)> {
    let (c, next) = escaped(text.as_bytes(), i)?;
    out.push(c);
    Ok(next)
}

/// The char of the escape at `b[i] == '\\'`, and the index after it.
fn escaped(b: &[u8], i: usize) -> Result<(char, usize), (usize, &'static str)> {
    let c = match b.get(i + 1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => {
            let unit = hex4(b, i + 2).ok_or((i, "invalid \\u escape"))?;
            let (c, next) = match unit {
                0xd800..=0xdbff => match (b.get(i + 6), b.get(i + 7), hex4(b, i + 8)) {
                    (Some(b'\\'), Some(b'u'), Some(low @ 0xdc00..=0xdfff)) => {
                        let code = 0x10000 + ((u32::from(unit) - 0xd800) << 10) + (u32::from(low) - 0xdc00);
                        (char::from_u32(code).unwrap_or('\u{fffd}'), i + 12)
                    }
                    _ => ('\u{fffd}', i + 6),
                },
                0xdc00..=0xdfff => ('\u{fffd}', i + 6),
                _ => (char::from_u32(u32::from(unit)).unwrap_or('\u{fffd}'), i + 6),
            };
            return Ok((c, next));
        }
        Some(_) => return Err((i, "invalid escape")),
        None => return Err((i, "unfinished escape")),
    };
    Ok((c, i + 2))
}

fn hex4(b: &[u8], at: usize) -> Option<u16> {
    let digits = b.get(at..at + 4)?;
    let mut n = 0u16;
    for &d in digits {
        n = n * 16 + (d as char).to_digit(16)? as u16;
    }
    Some(n)
}

fn locate(text: &str, at: usize, message: &str) -> JsonError {
    let before = &text.as_bytes()[..at.min(text.len())];
    let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
    let column = at - before.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1) + 1;
    JsonError { message: message.to_string(), line, column }
}

/// A reading failure inside the reader: where and what (small, so results stay cheap to move).
struct Fail(usize, &'static str);

impl Fail {
    fn locate(self, text: &str) -> JsonError {
        locate(text, self.0, self.1)
    }
}

struct Reader<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    depth: usize,
    /// Revive serialized Hog objects (see [`read`]).
    hog_objects: bool,
    /// Entries of the objects being read (each object uses the top of the stack).
    entries: Vec<(Key, Value)>,
    /// Strings with escapes are decoded here.
    scratch: String,
}

impl Reader<'_> {
    fn error(&self, message: &'static str) -> Fail {
        Fail(self.i, message)
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn value(&mut self) -> Result<Value, Fail> {
        match self.b.get(self.i) {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => Ok(Value::Str(self.string(false)?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn nested(&mut self, read: fn(&mut Self) -> Result<Value, Fail>) -> Result<Value, Fail> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.depth += 1;
        let v = read(self);
        self.depth -= 1;
        v
    }

    fn literal(&mut self, word: &str, v: Value) -> Result<Value, Fail> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// After an object member: true at the closing `}`, false at `,` (both consumed).
    fn object_ends(&mut self) -> Result<bool, Fail> {
        self.ws();
        let end = match self.b.get(self.i) {
            Some(b',') => false,
            Some(b'}') => true,
            _ => return Err(self.error("expected `,` or `}`")),
        };
        self.i += 1;
        Ok(end)
    }

    /// Moves past the string at `"` without decoding it (escapes are checked when decoded).
    fn skip_string(&mut self) -> Result<(), Fail> {
        self.i += 1;
        loop {
            self.i = special(self.b, self.i);
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') if self.i + 1 < self.b.len() => self.i += 2,
                Some(b'\\') | None => return Err(self.error("unfinished string")),
                Some(_) => return Err(self.error("control character in a string")),
            }
        }
    }

    /// A string at `"`; returns its text and moves past the closing quote. Keys without escapes
    /// come from the thread's cache of short texts (`Text::interned`).
    fn string(&mut self, key: bool) -> Result<Text, Fail> {
        self.i += 1;
        let start = self.i;
        self.i = special(self.b, self.i);
        match self.b.get(self.i) {
            Some(b'"') => {
                let text = &self.text[start..self.i];
                let t = if key { Text::interned(text) } else { Text::from(text) };
                self.i += 1;
                return Ok(t);
            }
            Some(b'\\') => {}
            Some(_) => return Err(self.error("control character in a string")),
            None => return Err(self.error("unfinished string")),
        }
        // Escapes: decode into the scratch buffer.
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        out.push_str(&self.text[start..self.i]);
        let mut run = self.i;
        let result = loop {
            self.i = special(self.b, self.i);
            match self.b.get(self.i) {
                Some(b'"') => {
                    out.push_str(&self.text[run..self.i]);
                    self.i += 1;
                    break Ok(Text::from(out.as_str()));
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..self.i]);
                    match escape(self.text, self.i, &mut out) {
                        Ok(next) => self.i = next,
                        Err((at, m)) => break Err(Fail(at, m)),
                    }
                    run = self.i;
                }
                Some(_) => break Err(self.error("control character in a string")),
                None => break Err(self.error("unfinished string")),
            }
        };
        self.scratch = out;
        result
    }

    fn number(&mut self) -> Result<Value, Fail> {
        let start = self.i;
        let b = self.b;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        let mut i = self.i;
        if b[i] == b'-' {
            i += 1;
        }
        let int_start = i;
        if !digits(&mut i) {
            self.i = i;
            return Err(self.error("invalid number"));
        }
        if b[int_start] == b'0' && i - int_start > 1 {
            self.i = int_start + 1;
            return Err(self.error("invalid number: leading zero"));
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            integer = false;
            if !digits(&mut i) {
                self.i = i;
                return Err(self.error("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            integer = false;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                self.i = i;
                return Err(self.error("invalid number"));
            }
        }
        self.i = i;
        let text = &self.text[start..i];
        if integer {
            // As serde_json: integers that fit go through u64 / i64 (so `-0` is 0).
            if let Ok(n) = text.parse::<u64>() {
                return Ok(Value::Number(n as f64));
            }
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Value::Number(n as f64));
            }
        }
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Value::Number(n)),
            _ => {
                self.i = start;
                Err(self.error("number out of range"))
            }
        }
    }

    fn array(&mut self) -> Result<Value, Fail> {
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            return Ok(Value::array(items));
        }
        loop {
            self.ws();
            items.push(self.value()?);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::array(items));
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    fn object(&mut self) -> Result<Value, Fail> {
        self.i += 1;
        let mark = self.entries.len();
        let result = self.object_entries(mark);
        self.entries.truncate(mark);
        result
    }

    fn object_entries(&mut self, mark: usize) -> Result<Value, Fail> {
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(Value::dict(Dict::default()));
        }
        // Past SMALL_MAX entries the object goes into a hashed dict.
        let mut large: Option<Dict> = None;
        let mut index_keys = false;
        let mut hog_keys = false;
        // One bit per key length (modulo 64) seen in this object: a key whose length bit is not
        // set cannot repeat an earlier key, so most keys skip the search for a duplicate.
        let mut lengths = 0u64;
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(self.error("expected a string key"));
            }
            let k = self.string(true)?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(self.error("expected `:`"));
            }
            self.i += 1;
            self.ws();
            index_keys |= array_index(&k).is_some();
            hog_keys |= self.hog_objects && k.starts_with("__hog");
            let v = self.value()?;
            match &mut large {
                Some(d) => {
                    d.insert(Key::Str(k), v);
                }
                None => {
                    let bit = 1u64 << (k.len() % 64);
                    let same = if lengths & bit == 0 {
                        None
                    } else {
                        self.entries[mark..].iter().position(|(e, _)| {
                            matches!(e, Key::Str(s) if s.as_ptr() == k.as_ptr() || same_bytes(s.as_bytes(), k.as_bytes()))
                        })
                    };
                    lengths |= bit;
                    match same {
                        Some(at) => self.entries[mark + at].1 = v,
                        None if self.entries.len() - mark < SMALL_MAX => self.entries.push((Key::Str(k), v)),
                        None => {
                            let mut d = Dict::with_capacity(2 * SMALL_MAX);
                            for (k, v) in self.entries.drain(mark..) {
                                d.insert(k, v);
                            }
                            d.insert(Key::Str(k), v);
                            large = Some(d);
                        }
                    }
                }
            }
            if self.object_ends()? {
                break;
            }
        }
        let mut d = match large {
            Some(d) => d,
            None => {
                // An event and its properties (the outer two levels) get room for the few keys
                // transformations add, saving a reallocation; deeper objects are exact.
                let room = if self.depth <= 2 { 4 } else { 0 };
                let mut entries = Vec::with_capacity(self.entries.len() - mark + room);
                entries.extend(self.entries.drain(mark..));
                Dict::Small(entries)
            }
        };
        if index_keys {
            js_key_order(&mut d);
        }
        if hog_keys {
            if let Some(v) = hog_object(&d) {
                return Ok(v);
            }
        }
        Ok(Value::dict(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: serde_json's own `Value` (lone surrogates replaced first, which it refuses),
    /// converted by `from_json`, with JavaScript's key order applied.
    fn serde_way(text: &str) -> Result<String, ()> {
        fn js_order(v: &Value) {
            match v {
                Value::Dict(d) => {
                    let mut d = d.borrow_mut();
                    if d.keys().any(|k| k.as_ref_str().is_some_and(|s| array_index(s).is_some())) {
                        js_key_order(&mut d);
                    }
                    d.values().for_each(js_order);
                }
                Value::Array(a) => a.borrow().iter().for_each(js_order),
                _ => {}
            }
        }
        let fixed = replace_lone_surrogates(text);
        let json: serde_json::Value = serde_json::from_str(fixed.as_deref().unwrap_or(text)).map_err(|_| ())?;
        let v = crate::value::from_json(&json);
        js_order(&v);
        Ok(v.repr())
    }

    /// The text with every `\uXXXX` escape of a lone surrogate replaced by `\ufffd`, or None.
    fn replace_lone_surrogates(text: &str) -> Option<String> {
        let b = text.as_bytes();
        let unit_at = |i: usize| -> Option<u16> {
            if b.get(i) != Some(&b'\\') || b.get(i + 1) != Some(&b'u') {
                return None;
            }
            u16::from_str_radix(text.get(i + 2..i + 6)?, 16).ok()
        };
        let (mut out, mut copied, mut i) = (None::<String>, 0, 0);
        while i < b.len() {
            if b[i] != b'\\' {
                i += 1;
                continue;
            }
            let Some(unit) = unit_at(i) else {
                i += 2; // some other escape: skip the escaped character
                continue;
            };
            let lone = match unit {
                0xd800..=0xdbff if matches!(unit_at(i + 6), Some(0xdc00..=0xdfff)) => {
                    i += 12; // a proper pair
                    continue;
                }
                0xd800..=0xdfff => true,
                _ => false,
            };
            if lone {
                let s = out.get_or_insert_with(String::new);
                s.push_str(&text[copied..i]);
                s.push_str("\\ufffd");
                copied = i + 6;
            }
            i += 6;
        }
        let mut s = out?;
        s.push_str(&text[copied..]);
        Some(s)
    }

    fn ours(text: &str) -> Result<String, ()> {
        read_json(text).map(|v| v.repr()).map_err(|_| ())
    }

    fn json_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
            prop::sample::select(vec!["-0", "0.5e-3", "1E+2", "123456789012345678901234567890", "-0.0", "1e400"])
                .prop_map(str::to_string),
            any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
            // Escapes of every kind, surrogate pairs and lone surrogates.
            prop::collection::vec(
                prop::sample::select(vec![
                    "a",
                    "\\n",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\b",
                    "\\f",
                    "\\r",
                    "\\t",
                    "\\u00e9",
                    "\\ud83d\\ude00",
                    "\\ud83d",
                    "\\ude00x",
                    "é",
                    "😀",
                    "\\u0000",
                ]),
                0..6
            )
            .prop_map(|parts| format!("\"{}\"", parts.concat())),
        ];
        leaf.prop_recursive(4, 48, 8, |inner| {
            let key = prop::sample::select(vec!["a", "b", "0", "1", "10", "01", "$x", "a\\\"b", "4294967294", "é"]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(|items| format!("[{}]", items.join(","))),
                prop::collection::vec((key, inner), 0..20).prop_map(|entries| {
                    let parts: Vec<String> = entries.iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
                    format!("{{ {} }}", parts.join(" ,\n"))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn reads_json_exactly_as_the_serde_parser(text in json_text()) {
            prop_assert_eq!(ours(&text), serde_way(&text), "{}", text);
        }

        #[test]
        fn broken_json_fails_as_with_serde(text in json_text(), cut in 0usize..200, junk in "[\\]\\[{},:\"\\\\a-z0-9 ]{0,3}") {
            let cut = text.char_indices().map(|(i, _)| i).nth(cut % (text.chars().count() + 1)).unwrap_or(text.len());
            let broken = format!("{}{}{}", &text[..cut], junk, &text[cut..]);
            prop_assert_eq!(ours(&broken).is_ok(), serde_way(&broken).is_ok(), "{}", broken);
            if let (Ok(a), Ok(b)) = (ours(&broken), serde_way(&broken)) {
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn object_members_are_what_serde_reads(text in json_text(), cut in 0usize..300) {
            let serde_members: Result<serde_json::Map<String, serde_json::Value>, _> = serde_json::from_str(&text);
            let mut members = Vec::new();
            let ours = object_members(&text, None, |k, raw| members.push((k.into_owned(), raw.to_string())));
            match serde_members {
                Ok(map) => {
                    prop_assert!(ours.is_ok(), "{}", text);
                    // Duplicate keys: serde keeps the last value.
                    let mut last = std::collections::HashMap::new();
                    for (k, raw) in &members {
                        last.insert(k.clone(), raw.clone());
                    }
                    prop_assert_eq!(last.len(), map.len());
                    for (k, v) in &map {
                        let raw = &last[k];
                        prop_assert_eq!(&serde_json::from_str::<serde_json::Value>(raw).unwrap(), v);
                        if let serde_json::Value::String(s) = v {
                            prop_assert_eq!(string_literal(raw).unwrap(), s.as_str());
                            let mut decoded = String::new();
                            object_members(&text, Some((k, &mut decoded)), |_, _| ()).unwrap();
                            prop_assert_eq!(&decoded, s);
                        }
                    }
                }
                // serde refuses it: ours accepts exactly the objects our reader accepts (lone
                // surrogates), and nothing else (escapes generated here are all valid).
                Err(_) => {
                    let object = matches!(read_json(&text), Ok(Value::Dict(_)));
                    prop_assert_eq!(ours.is_ok(), object, "{}", text);
                }
            }
            // Cut short, it is never accepted.
            let cut = text.char_indices().map(|(i, _)| i).nth(cut % (text.chars().count().max(1))).unwrap_or(0);
            if serde_json::from_str::<serde_json::Value>(&text[..cut]).is_err() {
                let short = object_members(&text[..cut], None, |_, _| ());
                prop_assert!(short.is_err(), "{}", &text[..cut]);
            }
        }

        #[test]
        fn escaped_text_unescapes_as_serde_reads_the_string(text in json_text()) {
            let literal = serde_json::to_string(&text).unwrap();
            let mut out = String::new();
            unescape_string(&literal[1..literal.len() - 1], &mut out).unwrap();
            prop_assert_eq!(out, text);
        }
    }

    #[test]
    fn string_literals_borrow_unless_escaped() {
        assert!(matches!(string_literal("\"plain é\"").unwrap(), Cow::Borrowed("plain é")));
        assert_eq!(string_literal("\"a\\\"b\\u00e9\"").unwrap(), "a\"bé");
        assert!(string_literal("\"").is_err());
        assert!(string_literal("12").is_err());
        let e = string_literal("\"ab\\q\"").unwrap_err();
        assert_eq!((e.line, e.column), (1, 4), "{e}");
        let mut seen = Vec::new();
        let mut decoded = String::from("old");
        let text = " { \"a\" : \"x\\ny\", \"b\": [1, {\"c\": null}], \"d\": -1.5e3 } ";
        object_members(text, Some(("a", &mut decoded)), |k, raw| seen.push((k.into_owned(), raw.to_string()))).unwrap();
        assert_eq!(decoded, "x\ny");
        object_members(text, Some(("b", &mut decoded)), |_, _| ()).unwrap();
        assert_eq!(decoded, "", "not a string: not decoded");
        let e = object_members("{\"a\": \"x\\qy\"}", Some(("a", &mut decoded)), |_, _| ()).unwrap_err();
        assert_eq!((e.line, e.column, e.message.as_str()), (1, 9, "invalid escape"));
        assert!(object_members("{\"a\": \"xy", Some(("a", &mut decoded)), |_, _| ()).is_err());
        let expected = [("a", "\"x\\ny\""), ("b", "[1, {\"c\": null}]"), ("d", "-1.5e3")];
        assert_eq!(seen, expected.map(|(k, v)| (k.to_string(), v.to_string())));
        assert!(object_members("[1]", None, |_, _| {}).unwrap_err().message.contains("expected an object"));
        assert!(object_members("{\"a\": 1} x", None, |_, _| {}).is_err());
    }

    #[test]
    fn special_bytes_are_found_at_every_position() {
        for len in 0..20 {
            let plain: Vec<u8> = "aé€😀".bytes().cycle().take(len).collect();
            assert_eq!(special(&plain, 0), len);
            for at in 0..len {
                for c in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut b = plain.clone();
                    b[at] = c;
                    assert_eq!(special(&b, 0), at, "{c} at {at} of {len}");
                    assert_eq!(special(&b, at), at);
                }
            }
        }
    }

    #[test]
    fn nesting_limit_is_serdes() {
        for depth in [126, 127, 128, 129] {
            for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
                let text = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                assert_eq!(ours(&text).is_ok(), serde_way(&text).is_ok(), "depth {depth} of {open}");
            }
        }
    }

    #[test]
    fn errors_say_where() {
        let e = read_json("{\"a\": [1, 2,\n  tru]}").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3), "{e}");
        assert!(e.to_string().contains("expected a value at line 2 column 3"), "{e}");
        assert!(read_json("[".repeat(200).as_str()).unwrap_err().message.contains("recursion limit"));
        assert!(read_json(&format!("{}{}", "[".repeat(127), "]".repeat(127))).is_ok());
        let mut out = String::new();
        assert!(unescape_string("bad \\x escape", &mut out).unwrap_err().to_string().contains("column 5"));
        unescape_string("lone \\ud800 and pair \\ud83d\\ude00", &mut out).unwrap();
        assert_eq!(out, "lone \u{fffd} and pair 😀");
    }

    #[test]
    fn large_objects_keep_first_positions_and_last_values() {
        let mut text = String::from("{");
        for i in 0..40 {
            text += &format!("\"k{}\": {i},", i % 25);
        }
        text += "\"3\": \"index first\"}";
        assert_eq!(ours(&text), serde_way(&text));
        let v = read_json(&text).unwrap();
        let Value::Dict(d) = &v else { panic!() };
        let d = d.borrow();
        assert_eq!(d.len(), 26);
        assert_eq!(d.keys().next().and_then(|k| k.as_ref_str()), Some("3"));
        assert!(matches!(d.get(&Key::str("k0")), Some(Value::Number(n)) if *n == 25.0));
    }
}
