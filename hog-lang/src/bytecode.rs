//! PostHog's HogVM bytecode: the operation numbers, the JSON form (`["_H", 1, op, args…]`), and
//! the decoder that turns it into pre-resolved instructions for the VM.
//!
//! The decoder is the only way into the VM: bytecode compiled here and bytecode from PostHog go
//! through the same checks. Jump offsets (counted in array elements, as PostHog counts them) become
//! instruction indexes, so the VM never re-reads JSON while running.

use crate::ast::Span;
use crate::stdlib::{self, NativeFunction};
use std::rc::Rc;
use thiserror::Error;

/// The header of format version 1.
pub const HEADER: &str = "_H";
/// The format version written here.
pub const VERSION: i64 = 1;

macro_rules! opcodes {
    ($($name:ident = $num:literal),* $(,)?) => {
        /// Operation numbers of HogVM bytecode, named as PostHog names them.
        #[allow(missing_docs, non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Opcode { $($name = $num),* }

        impl Opcode {
            /// The operation for a number.
            pub fn from_u8(n: u8) -> Option<Opcode> {
                match n { $($num => Some(Opcode::$name),)* _ => None }
            }
            /// PostHog's name for the operation (`GET_GLOBAL`, …).
            pub fn name(self) -> &'static str {
                match self { $(Opcode::$name => opcode_name(stringify!($name)),)* }
            }
        }
    };
}

const fn opcode_name(s: &'static str) -> &'static str {
    s
}

opcodes! {
    GET_GLOBAL = 1, CALL_GLOBAL = 2, AND = 3, OR = 4, NOT = 5, PLUS = 6, MINUS = 7, MULTIPLY = 8,
    DIVIDE = 9, MOD = 10, EQ = 11, NOT_EQ = 12, GT = 13, GT_EQ = 14, LT = 15, LT_EQ = 16, LIKE = 17,
    ILIKE = 18, NOT_LIKE = 19, NOT_ILIKE = 20, IN = 21, NOT_IN = 22, REGEX = 23, NOT_REGEX = 24,
    IREGEX = 25, NOT_IREGEX = 26, IN_COHORT = 27, NOT_IN_COHORT = 28, TRUE = 29, FALSE = 30,
    NULL = 31, STRING = 32, INTEGER = 33, FLOAT = 34, POP = 35, GET_LOCAL = 36, SET_LOCAL = 37,
    RETURN = 38, JUMP = 39, JUMP_IF_FALSE = 40, DECLARE_FN = 41, DICT = 42, ARRAY = 43, TUPLE = 44,
    GET_PROPERTY = 45, SET_PROPERTY = 46, JUMP_IF_STACK_NOT_NULL = 47, GET_PROPERTY_NULLISH = 48,
    THROW = 49, TRY = 50, POP_TRY = 51, CALLABLE = 52, CLOSURE = 53, CALL_LOCAL = 54,
    GET_UPVALUE = 55, SET_UPVALUE = 56, CLOSE_UPVALUE = 57,
}

/// One element of a bytecode array, as the compiler writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An operation.
    Op(Opcode),
    /// An integer operand.
    Int(i64),
    /// A float operand.
    Float(f64),
    /// A string operand.
    Str(String),
    /// A boolean operand (the `is_local` flags of `CLOSURE`).
    Bool(bool),
    /// JSON `null` (a no-op where an operation is expected).
    Null,
}

impl Item {
    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Item::Op(op) => serde_json::Value::from(*op as u8),
            Item::Int(i) => serde_json::Value::from(*i),
            Item::Float(f) => {
                serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
            }
            Item::Str(s) => serde_json::Value::from(s.as_str()),
            Item::Bool(b) => serde_json::Value::from(*b),
            Item::Null => serde_json::Value::Null,
        }
    }
}

/// Bytecode as a JSON array with the header.
pub fn to_json(items: &[Item]) -> serde_json::Value {
    let mut out = vec![serde_json::Value::from(HEADER), serde_json::Value::from(VERSION)];
    out.extend(items.iter().map(Item::to_json));
    serde_json::Value::Array(out)
}

