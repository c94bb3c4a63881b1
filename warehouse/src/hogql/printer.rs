//! Prints ClickHouse SQL from a HogQL tree: every table reference becomes a subquery over the
//! caller's team, CTEs are inlined (ClickHouse 18.16 has no `WITH name AS (…)`), property chains
//! become JSON extraction, and the outermost query gets its row cap and `SETTINGS`.

use super::ast::*;
use super::functions::{self, Kind};
use super::{Context, HogQlError, MAX_SQL_BYTES};
use crate::schema::Dialect;

/// The tables HogQL reads, as printed.
pub const TABLES: &[&str] = &["events", "persons", "person_distinct_ids", "live_aggregates"];

/// Prints `query` as the outermost statement.
pub fn print(query: &Query, ctx: &Context) -> Result<String, HogQlError> {
    let p = Printer { ctx };
    let env = Env::default();
    let body = p.top(query, &env)?;
    Ok(format!("{body} SETTINGS max_execution_time = {}", ctx.max_execution_time_secs))
}

fn err(pos: Pos, message: impl Into<String>) -> HogQlError {
    HogQlError { message: message.into(), line: pos.line, column: pos.column }
}

/// A name as ClickHouse reads it: bare when plainly an identifier, else backquoted.
pub fn ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !RESERVED_OUT.iter().any(|k| k.eq_ignore_ascii_case(name));
    if plain {
        name.to_string()
    } else {
        quote(name, '`')
    }
}

/// Words ClickHouse would read as keywords where a name is expected.
const RESERVED_OUT: &[&str] = &[
    "ALL", "AND", "ANY", "ARRAY", "AS", "ASC", "BETWEEN", "BY", "CASE", "CROSS", "DESC", "DISTINCT", "ELSE", "END",
    "FALSE", "FINAL", "FORMAT", "FROM", "FULL", "GLOBAL", "GROUP", "HAVING", "ILIKE", "IN", "INNER", "INTERVAL",
    "INTO", "IS", "JOIN", "LEFT", "LIKE", "LIMIT", "NOT", "NULL", "OFFSET", "ON", "OR", "ORDER", "OUTER", "PREWHERE",
    "RIGHT", "SAMPLE", "SELECT", "SETTINGS", "THEN", "TRUE", "UNION", "USING", "WHEN", "WHERE", "WITH",
];

/// A string literal (`'…'`), or a backquoted name with `q = '`'`.
pub fn quote(s: &str, q: char) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// What is visible where an expression or table reference is printed.
#[derive(Default, Clone)]
struct Env<'a> {
    /// CTEs in scope, innermost last. Entry `i`'s body sees only entries before `i`.
    ctes: Vec<(&'a str, &'a Query)>,
    /// Table aliases in scope (the current select's and outer ones), as the user may write them
    /// (the name matched, what to print).
    aliases: Vec<Alias>,
}

impl Env<'_> {
    fn cte(&self, name: &str) -> Option<usize> {
        self.ctes.iter().rposition(|(n, _)| *n == name)
    }
    fn alias(&self, name: &str) -> Option<&Alias> {
        self.aliases.iter().rev().find(|(n, _)| n == name)
    }
}

/// A table alias in scope: the name as matched and as printed.
type Alias = (String, String);

/// A resolved name chain.
enum Resolved {
    /// A column, printed.
    Column(String),
    /// A path into a JSON column (`properties`, `person_properties`), the column printed.
    Json(String, Vec<String>),
}

struct Printer<'c> {
    ctx: &'c Context,
}

