//! A store bound to one limiter's tiers: the per-call path, leases and the
//! fail modes.

use std::borrow::Cow;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::script::{Connector, Invocation, Reply, ScriptService};
use super::{Consistency, FailMode, StoreConfig, Usage};
use crate::BoxError;
use crate::circuit_breaker::{CircuitBreaker, CircuitBreakerHandle, CircuitBreakerLayer};
use crate::error::ConfigError;
use crate::keyed::KeyedRegistry;
use crate::rate_limit::Mode;
use crate::rate_limit::clock::TokioClock;
use crate::rate_limit::gcra::Limiter;
use crate::rate_limit::quota::Quota;
use crate::rate_limit::quota_period::PeriodQuota;
use crate::rate_limit::tier::{Tier, new_limiter};
use crate::timeout::{Timeout, TimeoutLayer};

/// The key as events name it: the store's name for it, none for the
/// one allowance of an unkeyed limiter (`*`).
fn event_key(name: &str) -> Option<&str> {
    (name != "*").then_some(name)
}

/// How long a fail-closed refusal asks the caller to wait.
const FAIL_CLOSED_RETRY: Duration = Duration::from_secs(1);

pub(crate) use crate::rate_limit::future::{StoreCheck, Verdict};

/// A decision made at once, or one that needs the store.
pub(crate) enum Quick {
    Done(Verdict),
    Ask(StoreCheck),
}

/// Permits leased from the store, spent without a round trip.
///
/// One fetch at a time per replica and key (`fetch`), so a replica holds at
/// most `batch` permits: the bound on the fleet's over-admission.
struct Lease {
    permits: AtomicU64,
    /// Microseconds after the store's start when the permits lapse.
    expires: AtomicU64,
    /// Until when the store refused: a refusal holds for its retry-after,
    /// whatever other replicas do, so it is answered here meanwhile.
    denied_until: AtomicU64,
    /// What the store had left after the last fetch, for the headers.
    store_remaining: AtomicU64,
    fetch: Arc<tokio::sync::Mutex<()>>,
}

impl Lease {
    fn new() -> Self {
        Self {
            permits: AtomicU64::new(0),
            expires: AtomicU64::new(0),
            denied_until: AtomicU64::new(0),
            store_remaining: AtomicU64::new(0),
            fetch: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Takes one permit if the lease holds one and has not lapsed; answers
    /// the permits left.
    #[inline]
    fn take(&self, now: u64) -> Option<u64> {
        if now >= self.expires.load(Ordering::Acquire) {
            return None;
        }
        self.permits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1))
            .ok()
            .map(|p| p - 1)
    }

    /// The wait left on the last refusal, if it still holds.
    #[inline]
    fn denied(&self, now: u64) -> Option<Duration> {
        let until = self.denied_until.load(Ordering::Acquire);
        (now < until).then(|| Duration::from_micros(until - now))
    }

    /// Adds `n` permits (replacing lapsed ones), holding at most `batch`,
    /// valid until `expires`. Called under `fetch`.
    fn add(&self, n: u64, batch: u64, now: u64, expires: u64) {
        let lapsed = now >= self.expires.load(Ordering::Acquire);
        let _ = self
            .permits
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                let p = if lapsed { 0 } else { p };
                Some(p.saturating_add(n).min(batch))
            });
        self.expires.store(expires, Ordering::Release);
    }

    fn held(&self, now: u64) -> u64 {
        if now >= self.expires.load(Ordering::Acquire) {
            0
        } else {
            self.permits.load(Ordering::Acquire)
        }
    }
}

struct TierState {
    name: Cow<'static, str>,
    interval_us: i64,
    burst: i64,
    quota: Option<PeriodQuota>,
    /// The in-process share of the tier, for `FailMode::Local`.
    local: KeyedRegistry<String, Limiter>,
    local_quota: governor::Quota,
    leases: KeyedRegistry<String, Lease>,
    /// The series of its refusals and delays, made with the limiter.
    decisions: crate::event::Decisions,
}

