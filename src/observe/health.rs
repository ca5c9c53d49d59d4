//! Snapshots of every breaker, bulkhead, limiter and budget, for health
//! endpoints.

use std::fmt;
use std::sync::Arc;

use crate::adaptive::{AdaptiveHandle, KeyedAdaptiveHandle};
use crate::budget::RetryBudget;
use crate::bulkhead::{BulkheadHandle, KeyedBulkheadHandle};
use crate::circuit_breaker::CircuitBreakerHandle;
use crate::event::StoreStatus;

#[cfg(feature = "serde")]
use serde::Serialize;

/// The state of one circuit breaker.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct BreakerStatus {
    /// The breaker's name.
    pub name: String,
    /// Its key, for a keyed breaker.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub key: Option<String>,
    /// `closed`, `open`, `half_open`, `forced_open`, `disabled` or
    /// `metrics_only`.
    pub state: &'static str,
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// Failures in percent of the calls in the window.
    pub failure_rate: f64,
    /// Slow calls in percent of the calls in the window.
    pub slow_call_rate: f64,
    /// Milliseconds the breaker stays open, when open.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub open_remaining_ms: Option<u64>,
    /// Probe calls under way.
    pub probes_in_flight: u32,
}

impl BreakerStatus {
    /// Reads `handle`.
    pub fn of(handle: &CircuitBreakerHandle) -> Self {
        let s = handle.snapshot();
        Self {
            name: handle.name().to_owned(),
            key: handle.key().map(str::to_owned),
            state: s.state.as_str(),
            calls: s.calls,
            failures: s.failures,
            slow_calls: s.slow_calls,
            failure_rate: s.failure_rate(),
            slow_call_rate: s.slow_call_rate(),
            open_remaining_ms: s
                .open_remaining
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            probes_in_flight: s.probes_in_flight,
        }
    }

    /// Whether the breaker lets calls through (closed, disabled or
    /// metrics only; half-open counts as not healthy).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, "closed" | "disabled" | "metrics_only")
    }
}

/// The state of one bulkhead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct BulkheadStatus {
    /// The bulkhead's name.
    pub name: String,
    /// Its key, for a keyed bulkhead.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub key: Option<String>,
    /// Calls holding a permit.
    pub in_flight: usize,
    /// Permits free.
    pub available: usize,
    /// Calls waiting for a permit.
    pub waiting: usize,
    /// The most calls in flight.
    pub max_concurrent: usize,
}

impl BulkheadStatus {
    /// Reads `handle`.
    pub fn of(handle: &BulkheadHandle) -> Self {
        Self {
            name: handle.name().to_owned(),
            key: handle.key().map(str::to_owned),
            in_flight: handle.in_flight(),
            available: handle.available(),
            waiting: handle.waiting(),
            max_concurrent: handle.max_concurrent(),
        }
    }
}

/// The state of one adaptive concurrency limit.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct AdaptiveStatus {
    /// The limiter's name.
    pub name: String,
    /// Its key, for a keyed limiter.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub key: Option<String>,
    /// `gradient` or `aimd`.
    pub algorithm: &'static str,
    /// The current limit.
    pub limit: usize,
    /// The calls admitted at once now (the minimum while probing).
    pub admitted: usize,
    /// Calls in flight.
    pub in_flight: usize,
    /// Whether the no-load round-trip time is being measured.
    pub probing: bool,
    /// The estimated no-load round-trip time in milliseconds, once measured.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub min_rtt_ms: Option<f64>,
    /// The last window's mean round-trip time in milliseconds.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub rtt_ms: Option<f64>,
    /// The probability the throttle refuses a call now, if it throttles.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub reject_probability: Option<f64>,
}

impl AdaptiveStatus {
    /// Reads `handle`.
    pub fn of(handle: &AdaptiveHandle) -> Self {
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        Self {
            name: handle.name().to_owned(),
            key: None,
            algorithm: handle.algorithm(),
            limit: handle.limit(),
            admitted: handle.admitted(),
            in_flight: handle.in_flight(),
            probing: handle.probing(),
            min_rtt_ms: handle.min_rtt().map(ms),
            rtt_ms: handle.rtt().map(ms),
            reject_probability: handle.reject_probability(),
        }
    }
}

/// The state of one rate limiter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct LimiterStatus {
    /// The name it was registered under.
    pub name: String,
    /// Keys tracked, all tiers together.
    pub keys: u64,
    /// The most keys tracked.
    pub max_keys: u64,
    /// The tiers.
    pub tiers: Vec<String>,
    /// `reject` or `throttle`.
    pub mode: &'static str,
    /// The shared store, if the limiter keeps its state outside the
    /// process.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub store: Option<StoreStatus>,
}

/// The state of one retry budget.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct BudgetStatus {
    /// Logical calls counted since the budget was made.
    pub requests: u64,
    /// Retries (and hedges) counted since the budget was made.
    pub retries: u64,
    /// Retries the budget would grant now.
    pub remaining: u64,
}

