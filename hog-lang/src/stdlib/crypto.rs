//! Hashes, HMAC chains and UUIDs.

use super::NativeFunction;

/// The crypto family.
pub const FUNCTIONS: &[NativeFunction] = &[];
