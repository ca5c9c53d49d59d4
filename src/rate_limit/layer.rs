use std::borrow::Cow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::quota::Quota;
use super::state::{Held, Limits, Store, Tier, TierFn, Tiers, new_limiter};
use super::{AllowanceHandle, ByKey, Global, Mode, RateLimit, RateLimitHandle};
use crate::error::{ConfigError, check};
use crate::keyed::KeyedRegistry;

// The defaults of every keyed layer.
use crate::keyed::{DEFAULT_IDLE, DEFAULT_MAX_KEYS};

/// Applies a [`RateLimit`]: calls per key and period, by tier.
///
/// Every service this layer makes, and every clone of them, shares the same
/// limiters. Built with [`RateLimitLayer::builder`].
pub struct RateLimitLayer<K = (), F = Global> {
    pub(super) key: Arc<F>,
    pub(super) limits: Arc<Limits<K>>,
}

impl RateLimitLayer {
    /// A builder: define at least one tier (or a [`quota`](RateLimitLayerBuilder::quota)),
    /// and optionally a [`key`](RateLimitLayerBuilder::key) function.
    /// Without one, every call shares a single allowance.
    pub fn builder() -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            key: Global,
            tiers: Vec::new(),
            default_tier: None,
            tier_of: None,
            mode: Mode::Reject,
            max_keys: DEFAULT_MAX_KEYS,
            idle: Some(DEFAULT_IDLE),
            name: None,
            #[cfg(feature = "redis")]
            store: None,
        }
    }
}

impl<K, F> RateLimitLayer<K, F> {
    /// A view of the limiter's keys and settings.
    pub fn handle(&self) -> RateLimitHandle<K> {
        RateLimitHandle {
            limits: Arc::clone(&self.limits),
        }
    }
}

impl<K, F> RateLimitLayer<K, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The allowance of `key`, if the key has one now (nothing is made for
    /// a key never called; `None` for an unkeyed limiter).
    pub fn get(&self, key: &K) -> Option<AllowanceHandle> {
        self.limits.get(key)
    }

    /// Every key that has an allowance now, with a handle on it.
    pub fn handles(&self) -> Vec<(K, AllowanceHandle)> {
        self.limits.handles()
    }

    /// Keys tracked now, over every tier (an estimate while evictions are
    /// pending; zero for an unkeyed limiter).
    pub fn len(&self) -> u64 {
        self.limits.keys()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys tracked over every tier.
    pub fn max_keys(&self) -> u64 {
        self.handle().max_keys()
    }

    /// Applies pending evictions now, so that [`len`](Self::len) is exact.
    pub fn run_pending_tasks(&self) {
        self.limits.sync();
    }
}

impl<K, F> Clone for RateLimitLayer<K, F> {
    fn clone(&self) -> Self {
        Self {
            key: Arc::clone(&self.key),
            limits: Arc::clone(&self.limits),
        }
    }
}

impl<S, K, F> Layer<S> for RateLimitLayer<K, F> {
    type Service = RateLimit<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            key: Arc::clone(&self.key),
            held: Held::new(Arc::clone(&self.limits)),
        }
    }
}

impl<K, F> fmt::Debug for RateLimitLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RateLimitLayer").field(&self.limits).finish()
    }
}