impl BudgetStatus {
    /// Reads `budget`.
    pub fn of(budget: &RetryBudget) -> Self {
        let (requests, retries) = budget.counts();
        Self {
            requests,
            retries,
            remaining: budget.remaining(),
        }
    }
}

/// The state of every stateful layer of one [`Policy`](crate::policy::Policy).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct PolicyStatus {
    /// The name it was registered under, or the policy's own.
    pub name: String,
    /// Its circuit breaker.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub circuit_breaker: Option<BreakerStatus>,
    /// Its bulkhead.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub bulkhead: Option<BulkheadStatus>,
    /// Its retry budget.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub retry_budget: Option<BudgetStatus>,
    /// Its adaptive concurrency limit.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub adaptive: Option<Box<AdaptiveStatus>>,
    /// Its breakers, one per key, when its breaker is keyed (say, per
    /// host): at most the keyed breaker's `max_keys`, each with its key
    /// (left out of the JSON when there is none).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub circuit_breakers: Vec<BreakerStatus>,
    /// Its bulkheads, one per key, when its bulkhead is keyed: at most the
    /// keyed bulkhead's `max_keys`, each with its key (left out of the
    /// JSON when there is none).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub bulkheads: Vec<BulkheadStatus>,
}

impl PolicyStatus {
    pub(crate) fn new(
        name: String,
        breaker: Option<CircuitBreakerHandle>,
        bulkhead: Option<BulkheadHandle>,
        budget: Option<&RetryBudget>,
    ) -> Self {
        Self {
            name,
            circuit_breaker: breaker.as_ref().map(BreakerStatus::of),
            bulkhead: bulkhead.as_ref().map(BulkheadStatus::of),
            retry_budget: budget.map(BudgetStatus::of),
            adaptive: None,
            circuit_breakers: Vec::new(),
            bulkheads: Vec::new(),
        }
    }

    /// The same, with the breakers and bulkheads of each key.
    pub(crate) fn with_keyed(
        mut self,
        breakers: &[CircuitBreakerHandle],
        bulkheads: &[BulkheadHandle],
    ) -> Self {
        self.circuit_breakers = breakers.iter().map(BreakerStatus::of).collect();
        self.bulkheads = bulkheads.iter().map(BulkheadStatus::of).collect();
        self
    }

    /// The same, with the policy's adaptive limit.
    pub(crate) fn with_adaptive(mut self, adaptive: Option<&AdaptiveHandle>) -> Self {
        self.adaptive = adaptive.map(|handle| Box::new(AdaptiveStatus::of(handle)));
        self
    }
}

/// Everything a [`Health`] registry read at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize))]
#[non_exhaustive]
pub struct HealthSnapshot {
    /// Whether every breaker is closed (or disabled, or metrics only).
    pub healthy: bool,
    /// Policies, in registration order.
    pub policies: Vec<PolicyStatus>,
    /// Breakers registered alone, keyed ones one entry per key.
    pub circuit_breakers: Vec<BreakerStatus>,
    /// Bulkheads registered alone, keyed ones one entry per key.
    pub bulkheads: Vec<BulkheadStatus>,
    /// Rate limiters.
    pub rate_limiters: Vec<LimiterStatus>,
    /// Adaptive limits registered alone, keyed ones one entry per key (left
    /// out of the JSON when there is none).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub adaptive_limits: Vec<AdaptiveStatus>,
}

/// A snapshot of one registered component.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Status {
    /// A policy.
    Policy(PolicyStatus),
    /// A breaker.
    CircuitBreaker(BreakerStatus),
    /// A bulkhead.
    Bulkhead(BulkheadStatus),
    /// A rate limiter.
    RateLimiter(LimiterStatus),
    /// An adaptive concurrency limit.
    Adaptive(AdaptiveStatus),
}

type Reader = Arc<dyn Fn(&mut Vec<Status>) + Send + Sync>;

/// A registry of handles, read all at once by [`snapshot`](Self::snapshot).
///
/// Cheap to clone (the readers are shared); keep one in your axum state
/// and serve [`snapshot`](Self::snapshot) as JSON (feature `serde`; the
/// crate's `health` example, in its repository, serves one from axum).
///
/// ```
/// use std::time::Duration;
/// use steadfast::bulkhead::BulkheadLayer;
/// use steadfast::circuit_breaker::CircuitBreakerLayer;
/// use steadfast::observe::Health;
/// use steadfast::policy::Policy;
///
/// # fn main() -> Result<(), steadfast::ConfigError> {
/// let policy = Policy::builder()
///     .name("payments")
///     .circuit_breaker(CircuitBreakerLayer::builder())
///     .build()?;
/// let uploads = BulkheadLayer::builder().max_concurrent(4).name("uploads").build()?;
/// let health = Health::new().policy(&policy).bulkhead(uploads.handle());
///
/// policy.circuit_breaker().unwrap().force_open();
/// let snapshot = health.snapshot();
/// assert!(!snapshot.healthy);
/// assert_eq!(snapshot.policies[0].name, "payments");
/// assert_eq!(snapshot.policies[0].circuit_breaker.as_ref().unwrap().state, "forced_open");
/// assert_eq!(snapshot.bulkheads[0].max_concurrent, 4);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Health {
    readers: Vec<Reader>,
}

