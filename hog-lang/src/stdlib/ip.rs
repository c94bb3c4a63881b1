//! IP address ranges.

use super::NativeFunction;

/// The ip family.
pub const FUNCTIONS: &[NativeFunction] = &[];
