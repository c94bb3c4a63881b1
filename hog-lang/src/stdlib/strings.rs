//! Strings: `concat`, `lower`, `upper`, `trim`, `trimLeft`, `trimRight`, `reverse`, `replaceAll`,
//! `replaceOne`, `splitByString`, `startsWith`, `substring`, `position`, `positionCaseInsensitive`,
//! `like`, `ilike`, `notLike`, `notILike`, `match`, `extractRegex`,
//! `multiSearchAnyCaseInsensitive`, `arrayStringConcat`, `toUUID`.
//!
//! PostHog runs these on JavaScript strings, so positions and lengths count UTF-16 code units and
//! arguments of other types are coerced with JavaScript's `String(x)` where PostHog's VM does so.
//! Where JavaScript would cut a surrogate pair (an emoji) in half, the lone half becomes U+FFFD,
//! which is what Node prints for it; BMP text (accents, CJK) behaves exactly as in PostHog.

use super::coerce::{js_number, js_scalar_string, js_string, too_large, MAX_BYTES, MAX_DEPTH};
use super::{print::value_to_string, Ctx, NativeFunction, NativeResult, StdlibError};
use crate::value::Value;
use crate::vm::{self, InvalidRegex};
use std::borrow::Cow;
use std::rc::Rc;

/// The strings family.
pub const FUNCTIONS: &[NativeFunction] = &[
    NativeFunction {
        name: "concat",
        signature: "concat(...values) -> string",
        description: "Joins the values as strings (as toString shows them); null counts as ''",
        min_args: 1,
        max_args: None,
        func: concat,
        examples: &[
            ("concat('a', 1, null, true)", "'a1true'"),
            ("concat('x', [1, 'b'])", "'x[1, \\'b\\']'"),
            ("concat(null)", "''"),
        ],
    },
    NativeFunction {
        name: "lower",
        signature: "lower(s: string) -> string",
        description: "Lowercase (Unicode rules, as JavaScript's toLowerCase); null stays null",
        min_args: 1,
        max_args: Some(1),
        func: lower,
        examples: &[
            ("lower('ÀBC')", "'àbc'"),
            ("lower(null)", "null"),
            ("lower(1)", "error: argument 1 must be a string, got integer"),
        ],
    },
    NativeFunction {
        name: "upper",
        signature: "upper(s: string) -> string",
        description: "Uppercase (Unicode rules, as JavaScript's toUpperCase: 'ß' becomes 'SS'); null stays null",
        min_args: 1,
        max_args: Some(1),
        func: upper,
        examples: &[
            ("upper('straße')", "'STRASSE'"),
            ("upper(null)", "null"),
            ("upper([])", "error: argument 1 must be a string, got array"),
        ],
    },
    NativeFunction {
        name: "trim",
        signature: "trim(s: string, char?: string) -> string",
        description: "Removes a character (default: space only) from both ends; '' when char is not exactly one character; null stays null",
        min_args: 1,
        max_args: Some(2),
        func: trim,
        examples: &[
            ("trim('  a b  ')", "'a b'"),
            ("trim('xxaxx', 'x')", "'a'"),
            ("trim('xxaxx', 'xx')", "''"),
            ("trim(null)", "null"),
            ("trim(1)", "error: argument 1 must be a string, got integer"),
        ],
    },
    NativeFunction {
        name: "trimLeft",
        signature: "trimLeft(s: string, char?: string) -> string",
        description: "Removes a character (default: space only) from the start; '' when char is not exactly one character; null stays null",
        min_args: 1,
        max_args: Some(2),
        func: trim_left,
        examples: &[
            ("trimLeft('  a  ')", "'a  '"),
            ("trimLeft('--a-', '-')", "'a-'"),
            ("trimLeft(null)", "null"),
            ("trimLeft(true)", "error: argument 1 must be a string, got boolean"),
        ],
    },
    NativeFunction {
        name: "trimRight",
        signature: "trimRight(s: string, char?: string) -> string",
        description: "Removes a character (default: space only) from the end; '' when char is not exactly one character; null stays null",
        min_args: 1,
        max_args: Some(2),
        func: trim_right,
        examples: &[
            ("trimRight('  a  ')", "'  a'"),
            ("trimRight('-a--', '-')", "'-a'"),
            ("trimRight(null)", "null"),
            ("trimRight({})", "error: argument 1 must be a string, got object"),
        ],
    },
    NativeFunction {
        name: "reverse",
        signature: "reverse(s: string) -> string",
        description: "The string backwards (by UTF-16 units, as JavaScript: a reversed emoji prints as two U+FFFD); null stays null",
        min_args: 1,
        max_args: Some(1),
        func: reverse,
        examples: &[
            ("reverse('abc')", "'cba'"),
            ("reverse('héllo')", "'olléh'"),
            ("reverse('a😀')", "'\u{FFFD}\u{FFFD}a'"),
            ("reverse(null)", "null"),
            ("reverse(12)", "error: argument 1 must be a string, got integer"),
        ],
    },
    NativeFunction {
        name: "replaceAll",
        signature: "replaceAll(s: string, search: string, replacement: string) -> string",
        description: "Replaces every occurrence of search (JavaScript's replaceAll: '$&' in the replacement is the match, '$$' a dollar); null stays null",
        min_args: 3,
        max_args: Some(3),
        func: replace_all,
        examples: &[
            ("replaceAll('a-b-c', '-', '+')", "'a+b+c'"),
            ("replaceAll('abc', '', '.')", "'.a.b.c.'"),
            ("replaceAll('a1b1', 1, '[$&]')", "'a[1]b[1]'"),
            ("replaceAll(null, 'a', 'b')", "null"),
            ("replaceAll(5, 'a', 'b')", "error: argument 1 must be a string, got integer"),
        ],
    },
    NativeFunction {
        name: "replaceOne",
        signature: "replaceOne(s: string, search: string, replacement: string) -> string",
        description: "Replaces the first occurrence of search (JavaScript's replace with a string pattern); null stays null",
        min_args: 3,
        max_args: Some(3),
        func: replace_one,
        examples: &[
            ("replaceOne('a-b-c', '-', '+')", "'a+b-c'"),
            ("replaceOne('abc', 'b', '$$')", "'a$c'"),
            ("replaceOne(null, 'a', 'b')", "null"),
            ("replaceOne([], 'a', 'b')", "error: argument 1 must be a string, got array"),
        ],
    },
    NativeFunction {
        name: "splitByString",
        signature: "splitByString(separator: string, s: string, limit?: integer) -> array",
        description: "Splits s on separator (JavaScript's split: at most limit parts, the rest dropped; '' splits into characters); null s gives null",
        min_args: 2,
        max_args: Some(3),
        func: split_by_string,
        examples: &[
            ("splitByString(',', 'a,b,,c')", "['a', 'b', '', 'c']"),
            ("splitByString(',', 'a,b,c', 2)", "['a', 'b']"),
            ("splitByString('', 'abc')", "['a', 'b', 'c']"),
            ("splitByString(',', null)", "null"),
            ("splitByString(',', 5)", "error: argument 2 must be a string, got integer"),
        ],
    },
    NativeFunction {
        name: "startsWith",
        signature: "startsWith(s: string, prefix: string) -> boolean",
        description: "Whether s begins with prefix; false unless both are strings",
        min_args: 2,
        max_args: Some(2),
        func: starts_with,
        examples: &[
            ("startsWith('hello', 'he')", "true"),
            ("startsWith('hello', '')", "true"),
            ("startsWith(12, '1')", "false"),
        ],
    },
    NativeFunction {
        name: "substring",
        signature: "substring(s: string, start: integer, length?: integer) -> string",
        description: "length characters (UTF-16 units) from the 1-based start, or to the end; '' when start < 1, length < 0 or s is not a string",
        min_args: 2,
        max_args: Some(3),
        func: substring,
        examples: &[
            ("substring('hello', 2, 3)", "'ell'"),
            ("substring('hello', 3)", "'llo'"),
            ("substring('hello', 0, 2)", "''"),
            ("substring('a😀b', 2, 2)", "'😀'"),
            ("substring(null, 1)", "''"),
        ],
    },
    NativeFunction {
        name: "position",
        signature: "position(s: string, needle: string) -> integer",
        description: "1-based position (in UTF-16 units) of the first needle in s, 0 when missing or s is not a string",
        min_args: 2,
        max_args: Some(3),
        func: position,
        examples: &[
            ("position('hello', 'l')", "3"),
            ("position('hello', 'z')", "0"),
            ("position('a5', 5)", "2"),
            ("position(null, 'a')", "0"),
        ],
    },
    NativeFunction {
        name: "positionCaseInsensitive",
        signature: "positionCaseInsensitive(s: string, needle: string) -> integer",
        description: "position, ignoring case (both sides lowercased first)",
        min_args: 2,
        max_args: Some(3),
        func: position_case_insensitive,
        examples: &[
            ("positionCaseInsensitive('Hello', 'LL')", "3"),
            ("positionCaseInsensitive('Hello', 'z')", "0"),
            ("positionCaseInsensitive(null, 'a')", "0"),
        ],
    },
    NativeFunction {
        name: "like",
        signature: "like(s: string, pattern: string) -> boolean",
        description: "SQL LIKE, as the `like` operator: % any run, _ any one character, unanchored",
        min_args: 2,
        max_args: Some(2),
        func: like,
        examples: &[("like('hello', 'h%o')", "true"), ("like('hello', 'H%')", "false"), ("like(null, 'nu%')", "true")],
    },
    NativeFunction {
        name: "ilike",
        signature: "ilike(s: string, pattern: string) -> boolean",
        description: "Case-insensitive like",
        min_args: 2,
        max_args: Some(2),
        func: ilike,
        examples: &[("ilike('Hello', 'h%O')", "true"), ("ilike('Hello', 'x%')", "false")],
    },
    NativeFunction {
        name: "notLike",
        signature: "notLike(s: string, pattern: string) -> boolean",
        description: "not like(s, pattern)",
        min_args: 2,
        max_args: Some(2),
        func: not_like,
        examples: &[("notLike('hello', 'h%o')", "false"), ("notLike('hello', 'H%')", "true")],
    },
    NativeFunction {
        name: "notILike",
        signature: "notILike(s: string, pattern: string) -> boolean",
        description: "not ilike(s, pattern)",
        min_args: 2,
        max_args: Some(2),
        func: not_ilike,
        examples: &[("notILike('Hello', 'h%')", "false"), ("notILike('Hello', 'x%')", "true")],
    },
    NativeFunction {
        name: "match",
        signature: "match(s: string, regex: string) -> boolean",
        description: "Whether the regex (RE2 syntax) matches anywhere in s; false when either is null or ''",
        min_args: 2,
        max_args: Some(2),
        func: match_fn,
        examples: &[
            ("match('hello', '^h.*o$')", "true"),
            ("match('hello', 'z')", "false"),
            ("match(null, '.*')", "false"),
            ("match('a', '(')", "error: invalid regular expression"),
        ],
    },
    NativeFunction {
        name: "extractRegex",
        signature: "extractRegex(s: string, regex: string) -> string",
        description: "The first capture group of the first match (the whole match when the regex has no group), '' when none",
        min_args: 2,
        max_args: Some(2),
        func: extract_regex,
        examples: &[
            ("extractRegex('id=42;', 'id=(\\\\d+)')", "'42'"),
            ("extractRegex('abc123', '[0-9]+')", "'123'"),
            ("extractRegex('abc', 'z')", "''"),
            ("extractRegex(null, 'a')", "''"),
            ("extractRegex('a', '[')", "error: invalid regular expression"),
        ],
    },
    NativeFunction {
        name: "multiSearchAnyCaseInsensitive",
        signature: "multiSearchAnyCaseInsensitive(s: string, needles: array) -> integer",
        description: "1 when any needle occurs in s ignoring case, else 0 (also 0 for null or a non-array)",
        min_args: 2,
        max_args: Some(2),
        func: multi_search_any_ci,
        examples: &[
            ("multiSearchAnyCaseInsensitive('Hello World', ['xyz', 'WORLD'])", "1"),
            ("multiSearchAnyCaseInsensitive('Hello', ['x'])", "0"),
            ("multiSearchAnyCaseInsensitive(null, ['x'])", "0"),
        ],
    },
    NativeFunction {
        name: "arrayStringConcat",
        signature: "arrayStringConcat(array, separator?: string) -> string",
        description: "Joins the items as JavaScript's join does (null items are '', nested arrays joined with ','); '' for a non-array",
        min_args: 1,
        max_args: Some(2),
        func: array_string_concat,
        examples: &[
            ("arrayStringConcat(['a', 1, null, true], '-')", "'a-1--true'"),
            ("arrayStringConcat([1, [2, 3]])", "'12,3'"),
            ("arrayStringConcat(null, ',')", "''"),
        ],
    },
    NativeFunction {
        name: "toUUID",
        signature: "toUUID(value) -> string",
        description: "The value as a string, like toString (PostHog does not check the UUID format)",
        min_args: 1,
        max_args: Some(1),
        func: to_uuid,
        examples: &[
            ("toUUID('01890fb5-67a6-7a5c-b4e5-ac1ea8be6d9e')", "'01890fb5-67a6-7a5c-b4e5-ac1ea8be6d9e'"),
            ("toUUID(12)", "'12'"),
            ("toUUID(null)", "'null'"),
        ],
    },
];

