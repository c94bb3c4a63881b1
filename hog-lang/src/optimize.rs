//! Instruction fusion: common sequences of HogVM instructions become one instruction with a fast
//! path for numbers (`a * b`, `i := i + 1`, `if (n < 2)`), so hot loops dispatch fewer times.
//!
//! Fusion never changes indexes: the fused instruction replaces only the first instruction of its
//! sequence in `Chunk::code`, and the originals stay in `Chunk::ops`. A jump into the middle of a
//! sequence therefore runs the original instructions, and when the operands are not numbers the
//! VM runs the original first instruction instead of the fused one (a "deopt"), so semantics are
//! exactly the unfused ones.

use crate::bytecode::{Arith, Op, Opcode, Operand};

/// `ops` with each position replaced by the longest fused instruction starting there.
pub fn fuse(ops: &[Op]) -> Vec<Op> {
    if std::env::var_os("HOG_NOFUSE").is_some() {
        return ops.to_vec();
    }
    (0..ops.len()).map(|i| fuse_at(&ops[i..]).unwrap_or_else(|| ops[i].clone())).collect()
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

fn fuse_at(ops: &[Op]) -> Option<Op> {
    // right, left, op [, SET_LOCAL d | JUMP_IF_FALSE t]
    if let [a, b, c, rest @ ..] = ops {
        if let (Some(right), Some(left)) = (operand(a), operand(b)) {
            if let Some(op) = arith(c) {
                let dst = match rest.first() {
                    Some(Op::SetLocal(d)) => Some(*d),
                    _ => None,
                };
                return Some(Op::Arith { op, left, right, dst });
            }
            if let (Some(op), Some(Op::JumpIfFalse(target))) = (numeric_compare(c), rest.first()) {
                return Some(Op::CompareOperandsJump { op, left, right, target: *target });
            }
        }
    }
    match ops {
        [c, Op::JumpIfFalse(target), ..] => numeric_compare(c).map(|op| Op::CompareJump { op, target: *target }),
        [Op::GetLocal(from), Op::SetLocal(to), ..] => Some(Op::MoveLocal { from: *from, to: *to }),
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
        assert!(matches!(code[4], Op::CompareOperandsJump { op: Opcode::LT, left: Operand::Local(0), .. }));
        assert!(matches!(code[6], Op::CompareJump { op: Opcode::LT, target: 0 }));
        // Positions inside a sequence keep their own (possibly fused) instruction.
        assert!(matches!(code[2], Op::Plus));
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