impl TierState {
    /// Reports a refused call, counted in the tier's series.
    #[cold]
    fn emit_rejected(&self, key: Option<&str>, retry_after: Duration) {
        crate::event::emit_counted(
            &self.decisions,
            &crate::event::Listeners::none(),
            &crate::event::Event::Rejected {
                rejection: crate::event::Rejection::RateLimited,
                name: &self.name,
                key,
                retry_after: Some(retry_after),
            },
        );
    }

    /// Reports a delayed call, counted in the tier's series.
    #[cold]
    fn emit_throttled(&self, key: Option<&str>, delay: Duration) {
        crate::event::emit_counted(
            &self.decisions,
            &crate::event::Listeners::none(),
            &crate::event::Event::Throttled {
                tier: &self.name,
                key,
                delay,
            },
        );
    }

    fn interval(&self) -> Duration {
        Duration::from_micros(u64::try_from(self.interval_us).unwrap_or(0))
    }

    fn allowance(
        &self,
        remaining: u64,
        quota: Option<crate::rate_limit::report::QuotaAllowance>,
    ) -> crate::rate_limit::report::Allowance {
        let burst = u64::try_from(self.burst).unwrap_or(0);
        let empty = u32::try_from(burst.saturating_sub(remaining)).unwrap_or(u32::MAX);
        crate::rate_limit::report::Allowance {
            tier: self.name.clone(),
            limit: burst,
            remaining: remaining.min(burst),
            reset: self.interval().saturating_mul(empty),
            window: self
                .interval()
                .saturating_mul(u32::try_from(burst).unwrap_or(u32::MAX)),
            quota,
        }
    }

    /// Reports a reply to a listening slot; `held` permits are in this
    /// replica's lease.
    fn report(&self, reply: &Reply, held: u64) {
        crate::rate_limit::report::report(|| {
            let quota = self
                .quota
                .map(|_| crate::rate_limit::report::QuotaAllowance {
                    limit: reply.limit,
                    remaining: reply.limit.saturating_sub(reply.used).saturating_add(held),
                    reset: Duration::from_micros(
                        reply
                            .reset_unix
                            .saturating_mul(1_000_000)
                            .saturating_sub(reply.now_us),
                    ),
                });
            let mut allowance = self.allowance(reply.remaining.saturating_add(held), quota);
            if reply.granted == 0 {
                allowance.remaining = 0;
                allowance.reset = reply.wait;
            } else {
                allowance.reset = reply.full_in;
            }
            allowance
        });
    }
}

/// The last usage the store reported for one key.
#[derive(Default)]
struct UsageCell {
    used: AtomicU64,
    limit: AtomicU64,
    reset_unix: AtomicU64,
    remaining: AtomicU64,
}

/// Keys whose usage health snapshots show.
const USAGE_KEYS: u64 = 64;

type StoreService = CircuitBreaker<Timeout<ScriptService>>;

/// A store bound to one limiter's tiers.
pub(crate) struct Bound {
    config: Arc<StoreConfig>,
    tiers: Box<[TierState]>,
    max_wait_us: i64,
    service: StoreService,
    breaker: CircuitBreakerHandle,
    connector: Arc<Connector>,
    degraded: AtomicBool,
    degraded_since: AtomicU64,
    failures: AtomicU64,
    start: Instant,
    recent: KeyedRegistry<(usize, String), UsageCell>,
    /// The series of the store's transitions, made with the limiter.
    decisions: crate::event::Decisions,
}

/// The store of a limiter with keys of type `K`.
pub(crate) struct Remote<K> {
    pub(crate) bound: Arc<Bound>,
    encode: fn(&K, &mut String),
}