/// Why bytecode could not be loaded.
#[derive(Debug, Error, PartialEq)]
pub enum DecodeError {
    /// Not a JSON array starting with `"_H"` or `"_h"`.
    #[error("invalid HogQL bytecode: must be a JSON array starting with \"_H\"")]
    BadHeader,
    /// The JSON text did not parse.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// An element where an operation was expected is not a known operation.
    #[error("unknown operation {found} at element {at}")]
    UnknownOp {
        /// The element's JSON text.
        found: String,
        /// Its index in the array.
        at: usize,
    },
    /// An operand is missing or of the wrong type.
    #[error("{op} at element {at}: {problem}")]
    BadOperand {
        /// The operation.
        op: &'static str,
        /// Its index in the array.
        at: usize,
        /// What is wrong.
        problem: String,
    },
    /// A jump lands outside the program or inside an instruction.
    #[error("{op} at element {at} jumps to element {target}, which is not the start of an operation")]
    BadJump {
        /// The operation.
        op: &'static str,
        /// Its index in the array.
        at: usize,
        /// Where it lands.
        target: i64,
    },
}

/// A pre-decoded instruction.
#[derive(Debug, Clone)]
pub enum Op {
    /// No operation (JSON `null` in the array).
    Nop,
    /// Look up a chain of that many parts among the globals.
    GetGlobal(u32),
    /// Call a function by name.
    CallGlobal {
        /// Function name.
        name: Rc<str>,
        /// Arguments on the stack.
        argc: u32,
        /// The native function of that name, resolved at load time.
        native: Option<&'static NativeFunction>,
    },
    /// Pop n values, push whether all are truthy.
    And(u32),
    /// Pop n values, push whether any is truthy.
    Or(u32),
    /// Logical not.
    Not,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Multiply,
    /// `/`
    Divide,
    /// `%`
    Mod,
    /// A comparison or matching operation.
    Compare(Opcode),
    /// Push `true`.
    True,
    /// Push `false`.
    False,
    /// Push `null`.
    Null,
    /// Push a string constant.
    Str(crate::value::Text),
    /// Push a number constant.
    Num(f64),
    /// Drop the top.
    Pop,
    /// Push a local.
    GetLocal(u32),
    /// Pop into a local.
    SetLocal(u32),
    /// Return the top from the current function.
    Return,
    /// Jump to an instruction.
    Jump(u32),
    /// Pop; jump when falsy.
    JumpIfFalse(u32),
    /// Jump when the top is not null (without popping).
    JumpIfStackNotNull(u32),
    /// Legacy named function declaration.
    DeclareFn {
        /// Name.
        name: Rc<str>,
        /// Parameter count.
        argc: u32,
        /// First instruction of the body.
        body: u32,
        /// Instruction after the body.
        end: u32,
    },
    /// Build a dict from 2n values.
    Dict(u32),
    /// Build an array from n values.
    Array(u32),
    /// Build a tuple from n values.
    Tuple(u32),
    /// `container[key]`.
    GetProperty,
    /// `container?.[key]`.
    GetPropertyNullish,
    /// `container[key] := value`.
    SetProperty,
    /// Throw the top.
    Throw,
    /// Push a handler that resumes at the instruction.
    Try(u32),
    /// Drop the innermost handler.
    PopTry,
    /// Push a function, skipping its body.
    Callable {
        /// Name.
        name: Rc<str>,
        /// Parameter count.
        argc: u32,
        /// Upvalue count.
        upvalue_count: u32,
        /// First instruction of the body.
        body: u32,
        /// Instruction after the body.
        end: u32,
    },
    /// Wrap the callable on the stack with captured upvalues (is_local, index).
    Closure(Rc<[(bool, u32)]>),
    /// Call the closure on top with n arguments below it.
    CallLocal(u32),
    /// Push an upvalue of the current closure.
    GetUpvalue(u32),
    /// Pop into an upvalue of the current closure.
    SetUpvalue(u32),
    /// Close the upvalue on the top slot and pop it.
    CloseUpvalue,

