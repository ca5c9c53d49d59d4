//! Rate limiting: calls per client and period, by tier (feature
//! `rate-limit`).
//!
//! Each call is keyed by a function of the request (an API key, a tenant,
//! a client address); each key belongs to a tier (free, professional,
//! enterprise) and each tier has its own [`Quota`]: calls per period and a
//! burst. The limits are enforced with the generic cell rate algorithm
//! (the arithmetic of [governor]'s), one atomic word of state per key: a
//! call that passes reads tokio's clock once, so that tests run on paused
//! time, and makes one compare-and-swap.
//!
//! An unkeyed limiter without a tier function lets each service value
//! (each clone of a [`RateLimit`]) lease calls: when the allowance is at
//! rest, one compare-and-swap takes several calls at once, which the value
//! then spends with its own counter until the time the allowance accounted
//! them for. A fresh clone leases one call (its own, exactly as without
//! leases); each lease a value takes at rest doubles its next one, up to a
//! cap of one sixteenth of the burst and at most the quota's calls in 1 ms;
//! a busy allowance is decided call by call, exactly. A dropped value gives
//! back its unspent calls whose time is still ahead. Only one lease can be
//! unspent at a time, over every clone, so with `cap` that cap, over any
//! window, at most `cap - 1` calls pass beyond the exact GCRA (the calls that
//! pass conform to a burst of `b + cap - 1`), and at most `cap - 1` are
//! refused early (a call is refused only where the exact GCRA over the
//! calls that passed, with a burst of `b - (cap - 1)`, refuses it too). A
//! quota with a burst below 32 or an interval above 0.5 ms (10 a second
//! with a burst of 10, say) has `cap = 1`: exact. A listening
//! [`report`] slot, tiers chosen by key, keyed limiters and the shared
//! store never lease.
//!
//! The excess is either rejected at once with
//! [`RateLimited`](crate::error::RateLimited), which carries the time until a
//! call would be allowed (an HTTP server answers 429 with `Retry-After`), or
//! throttled: made to wait up to a maximum delay, then rejected.
//!
//! Memory stays bounded however many distinct keys arrive: each tier holds
//! at most [`max_keys`](RateLimitLayerBuilder::max_keys) keys, and keys left
//! idle are dropped.
//!
//! The state lives in the process by default. With feature `redis`,
//! `RateLimitLayerBuilder::store` keeps it in Redis instead, shared by
//! every replica of a service, with optional quotas per UTC day or month
//! (see the `redis` module). Either way, [`report`] tells a layer outside
//! what the limiter decided, for the `RateLimit` response headers.
//!
//! ```
//! use steadfast::error::RateLimited;
//! use steadfast::rate_limit::{Quota, RateLimitLayer};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! // At most 2 calls at once, refilled at 60 a minute.
//! let layer = RateLimitLayer::builder()
//!     .quota(Quota::per_minute(60).burst(2))
//!     .build()?;
//! let mut service = layer.layer(service_fn(|n: u32| async move {
//!     Ok::<_, steadfast::BoxError>(n)
//! }));
//!
//! assert_eq!(service.ready().await?.call(1).await?, 1);
//! assert_eq!(service.ready().await?.call(2).await?, 2);
//! let err = service.ready().await?.call(3).await.unwrap_err();
//! let limited = err.downcast_ref::<RateLimited>().expect("rate limited");
//! assert!(limited.retry_after().as_millis() > 0);
//! # Ok(())
//! # }
//! ```
//!
//! Tiers keyed by API key, throttling the excess for up to 200 ms:
//!
//! ```
//! use std::time::Duration;
//! use steadfast::rate_limit::{Mode, Quota, RateLimitLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! struct Request {
//!     api_key: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let limit = RateLimitLayer::builder()
//!     .tier("free", Quota::per_minute(60).burst(5))
//!     .tier("pro", Quota::per_second(100))
//!     .tier("enterprise", Quota::per_second(1_000).burst(2_000))
//!     .default_tier("free")
//!     .key(|req: &Request| req.api_key.clone())
//!     .tier_of(|key: &String| if key.starts_with("pro_") { "pro" } else { "free" })
//!     .mode(Mode::Throttle { max_delay: Duration::from_millis(200) })
//!     .max_keys(100_000)
//!     .build()?;
//! let handle = limit.handle();
//!
//! let service = ServiceBuilder::new()
//!     .layer(limit)
//!     .service(service_fn(|req: Request| async move {
//!         Ok::<_, steadfast::BoxError>(req.api_key.len())
//!     }));
//! let len = service.oneshot(Request { api_key: "pro_42".into() }).await?;
//! assert_eq!(len, 6);
//! assert_eq!(handle.tier_names(), ["free", "pro", "enterprise"]);
//! # Ok(())
//! # }
//! ```
//!
//! [governor]: https://docs.rs/governor

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use crate::BoxError;
use crate::keyed::KeyOf;
#[cfg(feature = "redis")]
use crate::keyed::LookupKey;
use crate::oneshot::Waiter;