/// Settings of a rate limiter, checked by `build`.
///
/// ```
/// use std::time::Duration;
/// use steadfast::rate_limit::{Mode, Quota, RateLimitLayer};
///
/// struct Request { client: String }
///
/// let limit = RateLimitLayer::builder()
///     .tier("free", Quota::per_minute(60).burst(10))
///     .tier("paid", Quota::per_second(50))
///     .default_tier("free")
///     .mode(Mode::Throttle { max_delay: Duration::from_millis(200) })
///     .key(|req: &Request| req.client.clone())
///     .build()?;
/// # let _ = limit;
///
/// // The default tier must be one of the tiers.
/// let err = RateLimitLayer::builder()
///     .tier("free", Quota::per_minute(60))
///     .default_tier("gold")
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "rate_limit.default_tier");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct RateLimitLayerBuilder<K = (), F = Global> {
    key: F,
    tiers: Vec<(Cow<'static, str>, Quota)>,
    default_tier: Option<Cow<'static, str>>,
    tier_of: Option<TierFn<K>>,
    mode: Mode,
    max_keys: u64,
    idle: Option<Duration>,
    name: Option<Cow<'static, str>>,
    #[cfg(feature = "redis")]
    store: Option<(super::redis::RedisStore, Option<super::redis::EncodeKey<K>>)>,
}

impl<K, F> RateLimitLayerBuilder<K, F> {
    /// Defines a tier and its quota. Tier names must be distinct.
    pub fn tier(mut self, name: impl Into<Cow<'static, str>>, quota: Quota) -> Self {
        self.tiers.push((name.into(), quota));
        self
    }

    /// One quota for every call: a single tier named `"default"`, or
    /// after the limiter (see [`name`](Self::name)).
    pub fn quota(self, quota: Quota) -> Self {
        self.tier("default", quota)
    }

    /// Names the limiter: its tier named `"default"` (the one
    /// [`quota`](Self::quota) defines) takes this name, in the limiter's
    /// events, metrics and snapshots. The other tiers keep their own names.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The tier of keys that the tier function does not place, or that it
    /// maps to a name that is no tier. Must name a defined tier; needed when
    /// more than one tier is defined.
    pub fn default_tier(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.default_tier = Some(name.into());
        self
    }

    /// Reject the excess at once (the default), or throttle it.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The most keys tracked per tier (default 10,000). Beyond it the least
    /// used keys are dropped, and start again with a full allowance when
    /// they return. When every key is held (by throttled calls), new keys
    /// share one overflow limiter of their tier. Must be at least 1.
    pub fn max_keys(mut self, max_keys: u64) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// Drops a key that made no call for `idle` (default 10 minutes; the key
    /// goes within two such periods; never less than the time its tier
    /// takes to refill its burst, so dropping a key never grants it more
    /// than its quota). `None` keeps keys until `max_keys` needs room.
    pub fn idle(mut self, idle: Option<Duration>) -> Self {
        self.idle = idle;
        self
    }

    /// Keys calls by `key`, a function of the request (an API key, a
    /// tenant, a client address). Each key gets its own allowance.
    pub fn key<Req, K2, F2>(self, key: F2) -> RateLimitLayerBuilder<K2, ByKey<F2>>
    where
        F2: Fn(&Req) -> K2,
    {
        self.keyed_by(key)
    }

    /// Keys calls by the host and port of the request
    /// ([`ByHost`](crate::http::ByHost)), looked up without allocating
    /// when no tier function needs the key.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn by_host(
        self,
    ) -> RateLimitLayerBuilder<crate::http::HostKey, ByKey<crate::http::ByHost>> {
        self.keyed_by(crate::http::ByHost)
    }

    fn keyed_by<K2, F2>(self, key: F2) -> RateLimitLayerBuilder<K2, ByKey<F2>> {
        RateLimitLayerBuilder {
            key: ByKey(key),
            tiers: self.tiers,
            default_tier: self.default_tier,
            tier_of: None,
            mode: self.mode,
            max_keys: self.max_keys,
            idle: self.idle,
            name: self.name,
            // The key type changes: `store` must be called again after `key`.
            #[cfg(feature = "redis")]
            store: self.store.map(|(store, _)| (store, None)),
        }
    }

    fn finish(self, keyed: bool) -> Result<RateLimitLayer<K, F>, ConfigError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        if self.tiers.is_empty() {
            return Err(ConfigError::new(
                "rate_limit.tier",
                "none",
                "define at least one tier or quota",
            ));
        }
        let limiter = self.name;
        let named = |tier: Cow<'static, str>| match &limiter {
            Some(limiter) if tier == "default" => limiter.clone(),
            _ => tier,
        };
        let default_tier = self.default_tier.map(named);
        let mut list = Vec::with_capacity(self.tiers.len());
        for (name, quota) in self.tiers {
            let name = named(name);
            if list.iter().any(|tier: &Tier| tier.name == name) {
                return Err(ConfigError::new(
                    "rate_limit.tier",
                    name,
                    "is defined more than once",
                ));
            }
            let governor = quota.to_governor(&name)?;
            list.push(Tier {
                name,
                quota,
                governor,
                decisions: crate::event::Decisions::new(),
            });
        }
        let default = match default_tier {
            Some(name) => list.iter().position(|t| t.name == name).ok_or_else(|| {
                ConfigError::new("rate_limit.default_tier", name, "names no defined tier")
            })?,
            None if list.len() == 1 => 0,
            None => {
                return Err(ConfigError::new(
                    "rate_limit.default_tier",
                    "none",
                    "must name one of the tiers when several are defined",
                ));
            }
        };
        if let Mode::Throttle { max_delay } = self.mode {
            check::positive("rate_limit.max_delay", max_delay)?;
        }
        check::at_least("rate_limit.max_keys", self.max_keys, 1)?;
        if let Some(idle) = self.idle {
            check::positive("rate_limit.idle", idle)?;
        }
        #[cfg(feature = "redis")]
        let remote = match self.store {
            None => None,
            Some((_, None)) => {
                return Err(ConfigError::new(
                    "rate_limit.store",
                    "set before `key`",
                    "call `store` after `key`",
                ));
            }
            Some((store, Some(encode))) => Some(super::redis::Remote::new(
                store.config,
                &list,
                self.mode,
                self.max_keys,
                encode,
            )?),
        };
        let store = if keyed {
            let idle = self.idle;
            Store::Keyed(
                list.iter()
                    .map(|tier| {
                        let refill = tier.governor.burst_size_replenished_in();
                        KeyedRegistry::new(self.max_keys, idle.map(|idle| idle.max(refill)))
                            .owned_by("rate_limit", tier.name.clone())
                    })
                    .collect(),
            )
        } else {
            Store::Global(
                list.iter()
                    .map(|tier| Arc::new(new_limiter(tier.governor)))
                    .collect(),
            )
        };
        let only = match (&store, &self.tier_of) {
            (Store::Global(limiters), None) => limiters.get(default).cloned(),
            _ => None,
        };
        Ok(RateLimitLayer {
            key: Arc::new(self.key),
            limits: Arc::new(Limits {
                only,
                tiers: Tiers {
                    list: list.into_boxed_slice(),
                    default,
                },
                tier_of: self.tier_of,
                store,
                mode: self.mode,
                max_keys: self.max_keys,
                #[cfg(feature = "redis")]
                remote,
            }),
        })
    }
}