impl<K> Remote<K> {
    pub(crate) fn new(
        config: Arc<StoreConfig>,
        tiers: &[Tier],
        mode: Mode,
        max_keys: u64,
        encode: fn(&K, &mut String),
    ) -> Result<Self, ConfigError> {
        for (tier, _) in &config.quotas {
            if !tiers.iter().any(|t| t.name == *tier) {
                return Err(ConfigError::new(
                    "rate_limit.store.quota",
                    tier,
                    "names no defined tier",
                ));
            }
        }
        let replicas = match config.on_failure {
            FailMode::Local { replicas } => replicas.max(1),
            _ => 1,
        };
        let mut states = Vec::with_capacity(tiers.len());
        for tier in tiers {
            let quota = tier.quota;
            let interval = quota.period() / quota.per_period().max(1);
            let interval_us = i64::try_from(interval.as_micros()).unwrap_or(i64::MAX);
            // The script counts in doubles, exact below 2^53 µs (285 years).
            if interval_us < 1 || interval_us > (1 << 53) / i64::from(quota.burst_size().max(1)) {
                return Err(ConfigError::new(
                    "rate_limit.quota.period",
                    quota.period(),
                    format!(
                        "a shared store needs one call per microsecond at most, \
                         and a refill under 285 years (tier `{}`)",
                        tier.name
                    ),
                ));
            }
            let share = Quota::new((quota.per_period() / replicas).max(1), quota.period())
                .burst((quota.burst_size() / replicas).max(1));
            let local_quota = share.to_governor(&tier.name)?;
            let refill = local_quota.burst_size_replenished_in();
            states.push(TierState {
                name: tier.name.clone(),
                interval_us,
                burst: i64::from(quota.burst_size()),
                quota: config
                    .quotas
                    .iter()
                    .find(|(name, _)| *name == tier.name)
                    .map(|(_, q)| *q),
                local: KeyedRegistry::new(max_keys, Some(refill.max(Duration::from_secs(60)))),
                local_quota,
                leases: KeyedRegistry::new(max_keys, Some(config.lease_ttl.saturating_mul(2))),
                decisions: crate::event::Decisions::new(),
            });
        }
        let max_wait_us = match mode {
            Mode::Throttle { max_delay } => i64::try_from(max_delay.as_micros())
                .unwrap_or(i64::MAX)
                .min(1 << 50),
            Mode::Reject => 0,
        };
        let connector = Arc::new(Connector::new(config.client.clone(), config.timeout));
        let breaker = CircuitBreakerLayer::builder()
            .name("rate_limit_store")
            .count_window(20)
            .minimum_calls(5)
            .failure_rate_threshold(50.0)
            .open_duration(Duration::from_secs(1))
            .build()?;
        let handle = breaker.handle();
        let service = breaker.layer(TimeoutLayer::new(config.timeout)?.layer(ScriptService {
            shared: Arc::clone(&connector),
        }));
        Ok(Self {
            bound: Arc::new(Bound {
                config,
                tiers: states.into_boxed_slice(),
                max_wait_us,
                service,
                breaker: handle,
                connector,
                degraded: AtomicBool::new(false),
                degraded_since: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                start: Instant::now(),
                recent: KeyedRegistry::new(USAGE_KEYS, None),
                decisions: crate::event::Decisions::new(),
            }),
            encode,
        })
    }

    /// The store's name for `key`.
    #[inline]
    pub(crate) fn name_of(&self, key: &K) -> String {
        let mut name = String::with_capacity(24);
        (self.encode)(key, &mut name);
        name
    }

    /// Takes `cost` calls from `key`'s allowance in `tier`: at once from a
    /// lease, or with a round trip.
    #[inline]
    pub(crate) fn check(&self, tier: usize, key: &K, cost: u32) -> Quick {
        let name = self.name_of(key);
        let bound = &self.bound;
        if let (Consistency::Leased { batch }, Some(state)) =
            (bound.config.consistency, bound.tiers.get(tier))
        {
            if cost == 1 {
                if let Some(lease) = state.leases.get(&name) {
                    let now = bound.now_us();
                    if let Some(left) = lease.take(now) {
                        let remaining = lease.store_remaining.load(Ordering::Relaxed) + left;
                        crate::rate_limit::report::report(|| state.allowance(remaining, None));
                        if left <= u64::from(batch) / 2 {
                            bound.prefetch(tier, name, lease, u64::from(batch));
                        }
                        return Quick::Done(Verdict::Allow {
                            delay: Duration::ZERO,
                        });
                    }
                    if let Some(retry_after) = lease.denied(now) {
                        state.emit_rejected(event_key(&name), retry_after);
                        return Quick::Done(Verdict::Deny { retry_after });
                    }
                }
                return Quick::Ask(Box::pin(Arc::clone(bound).lease(tier, name, batch)));
            }
        }
        Quick::Ask(Box::pin(Arc::clone(bound).ask(tier, name, cost)))
    }
}

