//! The breaker and bulkhead levels: none, one shared by every call, or
//! one per key.

use super::*;

/// The bulkhead level of a [`Policy`]: one bulkhead or none
/// (`Option<BulkheadLayer>`, a [`Level`] either way) or one per key
/// ([`KeyedBulkheadLayer`]).
pub trait BulkheadLevel {
    /// The service the level makes over `S`.
    type Service<S>;

    /// Wraps `service` in the level.
    fn layer_level<S>(&self, service: S) -> Self::Service<S>;
    /// The one bulkhead, if the level is one and is on.
    fn single(&self) -> Option<BulkheadHandle>;
    /// Every bulkhead there is now.
    fn all(&self) -> Vec<BulkheadHandle>;
}

impl BulkheadLevel for Option<BulkheadLayer> {
    type Service<S> = Level<Bulkhead<S>, S>;

    fn layer_level<S>(&self, service: S) -> Level<Bulkhead<S>, S> {
        Level::new(self.as_ref(), service)
    }

    fn single(&self) -> Option<BulkheadHandle> {
        self.as_ref().map(BulkheadLayer::handle)
    }

    fn all(&self) -> Vec<BulkheadHandle> {
        self.single().into_iter().collect()
    }
}

impl<K, Fk> BulkheadLevel for KeyedBulkheadLayer<K, Fk>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    type Service<S> = KeyedBulkhead<S, K, Fk>;

    fn layer_level<S>(&self, service: S) -> KeyedBulkhead<S, K, Fk> {
        self.layer(service)
    }

    fn single(&self) -> Option<BulkheadHandle> {
        None
    }

    fn all(&self) -> Vec<BulkheadHandle> {
        self.handle()
            .handles()
            .into_iter()
            .map(|(_, handle)| handle)
            .collect()
    }
}

/// The bulkhead setting of a [`PolicyBuilder`]: one bulkhead ([`Unkeyed`],
/// set with [`bulkhead`](PolicyBuilder::bulkhead)) or one per key
/// ([`PerKey`], set with [`bulkhead_per`](PolicyBuilder::bulkhead_per)).
pub trait BulkheadSetting {
    /// The level built.
    type Layer;

    /// Builds the level; `single` is the one bulkhead's settings, if any.
    fn build_level(
        self,
        single: Option<BulkheadLayerBuilder>,
        name: Option<Cow<'static, str>>,
    ) -> Result<Self::Layer, ConfigError>;
}

impl BulkheadSetting for Unkeyed {
    type Layer = Option<BulkheadLayer>;

    fn build_level(
        self,
        single: Option<BulkheadLayerBuilder>,
        name: Option<Cow<'static, str>>,
    ) -> Result<Self::Layer, ConfigError> {
        single
            .map(|bulkhead| match (name, bulkhead.name_set()) {
                (Some(name), "bulkhead") => bulkhead.name(name),
                _ => bulkhead,
            })
            .map(BulkheadLayerBuilder::build)
            .transpose()
    }
}

/// The breaker level of a [`Policy`]: one breaker or none
/// (`Optional<CircuitBreakerLayer>`) or one per key
/// ([`KeyedCircuitBreakerLayer`]).
pub trait BreakerLevel {
    /// The one breaker, if the level is one and is on.
    fn single(&self) -> Option<CircuitBreakerHandle>;
    /// Every breaker there is now.
    fn all(&self) -> Vec<CircuitBreakerHandle>;
}

impl<C: Send + Sync + 'static> BreakerLevel for Optional<CircuitBreakerLayer<C>> {
    fn single(&self) -> Option<CircuitBreakerHandle> {
        self.get().map(CircuitBreakerLayer::handle)
    }

    fn all(&self) -> Vec<CircuitBreakerHandle> {
        self.single().into_iter().collect()
    }
}

impl<K, Fk, C> BreakerLevel for KeyedCircuitBreakerLayer<K, Fk, C>
where
    K: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    fn single(&self) -> Option<CircuitBreakerHandle> {
        None
    }

    fn all(&self) -> Vec<CircuitBreakerHandle> {
        self.handles()
            .into_iter()
            .map(|(_, handle)| handle)
            .collect()
    }
}

/// The breaker setting of a [`PolicyBuilder`]: one breaker ([`Unkeyed`],
/// set with [`circuit_breaker`](PolicyBuilder::circuit_breaker)) or one
/// per key ([`PerKey`], set with
/// [`circuit_breaker_per`](PolicyBuilder::circuit_breaker_per)).
pub trait BreakerSetting<C> {
    /// The level built.
    type Layer;

    /// Builds the level; `single` is the one breaker's settings, if any.
    fn build_level(
        self,
        single: Option<CircuitBreakerBuilder>,
        classifier: C,
        name: Option<Cow<'static, str>>,
    ) -> Result<Self::Layer, ConfigError>;

    /// The time window the breaker judges, for the check against the
    /// attempt timeout.
    fn time_window_span(&self, single: Option<&CircuitBreakerBuilder>) -> Option<Duration>;
}

/// One breaker (or bulkhead) for every call of a policy, or none: the
/// [`BreakerSetting`] of a [`PolicyBuilder`] until
/// [`circuit_breaker_per`](PolicyBuilder::circuit_breaker_per), and its
/// [`BulkheadSetting`] until [`bulkhead_per`](PolicyBuilder::bulkhead_per).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unkeyed;

