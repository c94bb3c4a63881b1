//! Source text to AST: a lexical pre-scan (unterminated strings and comments, unbalanced brackets,
//! reported precisely), then the pest grammar in `hog.pest`, then a builder that lowers sugar the
//! way PostHog's parser does.

use crate::ast::*;
use crate::diagnostics::{Code, Diagnostic, Diagnostics};
use pest::iterators::Pair;
use pest::Parser;

mod grammar {
    #![allow(missing_docs)]
    #[derive(pest_derive::Parser)]
    #[grammar = "hog.pest"]
    pub struct HogParser;
}
use grammar::{HogParser, Rule};

/// Parses a whole program (on a thread with a large stack, so deep nesting within the limits
/// never overflows the caller's stack).
pub fn parse_program(source: &str) -> Result<Program, Diagnostics> {
    crate::compiler::with_big_stack(|| parse_program_here(source))
}

/// Parses a whole program on the current thread (callers run it on a large stack).
pub(crate) fn parse_program_here(source: &str) -> Result<Program, Diagnostics> {
    prescan(source).map_err(|d| Diagnostics(vec![d]))?;
    let mut pairs = HogParser::parse(Rule::program, source).map_err(|e| Diagnostics(vec![pest_error(source, e)]))?;
    let program = pairs.next().expect("program rule always yields one pair");
    let mut b = Builder { diags: Vec::new() };
    let body = program.into_inner().filter(|p| p.as_rule() != Rule::EOI).map(|p| b.stmt(p)).collect::<Vec<_>>();
    if b.diags.is_empty() {
        Ok(Program { body })
    } else {
        Err(Diagnostics(b.diags))
    }
}

/// Parses a single expression (used for filters and templates).
pub fn parse_expression(source: &str) -> Result<Expr, Diagnostics> {
    let program = parse_program(source)?;
    match program.body.as_slice() {
        [Stmt { kind: StmtKind::Expr(e), .. }] => Ok(e.clone()),
        _ => Err(Diagnostics(vec![Diagnostic::new(
            Code::Syntax,
            "expected a single expression",
            Span::new(0, source.len()),
        )])),
    }
}

// ---------------------------------------------------------------------------------------------
// Pre-scan

/// Largest source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Deepest bracket nesting accepted.
pub const MAX_NESTING: usize = 128;
/// Longest run of prefix operators (`-`, `not`) accepted.
const MAX_PREFIX_RUN: usize = 128;

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    /// Code, with the opening bracket that started it (None at top level).
    Code,
    /// Inside an f-string's text.
    FString,
}

