//! The settings of each layer, as read from a file.

use std::time::Duration;

use serde::Deserialize;

use crate::bulkhead::BulkheadLayerBuilder;
use crate::circuit_breaker::CircuitBreakerBuilder;
use crate::error::ConfigError;
use crate::hedge::HedgeLayerBuilder;
use crate::retry::{Backoff, Jitter, RetryBudget, RetryLayerBuilder};

/// Whether a breaker or a bulkhead is one for every call (`shared`, the
/// default) or one per host and port (`host`, as the HTTP client preset
/// has), as [`PolicyBuilder::circuit_breaker_per_host`](crate::policy::PolicyBuilder)
/// and `bulkhead_per_host` make it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Per {
    /// One for every call of the policy.
    #[default]
    Shared,
    /// One per host and port of the request
    /// ([`ByHost`](crate::http::ByHost)); HTTP requests only.
    Host,
}

/// The timeouts of a policy: `total` bounds the whole call, retries
/// included; `attempt` bounds each attempt.
///
/// ```toml
/// [policies.api.timeout]
/// total = "5s"
/// attempt = "1s"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TimeoutConfig {
    /// The total timeout ([`TotalDeadlineLayer`](crate::timeout::TotalDeadlineLayer)).
    #[serde(default, with = "humantime_serde")]
    pub total: Option<Duration>,
    /// The attempt timeout ([`TimeoutLayer`](crate::timeout::TimeoutLayer)).
    #[serde(default, with = "humantime_serde")]
    pub attempt: Option<Duration>,
}

/// Retry settings, applied onto a [`RetryLayerBuilder`]; a field left out
/// keeps the builder's default.
///
/// ```
/// use steadfast::config::RetryConfig;
/// use steadfast::retry::RetryLayer;
///
/// let config: RetryConfig = toml::from_str(r#"
///     max_attempts = 3
///     backoff = { kind = "exponential", base = "100ms", cap = "1s", jitter = "full" }
///     budget = { ratio = 0.1, reserve = 5 }
/// "#)?;
/// let retry = config.apply(RetryLayer::builder())?.build()?;
/// assert_eq!(retry.max_attempts(), 3);
///
/// let bad: RetryConfig = toml::from_str("max_attempts = 0")?;
/// let err = bad.apply(RetryLayer::builder())?.build().unwrap_err();
/// assert_eq!(err.field(), "retry.max_attempts");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Attempts in all, the first included ([`RetryLayerBuilder::max_attempts`]).
    pub max_attempts: Option<u32>,
    /// The delays between attempts.
    pub backoff: Option<BackoffConfig>,
    /// A retry budget of its own ([`RetryBudget::builder`]); the default
    /// budget if left out.
    pub budget: Option<BudgetConfig>,
    /// `true`: retries are bounded by `max_attempts` alone
    /// ([`RetryLayerBuilder::unlimited_budget`]).
    pub unlimited_budget: Option<bool>,
    /// Whether a callee's retry-after hint sets the delay: `false` is
    /// [`RetryLayerBuilder::ignore_retry_after`].
    pub honor_retry_after: Option<bool>,
    /// The longest retry-after hint honoured
    /// ([`RetryLayerBuilder::honor_retry_after`]).
    #[serde(default, with = "humantime_serde")]
    pub max_retry_after: Option<Duration>,
    /// A seed for the jitter, to repeat a run exactly
    /// ([`RetryLayerBuilder::seed`]).
    pub seed: Option<u64>,
}

