//! Standard-library functions written in Hog, as PostHog writes them, compiled by this crate's
//! compiler on first use (once per thread).

use crate::bytecode::{decode, Chunk};
use crate::compiler::{compile_function_body, CompileOptions};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A function written in Hog.
pub struct HogFunction {
    /// Name.
    pub name: &'static str,
    /// Parameter names.
    pub params: &'static [&'static str],
    /// Signature for listings.
    pub signature: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Examples: a Hog expression and the `repr` of its value (see `NativeFunction::examples`).
    pub examples: &'static [(&'static str, &'static str)],
    /// The body.
    pub source: &'static str,
}

/// Every Hog-written function.
pub const FUNCTIONS: &[HogFunction] = &[
    HogFunction {
        name: "arrayMap",
        params: &["func", "arr"],
        signature: "arrayMap(func: (x) -> y, arr: array) -> array",
        description: "A new array of func(x) for each item",
        examples: &[],
        source: "let result := []
            for (let x in arr) { result := arrayPushBack(result, func(x)) }
            return result",
    },
    HogFunction {
        name: "arrayFilter",
        params: &["func", "arr"],
        signature: "arrayFilter(func: (x) -> boolean, arr: array) -> array",
        description: "The items for which func(x) is truthy",
        examples: &[],
        source: "let result := []
            for (let x in arr) { if (func(x)) { result := arrayPushBack(result, x) } }
            return result",
    },
    HogFunction {
        name: "arrayExists",
        params: &["func", "arr"],
        signature: "arrayExists(func: (x) -> boolean, arr: array) -> boolean",
        description: "Whether func(x) is truthy for some item",
        examples: &[],
        source: "for (let x in arr) { if (func(x)) { return true } }
            return false",
    },
    HogFunction {
        name: "arrayCount",
        params: &["func", "arr"],
        signature: "arrayCount(func: (x) -> boolean, arr: array) -> integer",
        description: "How many items func(x) is truthy for",
        examples: &[],
        source: "let count := 0
            for (let x in arr) { if (func(x)) { count := count + 1 } }
            return count",
    },
    HogFunction {
        name: "arrayReduce",
        params: &["func", "arr", "initial"],
        signature: "arrayReduce(func: (acc, x) -> acc, arr: array, initial) -> any",
        description: "Folds the array from the left, starting from initial",
        examples: &[],
        source: "let result := initial
            for (let x in arr) { result := func(result, x) }
            return result",
    },
];

thread_local! {
    static CHUNKS: RefCell<HashMap<&'static str, (usize, Rc<Chunk>)>> = RefCell::new(HashMap::new());
}

/// The compiled chunk of a Hog-written function.
pub fn chunk(name: &str) -> Option<(usize, Rc<Chunk>)> {
    let f = FUNCTIONS.iter().find(|f| f.name == name)?;
    CHUNKS.with(|c| {
        if let Some(hit) = c.borrow().get(f.name) {
            return Some(hit.clone());
        }
        let code = compile_function_body(f.params, f.source, &CompileOptions::any_globals())
            .unwrap_or_else(|d| panic!("built-in {} does not compile: {d}", f.name));
        let chunk = decode(&format!("stl/{}", f.name), 1, &code.items, Some(&code.spans), Some(Rc::from(f.source)))
            .unwrap_or_else(|e| panic!("built-in {} does not decode: {e}", f.name));
        let entry = (f.params.len(), Rc::new(chunk));
        c.borrow_mut().insert(f.name, entry.clone());
        Some(entry)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_compile() {
        for f in super::FUNCTIONS {
            assert!(super::chunk(f.name).is_some(), "{}", f.name);
        }
    }
}
