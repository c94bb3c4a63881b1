//! The Hog abstract syntax tree. Every node carries the byte span of the source it came from.
//!
//! The tree has the shape of PostHog's HogQL AST for programs: sugar such as `a ?? b`, `c ? a : b`,
//! f-strings, `||` and `CASE` is lowered by the parser into calls (`ifNull`, `if`, `concat`,
//! `multiIf`), exactly as PostHog's parser does, so the compiler emits the same bytecode.

/// A half-open byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Constant {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A string literal.
    Str(String),
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
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
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=` / `==`
    Eq,
    /// `!=`
    NotEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `like`
    Like,
    /// `ilike`
    ILike,
    /// `not like`
    NotLike,
    /// `not ilike`
    NotILike,
    /// `in`
    In,
    /// `not in`
    NotIn,
    /// `in cohort`
    InCohort,
    /// `not in cohort`
    NotInCohort,
    /// `=~` / `~`
    Regex,
    /// `!~`
    NotRegex,
    /// `=~*` / `~*`
    IRegex,
    /// `!~*`
    NotIRegex,
}

/// An expression with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Where it is.
    pub span: Span,
}

/// The body of a lambda.
#[derive(Debug, Clone, PartialEq)]
pub enum LambdaBody {
    /// `x -> expr`
    Expr(Box<Expr>),
    /// `x -> { statements }`
    Block(Vec<Stmt>),
}

/// Kinds of expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A literal.
    Constant(Constant),
    /// A name, possibly dotted: `event.properties.$browser` is one chain of three parts.
    Field(Vec<String>),
    /// `a[i]`, `a.b` after a non-name, `a?.[i]`, `a?.b`.
    ArrayAccess {
        /// The container.
        array: Box<Expr>,
        /// The key or 1-based index.
        property: Box<Expr>,
        /// `?.` access.
        nullish: bool,
    },
    /// `t.1`, `t?.1`.
    TupleAccess {
        /// The tuple (or array).
        tuple: Box<Expr>,
        /// The 1-based index.
        index: i64,
        /// `?.` access.
        nullish: bool,
    },
    /// `name(args)`.
    Call {
        /// The function name.
        name: String,
        /// Span of the name alone.
        name_span: Span,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// `expr(args)` where `expr` is not a plain name.
    ExprCall {
        /// The callee.
        callee: Box<Expr>,
        /// Arguments.
        args: Vec<Expr>,
    },
    /// `x -> e`, `(a, b) -> { … }`.
    Lambda {
        /// Parameter names.
        params: Vec<String>,
        /// The body.
        body: LambdaBody,
    },
    /// `{k: v, …}`.
    Dict(Vec<(Expr, Expr)>),
    /// `[a, b]`.
    Array(Vec<Expr>),
    /// `(a, b)`.
    Tuple(Vec<Expr>),
    /// `a + b` and friends.
    Arithmetic {
        /// Operator.
        op: ArithOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `a = b`, `a in b`, `a =~ b`, …
    Compare {
        /// Operator.
        op: CompareOp,
        /// Left operand.
        left: Box<Expr>,
        /// Right operand.
        right: Box<Expr>,
    },
    /// `a and b and c`.
    And(Vec<Expr>),
    /// `a or b or c`.
    Or(Vec<Expr>),
    /// `not a`.
    Not(Box<Expr>),
    /// `e [not] between low and high`.
    Between {
        /// The value tested.
        expr: Box<Expr>,
        /// Lower bound.
        low: Box<Expr>,
        /// Upper bound.
        high: Box<Expr>,
        /// `not between`.
        negated: bool,
    },
}

/// One `catch` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Catch {
    /// The variable the error is bound to (`e` when omitted).
    pub var: Option<String>,
    /// The error type matched (`Error`, matching all, when omitted).
    pub ty: Option<String>,
    /// The handler.
    pub body: Vec<Stmt>,
    /// Where the clause is.
    pub span: Span,
}

/// A statement with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    /// What it is.
    pub kind: StmtKind,
    /// Where it is.
    pub span: Span,
}

/// Kinds of statements.
#[derive(Debug, Clone, PartialEq)]
pub enum StmtKind {
    /// `let name [:= value]`.
    Let {
        /// The variable.
        name: String,
        /// Span of the name.
        name_span: Span,
        /// The initial value.
        value: Option<Expr>,
    },
    /// `target := value`.
    Assign {
        /// A name, a dotted name, `a[i]` or `t.1`.
        target: Expr,
        /// The value.
        value: Expr,
    },
    /// An expression evaluated for its effects.
    Expr(Expr),
    /// `;`
    Empty,
    /// `return [value]`.
    Return(Option<Expr>),
    /// `throw value`.
    Throw(Option<Expr>),
    /// `if (cond) then [else otherwise]`.
    If {
        /// Condition.
        cond: Expr,
        /// Taken when true.
        then: Box<Stmt>,
        /// Taken when false.
        otherwise: Option<Box<Stmt>>,
    },
    /// `while (cond) body`.
    While {
        /// Condition.
        cond: Expr,
        /// Body.
        body: Box<Stmt>,
    },
    /// `for (init; cond; step) body`.
    For {
        /// Initializer.
        init: Option<Box<Stmt>>,
        /// Condition.
        cond: Option<Expr>,
        /// Step.
        step: Option<Box<Stmt>>,
        /// Body.
        body: Box<Stmt>,
    },
    /// `for (let [key,] value in iter) body`.
    ForIn {
        /// Key variable.
        key: Option<String>,
        /// Value variable.
        value: String,
        /// What is iterated.
        iter: Expr,
        /// Body.
        body: Box<Stmt>,
    },
    /// `fun name(params) { body }`.
    Function {
        /// Name.
        name: String,
        /// Span of the name.
        name_span: Span,
        /// Parameters.
        params: Vec<String>,
        /// Body.
        body: Vec<Stmt>,
    },
    /// `try { } catch … finally { }`.
    Try {
        /// Protected statements.
        body: Vec<Stmt>,
        /// Handlers, tried in order.
        catches: Vec<Catch>,
        /// Always run.
        finally: Option<Vec<Stmt>>,
    },
    /// `{ statements }`.
    Block(Vec<Stmt>),
}

/// A whole program.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// Top-level statements.
    pub body: Vec<Stmt>,
}