/// Rough cost of one array item besides its text, for the size check of split results.
const ITEM_OVERHEAD: usize = 48;

fn regex_error(e: InvalidRegex) -> StdlibError {
    StdlibError::Invalid(e.to_string())
}

/// JavaScript's `Array.prototype.join` into `out`; `stack` holds the arrays being joined, so an
/// array met again inside itself gives '' as in V8.
fn join_into(
    items: &Rc<crate::value::ArrayCell>,
    sep: &str,
    out: &mut String,
    stack: &mut Vec<*const crate::value::ArrayCell>,
) -> Result<(), StdlibError> {
    let ptr = Rc::as_ptr(items);
    if stack.contains(&ptr) {
        return Ok(());
    }
    if stack.len() >= MAX_DEPTH {
        return Err(StdlibError::Invalid(format!("arrays nested deeper than {MAX_DEPTH} levels")));
    }
    stack.push(ptr);
    let items = items.borrow();
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        match v {
            Value::Null => {}
            Value::Str(s) => out.push_str(s),
            Value::Array(a) | Value::Tuple(a) => join_into(a, ",", out, stack)?,
            other => out.push_str(&js_scalar_string(other)),
        }
        if out.len() > MAX_BYTES {
            return Err(too_large());
        }
    }
    stack.pop();
    Ok(())
}

