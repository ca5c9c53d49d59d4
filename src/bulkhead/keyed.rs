//! One bulkhead per key (per host, per route), with a bounded number of keys.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::{Settings, settings_methods};
use super::state::Shared;
use super::{BulkheadHandle, admit};
use crate::BoxError;
use crate::error::{ConfigError, check};
use crate::keyed::{
    DEFAULT_IDLE, DEFAULT_MAX_KEYS, KeyOf, KeyedRegistry, LookupKey, OVERFLOW_KEY, key_name,
};
use crate::stripe::{Lane, Spread};

/// Applies a [`KeyedBulkhead`]: one bulkhead per key of the request, each
/// with the same settings, for at most `max_keys` keys.
///
/// Built with [`KeyedBulkheadLayer::builder`], which takes the function that
/// gives a request's key. Every service this layer makes shares one
/// registry of bulkheads.
pub struct KeyedBulkheadLayer<K, F> {
    shared: Arc<KeyedShared<K, F>>,
}

struct KeyedShared<K, F> {
    key: F,
    settings: Settings,
    registry: KeyedRegistry<K, Lane<Shared>>,
}

impl<K, F> KeyedShared<K, F>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// The bulkhead of the key `key` reads, made if it has none. Each
    /// knows its key, for the events it reports; the one shared by keys
    /// that found the registry full reports `(overflow)`.
    #[inline]
    fn bulkhead_by<Q: LookupKey<K>>(&self, key: &Q) -> Spread<Shared> {
        Spread::from(self.registry.get_or_insert_by(key, |key| {
            Lane::single(
                self.settings
                    .shared()
                    .with_key(key.map_or_else(|| OVERFLOW_KEY.into(), key_name)),
            )
        }))
    }
}

impl<K, F> KeyedBulkheadLayer<K, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A builder whose bulkheads are chosen by `key`, a function of the
    /// request, with the defaults: 25 concurrent calls per key, no waiting,
    /// at most 10,000 keys, keys idle for 10 minutes dropped (the defaults
    /// of every keyed layer).
    pub fn builder<Req>(key: F) -> KeyedBulkheadLayerBuilder<K, F>
    where
        F: Fn(&Req) -> K,
    {
        KeyedBulkheadLayerBuilder {
            key,
            settings: Settings::default(),
            max_keys: DEFAULT_MAX_KEYS,
            idle: Some(DEFAULT_IDLE),
            _key: std::marker::PhantomData,
        }
    }

    /// A view of the bulkheads of every key.
    pub fn handle(&self) -> KeyedBulkheadHandle<K> {
        KeyedBulkheadHandle {
            registry: self.shared.registry.clone(),
        }
    }
}

impl<K, F> KeyedBulkheadLayer<K, F>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// How many keys have a bulkhead (an estimate while evictions are
    /// pending).
    pub fn len(&self) -> u64 {
        self.shared.registry.len()
    }

    /// Whether no key has a bulkhead.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys that have a bulkhead at once.
    pub fn max_keys(&self) -> u64 {
        self.shared.registry.max_keys()
    }

    /// Applies pending evictions now, so that [`len`](Self::len) is exact.
    pub fn run_pending_tasks(&self) {
        self.shared.registry.run_pending_tasks();
    }

    /// A handle on `key`'s bulkhead, if the key has one now: nothing is
    /// made for a key never called.
    ///
    /// The handle keeps that bulkhead from being dropped (so its key is
    /// never evicted while the handle lives).
    pub fn get(&self, key: &K) -> Option<BulkheadHandle> {
        self.shared
            .registry
            .get(key)
            .map(|lane| BulkheadHandle::new(lane.to_arc()))
    }

    /// A handle on `key`'s bulkhead, made if the key has none yet.
    ///
    /// The handle keeps that bulkhead from being dropped (so its key is
    /// never evicted while the handle lives).
    pub fn get_or_insert(&self, key: &K) -> BulkheadHandle {
        BulkheadHandle::new(self.shared.bulkhead_by(key).to_arc())
    }

    /// Every key that has a bulkhead now, with a handle on it.
    pub fn handles(&self) -> Vec<(K, BulkheadHandle)> {
        self.handle().handles()
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl KeyedBulkheadLayer<crate::http::HostKey, crate::http::ByHost> {
    /// A builder of one bulkhead per host and port of the request
    /// ([`ByHost`](crate::http::ByHost), looked up without allocating),
    /// with the defaults of [`builder`](Self::builder).
    pub fn by_host() -> KeyedBulkheadLayerBuilder<crate::http::HostKey, crate::http::ByHost> {
        KeyedBulkheadLayerBuilder {
            key: crate::http::ByHost,
            settings: Settings::default(),
            max_keys: DEFAULT_MAX_KEYS,
            idle: Some(DEFAULT_IDLE),
            _key: std::marker::PhantomData,
        }
    }
}

impl<K, F> Clone for KeyedBulkheadLayer<K, F> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, K, F> Layer<S> for KeyedBulkheadLayer<K, F> {
    type Service = KeyedBulkhead<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBulkhead {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, F> fmt::Debug for KeyedBulkheadLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadLayer")
            .field("settings", &self.shared.settings)
            .field("registry", &self.shared.registry)
            .finish()
    }
}

/// Settings of a keyed bulkhead, checked by
/// [`build`](KeyedBulkheadLayerBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use steadfast::bulkhead::KeyedBulkheadLayer;
///
/// struct Request { tenant: String }
///
/// let bulkheads = KeyedBulkheadLayer::builder(|req: &Request| req.tenant.clone())
///     .max_concurrent(10)
///     .max_keys(1_000)
///     .idle(Some(Duration::from_secs(300)))
///     .build()?;
/// assert_eq!(bulkheads.handle().len(), 0);
/// assert!(bulkheads.get(&"tenant-1".to_owned()).is_none());
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct KeyedBulkheadLayerBuilder<K, F> {
    key: F,
    settings: Settings,
    max_keys: u64,
    idle: Option<Duration>,
    _key: std::marker::PhantomData<fn() -> K>,
}

impl<K, F> KeyedBulkheadLayerBuilder<K, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    settings_methods!();

    /// The most keys that have a bulkhead at once (default 10,000). Beyond
    /// it the least used keys are dropped. A key with calls in flight is
    /// never dropped; when every key is, new keys share one overflow
    /// bulkhead with the same settings (so they are capped together, never
    /// uncapped) and an [`Event::KeyOverflow`](crate::event::Event::KeyOverflow)
    /// is reported. Must be at least 1.
    pub fn max_keys(mut self, max_keys: u64) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Drops the bulkhead of a key that saw no call for `idle` (default 10
    /// minutes; the key goes within two such periods); `None` keeps keys
    /// until `max_keys` needs room.
    ///
    /// A bulkhead with calls in flight is never dropped, so its permits are
    /// never split between an old and a new bulkhead for the same key.
    pub fn idle(mut self, idle: Option<Duration>) -> Self {
        self.idle = idle;
        self
    }

    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// `bulkhead.max_concurrent` or `bulkhead.max_keys` is zero, or
    /// `bulkhead.idle` is zero.
    pub fn build(self) -> Result<KeyedBulkheadLayer<K, F>, ConfigError> {
        self.settings.check()?;
        check::at_least("bulkhead.max_keys", self.max_keys, 1)?;
        if let Some(idle) = self.idle {
            check::positive("bulkhead.idle", idle)?;
        }
        let registry = KeyedRegistry::new(self.max_keys, self.idle)
            .owned_by("bulkhead", self.settings.name().clone());
        Ok(KeyedBulkheadLayer {
            shared: Arc::new(KeyedShared {
                key: self.key,
                settings: self.settings,
                registry,
            }),
        })
    }
}

impl<K, F> KeyedBulkheadLayerBuilder<K, F> {
    /// A builder with the settings of `single` (permits, waiting, name),
    /// chosen by `key`, with the default key bounds.
    pub(crate) fn from_single(single: super::BulkheadLayerBuilder, key: F) -> Self {
        Self {
            key,
            settings: single.settings,
            max_keys: DEFAULT_MAX_KEYS,
            idle: Some(DEFAULT_IDLE),
            _key: std::marker::PhantomData,
        }
    }

    /// The name set so far.
    pub(crate) fn name_set(&self) -> &str {
        self.settings.name()
    }
}

impl<K, F> fmt::Debug for KeyedBulkheadLayerBuilder<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkheadLayerBuilder")
            .field("settings", &self.settings)
            .field("max_keys", &self.max_keys)
            .field("idle", &self.idle)
            .finish()
    }
}