    // Fused instructions, made by `optimize::fuse` (never read from or written to bytecode). Each
    // stands for the `covers()` original instructions starting at its index, and only takes a fast
    // path for numbers; otherwise the VM runs the original instruction at that index instead.
    /// `left op right` on two operands, pushed, or stored into a local.
    Arith {
        /// The operation.
        op: Arith,
        /// Left operand (pushed second).
        left: Operand,
        /// Right operand (pushed first).
        right: Operand,
        /// Local to store into (a following `SET_LOCAL`), or `None` to push.
        dst: Option<u32>,
    },
    /// A comparison of the two values on the stack followed by `JUMP_IF_FALSE` (or by the `and`
    /// shape that leads to one).
    CompareJump {
        /// The comparison.
        op: Opcode,
        /// Where to go when false.
        target: u32,
        /// Where to go when true.
        next: u32,
    },
    /// A comparison of two operands followed by `JUMP_IF_FALSE` (or the `and` shape).
    CompareOperandsJump {
        /// The comparison.
        op: Opcode,
        /// Left operand (pushed second).
        left: Operand,
        /// Right operand (pushed first).
        right: Operand,
        /// Where to go when false.
        target: u32,
        /// Where to go when true.
        next: u32,
    },
    /// `left op right` on two operands, then `then` of that result (left) and the value on the
    /// stack (right), replacing it: `x*x + <top>`.
    Arith2 {
        /// The first operation.
        op: Arith,
        /// Its left operand (pushed second).
        left: Operand,
        /// Its right operand (pushed first).
        right: Operand,
        /// The operation with the stack top.
        then: Arith,
    },
    /// `POP; JUMP target` (the end of a loop body with a block-scoped local).
    PopJump(u32),
    /// An arithmetic operation on the two values on the stack, stored into a local.
    ArithSet {
        /// The operation.
        op: Arith,
        /// The local.
        dst: u32,
    },
    /// `STRING key; GET_PROPERTY` (or `GET_PROPERTY_NULLISH`): a property by a constant name of
    /// the value on the stack.
    GetPropertyConst(crate::value::Value),
    /// `GET_LOCAL l; STRING key; GET_PROPERTY`: a property by a constant name of a local.
    GetLocalProperty {
        /// The local.
        local: u32,
        /// The property name.
        key: crate::value::Value,
    },
    /// `GET_LOCAL obj; GET_LOCAL index; GET_PROPERTY [; SET_LOCAL dst]`: `obj[index]` of two
    /// locals (a for-in loop's step), pushed or stored.
    GetLocalIndex {
        /// The container's local.
        obj: u32,
        /// The key's local.
        index: u32,
        /// Local to store into, or `None` to push.
        dst: Option<u32>,
    },
    /// `GET_LOCAL from; SET_LOCAL to`.
    MoveLocal {
        /// Source local.
        from: u32,
        /// Destination local.
        to: u32,
    },
}

/// An arithmetic operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arith {
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Multiply,
    /// `/`
    Divide,
    /// `%`
    Mod,
}

impl Arith {
    /// Applies the operation to two numbers, as JavaScript does.
    #[inline(always)]
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Arith::Plus => a + b,
            Arith::Minus => a - b,
            Arith::Multiply => a * b,
            Arith::Divide => a / b,
            Arith::Mod => js_rem(a, b),
        }
    }
}

/// JavaScript's `%` (the sign of the dividend). Whole operands take an integer path: `f64 %` is a
/// slow library call.
#[inline(always)]
pub fn js_rem(a: f64, b: f64) -> f64 {
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    use crate::value::is_whole;
    if is_whole(a) && is_whole(b) && a.abs() < LIMIT && b.abs() < LIMIT && b != 0.0 {
        let r = (a as i64) % (b as i64);
        if r == 0 && a.is_sign_negative() {
            return -0.0;
        }
        return r as f64;
    }
    a % b
}

/// An operand of a fused instruction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operand {
    /// A local of the current frame.
    Local(u32),
    /// A number constant.
    Num(f64),
}

impl Op {
    /// How many original instructions this one stands for (1 for an unfused one).
    pub fn covers(&self) -> usize {
        match self {
            Op::Arith { dst: None, .. } => 3,
            Op::Arith { dst: Some(_), .. } => 4,
            Op::CompareJump { .. } | Op::MoveLocal { .. } | Op::ArithSet { .. } | Op::GetPropertyConst(_) => 2,
            Op::GetLocalProperty { .. } | Op::GetLocalIndex { dst: None, .. } => 3,
            Op::GetLocalIndex { dst: Some(_), .. } | Op::Arith2 { .. } => 4,
            Op::PopJump(_) => 2,
            Op::CompareOperandsJump { .. } => 4,
            _ => 1,
        }
    }
}

/// A decoded unit of bytecode: a program, or one function of the bytecode standard library.
#[derive(Debug)]
pub struct Chunk {
    /// `root`, or `stl/arrayMap`, …
    pub name: String,
    /// Format version (0 passes call arguments reversed).
    pub version: i64,
    /// Instructions, as decoded (one per bytecode operation).
    pub ops: Vec<Op>,
    /// What the VM runs: `ops` with fused instructions in place of common sequences (same
    /// length and indexes; see `optimize::fuse`).
    pub code: Vec<Op>,
    /// Source span of each instruction, when compiled from source here.
    pub spans: Vec<Option<Span>>,
    /// The source text, when compiled from source here.
    pub source: Option<Rc<str>>,
    /// The bytecode this chunk was decoded from, and the source span of each element (kept so a
    /// suspended VM's state can carry its code to another process).
    pub bytecode: Vec<Item>,
    /// Source span of each element of `bytecode`, when compiled from source here.
    pub bytecode_spans: Option<Vec<Option<Span>>>,
}

