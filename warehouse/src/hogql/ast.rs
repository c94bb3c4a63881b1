//! HogQL's syntax tree: what the parser accepts, and all the printer reads.
//! Nothing in it is text to splice: names, strings and numbers are printed from these values.

/// A position in the query text (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line.
    pub line: usize,
    /// Column, in characters.
    pub column: usize,
}

/// A name as written: `name`, `` `quoted` `` or `"quoted"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ident {
    /// The name, quotes removed.
    pub name: String,
    /// Where it is.
    pub pos: Pos,
}

/// A whole query: CTEs, then selects joined by `UNION ALL` / `UNION DISTINCT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `WITH name AS (subquery), …`.
    pub ctes: Vec<(Ident, Query)>,
    /// The first select.
    pub first: SetPart,
    /// The following ones, with how each joins the result so far.
    pub rest: Vec<(Union, SetPart)>,
    /// Where the query starts.
    pub pos: Pos,
}

/// `UNION ALL` or `UNION DISTINCT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Union {
    /// Keep duplicates.
    All,
    /// Remove duplicates.
    Distinct,
}

/// One operand of a union.
#[derive(Debug, Clone, PartialEq)]
pub enum SetPart {
    /// A `SELECT`.
    Select(Box<Select>),
    /// A query in parentheses.
    Paren(Box<Query>),
}

/// One `SELECT … FROM … WHERE … GROUP BY … HAVING … ORDER BY … LIMIT …`.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// `SELECT DISTINCT`.
    pub distinct: bool,
    /// The select list.
    pub items: Vec<SelectItem>,
    /// `FROM` and its joins.
    pub from: Option<From>,
    /// `WHERE`.
    pub where_: Option<Expr>,
    /// `GROUP BY`.
    pub group_by: Vec<Expr>,
    /// `HAVING`.
    pub having: Option<Expr>,
    /// `ORDER BY`.
    pub order_by: Vec<OrderItem>,
    /// `LIMIT`.
    pub limit: Option<Limit>,
    /// Where `SELECT` is.
    pub pos: Pos,
}

/// An item of the select list.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectItem {
    /// The expression.
    pub expr: Expr,
    /// `AS alias`.
    pub alias: Option<Ident>,
    /// The expression's text as written (comments and all), for the column name.
    pub source: String,
}

/// `ORDER BY expr [ASC|DESC]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderItem {
    /// What to order by.
    pub expr: Expr,
    /// `DESC`.
    pub desc: bool,
}

/// `LIMIT count [OFFSET offset]` (or `LIMIT offset, count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Rows at most.
    pub count: u64,
    /// Rows skipped first.
    pub offset: Option<u64>,
}

/// `FROM table [JOIN table …]`.
#[derive(Debug, Clone, PartialEq)]
pub struct From {
    /// The first table.
    pub first: TableRef,
    /// The joined ones.
    pub joins: Vec<Join>,
}

/// A table in `FROM` or `JOIN`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRef {
    /// What is read.
    pub source: TableSource,
    /// `[AS] alias`.
    pub alias: Option<Ident>,
}

/// What a table reference reads.
#[derive(Debug, Clone, PartialEq)]
pub enum TableSource {
    /// A table or CTE by name.
    Named(Ident),
    /// `(subquery)`.
    Subquery(Box<Query>),
}

/// `[INNER|LEFT|RIGHT|FULL|CROSS] [OUTER] JOIN table ON … | USING (…)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Join {
    /// `INNER`, `LEFT OUTER`, … as printed.
    pub kind: &'static str,
    /// The joined table.
    pub table: TableRef,
    /// How rows match.
    pub constraint: JoinConstraint,
}

/// `ON expr`, `USING (cols)` or nothing (`CROSS JOIN`).
#[derive(Debug, Clone, PartialEq)]
pub enum JoinConstraint {
    /// `ON expr`.
    On(Expr),
    /// `USING (a, b)`.
    Using(Vec<Ident>),
    /// `CROSS JOIN`.
    None,
}

