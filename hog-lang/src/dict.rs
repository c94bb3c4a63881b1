//! The map behind Hog dicts: insertion-ordered like JavaScript's `Map`, and small-first.
//!
//! Most dicts a program builds hold a handful of keys (`{'id': i, 'name': n}`, an event's
//! properties). Up to `SMALL_MAX` entries a dict is one vector of pairs searched linearly, which
//! is one allocation and a few comparisons per lookup; past that it becomes an `IndexMap`
//! (hashed, still insertion-ordered). Which one a dict is never shows: both keep the order of
//! first insertion and replace values in place.

use crate::value::{FxHasher, Key, KeyRef, Value};
use indexmap::IndexMap;

/// Entries kept in the linear representation.
pub const SMALL_MAX: usize = 16;

type Large = IndexMap<Key, Value, std::hash::BuildHasherDefault<FxHasher>>;

/// An insertion-ordered map from `Key` to `Value`.
#[derive(Debug, Clone)]
pub enum Dict {
    /// Up to `SMALL_MAX` entries, searched linearly.
    Small(Vec<(Key, Value)>),
    /// More entries, hashed.
    Large(Large),
}

impl Default for Dict {
    fn default() -> Self {
        Dict::Small(Vec::new())
    }
}

impl Dict {
    /// An empty dict with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        if n <= SMALL_MAX {
            Dict::Small(Vec::with_capacity(n))
        } else {
            Dict::Large(Large::with_capacity_and_hasher(n, Default::default()))
        }
    }

    /// Number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Dict::Small(v) => v.len(),
            Dict::Large(m) => m.len(),
        }
    }

    /// Whether there are no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of a key.
    #[inline]
    pub fn get<'k>(&self, key: impl Into<KeyRef<'k>>) -> Option<&Value> {
        let key = key.into();
        match self {
            Dict::Small(v) => v.iter().find(|(k, _)| key_eq(k, key)).map(|(_, v)| v),
            Dict::Large(m) => m.get(&key),
        }
    }

    /// The value of a key, to change in place.
    #[inline]
    pub fn get_mut<'k>(&mut self, key: impl Into<KeyRef<'k>>) -> Option<&mut Value> {
        let key = key.into();
        match self {
            Dict::Small(v) => v.iter_mut().find(|(k, _)| key_eq(k, key)).map(|(_, v)| v),
            Dict::Large(m) => m.get_mut(&key),
        }
    }

    /// Removes a key, keeping the order of the others; returns its value.
    pub fn shift_remove<'k>(&mut self, key: impl Into<KeyRef<'k>>) -> Option<Value> {
        let key = key.into();
        match self {
            Dict::Small(v) => v.iter().position(|(k, _)| key_eq(k, key)).map(|i| v.remove(i).1),
            Dict::Large(m) => m.shift_remove(&key),
        }
    }

    /// Whether the key is present.
    pub fn contains_key<'k>(&self, key: impl Into<KeyRef<'k>>) -> bool {
        self.get(key).is_some()
    }

    /// Sets a key's value, keeping its position when present (else appending); returns the old
    /// value.
    pub fn insert(&mut self, key: Key, value: Value) -> Option<Value> {
        match self {
            Dict::Small(v) => {
                if let Some((_, slot)) = v.iter_mut().find(|(k, _)| key_eq(k, key.as_ref())) {
                    return Some(std::mem::replace(slot, value));
                }
                if v.len() < SMALL_MAX {
                    v.push((key, value));
                    return None;
                }
                let mut m = Large::with_capacity_and_hasher(2 * SMALL_MAX, Default::default());
                m.extend(std::mem::take(v));
                m.insert(key, value);
                *self = Dict::Large(m);
                None
            }
            Dict::Large(m) => m.insert(key, value),
        }
    }

    /// Entries in order.
    pub fn iter(&self) -> Iter<'_> {
        match self {
            Dict::Small(v) => Iter::Small(v.iter()),
            Dict::Large(m) => Iter::Large(m.iter()),
        }
    }

    /// Keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// Values in order.
    pub fn values(&self) -> impl Iterator<Item = &Value> + '_ {
        self.iter().map(|(_, v)| v)
    }

    /// The values, consuming the dict.
    pub fn into_values(self) -> Box<dyn Iterator<Item = Value>> {
        match self {
            Dict::Small(v) => Box::new(v.into_iter().map(|(_, v)| v)),
            Dict::Large(m) => Box::new(m.into_values()),
        }
    }

    /// Reorders the entries (stable sort) by comparing key-value pairs.
    pub fn sort_by(&mut self, mut cmp: impl FnMut(&Key, &Value, &Key, &Value) -> std::cmp::Ordering) {
        match self {
            Dict::Small(v) => v.sort_by(|(k1, v1), (k2, v2)| cmp(k1, v1, k2, v2)),
            Dict::Large(m) => m.sort_by(|k1, v1, k2, v2| cmp(k1, v1, k2, v2)),
        }
    }
}