fn prescan(src: &str) -> Result<(), Diagnostic> {
    if src.len() > MAX_SOURCE_BYTES {
        return Err(Diagnostic::new(
            Code::TooComplex,
            format!("the program is {} bytes; the limit is {MAX_SOURCE_BYTES}", src.len()),
            Span::new(0, 0),
        ));
    }
    check_prefix_runs(src)?;
    let bytes = src.as_bytes();
    // Stack of (opening char, byte offset, context that the opener started).
    let mut stack: Vec<(u8, usize)> = Vec::new();
    let mut ctx_stack: Vec<Ctx> = vec![Ctx::Code];
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let ctx = *ctx_stack.last().unwrap_or(&Ctx::Code);
        if ctx == Ctx::FString {
            match c {
                b'\\' => i += 2,
                b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                b'\'' => {
                    ctx_stack.pop();
                    stack.pop();
                    i += 1;
                }
                b'{' => {
                    ctx_stack.push(Ctx::Code);
                    stack.push((b'{', i));
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match c {
            b'/' if bytes.get(i + 1) == Some(&b'/') => i = skip_line(bytes, i),
            b'-' if bytes.get(i + 1) == Some(&b'-') => i = skip_line(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => match src[i + 2..].find("*/") {
                Some(end) => i += end + 4,
                None => {
                    return Err(Diagnostic::new(
                        Code::UnterminatedComment,
                        "unterminated block comment",
                        Span::new(i, i + 2),
                    )
                    .with_label("this `/*` is never closed with `*/`"))
                }
            },
            b'f' | b'F'
                if bytes.get(i + 1) == Some(&b'\'')
                    && (i == 0
                        || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b'$')) =>
            {
                // f-string: check it closes before the end of input.
                if find_fstring_end(bytes, i + 2).is_none() {
                    return Err(unterminated_string(src, i));
                }
                ctx_stack.push(Ctx::FString);
                stack.push((b'\'', i));
                i += 2;
            }
            b'\'' | b'`' | b'"' => match find_quote_end(bytes, i + 1, c) {
                Some(end) => i = end + 1,
                None => {
                    if c == b'\'' {
                        return Err(unterminated_string(src, i));
                    }
                    return Err(Diagnostic::new(
                        Code::UnterminatedString,
                        format!("unterminated quoted identifier: missing closing {}", c as char),
                        Span::new(i, line_end(src, i)),
                    )
                    .with_label("starts here"));
                }
            },
            b'(' | b'[' | b'{' => {
                stack.push((c, i));
                if stack.len() > MAX_NESTING {
                    return Err(Diagnostic::new(
                        Code::TooComplex,
                        format!("brackets are nested more than {MAX_NESTING} deep"),
                        Span::new(i, i + 1),
                    )
                    .with_help("split the expression into variables or functions"));
                }
                ctx_stack.push(Ctx::Code);
                i += 1;
            }
            b')' | b']' | b'}' => {
                let want = match c {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                match stack.pop() {
                    Some((open, _)) if open == want => {
                        ctx_stack.pop();
                        i += 1;
                    }
                    Some((open, at)) => {
                        let (l, col) = crate::diagnostics::line_col(src, at);
                        return Err(Diagnostic::new(
                            Code::UnbalancedDelimiter,
                            format!("mismatched `{}`: expected `{}`", c as char, closer(open) as char),
                            Span::new(i, i + 1),
                        )
                        .with_label(format!("does not close the `{}` at {l}:{col}", open as char)));
                    }
                    None => {
                        return Err(Diagnostic::new(
                            Code::UnbalancedDelimiter,
                            format!("unexpected closing `{}`", c as char),
                            Span::new(i, i + 1),
                        )
                        .with_label("no matching opening bracket"))
                    }
                }
            }
            _ => i += 1,
        }
    }
    if let Some(&(open, at)) = stack.last() {
        return Err(Diagnostic::new(
            Code::UnbalancedDelimiter,
            format!("unclosed `{}`", open as char),
            Span::new(at, at + 1),
        )
        .with_label(format!("this `{}` is never closed", open as char))
        .with_help(format!("add a `{}`", closer(open) as char)));
    }
    Ok(())
}

/// Rejects long runs of prefix operators, which would nest the parser too deeply.
fn check_prefix_runs(src: &str) -> Result<(), Diagnostic> {
    let mut run = 0usize;
    let mut start = 0;
    for tok in src.split(|c: char| c.is_whitespace() || c == '(') {
        let t = tok.trim_start_matches('-');
        let dashes = tok.len() - t.len();
        if tok.is_empty() {
            continue;
        }
        if tok.eq_ignore_ascii_case("not") || (dashes > 0 && t.is_empty()) {
            run += dashes.max(1);
        } else {
            run = dashes;
        }
        if run > MAX_PREFIX_RUN {
            let at = src[start..].find(tok).map(|p| start + p).unwrap_or(0);
            return Err(Diagnostic::new(
                Code::TooComplex,
                format!("more than {MAX_PREFIX_RUN} prefix operators in a row"),
                Span::new(at, at + tok.len()),
            ));
        }
        start += tok.len();
    }
    Ok(())
}

fn closer(open: u8) -> u8 {
    match open {
        b'(' => b')',
        b'[' => b']',
        b'{' => b'}',
        other => other,
    }
}

fn skip_line(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i] != b'\n' {
        i += 1;
    }
    i
}

fn line_end(src: &str, i: usize) -> usize {
    src[i..].find('\n').map(|e| i + e).unwrap_or(src.len())
}

fn unterminated_string(src: &str, at: usize) -> Diagnostic {
    Diagnostic::new(Code::UnterminatedString, "unterminated string literal", Span::new(at, line_end(src, at)))
        .with_label("this string is never closed")
        .with_help("add a closing `'`; write a quote inside a string as `\\'` or `''`")
}

/// Index of the closing quote of a quoted token whose body starts at `i`.
fn find_quote_end(bytes: &[u8], mut i: usize, quote: u8) -> Option<usize> {
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\\' {
            i += 2;
        } else if c == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return Some(i);
            }
        } else {
            i += 1;
        }
    }
    None
}

