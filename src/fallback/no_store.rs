//! Without the `cache` feature no [`FallbackCache`](super::FallbackCache)
//! can be built, so the store a cache slot points into never exists: this
//! stand-in for moka's cache has no value.

use std::convert::Infallible;
use std::marker::PhantomData;

pub(crate) struct Cache<K, V>(Infallible, PhantomData<fn() -> (K, V)>);

impl<K, V> Cache<K, V> {
    pub(crate) fn insert(&self, _key: K, _value: V) {
        match self.0 {}
    }

    pub(crate) fn get(&self, _key: &K) -> Option<V> {
        match self.0 {}
    }

    pub(crate) fn invalidate(&self, _key: &K) {
        match self.0 {}
    }

    pub(crate) fn entry_count(&self) -> u64 {
        match self.0 {}
    }
}
