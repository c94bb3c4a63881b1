//! Dates, times, time zones and intervals.

use super::NativeFunction;

/// The dates family.
pub const FUNCTIONS: &[NativeFunction] = &[];
