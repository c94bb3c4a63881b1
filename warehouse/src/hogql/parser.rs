//! HogQL's recursive-descent parser: tokens to [`ast::Query`](super::ast::Query).
//!
//! Nesting is bounded ([`MAX_DEPTH`]): every recursion and every link of a flat chain counts, so
//! a deeply nested query is an error, never a stack overflow. Operator chains of one precedence
//! level (`a OR b OR c …`) are stored flat and do not count per link.

use super::ast::*;
use super::lexer::{lex, Tok, Token};
use super::HogQlError;

/// How deep subqueries, parentheses and unary operators may nest.
pub const MAX_DEPTH: usize = 100;

/// Types `CAST(x AS Type)` takes, and the conversion function each becomes.
const CAST_TYPES: &[(&str, &str)] = &[
    ("String", "toString"),
    ("Int8", "toInt8"),
    ("Int16", "toInt16"),
    ("Int32", "toInt32"),
    ("Int64", "toInt64"),
    ("UInt8", "toUInt8"),
    ("UInt16", "toUInt16"),
    ("UInt32", "toUInt32"),
    ("UInt64", "toUInt64"),
    ("Float32", "toFloat32"),
    ("Float64", "toFloat64"),
    ("Date", "toDate"),
    ("DateTime", "toDateTime"),
    ("UUID", "toUUID"),
];

/// Words that end an expression or clause and so cannot be implicit aliases.
const RESERVED: &[&str] = &[
    "ALL", "AND", "ANTI", "ANY", "ARRAY", "AS", "ASC", "ASOF", "BETWEEN", "BY", "CASE", "CROSS", "DESC", "DISTINCT",
    "ELSE", "END", "FINAL", "FORMAT", "FROM", "FULL", "GLOBAL", "GROUP", "HAVING", "ILIKE", "IN", "INNER", "INTERVAL",
    "INTO", "IS", "JOIN", "LEFT", "LIKE", "LIMIT", "NOT", "OFFSET", "ON", "OR", "ORDER", "OUTER", "PREWHERE",
    "QUALIFY", "RIGHT", "SAMPLE", "SELECT", "SEMI", "SETTINGS", "THEN", "UNION", "USING", "WHEN", "WHERE", "WINDOW",
    "WITH",
];

