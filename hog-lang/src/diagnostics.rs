//! Compile diagnostics: a stable code, a span, a message, a label, notes and a "did you mean".
//!
//! Rendered for people with the source line and a caret under the span (`render`), and for
//! programs as JSON with `line`, `column` and `message` (`to_json`).

use crate::ast::Span;
use serde::Serialize;
use std::fmt;

/// Stable diagnostic codes. The numbers never change meaning; new codes are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Code {
    /// E0001: the parser could not read the program here.
    Syntax,
    /// E0002: a string literal has no closing quote.
    UnterminatedString,
    /// E0003: a call to a function that is neither local nor in the standard library.
    UnknownFunction,
    /// E0004: a name that is neither a local variable nor a known global.
    UnknownVariable,
    /// E0005: a call with a number of arguments the function does not take.
    WrongArity,
    /// E0006: `let` not followed by a variable name.
    LetWithoutName,
    /// E0007: a `(`, `[` or `{` without its partner, or a stray closer.
    UnbalancedDelimiter,
    /// E0008: a variable declared twice in one scope.
    DuplicateVariable,
    /// E0009: assignment to something that is not a declared variable.
    AssignToUndeclared,
    /// E0010: an assignment target that cannot be assigned.
    InvalidAssignment,
    /// E0011: `a[0]` or `t.0`; Hog indexes start at 1.
    ZeroIndex,
    /// E0012: `try` with neither `catch` nor `finally`.
    TryWithoutCatch,
    /// E0013: `throw` without a value.
    ThrowWithoutValue,
    /// E0014: `in cohort` in a real-time function.
    CohortNotSupported,
    /// E0015: an unterminated `/* */` comment.
    UnterminatedComment,
    /// E0016: a number literal that does not fit.
    InvalidNumber,
    /// E0017: the program is nested too deeply or is too large to compile.
    TooComplex,
}

impl Code {
    /// The code as printed: `E0001`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "E0001",
            Code::UnterminatedString => "E0002",
            Code::UnknownFunction => "E0003",
            Code::UnknownVariable => "E0004",
            Code::WrongArity => "E0005",
            Code::LetWithoutName => "E0006",
            Code::UnbalancedDelimiter => "E0007",
            Code::DuplicateVariable => "E0008",
            Code::AssignToUndeclared => "E0009",
            Code::InvalidAssignment => "E0010",
            Code::ZeroIndex => "E0011",
            Code::TryWithoutCatch => "E0012",
            Code::ThrowWithoutValue => "E0013",
            Code::CohortNotSupported => "E0014",
            Code::UnterminatedComment => "E0015",
            Code::InvalidNumber => "E0016",
            Code::TooComplex => "E0017",
        }
    }
}

/// One compile error.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// Stable code.
    pub code: Code,
    /// One-line description.
    pub message: String,
    /// Where.
    pub span: Span,
    /// Short text under the caret.
    pub label: Option<String>,
    /// Extra explanation.
    pub note: Option<String>,
    /// A suggested fix, such as "did you mean `length`?".
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with a code, message and span.
    pub fn new(code: Code, message: impl Into<String>, span: Span) -> Self {
        Diagnostic { code, message: message.into(), span, label: None, note: None, help: None }
    }

    /// Adds the text shown under the caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// 1-based line and column (in characters) of the start of the span.
    pub fn line_col(&self, source: &str) -> (usize, usize) {
        line_col(source, self.span.start)
    }

    /// Renders with the source line and a caret, like `rustc`.
    pub fn render(&self, source: &str, filename: &str) -> String {
        let (line, col) = self.line_col(source);
        let line_text = source.lines().nth(line - 1).unwrap_or("");
        let line_start = source[..self.span.start.min(source.len())].rfind('\n').map(|i| i + 1).unwrap_or(0);
        let line_end = line_start + line_text.len();
        let end = self.span.end.clamp(self.span.start, line_end.max(self.span.start));
        let width = source.get(self.span.start..end).map(|s| s.chars().count()).unwrap_or(1).max(1);
        let gutter = line.to_string().len();
        let pad = " ".repeat(gutter);
        let mut out = format!("error[{}]: {}\n", self.code.as_str(), self.message);
        out += &format!("{pad}--> {filename}:{line}:{col}\n");
        out += &format!("{pad} |\n");
        out += &format!("{line} | {line_text}\n");
        out += &format!("{pad} | {}{}", " ".repeat(col - 1), "^".repeat(width));
        if let Some(label) = &self.label {
            out += " ";
            out += label;
        }
        out += "\n";
        if let Some(note) = &self.note {
            out += &format!("{pad} = note: {note}\n");
        }
        if let Some(help) = &self.help {
            out += &format!("{pad} = help: {help}\n");
        }
        out
    }

    /// The JSON form used by the API and editors.
    pub fn to_json(&self, source: &str) -> serde_json::Value {
        let (line, column) = self.line_col(source);
        let (end_line, end_column) = line_col(source, self.span.end);
        serde_json::json!({
            "code": self.code.as_str(),
            "message": self.message,
            "line": line,
            "column": column,
            "end_line": end_line,
            "end_column": end_column,
            "start": self.span.start,
            "end": self.span.end,
            "label": self.label,
            "note": self.note,
            "help": self.help,
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error[{}]: {}", self.code.as_str(), self.message)
    }
}

/// Several diagnostics from one compilation, in source order.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Renders them all, separated by blank lines.
    pub fn render(&self, source: &str, filename: &str) -> String {
        self.0.iter().map(|d| d.render(source, filename)).collect::<Vec<_>>().join("\n")
    }

    /// The JSON array form.
    pub fn to_json(&self, source: &str) -> serde_json::Value {
        serde_json::Value::Array(self.0.iter().map(|d| d.to_json(source)).collect())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let mut offset = offset;
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

/// The candidate closest to `name` by edit distance, when close enough to be a likely typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = name.to_lowercase();
    let max = (name.chars().count() / 3).clamp(1, 3);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name || c.starts_with("__H_") {
            continue;
        }
        let d = if c.to_lowercase() == lower { 0 } else { edit_distance(&lower, &c.to_lowercase()) };
        if d <= max && best.is_none_or(|(bd, bc)| d < bd || (d == bd && c < bc)) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("lenght", ["length", "lower", "print"]), Some("length"));
        assert_eq!(did_you_mean("prnt", ["length", "lower", "print"]), Some("print"));
        assert_eq!(did_you_mean("zzzzzz", ["length", "lower", "print"]), None);
    }

    #[test]
    fn positions() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
    }
}
