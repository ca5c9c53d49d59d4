//! One adaptive limiter per key (per host, per route), with a bounded
//! number of keys.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::{Settings, settings_methods};
use super::state::Node;
use super::{AdaptiveHandle, admit};
use crate::BoxError;
use crate::classify::{Classify, DefaultClassifier};
use crate::error::{ConfigError, check};
use crate::keyed::{
    DEFAULT_IDLE, DEFAULT_MAX_KEYS, KeyOf, KeyedRegistry, LookupKey, OVERFLOW_KEY, key_name,
};

/// Applies a [`KeyedAdaptive`] limiter: one limiter per key of the request,
/// each with the same settings, for at most `max_keys` keys.
///
/// Built with [`KeyedAdaptiveLayer::builder`], which takes the function that
/// gives a request's key. Every service this layer makes shares one
/// registry of limiters. When every place in the registry is held by calls
/// in flight, a new key shares one overflow limiter with the other keys
/// that found it full: it is never let through unlimited.
pub struct KeyedAdaptiveLayer<K, F, C = DefaultClassifier> {
    shared: Arc<KeyedShared<K, F, C>>,
}

struct KeyedShared<K, F, C> {
    key: F,
    settings: Settings,
    classifier: C,
    registry: KeyedRegistry<K, Node<C>>,
    overflow: Arc<Node<C>>,
}

impl<K, F> KeyedAdaptiveLayer<K, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A builder whose limiters are chosen by `key`, a function of the
    /// request, with the defaults of
    /// [`AdaptiveLayer::builder`](super::AdaptiveLayer::builder), at most
    /// 10,000 keys, keys idle for 10 minutes dropped (the defaults of every
    /// keyed layer).
    pub fn builder<Req>(key: F) -> KeyedAdaptiveLayerBuilder<K, F>
    where
        F: Fn(&Req) -> K,
    {
        KeyedAdaptiveLayerBuilder {
            key,
            settings: Settings::default(),
            classifier: DefaultClassifier,
            max_keys: DEFAULT_MAX_KEYS,
            idle: Some(DEFAULT_IDLE),
            _key: std::marker::PhantomData,
        }
    }
}

impl<K, F, C> KeyedAdaptiveLayer<K, F, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// A view of the limiters of every key.
    pub fn handle(&self) -> KeyedAdaptiveHandle<K, C> {
        KeyedAdaptiveHandle {
            registry: self.shared.registry.clone(),
            overflow: Arc::clone(&self.shared.overflow),
        }
    }

    /// The limiter of `key`, if the key has one now (nothing is made for
    /// a key never called).
    pub fn get(&self, key: &K) -> Option<AdaptiveHandle> {
        self.handle().get(key)
    }

    /// Every key that has a limiter now, with a handle on it.
    pub fn handles(&self) -> Vec<(K, AdaptiveHandle)> {
        self.handle().handles()
    }

    /// How many keys have a limiter (an estimate while evictions are
    /// pending).
    pub fn len(&self) -> u64 {
        self.shared.registry.len()
    }

    /// Whether no key has a limiter.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys that have a limiter at once.
    pub fn max_keys(&self) -> u64 {
        self.shared.registry.max_keys()
    }

    /// Applies pending evictions now, so that [`len`](Self::len) is exact.
    pub fn run_pending_tasks(&self) {
        self.shared.registry.run_pending_tasks();
    }
}

impl<K, F, C> Clone for KeyedAdaptiveLayer<K, F, C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, K, F, C> Layer<S> for KeyedAdaptiveLayer<K, F, C> {
    type Service = KeyedAdaptive<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedAdaptive {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedAdaptiveLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAdaptiveLayer")
            .field("settings", &self.shared.settings)
            .field("registry", &self.shared.registry)
            .finish()
    }
}

/// Settings of a keyed adaptive limiter, checked by
/// [`build`](KeyedAdaptiveLayerBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use steadfast::adaptive::KeyedAdaptiveLayer;
///
/// let per_host = KeyedAdaptiveLayer::builder(|host: &String| host.clone())
///     .limits(2, 200)
///     .initial_limit(10)
///     .max_keys(64)
///     .idle(Some(Duration::from_secs(300)))
///     .name("per_host")
///     .build()?;
/// assert_eq!(per_host.handle().max_keys(), 64);
///
/// let err = KeyedAdaptiveLayer::builder(|host: &String| host.clone()).max_keys(0).build().unwrap_err();
/// assert_eq!(err.field(), "adaptive.max_keys");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct KeyedAdaptiveLayerBuilder<K, F, C = DefaultClassifier> {
    key: F,
    settings: Settings,
    classifier: C,
    max_keys: u64,
    idle: Option<Duration>,
    _key: std::marker::PhantomData<fn() -> K>,
}