/// Index of the closing quote of an f-string whose text starts at `i`, skipping `{…}` parts.
fn find_fstring_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < bytes.len() {
        let c = bytes[i];
        if depth == 0 {
            match c {
                b'\\' => i += 2,
                b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                b'\'' => return Some(i),
                b'{' => {
                    depth = 1;
                    i += 1;
                }
                _ => i += 1,
            }
        } else {
            match c {
                b'\'' | b'"' | b'`' => i = find_quote_end(bytes, i + 1, c)? + 1,
                b'{' => {
                    depth += 1;
                    i += 1;
                }
                b'}' => {
                    depth -= 1;
                    i += 1;
                }
                _ => i += 1,
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Pest errors

fn rule_name(rule: &Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::expression | Rule::ternary | Rule::between_expr | Rule::or_expr | Rule::and_expr => "an expression",
        Rule::not_expr | Rule::nullish_expr | Rule::isnull_expr | Rule::compare_expr => "an expression",
        Rule::add_expr | Rule::mul_expr | Rule::unary_expr | Rule::postfix_expr => "an expression",
        Rule::ident => "a name",
        Rule::prop_name => "a property name",
        Rule::int_lit => "an index",
        Rule::block => "`{`",
        Rule::var_decl | Rule::return_stmt | Rule::throw_stmt | Rule::try_stmt | Rule::if_stmt => "a statement",
        Rule::while_stmt | Rule::for_stmt | Rule::for_in_stmt | Rule::fn_stmt | Rule::expr_stmt => "a statement",
        Rule::empty_stmt | Rule::EOI => "a statement",
        Rule::call_args => "`(`",
        Rule::compare_op | Rule::add_op | Rule::mul_op => "an operator",
        Rule::kw_in => "`in`",
        Rule::kw_and => "`and`",
        Rule::kw_then => "`then`",
        Rule::kw_end => "`end`",
        Rule::kw_when => "`when`",
        Rule::catch_block => "`catch`",
        Rule::finally_block => "`finally`",
        Rule::kw_else => "`else`",
        Rule::params => "a parameter name",
        _ => return None,
    })
}

fn pest_error(source: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    let pos = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let found_end = source[pos..]
        .char_indices()
        .find(|&(i, c)| i > 0 && !(c.is_alphanumeric() || c == '_' || c == '$'))
        .map(|(i, _)| pos + i)
        .unwrap_or(source.len());
    let found = &source[pos..found_end.max(pos)];
    let found_desc = if pos >= source.len() {
        "end of input".to_string()
    } else {
        let first = found.chars().next().unwrap_or(' ');
        if first.is_alphanumeric() || first == '_' || first == '$' {
            format!("`{found}`")
        } else {
            format!("`{first}`")
        }
    };
    let span_end = if pos >= source.len() {
        pos
    } else if found.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
        found_end
    } else {
        pos + source[pos..].chars().next().map(|c| c.len_utf8()).unwrap_or(1)
    };
    let span = Span::new(pos, span_end);

    let mut expected: Vec<&str> = Vec::new();
    let mut wants_ident = false;
    if let pest::error::ErrorVariant::ParsingError { positives, .. } = &e.variant {
        for r in positives {
            if *r == Rule::ident {
                wants_ident = true;
            }
            if let Some(n) = rule_name(r) {
                if !expected.contains(&n) {
                    expected.push(n);
                }
            }
        }
    }
    // `let` followed by something that is not a name.
    let before = source[..pos].trim_end();
    let prev_word_start = before
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    let prev_word = &before[prev_word_start..];
    if prev_word.eq_ignore_ascii_case("let") && (wants_ident || expected.is_empty() || !found_desc.is_empty()) {
        let mut d = Diagnostic::new(Code::LetWithoutName, "expected a variable name after `let`", span)
            .with_label(format!("found {found_desc}"));
        if !found.is_empty() && is_reserved(found) {
            d = d.with_note(format!("`{found}` is a reserved word; quote it with backticks to use it as a name"));
        } else {
            d = d.with_help("write `let name := value`");
        }
        return d;
    }
    if pos < source.len() && source[pos..].starts_with('"') {
        return Diagnostic::new(Code::Syntax, format!("unexpected {found_desc}"), span)
            .with_help("strings use single quotes: 'text'; double quotes name identifiers");
    }
    let msg = if expected.is_empty() {
        format!("unexpected {found_desc}")
    } else {
        format!("expected {}, found {found_desc}", join_or(&expected))
    };
    let mut d = Diagnostic::new(Code::Syntax, msg, span).with_label("syntax error here");
    if found.eq_ignore_ascii_case("=") || source[pos..].starts_with('=') {
        d = d.with_help("assignment is written `:=`");
    }
    d
}

fn is_reserved(w: &str) -> bool {
    [
        "let", "fun", "fn", "if", "else", "while", "for", "in", "return", "throw", "try", "catch", "finally", "and",
        "or", "not", "null",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(w))
}

fn join_or(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        _ => format!("{} or {}", items[..items.len() - 1].join(", "), items[items.len() - 1]),
    }
}

// ---------------------------------------------------------------------------------------------
// AST builder

/// Most operators in one left-associative chain (`a + b + …`); each adds a level to the tree.
const MAX_CHAIN: usize = 2000;

struct Builder {
    diags: Vec<Diagnostic>,
}

fn span_of(p: &Pair<Rule>) -> Span {
    let s = p.as_span();
    Span::new(s.start(), s.end())
}

fn expr(kind: ExprKind, span: Span) -> Expr {
    Expr { kind, span }
}

fn call(name: &str, args: Vec<Expr>, span: Span) -> Expr {
    expr(ExprKind::Call { name: name.to_string(), name_span: span, args }, span)
}

impl Builder {
    fn stmts(&mut self, p: Pair<Rule>) -> Vec<Stmt> {
        p.into_inner().map(|s| self.stmt(s)).collect()
    }