/// Length in UTF-16 code units, as JavaScript counts.
fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.encode_utf16().count()
    }
}

/// The UTF-16 index of byte offset `byte` (a char boundary) of `s`.
fn utf16_index(s: &str, byte: usize) -> usize {
    if s.is_ascii() {
        byte
    } else {
        s.get(..byte).map_or(0, |p| p.encode_utf16().count())
    }
}

/// UTF-16 units `start..end` of `s` (JavaScript's `slice`); half of a cut surrogate pair is U+FFFD.
fn utf16_slice(s: &str, start: usize, end: usize) -> String {
    if s.is_ascii() {
        let end = end.min(s.len());
        return s.get(start.min(end)..end).unwrap_or_default().to_string();
    }
    let mut out = String::new();
    let mut pos = 0usize;
    for c in s.chars() {
        if pos >= end {
            break;
        }
        let w = c.len_utf16();
        if pos >= start && pos + w <= end {
            out.push(c);
        } else if (pos + w).min(end) > pos.max(start) {
            out.push('\u{FFFD}');
        }
        pos += w;
    }
    out
}

/// Argument `i` as a string; `None` for null; an error for other types.
fn string_arg(args: &[Value], i: usize) -> Result<Option<&str>, StdlibError> {
    match args.get(i) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(other) => Err(StdlibError::wrong_type(i, "a string", other)),
    }
}

