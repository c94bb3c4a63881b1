//! Standard-library functions written in Hog, as PostHog writes them, compiled by this crate's
//! compiler on first use (once per thread): `arrayMap`, `arrayFilter`, `arrayExists`,
//! `arrayCount`, `arrayReduce`, `sortableSemver`, `inCohort`, `notInCohort`.
//!
//! They loop with `for (let x in arr)`, which iterates `values(arr)`: a dict's values, and nothing
//! for null or a string (so `arrayMap(f, null)` is `[]`, `arrayExists(f, null)` false,
//! `arrayCount(f, null)` 0 and `arrayReduce(f, null, init)` is `init`).

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
        examples: &[("arrayMap(x -> x * 2, [1, 2, 3])", "[2, 4, 6]"), ("arrayMap(x -> upper(x), ('a', 'b'))", "['A', 'B']"), ("arrayMap(x -> x, null)", "[]"), ("arrayMap(null, [1])", "error: not a function")],
        source: "let result := []
            for (let x in arr) { result := arrayPushBack(result, func(x)) }
            return result",
    },
    HogFunction {
        name: "arrayFilter",
        params: &["func", "arr"],
        signature: "arrayFilter(func: (x) -> boolean, arr: array) -> array",
        description: "The items for which func(x) is truthy",
        examples: &[("arrayFilter(x -> x > 1, [1, 2, 3])", "[2, 3]"), ("arrayFilter(x -> x, [0, '', null, 'a'])", "['a']"), ("arrayFilter(x -> true, null)", "[]")],
        source: "let result := []
            for (let x in arr) { if (func(x)) { result := arrayPushBack(result, x) } }
            return result",
    },
    HogFunction {
        name: "arrayExists",
        params: &["func", "arr"],
        signature: "arrayExists(func: (x) -> boolean, arr: array) -> boolean",
        description: "Whether func(x) is truthy for some item",
        examples: &[("arrayExists(x -> x = 2, [1, 2])", "true"), ("arrayExists(x -> x > 5, [1, 2])", "false"), ("arrayExists(x -> true, null)", "false")],
        source: "for (let x in arr) { if (func(x)) { return true } }
            return false",
    },
    HogFunction {
        name: "arrayCount",
        params: &["func", "arr"],
        signature: "arrayCount(func: (x) -> boolean, arr: array) -> integer",
        description: "How many items func(x) is truthy for",
        examples: &[("arrayCount(x -> x > 1, [1, 2, 3])", "2"), ("arrayCount(x -> true, [])", "0"), ("arrayCount(x -> true, null)", "0")],
        source: "let count := 0
            for (let x in arr) { if (func(x)) { count := count + 1 } }
            return count",
    },
    HogFunction {
        name: "arrayReduce",
        params: &["func", "arr", "initial"],
        signature: "arrayReduce(func: (acc, x) -> acc, arr: array, initial) -> any",
        description: "Folds the array from the left, starting from initial",
        examples: &[("arrayReduce((acc, x) -> acc + x, [1, 2, 3], 10)", "16"), ("arrayReduce((acc, x) -> concat(acc, x), ['b', 'c'], 'a')", "'abc'"), ("arrayReduce((acc, x) -> acc + x, null, 5)", "5")],
        source: "let result := initial
            for (let x in arr) { result := func(result, x) }
            return result",
    },
    HogFunction {
        name: "sortableSemver",
        params: &["version"],
        signature: "sortableSemver(version: string) -> array",
        description: "The first dotted number in the text (`v1.10.2-beta` gives [1, 10, 2]), as integers, for comparing versions; [] when there is none",
        examples: &[
            ("sortableSemver('v1.10.2-beta')", "[1, 10, 2]"),
            ("sortableSemver('1.2') < sortableSemver('1.10')", "true"),
            ("sortableSemver('no version')", "[]"),
            ("sortableSemver(null)", "[]"),
        ],
        source: "if (version = null) { return [] }
            let dotted := extractRegex(version, '(\\\\d+(\\\\.\\\\d+)+)')
            if (empty(dotted)) { return [] }
            return arrayMap(part -> toInt(part) ?? 0, splitByString('.', dotted))",
    },
    HogFunction {
        name: "inCohort",
        params: &["cohort_id", "cohort_ids"],
        signature: "inCohort(cohort_id, cohort_ids: array) -> boolean",
        description: "Whether cohort_id is among the person's cohort ids (fails when they were not loaded)",
        examples: &[("inCohort(2, [1, 2])", "true"), ("inCohort(3, [1, 2])", "false"), ("inCohort(1, null)", "error: requires cohort membership")],
        source: "if (cohort_ids = null) {
                throw Error('inCohort() requires cohort membership to be loaded for this evaluation')
            }
            for (let id in cohort_ids) { if (id = cohort_id) { return true } }
            return false",
    },
    HogFunction {
        name: "notInCohort",
        params: &["cohort_id", "cohort_ids"],
        signature: "notInCohort(cohort_id, cohort_ids: array) -> boolean",
        description: "Whether cohort_id is not among the person's cohort ids (fails when they were not loaded)",
        examples: &[("notInCohort(3, [1, 2])", "true"), ("notInCohort(1, [1, 2])", "false"), ("notInCohort(1, null)", "error: requires cohort membership")],
        source: "if (cohort_ids = null) {
                throw Error('notInCohort() requires cohort membership to be loaded for this evaluation')
            }
            for (let id in cohort_ids) { if (id = cohort_id) { return false } }
            return true",
    },
];

thread_local! {
    static CHUNKS: RefCell<HashMap<&'static str, (usize, Rc<Chunk>)>> = RefCell::new(HashMap::new());
}

/// The compiled chunk of a Hog-written function (`None` if there is none of this name, or if it
/// does not compile against this build's standard library, which `tests::all_compile` catches).
pub fn chunk(name: &str) -> Option<(usize, Rc<Chunk>)> {
    let f = FUNCTIONS.iter().find(|f| f.name == name)?;
    CHUNKS.with(|c| {
        if let Some(hit) = c.borrow().get(f.name) {
            return Some(hit.clone());
        }
        let entry = (f.params.len(), Rc::new(compile(f).ok()?));
        c.borrow_mut().insert(f.name, entry.clone());
        Some(entry)
    })
}

fn compile(f: &HogFunction) -> Result<Chunk, String> {
    let code = compile_function_body(f.params, f.source, &CompileOptions::any_globals())
        .map_err(|d| format!("built-in {} does not compile: {d}", f.name))?;
    decode(&format!("stl/{}", f.name), 1, &code.items, Some(&code.spans), Some(Rc::from(f.source)))
        .map_err(|e| format!("built-in {} does not decode: {e}", f.name))
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_compile() {
        for f in super::FUNCTIONS {
            if let Err(e) = super::compile(f) {
                panic!("{e}");
            }
        }
    }
}