/// Interval units, as printed.
const UNITS: &[&str] = &["SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "QUARTER", "YEAR"];

/// Parses one HogQL statement (a trailing `;` is allowed).
pub fn parse(src: &str) -> Result<Query, HogQlError> {
    let toks = lex(src)?;
    let mut p = Parser { src, toks, i: 0, depth: 0 };
    let first = p.peek().clone();
    if !(first.is_kw("SELECT") || first.is_kw("WITH") || first.is_punct("(")) {
        let what = match &first.tok {
            Tok::Eof => "the query is empty".to_string(),
            Tok::Word(w) => format!("only SELECT queries are allowed, not `{}`", w.to_uppercase()),
            _ => format!("a query starts with SELECT or WITH, not {}", first.describe()),
        };
        return Err(at(&first, what));
    }
    let q = p.query()?;
    if p.peek().is_punct(";") {
        p.bump();
        if !matches!(p.peek().tok, Tok::Eof) {
            return Err(at(p.peek(), "multiple statements are not allowed: nothing may follow `;`"));
        }
    }
    if !matches!(p.peek().tok, Tok::Eof) {
        return Err(p.unexpected("the end of the query"));
    }
    Ok(q)
}

fn at(t: &Token, message: impl Into<String>) -> HogQlError {
    HogQlError { message: message.into(), line: t.line, column: t.column }
}

fn pos(t: &Token) -> Pos {
    Pos { line: t.line, column: t.column }
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.toks[self.i.min(self.toks.len() - 1)]
    }
    fn peek_at(&self, n: usize) -> &Token {
        &self.toks[(self.i + n).min(self.toks.len() - 1)]
    }
    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek().is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        if self.peek().is_punct(p) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn expect_kw(&mut self, kw: &str) -> Result<Token, HogQlError> {
        if self.peek().is_kw(kw) {
            Ok(self.bump())
        } else {
            Err(self.unexpected(&format!("`{kw}`")))
        }
    }
    fn expect_punct(&mut self, p: &str) -> Result<Token, HogQlError> {
        if self.peek().is_punct(p) {
            Ok(self.bump())
        } else {
            Err(self.unexpected(&format!("`{p}`")))
        }
    }

    /// "expected X, found Y", or why Y is refused where it is a clause HogQL does not take.
    fn unexpected(&self, expected: &str) -> HogQlError {
        let t = self.peek();
        let refused = [
            ("SETTINGS", "SETTINGS is not allowed: limits are set by the server"),
            ("FORMAT", "FORMAT is not allowed: the API chooses the output format"),
            ("INTO", "INTO OUTFILE is not allowed"),
            ("FINAL", "FINAL is not needed: tables are already read deduplicated"),
            ("PREWHERE", "PREWHERE is not supported: use WHERE"),
            ("SAMPLE", "SAMPLE is not supported"),
            ("ARRAY", "ARRAY JOIN is not supported: use arrayJoin()"),
            ("GLOBAL", "GLOBAL is not supported"),
            ("WINDOW", "window functions are not supported"),
            ("QUALIFY", "QUALIFY is not supported"),
        ];
        for (kw, why) in refused {
            if t.is_kw(kw) {
                return at(t, why);
            }
        }
        if t.is_punct(";") {
            return at(t, "`;` may only end the query");
        }
        at(t, format!("expected {expected}, found {}", t.describe()))
    }

    fn enter(&mut self) -> Result<(), HogQlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(at(self.peek(), format!("the query is nested too deeply (more than {MAX_DEPTH} levels)")));
        }
        Ok(())
    }
    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// An identifier: a bare word that is not reserved, or a quoted name.
    fn ident(&mut self, what: &str) -> Result<Ident, HogQlError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Word(w) if !is_reserved(w) => {
                self.bump();
                Ok(Ident { name: w.clone(), pos: pos(&t) })
            }
            Tok::Quoted(w) => {
                self.bump();
                Ok(Ident { name: w.clone(), pos: pos(&t) })
            }
            _ => Err(self.unexpected(what)),
        }
    }

    /// `[AS] alias` after a table, or `AS alias` / a bare non-reserved word after a select item.
    fn alias(&mut self) -> Result<Option<Ident>, HogQlError> {
        if self.eat_kw("AS") {
            let t = self.peek().clone();
            return match &t.tok {
                Tok::Word(w) | Tok::Quoted(w) => {
                    self.bump();
                    Ok(Some(Ident { name: w.clone(), pos: pos(&t) }))
                }
                _ => Err(self.unexpected("an alias")),
            };
        }
        match &self.peek().tok {
            Tok::Word(w) if !is_reserved(w) => self.ident("an alias").map(Some),
            Tok::Quoted(_) => self.ident("an alias").map(Some),
            _ => Ok(None),
        }
    }

    fn query(&mut self) -> Result<Query, HogQlError> {
        self.enter()?;
        let start = pos(self.peek());
        let mut ctes = Vec::new();
        if self.eat_kw("WITH") {
            loop {
                let name = self.ident("a CTE name (`WITH name AS (SELECT …)`)")?;
                if !self.peek().is_kw("AS") || !self.peek_at(1).is_punct("(") {
                    return Err(self.unexpected("`AS (` (HogQL takes `WITH name AS (SELECT …)`)"));
                }
                self.bump();
                self.bump();
                let q = self.query()?;
                self.expect_punct(")")?;
                ctes.push((name, q));
                if !self.eat_punct(",") {
                    break;
                }
            }
        }
        let first = self.set_part()?;
        let mut rest = Vec::new();
        while self.peek().is_kw("UNION") {
            self.bump();
            let kind = if self.eat_kw("ALL") {
                Union::All
            } else if self.eat_kw("DISTINCT") {
                Union::Distinct
            } else {
                return Err(self.unexpected("`ALL` or `DISTINCT` after UNION"));
            };
            rest.push((kind, self.set_part()?));
        }
        self.leave();
        Ok(Query { ctes, first, rest, pos: start })
    }

    fn set_part(&mut self) -> Result<SetPart, HogQlError> {
        if self.eat_punct("(") {
            let q = self.query()?;
            self.expect_punct(")")?;
            Ok(SetPart::Paren(Box::new(q)))
        } else if self.peek().is_kw("SELECT") {
            Ok(SetPart::Select(Box::new(self.select()?)))
        } else {
            Err(self.unexpected("SELECT"))
        }
    }

    fn select(&mut self) -> Result<Select, HogQlError> {
        let start = pos(&self.expect_kw("SELECT")?);
        let distinct = self.eat_kw("DISTINCT");
        let mut items = Vec::new();
        loop {
            let from = self.peek().start;
            let expr = self.expr()?;
            let to = self.toks[self.i.saturating_sub(1)].end.max(from);
            let source = self.src[from..to].trim().to_string();
            let alias = self.alias()?;
            items.push(SelectItem { expr, alias, source });
            if !self.eat_punct(",") {
                break;
            }
        }
        let from = if self.eat_kw("FROM") { Some(self.from()?) } else { None };
        let where_ = if self.eat_kw("WHERE") { Some(self.expr()?) } else { None };
        let mut group_by = Vec::new();
        if self.eat_kw("GROUP") {
            self.expect_kw("BY")?;
            group_by = self.expr_list()?;
        }
        let having = if self.eat_kw("HAVING") { Some(self.expr()?) } else { None };
        let mut order_by = Vec::new();
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let expr = self.expr()?;
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                order_by.push(OrderItem { expr, desc });
                if !self.eat_punct(",") {
                    break;
                }
            }
        }
        let limit = if self.eat_kw("LIMIT") {
            let a = self.integer()?;
            if self.eat_punct(",") {
                let count = self.integer()?;
                Some(Limit { count, offset: Some(a) })
            } else if self.eat_kw("OFFSET") {
                Some(Limit { count: a, offset: Some(self.integer()?) })
            } else {
                Some(Limit { count: a, offset: None })
            }
        } else {
            None
        };
        Ok(Select { distinct, items, from, where_, group_by, having, order_by, limit, pos: start })
    }

    fn integer(&mut self) -> Result<u64, HogQlError> {
        let t = self.peek().clone();
        match &t.tok {
            Tok::Number(n) => match n.parse::<u64>() {
                Ok(v) => {
                    self.bump();
                    Ok(v)
                }
                Err(_) => Err(at(&t, format!("LIMIT and OFFSET take a whole number, not {n}"))),
            },
            _ => Err(self.unexpected("a whole number")),
        }
    }

    fn from(&mut self) -> Result<From, HogQlError> {
        let first = self.table_ref()?;
        let mut joins = Vec::new();
        loop {
            let t = self.peek().clone();
            let kind = if t.is_kw("JOIN") || t.is_kw("INNER") {
                "INNER JOIN"
            } else if t.is_kw("LEFT") {
                "LEFT JOIN"
            } else if t.is_kw("RIGHT") {
                "RIGHT JOIN"
            } else if t.is_kw("FULL") {
                "FULL JOIN"
            } else if t.is_kw("CROSS") {
                "CROSS JOIN"
            } else if ["ANY", "ALL", "ASOF", "SEMI", "ANTI", "GLOBAL", "ARRAY", "PASTE"].iter().any(|k| t.is_kw(k)) {
                return Err(at(
                    &t,
                    format!(
                        "{} JOIN is not supported",
                        match &t.tok {
                            Tok::Word(w) => w.to_uppercase(),
                            _ => String::new(),
                        }
                    ),
                ));
            } else if t.is_punct(",") {
                return Err(at(&t, "comma joins are not supported: use CROSS JOIN or JOIN … ON"));
            } else {
                break;
            };
            self.bump();
            if !t.is_kw("JOIN") {
                if kind != "INNER JOIN" && kind != "CROSS JOIN" {
                    self.eat_kw("OUTER");
                }
                self.expect_kw("JOIN")?;
            }
            let table = self.table_ref()?;
            let constraint = if kind == "CROSS JOIN" {
                JoinConstraint::None
            } else if self.eat_kw("ON") {
                JoinConstraint::On(self.expr()?)
            } else if self.eat_kw("USING") {
                let parens = self.eat_punct("(");
                let mut cols = vec![self.ident("a column name")?];
                while self.eat_punct(",") {
                    cols.push(self.ident("a column name")?);
                }
                if parens {
                    self.expect_punct(")")?;
                }
                JoinConstraint::Using(cols)
            } else {
                return Err(self.unexpected("ON or USING"));
            };
            joins.push(Join { kind, table, constraint });
        }
        Ok(From { first, joins })
    }

    fn table_ref(&mut self) -> Result<TableRef, HogQlError> {
        let source = if self.eat_punct("(") {
            let q = self.query()?;
            self.expect_punct(")")?;
            TableSource::Subquery(Box::new(q))
        } else {
            let t = self.peek().clone();
            let name = self.ident("a table name or a subquery")?;
            if self.peek().is_punct(".") {
                let rest = match &self.peek_at(1).tok {
                    Tok::Word(w) | Tok::Quoted(w) => format!("{}.{w}", name.name),
                    _ => name.name.clone(),
                };
                return Err(at(
                    &t,
                    format!(
                        "qualified table names are not allowed (`{rest}`): query events, persons, \
                         person_distinct_ids or live_aggregates"
                    ),
                ));
            }
            if self.peek().is_punct("(") {
                return Err(at(&t, format!("table functions are not allowed (`{}(…)`)", name.name)));
            }
            TableSource::Named(name)
        };
        let alias = self.alias()?;
        Ok(TableRef { source, alias })
    }

    fn expr_list(&mut self) -> Result<Vec<Expr>, HogQlError> {
        let mut v = vec![self.expr()?];
        while self.eat_punct(",") {
            v.push(self.expr()?);
        }
        Ok(v)
    }

    fn expr(&mut self) -> Result<Expr, HogQlError> {
        self.enter()?;
        let e = self.expr_bp(0);
        self.leave();
        e
    }

    /// Precedence climbing: operators binding tighter than `min`. One frame per precedence level
    /// at most, so nesting costs little stack.
    fn expr_bp(&mut self, min: u8) -> Result<Expr, HogQlError> {
        let mut lhs = self.prefix()?;
        loop {
            if let Some(op) = binop(self.peek()) {
                let bp = level(op);
                if bp <= min {
                    break;
                }
                self.bump();
                let rhs = self.expr_bp(bp)?;
                lhs = merge(lhs, op, rhs);
                continue;
            }
            if min >= CMP {
                break;
            }
            let p = lhs.pos;
            let negated =
                self.peek().is_kw("NOT") && ["LIKE", "ILIKE", "IN", "BETWEEN"].iter().any(|k| self.peek_at(1).is_kw(k));
            if negated {
                self.bump();
            }
            let kind = if self.peek().is_kw("LIKE") || self.peek().is_kw("ILIKE") {
                let insensitive = self.bump().is_kw("ILIKE");
                let pattern = self.expr_bp(CMP)?;
                ExprKind::Like { expr: Box::new(lhs), pattern: Box::new(pattern), negated, insensitive }
            } else if self.eat_kw("IN") {
                ExprKind::In { expr: Box::new(lhs), list: self.in_list()?, negated }
            } else if self.eat_kw("BETWEEN") {
                let low = self.expr_bp(CMP)?;
                self.expect_kw("AND")?;
                let high = self.expr_bp(CMP)?;
                ExprKind::Between { expr: Box::new(lhs), low: Box::new(low), high: Box::new(high), negated }
            } else if self.eat_kw("IS") {
                let negated = self.eat_kw("NOT");
                self.expect_kw("NULL")?;
                ExprKind::IsNull { expr: Box::new(lhs), negated }
            } else {
                break;
            };
            lhs = Expr { kind, pos: p };
        }
        Ok(lhs)
    }

    /// `NOT x`, `-x`, or a primary with its `[i]` suffixes.
    fn prefix(&mut self) -> Result<Expr, HogQlError> {
        if self.peek().is_kw("NOT") || self.peek().is_punct("-") {
            let t = self.bump();
            self.enter()?;
            let e = if t.is_kw("NOT") { self.expr_bp(NOT) } else { self.prefix() };
            self.leave();
            let e = Box::new(e?);
            let kind = if t.is_kw("NOT") { ExprKind::Not(e) } else { ExprKind::Neg(e) };
            return Ok(Expr { kind, pos: pos(&t) });
        }
        let e = self.primary()?;
        if !self.peek().is_punct("[") {
            return Ok(e);
        }
        let p = e.pos;
        let mut idx = Vec::new();
        while self.eat_punct("[") {
            idx.push(self.expr()?);
            self.expect_punct("]")?;
        }
        Ok(Expr { kind: ExprKind::Index(Box::new(e), idx), pos: p })
    }

    fn in_list(&mut self) -> Result<InList, HogQlError> {
        if self.eat_punct("(") {
            if self.peek().is_kw("SELECT") || self.peek().is_kw("WITH") {
                let q = self.query()?;
                self.expect_punct(")")?;
                return Ok(InList::Query(Box::new(q)));
            }
            let values = if self.peek().is_punct(")") { Vec::new() } else { self.expr_list()? };
            self.expect_punct(")")?;
            return Ok(InList::Values(values));
        }
        let t = self.peek().clone();
        if matches!(t.tok, Tok::Word(_) | Tok::Quoted(_)) {
            let name = self.ident("a parenthesized list or subquery after IN")?;
            if self.peek().is_punct(".") || self.peek().is_punct("(") {
                return Err(at(&t, "IN takes a parenthesized list, a subquery or a CTE name"));
            }
            return Ok(InList::Named(name));
        }
        Err(self.unexpected("a parenthesized list or subquery after IN"))
    }

    /// Whether a lambda starts here: `x ->` or `(x, y) ->`.
    fn lambda_ahead(&self) -> bool {
        let word = |t: &Token| matches!(&t.tok, Tok::Word(w) if !is_reserved(w)) || matches!(t.tok, Tok::Quoted(_));
        if word(self.peek()) && self.peek_at(1).is_punct("->") {
            return true;
        }
        if !self.peek().is_punct("(") {
            return false;
        }
        let mut n = 1;
        loop {
            if !word(self.peek_at(n)) {
                return false;
            }
            if self.peek_at(n + 1).is_punct(")") {
                return self.peek_at(n + 2).is_punct("->");
            }
            if !self.peek_at(n + 1).is_punct(",") {
                return false;
            }
            n += 2;
        }
    }

    fn lambda(&mut self) -> Result<Expr, HogQlError> {
        let p = pos(self.peek());
        let mut params = Vec::new();
        if self.eat_punct("(") {
            loop {
                params.push(self.ident("a lambda parameter")?);
                if !self.eat_punct(",") {
                    break;
                }
            }
            self.expect_punct(")")?;
        } else {
            params.push(self.ident("a lambda parameter")?);
        }
        self.expect_punct("->")?;
        let body = self.expr()?;
        Ok(Expr { kind: ExprKind::Lambda(params, Box::new(body)), pos: p })
    }

    fn primary(&mut self) -> Result<Expr, HogQlError> {
        if self.lambda_ahead() {
            return self.lambda();
        }
        let t = self.peek().clone();
        let p = pos(&t);
        let kind = match &t.tok {
            Tok::Number(n) => {
                self.bump();
                ExprKind::Number(n.clone())
            }
            Tok::Str(s) => {
                self.bump();
                ExprKind::Str(s.clone())
            }
            Tok::Punct("*") => {
                self.bump();
                ExprKind::Star(None)
            }
            Tok::Punct("[") => {
                self.bump();
                let items = if self.peek().is_punct("]") { Vec::new() } else { self.expr_list()? };
                self.expect_punct("]")?;
                ExprKind::Array(items)
            }
            Tok::Punct("(") => {
                self.bump();
                if self.peek().is_kw("SELECT") || self.peek().is_kw("WITH") {
                    let q = self.query()?;
                    self.expect_punct(")")?;
                    ExprKind::Subquery(Box::new(q))
                } else if self.eat_punct(")") {
                    ExprKind::Tuple(Vec::new())
                } else {
                    let first = self.expr()?;
                    if self.eat_punct(")") {
                        return Ok(first);
                    }
                    let mut items = vec![first];
                    while self.eat_punct(",") {
                        items.push(self.expr()?);
                    }
                    self.expect_punct(")")?;
                    ExprKind::Tuple(items)
                }
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("NULL") => {
                self.bump();
                ExprKind::Null
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("TRUE") || w.eq_ignore_ascii_case("FALSE") => {
                self.bump();
                ExprKind::Bool(w.eq_ignore_ascii_case("TRUE"))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("CASE") => {
                self.bump();
                self.case()?
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("INTERVAL") => {
                self.bump();
                let value = self.prefix()?;
                let u = self.peek().clone();
                let unit = match &u.tok {
                    Tok::Word(w) => {
                        let up = w.to_ascii_uppercase();
                        let up = up.strip_suffix('S').unwrap_or(&up).to_string();
                        UNITS.iter().find(|x| **x == up).copied()
                    }
                    _ => None,
                };
                let Some(unit) = unit else {
                    return Err(
                        self.unexpected("an interval unit (SECOND, MINUTE, HOUR, DAY, WEEK, MONTH, QUARTER, YEAR)")
                    );
                };
                self.bump();
                ExprKind::Interval(Box::new(value), unit)
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("CAST") && self.peek_at(1).is_punct("(") => {
                self.bump();
                self.cast(p)?
            }
            Tok::Word(w) if !is_reserved(w) && self.peek_at(1).is_punct("(") => {
                let name = Ident { name: w.clone(), pos: p };
                self.bump();
                self.call(name)?
            }
            Tok::Word(_) | Tok::Quoted(_) => {
                let mut parts = vec![self.ident("an expression")?];
                while self.peek().is_punct(".") {
                    self.bump();
                    if self.peek().is_punct("*") {
                        let star = self.bump();
                        if parts.len() > 1 {
                            return Err(at(&star, "`*` may follow a table alias only (`alias.*`)"));
                        }
                        return Ok(Expr { kind: ExprKind::Star(parts.pop()), pos: p });
                    }
                    let t2 = self.peek().clone();
                    match &t2.tok {
                        // After a dot any word is a name, keywords included (`e.end` is unusual but legal).
                        Tok::Word(w) | Tok::Quoted(w) => {
                            self.bump();
                            parts.push(Ident { name: w.clone(), pos: pos(&t2) });
                        }
                        _ => return Err(self.unexpected("a name after `.`")),
                    }
                }
                ExprKind::Chain(parts)
            }
            _ => return Err(self.unexpected("an expression")),
        };
        Ok(Expr { kind, pos: p })
    }

    /// `CAST(expr AS Type)` after `CAST`: the conversion function of the type (`toInt64(expr)`),
    /// so the allow-list of functions applies to it as to any call.
    fn cast(&mut self, p: Pos) -> Result<ExprKind, HogQlError> {
        self.expect_punct("(")?;
        let value = self.expr()?;
        self.expect_kw("AS")?;
        let t = self.peek().clone();
        let target = match &t.tok {
            Tok::Word(w) | Tok::Quoted(w) => {
                CAST_TYPES.iter().find(|(ty, _)| ty.eq_ignore_ascii_case(w)).map(|(_, f)| *f)
            }
            _ => None,
        };
        let Some(function) = target else {
            let names: Vec<&str> = CAST_TYPES.iter().map(|(ty, _)| *ty).collect();
            return Err(at(&t, format!("CAST to this type is not supported; use one of {}", names.join(", "))));
        };
        self.bump();
        self.expect_punct(")")?;
        let name = Ident { name: function.to_string(), pos: p };
        Ok(ExprKind::Call { name, params: None, args: vec![value], distinct: false })
    }

    fn call(&mut self, name: Ident) -> Result<ExprKind, HogQlError> {
        self.expect_punct("(")?;
        let (mut args, mut distinct) = self.args()?;
        let mut params = None;
        if self.peek().is_punct("(") {
            if distinct {
                return Err(at(self.peek(), "DISTINCT goes in the arguments, not the parameters"));
            }
            self.bump();
            params = Some(args);
            (args, distinct) = self.args()?;
        }
        Ok(ExprKind::Call { name, params, args, distinct })
    }

    /// Arguments after `(`, through `)`.
    fn args(&mut self) -> Result<(Vec<Expr>, bool), HogQlError> {
        if self.eat_punct(")") {
            return Ok((Vec::new(), false));
        }
        let distinct = self.eat_kw("DISTINCT");
        let mut args = Vec::new();
        loop {
            args.push(if self.lambda_ahead() { self.lambda()? } else { self.expr()? });
            if !self.eat_punct(",") {
                break;
            }
        }
        self.expect_punct(")")?;
        Ok((args, distinct))
    }

    fn case(&mut self) -> Result<ExprKind, HogQlError> {
        let operand = if self.peek().is_kw("WHEN") { None } else { Some(Box::new(self.expr()?)) };
        let mut whens = Vec::new();
        while self.eat_kw("WHEN") {
            let w = self.expr()?;
            self.expect_kw("THEN")?;
            whens.push((w, self.expr()?));
        }
        if whens.is_empty() {
            return Err(self.unexpected("WHEN"));
        }
        let else_ = if self.eat_kw("ELSE") { Some(Box::new(self.expr()?)) } else { None };
        self.expect_kw("END")?;
        Ok(ExprKind::Case { operand, whens, else_ })
    }
}

fn is_reserved(w: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(w))
}

/// Binding powers: `OR` < `AND` < `NOT` < comparisons (and LIKE, IN, BETWEEN, IS) < `||` < `+ -` < `* / %`.
const NOT: u8 = 3;
const CMP: u8 = 4;

fn level(op: BinOp) -> u8 {
    match op {
        BinOp::Or => 1,
        BinOp::And => 2,
        BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq => CMP,
        BinOp::Concat => 5,
        BinOp::Add | BinOp::Sub => 6,
        BinOp::Mul | BinOp::Div | BinOp::Mod => 7,
    }
}

fn binop(t: &Token) -> Option<BinOp> {
    Some(match &t.tok {
        Tok::Word(w) if w.eq_ignore_ascii_case("OR") => BinOp::Or,
        Tok::Word(w) if w.eq_ignore_ascii_case("AND") => BinOp::And,
        Tok::Punct("=") | Tok::Punct("==") => BinOp::Eq,
        Tok::Punct("!=") | Tok::Punct("<>") => BinOp::NotEq,
        Tok::Punct("<") => BinOp::Lt,
        Tok::Punct("<=") => BinOp::LtEq,
        Tok::Punct(">") => BinOp::Gt,
        Tok::Punct(">=") => BinOp::GtEq,
        Tok::Punct("||") => BinOp::Concat,
        Tok::Punct("+") => BinOp::Add,
        Tok::Punct("-") => BinOp::Sub,
        Tok::Punct("*") => BinOp::Mul,
        Tok::Punct("/") => BinOp::Div,
        Tok::Punct("%") => BinOp::Mod,
        _ => return None,
    })
}

/// `lhs op rhs`, appended to `lhs` when it is a chain of the same level (left-associative, so
/// the meaning is the same and long chains stay flat).
fn merge(lhs: Expr, op: BinOp, rhs: Expr) -> Expr {
    let p = lhs.pos;
    match lhs.kind {
        ExprKind::Binary(first, mut rest) if rest.first().is_some_and(|(o, _)| level(*o) == level(op)) => {
            rest.push((op, rhs));
            Expr { kind: ExprKind::Binary(first, rest), pos: p }
        }
        kind => Expr { kind: ExprKind::Binary(Box::new(Expr { kind, pos: p }), vec![(op, rhs)]), pos: p },
    }
}
