//! `Text`: Hog's immutable, shared string, one pointer wide (so a `Value` is 16 bytes) and one
//! allocation (a reference count and the length, then the bytes), where `Rc<String>` takes two.
//!
//! Strings are created constantly (`concat`, f-strings, `lower`, JSON keys), so halving their
//! allocations shows on every string-heavy program. The unsafe code is this file: the layout is
//! fixed by `layout`, the bytes are copied from a `&str` (valid UTF-8) and never change, and the
//! allocation is freed when the last clone is dropped.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;

#[repr(C)]
struct Header {
    count: Cell<usize>,
    len: usize,
}

/// An immutable shared string; derefs to `str`. Not `Send`: the count is not atomic.
pub struct Text(NonNull<Header>);

const HEADER: usize = std::mem::size_of::<Header>();

fn layout(len: usize) -> Layout {
    match Layout::from_size_align(HEADER + len, std::mem::align_of::<Header>()) {
        Ok(l) if len <= isize::MAX as usize - HEADER => l,
        _ => panic!("string of {len} bytes is too large"),
    }
}

impl Text {
    /// The address of the shared text (identity, for memory accounting).
    pub fn as_ptr(&self) -> *const () {
        self.0.as_ptr() as *const ()
    }

    fn new(s: &str) -> Text {
        let layout = layout(s.len());
        // SAFETY: the layout is non-zero sized (it holds the header); the header is written
        // before use, then `len` bytes are copied right after it, inside the allocation.
        unsafe {
            let p = alloc(layout) as *mut Header;
            let Some(p) = NonNull::new(p) else { handle_alloc_error(layout) };
            p.as_ptr().write(Header { count: Cell::new(1), len: s.len() });
            std::ptr::copy_nonoverlapping(s.as_ptr(), (p.as_ptr() as *mut u8).add(HEADER), s.len());
            Text(p)
        }
    }

    /// `s` with its ASCII letters in upper case (`upper`) or lower case, copied once into its
    /// allocation and changed there. Other bytes are kept, so the text stays valid UTF-8.
    pub fn ascii_case(s: &str, upper: bool) -> Text {
        let t = Text::new(s);
        // SAFETY: `t` is not shared yet (count 1), so no other reference sees the bytes change;
        // changing the case of ASCII letters keeps UTF-8 valid (other bytes are untouched).
        unsafe {
            let p = t.0.as_ptr() as *mut u8;
            let bytes = std::slice::from_raw_parts_mut(p.add(HEADER), s.len());
            if upper {
                bytes.make_ascii_uppercase();
            } else {
                bytes.make_ascii_lowercase();
            }
        }
        t
    }

    /// Builds a text in a reused scratch buffer, then copies it into its one allocation (so a
    /// string built piece by piece costs one allocation, not a growing `String` and a copy).
    pub fn build<E>(f: impl FnOnce(&mut String) -> Result<(), E>) -> Result<Text, E> {
        thread_local! {
            static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
        }
        // Taken, not borrowed: a nested `build` simply starts from an empty buffer.
        let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        buf.clear();
        let r = f(&mut buf).map(|()| Text::new(&buf));
        if buf.capacity() <= 1 << 16 {
            SCRATCH.with(|s| *s.borrow_mut() = buf);
        }
        r
    }
}

impl Clone for Text {
    #[inline]
    fn clone(&self) -> Self {
        // SAFETY: the header lives as long as any clone.
        let count = unsafe { &self.0.as_ref().count };
        let n = count.get().wrapping_add(1);
        if n == 0 {
            std::process::abort();
        }
        count.set(n);
        Text(self.0)
    }
}

impl Drop for Text {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this clone keeps the header alive.
        let count = unsafe { &self.0.as_ref().count };
        let n = count.get() - 1;
        count.set(n);
        if n == 0 {
            self.free();
        }
    }
}

impl Text {
    /// Frees the allocation once the last clone goes (out of line, like `Rc::drop_slow`).
    #[inline(never)]
    fn free(&mut self) {
        // SAFETY: the count reached zero, so no other clone exists; the allocation is freed
        // with the layout it was made with.
        unsafe {
            let len = self.0.as_ref().len;
            dealloc(self.0.as_ptr() as *mut u8, layout(len));
        }
    }
}

impl std::ops::Deref for Text {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        // SAFETY: `len` bytes of valid UTF-8 follow the header and never change.
        unsafe {
            let p = self.0.as_ptr();
            let bytes = std::slice::from_raw_parts((p as *const u8).add(HEADER), (*p).len);
            std::str::from_utf8_unchecked(bytes)
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::new("")
    }
}

impl PartialEq for Text {
    #[inline]
    fn eq(&self, other: &Text) -> bool {
        self.0 == other.0 || **self == **other
    }
}

impl Eq for Text {}

impl PartialOrd for Text {
    fn partial_cmp(&self, other: &Text) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Text {
    fn cmp(&self, other: &Text) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl std::hash::Hash for Text {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        self
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        self
    }
}

/// Slots of each thread's cache of short texts (see [`Text::interned`]).
const INTERNED_SLOTS: usize = 1024;
/// Longest text [`Text::interned`] caches.
const INTERNED_MAX_LEN: usize = 40;

thread_local! {
    /// Dict keys and program constants.
    static INTERNED: RefCell<Vec<Option<Text>>> = const { RefCell::new(Vec::new()) };
}

#[inline(always)]
fn load8(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"))
}

#[inline(always)]
fn load4(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes(b[at..at + 4].try_into().expect("four bytes")))
}