mod clock;
pub mod future;
mod gcra;
mod handle;
mod layer;
mod quota;
#[cfg(feature = "redis")]
mod quota_period;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod report;
mod state;
mod tier;

pub use handle::AllowanceHandle;
pub use layer::{RateLimitLayer, RateLimitLayerBuilder};
pub use quota::Quota;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use quota_period::{Period, PeriodQuota};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{
    Consistency, FailMode, RedisStore, RedisStoreBuilder, StoreClock, StoreKey, Usage,
};

use future::{NotCalled, ResponseFuture};
#[cfg(feature = "redis")]
use redis::Verdict;
use state::{Denied, Held, Limits, emit_rejected, emit_throttled};

/// What to do with a call over its allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mode {
    /// Refuse it at once with [`RateLimited`](crate::error::RateLimited).
    #[default]
    Reject,
    /// Delay it until its allowance permits, if that is at most `max_delay`
    /// away; refuse it otherwise.
    Throttle {
        /// The longest a call is delayed. Must be greater than zero.
        max_delay: Duration,
    },
}

/// Every call shares one allowance (per tier): the limiter has no key.
/// A [`KeyOf`] every request, with the key `()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Global;

impl<Req> KeyOf<Req> for Global {
    type Key = ();
    type Lookup<'r>
        = ()
    where
        Req: 'r;

    #[inline]
    fn key_of(&self, _request: &Req) {}
}

/// Keys calls by `F`: a function of the request, or any [`KeyOf`] (such
/// as [`ByHost`](crate::http::ByHost), looked up without allocating); set
/// with [`RateLimitLayerBuilder::key`] or `RateLimitLayerBuilder::by_host`.
#[derive(Clone, Copy)]
pub struct ByKey<F>(pub(crate) F);

impl<F, Req> KeyOf<Req> for ByKey<F>
where
    F: KeyOf<Req>,
{
    type Key = F::Key;
    type Lookup<'r>
        = F::Lookup<'r>
    where
        Req: 'r;

    #[inline]
    fn key_of<'r>(&self, request: &'r Req) -> F::Lookup<'r> {
        self.0.key_of(request)
    }
}

impl<F> fmt::Debug for ByKey<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ByKey(..)")
    }
}

/// Limits the calls per key and period. Made by [`RateLimitLayer`].
///
/// The inner service must be `Clone`: a throttled call takes the (ready)
/// inner service with it and leaves a clone in its place.
///
/// Each value may hold a lease of calls taken from its allowance (see the
/// [module docs](self)); a clone starts without one, and a value dropped
/// gives back what is left of its lease.
pub struct RateLimit<S, K = (), F = Global> {
    inner: S,
    key: Arc<F>,
    /// The shared limits, and the calls this value leased from them.
    held: Held<K>,
}

impl<S, K, F> RateLimit<S, K, F> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &RateLimitLayer<K, F>) -> Self
    where
        RateLimitLayer<K, F>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, K, F> RateLimit<S, K, F> {
    /// A view of the limiter's keys and settings.
    pub fn handle(&self) -> RateLimitHandle<K> {
        RateLimitHandle {
            limits: Arc::clone(&self.held.limits),
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

impl<S: Clone, K, F> Clone for RateLimit<S, K, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            key: Arc::clone(&self.key),
            held: self.held.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for RateLimit<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("limits", &self.held.limits)
            .finish()
    }
}

impl<S, K, F, Req> Service<Req> for RateLimit<S, K, F>
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

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.held.limits.remote {
            let key = self.key.key_of(&request).to_key();
            let tier = self.held.limits.tier_index(&key);
            return match remote.check(tier, &key, 1) {
                redis::Quick::Done(verdict) => match verdict {
                    Verdict::Deny { retry_after } => NotCalled::rejected(retry_after).into(),
                    Verdict::Allow { .. } => ResponseFuture::called(self.inner.call(request)),
                },
                redis::Quick::Ask(check) => {
                    let clone = self.inner.clone();
                    let ready = std::mem::replace(&mut self.inner, clone);
                    NotCalled::remote(check, Waiter::new(ready, request)).into()
                }
            };
        }
        let checked = {
            let key = self.key.key_of(&request);
            self.held.limits.check(&key, &mut self.held.lease)
        };
        match checked {
            Ok(()) => ResponseFuture::called(self.inner.call(request)),
            Err(denied) => self.denied(denied, request).into(),
        }
    }
}