    fn stmt(&mut self, p: Pair<Rule>) -> Stmt {
        let span = span_of(&p);
        let kind = match p.as_rule() {
            Rule::var_decl => {
                let mut it = p.into_inner();
                it.next(); // let
                let name_pair = it.next().expect("grammar: let has a name");
                let name_span = span_of(&name_pair);
                let name = ident_text(name_pair.as_str());
                let value = it.next().map(|e| self.expr(e));
                StmtKind::Let { name, name_span, value }
            }
            Rule::return_stmt => StmtKind::Return(p.into_inner().nth(1).map(|e| self.expr(e))),
            Rule::throw_stmt => StmtKind::Throw(p.into_inner().nth(1).map(|e| self.expr(e))),
            Rule::try_stmt => {
                let mut body = Vec::new();
                let mut catches = Vec::new();
                let mut finally = None;
                for part in p.into_inner() {
                    match part.as_rule() {
                        Rule::block => body = self.stmts(part),
                        Rule::catch_block => {
                            let cspan = span_of(&part);
                            let mut var = None;
                            let mut ty = None;
                            let mut cbody = Vec::new();
                            for x in part.into_inner() {
                                match x.as_rule() {
                                    Rule::ident if var.is_none() => var = Some(ident_text(x.as_str())),
                                    Rule::ident => ty = Some(ident_text(x.as_str())),
                                    Rule::block => cbody = self.stmts(x),
                                    _ => {}
                                }
                            }
                            catches.push(Catch { var, ty, body: cbody, span: cspan });
                        }
                        Rule::finally_block => {
                            let b = part.into_inner().find(|x| x.as_rule() == Rule::block);
                            finally = b.map(|b| self.stmts(b));
                        }
                        _ => {}
                    }
                }
                if catches.is_empty() && finally.is_none() {
                    self.diags.push(
                        Diagnostic::new(Code::TryWithoutCatch, "`try` needs a `catch` or a `finally` block", span)
                            .with_help("add `catch (e) { … }`"),
                    );
                }
                StmtKind::Try { body, catches, finally }
            }
            Rule::if_stmt => {
                let mut it = p.into_inner().filter(|x| !matches!(x.as_rule(), Rule::kw_if | Rule::kw_else));
                let cond = self.expr(it.next().expect("grammar: if has a condition"));
                let then = Box::new(self.stmt(it.next().expect("grammar: if has a body")));
                let otherwise = it.next().map(|s| Box::new(self.stmt(s)));
                StmtKind::If { cond, then, otherwise }
            }
            Rule::while_stmt => {
                let mut it = p.into_inner().skip(1);
                let cond = self.expr(it.next().expect("grammar: while has a condition"));
                let body = Box::new(self.stmt(it.next().expect("grammar: while has a body")));
                StmtKind::While { cond, body }
            }
            Rule::for_stmt => {
                let mut init = None;
                let mut cond = None;
                let mut step = None;
                let mut body = None;
                for part in p.into_inner() {
                    match part.as_rule() {
                        Rule::kw_for => {}
                        Rule::for_init => init = Some(Box::new(self.clause(part))),
                        Rule::for_cond => cond = Some(self.expr(part.into_inner().next().expect("grammar: condition"))),
                        Rule::for_step => step = Some(Box::new(self.clause(part))),
                        _ => body = Some(Box::new(self.stmt(part))),
                    }
                }
                let body = body.unwrap_or_else(|| Box::new(Stmt { kind: StmtKind::Empty, span }));
                StmtKind::For { init, cond, step, body }
            }
            Rule::for_in_stmt => {
                let mut idents = Vec::new();
                let mut iter = None;
                let mut body = None;
                for x in p.into_inner() {
                    match x.as_rule() {
                        Rule::ident => idents.push(ident_text(x.as_str())),
                        Rule::expression => iter = Some(self.expr(x)),
                        Rule::kw_for | Rule::kw_let | Rule::kw_in => {}
                        _ => body = Some(Box::new(self.stmt(x))),
                    }
                }
                let (key, value) = if idents.len() == 2 {
                    (Some(idents[0].clone()), idents[1].clone())
                } else {
                    (None, idents.pop().unwrap_or_default())
                };
                StmtKind::ForIn {
                    key,
                    value,
                    iter: iter.expect("grammar: for-in has an iterable"),
                    body: body.unwrap_or_else(|| Box::new(Stmt { kind: StmtKind::Empty, span })),
                }
            }
            Rule::fn_stmt => {
                let mut it = p.into_inner().skip(1);
                let name_pair = it.next().expect("grammar: fun has a name");
                let name_span = span_of(&name_pair);
                let name = ident_text(name_pair.as_str());
                let mut params = Vec::new();
                let mut body = Vec::new();
                for x in it {
                    match x.as_rule() {
                        Rule::params => params = x.into_inner().map(|i| ident_text(i.as_str())).collect(),
                        Rule::block => body = self.stmts(x),
                        _ => {}
                    }
                }
                StmtKind::Function { name, name_span, params, body }
            }
            Rule::block => StmtKind::Block(self.stmts(p)),
            Rule::expr_stmt => {
                let a = p.into_inner().next().expect("grammar: expr_stmt has an assignment");
                return self.clause(a);
            }
            Rule::empty_stmt => StmtKind::Empty,
            other => unreachable!("grammar: unexpected statement rule {other:?}"),
        };
        Stmt { kind, span }
    }

    /// A `for_clause`, `assignment` or `var_decl` pair.
    fn clause(&mut self, p: Pair<Rule>) -> Stmt {
        let span = span_of(&p);
        match p.as_rule() {
            Rule::for_init | Rule::for_step => {
                let inner = p.into_inner().next().expect("grammar: clause has content");
                self.clause(inner)
            }
            Rule::var_decl => self.stmt(p),
            Rule::assignment => {
                let mut it = p.into_inner();
                let left = self.expr(it.next().expect("grammar: assignment has an expression"));
                match it.next() {
                    Some(right) => {
                        let value = self.expr(right);
                        Stmt { kind: StmtKind::Assign { target: left, value }, span }
                    }
                    None => Stmt { kind: StmtKind::Expr(left), span },
                }
            }
            other => unreachable!("grammar: unexpected clause rule {other:?}"),
        }
    }