/// The first and last bytes of a short byte string as two words (overlapping when it is shorter
/// than sixteen bytes; for fewer than four, the first, middle and last byte): with the length,
/// they tell two strings of up to sixteen bytes apart, without a call to `memcmp` or `memcpy`.
#[inline(always)]
fn ends(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    if n >= 8 {
        (load8(b, 0), load8(b, n - 8))
    } else if n >= 4 {
        (load4(b, 0), load4(b, n - 4))
    } else if n > 0 {
        (u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16, 0)
    } else {
        (0, 0)
    }
}

/// Whether two byte strings are equal; short ones (the usual dict key or property value) are
/// compared a word at a time, inline.
#[inline(always)]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && if a.len() <= 16 { ends(a) == ends(b) } else { a == b }
}

/// A quick hash of a short byte string (its first and last eight bytes and its length, mixed by
/// multiplication): enough to spread keys over the cache's slots, where a collision only costs an
/// allocation.
#[inline]
fn short_hash(b: &[u8]) -> u64 {
    let (head, tail) = ends(b);
    let h = (head ^ 0x9e37_79b9_7f4a_7c15).wrapping_mul(0xbf58_476d_1ce4_e5b9) ^ tail.rotate_left(29);
    (h ^ b.len() as u64).wrapping_mul(0x94d0_49bb_1331_11eb)
}

impl Text {
    /// The text, shared with earlier calls for the same short text on this thread when it is
    /// still in a small direct-mapped cache: for dict keys read from JSON (an event's property
    /// names repeat from event to event), where a cache hit costs less than an allocation and
    /// makes later key comparisons pointer comparisons. Longer texts are simply allocated.
    ///
    /// String values are not cached: measured on the pipeline benchmark, the lookups cost more
    /// instructions than the allocations they save (values repeat less than keys).
    pub fn interned(s: &str) -> Text {
        if s.len() > INTERNED_MAX_LEN {
            return Text::new(s);
        }
        let slot = (short_hash(s.as_bytes()) >> 32) as usize % INTERNED_SLOTS;
        INTERNED.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.is_empty() {
                cache.resize(INTERNED_SLOTS, None);
            }
            match &cache[slot] {
                Some(t) if same_bytes(t.as_bytes(), s.as_bytes()) => t.clone(),
                _ => {
                    let t = Text::new(s);
                    cache[slot] = Some(t.clone());
                    t
                }
            }
        })
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text::new(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text::new(&s)
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Self {
        Text::new(s)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self)
    }
}

impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_compares_and_frees() {
        let a = Text::from("héllo");
        let b = a.clone();
        assert_eq!(&*b, "héllo");
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert_eq!(a, Text::from(String::from("héllo")));
        assert!(Text::from("a") < Text::from("b"));
        drop(a);
        assert_eq!(b.len(), 6);
        assert_eq!(&*Text::default(), "");
        let built = Text::build(|s| {
            s.push('x');
            let inner = Text::build(|t| {
                t.push('y');
                Ok::<(), ()>(())
            })?;
            s.push_str(&inner);
            Ok::<(), ()>(())
        });
        assert_eq!(built.as_deref(), Ok("xy"));
        assert_eq!(std::mem::size_of::<Text>(), 8);
    }

    #[test]
    fn short_comparisons_are_exact() {
        let texts = ["", "a", "ab", "abc", "abd", "abcd", "abce", "abcdefg", "abcdefgh", "abcdefgi", "bbcdefgh"];
        let long = ["abcdefghijklmnop", "abcdefghijklmnoq", "bbcdefghijklmnop", "abcdefghXjklmnop"];
        let longer = ["abcdefghijklmnopq", "abcdefghijklmnopr", "abcdefghXjklmnopq"];
        for set in [&texts[..], &long[..], &longer[..]] {
            for a in set {
                for b in set {
                    assert_eq!(same_bytes(a.as_bytes(), b.as_bytes()), a == b, "{a} {b}");
                }
            }
        }
        // Every single-byte difference in strings of every length up to 40 is seen.
        for n in 1..40 {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_bytes(&a, &b), "length {n}, byte {at}");
                assert!(same_bytes(&a, &a.clone()));
            }
        }
    }

    #[test]
    fn interned_texts_are_shared_and_always_right() {
        let a = Text::interned("$current_url");
        let b = Text::interned("$current_url");
        assert_eq!(a.as_ptr(), b.as_ptr(), "a cache hit shares the text");
        // Far more distinct texts than slots: collisions replace slots, values stay right.
        let texts: Vec<String> = (0..5 * INTERNED_SLOTS).map(|i| format!("key{i}")).collect();
        for _ in 0..2 {
            for t in &texts {
                assert_eq!(&*Text::interned(t), t.as_str());
            }
        }
        let long = "x".repeat(INTERNED_MAX_LEN + 1);
        assert_ne!(Text::interned(&long).as_ptr(), Text::interned(&long).as_ptr(), "long texts are not cached");
        assert_eq!(&*Text::interned(""), "");
    }
}
