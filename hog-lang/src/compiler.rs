//! AST to HogVM bytecode (format version 1).
//!
//! The code shapes follow PostHog's compiler, so programs compiled here run on PostHog's VM and
//! vice versa. Where this compiler differs, it is on purpose:
//! - `and` / `or` short-circuit, built from jumps that PostHog's VM runs as well;
//! - a typed catch with its own variable name (`catch (err: RetryError)`) skips correctly when
//!   the type does not match;
//! - `finally` is supported, lowered to a catch-all that runs the block and rethrows, plus the block
//!   on the normal path (a `return` inside `try` skips it);
//! - `if(c, a)` with no else pushes `null` instead of leaving the stack short.

use crate::ast::*;
use crate::bytecode::{Item, Opcode};
use crate::diagnostics::{did_you_mean, Code as DiagCode, Diagnostic, Diagnostics};
use crate::parser::parse_program_here;
use crate::stdlib;

/// The globals a function sees in the pipeline (see HOG.md).
pub const FUNCTION_GLOBALS: &[&str] = &["event", "person", "groups", "project", "source", "inputs", "request"];

/// What the compiler may assume about the environment the code runs in.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// Names of globals the program may read. `None` accepts any name (it is looked up at run time).
    pub globals: Option<Vec<String>>,
    /// Host functions available besides the standard library: name, minimum and maximum arguments.
    pub functions: Vec<(String, usize, Option<usize>)>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            globals: Some(FUNCTION_GLOBALS.iter().map(|s| s.to_string()).collect()),
            functions: Vec::new(),
        }
    }
}

impl CompileOptions {
    /// Accepts any global name (resolved at run time).
    pub fn any_globals() -> Self {
        CompileOptions { globals: None, functions: Vec::new() }
    }
}

/// Bytecode with a source span per element.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Code {
    /// The elements (without the `"_H", 1` header).
    pub items: Vec<Item>,
    /// Span of the operation at each element (operands have `None`).
    pub spans: Vec<Option<Span>>,
}

impl Code {
    fn op(&mut self, op: Opcode, span: Span) {
        self.items.push(Item::Op(op));
        self.spans.push(Some(span));
    }
    fn push(&mut self, item: Item) {
        self.items.push(item);
        self.spans.push(None);
    }
    fn int(&mut self, i: i64) {
        self.push(Item::Int(i));
    }
    fn usize(&mut self, i: usize) {
        self.push(Item::Int(i as i64));
    }
    fn string(&mut self, s: &str) {
        self.push(Item::Str(s.to_string()));
    }
    fn append(&mut self, other: Code) {
        self.items.extend(other.items);
        self.spans.extend(other.spans);
    }
    fn len(&self) -> usize {
        self.items.len()
    }
    /// Sets the jump operand at `operand` so that the jump lands on element `target`.
    fn patch_jump(&mut self, operand: usize, target: usize) {
        self.items[operand] = Item::Int(target as i64 - operand as i64 - 1);
    }
    /// The JSON array, with header.
    pub fn to_json(&self) -> serde_json::Value {
        crate::bytecode::to_json(&self.items)
    }
}

