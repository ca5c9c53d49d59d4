//! The cache of recent successful answers a fallback serves from
//! (stale-if-error).

use std::any::Any;
use std::fmt;
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher, RandomState};
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
/// can't be predicted from outside. An HTTP answer whose `Vary` names
/// request headers takes two entries: one naming the headers, one the
/// answer.
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
///
/// ```
/// use std::time::Duration;
/// use steadfast::fallback::FallbackCache;
///
/// let prices = FallbackCache::builder()
///     .capacity(1_000)
///     .max_staleness(Duration::from_secs(60))
///     .key(|sku: &u64| Some(*sku))
///     .build()?;
/// assert_eq!(prices.capacity(), 1_000);
///
/// let err = FallbackCache::builder().max_staleness(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "fallback.cache.max_staleness");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct FallbackCacheBuilder<K> {
    pub(crate) key: K,
    capacity: u64,
    max_staleness: Duration,
    pub(crate) max_body_bytes: usize,
    pub(crate) store_private: bool,
    pub(crate) store_no_store: bool,
    pub(crate) store_set_cookie: bool,
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
            store_set_cookie: false,
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
            store_set_cookie: self.store_set_cookie,
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
                store_set_cookie: self.store_set_cookie,
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
            .field("store_set_cookie", &self.store_set_cookie)
            .finish_non_exhaustive()
    }
}

/// An entry: an answer, or the request headers the answers under its key
/// vary on.
#[derive(Clone)]
enum Entry {
    /// An answer, when it was recorded (tokio clock), and how long after
    /// that it may be served.
    Answer {
        at: Instant,
        limit: Duration,
        value: Arc<dyn Any + Send + Sync>,
    },
    /// The answers under this key depend on these request headers (digests
    /// of their names, sorted); each is stored under the digest of the key
    /// and the request's values of those headers.
    Varies(Arc<[u64]>),
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
    store_set_cookie: bool,
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
            .field("store_set_cookie", &self.store_set_cookie)
            .finish()
    }
}

/// The digest of a header name, as the request's headers are kept in a
/// [`KeyHasher`] and as a response's `Vary` names them: ASCII case folded.
#[cfg(feature = "http")]
pub(crate) fn name_digest(seed: &DefaultHasher, name: &[u8]) -> u64 {
    let mut hasher = seed.clone();
    // One write of the folded name, whichever side it comes from (request
    // header names are lowercase already).
    if name.iter().any(u8::is_ascii_uppercase) {
        let mut buf = [0u8; 64];
        match buf.get_mut(..name.len()) {
            Some(folded) => {
                folded.copy_from_slice(name);
                folded.make_ascii_lowercase();
                hasher.write(folded);
            }
            None => hasher.write(&name.to_ascii_lowercase()),
        }
    } else {
        hasher.write(name);
    }
    hasher.write_u8(0xff);
    hasher.finish()
}

/// Where one request's answer is recorded and looked up: the cache, the
/// digest of the request's key and, if the key kept them, digests of the
/// request's headers (to honour a stored response's `Vary`).
pub struct Slot {
    store: Arc<Store>,
    digest: u128,
    headers: Option<Kept>,
}

/// How many header digests a key keeps without allocating.
const KEPT_INLINE: usize = 16;

/// Digests of a request's headers (name, values), kept so that a stored
/// response's `Vary` can be honoured: inline for up to
/// [`KEPT_INLINE`] headers, so that keying a common request allocates
/// nothing, on the heap past that.
#[derive(Clone)]
#[cfg_attr(not(feature = "http"), allow(dead_code))]
// Inline on purpose: keying a request must not allocate.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Kept {
    Inline {
        len: u8,
        items: [(u64, u64); KEPT_INLINE],
    },
    Heap(Box<[(u64, u64)]>),
}

impl Kept {
    /// Keeps the digests `items` gives; `len` is how many it gives at most.
    #[cfg(feature = "http")]
    pub(crate) fn collect(len: usize, items: impl Iterator<Item = (u64, u64)>) -> Self {
        if len <= KEPT_INLINE {
            let mut kept = [(0, 0); KEPT_INLINE];
            let mut n = 0;
            for (slot, item) in kept.iter_mut().zip(items) {
                *slot = item;
                n += 1;
            }
            #[allow(clippy::cast_possible_truncation)] // n <= KEPT_INLINE
            Kept::Inline {
                len: n as u8,
                items: kept,
            }
        } else {
            Kept::Heap(items.collect())
        }
    }

    fn as_slice(&self) -> &[(u64, u64)] {
        match self {
            Kept::Inline { len, items } => &items[..usize::from(*len)],
            Kept::Heap(items) => items,
        }
    }
}

impl fmt::Debug for Kept {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kept")
            .field("headers", &self.as_slice().len())
            .finish()
    }
}