impl Printer<'_> {
    /// The outermost query, with its row cap.
    fn top(&self, q: &Query, env: &Env<'_>) -> Result<String, HogQlError> {
        if q.rest.is_empty() {
            match &q.first {
                SetPart::Select(s) => {
                    let mut env = env.clone();
                    self.ctes(q, &mut env)?;
                    let count = s.limit.map_or(self.ctx.default_limit, |l| l.count.min(self.ctx.max_limit));
                    let limit = Limit { count, offset: s.limit.and_then(|l| l.offset) };
                    return self.select(s, &env, Some(limit));
                }
                SetPart::Paren(inner) if q.ctes.is_empty() => return self.top(inner, env),
                SetPart::Paren(_) => {}
            }
        }
        let body = self.query(q, env)?;
        Ok(format!("SELECT * FROM ({body}) LIMIT {}", self.ctx.default_limit.min(self.ctx.max_limit)))
    }

    /// Brings `q`'s CTEs into scope, checking each body (printed once, even if unused).
    fn ctes<'a>(&self, q: &'a Query, env: &mut Env<'a>) -> Result<(), HogQlError> {
        for (name, body) in &q.ctes {
            if q.ctes.iter().filter(|(n, _)| n.name == name.name).count() > 1 {
                return Err(err(name.pos, format!("CTE `{}` is defined twice", name.name)));
            }
            self.query(body, env)?;
            env.ctes.push((name.name.as_str(), body));
        }
        Ok(())
    }

    fn query(&self, q: &Query, env: &Env<'_>) -> Result<String, HogQlError> {
        let mut env = env.clone();
        self.ctes(q, &mut env)?;
        let mut out = self.set_part(&q.first, &env)?;
        for (kind, part) in &q.rest {
            let next = self.set_part(part, &env)?;
            out = match kind {
                Union::All => format!("{out} UNION ALL {next}"),
                // 18.16 has only UNION ALL.
                Union::Distinct => format!("SELECT DISTINCT * FROM ({out} UNION ALL {next})"),
            };
            self.check_size(&out, q.pos)?;
        }
        self.check_size(&out, q.pos)?;
        Ok(out)
    }

    fn check_size(&self, sql: &str, pos: Pos) -> Result<(), HogQlError> {
        if sql.len() > MAX_SQL_BYTES {
            return Err(err(
                pos,
                format!("the query is too large once its CTEs are expanded (over {MAX_SQL_BYTES} bytes)"),
            ));
        }
        Ok(())
    }

    fn set_part(&self, part: &SetPart, env: &Env<'_>) -> Result<String, HogQlError> {
        match part {
            SetPart::Select(s) => self.select(s, env, s.limit),
            SetPart::Paren(q) => match (&q.first, q.rest.is_empty() && q.ctes.is_empty()) {
                (SetPart::Select(s), true) => self.select(s, env, s.limit),
                _ => Ok(format!("SELECT * FROM ({})", self.query(q, env)?)),
            },
        }
    }

    fn select(&self, s: &Select, outer: &Env<'_>, limit: Option<Limit>) -> Result<String, HogQlError> {
        let mut env = outer.clone();
        let mut from_sql = String::new();
        if let Some(from) = &s.from {
            // Aliases first, so that ON clauses can name tables joined later in the list too.
            let mut refs = vec![&from.first];
            refs.extend(from.joins.iter().map(|j| &j.table));
            let mut printed = Vec::new();
            for r in &refs {
                let (sql, aliases) = self.table_ref(r, outer)?;
                env.aliases.extend(aliases);
                printed.push(sql);
            }
            from_sql.push_str(" FROM ");
            from_sql.push_str(&printed[0]);
            for (join, sql) in from.joins.iter().zip(&printed[1..]) {
                from_sql.push_str(&format!(" {} {sql}", join.kind));
                match &join.constraint {
                    JoinConstraint::On(e) => from_sql.push_str(&format!(" ON {}", self.expr(e, &env)?)),
                    JoinConstraint::Using(cols) => {
                        let cols: Vec<String> = cols.iter().map(|c| ident(&c.name)).collect();
                        from_sql.push_str(&format!(" USING ({})", cols.join(", ")));
                    }
                    JoinConstraint::None => {}
                }
            }
        }
        let mut out = String::from("SELECT ");
        if s.distinct {
            out.push_str("DISTINCT ");
        }
        let mut names: std::collections::HashSet<String> = std::collections::HashSet::new();
        for (i, item) in s.items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let sql = self.expr(&item.expr, &env)?;
            self.check_size(&out, s.pos)?;
            let implicit = matches!(&item.expr.kind, ExprKind::Star(_))
                || matches!(&item.expr.kind, ExprKind::Chain(parts) if parts.len() == 1);
            let alias = match &item.alias {
                Some(a) => Some(a.name.clone()),
                // Qualified names are named differently by ClickHouse versions (`event`, `e.event`).
                None if !implicit
                    && (sql != item.source || matches!(&item.expr.kind, ExprKind::Chain(_)))
                    && !names.contains(&item.source) =>
                {
                    Some(item.source.clone())
                }
                None => None,
            };
            out.push_str(&sql);
            if let Some(a) = alias {
                out.push_str(" AS ");
                out.push_str(&quote(&a, '`'));
                names.insert(a);
            }
        }
        out.push_str(&from_sql);
        if let Some(w) = &s.where_ {
            out.push_str(&format!(" WHERE {}", self.expr(w, &env)?));
        }
        if !s.group_by.is_empty() {
            out.push_str(&format!(" GROUP BY {}", self.list(&s.group_by, &env)?));
        }
        if let Some(h) = &s.having {
            out.push_str(&format!(" HAVING {}", self.expr(h, &env)?));
        }
        if !s.order_by.is_empty() {
            let mut items = Vec::new();
            for o in &s.order_by {
                items.push(format!("{}{}", self.expr(&o.expr, &env)?, if o.desc { " DESC" } else { " ASC" }));
            }
            out.push_str(&format!(" ORDER BY {}", items.join(", ")));
        }
        if let Some(l) = limit {
            match l.offset {
                Some(o) => out.push_str(&format!(" LIMIT {o}, {}", l.count)),
                None => out.push_str(&format!(" LIMIT {}", l.count)),
            }
        }
        self.check_size(&out, s.pos)?;
        Ok(out)
    }

    /// A table reference, printed, and the aliases it brings into scope.
    fn table_ref(&self, r: &TableRef, env: &Env<'_>) -> Result<(String, Vec<Alias>), HogQlError> {
        let user_alias = r.alias.as_ref().map(|a| a.name.clone());
        match &r.source {
            TableSource::Subquery(q) => {
                let sql = self.query(q, env)?;
                Ok(match user_alias {
                    Some(a) => (format!("({sql}) AS {}", ident(&a)), vec![(a.clone(), ident(&a))]),
                    None => (format!("({sql})"), Vec::new()),
                })
            }
            TableSource::Named(name) => {
                if let Some(i) = env.cte(&name.name) {
                    let (cte_name, body) = env.ctes[i];
                    let scope = Env { ctes: env.ctes[..i].to_vec(), aliases: Vec::new() };
                    let sql = self.query(body, &scope)?;
                    self.check_size(&sql, name.pos)?;
                    let a = user_alias.unwrap_or_else(|| cte_name.to_string());
                    return Ok((format!("({sql}) AS {}", ident(&a)), vec![(a.clone(), ident(&a))]));
                }
                let Some(table) = TABLES.iter().find(|t| t.eq_ignore_ascii_case(&name.name)) else {
                    return Err(err(
                        name.pos,
                        format!(
                            "unknown table `{}`: query events, persons, person_distinct_ids or live_aggregates",
                            name.name
                        ),
                    ));
                };
                let team = self.ctx.team_id;
                let inner = match *table {
                    "events" if self.ctx.final_events => format!("SELECT * FROM events FINAL WHERE team_id = {team}"),
                    "events" => format!("SELECT * FROM events WHERE team_id = {team}"),
                    "live_aggregates" => format!("SELECT * FROM live_aggregates FINAL WHERE team_id = {team}"),
                    t => format!("SELECT * FROM {t} FINAL WHERE team_id = {team} AND is_deleted = 0"),
                };
                // Without an alias the table's own name (as written, so `EVENTS.event` works too) is
                // the alias; it prints canonically.
                let aliases = match user_alias {
                    Some(a) => vec![(a.clone(), ident(&a))],
                    None => vec![(table.to_string(), table.to_string()), (name.name.clone(), table.to_string())],
                };
                Ok((format!("({inner}) AS {}", aliases[0].1), aliases))
            }
        }
    }

    fn list(&self, items: &[Expr], env: &Env<'_>) -> Result<String, HogQlError> {
        let mut v = Vec::with_capacity(items.len());
        for e in items {
            v.push(self.expr(e, env)?);
        }
        Ok(v.join(", "))
    }

    fn resolve(&self, parts: &[Ident], env: &Env<'_>) -> Result<Resolved, HogQlError> {
        let (qual, rest) = match env.alias(&parts[0].name) {
            Some((_, printed)) if parts.len() >= 2 => (Some(printed.clone()), &parts[1..]),
            _ => (None, parts),
        };
        let col = |name: &str| match &qual {
            Some(q) => format!("{q}.{}", ident(name)),
            None => ident(name),
        };
        let keys = |ks: &[Ident]| ks.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
        let names: Vec<&str> = rest.iter().map(|p| p.name.as_str()).collect();
        Ok(match names.as_slice() {
            [c] if *c == "properties" || *c == "person_properties" => Resolved::Json(col(c), Vec::new()),
            [c] => Resolved::Column(col(c)),
            ["properties" | "person_properties", ..] => Resolved::Json(col(names[0]), keys(&rest[1..])),
            ["person", "properties", ..] => Resolved::Json(col("person_properties"), keys(&rest[2..])),
            ["person", "id"] => Resolved::Column(col("person_id")),
            ["person", other, ..] => {
                return Err(err(
                    rest[1].pos,
                    format!("unknown person field `{other}`: use person.id or person.properties.…"),
                ))
            }
            [first, ..] if qual.is_none() => {
                return Err(err(rest[0].pos, format!("unknown table or alias `{first}` (in `{}`)", names.join("."))))
            }
            _ => {
                return Err(err(
                    rest[1].pos,
                    format!("`{}` has no fields: only properties can be read with dots", names[0]),
                ))
            }
        })
    }

    /// `properties.a.b` / `properties['a']['b']` as a JSON path: the column and keys.
    fn json_path(&self, e: &Expr, env: &Env<'_>) -> Result<Option<(String, Vec<String>)>, HogQlError> {
        match &e.kind {
            ExprKind::Chain(parts) => Ok(match self.resolve(parts, env)? {
                Resolved::Json(col, keys) => Some((col, keys)),
                Resolved::Column(_) => None,
            }),
            ExprKind::Index(base, idx) => {
                let Some((col, mut keys)) = self.json_path(base, env)? else { return Ok(None) };
                for i in idx {
                    match &i.kind {
                        ExprKind::Str(k) => keys.push(k.clone()),
                        _ => return Err(err(i.pos, "property keys in `[…]` must be strings")),
                    }
                }
                Ok(Some((col, keys)))
            }
            _ => Ok(None),
        }
    }

    /// The property at `keys` of JSON column `col`, as PostHog reads it.
    fn extract(&self, col: String, keys: &[String]) -> String {
        let raw = match self.ctx.dialect {
            Dialect::Modern => {
                let ks: Vec<String> = keys.iter().map(|k| quote(k, '\'')).collect();
                format!("JSONExtractRaw({col}, {})", ks.join(", "))
            }
            Dialect::Legacy => {
                keys.iter().fold(col, |acc, k| format!("visitParamExtractRaw({acc}, {})", quote(k, '\'')))
            }
        };
        format!("replaceRegexpAll(nullIf(nullIf({raw}, ''), 'null'), '^\"|\"$', '')")
    }

    fn expr(&self, e: &Expr, env: &Env<'_>) -> Result<String, HogQlError> {
        Ok(match &e.kind {
            ExprKind::Number(n) => n.clone(),
            ExprKind::Str(s) => quote(s, '\''),
            ExprKind::Null => "NULL".into(),
            ExprKind::Bool(b) => match (self.ctx.dialect, b) {
                (Dialect::Modern, true) => "true".into(),
                (Dialect::Modern, false) => "false".into(),
                (Dialect::Legacy, true) => "1".into(),
                (Dialect::Legacy, false) => "0".into(),
            },
            ExprKind::Chain(parts) => match self.resolve(parts, env)? {
                Resolved::Column(c) => c,
                Resolved::Json(col, keys) if keys.is_empty() => col,
                Resolved::Json(col, keys) => self.extract(col, &keys),
            },
            ExprKind::Star(None) => "*".into(),
            ExprKind::Star(Some(a)) => match env.alias(&a.name) {
                Some((_, printed)) => format!("{printed}.*"),
                None => return Err(err(a.pos, format!("unknown table or alias `{}` in `{}.*`", a.name, a.name))),
            },
            ExprKind::Call { name, params, args, distinct } => {
                self.call(name, params.as_deref(), args, *distinct, env)?
            }
            ExprKind::Binary(first, rest) => {
                if rest.iter().all(|(op, _)| *op == BinOp::Concat) {
                    let mut v = vec![self.expr(first, env)?];
                    for (_, x) in rest {
                        v.push(self.expr(x, env)?);
                    }
                    return Ok(format!("concat({})", v.join(", ")));
                }
                let mut out = format!("({}", self.expr(first, env)?);
                for (op, x) in rest {
                    out.push_str(&format!(" {} {}", op.sql(), self.expr(x, env)?));
                }
                out.push(')');
                out
            }
            ExprKind::Neg(x) => format!("(-{})", self.expr(x, env)?),
            ExprKind::Not(x) => format!("(NOT {})", self.expr(x, env)?),
            ExprKind::Like { expr, pattern, negated, insensitive } => {
                let (a, b) = (self.expr(expr, env)?, self.expr(pattern, env)?);
                let not = if *negated { "NOT " } else { "" };
                match (insensitive, self.ctx.dialect) {
                    (false, _) => format!("({a} {not}LIKE {b})"),
                    (true, Dialect::Modern) => format!("({a} {not}ILIKE {b})"),
                    // 18.16 has no ILIKE.
                    (true, Dialect::Legacy) => format!("(lowerUTF8({a}) {not}LIKE lowerUTF8({b}))"),
                }
            }
            ExprKind::In { expr, list, negated } => {
                let a = self.expr(expr, env)?;
                let not = if *negated { "NOT " } else { "" };
                let set = match list {
                    InList::Query(q) => format!("({})", self.query(q, env)?),
                    InList::Named(n) => match env.cte(&n.name) {
                        Some(i) => {
                            let scope = Env { ctes: env.ctes[..i].to_vec(), aliases: Vec::new() };
                            format!("({})", self.query(env.ctes[i].1, &scope)?)
                        }
                        None => {
                            return Err(err(
                                n.pos,
                                format!(
                                    "IN takes a parenthesized list, a subquery or a CTE name; `{}` is none",
                                    n.name
                                ),
                            ))
                        }
                    },
                    InList::Values(values) => {
                        if values.is_empty() {
                            return Err(err(e.pos, "IN () needs at least one value"));
                        }
                        // ClickHouse reads `x IN (name)` as a table name: refuse a lone column.
                        if let [v] = values.as_slice() {
                            if let ExprKind::Chain(parts) = &v.kind {
                                let lone_column = match self.resolve(parts, env)? {
                                    Resolved::Column(_) => true,
                                    Resolved::Json(_, keys) => keys.is_empty(),
                                };
                                if lone_column {
                                    return Err(err(v.pos, "IN (column) is not supported: compare with `=`"));
                                }
                            }
                        }
                        format!("({})", self.list(values, env)?)
                    }
                };
                format!("({a} {not}IN {set})")
            }
            ExprKind::Between { expr, low, high, negated } => {
                let inner = format!(
                    "({} BETWEEN {} AND {})",
                    self.expr(expr, env)?,
                    self.expr(low, env)?,
                    self.expr(high, env)?
                );
                if *negated {
                    format!("(NOT {inner})")
                } else {
                    inner
                }
            }
            ExprKind::IsNull { expr, negated } => {
                format!("({} IS {}NULL)", self.expr(expr, env)?, if *negated { "NOT " } else { "" })
            }
            ExprKind::Case { operand, whens, else_ } => {
                let mut out = String::from("CASE");
                if let Some(o) = operand {
                    out.push_str(&format!(" {}", self.expr(o, env)?));
                }
                for (w, t) in whens {
                    out.push_str(&format!(" WHEN {} THEN {}", self.expr(w, env)?, self.expr(t, env)?));
                }
                if let Some(x) = else_ {
                    out.push_str(&format!(" ELSE {}", self.expr(x, env)?));
                }
                out.push_str(" END");
                out
            }
            ExprKind::Interval(v, unit) => {
                let unit = unit.chars().next().map(|c| c.to_string()).unwrap_or_default() + &unit[1..].to_lowercase();
                format!("toInterval{unit}({})", self.expr(v, env)?)
            }
            ExprKind::Array(items) => format!("[{}]", self.list(items, env)?),
            ExprKind::Tuple(items) => format!("tuple({})", self.list(items, env)?),
            ExprKind::Index(base, idx) => {
                if let Some((col, keys)) = self.json_path(e, env)? {
                    return Ok(if keys.is_empty() { col } else { self.extract(col, &keys) });
                }
                let mut out = self.expr(base, env)?;
                for i in idx {
                    out.push_str(&format!("[{}]", self.expr(i, env)?));
                }
                out
            }
            ExprKind::Lambda(params, body) => {
                let ps: Vec<String> = params.iter().map(|p| ident(&p.name)).collect();
                let head = if ps.len() == 1 { ps[0].clone() } else { format!("({})", ps.join(", ")) };
                format!("{head} -> {}", self.expr(body, env)?)
            }
            ExprKind::Subquery(q) => format!("({})", self.query(q, env)?),
        })
    }

    fn call(
        &self,
        name: &Ident,
        params: Option<&[Expr]>,
        args: &[Expr],
        distinct: bool,
        env: &Env<'_>,
    ) -> Result<String, HogQlError> {
        let Some((func, printed, is_if)) = functions::lookup(&name.name) else {
            return Err(err(name.pos, format!("function `{}` is not allowed (or does not exist) in HogQL", name.name)));
        };
        let (min, max) = if is_if { (func.min + 1, func.max + 1) } else { (func.min, func.max) };
        if args.len() < min || args.len() > max {
            let want = if min == max {
                format!("{min}")
            } else if max >= 1000 {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(err(name.pos, format!("`{printed}` takes {want} arguments, not {}", args.len())));
        }
        if params.is_some() && func.kind != Kind::Parametric {
            return Err(err(name.pos, format!("`{printed}` takes no parameters")));
        }
        if distinct && func.kind == Kind::Plain {
            return Err(err(name.pos, format!("DISTINCT is for aggregate functions, not `{printed}`")));
        }
        let mut out = printed.clone();
        if let Some(ps) = params {
            out.push_str(&format!("({})", self.list(ps, env)?));
        }
        let mut a = Vec::with_capacity(args.len());
        for x in args {
            if let ExprKind::Star(None) = x.kind {
                if func.name != "count" || args.len() != 1 {
                    return Err(err(x.pos, "`*` as an argument is for count(*) only"));
                }
            }
            a.push(self.expr(x, env)?);
        }
        out.push_str(&format!("({}{})", if distinct { "DISTINCT " } else { "" }, a.join(", ")));
        Ok(out)
    }
}