#[derive(Debug, Clone)]
struct Local {
    name: String,
    depth: u32,
    captured: bool,
    /// Parameter count when the local holds a `fun` declaration.
    arity: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct UpvalueRef {
    index: usize,
    is_local: bool,
}

#[derive(Debug, Clone, Default)]
struct FnState {
    locals: Vec<Local>,
    upvalues: Vec<UpvalueRef>,
    depth: u32,
}

/// Compiles Hog source. Keeps locals between calls when used as a REPL.
pub struct Compiler {
    fns: Vec<FnState>,
    diags: Vec<Diagnostic>,
    options: CompileOptions,
    repl: bool,
}

/// Stack reserved for parsing and compiling: both recurse once per nesting level, and callers may
/// be on small-stack threads (test harness, async runtimes). Only touched pages are committed.
const COMPILE_STACK: usize = 256 << 20;

/// Runs `f` on a thread with a large stack (inline when no thread can be started).
pub(crate) fn with_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("hog-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, f)
            .expect("the OS refused a thread for the compiler")
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Compiles a whole program to bytecode.
pub fn compile(source: &str, options: &CompileOptions) -> Result<Code, Diagnostics> {
    with_big_stack(|| {
        let program = parse_program_here(source)?;
        let mut c = Compiler::new(options.clone());
        let code = c.program(&program);
        c.finish(code)
    })
}

/// Compiles the body of a function with the given parameters (no header), as PostHog stores the
/// functions of its bytecode standard library.
pub fn compile_function_body(params: &[&str], source: &str, options: &CompileOptions) -> Result<Code, Diagnostics> {
    with_big_stack(|| compile_function_body_inner(params, source, options))
}

fn compile_function_body_inner(params: &[&str], source: &str, options: &CompileOptions) -> Result<Code, Diagnostics> {
    let program = parse_program_here(source)?;
    let mut c = Compiler::new(options.clone());
    for p in params {
        c.declare(p, Span::default(), None);
    }
    let body = with_implicit_return(program.body);
    let code = c.block(&body, Span::default());
    c.finish(code)
}

fn with_implicit_return(mut body: Vec<Stmt>) -> Vec<Stmt> {
    if !matches!(body.last(), Some(Stmt { kind: StmtKind::Return(_), .. })) {
        let span = body.last().map(|s| Span::new(s.span.end, s.span.end)).unwrap_or_default();
        body.push(Stmt { kind: StmtKind::Return(None), span });
    }
    body
}

impl Compiler {
    /// A compiler for whole programs.
    pub fn new(options: CompileOptions) -> Self {
        Compiler { fns: vec![FnState::default()], diags: Vec::new(), options, repl: false }
    }

    /// A compiler that keeps top-level variables between `compile_repl` calls.
    pub fn new_repl(options: CompileOptions) -> Self {
        let mut c = Compiler::new(options);
        c.repl = true;
        c
    }

    /// Number of top-level variables declared so far (REPL).
    pub fn top_level_count(&self) -> usize {
        self.fns[0].locals.len()
    }

    /// Forgets top-level variables declared after the first `count` (after a failed REPL line).
    pub fn truncate_top_level(&mut self, count: usize) {
        self.fns[0].locals.truncate(count);
    }

    /// Compiles one REPL entry. When the last statement is an expression, its value is left on the
    /// stack and the second result is true.
    pub fn compile_repl(&mut self, source: &str) -> Result<(Code, bool), Diagnostics> {
        with_big_stack(|| self.compile_repl_inner(source))
    }

    fn compile_repl_inner(&mut self, source: &str) -> Result<(Code, bool), Diagnostics> {
        let program = parse_program_here(source)?;
        self.diags.clear();
        let before = self.top_level_count();
        let mut code = Code::default();
        let mut leaves_value = false;
        let n = program.body.len();
        for (i, stmt) in program.body.iter().enumerate() {
            if i + 1 == n {
                if let StmtKind::Expr(e) = &stmt.kind {
                    code.append(self.expr(e));
                    leaves_value = true;
                    continue;
                }
            }
            code.append(self.stmt(stmt));
        }
        if !self.diags.is_empty() {
            self.truncate_top_level(before);
        }
        let code = self.finish(code)?;
        Ok((code, leaves_value))
    }

    fn finish(&mut self, code: Code) -> Result<Code, Diagnostics> {
        if self.diags.is_empty() {
            Ok(code)
        } else {
            let mut diags = std::mem::take(&mut self.diags);
            diags.sort_by_key(|d| d.span.start);
            Err(Diagnostics(diags))
        }
    }

    fn cur(&mut self) -> &mut FnState {
        self.fns.last_mut().expect("there is always a function state")
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn start_scope(&mut self) {
        self.cur().depth += 1;
    }

    fn end_scope(&mut self, span: Span) -> Code {
        let repl = self.repl && self.fns.len() == 1;
        let f = self.cur();
        f.depth -= 1;
        let mut code = Code::default();
        if repl && f.depth == 0 {
            return code;
        }
        let mut ops = Vec::new();
        while let Some(local) = f.locals.last() {
            if local.depth <= f.depth {
                break;
            }
            ops.push(if local.captured { Opcode::CLOSE_UPVALUE } else { Opcode::POP });
            f.locals.pop();
        }
        for op in ops {
            code.op(op, span);
        }
        code
    }

    fn declare(&mut self, name: &str, span: Span, arity: Option<usize>) -> usize {
        let f = self.fns.last().expect("function state");
        let duplicate = f.locals.iter().rev().take_while(|l| l.depth >= f.depth).any(|l| l.name == name);
        if duplicate {
            self.error(
                Diagnostic::new(
                    DiagCode::DuplicateVariable,
                    format!("variable `{name}` is already declared in this scope"),
                    span,
                )
                .with_label("declared again here")
                .with_help(format!("assign to it with `{name} := …`, or pick another name")),
            );
        }
        let f = self.cur();
        let depth = f.depth;
        f.locals.push(Local { name: name.to_string(), depth, captured: false, arity });
        f.locals.len() - 1
    }

    fn find_local(&self, name: &str) -> Option<usize> {
        self.fns.last()?.locals.iter().rposition(|l| l.name == name)
    }

    fn add_upvalue(&mut self, level: usize, index: usize, is_local: bool) -> usize {
        let ups = &mut self.fns[level].upvalues;
        let up = UpvalueRef { index, is_local };
        if let Some(i) = ups.iter().position(|u| *u == up) {
            return i;
        }
        ups.push(up);
        ups.len() - 1
    }

    fn resolve_upvalue(&mut self, level: usize, name: &str) -> Option<usize> {
        if level == 0 {
            return None;
        }
        if let Some(index) = self.fns[level - 1].locals.iter().rposition(|l| l.name == name) {
            self.fns[level - 1].locals[index].captured = true;
            return Some(self.add_upvalue(level, index, true));
        }
        let up = self.resolve_upvalue(level - 1, name)?;
        Some(self.add_upvalue(level, up, false))
    }

    /// Arity of a `fun` visible under this name, when known.
    fn local_arity(&self, name: &str) -> Option<usize> {
        for f in self.fns.iter().rev() {
            if let Some(l) = f.locals.iter().rev().find(|l| l.name == name) {
                return l.arity;
            }
        }
        None
    }

    fn visible_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for f in &self.fns {
            names.extend(f.locals.iter().map(|l| l.name.clone()));
        }
        if let Some(g) = &self.options.globals {
            names.extend(g.iter().cloned());
        }
        names
    }

    // -----------------------------------------------------------------------------------------
    // Statements

    /// Compiles a whole program.
    pub fn program(&mut self, program: &Program) -> Code {
        let end = program.body.last().map(|s| Span::new(s.span.end, s.span.end)).unwrap_or_default();
        self.block(&program.body, end)
    }

    fn block(&mut self, stmts: &[Stmt], end: Span) -> Code {
        let mut code = Code::default();
        self.start_scope();
        for s in stmts {
            code.append(self.stmt(s));
        }
        code.append(self.end_scope(end));
        code
    }

    fn stmt(&mut self, s: &Stmt) -> Code {
        let span = s.span;
        let end = Span::new(span.end, span.end);
        let mut code = Code::default();
        match &s.kind {
            StmtKind::Let { name, name_span, value } => {
                self.declare(name, *name_span, None);
                match value {
                    Some(v) => code.append(self.expr(v)),
                    None => code.op(Opcode::NULL, span),
                }
            }
            StmtKind::Assign { target, value } => code = self.assign(target, value, span),
            StmtKind::Expr(e) => {
                code.append(self.expr(e));
                code.op(Opcode::POP, span);
            }
            StmtKind::Empty => {}
            StmtKind::Return(e) => {
                match e {
                    Some(e) => code.append(self.expr(e)),
                    None => code.op(Opcode::NULL, span),
                }
                code.op(Opcode::RETURN, span);
            }
            StmtKind::Throw(e) => match e {
                Some(e) => {
                    code.append(self.expr(e));
                    code.op(Opcode::THROW, span);
                }
                None => self.error(
                    Diagnostic::new(DiagCode::ThrowWithoutValue, "`throw` needs an error to throw", span)
                        .with_help("write `throw Error('what went wrong')`"),
                ),
            },
            StmtKind::If { cond, then, otherwise } => {
                let c = self.expr(cond);
                let t = self.stmt(then);
                let o = otherwise.as_ref().map(|o| self.stmt(o));
                code.append(c);
                code.op(Opcode::JUMP_IF_FALSE, span);
                code.usize(t.len() + if o.is_some() { 2 } else { 0 });
                code.append(t);
                if let Some(o) = o {
                    code.op(Opcode::JUMP, span);
                    code.usize(o.len());
                    code.append(o);
                }
            }
            StmtKind::While { cond, body } => {
                let c = self.expr(cond);
                let b = self.stmt(body);
                code.append(c);
                code.op(Opcode::JUMP_IF_FALSE, span);
                code.usize(b.len() + 2);
                code.append(b);
                code.op(Opcode::JUMP, span);
                let back = -(code.len() as i64) - 1;
                code.int(back);
            }
            StmtKind::For { init, cond, step, body } => {
                if init.is_some() {
                    self.start_scope();
                }
                let i = init.as_ref().map(|s| self.stmt(s)).unwrap_or_default();
                let c = match cond {
                    Some(c) => self.expr(c),
                    None => {
                        let mut t = Code::default();
                        t.op(Opcode::TRUE, span);
                        t
                    }
                };
                let st = step.as_ref().map(|s| self.stmt(s)).unwrap_or_default();
                let b = self.stmt(body);
                let (clen, blen, slen) = (c.len() as i64, b.len() as i64, st.len() as i64);
                code.append(i);
                code.append(c);
                code.op(Opcode::JUMP_IF_FALSE, span);
                code.int(blen + slen + 2);
                code.append(b);
                code.append(st);
                code.op(Opcode::JUMP, span);
                code.int(-slen - blen - 2 - clen - 2);
                if init.is_some() {
                    code.append(self.end_scope(end));
                }
            }
            StmtKind::ForIn { key, value, iter, body } => code = self.for_in(key.as_deref(), value, iter, body, span),
            StmtKind::Function { name, name_span, params, body } => {
                self.declare(name, *name_span, Some(params.len()));
                code = self.function(name, params, &with_implicit_return(body.clone()), span);
            }
            StmtKind::Try { body, catches, finally } => code = self.try_stmt(body, catches, finally.as_deref(), span),
            StmtKind::Block(stmts) => code = self.block(stmts, end),
        }
        code
    }

    fn assign(&mut self, target: &Expr, value: &Expr, span: Span) -> Code {
        let mut code = Code::default();
        match &target.kind {
            ExprKind::TupleAccess { tuple, index, .. } => {
                code.append(self.expr(tuple));
                code.op(Opcode::INTEGER, target.span);
                code.int(*index);
                code.append(self.expr(value));
                code.op(Opcode::SET_PROPERTY, span);
            }
            ExprKind::ArrayAccess { array, property, .. } => {
                code.append(self.expr(array));
                code.append(self.expr(property));
                code.append(self.expr(value));
                code.op(Opcode::SET_PROPERTY, span);
            }
            ExprKind::Field(chain) => {
                let name = &chain[0];
                let base = if let Some(index) = self.find_local(name) {
                    if chain.len() == 1 {
                        code.append(self.expr(value));
                        code.op(Opcode::SET_LOCAL, span);
                        code.usize(index);
                        return code;
                    }
                    (Opcode::GET_LOCAL, index)
                } else if let Some(up) = self.resolve_upvalue(self.fns.len() - 1, name) {
                    if chain.len() == 1 {
                        code.append(self.expr(value));
                        code.op(Opcode::SET_UPVALUE, span);
                        code.usize(up);
                        return code;
                    }
                    (Opcode::GET_UPVALUE, up)
                } else {
                    let mut d = Diagnostic::new(
                        DiagCode::AssignToUndeclared,
                        format!("variable `{name}` is not declared in this scope"),
                        target.span,
                    )
                    .with_label("cannot assign here");
                    let names = self.visible_names();
                    if let Some(s) = did_you_mean(name, names.iter().map(|s| s.as_str())) {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    } else if self.options.globals.as_ref().is_some_and(|g| g.contains(name)) {
                        d = d.with_note("globals are read-only; copy into a variable first: `let e := event`");
                    } else {
                        d = d.with_help(format!("declare it first: `let {name} := …`"));
                    }
                    self.error(d);
                    return code;
                };
                code.op(base.0, target.span);
                code.usize(base.1);
                for part in &chain[1..chain.len() - 1] {
                    code.op(Opcode::STRING, target.span);
                    code.string(part);
                    code.op(Opcode::GET_PROPERTY, target.span);
                }
                code.op(Opcode::STRING, target.span);
                code.string(&chain[chain.len() - 1]);
                code.append(self.expr(value));
                code.op(Opcode::SET_PROPERTY, span);
            }
            _ => self.error(
                Diagnostic::new(DiagCode::InvalidAssignment, "this expression cannot be assigned to", target.span)
                    .with_label("not a variable, property or index")
                    .with_help("assign to a variable (`x := …`), a property (`x.a := …`) or an index (`x[1] := …`)"),
            ),
        }
        code
    }

    fn for_in(&mut self, key: Option<&str>, value: &str, iter: &Expr, body: &Stmt, span: Span) -> Code {
        let end = Span::new(span.end, span.end);
        let mut code = Code::default();
        self.start_scope();
        let expr_local = self.declare("__H_expr_H__", span, None);
        code.append(self.expr(iter));
        let keys_local = key.map(|_| {
            let l = self.declare("__H_keys_H__", span, None);
            code.op(Opcode::GET_LOCAL, span);
            code.usize(expr_local);
            code.op(Opcode::CALL_GLOBAL, span);
            code.string("keys");
            code.int(1);
            l
        });
        let values_local = self.declare("__H_values_H__", span, None);
        code.op(Opcode::GET_LOCAL, span);
        code.usize(expr_local);
        code.op(Opcode::CALL_GLOBAL, span);
        code.string("values");
        code.int(1);
        let index_local = self.declare("__H_index_H__", span, None);
        code.op(Opcode::INTEGER, span);
        code.int(1);
        let limit_local = self.declare("__H_limit_H__", span, None);
        code.op(Opcode::GET_LOCAL, span);
        code.usize(values_local);
        code.op(Opcode::CALL_GLOBAL, span);
        code.string("length");
        code.int(1);
        let key_local = key.map(|k| {
            let l = self.declare(k, span, None);
            code.op(Opcode::NULL, span);
            l
        });
        let value_local = self.declare(value, span, None);
        code.op(Opcode::NULL, span);

        let mut cond = Code::default();
        cond.op(Opcode::GET_LOCAL, span);
        cond.usize(limit_local);
        cond.op(Opcode::GET_LOCAL, span);
        cond.usize(index_local);
        cond.op(Opcode::LT_EQ, span);

        let mut b = Code::default();
        if let (Some(keys_local), Some(key_local)) = (keys_local, key_local) {
            b.op(Opcode::GET_LOCAL, span);
            b.usize(keys_local);
            b.op(Opcode::GET_LOCAL, span);
            b.usize(index_local);
            b.op(Opcode::GET_PROPERTY, span);
            b.op(Opcode::SET_LOCAL, span);
            b.usize(key_local);
        }
        b.op(Opcode::GET_LOCAL, span);
        b.usize(values_local);
        b.op(Opcode::GET_LOCAL, span);
        b.usize(index_local);
        b.op(Opcode::GET_PROPERTY, span);
        b.op(Opcode::SET_LOCAL, span);
        b.usize(value_local);
        b.append(self.stmt(body));

        let mut inc = Code::default();
        inc.op(Opcode::GET_LOCAL, span);
        inc.usize(index_local);
        inc.op(Opcode::INTEGER, span);
        inc.int(1);
        inc.op(Opcode::PLUS, span);
        inc.op(Opcode::SET_LOCAL, span);
        inc.usize(index_local);

        let (clen, blen, ilen) = (cond.len() as i64, b.len() as i64, inc.len() as i64);
        code.append(cond);
        code.op(Opcode::JUMP_IF_FALSE, span);
        code.int(blen + ilen + 2);
        code.append(b);
        code.append(inc);
        code.op(Opcode::JUMP, span);
        code.int(-ilen - blen - 2 - clen - 2);
        code.append(self.end_scope(end));
        code
    }

    fn function(&mut self, name: &str, params: &[String], body: &[Stmt], span: Span) -> Code {
        self.fns.push(FnState::default());
        for p in params {
            self.declare(p, span, None);
        }
        let end = body.last().map(|s| Span::new(s.span.end, s.span.end)).unwrap_or(span);
        let body_code = self.block(body, end);
        self.callable(name, params.len(), body_code, span)
    }

    /// Wraps a compiled body (of the innermost function state, which it pops) in CALLABLE + CLOSURE.
    fn callable(&mut self, name: &str, argc: usize, body: Code, span: Span) -> Code {
        let state = self.fns.pop().expect("function state pushed by the caller");
        let mut code = Code::default();
        code.op(Opcode::CALLABLE, span);
        code.string(name);
        code.usize(argc);
        code.usize(state.upvalues.len());
        code.usize(body.len());
        code.append(body);
        code.op(Opcode::CLOSURE, span);
        code.usize(state.upvalues.len());
        for up in &state.upvalues {
            code.push(Item::Bool(up.is_local));
            code.usize(up.index);
        }
        code
    }

    fn try_stmt(&mut self, body: &[Stmt], catches: &[Catch], finally: Option<&[Stmt]>, span: Span) -> Code {
        if let Some(fin) = finally {
            // try { try { body } catch … } catch (__H_finally_H__) { fin; throw __H_finally_H__ } fin
            let inner = if catches.is_empty() {
                body.to_vec()
            } else {
                vec![Stmt {
                    kind: StmtKind::Try { body: body.to_vec(), catches: catches.to_vec(), finally: None },
                    span,
                }]
            };
            let var = "__H_finally_H__".to_string();
            let mut handler = fin.to_vec();
            handler.push(Stmt {
                kind: StmtKind::Throw(Some(Expr { kind: ExprKind::Field(vec![var.clone()]), span })),
                span,
            });
            let outer = Catch { var: Some(var), ty: None, body: handler, span };
            let mut code = self.try_stmt(&inner, &[outer], None, span);
            code.append(self.block(fin, span));
            return code;
        }
        let end = Span::new(span.end, span.end);
        let try_code = self.block(body, end);
        let mut code = Code::default();
        code.op(Opcode::TRY, span);
        code.usize(try_code.len() + 4);
        code.append(try_code);
        code.op(Opcode::POP_TRY, span);

        let mut c = Code::default();
        let mut end_positions = Vec::new();
        self.start_scope();
        self.declare("e", span, None);
        c.append(self.field(&["e".to_string(), "type".to_string()], span));
        self.declare("type", span, None);
        for catch in catches {
            let var = catch.var.clone().unwrap_or_else(|| "e".to_string());
            let ty = catch.ty.clone().unwrap_or_else(|| "Error".to_string());
            self.start_scope();
            if ty == "Error" {
                if var != "e" {
                    self.declare(&var, catch.span, None);
                    c.append(self.field(&["e".to_string()], catch.span));
                }
                c.append(self.block(&catch.body, Span::new(catch.span.end, catch.span.end)));
                c.append(self.end_scope(catch.span));
                c.op(Opcode::JUMP, catch.span);
                c.push(Item::Null);
                end_positions.push(c.len() - 1);
            } else {
                c.op(Opcode::STRING, catch.span);
                c.string(&ty);
                c.append(self.field(&["type".to_string()], catch.span));
                c.op(Opcode::EQ, catch.span);
                c.op(Opcode::JUMP_IF_FALSE, catch.span);
                let mut cb = Code::default();
                if var != "e" {
                    self.declare(&var, catch.span, None);
                    cb.append(self.field(&["e".to_string()], catch.span));
                }
                cb.append(self.block(&catch.body, Span::new(catch.span.end, catch.span.end)));
                cb.append(self.end_scope(catch.span));
                c.usize(cb.len() + 2);
                c.append(cb);
                c.op(Opcode::JUMP, catch.span);
                c.push(Item::Null);
                end_positions.push(c.len() - 1);
            }
        }
        c.op(Opcode::POP, span);
        c.op(Opcode::THROW, span);
        let end_scope = self.end_scope(span);
        let end_len = end_scope.len();
        c.append(end_scope);
        let total = c.len();
        for pos in end_positions {
            c.items[pos] = Item::Int((total - pos - end_len - 1) as i64);
        }
        code.op(Opcode::JUMP, span);
        code.usize(c.len());
        code.append(c);
        code
    }

    // -----------------------------------------------------------------------------------------
    // Expressions

    fn field(&mut self, chain: &[String], span: Span) -> Code {
        let mut code = Code::default();
        let name = &chain[0];
        let found = if let Some(index) = self.find_local(name) {
            Some((Opcode::GET_LOCAL, index))
        } else {
            self.resolve_upvalue(self.fns.len() - 1, name).map(|up| (Opcode::GET_UPVALUE, up))
        };
        if let Some((op, index)) = found {
            code.op(op, span);
            code.usize(index);
            for part in &chain[1..] {
                code.op(Opcode::STRING, span);
                code.string(part);
                code.op(Opcode::GET_PROPERTY, span);
            }
            return code;
        }
        if let Some(globals) = &self.options.globals {
            let known = globals.iter().any(|g| g == name)
                || (chain.len() == 1 && (stdlib::is_function(name) || self.is_host_function(name)));
            if !known {
                let name_span = Span::new(span.start, span.start + name.len().min(span.end - span.start));
                let mut d = Diagnostic::new(DiagCode::UnknownVariable, format!("unknown variable `{name}`"), name_span)
                    .with_label("not a local variable or a known global");
                let names = self.visible_names();
                if let Some(s) = did_you_mean(name, names.iter().map(|s| s.as_str())) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                } else {
                    d = d.with_note(format!(
                        "declare it with `let {name} := …`; the globals here are: {}",
                        if globals.is_empty() { "none".to_string() } else { globals.join(", ") }
                    ));
                }
                self.error(d);
            }
        }
        for part in chain.iter().rev() {
            code.op(Opcode::STRING, span);
            code.string(part);
        }
        code.op(Opcode::GET_GLOBAL, span);
        code.usize(chain.len());
        code
    }

    fn is_host_function(&self, name: &str) -> bool {
        self.options.functions.iter().any(|(n, _, _)| n == name)
    }

    fn expr(&mut self, e: &Expr) -> Code {
        let span = e.span;
        let mut code = Code::default();
        match &e.kind {
            ExprKind::Constant(c) => match c {
                Constant::Null => code.op(Opcode::NULL, span),
                Constant::Bool(true) => code.op(Opcode::TRUE, span),
                Constant::Bool(false) => code.op(Opcode::FALSE, span),
                Constant::Int(i) => {
                    code.op(Opcode::INTEGER, span);
                    code.int(*i);
                }
                Constant::Float(f) => {
                    code.op(Opcode::FLOAT, span);
                    code.push(Item::Float(*f));
                }
                Constant::Str(s) => {
                    code.op(Opcode::STRING, span);
                    code.string(s);
                }
            },
            ExprKind::Field(chain) => code = self.field(chain, span),
            ExprKind::ArrayAccess { array, property, nullish } => {
                code.append(self.expr(array));
                code.append(self.expr(property));
                code.op(if *nullish { Opcode::GET_PROPERTY_NULLISH } else { Opcode::GET_PROPERTY }, span);
            }
            ExprKind::TupleAccess { tuple, index, nullish } => {
                code.append(self.expr(tuple));
                code.op(Opcode::INTEGER, span);
                code.int(*index);
                code.op(if *nullish { Opcode::GET_PROPERTY_NULLISH } else { Opcode::GET_PROPERTY }, span);
            }
            ExprKind::Call { name, name_span, args } => code = self.call(name, *name_span, args, span),
            ExprKind::ExprCall { callee, args } => {
                for a in args {
                    code.append(self.expr(a));
                }
                code.append(self.expr(callee));
                code.op(Opcode::CALL_LOCAL, span);
                code.usize(args.len());
            }
            ExprKind::Lambda { params, body } => {
                self.fns.push(FnState::default());
                for p in params {
                    self.declare(p, span, None);
                }
                let body_code = match body {
                    LambdaBody::Expr(x) => {
                        let mut b = self.expr(x);
                        b.op(Opcode::RETURN, x.span);
                        b
                    }
                    LambdaBody::Block(stmts) => {
                        let stmts = with_implicit_return(stmts.clone());
                        self.block(&stmts, Span::new(span.end, span.end))
                    }
                };
                code = self.callable("lambda", params.len(), body_code, span);
            }
            ExprKind::Dict(items) => {
                for (k, v) in items {
                    code.append(self.expr(k));
                    code.append(self.expr(v));
                }
                code.op(Opcode::DICT, span);
                code.usize(items.len());
            }
            ExprKind::Array(items) | ExprKind::Tuple(items) => {
                for x in items {
                    code.append(self.expr(x));
                }
                let op = if matches!(e.kind, ExprKind::Array(_)) { Opcode::ARRAY } else { Opcode::TUPLE };
                code.op(op, span);
                code.usize(items.len());
            }
            ExprKind::Arithmetic { op, left, right } => {
                code.append(self.expr(right));
                code.append(self.expr(left));
                code.op(
                    match op {
                        ArithOp::Add => Opcode::PLUS,
                        ArithOp::Sub => Opcode::MINUS,
                        ArithOp::Mul => Opcode::MULTIPLY,
                        ArithOp::Div => Opcode::DIVIDE,
                        ArithOp::Mod => Opcode::MOD,
                    },
                    span,
                );
            }
            ExprKind::Compare { op, left, right } => {
                if matches!(op, CompareOp::InCohort | CompareOp::NotInCohort) {
                    self.error(
                        Diagnostic::new(
                            DiagCode::CohortNotSupported,
                            "cohorts cannot be used in real-time functions",
                            span,
                        )
                        .with_help("inline the cohort's conditions in the expression"),
                    );
                }
                code.append(self.expr(right));
                code.append(self.expr(left));
                code.op(compare_opcode(*op), span);
            }
            ExprKind::And(xs) => code = self.short_circuit(xs, true, span),
            ExprKind::Or(xs) => code = self.short_circuit(xs, false, span),
            ExprKind::Not(x) => {
                code.append(self.expr(x));
                code.op(Opcode::NOT, span);
            }
            ExprKind::Between { expr, low, high, negated } => {
                // SQL semantics, as PostHog compiles it: null when any operand is null.
                let (lo_op, hi_op, join) = if *negated {
                    (Opcode::LT, Opcode::GT, Opcode::OR)
                } else {
                    (Opcode::GT_EQ, Opcode::LT_EQ, Opcode::AND)
                };
                for part in [low, high, expr] {
                    code.append(self.expr(part));
                    code.op(Opcode::NULL, span);
                    code.op(Opcode::NOT_EQ, span);
                }
                code.op(Opcode::AND, span);
                code.int(3);
                let mut cmp = Code::default();
                cmp.append(self.expr(low));
                cmp.append(self.expr(expr));
                cmp.op(lo_op, span);
                cmp.append(self.expr(high));
                cmp.append(self.expr(expr));
                cmp.op(hi_op, span);
                cmp.op(join, span);
                cmp.int(2);
                code.op(Opcode::JUMP_IF_FALSE, span);
                code.usize(cmp.len() + 2);
                code.append(cmp);
                code.op(Opcode::JUMP, span);
                code.int(1);
                code.op(Opcode::NULL, span);
            }
        }
        code
    }

    /// `a and b and c` evaluates left to right and stops at the first falsy operand; the result is
    /// a boolean. `or` stops at the first truthy one.
    fn short_circuit(&mut self, xs: &[Expr], is_and: bool, span: Span) -> Code {
        let mut code = Code::default();
        let mut patches = Vec::new();
        for (i, x) in xs.iter().enumerate() {
            code.append(self.expr(x));
            if i + 1 < xs.len() {
                if !is_and {
                    code.op(Opcode::NOT, span);
                }
                code.op(Opcode::JUMP_IF_FALSE, span);
                code.int(0);
                patches.push(code.len() - 1);
            }
        }
        code.op(if is_and { Opcode::AND } else { Opcode::OR }, span);
        code.int(1);
        code.op(Opcode::JUMP, span);
        code.int(1);
        let target = code.len();
        code.op(if is_and { Opcode::FALSE } else { Opcode::TRUE }, span);
        for p in patches {
            code.patch_jump(p, target);
        }
        code
    }

    fn call(&mut self, name: &str, name_span: Span, args: &[Expr], span: Span) -> Code {
        let mut code = Code::default();
        match name {
            "not" if args.len() == 1 => {
                code.append(self.expr(&args[0]));
                code.op(Opcode::NOT, span);
                return code;
            }
            "and" if args.len() > 1 => return self.short_circuit(args, true, span),
            "or" if args.len() > 1 => return self.short_circuit(args, false, span),
            "if" if args.len() >= 2 => {
                let c = self.expr(&args[0]);
                let t = self.expr(&args[1]);
                let o = match args.get(2) {
                    Some(o) => self.expr(o),
                    None => {
                        let mut n = Code::default();
                        n.op(Opcode::NULL, span);
                        n
                    }
                };
                code.append(c);
                code.op(Opcode::JUMP_IF_FALSE, span);
                code.usize(t.len() + 2);
                code.append(t);
                code.op(Opcode::JUMP, span);
                code.usize(o.len());
                code.append(o);
                if args.len() > 3 {
                    self.arity_error(name, name_span, 2, Some(3), args.len());
                }
                return code;
            }
            "multiIf" if args.len() >= 2 => {
                if args.len() <= 3 {
                    return self.call("if", name_span, args, span);
                }
                let mut prev: Option<Code> = if args.len().is_multiple_of(2) {
                    let mut n = Code::default();
                    n.op(Opcode::NULL, span);
                    Some(n)
                } else {
                    Some(self.expr(&args[args.len() - 1]))
                };
                let mut i = args.len() as i64 - 2 - (args.len() % 2) as i64;
                while i >= 0 {
                    let c = self.expr(&args[i as usize]);
                    let t = self.expr(&args[i as usize + 1]);
                    let mut r = Code::default();
                    r.append(c);
                    r.op(Opcode::JUMP_IF_FALSE, span);
                    let p = prev.take().expect("multiIf always has an else branch here");
                    r.usize(t.len() + 2);
                    r.append(t);
                    r.op(Opcode::JUMP, span);
                    r.usize(p.len());
                    r.append(p);
                    prev = Some(r);
                    i -= 2;
                }
                return prev.expect("multiIf with at least two arguments");
            }
            "ifNull" if args.len() == 2 => {
                let x = self.expr(&args[0]);
                let d = self.expr(&args[1]);
                code.append(x);
                code.op(Opcode::JUMP_IF_STACK_NOT_NULL, span);
                code.usize(d.len() + 1);
                code.op(Opcode::POP, span);
                code.append(d);
                return code;
            }
            _ => {}
        }
        for a in args {
            code.append(self.expr(a));
        }
        if self.find_local(name).is_some() {
            if let Some(arity) = self.local_arity(name) {
                if args.len() > arity {
                    self.arity_error(name, name_span, 0, Some(arity), args.len());
                }
            }
            code.append(self.field(&[name.to_string()], name_span));
            code.op(Opcode::CALL_LOCAL, span);
            code.usize(args.len());
            return code;
        }
        if let Some(up) = self.resolve_upvalue(self.fns.len() - 1, name) {
            if let Some(arity) = self.local_arity(name) {
                if args.len() > arity {
                    self.arity_error(name, name_span, 0, Some(arity), args.len());
                }
            }
            code.op(Opcode::GET_UPVALUE, name_span);
            code.usize(up);
            code.op(Opcode::CALL_LOCAL, span);
            code.usize(args.len());
            return code;
        }
        let host = self.options.functions.iter().find(|(n, _, _)| n == name).map(|(_, lo, hi)| (*lo, *hi));
        let known = host.or_else(|| stdlib::arity(name));
        match known {
            Some((min, max)) => {
                if args.len() < min || max.is_some_and(|m| args.len() > m) {
                    self.arity_error(name, name_span, min, max, args.len());
                }
            }
            None if self.options.globals.as_ref().is_some_and(|g| g.iter().any(|x| x == name)) => {}
            None => {
                let mut d = Diagnostic::new(DiagCode::UnknownFunction, format!("unknown function `{name}`"), name_span)
                    .with_label("not a local function or in the standard library");
                let mut candidates: Vec<String> = self.visible_names();
                candidates.extend(stdlib::all_names().map(|s| s.to_string()));
                candidates.extend(self.options.functions.iter().map(|(n, _, _)| n.clone()));
                if let Some(s) = did_you_mean(name, candidates.iter().map(|s| s.as_str())) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                } else {
                    d = d.with_note("`hogpipe hog functions` lists the standard library");
                }
                self.error(d);
            }
        }
        code.op(Opcode::CALL_GLOBAL, span);
        code.string(name);
        code.usize(args.len());
        code
    }

