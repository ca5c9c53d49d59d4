//! The cache of recent successful answers a fallback serves from
//! (stale-if-error).

use std::any::Any;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "cache")]
use moka::sync::Cache;
use tokio::time::Instant;

#[cfg(not(feature = "cache"))]
use super::no_store::Cache;

use crate::error::{ConfigError, check};

#[cfg(feature = "cache")]
/// moka refuses time-to-live settings of a thousand years or more; past
/// this, staleness is decided by the tokio clock alone.
const MOKA_TTL_CAP: Duration = Duration::from_secs(86_400 * 365 * 30);

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
/// A bounded cache of recent successful answers, served when a call fails
/// and its answer is no older than
/// [`max_staleness`](FallbackCacheBuilder::max_staleness).
///
/// Every success of the primary service is recorded under a key derived
/// from its request by a [`CacheKey`]; a later call with the same key that
/// fails is answered from the entry if it is young enough. At most
/// [`capacity`](FallbackCacheBuilder::capacity) entries are held (moka's
/// TinyLFU policy decides which stay); an entry's age is kept on the tokio
/// clock, so staleness can be tested on paused time, and moka also drops
/// entries once their staleness limit has passed.
///
/// Keys are stored as a 128-bit digest made with two SipHash keys drawn at
/// random for each cache, so the cache holds no credentials and its keys
/// can't be predicted from outside.
///
/// The key must cover everything the answer depends on: share one cache
/// only between layers in front of the same upstream, and name any header
/// that identifies the caller beyond those [`HttpKey`](super::HttpKey)
/// covers (a caller known by its client certificate or address needs a
/// custom [`CacheKey`]).
///
/// Clones share the same entries, so the cache itself is the handle for
/// tests and operations ([`entry_count`](Self::entry_count),
/// [`invalidate_all`](Self::invalidate_all)).
pub struct FallbackCache<K> {
    pub(crate) store: Arc<Store>,
    key: Arc<K>,
}

#[cfg(feature = "cache")]
impl FallbackCache<RequestKey> {
    /// A builder for a cache keyed by the request itself (requests must be
    /// `Hash`); [`key`](FallbackCacheBuilder::key) chooses another key.
    ///
    /// Defaults: 10,000 entries, answers at most 5 minutes old.
    pub fn builder() -> FallbackCacheBuilder<RequestKey> {
        FallbackCacheBuilder::with_key(RequestKey)
    }
}

#[cfg(feature = "cache")]
impl<K> FallbackCache<K> {
    /// The most entries the cache holds.
    pub fn capacity(&self) -> u64 {
        self.store.capacity
    }

    /// The oldest an answer may be to be served.
    pub fn max_staleness(&self) -> Duration {
        self.store.max_staleness
    }

    /// How many entries are held (an estimate until pending work is run).
    pub fn entry_count(&self) -> u64 {
        self.store.cache.entry_count()
    }

    /// Applies pending evictions now, so that `entry_count` is exact.
    pub fn run_pending_tasks(&self) {
        self.store.cache.run_pending_tasks();
    }

    /// Drops every entry.
    pub fn invalidate_all(&self) {
        self.store.cache.invalidate_all();
    }
}

#[cfg(feature = "cache")]
impl<K> Clone for FallbackCache<K> {
    fn clone(&self) -> Self {
        Self {
            store: Arc::clone(&self.store),
            key: Arc::clone(&self.key),
        }
    }
}

#[cfg(feature = "cache")]
impl<K> fmt::Debug for FallbackCache<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackCache")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
/// Builds a [`FallbackCache`]; settings are checked by
/// [`build`](Self::build).
pub struct FallbackCacheBuilder<K> {
    pub(crate) key: K,
    capacity: u64,
    max_staleness: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) store_private: bool,
    pub(crate) store_no_store: bool,
}

#[cfg(feature = "cache")]
impl<K> FallbackCacheBuilder<K> {
    pub(crate) fn with_key(key: K) -> Self {
        Self {
            key,
            capacity: 10_000,
            max_staleness: Duration::from_secs(300),
            max_body_bytes: 1 << 20,
            store_private: false,
            store_no_store: false,
        }
    }

    /// The most entries held; at least 1.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// The oldest an answer may be to be served; greater than zero.
    pub fn max_staleness(mut self, max_staleness: Duration) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// Keys entries by what `key` takes from each request; a request it
    /// gives `None` for is neither recorded nor served from the cache.
    pub fn key<Req, T, F>(self, key: F) -> FallbackCacheBuilder<KeyFn<F, T>>
    where
        F: Fn(&Req) -> Option<T>,
        T: Hash,
    {
        FallbackCacheBuilder {
            key: KeyFn {
                f: key,
                _key: PhantomData,
            },
            capacity: self.capacity,
            max_staleness: self.max_staleness,
            max_body_bytes: self.max_body_bytes,
            store_private: self.store_private,
            store_no_store: self.store_no_store,
        }
    }

    /// Checks the settings and builds the cache.
    pub fn build(self) -> Result<FallbackCache<K>, ConfigError> {
        check::at_least("fallback.cache.capacity", self.capacity, 1)?;
        check::positive("fallback.cache.max_staleness", self.max_staleness)?;
        check::at_least("fallback.cache.max_body_bytes", self.max_body_bytes, 1)?;
        let cache = Cache::builder()
            .max_capacity(self.capacity)
            .time_to_live(self.max_staleness.min(MOKA_TTL_CAP))
            .build();
        Ok(FallbackCache {
            store: Arc::new(Store {
                cache,
                hashers: (RandomState::new(), RandomState::new()),
                capacity: self.capacity,
                max_staleness: self.max_staleness,
                max_body_bytes: self.max_body_bytes,
                store_private: self.store_private,
                store_no_store: self.store_no_store,
            }),
            key: Arc::new(self.key),
        })
    }
}

