//! The global allocator: mimalloc, called the way its fast paths expect.
//!
//! The `mimalloc` crate routes every allocation through `mi_malloc_aligned`. For sizes that are
//! not powers of two, that path stops reusing freed blocks of a size class once the class's page
//! is exhausted and over-allocates instead (measured: 220 000 of 381 000 allocations of the `churn`
//! Hog benchmark, about 9 % of its instructions). Allocations whose alignment mimalloc gives
//! anyway (≤ 8 bytes: every size class is a multiple of the word size) go to plain `mi_malloc`.

use std::alloc::{GlobalAlloc, Layout};

use libmimalloc_sys as mi;

/// Alignment every mimalloc block has whatever its size class.
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc with `mi_malloc` for word-aligned layouts.
pub struct Allocator;

// SAFETY: every pointer returned comes from mimalloc with at least `layout.align()` alignment and
// `layout.size()` bytes; frees and reallocs go back to mimalloc, which accepts pointers from any of
// its allocation functions.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain calls into mimalloc with valid sizes and alignments.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()) as *mut u8
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()) as *mut u8
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from mimalloc.
        unsafe { mi::mi_free(ptr as *mut std::ffi::c_void) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from mimalloc with `layout`; the new block keeps the alignment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_realloc(ptr as *mut std::ffi::c_void, new_size) as *mut u8
            } else {
                mi::mi_realloc_aligned(ptr as *mut std::ffi::c_void, new_size, layout.align()) as *mut u8
            }
        }
    }
}