impl Bound {
    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn keys(&self, tier: &TierState, key: &str) -> (String, String) {
        let ns = &self.config.namespace;
        (
            format!("{ns}:{}:{key}:r", tier.name),
            format!("{ns}:{}:{key}:q", tier.name),
        )
    }

    /// One script call under the timeout and the breaker.
    async fn invoke(
        &self,
        tier: &TierState,
        key: &str,
        want: u64,
        min: u64,
        max_wait_us: i64,
        peek: bool,
    ) -> Result<Reply, BoxError> {
        let (rate_key, quota_key) = self.keys(tier, key);
        let (limit, period) = tier
            .quota
            .map_or((0, 0), |q| (q.limit(), q.period().code()));
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let call = Invocation {
            rate_key,
            quota_key,
            args: [
                self.config.clock.now_us(),
                tier.interval_us,
                tier.burst,
                int(want),
                int(min),
                max_wait_us,
                int(limit),
                i64::from(period),
                i64::from(peek),
            ],
        };
        let mut service = self.service.clone();
        poll_fn(|cx| service.poll_ready(cx)).await?;
        let values = service.call(call).await?;
        Reply::parse(&values).ok_or_else(|| "the store's script gave an unreadable reply".into())
    }

    async fn ask(self: Arc<Self>, tier: usize, key: String, cost: u32) -> Verdict {
        let Some(state) = self.tiers.get(tier) else {
            return Verdict::Allow {
                delay: Duration::ZERO,
            };
        };
        let cost = u64::from(cost);
        match self
            .invoke(state, &key, cost, cost, self.max_wait_us, false)
            .await
        {
            Ok(reply) => {
                self.up();
                self.record(tier, &key, &reply);
                state.report(&reply, 0);
                if reply.granted >= cost {
                    if !reply.wait.is_zero() {
                        state.emit_throttled(event_key(&key), reply.wait);
                    }
                    Verdict::Allow { delay: reply.wait }
                } else {
                    state.emit_rejected(event_key(&key), reply.wait);
                    Verdict::Deny {
                        retry_after: reply.wait,
                    }
                }
            }
            Err(error) => {
                self.down(&error);
                self.fallback(state, &key)
            }
        }
    }

    fn lease_ttl_us(&self) -> u64 {
        u64::try_from(self.config.lease_ttl.as_micros()).unwrap_or(u64::MAX)
    }

    /// A call that found no leased permit: takes a lease (one fetch at a
    /// time; the others wait for it, at most the store timeout) and spends
    /// one permit of it.
    async fn lease(self: Arc<Self>, tier: usize, key: String, batch: u32) -> Verdict {
        let Some(state) = self.tiers.get(tier) else {
            return Verdict::Allow {
                delay: Duration::ZERO,
            };
        };
        let batch = u64::from(batch);
        let mut overflow = false;
        let lease = state.leases.get_or_insert_with(&key, |key| {
            overflow = key.is_none();
            Lease::new()
        });
        if overflow {
            // Every lease place is held: a lease shared by unregistered
            // keys would spend one key's permits on another, so this call
            // asks the store itself.
            return self.ask(tier, key, 1).await;
        }
        // Waiting for the fetch ahead and fetching share one timeout.
        let deadline = Instant::now() + self.config.timeout;
        let Ok(_guard) = tokio::time::timeout_at(deadline, lease.fetch.lock()).await else {
            // The fetch ahead of this call has taken the whole timeout.
            return self.fallback(state, &key);
        };
        let now = self.now_us();
        if lease.take(now).is_some() {
            return Verdict::Allow {
                delay: Duration::ZERO,
            };
        }
        if let Some(retry_after) = lease.denied(now) {
            state.emit_rejected(event_key(&key), retry_after);
            return Verdict::Deny { retry_after };
        }
        let fetched = tokio::time::timeout_at(
            deadline,
            self.invoke(state, &key, batch, 1, self.max_wait_us, false),
        )
        .await
        .unwrap_or_else(|_| Err(crate::error::Elapsed::new().into()));
        match fetched {
            Ok(reply) if reply.granted >= 1 => {
                self.up();
                self.record(tier, &key, &reply);
                lease
                    .store_remaining
                    .store(reply.remaining, Ordering::Relaxed);
                state.report(&reply, reply.granted - 1);
                let now = self.now_us();
                lease.add(
                    reply.granted - 1,
                    batch,
                    now,
                    now.saturating_add(self.lease_ttl_us()),
                );
                if !reply.wait.is_zero() {
                    state.emit_throttled(event_key(&key), reply.wait);
                }
                Verdict::Allow { delay: reply.wait }
            }
            Ok(reply) => {
                self.up();
                self.record(tier, &key, &reply);
                state.report(&reply, 0);
                let until = self
                    .now_us()
                    .saturating_add(u64::try_from(reply.wait.as_micros()).unwrap_or(u64::MAX));
                lease.denied_until.store(until, Ordering::Release);
                state.emit_rejected(event_key(&key), reply.wait);
                Verdict::Deny {
                    retry_after: reply.wait,
                }
            }
            Err(error) => {
                self.down(&error);
                self.fallback(state, &key)
            }
        }
    }