impl RetryConfig {
    /// Sets these settings on `builder`; they are checked by its `build`.
    /// Fails only for settings that contradict each other in the file
    /// (a budget and `unlimited_budget`, a factor on a constant backoff)
    /// or a budget its builder refuses.
    pub fn apply<C, P>(
        &self,
        mut builder: RetryLayerBuilder<C, P>,
    ) -> Result<RetryLayerBuilder<C, P>, ConfigError> {
        if let Some(n) = self.max_attempts {
            builder = builder.max_attempts(n);
        }
        if let Some(backoff) = &self.backoff {
            builder = builder.backoff(backoff.to_backoff()?);
        }
        match (&self.budget, self.unlimited_budget) {
            (Some(_), Some(true)) => {
                return Err(ConfigError::conflict(
                    "retry.unlimited_budget",
                    true,
                    "retry.budget",
                    "a table",
                    "a retry either has a budget or is unlimited",
                ));
            }
            (Some(budget), _) => builder = builder.budget(budget.build()?),
            (None, Some(true)) => builder = builder.unlimited_budget(),
            (None, _) => {}
        }
        builder = match (self.honor_retry_after, self.max_retry_after) {
            (Some(false), _) => builder.ignore_retry_after(),
            (_, Some(max)) => builder.honor_retry_after(max),
            (Some(true), None) => {
                let max = builder.max_retry_after_set();
                builder.honor_retry_after(max)
            }
            (None, None) => builder,
        };
        if let Some(seed) = self.seed {
            builder = builder.seed(seed);
        }
        Ok(builder)
    }
}

/// How a backoff grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum BackoffKind {
    /// [`Backoff::constant`].
    Constant,
    /// [`Backoff::linear`].
    Linear,
    /// [`Backoff::exponential`] (the default).
    #[default]
    Exponential,
}

/// How delays are randomised, as [`Jitter`]: `none`, `full`, `equal` or
/// `decorrelated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum JitterConfig {
    /// [`Jitter::None`].
    None,
    /// [`Jitter::Full`].
    Full,
    /// [`Jitter::Equal`].
    Equal,
    /// [`Jitter::Decorrelated`].
    Decorrelated,
}

impl From<JitterConfig> for Jitter {
    fn from(jitter: JitterConfig) -> Self {
        match jitter {
            JitterConfig::None => Jitter::None,
            JitterConfig::Full => Jitter::Full,
            JitterConfig::Equal => Jitter::Equal,
            JitterConfig::Decorrelated => Jitter::Decorrelated,
        }
    }
}

/// A [`Backoff`]: `kind` (default `exponential`) from `base` (default
/// 100 ms), with an optional `factor` (exponential only), `cap` and
/// `jitter` (default `full`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BackoffConfig {
    /// How delays grow.
    #[serde(default)]
    pub kind: BackoffKind,
    /// The first delay.
    #[serde(default, with = "humantime_serde")]
    pub base: Option<Duration>,
    /// The growth factor of an exponential backoff.
    pub factor: Option<f64>,
    /// The longest delay.
    #[serde(default, with = "humantime_serde")]
    pub cap: Option<Duration>,
    /// How delays are randomised.
    pub jitter: Option<JitterConfig>,
}

impl BackoffConfig {
    /// The backoff these settings describe; it is checked by the retry
    /// builder's `build`.
    pub fn to_backoff(&self) -> Result<Backoff, ConfigError> {
        let base = self.base.unwrap_or(Backoff::default().base());
        let mut backoff = match self.kind {
            BackoffKind::Constant => Backoff::constant(base),
            BackoffKind::Linear => Backoff::linear(base),
            BackoffKind::Exponential => Backoff::exponential(base),
        };
        if let Some(factor) = self.factor {
            if self.kind != BackoffKind::Exponential {
                return Err(ConfigError::new(
                    "retry.backoff.factor",
                    factor,
                    "a factor applies to an exponential backoff only",
                ));
            }
            backoff = backoff.factor(factor);
        }
        if let Some(cap) = self.cap {
            backoff = backoff.cap(cap);
        }
        if let Some(jitter) = self.jitter {
            backoff = backoff.jitter(jitter.into());
        }
        Ok(backoff)
    }
}

/// A [`RetryBudget`]; a field left out keeps the default (20 % of
/// requests plus 10 retries per second, over 10 s).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BudgetConfig {
    /// Retries allowed per request counted, between 0 and 1.
    pub ratio: Option<f64>,
    /// Retries the budget starts with and never holds more than.
    pub reserve: Option<u32>,
}

impl BudgetConfig {
    /// Checks the settings and builds the budget.
    pub fn build(&self) -> Result<RetryBudget, ConfigError> {
        let mut builder = RetryBudget::builder();
        if let Some(ratio) = self.ratio {
            builder = builder.ratio(ratio);
        }
        if let Some(reserve) = self.reserve {
            builder = builder.reserve(reserve);
        }
        builder.build()
    }
}

