//! Instruction fusion: common sequences of HogVM instructions become one instruction with a fast
//! path for numbers (`a * b`, `i := i + 1`, `if (n < 2)`), so hot loops dispatch fewer times.
//!
//! Fusion never changes indexes: the fused instruction replaces only the first instruction of its
//! sequence in `Chunk::code`, and the originals stay in `Chunk::ops`. A jump into the middle of a
//! sequence therefore runs the original instructions, and when the operands are not numbers the
//! VM runs the original first instruction instead of the fused one (a "deopt"), so semantics are
//! exactly the unfused ones.

use crate::bytecode::{Arith, Op, Opcode, Operand};

/// `ops` with each position replaced by the longest fused instruction starting there. Setting
/// `HOG_NOFUSE=1` turns fusion off, to measure what it buys (`hogpipe bench hog`).
pub fn fuse(ops: &[Op]) -> Vec<Op> {
    if std::env::var_os("HOG_NOFUSE").is_some() {
        return ops.to_vec();
    }
    (0..ops.len()).map(|i| fuse_at(ops, i).unwrap_or_else(|| ops[i].clone())).collect()
}

fn operand(op: &Op) -> Option<Operand> {
    match op {
        Op::GetLocal(i) => Some(Operand::Local(*i)),
        Op::Num(n) => Some(Operand::Num(*n)),
        _ => None,
    }
}

fn arith(op: &Op) -> Option<Arith> {
    Some(match op {
        Op::Plus => Arith::Plus,
        Op::Minus => Arith::Minus,
        Op::Multiply => Arith::Multiply,
        Op::Divide => Arith::Divide,
        Op::Mod => Arith::Mod,
        _ => return None,
    })
}

fn numeric_compare(op: &Op) -> Option<Opcode> {
    match op {
        Op::Compare(c @ (Opcode::EQ | Opcode::NOT_EQ | Opcode::LT | Opcode::LT_EQ | Opcode::GT | Opcode::GT_EQ)) => {
            Some(*c)
        }
        _ => None,
    }
}

/// After a comparison at `at` (its result on the stack): where control goes when the result is
/// false and when it is true, if what follows only branches on it. Two shapes: `JUMP_IF_FALSE t`,
/// and the `and` shape `AND 1; JUMP j` with `JUMP_IF_FALSE t` at `j`.
fn branch_after(ops: &[Op], at: usize) -> Option<(u32, u32)> {
    match ops.get(at..) {
        Some([Op::JumpIfFalse(t), ..]) => Some((thread(ops, *t), (at + 1) as u32)),
        Some([Op::And(1), Op::Jump(j), ..]) => match ops.get(*j as usize) {
            Some(Op::JumpIfFalse(t)) => Some((thread(ops, *t), *j + 1)),
            _ => None,
        },
        _ => None,
    }
}

/// Jump threading: a jump to `FALSE; JUMP_IF_FALSE t` goes to `t` directly.
fn thread(ops: &[Op], target: u32) -> u32 {
    match ops.get(target as usize..) {
        Some([Op::False, Op::JumpIfFalse(t), ..]) => *t,
        _ => target,
    }
}

