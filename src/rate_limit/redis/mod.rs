//! A rate limiter's state in Redis, shared by every replica (feature
//! `redis`).
//!
//! A [`RateLimitLayer`](super::RateLimitLayer) keeps its state in the
//! process by default. Given a [`RedisStore`] with
//! [`store`](super::RateLimitLayerBuilder::store), its tiers, keys, modes
//! and [`RateLimited`](crate::error::RateLimited) refusals stay the same,
//! but the allowance of each key is held in Redis, so that four replicas
//! behind a load balancer grant a client its tier once, not four times.
//!
//! # The script
//!
//! One Lua script decides atomically: GCRA (the algorithm the in-process
//! limiter uses) over the key's theoretical arrival time, plus an optional
//! [`PeriodQuota`] per UTC day or month. It is sent with
//! `EVALSHA` and loaded again on `NOSCRIPT`. Keys are
//! `{namespace}:{tier}:{key}:r` (the rate, expiring a second after the
//! allowance is full again) and `{namespace}:{tier}:{key}:q:{period}` (the quota, expiring
//! an hour after its period ends). The script reads the server's clock
//! (`TIME`) unless told to use the caller's ([`StoreClock::Caller`]), so
//! replicas' clocks do not matter. It takes a cost above one for weighted
//! calls ([`RateLimitHandle::check_n`](super::RateLimitHandle::check_n)),
//! and in [`Mode::Throttle`](super::Mode::Throttle) reserves a slot up to
//! `max_delay` ahead (a throttled call dropped while it waits leaves its
//! slot spent: the store has no way to hand it back cheaply). A value it
//! cannot read under its keys (another type, text, a time far in the
//! future) counts as absent and is overwritten. The quota key is built
//! inside the script, so a Redis Cluster needs the whole namespace on one
//! shard (wrap it in a hash tag, `{limits}`).
//!
//! # Exact and leased
//!
//! [`Consistency::Exact`] (the default) makes one script call per call.
//! [`Consistency::Leased`] has each replica take up to `batch` permits in
//! one script call and spend them locally without a round trip, taking the
//! next batch in the background once half is spent. A lease is debited in
//! Redis when it is taken, so the fleet never admits more than the quota:
//! **admitted ≤ quota** holds in both modes. What leasing loosens is
//! timing: a replica may spend its leased permits up to
//! [`lease_ttl`](RedisStoreBuilder::lease_ttl) after taking them, so in any
//! window the fleet admits at most the tier's GCRA allowance plus
//! **replicas × batch**. Permits a replica leased but did not spend before
//! the lease expired are lost (under-admission, never over). Near the end
//! of a period quota the batch shrinks to a sixteenth of what is left, so
//! one replica does not strand the last permits.
//!
//! # When Redis fails
//!
//! Every script call runs under this crate's own
//! [`Timeout`](crate::timeout::TimeoutLayer) (default 50 ms, the longest any
//! call waits for the store) and a
//! [`CircuitBreaker`](crate::circuit_breaker::CircuitBreakerLayer) named
//! `rate_limit_store` (open after half of at least 5 of the last 20 store
//! calls fail, for 1 s). While the store fails, the limiter decides by its
//! [`FailMode`]: [`FailMode::Local`] (the default) has each replica enforce
//! its share of each tier (`1 / replicas` of its rate and burst) with the
//! in-process limiter; [`FailMode::FailOpen`] admits every call;
//! [`FailMode::FailClosed`] refuses every call. Period quotas are not
//! counted while degraded, and the local share refuses rather than
//! throttles. Entering and leaving the degraded state are
//! [`Event::StoreDegraded`](crate::event::Event::StoreDegraded) and
//! [`Event::StoreRecovered`](crate::event::Event::StoreRecovered), a
//! metric, and the `store` field of the limiter's health status.
//!
//! # Why the `redis` crate
//!
//! The store uses [redis-rs](https://docs.rs/redis) with its tokio
//! `ConnectionManager` rather than `fred`: it is the crate most Rust
//! services already link, its `Script` type does the `EVALSHA`/`NOSCRIPT`
//! dance, its connection manager multiplexes one connection per store and
//! reconnects in the background, and it adds few dependencies with
//! `default-features = false`. `fred`'s pools and client-side tracking buy
//! nothing for one short script per call. The redis futures are boxed by
//! the crate itself, so a call that goes to Redis carries one boxed future;
//! a call served from a lease or by the in-process store carries none.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use steadfast::rate_limit::{
//!     Consistency, FailMode, PeriodQuota, Quota, RateLimitLayer, RedisStore,
//! };
//!
//! # fn main() -> Result<(), steadfast::BoxError> {
//! let store = RedisStore::builder("redis://127.0.0.1:6379")
//!     .namespace("api")
//!     .quota("free", PeriodQuota::per_month(10_000))
//!     .consistency(Consistency::Leased { batch: 20 })
//!     .on_failure(FailMode::Local { replicas: 4 })
//!     .timeout(Duration::from_millis(30))
//!     .build()?;
//! let limit = RateLimitLayer::builder()
//!     .tier("free", Quota::per_minute(60).burst(10))
//!     .tier("gold", Quota::per_second(100))
//!     .default_tier("free")
//!     .key(|api_key: &String| api_key.clone())
//!     .tier_of(|key: &String| if key.starts_with("gold_") { "gold" } else { "free" })
//!     .store(store)
//!     .build()?;
//! # drop(limit);
//! # Ok(())
//! # }
//! ```

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{ConfigError, check};
use crate::event::Listeners;

