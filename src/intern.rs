//! Settings made once per distinct content and kept for the life of the
//! process, so that a call can reach them through a plain reference
//! instead of counting a shared pointer.
//!
//! A layer's futures need its name, its metric series and its settings
//! only when something goes wrong (a retry to schedule, a timeout to
//! report). Holding them behind an `Arc` costs every call two atomic
//! read-modify-writes (the clone into the future and the drop), on a
//! cache line every core calling through the layer shares. An
//! [`Interner`] instead keeps one copy of each distinct value for good and
//! hands out `&'static` references: copying one is free. The table is
//! bounded; past its cap (and for state that can't be compared by
//! content) a value is shared through a [`Spread`], whose references are
//! counted on the calling thread's lane, so the table never grows with how
//! many layers a program builds, nothing a value carries is lost, and two
//! cores still write no common line.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::ops::Deref;
use std::sync::Mutex;

use crate::stripe::Spread;

/// The most distinct values one interner keeps. Names and settings come
/// from configuration: a program has a few dozen; a table this size is
/// reached only by one that builds layers from unbounded input.
pub(crate) const CAP: usize = 4_096;

/// A value shared by every service and future of the layers that made it:
/// kept for good by an [`Interner`] (copying the reference is free), or,
/// past the interner's cap or for state that can't be compared by
/// content, behind a [`Spread`].
pub(crate) enum Shared<T: 'static> {
    /// Interned: kept until the process ends.
    Static(&'static T),
    /// Not interned: counted, on the calling thread's lane (see
    /// [`Spread`]).
    Owned(Spread<T>),
}

impl<T> Shared<T> {
    /// `value` counted per lane, not interned.
    pub(crate) fn owned(value: T) -> Self {
        Shared::Owned(Spread::new(value))
    }

    /// Whether this is an interned value.
    #[cfg(test)]
    pub(crate) fn is_static(&self) -> bool {
        matches!(self, Shared::Static(_))
    }
}

impl<T> Clone for Shared<T> {
    #[inline]
    fn clone(&self) -> Self {
        match self {
            Shared::Static(value) => Shared::Static(value),
            Shared::Owned(value) => Shared::Owned(value.clone()),
        }
    }
}

/// What a call holds of a [`Shared`] value: the interned reference, or
/// its thread's lane's reference (a word and a tag, dropped with one
/// test).
pub(crate) enum Ref<T: 'static> {
    Static(&'static T),
    Lane(Spread<T>),
}

impl<T> Shared<T> {
    /// A reference for a call to hold.
    #[inline]
    pub(crate) fn to_ref(&self) -> Ref<T> {
        match self {
            Shared::Static(value) => Ref::Static(value),
            Shared::Owned(value) => Ref::Lane(value.clone()),
        }
    }
}

impl<T> Deref for Ref<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self {
            Ref::Static(value) => value,
            Ref::Lane(value) => value,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Ref<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        T::fmt(self, f)
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        match self {
            Shared::Static(value) => value,
            Shared::Owned(value) => value,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        T::fmt(self, f)
    }
}

/// A bounded table of values kept for good, one per distinct key.
///
/// It is read when a layer is built, never on the path of a call, so a
/// lock is enough.
pub(crate) struct Interner<K, V: 'static> {
    cap: usize,
    table: Mutex<Option<HashMap<K, &'static V>>>,
}

impl<K: Hash + Eq, V> Interner<K, V> {
    /// An empty table that keeps at most `cap` values.
    pub(crate) const fn new(cap: usize) -> Self {
        Self {
            cap,
            table: Mutex::new(None),
        }
    }

    /// The value kept for `key`, made by `make` and kept if it is the
    /// first with this key and the table has room; made and shared
    /// through an `Arc` if the table is full.
    pub(crate) fn get_or_make(&self, key: K, make: impl FnOnce() -> V) -> Shared<V> {
        // A panic elsewhere while holding the lock leaves the table as it
        // was: every entry in it is complete.
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let table = table.get_or_insert_with(HashMap::new);
        if let Some(kept) = table.get(&key) {
            return Shared::Static(kept);
        }
        if table.len() >= self.cap {
            return Shared::owned(make());
        }
        let kept: &'static V = Box::leak(Box::new(make()));
        table.insert(key, kept);
        Shared::Static(kept)
    }

    /// How many values are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.as_ref().map_or(0, HashMap::len)
    }
}

impl<K, V> fmt::Debug for Interner<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interner")
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_keys_share_one_value() {
        let interner: Interner<&str, String> = Interner::new(4);
        let a = interner.get_or_make("a", || "first".to_owned());
        let again = interner.get_or_make("a", || "second".to_owned());
        assert!(a.is_static() && again.is_static());
        assert!(std::ptr::eq(&*a, &*again));
        assert_eq!(*again, "first");
        assert_eq!(interner.len(), 1);
    }

    #[test]
    fn past_the_cap_values_are_counted_not_kept() {
        let interner: Interner<u32, u32> = Interner::new(3);
        for key in 0..3 {
            assert!(interner.get_or_make(key, || key * 10).is_static());
        }
        // Full: a new key gets its own value, not interned, every time.
        let late = interner.get_or_make(7, || 70);
        let later = interner.get_or_make(7, || 71);
        assert!(!late.is_static() && !later.is_static());
        assert_eq!((*late, *later), (70, 71));
        assert_eq!(interner.len(), 3);
        // Keys kept before the table filled are still found.
        let kept = interner.get_or_make(1, || 0);
        assert!(kept.is_static());
        assert_eq!(*kept, 10);
        // A clone of a counted value shares it.
        let clone = late.clone();
        assert!(std::ptr::eq(&*clone, &*late));
    }

    proptest::proptest! {
        /// Whatever the keys, the table holds at most its cap, every key
        /// gets the value made for it (the first made, if kept), and the
        /// table keeps exactly the first `cap` distinct keys.
        #[test]
        fn the_table_is_bounded_and_every_key_gets_its_value(
            keys in proptest::collection::vec(0u8..32, 0..200),
            cap in 0usize..16,
        ) {
            let interner: Interner<u8, (u8, usize)> = Interner::new(cap);
            let mut first_seen: Vec<u8> = Vec::new();
            for (i, key) in keys.iter().copied().enumerate() {
                let got = interner.get_or_make(key, || (key, i));
                proptest::prop_assert_eq!(got.0, key);
                let kept = first_seen.iter().position(|k| *k == key);
                match kept {
                    Some(at) if at < cap => {
                        proptest::prop_assert!(got.is_static());
                        let first = keys.iter().position(|k| *k == key).unwrap_or(i);
                        proptest::prop_assert_eq!(got.1, first);
                    }
                    Some(_) => proptest::prop_assert!(!got.is_static()),
                    None => {
                        proptest::prop_assert_eq!(got.is_static(), first_seen.len() < cap);
                        first_seen.push(key);
                    }
                }
                proptest::prop_assert!(interner.len() <= cap);
                proptest::prop_assert_eq!(interner.len(), first_seen.len().min(cap));
            }
        }
    }
}