    fn expr(&mut self, p: Pair<Rule>) -> Expr {
        let span = span_of(&p);
        let chain = matches!(
            p.as_rule(),
            Rule::add_expr
                | Rule::mul_expr
                | Rule::compare_expr
                | Rule::nullish_expr
                | Rule::isnull_expr
                | Rule::and_expr
                | Rule::or_expr
        );
        if chain && p.clone().into_inner().len() > 2 * MAX_CHAIN {
            self.too_long(span);
            return expr(ExprKind::Constant(Constant::Null), span);
        }
        match p.as_rule() {
            Rule::expression => self.expr(p.into_inner().next().expect("grammar: expression has content")),
            Rule::ternary => {
                let mut it = p.into_inner();
                let cond = self.expr(it.next().expect("grammar"));
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => {
                        let a = self.expr(a);
                        let b = self.expr(b);
                        call("if", vec![cond, a, b], span)
                    }
                    _ => cond,
                }
            }
            Rule::between_expr => {
                let mut it = p.into_inner();
                let e = self.expr(it.next().expect("grammar"));
                match it.next() {
                    Some(op) => {
                        let negated = op.into_inner().any(|x| x.as_rule() == Rule::kw_not);
                        let low = self.expr(it.next().expect("grammar: between has a low bound"));
                        it.next(); // and
                        let high = self.expr(it.next().expect("grammar: between has a high bound"));
                        expr(
                            ExprKind::Between { expr: Box::new(e), low: Box::new(low), high: Box::new(high), negated },
                            span,
                        )
                    }
                    None => e,
                }
            }
            Rule::or_expr | Rule::and_expr => {
                let is_or = p.as_rule() == Rule::or_expr;
                let parts: Vec<Expr> = p
                    .into_inner()
                    .filter(|x| !matches!(x.as_rule(), Rule::kw_or | Rule::kw_and))
                    .map(|x| self.expr(x))
                    .collect();
                if parts.len() == 1 {
                    return parts.into_iter().next().expect("one part");
                }
                let mut flat = Vec::new();
                for part in parts {
                    match part.kind {
                        ExprKind::Or(xs) if is_or => flat.extend(xs),
                        ExprKind::And(xs) if !is_or => flat.extend(xs),
                        kind => flat.push(Expr { kind, span: part.span }),
                    }
                }
                expr(if is_or { ExprKind::Or(flat) } else { ExprKind::And(flat) }, span)
            }
            Rule::not_expr => {
                let mut it = p.into_inner();
                let first = it.next().expect("grammar");
                if first.as_rule() == Rule::kw_not {
                    let inner = self.expr(it.next().expect("grammar: not has an operand"));
                    expr(ExprKind::Not(Box::new(inner)), span)
                } else {
                    self.expr(first)
                }
            }
            Rule::nullish_expr => {
                let mut it = p.into_inner();
                let mut acc = self.expr(it.next().expect("grammar"));
                for next in it {
                    let right = self.expr(next);
                    let s = Span::new(acc.span.start, right.span.end);
                    acc = call("ifNull", vec![acc, right], s);
                }
                acc
            }
            Rule::isnull_expr => {
                let mut it = p.into_inner();
                let mut acc = self.expr(it.next().expect("grammar"));
                for suffix in it {
                    let negated = suffix.clone().into_inner().any(|x| x.as_rule() == Rule::kw_not);
                    let s = Span::new(acc.span.start, suffix.as_span().end());
                    let null = expr(ExprKind::Constant(Constant::Null), span_of(&suffix));
                    acc = expr(
                        ExprKind::Compare {
                            op: if negated { CompareOp::NotEq } else { CompareOp::Eq },
                            left: Box::new(acc),
                            right: Box::new(null),
                        },
                        s,
                    );
                }
                acc
            }
            Rule::compare_expr => {
                let mut it = p.into_inner();
                let mut acc = self.expr(it.next().expect("grammar"));
                while let Some(op) = it.next() {
                    let op = compare_op(&op);
                    let right = self.expr(it.next().expect("grammar: operator has a right side"));
                    let s = Span::new(acc.span.start, right.span.end);
                    acc = expr(ExprKind::Compare { op, left: Box::new(acc), right: Box::new(right) }, s);
                }
                acc
            }
            Rule::add_expr | Rule::mul_expr => {
                let mut it = p.into_inner();
                let mut acc = self.expr(it.next().expect("grammar"));
                while let Some(op) = it.next() {
                    let op_text = op.as_str().trim();
                    let right = self.expr(it.next().expect("grammar: operator has a right side"));
                    let s = Span::new(acc.span.start, right.span.end);
                    acc = match op_text {
                        "||" => concat(acc, right, s),
                        _ => {
                            let op = match op_text {
                                "+" => ArithOp::Add,
                                "*" => ArithOp::Mul,
                                "/" => ArithOp::Div,
                                "%" => ArithOp::Mod,
                                _ => ArithOp::Sub,
                            };
                            expr(ExprKind::Arithmetic { op, left: Box::new(acc), right: Box::new(right) }, s)
                        }
                    };
                }
                acc
            }
            Rule::unary_expr => {
                let mut it = p.into_inner();
                let first = it.next().expect("grammar");
                if first.as_rule() == Rule::kw_not {
                    let inner = self.expr(it.next().expect("grammar: not has an operand"));
                    return expr(ExprKind::Not(Box::new(inner)), span);
                }
                if first.as_rule() == Rule::neg_op {
                    let is_minus = first.as_str().starts_with('-');
                    let operand_pair = it.next().expect("grammar: unary has an operand");
                    let literal = is_plain_number(&operand_pair);
                    let operand = self.expr(operand_pair);
                    if !is_minus {
                        return Expr { kind: operand.kind, span };
                    }
                    if literal {
                        match operand.kind {
                            ExprKind::Constant(Constant::Int(i)) => {
                                return expr(ExprKind::Constant(Constant::Int(i.wrapping_neg())), span)
                            }
                            ExprKind::Constant(Constant::Float(f)) => {
                                return expr(ExprKind::Constant(Constant::Float(-f)), span)
                            }
                            _ => {}
                        }
                    }
                    let zero = expr(ExprKind::Constant(Constant::Int(0)), Span::new(span.start, span.start));
                    expr(
                        ExprKind::Arithmetic { op: ArithOp::Sub, left: Box::new(zero), right: Box::new(operand) },
                        span,
                    )
                } else {
                    self.expr(first)
                }
            }
            Rule::postfix_expr => {
                let mut it = p.into_inner();
                let mut acc = self.expr(it.next().expect("grammar"));
                for op in it {
                    let s = Span::new(acc.span.start, op.as_span().end());
                    let op_span = span_of(&op);
                    acc = match op.as_rule() {
                        Rule::call_args => {
                            let args = op.into_inner().map(|a| self.expr(a)).collect();
                            expr(ExprKind::ExprCall { callee: Box::new(acc), args }, s)
                        }
                        Rule::index | Rule::null_index => {
                            let nullish = op.as_rule() == Rule::null_index;
                            let prop = self.expr(op.into_inner().next().expect("grammar: index has an expression"));
                            if matches!(prop.kind, ExprKind::Constant(Constant::Int(0))) {
                                self.zero_index(prop.span);
                            }
                            expr(ExprKind::ArrayAccess { array: Box::new(acc), property: Box::new(prop), nullish }, s)
                        }
                        Rule::tuple_index | Rule::null_tuple_index => {
                            let nullish = op.as_rule() == Rule::null_tuple_index;
                            let lit = op.into_inner().next().expect("grammar: tuple index has a number");
                            let index = self.int(lit.as_str(), span_of(&lit));
                            if index == 0 {
                                self.zero_index(op_span);
                            }
                            expr(ExprKind::TupleAccess { tuple: Box::new(acc), index, nullish }, s)
                        }
                        Rule::prop_access | Rule::null_prop => {
                            let nullish = op.as_rule() == Rule::null_prop;
                            let name = op.into_inner().next().expect("grammar: property has a name");
                            let key =
                                expr(ExprKind::Constant(Constant::Str(ident_text(name.as_str()))), span_of(&name));
                            expr(ExprKind::ArrayAccess { array: Box::new(acc), property: Box::new(key), nullish }, s)
                        }
                        other => unreachable!("grammar: unexpected postfix {other:?}"),
                    };
                }
                acc
            }
            Rule::case_expr => {
                let mut subject = None;
                let mut parts: Vec<Expr> = Vec::new();
                let mut seen_when = false;
                for x in p.into_inner() {
                    match x.as_rule() {
                        Rule::kw_when => seen_when = true,
                        Rule::expression if !seen_when => subject = Some(self.expr(x)),
                        Rule::expression => parts.push(self.expr(x)),
                        _ => {}
                    }
                }
                if let Some(subject) = subject {
                    // CASE x WHEN a THEN b … → multiIf(x = a, b, …): a documented extension (PostHog
                    // lowers it to `transform`, which its VM lacks).
                    let has_else = parts.len() % 2 == 1;
                    let else_part = if has_else { parts.pop() } else { None };
                    let mut args = Vec::new();
                    for pair in parts.chunks(2) {
                        let s = pair[0].span;
                        args.push(expr(
                            ExprKind::Compare {
                                op: CompareOp::Eq,
                                left: Box::new(subject.clone()),
                                right: Box::new(pair[0].clone()),
                            },
                            s,
                        ));
                        args.push(pair[1].clone());
                    }
                    args.push(else_part.unwrap_or_else(|| expr(ExprKind::Constant(Constant::Null), span)));
                    call(if args.len() == 3 { "if" } else { "multiIf" }, args, span)
                } else {
                    let name = if parts.len() == 3 { "if" } else { "multiIf" };
                    call(name, parts, span)
                }
            }
            Rule::fstring => {
                let mut pieces = Vec::new();
                for x in p.into_inner() {
                    match x.as_rule() {
                        Rule::fstring_text => pieces.push(expr(
                            ExprKind::Constant(Constant::Str(unescape_fstring_text(x.as_str()))),
                            span_of(&x),
                        )),
                        Rule::fstring_expr => {
                            pieces.push(self.expr(x.into_inner().next().expect("grammar: {} holds an expression")))
                        }
                        _ => {}
                    }
                }
                match pieces.len() {
                    0 => expr(ExprKind::Constant(Constant::Str(String::new())), span),
                    1 => pieces.pop().expect("one piece"),
                    _ => call("concat", pieces, span),
                }
            }
            Rule::lambda => {
                let mut it = p.into_inner();
                let params_pair = it.next().expect("grammar: lambda has parameters");
                let params = params_pair.into_inner().map(|i| ident_text(i.as_str())).collect();
                let body_pair = it.next().expect("grammar: lambda has a body");
                let body = if body_pair.as_rule() == Rule::lambda_block {
                    let block = body_pair.into_inner().next().expect("grammar: block");
                    LambdaBody::Block(self.stmts(block))
                } else {
                    LambdaBody::Expr(Box::new(self.expr(body_pair)))
                };
                expr(ExprKind::Lambda { params, body }, span)
            }
            Rule::named_call => {
                let mut it = p.into_inner();
                let name_pair = it.next().expect("grammar: call has a name");
                let name_span = span_of(&name_pair);
                let name = name_pair.as_str().to_string();
                let args = it.next().expect("grammar: call has arguments").into_inner().map(|a| self.expr(a)).collect();
                expr(ExprKind::Call { name, name_span, args }, span)
            }
            Rule::number => self.number(p.as_str(), span),
            Rule::string => {
                let raw = p.into_inner().next().map(|x| x.as_str()).unwrap_or("");
                expr(ExprKind::Constant(Constant::Str(unescape_string(raw))), span)
            }
            Rule::null_lit => expr(ExprKind::Constant(Constant::Null), span),
            Rule::paren_expr => {
                let inner = self.expr(p.into_inner().next().expect("grammar: parens hold an expression"));
                // Parentheses vanish from the tree, as in PostHog's parser; keep the outer span.
                Expr { kind: inner.kind, span }
            }
            Rule::tuple_lit => expr(ExprKind::Tuple(p.into_inner().map(|x| self.expr(x)).collect()), span),
            Rule::array_lit => expr(ExprKind::Array(p.into_inner().map(|x| self.expr(x)).collect()), span),
            Rule::dict_lit => {
                let items = p
                    .into_inner()
                    .map(|kv| {
                        let mut it = kv.into_inner();
                        let k = self.expr(it.next().expect("grammar: key"));
                        let v = self.expr(it.next().expect("grammar: value"));
                        (k, v)
                    })
                    .collect();
                expr(ExprKind::Dict(items), span)
            }
            Rule::field => {
                let parts: Vec<Pair<Rule>> = p.into_inner().collect();
                let text = parts.first().map(|x| x.as_str()).unwrap_or("");
                let chain: Vec<String> = parts.iter().map(|x| ident_text(x.as_str())).collect();
                // pest's span of a repetition includes trailing whitespace; use the tokens'.
                let span = match (parts.first(), parts.last()) {
                    (Some(a), Some(b)) => Span::new(a.as_span().start(), b.as_span().end()),
                    _ => span,
                };
                if chain.len() == 1 {
                    if text.eq_ignore_ascii_case("true") {
                        return expr(ExprKind::Constant(Constant::Bool(true)), span);
                    }
                    if text.eq_ignore_ascii_case("false") {
                        return expr(ExprKind::Constant(Constant::Bool(false)), span);
                    }
                }
                expr(ExprKind::Field(chain), span)
            }
            other => unreachable!("grammar: unexpected expression rule {other:?}"),
        }
    }

    fn too_long(&mut self, span: Span) {
        self.diags.push(
            Diagnostic::new(
                Code::TooComplex,
                format!("an expression chains more than {MAX_CHAIN} operators"),
                Span::new(span.start, span.start + 1),
            )
            .with_help("split it into several variables"),
        );
    }

    fn zero_index(&mut self, span: Span) {
        self.diags.push(
            Diagnostic::new(Code::ZeroIndex, "Hog indexes start from 1, not 0", span)
                .with_label("index 0 is never valid")
                .with_help("the first element is `[1]`; the last is `[-1]`"),
        );
    }

    fn int(&mut self, text: &str, span: Span) -> i64 {
        match text.parse::<i64>() {
            Ok(v) => v,
            Err(_) => {
                self.diags.push(Diagnostic::new(Code::InvalidNumber, format!("index `{text}` is too large"), span));
                1
            }
        }
    }

    fn number(&mut self, text: &str, span: Span) -> Expr {
        let lower = text.to_ascii_lowercase();
        let constant = if let Some(hex) = lower.strip_prefix("0x") {
            match i64::from_str_radix(hex, 16) {
                Ok(v) => Constant::Int(v),
                Err(_) => Constant::Float(u128::from_str_radix(hex, 16).map(|v| v as f64).unwrap_or(f64::INFINITY)),
            }
        } else if lower.contains('.') || lower.contains('e') {
            match lower.parse::<f64>() {
                Ok(v) => Constant::Float(v),
                Err(_) => {
                    self.diags.push(Diagnostic::new(Code::InvalidNumber, format!("invalid number `{text}`"), span));
                    Constant::Float(0.0)
                }
            }
        } else {
            match lower.parse::<i64>() {
                Ok(v) => Constant::Int(v),
                // Too large for an integer: JavaScript numbers are doubles anyway.
                Err(_) => Constant::Float(lower.parse::<f64>().unwrap_or(f64::INFINITY)),
            }
        };
        expr(ExprKind::Constant(constant), span)
    }
}