impl Health {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a reader of any component: it pushes the statuses it reads.
    pub fn reader(mut self, read: impl Fn(&mut Vec<Status>) + Send + Sync + 'static) -> Self {
        self.readers.push(Arc::new(read));
        self
    }

    /// Adds a circuit breaker.
    pub fn circuit_breaker(self, handle: CircuitBreakerHandle) -> Self {
        self.reader(move |out| out.push(Status::CircuitBreaker(BreakerStatus::of(&handle))))
    }

    /// Adds every key of a keyed circuit breaker (at most its `max_keys`).
    pub fn keyed_circuit_breaker<K, F, C>(
        self,
        layer: &crate::circuit_breaker::KeyedCircuitBreakerLayer<K, F, C>,
    ) -> Self
    where
        F: Send + Sync + 'static,
        K: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
        C: Clone + Send + Sync + 'static,
        crate::circuit_breaker::KeyedCircuitBreakerLayer<K, F, C>: Clone,
    {
        let layer = layer.clone();
        self.reader(move |out| {
            for (_, handle) in layer.handles() {
                out.push(Status::CircuitBreaker(BreakerStatus::of(&handle)));
            }
        })
    }

    /// Adds a bulkhead.
    pub fn bulkhead(self, handle: BulkheadHandle) -> Self {
        self.reader(move |out| out.push(Status::Bulkhead(BulkheadStatus::of(&handle))))
    }

    /// Adds every key of a keyed bulkhead (at most its `max_keys`).
    pub fn keyed_bulkhead<K>(self, handle: KeyedBulkheadHandle<K>) -> Self
    where
        K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
    {
        self.reader(move |out| {
            for (key, bulkhead) in handle.handles() {
                let mut status = BulkheadStatus::of(&bulkhead);
                status.key = Some(key.to_string());
                out.push(Status::Bulkhead(status));
            }
        })
    }

    /// Adds an adaptive concurrency limit.
    pub fn adaptive(self, handle: AdaptiveHandle) -> Self {
        self.reader(move |out| out.push(Status::Adaptive(AdaptiveStatus::of(&handle))))
    }

    /// Adds every key of a keyed adaptive limit (at most its `max_keys`),
    /// and its overflow limiter.
    pub fn keyed_adaptive<K, C>(self, handle: KeyedAdaptiveHandle<K, C>) -> Self
    where
        K: std::hash::Hash + Eq + Clone + fmt::Display + Send + Sync + 'static,
        C: Send + Sync + 'static,
    {
        self.reader(move |out| {
            for (key, limiter) in handle.handles() {
                let mut status = AdaptiveStatus::of(&limiter);
                status.key = Some(key.to_string());
                out.push(Status::Adaptive(status));
            }
            out.push(Status::Adaptive(AdaptiveStatus::of(&handle.overflow())));
        })
    }

    /// Adds a rate limiter under `name`.
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    pub fn rate_limiter<K>(
        self,
        name: impl Into<String>,
        handle: crate::rate_limit::RateLimitHandle<K>,
    ) -> Self
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    {
        let name = name.into();
        self.reader(move |out| {
            out.push(Status::RateLimiter(LimiterStatus {
                name: name.clone(),
                keys: handle.len(),
                max_keys: handle.max_keys(),
                tiers: handle.tier_names().into_iter().map(str::to_owned).collect(),
                mode: match handle.mode() {
                    crate::rate_limit::Mode::Reject => "reject",
                    _ => "throttle",
                },
                store: handle.store_status(),
            }));
        })
    }

    /// Reads every registered component now.
    pub fn statuses(&self) -> Vec<Status> {
        let mut out = Vec::new();
        for read in &self.readers {
            read(&mut out);
        }
        out
    }

    /// Reads every registered component now, grouped by kind.
    pub fn snapshot(&self) -> HealthSnapshot {
        let mut snapshot = HealthSnapshot::default();
        for status in self.statuses() {
            match status {
                Status::Policy(p) => snapshot.policies.push(p),
                Status::CircuitBreaker(b) => snapshot.circuit_breakers.push(b),
                Status::Bulkhead(b) => snapshot.bulkheads.push(b),
                Status::RateLimiter(l) => snapshot.rate_limiters.push(l),
                Status::Adaptive(a) => snapshot.adaptive_limits.push(a),
            }
        }
        snapshot.healthy = snapshot
            .circuit_breakers
            .iter()
            .chain(
                snapshot
                    .policies
                    .iter()
                    .flat_map(|p| p.circuit_breaker.iter().chain(&p.circuit_breakers)),
            )
            .all(BreakerStatus::is_closed);
        snapshot
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("components", &self.readers.len())
            .finish()
    }
}