    /// Takes the next lease in the background, topping the lease up to
    /// `batch` permits, unless a fetch is already under way.
    fn prefetch(self: &Arc<Self>, tier: usize, key: String, lease: Arc<Lease>, batch: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(guard) = Arc::clone(&lease.fetch).try_lock_owned() else {
            return;
        };
        let this = Arc::clone(self);
        runtime.spawn(async move {
            let _guard = guard;
            let Some(state) = this.tiers.get(tier) else {
                return;
            };
            let want = batch.saturating_sub(lease.held(this.now_us())).max(1);
            match this.invoke(state, &key, want, 1, 0, false).await {
                Ok(reply) => {
                    this.up();
                    lease
                        .store_remaining
                        .store(reply.remaining, Ordering::Relaxed);
                    let now = this.now_us();
                    lease.add(
                        reply.granted,
                        batch,
                        now,
                        now.saturating_add(this.lease_ttl_us()),
                    );
                }
                Err(error) => this.down(&error),
            }
        });
    }

    fn fallback(&self, state: &TierState, key: &str) -> Verdict {
        match self.config.on_failure {
            FailMode::FailOpen => Verdict::Allow {
                delay: Duration::ZERO,
            },
            FailMode::FailClosed => {
                state.emit_rejected(event_key(key), FAIL_CLOSED_RETRY);
                Verdict::Deny {
                    retry_after: FAIL_CLOSED_RETRY,
                }
            }
            FailMode::Local { .. } => {
                use governor::clock::Clock;
                let key = key.to_owned();
                let quota = state.local_quota;
                let checked = state.local.with(
                    &key,
                    |_| new_limiter(quota),
                    |limiter| {
                        limiter
                            .check()
                            .map_err(|not_until| not_until.wait_time_from(TokioClock.now()))
                    },
                );
                match checked {
                    Ok(_) => Verdict::Allow {
                        delay: Duration::ZERO,
                    },
                    Err(wait) => {
                        state.emit_rejected(event_key(&key), wait);
                        Verdict::Deny { retry_after: wait }
                    }
                }
            }
        }
    }

    /// Keeps `reply` as `key`'s latest usage, for health snapshots.
    fn record(&self, tier: usize, key: &str, reply: &Reply) {
        let cell = self
            .recent
            .get_or_insert_with(&(tier, key.to_owned()), |_| UsageCell::default());
        cell.used.store(reply.used, Ordering::Relaxed);
        cell.limit.store(reply.limit, Ordering::Relaxed);
        cell.reset_unix.store(reply.reset_unix, Ordering::Relaxed);
        cell.remaining.store(reply.remaining, Ordering::Relaxed);
    }