/// Circuit breaker settings, applied onto a [`CircuitBreakerBuilder`]
/// (plain or keyed); a field left out keeps the builder's default.
///
/// ```
/// use steadfast::circuit_breaker::CircuitBreakerLayer;
/// use steadfast::config::CircuitBreakerConfig;
///
/// let config: CircuitBreakerConfig = toml::from_str(r#"
///     failure_rate_threshold = 50.0
///     time_window = "30s"
///     time_window_buckets = 30
///     minimum_calls = 20
///     open_duration = "5s"
/// "#)?;
/// let breaker = config.apply(CircuitBreakerLayer::builder())?.build()?;
/// # let _ = breaker;
///
/// let bad: CircuitBreakerConfig = toml::from_str("failure_rate_threshold = 120.0")?;
/// let err = bad.apply(CircuitBreakerLayer::builder())?.build().unwrap_err();
/// assert_eq!(err.field(), "circuit_breaker.failure_rate_threshold");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CircuitBreakerConfig {
    /// [`CircuitBreakerBuilder::failure_rate_threshold`], in percent.
    pub failure_rate_threshold: Option<f64>,
    /// [`CircuitBreakerBuilder::slow_call_rate_threshold`], in percent.
    pub slow_call_rate_threshold: Option<f64>,
    /// [`CircuitBreakerBuilder::slow_call_duration`].
    #[serde(default, with = "humantime_serde")]
    pub slow_call_duration: Option<Duration>,
    /// [`CircuitBreakerBuilder::count_window`]: the last this many calls.
    pub count_window: Option<u64>,
    /// [`CircuitBreakerBuilder::time_window`]: the calls of this span, with
    /// `time_window_buckets`.
    #[serde(default, with = "humantime_serde")]
    pub time_window: Option<Duration>,
    /// The buckets of `time_window`.
    pub time_window_buckets: Option<u32>,
    /// [`CircuitBreakerBuilder::minimum_calls`].
    pub minimum_calls: Option<u64>,
    /// [`CircuitBreakerBuilder::open_duration`].
    #[serde(default, with = "humantime_serde")]
    pub open_duration: Option<Duration>,
    /// [`CircuitBreakerBuilder::open_backoff`]'s factor, with `open_backoff_max`.
    pub open_backoff_factor: Option<f64>,
    /// [`CircuitBreakerBuilder::open_backoff`]'s longest open duration.
    #[serde(default, with = "humantime_serde")]
    pub open_backoff_max: Option<Duration>,
    /// [`CircuitBreakerBuilder::honor_retry_after`]: the longest hint honoured.
    #[serde(default, with = "humantime_serde")]
    pub honor_retry_after: Option<Duration>,
    /// [`CircuitBreakerBuilder::consecutive_failures`]: a run of this many
    /// failed calls opens the breaker whatever its window holds.
    pub consecutive_failures: Option<u32>,
    /// [`CircuitBreakerBuilder::retry_after_run`]: failed calls in a row,
    /// the last with a hint, that open the breaker for the hint.
    pub retry_after_run: Option<u32>,
    /// [`CircuitBreakerBuilder::half_open_probes`].
    pub half_open_probes: Option<u32>,
    /// [`CircuitBreakerBuilder::max_half_open_wait`].
    #[serde(default, with = "humantime_serde")]
    pub max_half_open_wait: Option<Duration>,
    /// One breaker for every call (`"shared"`, the default) or one per
    /// host (`"host"`), each with these settings.
    pub per: Option<Per>,
    /// With `per = "host"`: the most hosts kept at once
    /// ([`PerKey::max_keys`](crate::policy::PerKey::max_keys)).
    pub max_keys: Option<u64>,
}