impl Slot {
    /// Records `value` as the freshest answer for this request, to be
    /// served for at most [`max_staleness`](FallbackCacheBuilder::max_staleness).
    pub fn insert<V: Send + Sync + 'static>(self, value: V) {
        let limit = self.store.max_staleness;
        self.insert_with(value, limit, &[]);
    }

    /// Records `value`, to be served for at most `limit` (capped by the
    /// cache's staleness limit), for requests whose headers named by
    /// `vary` (name digests, sorted, deduplicated) have this request's
    /// values. `false` if it can't be stored: the slot kept no headers to
    /// vary on.
    pub(crate) fn insert_with<V: Send + Sync + 'static>(
        self,
        value: V,
        limit: Duration,
        vary: &[u64],
    ) -> bool {
        let answer = Entry::Answer {
            at: Instant::now(),
            limit: limit.min(self.store.max_staleness),
            value: Arc::new(value),
        };
        if vary.is_empty() {
            self.store.cache.insert(self.digest, answer);
            return true;
        }
        let Some(variant) = self.variant(vary) else {
            return false;
        };
        self.store
            .cache
            .insert(self.digest, Entry::Varies(Arc::from(vary)));
        self.store.cache.insert(variant, answer);
        true
    }

    /// The digest of a request header's name, as `vary` is given to
    /// [`insert_with`](Self::insert_with).
    #[cfg(feature = "http")]
    pub(crate) fn name_digest(&self, name: &[u8]) -> u64 {
        name_digest(&self.store.hashers.0.build_hasher(), name)
    }

    /// The key of the variant this request selects among answers that
    /// vary on `names`: the key's digest and the request's values of those
    /// headers.
    fn variant(&self, names: &[u64]) -> Option<u128> {
        let headers = self.headers.as_ref()?.as_slice();
        let mut hasher = self.store.key_hasher();
        hasher.write_u8(0x56);
        hasher.write_u128(self.digest);
        for name in names {
            hasher.write_u64(*name);
            match headers.iter().find(|(n, _)| n == name) {
                Some((_, values)) => {
                    hasher.write_u8(1);
                    hasher.write_u64(*values);
                }
                None => hasher.write_u8(0),
            }
        }
        Some(hasher.finish128())
    }

    /// The digest the slot's answers are stored under.
    #[cfg(test)]
    pub(crate) fn digest(&self) -> u128 {
        self.digest
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

    /// Whether responses that set cookies may be stored.
    pub fn stores_set_cookie(&self) -> bool {
        self.store.store_set_cookie
    }

    /// The answer recorded for this request and its age, if it is no older
    /// than its staleness limit.
    pub(crate) fn lookup(&self) -> Option<(Arc<dyn Any + Send + Sync>, Duration)> {
        let mut key = self.digest;
        let mut entry = self.store.cache.get(&key)?;
        if let Entry::Varies(names) = &entry {
            key = self.variant(names)?;
            entry = self.store.cache.get(&key)?;
        }
        let Entry::Answer { at, limit, value } = entry else {
            return None;
        };
        let age = Instant::now().saturating_duration_since(at);
        if age > limit {
            self.store.cache.invalidate(&key);
            return None;
        }
        Some((value, age))
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
/// identity included. Feed it parts that compare exactly as the protocol
/// says: `http::Uri` and `http::uri::Authority` hash the userinfo with its
/// case ignored, so two callers `alice:Secret@` and `alice:secret@` would
/// share a key ([`HttpKey`](super::HttpKey) hashes the URI part by part).
#[diagnostic::on_unimplemented(
    message = "`{Self}` can't key a cache of `{Req}` requests",
    label = "this key does not take `{Req}`",
    note = "`HttpKey` keys `http::Request<B>` and, with the `reqwest` feature, `reqwest::Request`; a key closure given to `FallbackCacheBuilder::key` must take `&{Req}`"
)]
pub trait CacheKey<Req> {
    /// Feeds `request`'s key to `hasher`; `false` if the request's answer
    /// must not be cached.
    fn key(&self, request: &Req, hasher: &mut KeyHasher) -> bool;
}

/// Keys each request by itself (`Req: Hash`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestKey;

#[diagnostic::do_not_recommend]
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

#[diagnostic::do_not_recommend]
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
///
/// It can also keep digests of a request's headers
/// ([`keep_headers`](Self::keep_headers), feature `http`), so that a
/// stored response's `Vary` is honoured.
#[derive(Debug)]
pub struct KeyHasher {
    a: DefaultHasher,
    b: DefaultHasher,
    #[cfg(feature = "http")]
    pub(crate) seed: DefaultHasher,
    pub(crate) headers: Option<Kept>,
}

impl KeyHasher {
    fn finish128(&self) -> u128 {
        (u128::from(self.a.finish()) << 64) | u128::from(self.b.finish())
    }
}

impl Store {
    fn key_hasher(&self) -> KeyHasher {
        let (a, b) = &self.hashers;
        KeyHasher {
            a: a.build_hasher(),
            b: b.build_hasher(),
            #[cfg(feature = "http")]
            seed: a.build_hasher(),
            headers: None,
        }
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
#[diagnostic::on_unimplemented(
    message = "the cache `{Self}` can't record answers to `{Req}` requests",
    label = "this cache does not take `{Req}`",
    note = "a `FallbackCache<K>` records the requests its key `K` implements `CacheKey` for"
)]
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
        let mut hasher = self.store.key_hasher();
        if !self.key.key(request, &mut hasher) {
            return None;
        }
        Some(Slot {
            store: Arc::clone(&self.store),
            digest: hasher.finish128(),
            headers: hasher.headers.take(),
        })
    }
}
