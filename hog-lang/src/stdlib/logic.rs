//! Logic and comparisons as functions.

use super::NativeFunction;

/// The logic family.
pub const FUNCTIONS: &[NativeFunction] = &[];