    fn up(&self) {
        if self.degraded.load(Ordering::Acquire) && self.degraded.swap(false, Ordering::AcqRel) {
            let since = self.degraded_since.load(Ordering::Acquire);
            let degraded_for = Duration::from_micros(self.now_us().saturating_sub(since));
            crate::event::emit_counted(
                &self.decisions,
                &self.config.listeners,
                &crate::event::Event::StoreRecovered {
                    store: &self.config.namespace,
                    degraded_for,
                },
            );
        }
    }

    #[cold]
    fn down(&self, error: &BoxError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !self.degraded.load(Ordering::Acquire) && !self.degraded.swap(true, Ordering::AcqRel) {
            self.degraded_since.store(self.now_us(), Ordering::Release);
            let error = error.to_string();
            crate::event::emit_counted(
                &self.decisions,
                &self.config.listeners,
                &crate::event::Event::StoreDegraded {
                    store: &self.config.namespace,
                    mode: self.config.on_failure.as_str(),
                    error: &error,
                },
            );
        }
    }

    /// Reads `key`'s usage of `tier` without taking anything.
    pub(crate) async fn usage(&self, tier: usize, key: &str) -> Result<Usage, BoxError> {
        let state = self.tiers.get(tier).ok_or("no such tier")?;
        let reply = self.invoke(state, key, 0, 0, 0, true).await?;
        self.up();
        Ok(Usage {
            used: reply.used,
            limit: reply.limit,
            reset: UNIX_EPOCH + Duration::from_secs(reply.reset_unix),
            remaining_burst: reply.remaining,
        })
    }

    /// Takes `cost` calls at once, for a weighted call.
    pub(crate) async fn check_n(self: Arc<Self>, tier: usize, key: String, cost: u32) -> Verdict {
        self.ask(tier, key, cost).await
    }

    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    pub(crate) fn status(&self) -> crate::event::StoreStatus {
        crate::event::StoreStatus {
            kind: "redis",
            namespace: self.config.namespace.to_string(),
            degraded: self.is_degraded(),
            on_failure: self.config.on_failure.as_str(),
            consistency: match self.config.consistency {
                Consistency::Exact => "exact",
                Consistency::Leased { .. } => "leased",
            },
            breaker: self.breaker.state().as_str(),
            round_trips: self.connector.round_trips.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            usage: self
                .recent
                .entries()
                .into_iter()
                .map(|((tier, key), cell)| crate::event::KeyUsage {
                    tier: self
                        .tiers
                        .get(tier)
                        .map_or_else(String::new, |t| t.name.to_string()),
                    key,
                    used: cell.used.load(Ordering::Relaxed),
                    limit: cell.limit.load(Ordering::Relaxed),
                    reset_unix: cell.reset_unix.load(Ordering::Relaxed),
                    remaining_burst: cell.remaining.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }

    pub(crate) fn round_trips(&self) -> u64 {
        self.connector.round_trips.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_at_most_its_batch_and_lapses() {
        let lease = Lease::new();
        assert_eq!(lease.take(0), None, "an empty lease grants nothing");
        lease.add(7, 5, 0, 100);
        assert_eq!(lease.held(0), 5, "never more than the batch");
        assert_eq!(lease.take(10), Some(4));
        lease.add(3, 5, 10, 200);
        assert_eq!(lease.held(10), 5);
        for left in (0..5).rev() {
            assert_eq!(lease.take(150), Some(left));
        }
        assert_eq!(lease.take(150), None);
        lease.add(2, 5, 150, 300);
        assert_eq!(lease.take(300), None, "lapsed at its expiry");
        assert_eq!(lease.held(300), 0);
        lease.add(1, 5, 300, 400);
        assert_eq!(
            lease.held(300),
            1,
            "lapsed permits are replaced, not added to"
        );
    }

    #[test]
    fn a_refusal_holds_until_its_retry_after() {
        let lease = Lease::new();
        assert_eq!(lease.denied(0), None);
        lease.denied_until.store(1_000, Ordering::Release);
        assert_eq!(lease.denied(400), Some(Duration::from_micros(600)));
        assert_eq!(lease.denied(1_000), None);
    }
}