fn fuse_at(ops: &[Op], i: usize) -> Option<Op> {
    // right, left, op [, SET_LOCAL d | a branch]
    if let Some([a, b, c, rest @ ..]) = ops.get(i..) {
        if let (Some(right), Some(left)) = (operand(a), operand(b)) {
            if let Some(op) = arith(c) {
                if let Some(then) = rest.first().and_then(arith) {
                    return Some(Op::Arith2 { op, left, right, then });
                }
                let dst = match rest.first() {
                    Some(Op::SetLocal(d)) => Some(*d),
                    _ => None,
                };
                return Some(Op::Arith { op, left, right, dst });
            }
            if let (Some(op), Some((target, next))) = (numeric_compare(c), branch_after(ops, i + 3)) {
                return Some(Op::CompareOperandsJump { op, left, right, target, next });
            }
        }
    }
    match ops.get(i..)? {
        [Op::GetLocal(obj), Op::GetLocal(index), Op::GetProperty | Op::GetPropertyNullish, rest @ ..] => {
            let dst = match rest.first() {
                Some(Op::SetLocal(d)) => Some(*d),
                _ => None,
            };
            Some(Op::GetLocalIndex { obj: *obj, index: *index, dst })
        }
        [Op::GetLocal(local), Op::Str(k), Op::GetProperty | Op::GetPropertyNullish, ..] => {
            Some(Op::GetLocalProperty { local: *local, key: crate::value::Value::Str(k.clone()) })
        }
        [Op::Str(k), Op::GetProperty | Op::GetPropertyNullish, ..] => {
            Some(Op::GetPropertyConst(crate::value::Value::Str(k.clone())))
        }
        [c, ..] if numeric_compare(c).is_some() => {
            let (target, next) = branch_after(ops, i + 1)?;
            Some(Op::CompareJump { op: numeric_compare(c)?, target, next })
        }
        [Op::GetLocal(from), Op::SetLocal(to), ..] => Some(Op::MoveLocal { from: *from, to: *to }),
        [Op::Pop, Op::Jump(t), ..] => Some(Op::PopJump(*t)),
        [a, Op::SetLocal(dst), ..] => arith(a).map(|op| Op::ArithSet { op, dst: *dst }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments_and_loop_conditions_fuse() {
        // i := i + 1 ; while (i < 10)
        let ops = vec![
            Op::Num(1.0),
            Op::GetLocal(0),
            Op::Plus,
            Op::SetLocal(0),
            Op::Num(10.0),
            Op::GetLocal(0),
            Op::Compare(Opcode::LT),
            Op::JumpIfFalse(0),
        ];
        let code = fuse(&ops);
        assert_eq!(code.len(), ops.len());
        assert!(matches!(
            code[0],
            Op::Arith { op: Arith::Plus, left: Operand::Local(0), right: Operand::Num(1.0), dst: Some(0) }
        ));
        assert!(matches!(code[4], Op::CompareOperandsJump { op: Opcode::LT, left: Operand::Local(0), next: 8, .. }));
        assert!(matches!(code[6], Op::CompareJump { op: Opcode::LT, target: 0, next: 8 }));
        // Positions inside a sequence keep their own (possibly fused) instruction.
        assert!(matches!(code[2], Op::ArithSet { op: Arith::Plus, dst: 0 }));
        assert!(matches!(ops[2], Op::Plus));
    }

    #[test]
    fn and_shapes_branch_directly() {
        // while (a < 1 and b < 2) { … }: cond1; JIF Lf; cond2; AND 1; JUMP 1; Lf: FALSE; JIF end
        let ops = vec![
            Op::Num(1.0),
            Op::GetLocal(0),
            Op::Compare(Opcode::LT),
            Op::JumpIfFalse(9),
            Op::Num(2.0),
            Op::GetLocal(1),
            Op::Compare(Opcode::LT),
            Op::And(1),
            Op::Jump(10),
            Op::False,
            Op::JumpIfFalse(20),
        ];
        let code = fuse(&ops);
        // The first condition jumps straight to the end when false.
        assert!(matches!(code[0], Op::CompareOperandsJump { target: 20, next: 4, .. }));
        // The second skips AND/JUMP/JUMP_IF_FALSE.
        assert!(matches!(code[4], Op::CompareOperandsJump { target: 20, next: 11, .. }));
    }

    #[test]
    fn property_reads_and_operand_arithmetic_fuse() {
        let key = crate::value::Text::from("a");
        let ops = vec![
            Op::GetLocal(0),
            Op::Str(key.clone()),
            Op::GetProperty,
            Op::Str(key.clone()),
            Op::GetPropertyNullish,
            Op::GetLocal(1),
            Op::GetLocal(2),
            Op::GetProperty,
            Op::SetLocal(3),
            Op::GetLocal(4),
            Op::GetLocal(4),
            Op::Multiply,
            Op::Plus,
            Op::Pop,
            Op::Jump(0),
        ];
        let code = fuse(&ops);
        assert!(matches!(code[0], Op::GetLocalProperty { local: 0, .. }));
        assert!(matches!(code[3], Op::GetPropertyConst(_)));
        assert!(matches!(code[5], Op::GetLocalIndex { obj: 1, index: 2, dst: Some(3) }));
        assert!(matches!(code[9], Op::Arith2 { op: Arith::Multiply, then: Arith::Plus, .. }));
        assert!(matches!(code[13], Op::PopJump(0)));
        for (i, op) in code.iter().enumerate() {
            assert!(i + op.covers() <= ops.len(), "{op:?} at {i} covers past the end");
        }
    }

    #[test]
    fn regex_comparisons_do_not_fuse() {
        let ops = vec![Op::Str("a".into()), Op::GetLocal(0), Op::Compare(Opcode::REGEX), Op::JumpIfFalse(0)];
        let code = fuse(&ops);
        assert!(matches!(code[2], Op::Compare(Opcode::REGEX)));
    }
}

#[cfg(test)]
mod rem_tests {
    use crate::bytecode::js_rem;

    #[test]
    fn remainder_matches_floating_point() {
        for a in [-7.0, -4.0, -0.0, 0.0, 3.0, 7.5, 1e300, -9e15, f64::NAN, f64::INFINITY] {
            for b in [-3.0, -2.0, 0.0, 2.0, 2.5, f64::NAN, f64::INFINITY] {
                let (x, y) = (js_rem(a, b), a % b);
                assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{a} % {b}: {x} vs {y}");
            }
        }
    }
}