impl Chunk {
    /// 1-based line and column of an instruction, when known.
    pub fn position(&self, ip: usize) -> Option<(usize, usize)> {
        let span = self.spans.get(ip).copied().flatten()?;
        let src = self.source.as_ref()?;
        Some(crate::diagnostics::line_col(src, span.start))
    }
}

/// Parses a JSON bytecode array.
pub fn items_from_json(json: &serde_json::Value) -> Result<(i64, Vec<Item>), DecodeError> {
    let arr = json.as_array().ok_or(DecodeError::BadHeader)?;
    let (version, skip) = match arr.first().and_then(|v| v.as_str()) {
        Some("_H") => (arr.get(1).and_then(|v| v.as_i64()).unwrap_or(0), 2),
        Some("_h") => (0, 1),
        _ => return Err(DecodeError::BadHeader),
    };
    let mut items = Vec::with_capacity(arr.len());
    for v in &arr[skip.min(arr.len())..] {
        items.push(match v {
            serde_json::Value::Null => Item::Null,
            serde_json::Value::Bool(b) => Item::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Item::Int(i),
                None => Item::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Item::Str(s.clone()),
            other => Item::Str(other.to_string()),
        });
    }
    Ok((version, items))
}

/// Decodes items into a chunk. `spans`, when given, has one entry per item.
pub fn decode(
    name: &str,
    version: i64,
    items: &[Item],
    spans: Option<&[Option<Span>]>,
    source: Option<Rc<str>>,
) -> Result<Chunk, DecodeError> {
    // Element offset in the JSON array (the header counts, as PostHog's ip does).
    let base: usize = if version == 0 { 1 } else { 2 };
    let mut ops = Vec::with_capacity(items.len() / 2);
    let mut op_spans = Vec::with_capacity(items.len() / 2);
    let mut pos_to_op = vec![u32::MAX; items.len() + 1];
    // (op index, target element position, opcode name, element index) to resolve afterwards.
    let mut fixups: Vec<(usize, i64, &'static str, usize, u8)> = Vec::new();
    let mut i = 0;
    while i < items.len() {
        pos_to_op[i] = ops.len() as u32;
        let at = i + base;
        let opcode = match &items[i] {
            Item::Op(op) => *op,
            Item::Int(n) => u8::try_from(*n)
                .ok()
                .and_then(Opcode::from_u8)
                .ok_or_else(|| DecodeError::UnknownOp { found: n.to_string(), at })?,
            Item::Null => {
                ops.push(Op::Nop);
                op_spans.push(spans.and_then(|s| s.get(i).copied().flatten()));
                i += 1;
                continue;
            }
            other => return Err(DecodeError::UnknownOp { found: format!("{:?}", other.to_json()), at }),
        };
        let opname = opcode.name();
        let span = spans.and_then(|s| s.get(i).copied().flatten());
        let operand = |k: usize| -> Result<&Item, DecodeError> {
            items.get(i + k).ok_or_else(|| DecodeError::BadOperand {
                op: opname,
                at,
                problem: "unexpected end of bytecode".into(),
            })
        };
        let int = |k: usize| -> Result<i64, DecodeError> {
            match operand(k)? {
                Item::Int(n) => Ok(*n),
                Item::Float(f) if f.fract() == 0.0 => Ok(*f as i64),
                other => Err(DecodeError::BadOperand {
                    op: opname,
                    at,
                    problem: format!("expected an integer operand, found {}", other.to_json()),
                }),
            }
        };
        let count = |k: usize| -> Result<u32, DecodeError> {
            let n = int(k)?;
            u32::try_from(n).map_err(|_| DecodeError::BadOperand {
                op: opname,
                at,
                problem: format!("expected a count, found {n}"),
            })
        };
        let string = |k: usize| -> Result<Rc<str>, DecodeError> {
            match operand(k)? {
                Item::Str(s) => Ok(Rc::from(s.as_str())),
                Item::Int(n) => Ok(Rc::from(n.to_string().as_str())),
                other => Err(DecodeError::BadOperand {
                    op: opname,
                    at,
                    problem: format!("expected a string operand, found {}", other.to_json()),
                }),
            }
        };
        let op_index = ops.len();
        let (op, width) = match opcode {
            Opcode::GET_GLOBAL => (Op::GetGlobal(count(1)?), 2),
            Opcode::CALL_GLOBAL => {
                let name = string(1)?;
                let argc = count(2)?;
                let native = stdlib::lookup(&name);
                (Op::CallGlobal { name, argc, native }, 3)
            }
            Opcode::AND => (Op::And(count(1)?), 2),
            Opcode::OR => (Op::Or(count(1)?), 2),
            Opcode::NOT => (Op::Not, 1),
            Opcode::PLUS => (Op::Plus, 1),
            Opcode::MINUS => (Op::Minus, 1),
            Opcode::MULTIPLY => (Op::Multiply, 1),
            Opcode::DIVIDE => (Op::Divide, 1),
            Opcode::MOD => (Op::Mod, 1),
            Opcode::EQ
            | Opcode::NOT_EQ
            | Opcode::GT
            | Opcode::GT_EQ
            | Opcode::LT
            | Opcode::LT_EQ
            | Opcode::LIKE
            | Opcode::ILIKE
            | Opcode::NOT_LIKE
            | Opcode::NOT_ILIKE
            | Opcode::IN
            | Opcode::NOT_IN
            | Opcode::REGEX
            | Opcode::NOT_REGEX
            | Opcode::IREGEX
            | Opcode::NOT_IREGEX
            | Opcode::IN_COHORT
            | Opcode::NOT_IN_COHORT => (Op::Compare(opcode), 1),
            Opcode::TRUE => (Op::True, 1),
            Opcode::FALSE => (Op::False, 1),
            Opcode::NULL => (Op::Null, 1),
            // Interned: property and global names then compare by pointer with the same keys of
            // events read on this thread (see `Text::interned`).
            Opcode::STRING => (Op::Str(crate::value::Text::interned(&string(1)?)), 2),
            // PostHog's VM pushes the operand as it is; its compiler writes booleans here too.
            Opcode::INTEGER | Opcode::FLOAT => match operand(1)? {
                Item::Int(n) => (Op::Num(*n as f64), 2),
                Item::Float(f) => (Op::Num(*f), 2),
                Item::Bool(true) => (Op::True, 2),
                Item::Bool(false) => (Op::False, 2),
                Item::Null => (Op::Null, 2),
                Item::Str(s) => (Op::Str(crate::value::Text::from(s.as_str())), 2),
                Item::Op(o) => (Op::Num(f64::from(*o as u8)), 2),
            },
            Opcode::POP => (Op::Pop, 1),
            Opcode::GET_LOCAL => (Op::GetLocal(count(1)?), 2),
            Opcode::SET_LOCAL => (Op::SetLocal(count(1)?), 2),
            Opcode::RETURN => (Op::Return, 1),
            Opcode::JUMP | Opcode::JUMP_IF_FALSE | Opcode::JUMP_IF_STACK_NOT_NULL | Opcode::TRY => {
                let offset = int(1)?;
                // PostHog's VM reads TRY's target as `ip + 1 + offset` before advancing past the
                // operand; jumps land one element further.
                let target = (i as i64) + if opcode == Opcode::TRY { 1 } else { 2 } + offset;
                fixups.push((op_index, target, opname, at, 0));
                let op = match opcode {
                    Opcode::JUMP => Op::Jump(0),
                    Opcode::JUMP_IF_FALSE => Op::JumpIfFalse(0),
                    Opcode::JUMP_IF_STACK_NOT_NULL => Op::JumpIfStackNotNull(0),
                    _ => Op::Try(0),
                };
                (op, 2)
            }
            Opcode::DECLARE_FN => {
                let name = string(1)?;
                let argc = count(2)?;
                let body_len = int(3)?;
                let body_start = i as i64 + 4;
                fixups.push((op_index, body_start, opname, at, 1));
                fixups.push((op_index, body_start + body_len, opname, at, 2));
                (Op::DeclareFn { name, argc, body: 0, end: 0 }, 4)
            }
            Opcode::DICT => (Op::Dict(count(1)?), 2),
            Opcode::ARRAY => (Op::Array(count(1)?), 2),
            Opcode::TUPLE => (Op::Tuple(count(1)?), 2),
            Opcode::GET_PROPERTY => (Op::GetProperty, 1),
            Opcode::SET_PROPERTY => (Op::SetProperty, 1),
            Opcode::GET_PROPERTY_NULLISH => (Op::GetPropertyNullish, 1),
            Opcode::THROW => (Op::Throw, 1),
            Opcode::POP_TRY => (Op::PopTry, 1),
            Opcode::CALLABLE => {
                let name = string(1)?;
                let argc = count(2)?;
                let upvalue_count = count(3)?;
                let body_len = int(4)?;
                let body_start = i as i64 + 5;
                fixups.push((op_index, body_start, opname, at, 1));
                fixups.push((op_index, body_start + body_len, opname, at, 2));
                (Op::Callable { name, argc, upvalue_count, body: 0, end: 0 }, 5)
            }
            Opcode::CLOSURE => {
                let n = count(1)? as usize;
                let mut ups = Vec::with_capacity(n);
                for k in 0..n {
                    let is_local = match operand(2 + 2 * k)? {
                        Item::Bool(b) => *b,
                        Item::Int(n) => *n != 0,
                        other => {
                            return Err(DecodeError::BadOperand {
                                op: opname,
                                at,
                                problem: format!("expected a boolean, found {}", other.to_json()),
                            })
                        }
                    };
                    let index = count(3 + 2 * k)?;
                    ups.push((is_local, index));
                }
                (Op::Closure(Rc::from(ups)), 2 + 2 * n)
            }
            Opcode::CALL_LOCAL => (Op::CallLocal(count(1)?), 2),
            Opcode::GET_UPVALUE => (Op::GetUpvalue(count(1)?), 2),
            Opcode::SET_UPVALUE => (Op::SetUpvalue(count(1)?), 2),
            Opcode::CLOSE_UPVALUE => (Op::CloseUpvalue, 1),
        };
        // Every operand must exist.
        if width > 1 {
            operand(width - 1)?;
        }
        ops.push(op);
        op_spans.push(span);
        i += width;
    }
    pos_to_op[items.len()] = ops.len() as u32;
    for (op_index, target, opname, at, which) in fixups {
        let resolved = usize::try_from(target)
            .ok()
            .and_then(|t| pos_to_op.get(t).copied())
            .filter(|&t| t != u32::MAX)
            .ok_or(DecodeError::BadJump { op: opname, at, target: target + base as i64 })?;
        match (&mut ops[op_index], which) {
            (Op::Jump(t) | Op::JumpIfFalse(t) | Op::JumpIfStackNotNull(t) | Op::Try(t), 0) => *t = resolved,
            (Op::Callable { body, .. } | Op::DeclareFn { body, .. }, 1) => *body = resolved,
            (Op::Callable { end, .. } | Op::DeclareFn { end, .. }, 2) => *end = resolved,
            _ => unreachable!("fixup kinds match their operations"),
        }
    }
    let code = crate::optimize::fuse(&ops);
    Ok(Chunk {
        name: name.to_string(),
        version,
        ops,
        code,
        spans: op_spans,
        source,
        bytecode: items.to_vec(),
        bytecode_spans: spans.map(<[Option<Span>]>::to_vec),
    })
}

/// Decodes JSON bytecode text (a `.hoge` file).
pub fn decode_json_text(text: &str) -> Result<Chunk, DecodeError> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    let (version, items) = items_from_json(&json)?;
    decode("root", version, &items, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_print() {
        let chunk = decode_json_text(r#"["_H", 1, 32, "hi", 2, "print", 1, 35]"#).expect("decodes");
        assert_eq!(chunk.ops.len(), 3);
        assert!(matches!(chunk.ops[1], Op::CallGlobal { argc: 1, .. }));
    }

    #[test]
    fn rejects_bad_jumps() {
        let err = decode_json_text(r#"["_H", 1, 39, 1, 32, "x"]"#).expect_err("jumps into an operand");
        assert!(matches!(err, DecodeError::BadJump { .. }));
        let err = decode_json_text(r#"["_H", 1, 39, 100]"#).expect_err("jumps past the end");
        assert!(matches!(err, DecodeError::BadJump { .. }));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode_json_text("{}").unwrap_err(), DecodeError::BadHeader);
        assert!(matches!(decode_json_text(r#"["_H", 1, 999]"#), Err(DecodeError::UnknownOp { .. })));
        assert!(matches!(decode_json_text(r#"["_H", 1, 33]"#), Err(DecodeError::BadOperand { .. })));
    }
}