impl CircuitBreakerConfig {
    /// Sets these settings on `builder`; they are checked by its `build`.
    /// Fails only for settings that contradict each other in the file
    /// (two windows, a time window without its buckets, half an open
    /// backoff).
    pub fn apply<C, M>(
        &self,
        mut builder: CircuitBreakerBuilder<C, M>,
    ) -> Result<CircuitBreakerBuilder<C, M>, ConfigError> {
        if let Some(rate) = self.failure_rate_threshold {
            builder = builder.failure_rate_threshold(rate);
        }
        if let Some(rate) = self.slow_call_rate_threshold {
            builder = builder.slow_call_rate_threshold(rate);
        }
        if let Some(duration) = self.slow_call_duration {
            builder = builder.slow_call_duration(duration);
        }
        match (
            self.count_window,
            self.time_window,
            self.time_window_buckets,
        ) {
            (Some(calls), Some(span), _) => {
                return Err(ConfigError::conflict(
                    "circuit_breaker.count_window",
                    calls,
                    "circuit_breaker.time_window",
                    span,
                    "a breaker has one window: a count window or a time window",
                ));
            }
            (Some(calls), None, None) => builder = builder.count_window(calls),
            (_, Some(span), Some(buckets)) => builder = builder.time_window(span, buckets),
            (_, Some(span), None) => {
                return Err(ConfigError::new(
                    "circuit_breaker.time_window_buckets",
                    span,
                    "must be set with `time_window`",
                ));
            }
            (_, None, Some(buckets)) => {
                return Err(ConfigError::new(
                    "circuit_breaker.time_window_buckets",
                    buckets,
                    "needs a `time_window`",
                ));
            }
            (None, None, None) => {}
        }
        if let Some(calls) = self.minimum_calls {
            builder = builder.minimum_calls(calls);
        }
        if let Some(run) = self.consecutive_failures {
            builder = builder.consecutive_failures(run);
        }
        if let Some(run) = self.retry_after_run {
            builder = builder.retry_after_run(run);
        }
        if let Some(duration) = self.open_duration {
            builder = builder.open_duration(duration);
        }
        match (self.open_backoff_factor, self.open_backoff_max) {
            (Some(factor), Some(max)) => builder = builder.open_backoff(factor, max),
            (Some(factor), None) => {
                return Err(ConfigError::new(
                    "circuit_breaker.open_backoff_factor",
                    factor,
                    "must be set with `open_backoff_max`",
                ));
            }
            (None, Some(max)) => {
                return Err(ConfigError::new(
                    "circuit_breaker.open_backoff_max",
                    max,
                    "must be set with `open_backoff_factor`",
                ));
            }
            (None, None) => {}
        }
        if let Some(max) = self.honor_retry_after {
            builder = builder.honor_retry_after(max);
        }
        if let Some(probes) = self.half_open_probes {
            builder = builder.half_open_probes(probes);
        }
        if let Some(wait) = self.max_half_open_wait {
            builder = builder.max_half_open_wait(wait);
        }
        Ok(builder)
    }
}

/// Bulkhead settings, applied onto a [`BulkheadLayerBuilder`].
///
/// ```
/// use steadfast::bulkhead::BulkheadLayer;
/// use steadfast::config::BulkheadConfig;
///
/// let config: BulkheadConfig = toml::from_str(r#"
///     max_concurrent = 100
///     max_wait = "50ms"
///     queue = 20
/// "#)?;
/// let bulkhead = config.apply(BulkheadLayer::builder()).build()?;
/// assert_eq!(bulkhead.handle().max_concurrent(), 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// [`BulkheadLayerBuilder::max_concurrent`].
    pub max_concurrent: Option<usize>,
    /// [`BulkheadLayerBuilder::max_wait`].
    #[serde(default, with = "humantime_serde")]
    pub max_wait: Option<Duration>,
    /// [`BulkheadLayerBuilder::queue`].
    pub queue: Option<usize>,
    /// One bulkhead for every call (`"shared"`, the default) or one per
    /// host (`"host"`), each with these settings.
    pub per: Option<Per>,
    /// With `per = "host"`: the most hosts kept at once
    /// ([`PerKey::max_keys`](crate::policy::PerKey::max_keys)).
    pub max_keys: Option<u64>,
}

impl BulkheadConfig {
    /// Sets these settings on `builder`; they are checked by its `build`.
    pub fn apply(&self, mut builder: BulkheadLayerBuilder) -> BulkheadLayerBuilder {
        if let Some(permits) = self.max_concurrent {
            builder = builder.max_concurrent(permits);
        }
        if let Some(wait) = self.max_wait {
            builder = builder.max_wait(wait);
        }
        if let Some(waiters) = self.queue {
            builder = builder.queue(waiters);
        }
        builder
    }
}

