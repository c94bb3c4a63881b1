//! HogQL's lexer: text to tokens with 1-based line and column, comments skipped.

use super::HogQlError;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A bare word: a keyword or an identifier (keywords are recognised by the parser,
    /// case-insensitively).
    Word(String),
    /// `` `quoted` `` or `"quoted"`: always an identifier, never a keyword.
    Quoted(String),
    /// A number as written (`1`, `1.5`, `2e10`, `0x1F`).
    Number(String),
    /// A string literal, escapes resolved.
    Str(String),
    /// Punctuation and operators: `( ) [ ] , . * + - / % = == != <> < <= > >= -> || ;`.
    Punct(&'static str),
    /// The end of the input.
    Eof,
}

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Byte offset of its first character.
    pub start: usize,
    /// Byte offset just past its last character.
    pub end: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl Token {
    /// Whether this is the keyword `kw` (case-insensitive; quoted identifiers never are).
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// Whether this is the punctuation `p`.
    pub fn is_punct(&self, p: &str) -> bool {
        matches!(&self.tok, Tok::Punct(q) if *q == p)
    }

    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match &self.tok {
            Tok::Word(w) => format!("`{w}`"),
            Tok::Quoted(w) => format!("identifier `{w}`"),
            Tok::Number(n) => format!("number {n}"),
            Tok::Str(_) => "a string".into(),
            Tok::Punct(p) => format!("`{p}`"),
            Tok::Eof => "the end of the query".into(),
        }
    }
}

const PUNCTS: &[&str] = &[
    "==", "!=", "<>", "<=", ">=", "->", "||", "(", ")", "[", "]", ",", ".", "*", "+", "-", "/", "%", "=", "<", ">", ";",
];

struct Cursor<'a> {
    src: &'a str,
    pos: usize,
    line: usize,
    column: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }
    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }
    fn err(&self, line: usize, column: usize, message: impl Into<String>) -> HogQlError {
        HogQlError { message: message.into(), line, column }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '$'
}

