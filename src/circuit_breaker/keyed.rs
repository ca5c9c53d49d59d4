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
use crate::keyed::{KeyedRegistry, OVERFLOW_KEY};

/// The keyed breaker's mode of [`CircuitBreakerBuilder`]: the key function
/// `F` (`()` until [`key`](CircuitBreakerBuilder::key) is called), the
/// number of keys and their idle timeout.
#[derive(Debug, Clone)]
pub struct Keyed<F = (), K = ()> {
    key: F,
    max_keys: u64,
    idle: Option<Duration>,
    _key: PhantomData<fn() -> K>,
}

impl<C> CircuitBreakerBuilder<C, Keyed> {
    /// Derives each request's key: its breaker is the key's own.
    ///
    /// Give the closure's argument type (`|req: &Request<Body>| ...`) or
    /// pass a `fn`.
    pub fn key<Req, K, F>(self, key: F) -> CircuitBreakerBuilder<C, Keyed<F, K>>
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

impl<C, F, K> CircuitBreakerBuilder<C, Keyed<F, K>> {
    /// The most keys kept at once (default 10,000); beyond it the least
    /// used keys lose their breakers. When every kept key is held, new keys
    /// share one overflow breaker.
    pub fn max_keys(mut self, max_keys: u64) -> Self {
        self.mode.max_keys = max_keys;
        self
    }

    /// Drops a key's breaker once it has seen no call for `idle` (it goes
    /// within two such periods; default: kept until the key count needs
    /// room). A breaker with calls in flight is never dropped.
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.mode.idle = Some(idle);
        self
    }
}

impl<C, F, K> CircuitBreakerBuilder<C, Keyed<F, K>>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    /// Checks the settings and makes the layer.
    ///
    /// Only available once [`key`](Self::key) was given.
    pub fn build(self) -> Result<KeyedCircuitBreakerLayer<F, K, C>, ConfigError> {
        let settings = self.settings()?;
        let max_keys = check::at_least("circuit_breaker.max_keys", self.mode.max_keys, 1)?;
        let idle = self
            .mode
            .idle
            .map(|idle| check::positive("circuit_breaker.idle_timeout", idle))
            .transpose()?;
        Ok(KeyedCircuitBreakerLayer {
            shared: Arc::new(KeyedShared {
                registry: KeyedRegistry::new(max_keys, idle)
                    .owned_by("circuit_breaker", settings.name.clone()),
                key: self.mode.key,
                settings,
                classifier: self.classifier,
            }),
        })
    }
}

struct KeyedShared<F, K, C> {
    registry: KeyedRegistry<K, Shared<C>>,
    key: F,
    settings: Settings,
    classifier: C,
}

impl<F, K, C> KeyedShared<F, K, C>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    fn breaker(&self, key: &K) -> Arc<Shared<C>> {
        self.registry.get_or_insert_with(key, |key| Shared {
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

/// A key as events, metric labels and snapshots name it: its `Debug`
/// form, without the quotes of a string key (`api.example`, not
/// `"api.example"`). The empty string keeps them, to differ from the
/// empty key label of an unkeyed breaker.
fn key_name<K: fmt::Debug>(key: &K) -> Box<str> {
    let name = format!("{key:?}");
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(unquoted) if !unquoted.is_empty() => unquoted.into(),
        _ => name.into(),
    }
}

/// Wraps services in a [`KeyedCircuitBreaker`]: each key a function derives
/// from the request gets its own breaker, all with the same settings.
///
/// Every service it makes, and every clone of it, shares the same breakers.
/// At most [`max_keys`](CircuitBreakerBuilder::max_keys) keys are kept;
/// when room is needed, keys unused since the last sweep, or idle for
/// [`idle_timeout`](CircuitBreakerBuilder::idle_timeout), lose their breaker
/// and start afresh (closed) on their next call; a key in steady use keeps
/// its breaker however many one-off keys arrive. A key held by a call in
/// flight or a handle is never dropped; when every kept key is held, a new
/// key shares one overflow breaker (key `(overflow)`) with every other key
/// that found no room, so protection never turns off, and an
/// [`Event::KeyOverflow`](crate::observe::Event::KeyOverflow) is reported.
pub struct KeyedCircuitBreakerLayer<F, K, C = DefaultClassifier> {
    shared: Arc<KeyedShared<F, K, C>>,
}

impl KeyedCircuitBreakerLayer<(), ()> {
    /// Starts a builder with the default settings and classifier; give it a
    /// [`key`](CircuitBreakerBuilder::key) before building.
    pub fn builder() -> CircuitBreakerBuilder<DefaultClassifier, Keyed> {
        CircuitBreakerBuilder::with_mode(Keyed {
            key: (),
            max_keys: 10_000,
            idle: None,
            _key: PhantomData,
        })
    }
}

impl<F, K, C> KeyedCircuitBreakerLayer<F, K, C>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    /// A handle on `key`'s breaker, made (closed) if the key has none yet.
    ///
    /// The handle keeps that breaker alive, but once the key is evicted its
    /// next call gets a fresh breaker that the handle does not see.
    pub fn handle(&self, key: &K) -> CircuitBreakerHandle {
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

    /// Applies pending evictions now, so that [`len`](Self::len) is exact.
    pub fn run_pending_evictions(&self) {
        self.shared.registry.run_pending_tasks();
    }
}

impl<S, F, K, C> Layer<S> for KeyedCircuitBreakerLayer<F, K, C> {
    type Service = KeyedCircuitBreaker<S, F, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker {
            inner,
            shared: self.shared.clone(),
        }
    }
}

impl<F, K, C> Clone for KeyedCircuitBreakerLayer<F, K, C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<F, K, C> fmt::Debug for KeyedCircuitBreakerLayer<F, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("name", &self.shared.settings.name)
            .field("registry", &self.shared.registry)
            .finish()
    }
}

/// A service with one circuit breaker per key; made by
/// [`KeyedCircuitBreakerLayer`].
pub struct KeyedCircuitBreaker<S, F, K, C = DefaultClassifier> {
    inner: S,
    shared: Arc<KeyedShared<F, K, C>>,
}

impl<S, F, K, C> KeyedCircuitBreaker<S, F, K, C> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &KeyedCircuitBreakerLayer<F, K, C>) -> Self
    where
        KeyedCircuitBreakerLayer<F, K, C>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, F, K, C> KeyedCircuitBreaker<S, F, K, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the breaker, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, F, K, C> Clone for KeyedCircuitBreaker<S, F, K, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, F, K, C> fmt::Debug for KeyedCircuitBreaker<S, F, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("inner", &self.inner)
            .field("registry", &self.shared.registry)
            .finish()
    }
}

impl<S, F, K, C, Req> Service<Req> for KeyedCircuitBreaker<S, F, K, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    F: Fn(&Req) -> K,
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Classify<Req, S::Response, S::Error> + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C, C::Facts>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = (self.shared.key)(&request);
        let shared = self.shared.breaker(&key);
        call_through(
            &mut self.inner,
            &shared,
            || Holder::Entry(shared.clone()),
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
