//! One breaker per key (host, route, tenant), with a bounded number of keys.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::call_through;
use super::config::{CircuitBreakerBuilder, Settings};
use super::future::ResponseFuture;
use super::handle::{CircuitBreakerHandle, Holder, Shared};
use super::state::Breaker;
use crate::BoxError;
use crate::classify::{Classify, DefaultClassifier};
use crate::error::{ConfigError, check};
use crate::keyed::{
    DEFAULT_IDLE, DEFAULT_MAX_KEYS, KeyOf, KeyedRegistry, LookupKey, OVERFLOW_KEY, key_name,
};

/// The keyed breaker's mode of [`CircuitBreakerBuilder`]: the key function
/// `F` (`()` until [`key`](CircuitBreakerBuilder::key) is called), the
/// number of keys and their idle timeout.
#[derive(Debug, Clone)]
pub struct Keyed<K = (), F = ()> {
    key: F,
    max_keys: u64,
    idle: Option<Duration>,
    _key: PhantomData<fn() -> K>,
}

impl<K, F> Keyed<K, F> {
    /// The mode with key function `key` and these bounds.
    pub(crate) fn new(key: F, max_keys: u64, idle: Option<Duration>) -> Self {
        Self {
            key,
            max_keys,
            idle,
            _key: PhantomData,
        }
    }
}

impl<C> CircuitBreakerBuilder<C, Keyed> {
    /// Derives each request's key: its breaker is the key's own.
    ///
    /// Give the closure's argument type (`|req: &Request<Body>| ...`) or
    /// pass a `fn`.
    pub fn key<Req, K, F>(self, key: F) -> CircuitBreakerBuilder<C, Keyed<K, F>>
    where
        F: Fn(&Req) -> K,
    {
        let (max_keys, idle) = (self.mode.max_keys, self.mode.idle);
        self.with_other_mode(Keyed {
            key,
            max_keys,
            idle,
            _key: PhantomData,
        })
        .0
    }
}

impl<C> CircuitBreakerBuilder<C, Keyed> {
    /// One breaker per host and port of the request
    /// ([`ByHost`](crate::http::ByHost)), looked up without allocating.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn by_host(
        self,
    ) -> CircuitBreakerBuilder<C, Keyed<crate::http::HostKey, crate::http::ByHost>> {
        let (max_keys, idle) = (self.mode.max_keys, self.mode.idle);
        self.with_other_mode(Keyed {
            key: crate::http::ByHost,
            max_keys,
            idle,
            _key: PhantomData,
        })
        .0
    }
}

impl<C, K, F> CircuitBreakerBuilder<C, Keyed<K, F>> {
    /// The most keys kept at once (default 10,000, as for every keyed
    /// layer); beyond it the least used keys lose their breakers. When
    /// every kept key is held, new keys share one overflow breaker.
    pub fn max_keys(mut self, max_keys: u64) -> Self {
        self.mode.max_keys = max_keys;
        self
    }

    /// Drops a key's breaker once it has seen no call for `idle` (it goes
    /// within two such periods; default 10 minutes, as for every keyed
    /// layer); `None` keeps keys until `max_keys` needs room. A breaker
    /// with calls in flight, or held by a handle, is never dropped.
    pub fn idle(mut self, idle: Option<Duration>) -> Self {
        self.mode.idle = idle;
        self
    }
}

impl<C, K, F> CircuitBreakerBuilder<C, Keyed<K, F>>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    /// Checks the settings and makes the layer.
    ///
    /// Only available once [`key`](Self::key) was given.
    pub fn build(self) -> Result<KeyedCircuitBreakerLayer<K, F, C>, ConfigError> {
        let settings = self.settings()?;
        let max_keys = check::at_least("circuit_breaker.max_keys", self.mode.max_keys, 1)?;
        let idle = self
            .mode
            .idle
            .map(|idle| check::positive("circuit_breaker.idle", idle))
            .transpose()?;
        Ok(KeyedCircuitBreakerLayer {
            shared: Arc::new(KeyedShared {
                registry: KeyedRegistry::new(max_keys, idle)
                    .owned_by("circuit_breaker", settings.name.clone())
                    .on_evict(|_, shared: &Shared<C>| shared.breaker.forget_gauges()),
                key: self.mode.key,
                settings,
                classifier: self.classifier,
            }),
        })
    }
}

struct KeyedShared<K, F, C> {
    registry: KeyedRegistry<K, Shared<C>>,
    key: F,
    settings: Settings,
    classifier: C,
}

impl<K, F, C> KeyedShared<K, F, C>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    fn breaker(&self, key: &K) -> Arc<Shared<C>> {
        self.breaker_by(key)
    }

    #[inline]
    fn breaker_by<Q: LookupKey<K>>(&self, key: &Q) -> Arc<Shared<C>> {
        self.registry.get_or_insert_by(key, |key| Shared {
            // The breaker shared by keys that found the registry full
            // reports the key `(overflow)`.
            breaker: Breaker::new(
                self.settings.clone(),
                Some(key.map_or_else(|| OVERFLOW_KEY.into(), key_name)),
            ),
            classifier: self.classifier.clone(),
        })
    }
}