use super::quota_period::PeriodQuota;

mod bound;
mod script;

pub(crate) use bound::{Quick, Remote, Verdict};

const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(1);

/// How many script calls the fleet makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Consistency {
    /// One script call per call: the fleet admits exactly what one limiter
    /// would.
    #[default]
    Exact,
    /// Each replica leases up to `batch` permits per script call and spends
    /// them locally. Over-admission in any window is at most replicas ×
    /// `batch`; the quota is never exceeded.
    Leased {
        /// Permits per lease; at least 1.
        batch: u32,
    },
}

/// What a limiter does while its store fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailMode {
    /// Admit every call.
    FailOpen,
    /// Refuse every call.
    FailClosed,
    /// Enforce `1 / replicas` of each tier's rate and burst in the process.
    Local {
        /// The replicas sharing the tiers; at least 1.
        replicas: u32,
    },
}

impl FailMode {
    /// `fail_open`, `fail_closed` or `local`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            FailMode::FailOpen => "fail_open",
            FailMode::FailClosed => "fail_closed",
            FailMode::Local { .. } => "local",
        }
    }
}

impl Default for FailMode {
    fn default() -> Self {
        FailMode::Local { replicas: 1 }
    }
}

type CallerClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Whose clock the script reads.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum StoreClock {
    /// The Redis server's (`TIME`): replicas' clocks do not matter.
    #[default]
    Server,
    /// The caller's: `now` is read on each call. For tests of day and month
    /// rollover; every replica must then agree on the time.
    Caller(CallerClock),
}

impl StoreClock {
    /// The caller's clock, read by `now`.
    pub fn caller(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        StoreClock::Caller(Arc::new(now))
    }

    /// Microseconds since the epoch, or -1 for the server's clock.
    pub(crate) fn now_us(&self) -> i64 {
        match self {
            StoreClock::Server => -1,
            StoreClock::Caller(now) => now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 2)),
        }
    }
}

impl fmt::Debug for StoreClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreClock::Server => f.write_str("Server"),
            StoreClock::Caller(_) => f.write_str("Caller(..)"),
        }
    }
}

/// Writes a key's name for the store.
pub(crate) type EncodeKey<K> = fn(&K, &mut String);

/// A key a shared store can name: written into the Redis key.
pub trait StoreKey {
    /// Appends the key's name to `out`.
    fn write_key(&self, out: &mut String);
}

impl StoreKey for () {
    fn write_key(&self, out: &mut String) {
        out.push('*');
    }
}

macro_rules! display_key {
    ($($t:ty),*) => {$(
        impl StoreKey for $t {
            fn write_key(&self, out: &mut String) {
                use std::fmt::Write;
                let _ = write!(out, "{self}");
            }
        }
    )*};
}