/// An expression and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it starts.
    pub pos: Pos,
}

/// Binary operators, printed as ClickHouse spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `OR`
    Or,
    /// `AND`
    And,
    /// `=`
    Eq,
    /// `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
    /// `||` (printed as `concat`)
    Concat,
}

impl BinOp {
    /// The operator as printed.
    pub fn sql(self) -> &'static str {
        match self {
            BinOp::Or => "OR",
            BinOp::And => "AND",
            BinOp::Eq => "=",
            BinOp::NotEq => "!=",
            BinOp::Lt => "<",
            BinOp::LtEq => "<=",
            BinOp::Gt => ">",
            BinOp::GtEq => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Concat => "||",
        }
    }
}

/// The right side of `IN`.
#[derive(Debug, Clone, PartialEq)]
pub enum InList {
    /// `IN (SELECT …)` or `IN cte_name`.
    Query(Box<Query>),
    /// `IN cte_name`.
    Named(Ident),
    /// `IN (a, b, …)`.
    Values(Vec<Expr>),
}

/// The kinds of expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A number as written (already checked to be one).
    Number(String),
    /// A string (escapes resolved).
    Str(String),
    /// `NULL`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// `name` or a dotted chain `a.b.c`.
    Chain(Vec<Ident>),
    /// `*` or `alias.*`.
    Star(Option<Ident>),
    /// `f(args)`, `f(DISTINCT args)`, `f(params)(args)`.
    Call {
        /// Function name.
        name: Ident,
        /// Parameters of a parametric aggregate (`quantile(0.9)`).
        params: Option<Vec<Expr>>,
        /// Arguments.
        args: Vec<Expr>,
        /// `DISTINCT` before the arguments.
        distinct: bool,
    },
    /// `a op b op c …`, operators of one precedence level, left to right (flat, so long chains
    /// do not nest).
    Binary(Box<Expr>, Vec<(BinOp, Expr)>),
    /// `-a`.
    Neg(Box<Expr>),
    /// `NOT a`.
    Not(Box<Expr>),
    /// `a [NOT] LIKE|ILIKE b`.
    Like {
        /// The value.
        expr: Box<Expr>,
        /// The pattern.
        pattern: Box<Expr>,
        /// `NOT`.
        negated: bool,
        /// `ILIKE`.
        insensitive: bool,
    },
    /// `a [NOT] IN …`.
    In {
        /// The value.
        expr: Box<Expr>,
        /// The set.
        list: InList,
        /// `NOT`.
        negated: bool,
    },
    /// `a [NOT] BETWEEN low AND high`.
    Between {
        /// The value.
        expr: Box<Expr>,
        /// Lower bound.
        low: Box<Expr>,
        /// Upper bound.
        high: Box<Expr>,
        /// `NOT`.
        negated: bool,
    },
    /// `a IS [NOT] NULL`.
    IsNull {
        /// The value.
        expr: Box<Expr>,
        /// `NOT`.
        negated: bool,
    },
    /// `CASE [operand] WHEN … THEN … [ELSE …] END`.
    Case {
        /// `CASE x WHEN …`.
        operand: Option<Box<Expr>>,
        /// `WHEN a THEN b`.
        whens: Vec<(Expr, Expr)>,
        /// `ELSE`.
        else_: Option<Box<Expr>>,
    },
    /// `INTERVAL n UNIT`.
    Interval(Box<Expr>, &'static str),
    /// `[a, b]`.
    Array(Vec<Expr>),
    /// `(a, b)`.
    Tuple(Vec<Expr>),
    /// `a[i]`, `a[i][j]` (flat).
    Index(Box<Expr>, Vec<Expr>),
    /// `x -> body` or `(x, y) -> body`.
    Lambda(Vec<Ident>, Box<Expr>),
    /// `(SELECT …)` as a value.
    Subquery(Box<Query>),
}