impl<K, F, C> KeyedAdaptiveLayerBuilder<K, F, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    settings_methods!();

    /// Judges calls with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> KeyedAdaptiveLayerBuilder<K, F, C2> {
        KeyedAdaptiveLayerBuilder {
            key: self.key,
            settings: self.settings,
            classifier,
            max_keys: self.max_keys,
            idle: self.idle,
            _key: std::marker::PhantomData,
        }
    }

    /// The most keys that have a limiter at once (default 10,000, as for
    /// every keyed layer). Beyond
    /// it the least used keys are dropped. Must be at least 1.
    pub fn max_keys(mut self, max_keys: u64) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Drops the limiter of a key that saw no call for `idle` (default 10
    /// minutes; the key goes within two such periods); `None` keeps keys
    /// until `max_keys` needs room. A limiter with calls in flight is never
    /// dropped.
    pub fn idle(mut self, idle: Option<Duration>) -> Self {
        self.idle = idle;
        self
    }

    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// As [`AdaptiveLayerBuilder::build`](super::AdaptiveLayerBuilder::build),
    /// and `adaptive.max_keys` or `adaptive.idle` zero.
    pub fn build(self) -> Result<KeyedAdaptiveLayer<K, F, C>, ConfigError> {
        self.settings.check()?;
        check::at_least("adaptive.max_keys", self.max_keys, 1)?;
        if let Some(idle) = self.idle {
            check::positive("adaptive.idle", idle)?;
        }
        let mut overflow = self.settings.clone();
        overflow.name_overflow();
        let overflow = overflow.limiter().with_key(OVERFLOW_KEY.into());
        Ok(KeyedAdaptiveLayer {
            shared: Arc::new(KeyedShared {
                key: self.key,
                overflow: Arc::new(Node::new(overflow, self.classifier.clone())),
                settings: self.settings,
                classifier: self.classifier,
                registry: KeyedRegistry::new(self.max_keys, self.idle),
            }),
        })
    }
}

impl<K, F, C> fmt::Debug for KeyedAdaptiveLayerBuilder<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAdaptiveLayerBuilder")
            .field("settings", &self.settings)
            .field("max_keys", &self.max_keys)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// Adapts the calls in flight per key of the request. Made by
/// [`KeyedAdaptiveLayer`].
pub struct KeyedAdaptive<S, K, F, C = DefaultClassifier> {
    inner: S,
    shared: Arc<KeyedShared<K, F, C>>,
}

impl<S, K, F, C> KeyedAdaptive<S, K, F, C> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &KeyedAdaptiveLayer<K, F, C>) -> Self
    where
        KeyedAdaptiveLayer<K, F, C>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, K, F, C> KeyedAdaptive<S, K, F, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// A view of the limiters of every key.
    pub fn handle(&self) -> KeyedAdaptiveHandle<K, C> {
        KeyedAdaptiveHandle {
            registry: self.shared.registry.clone(),
            overflow: Arc::clone(&self.shared.overflow),
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

    /// The inner service, consuming the limiter.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F, C> Clone for KeyedAdaptive<S, K, F, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedAdaptive<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedAdaptive")
            .field("inner", &self.inner)
            .field("registry", &self.shared.registry)
            .finish()
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedAdaptive<S, K, F, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    F: KeyOf<Req, Key = K>,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Classify<Req, S::Response, S::Error> + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, C::Facts>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let node = {
            let key = self.shared.key.key_of(&request);
            self.shared.node_by(&key)
        };
        admit(&node, &mut self.inner, request)
    }
}

impl<K, F, C> KeyedShared<K, F, C>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    /// The limiter of the key `key` reads: its own (naming its key in its
    /// events, formatted once here), or the shared overflow limiter when
    /// the registry had no room for it.
    #[inline]
    fn node_by<Q: LookupKey<K>>(&self, key: &Q) -> Arc<Node<C>> {
        self.registry.get_or_insert_by(key, |key| match key {
            Some(key) => Node::new(
                self.settings.limiter().with_key(key_name(key)),
                self.classifier.clone(),
            ),
            // Every place is held: a fresh limiter would know nothing of
            // the load, so the key shares the overflow limiter.
            None => Node {
                limiter: Arc::clone(&self.overflow.limiter),
                classifier: self.classifier.clone(),
            },
        })
    }
}

/// A cloneable view of a keyed adaptive limiter's per-key limiters.
pub struct KeyedAdaptiveHandle<K, C = DefaultClassifier> {
    registry: KeyedRegistry<K, Node<C>>,
    overflow: Arc<Node<C>>,
}

impl<K, C> KeyedAdaptiveHandle<K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Send + Sync + 'static,
{
    /// The limiter of `key`, if the key has one now (nothing is made for
    /// a key never called).
    pub fn get(&self, key: &K) -> Option<AdaptiveHandle> {
        self.registry
            .get(key)
            .map(|node| AdaptiveHandle::new(Arc::clone(&node.limiter)))
    }

    /// The limiter shared by keys that found the registry full.
    pub fn overflow(&self) -> AdaptiveHandle {
        AdaptiveHandle::new(Arc::clone(&self.overflow.limiter))
    }

    /// How many keys have a limiter.
    pub fn len(&self) -> u64 {
        self.registry.len()
    }

    /// Whether no key has a limiter.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys that have a limiter at once.
    pub fn max_keys(&self) -> u64 {
        self.registry.max_keys()
    }

    /// Every key that has a limiter now, with a handle on it.
    pub fn handles(&self) -> Vec<(K, AdaptiveHandle)> {
        self.registry
            .entries()
            .into_iter()
            .map(|(key, node)| (key, AdaptiveHandle::new(Arc::clone(&node.limiter))))
            .collect()
    }

    /// Applies pending evictions now, so that [`len`](Self::len) is exact.
    pub fn run_pending_tasks(&self) {
        self.registry.run_pending_tasks();
    }
}

impl<K, C> Clone for KeyedAdaptiveHandle<K, C> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            overflow: Arc::clone(&self.overflow),
        }
    }
}

impl<K, C> fmt::Debug for KeyedAdaptiveHandle<K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyedAdaptiveHandle")
            .field(&self.registry)
            .finish()
    }
}