impl<S, K, F> RateLimit<S, K, F> {
    /// Throttles or refuses a call its allowance did not let through; out
    /// of line, returning two words (see [`NotCalled`]).
    #[cold]
    #[inline(never)]
    fn denied<Req>(&mut self, denied: Denied, request: Req) -> NotCalled<S::Future, S, Req>
    where
        S: Service<Req> + Clone,
        K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
    {
        let limits = &self.held.limits;
        let tier = limits.tier(denied.tier);
        match limits.mode {
            Mode::Throttle { max_delay } if denied.wait <= max_delay => {
                match tier {
                    Some(tier) => tier.emit_throttled(denied.wait, denied.limiter.key()),
                    None => emit_throttled("", denied.limiter.key(), denied.wait),
                }
                // Take the service that was polled ready; leave a clone that
                // the caller will poll before its next call.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                NotCalled::throttled(
                    denied.limiter,
                    denied.wait,
                    max_delay,
                    Waiter::new(ready, request),
                )
            }
            _ => {
                match tier {
                    Some(tier) => tier.emit_rejected(denied.wait, denied.limiter.key()),
                    None => emit_rejected("", denied.limiter.key(), denied.wait),
                }
                NotCalled::rejected(denied.wait)
            }
        }
    }
}

/// A cloneable view of a rate limiter's keys and settings.
pub struct RateLimitHandle<K = ()> {
    limits: Arc<Limits<K>>,
}

impl<K> RateLimitHandle<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Keys tracked now, over every tier (an estimate while evictions are
    /// pending; zero for an unkeyed limiter).
    pub fn len(&self) -> u64 {
        self.limits.keys()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys tracked per tier.
    pub fn max_keys_per_tier(&self) -> u64 {
        self.limits.max_keys
    }

    /// The most keys tracked over every tier: the bound on the limiter's
    /// memory.
    pub fn max_keys(&self) -> u64 {
        self.limits
            .max_keys
            .saturating_mul(self.limits.tiers.list.len() as u64)
    }

    /// Applies pending evictions now, so that [`len`](Self::len) is exact.
    pub fn run_pending_tasks(&self) {
        self.limits.sync();
    }

    /// The allowance of `key`, if the key has one now (nothing is made for
    /// a key never called; `None` for an unkeyed limiter).
    pub fn get(&self, key: &K) -> Option<AllowanceHandle> {
        self.limits.get(key)
    }

    /// Every key that has an allowance now, with a handle on it (a key
    /// placed in several tiers over time appears once per tier).
    pub fn handles(&self) -> Vec<(K, AllowanceHandle)> {
        self.limits.handles()
    }

    /// The tiers, in the order they were defined.
    pub fn tier_names(&self) -> Vec<&str> {
        self.limits.tiers.list.iter().map(|t| &*t.name).collect()
    }

    /// The quota of the tier called `name`.
    pub fn quota(&self, name: &str) -> Option<Quota> {
        let tiers = &self.limits.tiers;
        tiers.index_of(name).map(|i| tiers.list[i].quota)
    }

    /// The tier of keys that no tier function places.
    pub fn default_tier(&self) -> &str {
        self.limits.tier_name(self.limits.tiers.default)
    }

    /// What happens to calls over their allowance.
    pub fn mode(&self) -> Mode {
        self.limits.mode
    }

    /// The state of the shared store; `None` for the in-process store.
    pub fn store_status(&self) -> Option<crate::event::StoreStatus> {
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.limits.remote {
            return Some(remote.bound.status());
        }
        None
    }
}

impl<K> Clone for RateLimitHandle<K> {
    fn clone(&self) -> Self {
        Self {
            limits: Arc::clone(&self.limits),
        }
    }
}

impl<K> fmt::Debug for RateLimitHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RateLimitHandle")
            .field(&self.limits)
            .finish()
    }
}