/// Whether a stored key is this key (strings by content, with a pointer check first).
#[inline(always)]
fn key_eq(k: &Key, key: KeyRef<'_>) -> bool {
    match (k, key) {
        (Key::Str(a), KeyRef::Str(b)) => {
            let a: &str = a;
            a.len() == b.len()
                && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || crate::text::same_bytes(a.as_bytes(), b.as_bytes()))
        }
        (Key::Num(a), KeyRef::Num(b)) => *a == b,
        (Key::Null, KeyRef::Null) => true,
        (Key::Bool(a), KeyRef::Bool(b)) => *a == b,
        _ => false,
    }
}

/// Iterator over a dict's entries, in order.
pub enum Iter<'a> {
    /// Over the linear representation.
    Small(std::slice::Iter<'a, (Key, Value)>),
    /// Over the hashed representation.
    Large(indexmap::map::Iter<'a, Key, Value>),
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Key, &'a Value);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(it) => it.next().map(|(k, v)| (k, v)),
            Iter::Large(it) => it.next(),
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Iter::Small(it) => it.size_hint(),
            Iter::Large(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Dict {
    type Item = (&'a Key, &'a Value);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<'a> From<&'a Key> for KeyRef<'a> {
    fn from(k: &'a Key) -> Self {
        k.as_ref()
    }
}

impl<'a> From<&KeyRef<'a>> for KeyRef<'a> {
    fn from(k: &KeyRef<'a>) -> Self {
        *k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_replaces_in_place_across_the_switch() {
        let mut d = Dict::default();
        for i in 0..40 {
            d.insert(Key::num(f64::from(i)), Value::Number(f64::from(i)));
            d.insert(Key::str(&format!("k{i}")), Value::Number(f64::from(i)));
            assert_eq!(matches!(d, Dict::Small(_)), d.len() <= SMALL_MAX);
        }
        assert_eq!(d.insert(Key::num(3.0), Value::Null).and_then(|v| v.as_number()), Some(3.0));
        assert!(d.get(&Key::num(3.0)).is_some_and(Value::is_null));
        assert_eq!(d.get(KeyRef::Str("k39")).and_then(Value::as_number), Some(39.0));
        assert!(d.get(KeyRef::Str("k40")).is_none());
        let keys: Vec<Key> = d.keys().cloned().collect();
        assert_eq!(keys[0], Key::num(0.0));
        assert_eq!(keys[1], Key::str("k0"));
        assert_eq!(keys.len(), 80);
        let mut small = Dict::default();
        small.insert(Key::str("b"), Value::Null);
        small.insert(Key::str("a"), Value::Null);
        small.insert(Key::str("b"), Value::Bool(true));
        assert_eq!(small.keys().map(|k| k.as_ref_str().unwrap_or("")).collect::<Vec<_>>(), ["b", "a"]);
    }
}
