//! JSON: parsing, printing and ClickHouse-style JSONExtract*.

use super::NativeFunction;

/// The json family.
pub const FUNCTIONS: &[NativeFunction] = &[];