fn concat(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    // Built in the reused scratch buffer: one allocation for the result.
    let text = crate::value::Text::build(|out| {
        for a in args {
            match a {
                Value::Null => {}
                Value::Str(s) => out.push_str(s),
                Value::Number(n) => crate::value::push_number(out, *n),
                other => out.push_str(&value_to_string(other)),
            }
            if out.len() > MAX_BYTES {
                return Err(too_large());
            }
        }
        Ok(())
    })?;
    Ok(Value::Str(text))
}

/// `s` in upper or lower case: ASCII text (the common case) maps byte for byte, the same as the
/// full Unicode mapping, in one copy; other text goes through the full mapping.
fn map_case(s: &str, upper: bool) -> Value {
    if !s.is_ascii() {
        return Value::from(if upper { s.to_uppercase() } else { s.to_lowercase() });
    }
    Value::Str(crate::value::Text::ascii_case(s, upper))
}

fn lower(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(string_arg(args, 0)?.map(|s| map_case(s, false)).unwrap_or_default())
}

fn upper(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(string_arg(args, 0)?.map(|s| map_case(s, true)).unwrap_or_default())
}

fn reverse(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some(s) = string_arg(args, 0)? else { return Ok(Value::Null) };
    if s.is_ascii() {
        return Ok(Value::from(s.chars().rev().collect::<String>()));
    }
    let mut units: Vec<u16> = s.encode_utf16().collect();
    units.reverse();
    Ok(Value::from(String::from_utf16_lossy(&units)))
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Both,
    Left,
    Right,
}

fn trim(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    trim_side(args, Side::Both)
}

