//! A bounded registry of per-key policy state (per host, per route, per
//! tenant), shared by the keyed breakers, bulkheads and rate limiters.
//!
//! Memory is bounded however many distinct keys arrive: the registry holds
//! at most `max_keys` entries, evicting the least useful first (moka's
//! TinyLFU admission keeps a flood of one-off keys from pushing out the keys
//! in steady use), and drops entries idle for longer than `idle`. Lookups
//! take no lock on the registry: moka's concurrent hash table serves them.
//!
//! An evicted entry lives on while calls that fetched it still hold its
//! `Arc`; a new call for the same key gets fresh state.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

pub(crate) struct KeyedRegistry<K, V> {
    cache: Cache<K, Arc<V>>,
    max_keys: u64,
}

impl<K, V> KeyedRegistry<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// A registry of at most `max_keys` entries (callers validate that it is
    /// at least 1), dropping entries unused for `idle`.
    pub(crate) fn new(max_keys: u64, idle: Option<Duration>) -> Self {
        let mut builder = Cache::builder().max_capacity(max_keys);
        if let Some(idle) = idle {
            builder = builder.time_to_idle(idle);
        }
        Self {
            cache: builder.build(),
            max_keys,
        }
    }

    /// The state of `key`, made by `make` if the key has none.
    #[inline]
    pub(crate) fn get_or_insert_with(&self, key: &K, make: impl FnOnce() -> V) -> Arc<V> {
        if let Some(found) = self.cache.get(key) {
            return found;
        }
        self.cache.get_with(key.clone(), || Arc::new(make()))
    }

    /// The state of `key`, if it has any.
    pub(crate) fn get(&self, key: &K) -> Option<Arc<V>> {
        self.cache.get(key)
    }

    /// How many keys are held (an estimate until pending work is run).
    pub(crate) fn len(&self) -> u64 {
        self.cache.entry_count()
    }

    /// The most keys the registry holds.
    pub(crate) fn max_keys(&self) -> u64 {
        self.max_keys
    }

    /// Every key and its state, for snapshots.
    pub(crate) fn entries(&self) -> Vec<(K, Arc<V>)> {
        self.cache
            .iter()
            .map(|(key, value)| ((*key).clone(), value))
            .collect()
    }

    /// Applies pending evictions now, so that `len` is exact.
    pub(crate) fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

impl<K, V> Clone for KeyedRegistry<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
{
    /// A clone shares the same entries.
    fn clone(&self) -> Self {
        Self {
            cache: self.cache.clone(),
            max_keys: self.max_keys,
        }
    }
}

impl<K, V> fmt::Debug for KeyedRegistry<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedRegistry")
            .field("keys", &self.cache.entry_count())
            .field("max_keys", &self.max_keys)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_state() {
        let registry = KeyedRegistry::<String, std::sync::atomic::AtomicU32>::new(8, None);
        let a = registry.get_or_insert_with(&"a".to_owned(), Default::default);
        a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let again = registry.get_or_insert_with(&"a".to_owned(), unreachable_state);
        assert!(Arc::ptr_eq(&a, &again));
        assert!(registry.get(&"b".to_owned()).is_none());
    }

    fn unreachable_state() -> std::sync::atomic::AtomicU32 {
        std::sync::atomic::AtomicU32::new(99)
    }

    #[test]
    fn a_flood_of_keys_stays_bounded() {
        let registry = KeyedRegistry::<u64, u64>::new(100, None);
        for key in 0..20_000 {
            registry.get_or_insert_with(&key, || key);
        }
        registry.run_pending_tasks();
        assert!(registry.len() <= 100, "held {} keys", registry.len());
        assert!(registry.entries().len() <= 100);
    }
}
