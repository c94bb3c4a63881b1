//! Memory accounting for the sandbox's memory limit.
//!
//! The VM counts the bytes of values it creates (`cost`, cheap and shallow) and, when that count
//! passes a threshold, measures what is actually live (`live_bytes`: everything reachable from the
//! stack and upvalues, each shared string or container counted once). Only the measurement decides
//! whether the limit is exceeded, so garbage never counts against a program, and the measurement
//! runs rarely (after as many new bytes as the headroom left under the limit).
//!
//! Sizes are estimates of what the values hold, not allocator-exact: a string is its length plus a
//! header, a container its slots.

use crate::value::Value;
use std::collections::HashSet;
use std::rc::Rc;

/// One value slot.
pub const SLOT: usize = std::mem::size_of::<Value>();
/// An array or tuple without items.
pub const ARRAY_BASE: usize = 48;
/// A dict without entries.
pub const DICT_BASE: usize = 64;
/// One dict entry (key, value, index).
pub const DICT_ENTRY: usize = 2 * SLOT + 16;
/// A string without its bytes.
pub const STRING_BASE: usize = 16;

/// The bytes a value just created holds: strings by length, containers by their slots and the
/// strings directly in them. (Nested containers were counted when they were created.)
#[inline]
pub fn cost(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => SLOT,
        Value::Str(s) => STRING_BASE + s.len(),
        Value::Array(a) | Value::Tuple(a) => {
            let a = a.borrow();
            ARRAY_BASE + a.len() * SLOT + a.iter().map(direct_string).sum::<usize>()
        }
        Value::Dict(d) => {
            let d = d.borrow();
            DICT_BASE
                + d.len() * DICT_ENTRY
                + d.iter().map(|(k, v)| k.as_ref_str().map_or(0, str::len) + direct_string(v)).sum::<usize>()
        }
        _ => SLOT,
    }
}

fn direct_string(v: &Value) -> usize {
    match v {
        Value::Str(s) => STRING_BASE + s.len(),
        _ => 0,
    }
}

/// Bytes of everything reachable from `roots`, each shared value counted once; stops counting
/// once past `cap` (the caller only needs to know that the limit is exceeded). Iterative, so deep
/// nesting cannot overflow the stack.
pub fn live_bytes<'a>(roots: impl Iterator<Item = &'a Value>, cap: usize) -> usize {
    let mut seen: HashSet<*const ()> = HashSet::new();
    let mut todo: Vec<Value> = Vec::new();
    let mut total = 0usize;
    let mut visit = |v: &Value, todo: &mut Vec<Value>, total: &mut usize| match v {
        Value::Str(s) => {
            if seen.insert(s.as_ptr()) {
                *total += STRING_BASE + s.len();
            }
        }
        Value::Array(a) | Value::Tuple(a) => {
            if seen.insert(Rc::as_ptr(a) as *const ()) {
                todo.push(v.clone());
            }
        }
        Value::Dict(d) => {
            if seen.insert(Rc::as_ptr(d) as *const ()) {
                todo.push(v.clone());
            }
        }
        Value::Error(e) => {
            if seen.insert(Rc::as_ptr(e) as *const ()) {
                *total += 2 * STRING_BASE + e.message.len() + e.kind.len();
                todo.push(e.payload.clone());
            }
        }
        _ => *total += SLOT,
    };
    for r in roots {
        visit(r, &mut todo, &mut total);
    }
    while let Some(v) = todo.pop() {
        if total > cap {
            break;
        }
        match &v {
            Value::Array(a) | Value::Tuple(a) => {
                let a = a.borrow();
                total += ARRAY_BASE + a.len() * SLOT;
                for item in a.iter() {
                    visit(item, &mut todo, &mut total);
                }
            }
            Value::Dict(d) => {
                let d = d.borrow();
                total += DICT_BASE + d.len() * DICT_ENTRY;
                for (k, item) in d.iter() {
                    total += k.as_ref_str().map_or(0, str::len);
                    visit(item, &mut todo, &mut total);
                }
            }
            other => visit(other, &mut todo, &mut total),
        }
    }
    total
}

/// `64 MB`, `512 KB`, `100 bytes`.
pub fn format_bytes(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_values_count_once_and_cycles_end() {
        let s = Value::from("x".repeat(1000));
        let a = Value::array(vec![s.clone(), s.clone()]);
        let one = live_bytes([&a].into_iter(), usize::MAX);
        let both = live_bytes([&a, &a, &s].into_iter(), usize::MAX);
        assert_eq!(one, both);
        assert!((1000..1200).contains(&one), "{one}");
        // An array inside itself.
        if let Value::Array(cell) = &a {
            cell.borrow_mut().push(a.clone());
        }
        assert!(live_bytes([&a].into_iter(), usize::MAX) < 1300);
    }

    #[test]
    fn deep_nesting_is_measured_and_dropped_without_recursion() {
        let mut v = Value::array(vec![]);
        for _ in 0..1_000_000 {
            v = Value::array(vec![v]);
        }
        assert!(live_bytes([&v].into_iter(), usize::MAX) > 1_000_000 * ARRAY_BASE);
        drop(v);
    }
}