/// Splits `src` into tokens, the last one [`Tok::Eof`].
pub fn lex(src: &str) -> Result<Vec<Token>, HogQlError> {
    let mut c = Cursor { src, pos: 0, line: 1, column: 1 };
    let mut out = Vec::new();
    loop {
        // Whitespace and comments.
        loop {
            match (c.peek(), c.peek2()) {
                (Some(ch), _) if ch.is_whitespace() => {
                    c.bump();
                }
                (Some('-'), Some('-')) => {
                    while let Some(ch) = c.peek() {
                        if ch == '\n' {
                            break;
                        }
                        c.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let (line, column) = (c.line, c.column);
                    c.bump();
                    c.bump();
                    loop {
                        match (c.peek(), c.peek2()) {
                            (Some('*'), Some('/')) => {
                                c.bump();
                                c.bump();
                                break;
                            }
                            (Some(_), _) => {
                                c.bump();
                            }
                            (None, _) => return Err(c.err(line, column, "unterminated comment `/*`")),
                        }
                    }
                }
                _ => break,
            }
        }
        let (start, line, column) = (c.pos, c.line, c.column);
        let Some(ch) = c.peek() else {
            out.push(Token { tok: Tok::Eof, start, end: start, line, column });
            return Ok(out);
        };
        let tok = if is_ident_start(ch) {
            while c.peek().is_some_and(is_ident_char) {
                c.bump();
            }
            Tok::Word(src[start..c.pos].to_string())
        } else if ch.is_ascii_digit() || (ch == '.' && c.peek2().is_some_and(|d| d.is_ascii_digit())) {
            lex_number(&mut c)?
        } else if ch == '\'' {
            Tok::Str(lex_quoted(&mut c, '\'', "string")?)
        } else if ch == '`' || ch == '"' {
            let name = lex_quoted(&mut c, ch, "quoted identifier")?;
            if name.is_empty() {
                return Err(c.err(line, column, "empty quoted identifier"));
            }
            Tok::Quoted(name)
        } else if let Some(p) = PUNCTS.iter().find(|p| src[start..].starts_with(**p)) {
            for _ in 0..p.len() {
                c.bump();
            }
            Tok::Punct(p)
        } else {
            let hint = match ch {
                '{' | '}' => ": query parameters `{name:Type}` are not supported",
                '?' => ": the `? :` operator is not supported, use if()",
                _ => "",
            };
            return Err(c.err(line, column, format!("unexpected character {ch:?}{hint}")));
        };
        out.push(Token { tok, start, end: c.pos, line, column });
    }
}

fn lex_number(c: &mut Cursor<'_>) -> Result<Tok, HogQlError> {
    let start = c.pos;
    let (line, column) = (c.line, c.column);
    if c.peek() == Some('0') && matches!(c.peek2(), Some('x') | Some('X')) {
        c.bump();
        c.bump();
        while c.peek().is_some_and(|d| d.is_ascii_hexdigit()) {
            c.bump();
        }
        if c.pos - start == 2 {
            return Err(c.err(line, column, "hexadecimal number without digits"));
        }
    } else {
        while c.peek().is_some_and(|d| d.is_ascii_digit()) {
            c.bump();
        }
        if c.peek() == Some('.') && c.peek2().is_none_or(|d| d.is_ascii_digit() || !is_ident_start(d)) {
            c.bump();
            while c.peek().is_some_and(|d| d.is_ascii_digit()) {
                c.bump();
            }
        }
        if matches!(c.peek(), Some('e') | Some('E')) {
            let save = (c.pos, c.line, c.column);
            c.bump();
            if matches!(c.peek(), Some('+') | Some('-')) {
                c.bump();
            }
            if c.peek().is_some_and(|d| d.is_ascii_digit()) {
                while c.peek().is_some_and(|d| d.is_ascii_digit()) {
                    c.bump();
                }
            } else {
                (c.pos, c.line, c.column) = save;
            }
        }
    }
    if c.peek().is_some_and(is_ident_char) {
        return Err(c.err(line, column, format!("malformed number `{}`", &c.src[start..=c.pos])));
    }
    Ok(Tok::Number(c.src[start..c.pos].to_string()))
}

/// Reads a quoted string or identifier starting at the opening `quote`; a doubled quote or a
/// backslash escape stands for the character.
fn lex_quoted(c: &mut Cursor<'_>, quote: char, what: &str) -> Result<String, HogQlError> {
    let (line, column) = (c.line, c.column);
    c.bump();
    let mut s = String::new();
    loop {
        let Some(ch) = c.bump() else {
            return Err(c.err(line, column, format!("unterminated {what}")));
        };
        if ch == quote {
            if c.peek() == Some(quote) {
                c.bump();
                s.push(quote);
                continue;
            }
            return Ok(s);
        }
        if ch != '\\' {
            s.push(ch);
            continue;
        }
        let (eline, ecol) = (c.line, c.column - 1);
        let Some(e) = c.bump() else {
            return Err(c.err(line, column, format!("unterminated {what}")));
        };
        match e {
            'n' => s.push('\n'),
            't' => s.push('\t'),
            'r' => s.push('\r'),
            '0' => s.push('\0'),
            'b' => s.push('\u{8}'),
            'f' => s.push('\u{c}'),
            'a' => s.push('\u{7}'),
            'v' => s.push('\u{b}'),
            'x' => {
                let mut v = 0u32;
                for _ in 0..2 {
                    let d = c.bump().and_then(|d| d.to_digit(16));
                    match d {
                        Some(d) => v = v * 16 + d,
                        None => return Err(c.err(eline, ecol, "`\\x` needs two hexadecimal digits")),
                    }
                }
                match char::from_u32(v) {
                    Some(ch) if v < 0x80 => s.push(ch),
                    _ => return Err(c.err(eline, ecol, "`\\x` escapes above \\x7F are not supported")),
                }
            }
            other => s.push(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn words_numbers_strings_and_comments() {
        assert_eq!(
            toks("SELECT a.$b, 1.5e3, 'it''s\\n' -- x\n/* y */ `q``x` \"d\" >= ->"),
            vec![
                Tok::Word("SELECT".into()),
                Tok::Word("a".into()),
                Tok::Punct("."),
                Tok::Word("$b".into()),
                Tok::Punct(","),
                Tok::Number("1.5e3".into()),
                Tok::Punct(","),
                Tok::Str("it's\n".into()),
                Tok::Quoted("q`x".into()),
                Tok::Quoted("d".into()),
                Tok::Punct(">="),
                Tok::Punct("->"),
                Tok::Eof,
            ]
        );
    }

    #[test]
    fn positions_are_one_based() {
        let t = lex("SELECT\n  x").unwrap();
        assert_eq!((t[1].line, t[1].column), (2, 3));
    }

    #[test]
    fn errors_say_where() {
        let e = lex("SELECT 'abc").unwrap_err();
        assert_eq!((e.line, e.column), (1, 8));
        assert!(e.message.contains("unterminated string"), "{e}");
        let e = lex("SELECT /* x").unwrap_err();
        assert!(e.message.contains("unterminated comment"), "{e}");
        let e = lex("SELECT {x:String}").unwrap_err();
        assert!(e.message.contains("parameters"), "{e}");
        let e = lex("SELECT 12abc").unwrap_err();
        assert!(e.message.contains("malformed number"), "{e}");
    }
}