display_key!(
    String,
    &'static str,
    Cow<'static, str>,
    Arc<str>,
    Box<str>,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i32,
    i64,
    IpAddr
);

/// A client's real-time usage of its tier, as the store holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Calls counted in the current period (zero without a period quota).
    pub used: u64,
    /// The period quota (zero without one).
    pub limit: u64,
    /// When the period ends (the epoch without a period quota).
    pub reset: SystemTime,
    /// Calls the rate allows at once now.
    pub remaining_burst: u64,
}

/// Settings of a [`RedisStore`], checked by `build`.
///
/// `build` only parses the URL and checks the settings (the store connects
/// on its first call), so no server is needed here.
///
/// ```
/// use std::time::Duration;
/// use steadfast::rate_limit::{Consistency, FailMode, PeriodQuota, RedisStore};
///
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .namespace("api")
///     .quota("free", PeriodQuota::per_month(10_000))
///     .consistency(Consistency::Leased { batch: 20 })
///     .on_failure(FailMode::Local { replicas: 4 })
///     .timeout(Duration::from_millis(30))
///     .build()?;
/// assert!(format!("{store:?}").contains("\"api\""));
///
/// let err = RedisStore::builder("redis://127.0.0.1:6379").timeout(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "rate_limit.store.timeout");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct RedisStoreBuilder {
    url: String,
    namespace: Cow<'static, str>,
    clock: StoreClock,
    consistency: Consistency,
    on_failure: FailMode,
    timeout: Duration,
    lease_ttl: Duration,
    quotas: Vec<(Cow<'static, str>, PeriodQuota)>,
    listeners: Listeners,
}

impl RedisStoreBuilder {
    /// Calls `listener` with the store's events
    /// ([`StoreDegraded`](crate::event::Event::StoreDegraded),
    /// [`StoreRecovered`](crate::event::Event::StoreRecovered)).
    pub fn on_event(
        mut self,
        listener: impl Fn(&crate::event::Event<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.listeners = self.listeners.with(listener);
        self
    }

    /// Prefix of every key (default `steadfast`).
    pub fn namespace(mut self, namespace: impl Into<Cow<'static, str>>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The server's clock (default) or the caller's.
    pub fn clock(mut self, clock: StoreClock) -> Self {
        self.clock = clock;
        self
    }

    /// One script call per call (default), or leases.
    pub fn consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// What to do while the store fails (default
    /// `Local { replicas: 1 }`: set `replicas` to the size of the fleet).
    pub fn on_failure(mut self, mode: FailMode) -> Self {
        self.on_failure = mode;
        self
    }

    /// The longest a call waits for the store (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long leased permits may be spent (default 1 s).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// A quota per UTC day or month for the tier called `tier`, beside its
    /// rate.
    pub fn quota(mut self, tier: impl Into<Cow<'static, str>>, quota: PeriodQuota) -> Self {
        self.quotas.push((tier.into(), quota));
        self
    }

    /// Checks the settings and makes the store. Connects lazily, on the
    /// first call.
    ///
    /// # Errors
    ///
    /// A URL Redis cannot parse, an empty namespace, a zero or
    /// unrepresentable timeout or lease TTL, a zero batch or replica
    /// count, a zero quota, or a tier given two quotas.
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        let client = ::redis::Client::open(self.url.as_str()).map_err(|e| {
            ConfigError::new(
                "rate_limit.store.url",
                &self.url,
                format!("is not a Redis URL: {e}"),
            )
        })?;
        if self.namespace.is_empty() {
            return Err(ConfigError::new(
                "rate_limit.store.namespace",
                "",
                "must not be empty",
            ));
        }
        check::positive("rate_limit.store.timeout", self.timeout)?;
        if self.timeout > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "rate_limit.store.timeout",
                self.timeout,
                "must be at most an hour",
            ));
        }
        check::positive("rate_limit.store.lease_ttl", self.lease_ttl)?;
        if self.lease_ttl > Duration::from_secs(86_400) {
            return Err(ConfigError::new(
                "rate_limit.store.lease_ttl",
                self.lease_ttl,
                "must be at most a day",
            ));
        }
        if let Consistency::Leased { batch } = self.consistency {
            check::at_least("rate_limit.store.batch", u64::from(batch), 1)?;
        }
        if let FailMode::Local { replicas } = self.on_failure {
            check::at_least("rate_limit.store.replicas", u64::from(replicas), 1)?;
        }
        for (i, (tier, quota)) in self.quotas.iter().enumerate() {
            quota.check(tier)?;
            if self.quotas[..i].iter().any(|(t, _)| t == tier) {
                return Err(ConfigError::new(
                    "rate_limit.store.quota",
                    tier,
                    "is given more than once",
                ));
            }
        }
        Ok(RedisStore {
            config: Arc::new(StoreConfig {
                client,
                namespace: self.namespace,
                clock: self.clock,
                consistency: self.consistency,
                on_failure: self.on_failure,
                timeout: self.timeout,
                lease_ttl: self.lease_ttl,
                quotas: self.quotas,
                listeners: self.listeners,
            }),
        })
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("namespace", &self.namespace)
            .field("clock", &self.clock)
            .field("consistency", &self.consistency)
            .field("on_failure", &self.on_failure)
            .field("timeout", &self.timeout)
            .field("lease_ttl", &self.lease_ttl)
            .field("quotas", &self.quotas)
            .finish_non_exhaustive()
    }
}