#[cfg(feature = "cache")]
impl<K> fmt::Debug for FallbackCacheBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackCacheBuilder")
            .field("capacity", &self.capacity)
            .field("max_staleness", &self.max_staleness)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("store_private", &self.store_private)
            .field("store_no_store", &self.store_no_store)
            .finish_non_exhaustive()
    }
}

/// An entry: the answer and when it was recorded, on the tokio clock.
#[derive(Clone)]
struct Entry {
    at: Instant,
    value: Arc<dyn Any + Send + Sync>,
}

/// The entries and settings every clone of a cache shares.
pub(crate) struct Store {
    cache: Cache<u128, Entry>,
    hashers: (RandomState, RandomState),
    capacity: u64,
    max_staleness: Duration,
    max_body_bytes: usize,
    store_private: bool,
    store_no_store: bool,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("entries", &self.cache.entry_count())
            .field("capacity", &self.capacity)
            .field("max_staleness", &self.max_staleness)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("store_private", &self.store_private)
            .field("store_no_store", &self.store_no_store)
            .finish()
    }
}

/// Where one request's answer is recorded and looked up: the cache and the
/// digest of the request's key.
pub struct Slot {
    store: Arc<Store>,
    digest: u128,
}

impl Slot {
    /// Records `value` as the freshest answer for this request.
    pub fn insert<V: Send + Sync + 'static>(self, value: V) {
        let entry = Entry {
            at: Instant::now(),
            value: Arc::new(value),
        };
        self.store.cache.insert(self.digest, entry);
    }

    /// The largest response body the cache stores, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.store.max_body_bytes
    }

    /// Whether responses marked `Cache-Control: private` may be stored.
    pub fn stores_private(&self) -> bool {
        self.store.store_private
    }

    /// Whether responses marked `Cache-Control: no-store` may be stored.
    pub fn stores_no_store(&self) -> bool {
        self.store.store_no_store
    }

    /// The answer recorded for this request and its age, if it is no older
    /// than the staleness limit.
    pub(crate) fn lookup(&self) -> Option<(Arc<dyn Any + Send + Sync>, Duration)> {
        let entry = self.store.cache.get(&self.digest)?;
        let age = Instant::now().saturating_duration_since(entry.at);
        if age > self.store.max_staleness {
            self.store.cache.invalidate(&self.digest);
            return None;
        }
        Some((entry.value, age))
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot").finish_non_exhaustive()
    }
}

/// Takes the key of a request's answer, for a [`FallbackCache`].
///
/// What is fed to the [`KeyHasher`] decides which requests share an
/// answer: it must cover everything the answer depends on, the caller's
/// identity included.
pub trait CacheKey<Req> {
    /// Feeds `request`'s key to `hasher`; `false` if the request's answer
    /// must not be cached.
    fn key(&self, request: &Req, hasher: &mut KeyHasher) -> bool;
}

/// Keys each request by itself (`Req: Hash`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestKey;

impl<Req: Hash> CacheKey<Req> for RequestKey {
    #[inline]
    fn key(&self, request: &Req, hasher: &mut KeyHasher) -> bool {
        request.hash(hasher);
        true
    }
}

/// Keys each request by what a closure takes from it; made by
/// [`FallbackCacheBuilder::key`].
pub struct KeyFn<F, T> {
    f: F,
    _key: PhantomData<fn() -> T>,
}

impl<F, T> fmt::Debug for KeyFn<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFn").finish_non_exhaustive()
    }
}

impl<Req, F, T> CacheKey<Req> for KeyFn<F, T>
where
    F: Fn(&Req) -> Option<T>,
    T: Hash,
{
    #[inline]
    fn key(&self, request: &Req, hasher: &mut KeyHasher) -> bool {
        match (self.f)(request) {
            Some(key) => {
                key.hash(hasher);
                true
            }
            None => false,
        }
    }
}

/// Hashes a key into the 128-bit digest entries are stored under: two
/// SipHash states with keys drawn at random for each cache.
#[derive(Debug)]
pub struct KeyHasher {
    a: std::hash::DefaultHasher,
    b: std::hash::DefaultHasher,
}

impl KeyHasher {
    fn finish128(&self) -> u128 {
        (u128::from(self.a.finish()) << 64) | u128::from(self.b.finish())
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.a.finish()
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.a.write(bytes);
        self.b.write(bytes);
    }
}

/// The cache source of a fallback layer: a [`FallbackCache`], or none.
pub trait CacheSource<Req> {
    /// The slot `request`'s answer is recorded into and served from, if it
    /// may be cached.
    fn slot(&self, request: &Req) -> Option<Slot>;
}

/// No cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoCache;

impl<Req> CacheSource<Req> for NoCache {
    #[inline]
    fn slot(&self, _request: &Req) -> Option<Slot> {
        None
    }
}

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl<Req, K: CacheKey<Req>> CacheSource<Req> for FallbackCache<K> {
    #[inline]
    fn slot(&self, request: &Req) -> Option<Slot> {
        let (a, b) = &self.store.hashers;
        let mut hasher = KeyHasher {
            a: a.build_hasher(),
            b: b.build_hasher(),
        };
        self.key.key(request, &mut hasher).then(|| Slot {
            store: Arc::clone(&self.store),
            digest: hasher.finish128(),
        })
    }
}