/// Hedging settings, applied onto a [`HedgeLayerBuilder`]: the copies a
/// call may send besides the first, and when each is sent, after a fixed
/// `delay` or at a latency percentile (`max_extra_load` with `floor`).
/// In a policy, hedges spend the retry budget, so retries and hedges
/// together stay within it, unless `unlimited_budget`.
///
/// ```
/// use steadfast::config::HedgeConfig;
/// use steadfast::hedge::HedgeLayer;
///
/// let config: HedgeConfig = toml::from_str(r#"
///     max_hedges = 2
///     delay = "50ms"
/// "#)?;
/// let hedge = config.apply(HedgeLayer::builder())?.build()?;
/// assert_eq!(hedge.max_hedges(), 2);
///
/// let bad: HedgeConfig = toml::from_str("max_hedges = 4294967295")?;
/// let err = bad.apply(HedgeLayer::builder())?.build().unwrap_err();
/// assert_eq!(err.field(), "hedge.max_hedges");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HedgeConfig {
    /// [`HedgeLayerBuilder::max_hedges`]: copies besides the first, 1 to 10.
    pub max_hedges: Option<u32>,
    /// [`HedgeLayerBuilder::delay`]: each copy this long after the last.
    #[serde(default, with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// [`HedgeLayerBuilder::latency_percentile`]'s share of calls that may
    /// send a hedge, in `(0, 1]`, with `floor`.
    pub max_extra_load: Option<f64>,
    /// [`HedgeLayerBuilder::latency_percentile`]'s shortest delay.
    #[serde(default, with = "humantime_serde")]
    pub floor: Option<Duration>,
    /// `true`: hedges are bounded by `max_hedges` alone
    /// ([`HedgeLayerBuilder::unlimited_budget`]).
    pub unlimited_budget: Option<bool>,
}

impl HedgeConfig {
    /// Sets these settings on `builder`; they are checked by its `build`.
    /// Fails only for settings that contradict each other in the file (a
    /// delay and a percentile, half a percentile).
    pub fn apply<C, P>(
        &self,
        mut builder: HedgeLayerBuilder<C, P>,
    ) -> Result<HedgeLayerBuilder<C, P>, ConfigError> {
        if let Some(n) = self.max_hedges {
            builder = builder.max_hedges(n);
        }
        match (self.delay, self.max_extra_load, self.floor) {
            (Some(delay), Some(load), _) => {
                return Err(ConfigError::conflict(
                    "hedge.delay",
                    delay,
                    "hedge.max_extra_load",
                    load,
                    "a hedge waits a fixed delay or a latency percentile, not both",
                ));
            }
            (Some(_), None, Some(floor)) => {
                return Err(ConfigError::new(
                    "hedge.floor",
                    floor,
                    "needs `max_extra_load` (a fixed `delay` has no floor)",
                ));
            }
            (Some(delay), None, None) => builder = builder.delay(delay),
            (None, Some(load), Some(floor)) => builder = builder.latency_percentile(load, floor),
            (None, Some(load), None) => {
                return Err(ConfigError::new(
                    "hedge.floor",
                    load,
                    "must be set with `max_extra_load`",
                ));
            }
            (None, None, Some(floor)) => {
                return Err(ConfigError::new(
                    "hedge.floor",
                    floor,
                    "needs `max_extra_load`",
                ));
            }
            (None, None, None) => {}
        }
        if self.unlimited_budget == Some(true) {
            builder = builder.unlimited_budget();
        }
        Ok(builder)
    }
}

/// What the policy's observe layer records; the table's presence turns
/// the layer on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ObserveConfig {
    /// The route name in events and metric labels (a route's own path if
    /// left out there).
    pub route: Option<String>,
    /// Warn when a call takes this long or longer.
    #[serde(default, with = "humantime_serde")]
    pub slow_call: Option<Duration>,
    /// Record call and attempt metrics (feature `metrics`).
    pub metrics: Option<bool>,
}
