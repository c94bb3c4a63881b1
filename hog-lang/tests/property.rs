//! Property test: random well-formed expressions give the same value through the parser, compiler
//! and VM as through a direct evaluation of the expression tree.

use hog_lang::bytecode::Opcode;
use hog_lang::value::Value;
use hog_lang::vm::{equals, get_property, order};
use hog_lang::{run_source, CompileOptions};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum E {
    Int(i64),
    Float(f64),
    Str(&'static str),
    Bool(bool),
    Null,
    Arith(&'static str, Box<E>, Box<E>),
    Cmp(&'static str, Box<E>, Box<E>),
    And(Box<E>, Box<E>),
    Or(Box<E>, Box<E>),
    Not(Box<E>),
    If(Box<E>, Box<E>, Box<E>),
    Nullish(Box<E>, Box<E>),
    Concat(Box<E>, Box<E>),
    Array(Vec<E>),
    Index(Box<E>, i64),
    Neg(Box<E>),
}

fn leaf() -> impl Strategy<Value = E> {
    prop_oneof![
        (-20i64..20).prop_map(E::Int),
        prop::sample::select(vec![0.5, -1.25, 2.75, 0.1, 100.0]).prop_map(E::Float),
        prop::sample::select(vec!["", "a", "abc", "12", "true", " 3 "]).prop_map(E::Str),
        any::<bool>().prop_map(E::Bool),
        Just(E::Null),
    ]
}

fn expr() -> impl Strategy<Value = E> {
    leaf().prop_recursive(4, 40, 3, |inner| {
        prop_oneof![
            (prop::sample::select(vec!["+", "-", "*", "/", "%"]), inner.clone(), inner.clone())
                .prop_map(|(op, a, b)| E::Arith(op, Box::new(a), Box::new(b))),
            (prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]), inner.clone(), inner.clone())
                .prop_map(|(op, a, b)| E::Cmp(op, Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| E::And(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| E::Or(Box::new(a), Box::new(b))),
            inner.clone().prop_map(|a| E::Not(Box::new(a))),
            inner.clone().prop_map(|a| E::Neg(Box::new(a))),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(c, a, b)| E::If(
                Box::new(c),
                Box::new(a),
                Box::new(b)
            )),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| E::Nullish(Box::new(a), Box::new(b))),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| E::Concat(Box::new(a), Box::new(b))),
            prop::collection::vec(inner.clone(), 0..4).prop_map(E::Array),
            (prop::collection::vec(inner, 1..4), prop::sample::select(vec![1i64, 2, -1, 5]))
                .prop_map(|(items, i)| E::Index(Box::new(E::Array(items)), i)),
        ]
    })
}

fn render(e: &E) -> String {
    match e {
        E::Int(i) => format!("({i})"),
        E::Float(f) => format!("({f:?})"),
        E::Str(s) => format!("'{s}'"),
        E::Bool(b) => b.to_string(),
        E::Null => "null".into(),
        E::Arith(op, a, b) | E::Cmp(op, a, b) => format!("({} {op} {})", render(a), render(b)),
        E::And(a, b) => format!("({} and {})", render(a), render(b)),
        E::Or(a, b) => format!("({} or {})", render(a), render(b)),
        E::Not(a) => format!("(not {})", render(a)),
        E::Neg(a) => format!("(-{})", render(a)),
        E::If(c, a, b) => format!("({} ? {} : {})", render(c), render(a), render(b)),
        E::Nullish(a, b) => format!("({} ?? {})", render(a), render(b)),
        E::Concat(a, b) => format!("({} || {})", render(a), render(b)),
        E::Array(items) => format!("[{}]", items.iter().map(render).collect::<Vec<_>>().join(", ")),
        E::Index(a, i) => format!("{}[{i}]", render(a)),
    }
}

fn eval(e: &E) -> Value {
    match e {
        E::Int(i) => Value::Number(*i as f64),
        E::Float(f) => Value::Number(*f),
        E::Str(s) => Value::from(*s),
        E::Bool(b) => Value::Bool(*b),
        E::Null => Value::Null,
        E::Arith(op, a, b) => {
            let (x, y) = (eval(a).to_number(), eval(b).to_number());
            Value::Number(match *op {
                "+" => x + y,
                "-" => x - y,
                "*" => x * y,
                "/" => x / y,
                _ => x % y,
            })
        }
        E::Cmp(op, a, b) => {
            let (x, y) = (eval(a), eval(b));
            Value::Bool(match *op {
                "=" => equals(&x, &y),
                "!=" => !equals(&x, &y),
                "<" => order(Opcode::LT, &x, &y),
                "<=" => order(Opcode::LT_EQ, &x, &y),
                ">" => order(Opcode::GT, &x, &y),
                _ => order(Opcode::GT_EQ, &x, &y),
            })
        }
        E::And(a, b) => Value::Bool(eval(a).truthy() && eval(b).truthy()),
        E::Or(a, b) => Value::Bool(eval(a).truthy() || eval(b).truthy()),
        E::Not(a) => Value::Bool(!eval(a).truthy()),
        E::Neg(a) => Value::Number(0.0 - eval(a).to_number()),
        E::If(c, a, b) => {
            if eval(c).truthy() {
                eval(a)
            } else {
                eval(b)
            }
        }
        E::Nullish(a, b) => {
            let v = eval(a);
            if v.is_null() {
                eval(b)
            } else {
                v
            }
        }
        E::Concat(a, b) => {
            let s = |v: Value| if v.is_null() { String::new() } else { v.to_print_string() };
            Value::from(s(eval(a)) + &s(eval(b)))
        }
        E::Array(items) => Value::array(items.iter().map(eval).collect()),
        E::Index(a, i) => get_property(&eval(a), &Value::Number(*i as f64)).expect("valid index"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_equals_evaluated(e in expr()) {
        let source = format!("return {}", render(&e));
        let out = run_source(&source, &CompileOptions::default())
            .map_err(|err| TestCaseError::fail(format!("{source}: {err}")))?;
        prop_assert_eq!(out.result.repr(), eval(&e).repr(), "{}", source);
    }
}