fn trim_left(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    trim_side(args, Side::Left)
}

fn trim_right(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    trim_side(args, Side::Right)
}

/// PostHog's trim: the character must be exactly one UTF-16 unit (else the result is ''), and
/// only that character is removed (by default a space, not other whitespace). Like PostHog, an
/// array is trimmed of items equal to the character.
fn trim_side(args: &[Value], side: Side) -> NativeResult {
    let target = super::arg(args, 0);
    if target.is_null() {
        return Ok(Value::Null);
    }
    // `Some(c)`: trim c. `None`: a one-item array, which equals no character (nothing trimmed).
    let ch: Option<char> = match args.get(1).unwrap_or(&Value::Null) {
        Value::Null => Some(' '),
        Value::Str(c) => {
            let mut it = c.chars();
            match (it.next(), it.next()) {
                (Some(c), None) if c.len_utf16() == 1 => Some(c),
                _ => return Ok(Value::from("")),
            }
        }
        Value::Array(a) | Value::Tuple(a) if a.borrow().len() == 1 => None,
        _ => return Ok(Value::from("")),
    };
    match &target {
        Value::Str(s) => {
            let Some(c) = ch else { return Ok(target.clone()) };
            let t = match side {
                Side::Both => s.trim_matches(c),
                Side::Left => s.trim_start_matches(c),
                Side::Right => s.trim_end_matches(c),
            };
            Ok(if t.len() == s.len() { target.clone() } else { Value::from(t) })
        }
        Value::Array(a) | Value::Tuple(a) => {
            let items = a.borrow();
            let is_c =
                |v: &Value| matches!((v, ch), (Value::Str(s), Some(c)) if s.len() == c.len_utf8() && s.starts_with(c));
            let mut start = 0;
            let mut end = items.len();
            if side != Side::Right {
                while start < end && is_c(&items[start]) {
                    start += 1;
                }
            }
            if side != Side::Left {
                while end > start && is_c(&items[end - 1]) {
                    end -= 1;
                }
            }
            if side == Side::Both && start >= end {
                return Ok(Value::from(""));
            }
            Ok(Value::array(items[start..end].to_vec()))
        }
        other => Err(StdlibError::wrong_type(0, "a string", other)),
    }
}