#[cfg(feature = "redis")]
impl<K: super::redis::StoreKey, F> RateLimitLayerBuilder<K, F> {
    /// Keeps the limiter's state in `store`, shared by every replica that
    /// uses the same store and namespace, instead of in the process (the
    /// default). Call it after [`key`](Self::key).
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn store(mut self, store: super::redis::RedisStore) -> Self {
        self.store = Some((store, Some(<K as super::redis::StoreKey>::write_key)));
        self
    }
}

impl RateLimitLayerBuilder {
    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// No tier, a tier defined twice, a quota of zero calls, a zero period
    /// or burst, a default tier that names no tier (or none named when
    /// several are defined), a zero `max_delay`, `max_keys` or `idle`.
    pub fn build(self) -> Result<RateLimitLayer, ConfigError> {
        self.finish(false)
    }
}

impl<K, F> RateLimitLayerBuilder<K, ByKey<F>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Places each key in a tier by name (`"free"`, `"pro"`); a name that is
    /// no tier falls back to the default tier. Called on each call.
    pub fn tier_of<R>(mut self, tier_of: impl Fn(&K) -> R + Send + Sync + 'static) -> Self
    where
        R: AsRef<str>,
    {
        self.tier_of = Some(Box::new(move |key: &K, tiers: &Tiers| {
            tiers.index_of(tier_of(key).as_ref())
        }));
        self
    }

    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// As for the unkeyed [`build`](RateLimitLayerBuilder::build).
    pub fn build(self) -> Result<RateLimitLayer<K, ByKey<F>>, ConfigError> {
        self.finish(true)
    }
}

impl<K, F> fmt::Debug for RateLimitLayerBuilder<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("tiers", &self.tiers)
            .field("default_tier", &self.default_tier)
            .field("mode", &self.mode)
            .field("max_keys", &self.max_keys)
            .field("idle", &self.idle)
            .finish()
    }
}