/// Caps the calls in flight per key of the request. Made by
/// [`KeyedBulkheadLayer`].
pub struct KeyedBulkhead<S, K, F> {
    inner: S,
    shared: Arc<KeyedShared<K, F>>,
}

impl<S, K, F> KeyedBulkhead<S, K, F> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &KeyedBulkheadLayer<K, F>) -> Self
    where
        KeyedBulkheadLayer<K, F>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, K, F> KeyedBulkhead<S, K, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A view of the bulkheads of every key.
    pub fn handle(&self) -> KeyedBulkheadHandle<K> {
        KeyedBulkheadHandle {
            registry: self.shared.registry.clone(),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the bulkhead.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F> Clone for KeyedBulkhead<S, K, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for KeyedBulkhead<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBulkhead")
            .field("inner", &self.inner)
            .field("registry", &self.shared.registry)
            .finish()
    }
}

impl<S, K, F, Req> Service<Req> for KeyedBulkhead<S, K, F>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    F: KeyOf<Req, Key = K>,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let bulkhead = {
            let key = self.shared.key.key_of(&request);
            self.shared.bulkhead_by(&key)
        };
        admit(&bulkhead, &mut self.inner, request)
    }
}

/// A cloneable view of a keyed bulkhead's per-key bulkheads.
pub struct KeyedBulkheadHandle<K> {
    registry: KeyedRegistry<K, Lane<Shared>>,
}

impl<K> KeyedBulkheadHandle<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The bulkhead of `key`, if the key has one now (nothing is made for
    /// a key never called).
    pub fn get(&self, key: &K) -> Option<BulkheadHandle> {
        self.registry
            .get(key)
            .map(|lane| BulkheadHandle::new(lane.to_arc()))
    }

    /// How many keys have a bulkhead (an estimate while evictions are
    /// pending).
    pub fn len(&self) -> u64 {
        self.registry.len()
    }

    /// Whether no key has a bulkhead.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys that have a bulkhead at once.
    pub fn max_keys(&self) -> u64 {
        self.registry.max_keys()
    }

    /// Every key that has a bulkhead now, with a handle on it.
    pub fn handles(&self) -> Vec<(K, BulkheadHandle)> {
        self.registry
            .entries()
            .into_iter()
            .map(|(key, lane)| (key, BulkheadHandle::new(lane.to_arc())))
            .collect()
    }

    /// Applies pending evictions now, so that [`len`](Self::len) is exact.
    pub fn run_pending_tasks(&self) {
        self.registry.run_pending_tasks();
    }
}

impl<K> Clone for KeyedBulkheadHandle<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedBulkheadHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyedBulkheadHandle")
            .field(&self.registry)
            .finish()
    }
}