/// Appends JavaScript's `GetSubstitution` of `repl` for a match of `matched_len` bytes at byte
/// `pos` of `s`: `$$` is `$`, `$&` the match, `` $` `` the text before it, `$'` the text after;
/// anything else (including `$1`, as a string pattern has no groups) stays as written.
fn push_substitution(out: &mut String, repl: &str, s: &str, pos: usize, matched_len: usize) {
    let mut rest = repl;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let piece = match after.as_bytes().first() {
            Some(b'$') => Some("$"),
            Some(b'&') => s.get(pos..pos + matched_len),
            Some(b'`') => s.get(..pos),
            Some(b'\'') => s.get(pos + matched_len..),
            _ => None,
        };
        match piece {
            Some(p) => {
                out.push_str(p);
                rest = &after[1..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

/// The string, search text and replacement of replaceOne/replaceAll.
type ReplaceArgs<'a> = (&'a str, Cow<'a, str>, Cow<'a, str>);

/// The three arguments of replaceOne/replaceAll: `None` when the string is null.
fn replace_args(args: &[Value]) -> Result<Option<ReplaceArgs<'_>>, StdlibError> {
    let Some(s) = string_arg(args, 0)? else { return Ok(None) };
    let search = js_string(args.get(1).unwrap_or(&Value::Null))?;
    let repl = js_string(args.get(2).unwrap_or(&Value::Null))?;
    Ok(Some((s, search, repl)))
}

/// Where `needle` (not empty) first occurs in `hay` at or after `from` (a char boundary). Short
/// texts, the usual case (URLs, names), are searched for the needle's first byte and compared
/// there, which costs less than setting up `str::find`'s two-way searcher; longer ones use that
/// searcher, whose worst case stays linear.
fn find_at(hay: &str, needle: &str, from: usize) -> Option<usize> {
    let h = &hay.as_bytes()[from..];
    let n = needle.as_bytes();
    if h.len() > 256 {
        return hay[from..].find(needle).map(|p| from + p);
    }
    let first = *n.first()?;
    let mut i = 0;
    while let Some(j) = memchr::memchr(first, &h[i..]) {
        // A match of whole UTF-8 text starts on a char boundary.
        if h[i + j..].starts_with(n) {
            return Some(from + i + j);
        }
        i += j + 1;
    }
    None
}

fn replace_one(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some((s, search, repl)) = replace_args(args)? else { return Ok(Value::Null) };
    let found = if search.is_empty() { Some(0) } else { find_at(s, &search, 0) };
    let Some(pos) = found else { return Ok(args[0].clone()) };
    let mut out = String::with_capacity(s.len() + repl.len());
    out.push_str(&s[..pos]);
    push_substitution(&mut out, &repl, s, pos, search.len());
    if out.len() > MAX_BYTES {
        return Err(too_large());
    }
    out.push_str(&s[pos + search.len()..]);
    if out.len() > MAX_BYTES {
        return Err(too_large());
    }
    Ok(Value::from(out))
}

fn replace_all(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some((s, search, repl)) = replace_args(args)? else { return Ok(Value::Null) };
    if search.is_empty() {
        return replace_all_empty(s, &repl);
    }
    let Some(mut pos) = find_at(s, &search, 0) else { return Ok(args[0].clone()) };
    // Built in the reused scratch buffer: one allocation for the result.
    let text = crate::value::Text::build(|out| {
        let mut last = 0;
        loop {
            out.push_str(&s[last..pos]);
            push_substitution(out, &repl, s, pos, search.len());
            if out.len() > MAX_BYTES {
                return Err(too_large());
            }
            last = pos + search.len();
            match find_at(s, &search, last) {
                Some(next) => pos = next,
                None => break,
            }
        }
        out.push_str(&s[last..]);
        if out.len() > MAX_BYTES {
            return Err(too_large());
        }
        Ok(())
    })?;
    Ok(Value::Str(text))
}

/// `s.replaceAll('', repl)`: the replacement goes before every UTF-16 unit and at the end, so in
/// non-ASCII text it works on UTF-16 units (a surrogate pair split by it prints as two U+FFFD).
fn replace_all_empty(s: &str, repl: &str) -> NativeResult {
    if s.is_ascii() {
        let mut out = String::with_capacity(s.len() * (repl.len() + 1) + repl.len());
        for pos in 0..=s.len() {
            push_substitution(&mut out, repl, s, pos, 0);
            if let Some(c) = s.get(pos..pos + 1) {
                out.push_str(c);
            }
            if out.len() > MAX_BYTES {
                return Err(too_large());
            }
        }
        return Ok(Value::from(out));
    }
    let units: Vec<u16> = s.encode_utf16().collect();
    let repl_units: Vec<u16> = repl.encode_utf16().collect();
    let mut out: Vec<u16> = Vec::with_capacity(units.len() * (repl_units.len() + 1));
    for pos in 0..=units.len() {
        // GetSubstitution over UTF-16 units.
        let mut i = 0;
        while i < repl_units.len() {
            let u = repl_units[i];
            let next = repl_units.get(i + 1).copied();
            if u == u16::from(b'$') {
                match next.and_then(|n| u8::try_from(n).ok()) {
                    Some(b'$') => {
                        out.push(u);
                        i += 2;
                        continue;
                    }
                    Some(b'&') => {
                        i += 2;
                        continue;
                    }
                    Some(b'`') => {
                        out.extend_from_slice(&units[..pos]);
                        i += 2;
                        continue;
                    }
                    Some(b'\'') => {
                        out.extend_from_slice(&units[pos..]);
                        i += 2;
                        continue;
                    }
                    _ => {}
                }
            }
            out.push(u);
            i += 1;
        }
        if let Some(u) = units.get(pos) {
            out.push(*u);
        }
        // A UTF-16 unit becomes at most 3 bytes of UTF-8.
        if out.len() > MAX_BYTES / 3 {
            return Err(too_large());
        }
    }
    Ok(Value::from(String::from_utf16_lossy(&out)))
}

/// JavaScript's `ToUint32`.
fn to_uint32(x: f64) -> u32 {
    if !x.is_finite() {
        return 0;
    }
    let m = x.trunc().rem_euclid(4_294_967_296.0);
    if (0.0..4_294_967_296.0).contains(&m) {
        m as u32
    } else {
        0
    }
}

fn split_by_string(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some(s) = string_arg(args, 1)? else { return Ok(Value::Null) };
    let sep = js_string(args.first().unwrap_or(&Value::Null))?;
    let limit = match args.get(2).unwrap_or(&Value::Null) {
        Value::Null => u32::MAX as usize,
        other => to_uint32(js_number(other)?) as usize,
    };
    if limit == 0 {
        return Ok(Value::array(Vec::new()));
    }
    let check = |parts: usize| {
        if parts.saturating_mul(ITEM_OVERHEAD).saturating_add(s.len()) > MAX_BYTES {
            Err(too_large())
        } else {
            Ok(())
        }
    };
    if sep.is_empty() {
        // Every UTF-16 unit on its own (half of a surrogate pair is U+FFFD).
        let n = utf16_len(s).min(limit);
        check(n)?;
        let mut parts = Vec::with_capacity(n);
        'chars: for c in s.chars() {
            let piece = if c.len_utf16() == 1 { c } else { '\u{FFFD}' };
            for _ in 0..c.len_utf16() {
                if parts.len() >= limit {
                    break 'chars;
                }
                parts.push(Value::from(piece.to_string()));
            }
        }
        return Ok(Value::array(parts));
    }
    let mut parts = Vec::new();
    for p in s.split(&*sep) {
        if parts.len() >= limit {
            break;
        }
        parts.push(Value::from(p));
        if parts.len() % 4096 == 0 {
            check(parts.len())?;
        }
    }
    check(parts.len())?;
    Ok(Value::array(parts))
}

fn starts_with(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(match (args.first(), args.get(1)) {
        (Some(Value::Str(s)), Some(Value::Str(p))) => s.starts_with(&**p),
        _ => false,
    }))
}

