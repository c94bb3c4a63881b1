//! Encodings: base64 and URL components.

use super::NativeFunction;

/// The encoding family.
pub const FUNCTIONS: &[NativeFunction] = &[];