/// A breaker or a bulkhead per key in a [`Policy`]: what a request's key
/// is, and how many keys are kept; the [`BreakerSetting`] of
/// [`circuit_breaker_per`](PolicyBuilder::circuit_breaker_per) and the
/// [`BulkheadSetting`] of [`bulkhead_per`](PolicyBuilder::bulkhead_per).
///
/// Each key's breaker (bulkhead) has the settings of the policy's one
/// breaker (bulkhead), as set with `circuit_breaker(..)` or
/// `circuit_breaker_with(..)`, so that a preset keeps its settings when it
/// goes per key. The bounds are those of every keyed layer: at most
/// [`max_keys`](Self::max_keys) keys (default 10,000), a key idle for
/// [`idle`](Self::idle) dropped (default 10 minutes); beyond them keys that
/// find no room share one overflow state, so protection never turns off.
pub struct PerKey<K, F> {
    key: F,
    max_keys: u64,
    idle: Option<Duration>,
    _key: PhantomData<fn() -> K>,
}

/// One breaker or bulkhead per host and port ([`ByHost`]): the HTTP
/// presets' setting.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub type PerHost = PerKey<HostKey, ByHost>;

impl PerKey<(), ()> {
    /// Keyed by `key`, a function of the request (`|req: &Request| ..`
    /// with its argument type, or a `fn`), or anything that is a
    /// [`KeyOf`](crate::KeyOf) the request.
    pub fn new<Req, K, F>(key: F) -> PerKey<K, F>
    where
        F: Fn(&Req) -> K,
    {
        PerKey::key_of(key)
    }

    /// Keyed by `key`, a [`KeyOf`](crate::KeyOf) whose stored key is `K`.
    pub fn key_of<K, F>(key: F) -> PerKey<K, F> {
        PerKey {
            key,
            max_keys: DEFAULT_MAX_KEYS,
            idle: Some(DEFAULT_IDLE),
            _key: PhantomData,
        }
    }

    /// Keyed by the host and port of the request ([`ByHost`]), looked up
    /// without allocating.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn host() -> PerHost {
        PerKey::key_of(ByHost)
    }
}

impl<K, F> PerKey<K, F> {
    /// The most keys kept at once (default 10,000; at least 1, checked at
    /// `build()`).
    pub fn max_keys(mut self, max_keys: u64) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Drops a key that saw no call for `idle` (default 10 minutes; within
    /// two such periods); `None` keeps keys until `max_keys` needs room.
    pub fn idle(mut self, idle: Option<Duration>) -> Self {
        self.idle = idle;
        self
    }
}

impl<K, F: Clone> Clone for PerKey<K, F> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            max_keys: self.max_keys,
            idle: self.idle,
            _key: PhantomData,
        }
    }
}

impl<K, F> fmt::Debug for PerKey<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerKey")
            .field("key", &std::any::type_name::<F>())
            .field("max_keys", &self.max_keys)
            .field("idle", &self.idle)
            .finish()
    }
}

impl<C, K, Fk> BreakerSetting<C> for PerKey<K, Fk>
where
    K: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    C: Clone + Send + Sync + 'static,
{
    type Layer = KeyedCircuitBreakerLayer<K, Fk, C>;

    fn build_level(
        self,
        single: Option<CircuitBreakerBuilder>,
        classifier: C,
        name: Option<Cow<'static, str>>,
    ) -> Result<Self::Layer, ConfigError> {
        let single = single.unwrap_or_else(CircuitBreakerLayer::builder);
        let (breaker, _) = single.with_other_mode(Keyed::new(self.key, self.max_keys, self.idle));
        let breaker = match (name, breaker.name_set()) {
            (Some(name), "circuit_breaker") => breaker.name(name),
            _ => breaker,
        };
        breaker.classifier(classifier).build()
    }

    fn time_window_span(&self, single: Option<&CircuitBreakerBuilder>) -> Option<Duration> {
        single.map_or_else(
            || CircuitBreakerLayer::builder().time_window_span(),
            CircuitBreakerBuilder::time_window_span,
        )
    }
}

impl<K, Fk> BulkheadSetting for PerKey<K, Fk>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    type Layer = KeyedBulkheadLayer<K, Fk>;

    fn build_level(
        self,
        single: Option<BulkheadLayerBuilder>,
        name: Option<Cow<'static, str>>,
    ) -> Result<Self::Layer, ConfigError> {
        let bulkhead = KeyedBulkheadLayerBuilder::from_single(single.unwrap_or_default(), self.key)
            .max_keys(self.max_keys)
            .idle(self.idle);
        let bulkhead = match (name, bulkhead.name_set()) {
            (Some(name), "bulkhead") => bulkhead.name(name),
            _ => bulkhead,
        };
        bulkhead.build()
    }
}

impl<C> BreakerSetting<C> for Unkeyed {
    type Layer = Optional<CircuitBreakerLayer<C>>;

    fn build_level(
        self,
        single: Option<CircuitBreakerBuilder>,
        classifier: C,
        name: Option<Cow<'static, str>>,
    ) -> Result<Self::Layer, ConfigError> {
        let breaker = single
            .map(|breaker| {
                let breaker = match (name, breaker.name_set()) {
                    (Some(name), "circuit_breaker") => breaker.name(name),
                    _ => breaker,
                };
                breaker.classifier(classifier).build()
            })
            .transpose()?;
        Ok(Optional::new(breaker))
    }

    fn time_window_span(&self, single: Option<&CircuitBreakerBuilder>) -> Option<Duration> {
        single.and_then(CircuitBreakerBuilder::time_window_span)
    }
}

/// The host a request goes to, without its port (empty if it names
/// none), as a new `String`: a key for [`PerKey::new`] or a keyed
/// layer's `key`, `PerKey::new(by_host::<reqwest::Request>)`. [`ByHost`]
/// ([`PerKey::host`]) keys by host and port without allocating.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub fn by_host<R: crate::http::RequestParts>(request: &R) -> String {
    request.host().unwrap_or_default().to_owned()
}