/// Whether a `unary_expr` pair is a bare number literal (so `-1` is the constant -1).
fn is_plain_number(p: &Pair<Rule>) -> bool {
    let mut cur = p.clone();
    loop {
        let mut inner = cur.clone().into_inner();
        let first = match inner.next() {
            Some(f) => f,
            None => return false,
        };
        if inner.next().is_some() {
            return false;
        }
        match first.as_rule() {
            Rule::number => return true,
            Rule::postfix_expr | Rule::unary_expr => cur = first,
            _ => return false,
        }
    }
}

fn concat(left: Expr, right: Expr, span: Span) -> Expr {
    let mut args = Vec::new();
    for side in [left, right] {
        match side.kind {
            ExprKind::Call { ref name, .. } if name.eq_ignore_ascii_case("concat") => {
                if let ExprKind::Call { args: inner, .. } = side.kind {
                    args.extend(inner);
                }
            }
            _ => args.push(side),
        }
    }
    call("concat", args, span)
}

fn compare_op(p: &Pair<Rule>) -> CompareOp {
    let words: Vec<Rule> = p.clone().into_inner().map(|x| x.as_rule()).collect();
    if !words.is_empty() {
        let not = words.contains(&Rule::kw_not);
        let cohort = words.contains(&Rule::kw_cohort);
        return if words.contains(&Rule::kw_in) {
            match (not, cohort) {
                (false, false) => CompareOp::In,
                (true, false) => CompareOp::NotIn,
                (false, true) => CompareOp::InCohort,
                (true, true) => CompareOp::NotInCohort,
            }
        } else if words.contains(&Rule::kw_ilike) {
            if not {
                CompareOp::NotILike
            } else {
                CompareOp::ILike
            }
        } else if not {
            CompareOp::NotLike
        } else {
            CompareOp::Like
        };
    }
    match p.as_str() {
        "=" | "==" => CompareOp::Eq,
        "!=" => CompareOp::NotEq,
        "<" => CompareOp::Lt,
        "<=" => CompareOp::LtEq,
        ">" => CompareOp::Gt,
        ">=" => CompareOp::GtEq,
        "=~" | "~" => CompareOp::Regex,
        "!~" => CompareOp::NotRegex,
        "=~*" | "~*" => CompareOp::IRegex,
        _ => CompareOp::NotIRegex,
    }
}