pub(crate) struct StoreConfig {
    pub(crate) client: ::redis::Client,
    pub(crate) namespace: Cow<'static, str>,
    pub(crate) clock: StoreClock,
    pub(crate) consistency: Consistency,
    pub(crate) on_failure: FailMode,
    pub(crate) timeout: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) quotas: Vec<(Cow<'static, str>, PeriodQuota)>,
    pub(crate) listeners: Listeners,
}

/// Where a rate limiter keeps its state when it is shared by a fleet: a
/// Redis server. Set with
/// [`RateLimitLayerBuilder::store`](super::RateLimitLayerBuilder::store).
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) config: Arc<StoreConfig>,
}

impl RedisStore {
    /// A builder for the server at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            namespace: Cow::Borrowed("steadfast"),
            clock: StoreClock::Server,
            consistency: Consistency::Exact,
            on_failure: FailMode::default(),
            timeout: DEFAULT_TIMEOUT,
            lease_ttl: DEFAULT_LEASE_TTL,
            quotas: Vec::new(),
            listeners: Listeners::none(),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("namespace", &self.config.namespace)
            .field("consistency", &self.config.consistency)
            .field("on_failure", &self.config.on_failure)
            .field("timeout", &self.config.timeout)
            .finish_non_exhaustive()
    }
}

impl<K> super::RateLimitHandle<K>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    /// `key`'s real-time usage of its tier, read from the shared store
    /// without taking anything.
    ///
    /// # Errors
    ///
    /// The limiter has no shared store, or the store failed or timed out.
    pub async fn usage(&self, key: &K) -> Result<Usage, crate::BoxError> {
        let remote = self
            .limits
            .remote
            .as_ref()
            .ok_or("the rate limiter has no shared store")?;
        let tier = self.limits.tier_index(key);
        remote.bound.usage(tier, &remote.name_of(key)).await
    }

    /// Takes `cost` calls at once from `key`'s allowance, for a weighted
    /// call: `Ok` to go ahead (after the delay, when throttled), or the
    /// refusal.
    ///
    /// # Errors
    ///
    /// [`RateLimited`](crate::error::RateLimited) when the allowance or the
    /// quota is spent, or the limiter has no shared store.
    pub async fn check_n(&self, key: &K, cost: u32) -> Result<Duration, crate::BoxError> {
        let remote = self
            .limits
            .remote
            .as_ref()
            .ok_or("the rate limiter has no shared store")?;
        let tier = self.limits.tier_index(key);
        let check = Arc::clone(&remote.bound).check_n(tier, remote.name_of(key), cost);
        match check.await {
            Verdict::Allow { delay } => Ok(delay),
            Verdict::Deny { retry_after } => {
                Err(crate::error::RateLimited::new(retry_after).into())
            }
        }
    }

    /// Script calls sent to the shared store so far (zero without one).
    pub fn store_round_trips(&self) -> u64 {
        self.limits
            .remote
            .as_ref()
            .map_or(0, |remote| remote.bound.round_trips())
    }
}