    fn arity_error(&mut self, name: &str, span: Span, min: usize, max: Option<usize>, given: usize) {
        let expected = match max {
            Some(m) if m == min => format!("{m} argument{}", if m == 1 { "" } else { "s" }),
            Some(m) if min == 0 => format!("at most {m} argument{}", if m == 1 { "" } else { "s" }),
            Some(m) => format!("{min} to {m} arguments"),
            None => format!("at least {min} argument{}", if min == 1 { "" } else { "s" }),
        };
        let mut d = Diagnostic::new(
            DiagCode::WrongArity,
            format!("`{name}` takes {expected} but {given} {} given", if given == 1 { "was" } else { "were" }),
            span,
        )
        .with_label(format!("called with {given}"));
        if let Some(sig) = stdlib::lookup(name).map(|f| f.signature) {
            d = d.with_note(format!("signature: {sig}"));
        }
        self.error(d);
    }
}

fn compare_opcode(op: CompareOp) -> Opcode {
    match op {
        CompareOp::Eq => Opcode::EQ,
        CompareOp::NotEq => Opcode::NOT_EQ,
        CompareOp::Gt => Opcode::GT,
        CompareOp::GtEq => Opcode::GT_EQ,
        CompareOp::Lt => Opcode::LT,
        CompareOp::LtEq => Opcode::LT_EQ,
        CompareOp::Like => Opcode::LIKE,
        CompareOp::ILike => Opcode::ILIKE,
        CompareOp::NotLike => Opcode::NOT_LIKE,
        CompareOp::NotILike => Opcode::NOT_ILIKE,
        CompareOp::In => Opcode::IN,
        CompareOp::NotIn => Opcode::NOT_IN,
        CompareOp::InCohort => Opcode::IN_COHORT,
        CompareOp::NotInCohort => Opcode::NOT_IN_COHORT,
        CompareOp::Regex => Opcode::REGEX,
        CompareOp::NotRegex => Opcode::NOT_REGEX,
        CompareOp::IRegex => Opcode::IREGEX,
        CompareOp::NotIRegex => Opcode::NOT_IREGEX,
    }
}