/// The text of an identifier token, unquoting backticks and double quotes.
fn ident_text(raw: &str) -> String {
    if raw.len() >= 2 {
        let first = raw.as_bytes()[0];
        let last = raw.as_bytes()[raw.len() - 1];
        if (first == b'`' && last == b'`') || (first == b'"' && last == b'"') {
            let inner = &raw[1..raw.len() - 1];
            let q = first as char;
            let doubled = format!("{q}{q}");
            let escaped = format!("\\{q}");
            let s = inner.replace(&doubled, &q.to_string()).replace(&escaped, &q.to_string());
            return common_escapes(&s);
        }
    }
    raw.to_string()
}

/// Unescapes the body of a `'…'` literal the way PostHog's parser does.
pub fn unescape_string(raw: &str) -> String {
    common_escapes(&raw.replace("''", "'").replace("\\'", "'"))
}

fn unescape_fstring_text(raw: &str) -> String {
    common_escapes(&raw.replace("\\{", "{").replace("''", "'").replace("\\'", "'"))
}

/// PostHog's escape handling: sequential replacements (so its quirks carry over byte for byte).
fn common_escapes(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    s.replace("\\b", "\u{8}")
        .replace("\\f", "\u{c}")
        .replace("\\r", "\r")
        .replace("\\n", "\n")
        .replace("\\t", "\t")
        .replace("\\0", "")
        .replace("\\a", "\u{7}")
        .replace("\\v", "\u{b}")
        .replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_expr(src: &str) -> ExprKind {
        match parse_program(src).expect("parses").body.remove(0).kind {
            StmtKind::Expr(e) => e.kind,
            other => panic!("not an expression: {other:?}"),
        }
    }

    #[test]
    fn negative_literal_is_a_constant() {
        assert_eq!(first_expr("-1"), ExprKind::Constant(Constant::Int(-1)));
        assert!(matches!(first_expr("-x"), ExprKind::Arithmetic { op: ArithOp::Sub, .. }));
    }

    #[test]
    fn concat_flattens() {
        match first_expr("a || b || c") {
            ExprKind::Call { name, args, .. } => {
                assert_eq!(name, "concat");
                assert_eq!(args.len(), 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn and_flattens_through_parens() {
        match first_expr("a and (b and c)") {
            ExprKind::And(xs) => assert_eq!(xs.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn property_chain_is_one_field() {
        assert_eq!(
            first_expr("event.properties.$browser"),
            ExprKind::Field(vec!["event".into(), "properties".into(), "$browser".into()])
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape_string("a\\nb"), "a\nb");
        assert_eq!(unescape_string("it''s"), "it's");
        assert_eq!(unescape_string("it\\'s"), "it's");
        assert_eq!(unescape_string("\\d+"), "\\d+");
    }
}
