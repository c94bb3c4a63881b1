//! Numbers: arithmetic functions, rounding, conversion, random.

use super::NativeFunction;

/// The math family.
pub const FUNCTIONS: &[NativeFunction] = &[];