/// PostHog's substring: `s.slice(start - 1, start - 1 + length)` in UTF-16 units, '' when the
/// start is before the string or the length negative; a length that is not a number means "to
/// the end". Fractions are truncated as JavaScript's slice does.
fn substring(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some(Value::Str(s)) = args.first() else { return Ok(Value::from("")) };
    let start = js_number(args.get(1).unwrap_or(&Value::Null))? - 1.0;
    let len = utf16_len(s) as f64;
    let length = match args.get(2) {
        Some(Value::Number(n)) => *n,
        _ => len - start,
    };
    // As in JavaScript, a NaN start gives '' and a NaN length an empty slice.
    if start.is_nan() || start < 0.0 || start >= len || length < 0.0 {
        return Ok(Value::from(""));
    }
    let end = start + length;
    let from = start.trunc();
    let to = if end.is_nan() { 0.0 } else { end.trunc().min(len) };
    if from >= to {
        return Ok(Value::from(""));
    }
    // Both are whole numbers in 0..=len here.
    Ok(Value::from(utf16_slice(s, from as usize, to as usize)))
}

fn position(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some(Value::Str(s)) = args.first() else { return Ok(Value::Number(0.0)) };
    let needle = js_string(args.get(1).unwrap_or(&Value::Null))?;
    Ok(Value::Number(s.find(&*needle).map_or(0, |i| utf16_index(s, i) + 1) as f64))
}

fn position_case_insensitive(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some(Value::Str(s)) = args.first() else { return Ok(Value::Number(0.0)) };
    let hay = s.to_lowercase();
    let needle = js_string(args.get(1).unwrap_or(&Value::Null))?.to_lowercase();
    Ok(Value::Number(hay.find(&needle).map_or(0, |i| utf16_index(&hay, i) + 1) as f64))
}

/// The value as a string value for the VM's matchers, coerced here with [`js_string`] (dicts are
/// `[object Map]`, arrays that contain themselves are safe).
fn as_string_value(v: &Value) -> Result<Cow<'_, Value>, StdlibError> {
    match v {
        Value::Str(_) => Ok(Cow::Borrowed(v)),
        other => Ok(Cow::Owned(Value::from(js_string(other)?.into_owned()))),
    }
}

fn like_impl(ctx: &mut Ctx<'_>, args: &[Value], case_insensitive: bool) -> Result<bool, StdlibError> {
    let s = as_string_value(args.first().unwrap_or(&Value::Null))?;
    let p = as_string_value(args.get(1).unwrap_or(&Value::Null))?;
    vm::like(ctx.regex, &s, &p, case_insensitive).map_err(regex_error)
}

fn like(ctx: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(like_impl(ctx, args, false)?))
}

fn ilike(ctx: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(like_impl(ctx, args, true)?))
}

fn not_like(ctx: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(!like_impl(ctx, args, false)?))
}

fn not_ilike(ctx: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::Bool(!like_impl(ctx, args, true)?))
}