/// Wraps services in a [`KeyedCircuitBreaker`]: each key a function derives
/// from the request gets its own breaker, all with the same settings.
///
/// Every service it makes, and every clone of it, shares the same breakers.
/// At most [`max_keys`](CircuitBreakerBuilder::max_keys) keys are kept;
/// when room is needed, keys unused since the last sweep, or idle for
/// [`idle`](CircuitBreakerBuilder::idle), lose their breaker
/// and start afresh (closed) on their next call; a key in steady use keeps
/// its breaker however many one-off keys arrive. A key held by a call in
/// flight or a handle is never dropped; when every kept key is held, a new
/// key shares one overflow breaker (key `(overflow)`) with every other key
/// that found no room, so protection never turns off, and an
/// [`Event::KeyOverflow`](crate::event::Event::KeyOverflow) is reported.
pub struct KeyedCircuitBreakerLayer<K, F, C = DefaultClassifier> {
    shared: Arc<KeyedShared<K, F, C>>,
}

impl KeyedCircuitBreakerLayer<(), ()> {
    /// Starts a builder with the default settings and classifier; give it a
    /// [`key`](CircuitBreakerBuilder::key) before building.
    pub fn builder() -> CircuitBreakerBuilder<DefaultClassifier, Keyed> {
        CircuitBreakerBuilder::with_mode(Keyed {
            key: (),
            max_keys: DEFAULT_MAX_KEYS,
            idle: Some(DEFAULT_IDLE),
            _key: PhantomData,
        })
    }
}

impl<K, F, C> KeyedCircuitBreakerLayer<K, F, C>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    /// A handle on `key`'s breaker, if the key has one now: nothing is
    /// made for a key never called.
    ///
    /// The handle keeps that breaker alive (its key is not evicted while
    /// the handle lives).
    pub fn get(&self, key: &K) -> Option<CircuitBreakerHandle> {
        self.shared
            .registry
            .get(key)
            .map(|shared| CircuitBreakerHandle::new(shared))
    }

    /// A handle on `key`'s breaker, made (closed) if the key has none yet,
    /// for example to force a key open before its first call.
    ///
    /// The handle keeps that breaker alive (its key is not evicted while
    /// the handle lives).
    pub fn get_or_insert(&self, key: &K) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.shared.breaker(key))
    }

    /// Every key that has a breaker now, with a handle on it.
    pub fn handles(&self) -> Vec<(K, CircuitBreakerHandle)> {
        self.shared
            .registry
            .entries()
            .into_iter()
            .map(|(key, shared)| (key, CircuitBreakerHandle::new(shared)))
            .collect()
    }

    /// How many keys have a breaker (an estimate while evictions are
    /// pending).
    pub fn len(&self) -> u64 {
        self.shared.registry.len()
    }

    /// Whether no key has a breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys that have a breaker at once.
    pub fn max_keys(&self) -> u64 {
        self.shared.registry.max_keys()
    }

    /// Applies pending evictions now, so that [`len`](Self::len) is exact.
    pub fn run_pending_tasks(&self) {
        self.shared.registry.run_pending_tasks();
    }
}

impl<S, K, F, C> Layer<S> for KeyedCircuitBreakerLayer<K, F, C> {
    type Service = KeyedCircuitBreaker<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        if !self.shared.settings.listeners.is_empty() {
            crate::event::context::listeners_layered();
        }
        KeyedCircuitBreaker {
            inner,
            shared: self.shared.clone(),
        }
    }
}

impl<K, F, C> Clone for KeyedCircuitBreakerLayer<K, F, C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedCircuitBreakerLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("name", &self.shared.settings.name)
            .field("registry", &self.shared.registry)
            .finish()
    }
}

/// A service with one circuit breaker per key; made by
/// [`KeyedCircuitBreakerLayer`].
pub struct KeyedCircuitBreaker<S, K, F, C = DefaultClassifier> {
    inner: S,
    shared: Arc<KeyedShared<K, F, C>>,
}

impl<S, K, F, C> KeyedCircuitBreaker<S, K, F, C> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &KeyedCircuitBreakerLayer<K, F, C>) -> Self
    where
        KeyedCircuitBreakerLayer<K, F, C>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, K, F, C> KeyedCircuitBreaker<S, K, F, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the breaker, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, K, F, C> Clone for KeyedCircuitBreaker<S, K, F, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedCircuitBreaker<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("inner", &self.inner)
            .field("registry", &self.shared.registry)
            .finish()
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedCircuitBreaker<S, K, F, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    F: KeyOf<Req, Key = K>,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Classify<Req, S::Response, S::Error> + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, C::Facts, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = {
            let key = self.shared.key.key_of(&request);
            self.shared.breaker_by(&key)
        };
        call_through(
            &mut self.inner,
            &shared,
            || (Holder::Entry(shared.clone()), super::window::lane_slot()),
            request,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::key_name;

    #[test]
    fn keys_are_named_by_their_debug_form_without_string_quotes() {
        assert_eq!(&*key_name(&"api.example"), "api.example");
        assert_eq!(&*key_name(&String::from("tenant-7")), "tenant-7");
        assert_eq!(&*key_name(&42_u16), "42");
        assert_eq!(&*key_name(&("a", 1)), "(\"a\", 1)");
        assert_eq!(&*key_name(&""), "\"\"");
    }
}