fn match_fn(ctx: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    // Falsy values (null, '', 0, false) never match, as in PostHog; then both sides are strings.
    if !args.iter().take(2).all(Value::truthy) || args.len() < 2 {
        return Ok(Value::Bool(false));
    }
    let s = as_string_value(args.first().unwrap_or(&Value::Null))?;
    let p = as_string_value(args.get(1).unwrap_or(&Value::Null))?;
    Ok(Value::Bool(vm::regex_match(ctx.regex, &p, &s, false).map_err(regex_error)?))
}

fn extract_regex(ctx: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let (Some(h), Some(p)) = (args.first(), args.get(1)) else { return Ok(Value::from("")) };
    if h.is_null() || p.is_null() {
        return Ok(Value::from(""));
    }
    let re = ctx.regex.get(&js_string(p)?).map_err(regex_error)?;
    let hay = js_string(h)?;
    let found = re.captures(&hay).and_then(|c| c.get(1).or_else(|| c.get(0))).map_or("", |m| m.as_str());
    Ok(Value::from(found))
}

fn multi_search_any_ci(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let (Some(h), Some(Value::Array(needles) | Value::Tuple(needles))) = (args.first(), args.get(1)) else {
        return Ok(Value::Number(0.0));
    };
    if h.is_null() {
        return Ok(Value::Number(0.0));
    }
    let hay = js_string(h)?.to_lowercase();
    for n in needles.borrow().iter() {
        if hay.contains(&js_string(n)?.to_lowercase()) {
            return Ok(Value::Number(1.0));
        }
    }
    Ok(Value::Number(0.0))
}

fn array_string_concat(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    let Some(Value::Array(a) | Value::Tuple(a)) = args.first() else { return Ok(Value::from("")) };
    // PostHog's default separator is ''; a missing argument arrives here as null.
    let sep = match args.get(1) {
        None | Some(Value::Null) => Cow::Borrowed(""),
        Some(s) => js_string(s)?,
    };
    let mut out = String::new();
    join_into(a, &sep, &mut out, &mut Vec::new())?;
    Ok(Value::from(out))
}

fn to_uuid(_: &mut Ctx<'_>, args: &[Value]) -> NativeResult {
    Ok(Value::from(value_to_string(&super::arg(args, 0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_at_finds_what_str_find_finds_on_short_and_long_text() {
        let short = "https://example.com/p/1?q=https://example.com#é";
        let long = format!("{}aab{}", "a".repeat(300), "é".repeat(10));
        for hay in [short, long.as_str(), "", "a"] {
            for needle in ["https://example.com", "a", "aab", "é", "zz", "aaaa", "#é"] {
                let mut from = 0;
                while from <= hay.len() {
                    if hay.is_char_boundary(from) {
                        let want = hay[from..].find(needle).map(|p| p + from);
                        assert_eq!(find_at(hay, needle, from), want, "{needle:?} in {} bytes from {from}", hay.len());
                    }
                    from += 1;
                }
            }
        }
        assert_eq!(find_at("abc", "", 0), None, "an empty needle is the callers' case");
    }

    #[test]
    fn utf16_slices_cut_pairs_into_replacement_chars() {
        assert_eq!(utf16_slice("a😀b", 0, 2), "a\u{FFFD}");
        assert_eq!(utf16_slice("a😀b", 2, 4), "\u{FFFD}b");
        assert_eq!(utf16_slice("a😀b", 1, 3), "😀");
        assert_eq!(utf16_slice("a😀b", 1, 1), "");
        assert_eq!(utf16_slice("héllo", 1, 3), "él");
        assert_eq!(utf16_slice("abc", 5, 9), "");
    }

    #[test]
    fn js_string_of_containers() {
        let inner = Value::array(vec![Value::Number(2.0), Value::Null]);
        let outer = Value::array(vec![Value::Number(1.5), inner, Value::Bool(true), Value::dict(Default::default())]);
        assert_eq!(js_string(&outer).unwrap(), "1.5,2,,true,[object Map]");
        // An array inside itself joins as '' (V8), never recursing forever.
        let a = Value::array(vec![Value::Number(1.0)]);
        if let Value::Array(rc) = &a {
            rc.borrow_mut().push(a.clone());
        }
        assert_eq!(js_string(&a).unwrap(), "1,");
        assert_eq!(js_number(&Value::array(vec![Value::Null])).unwrap(), 0.0);
    }

    #[test]
    fn uint32_wraps_like_javascript() {
        assert_eq!(to_uint32(-1.0), u32::MAX);
        assert_eq!(to_uint32(2.7), 2);
        assert_eq!(to_uint32(f64::NAN), 0);
        assert_eq!(to_uint32(4_294_967_298.0), 2);
    }
}
