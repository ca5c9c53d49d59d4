//! One policy's settings, and a route's.

use serde::Deserialize;

use super::built::{ConfigPolicy, HostLevel};
use super::layers::{
    BulkheadConfig, CircuitBreakerConfig, HedgeConfig, ObserveConfig, Per, RetryConfig,
    TimeoutConfig,
};
use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::error::ConfigError;
use crate::hedge::HedgeLayer;
use crate::policy::{PerKey, Policy, PolicyBuilder};
use crate::retry::RetryLayer;

/// A [`Policy`]'s settings: each layer present or not, as in
/// [`Policy::builder`].
///
/// ```toml
/// [policies.api]
/// timeout = { total = "5s", attempt = "1s" }
/// retry = { max_attempts = 3, backoff = { base = "100ms", cap = "1s" } }
/// circuit_breaker = { time_window = "10s", time_window_buckets = 10 }
/// bulkhead = { max_concurrent = 100, per = "host" }
/// hedge = { max_hedges = 1, delay = "200ms" }
/// observe = { slow_call = "2s" }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// The total and attempt timeouts.
    pub timeout: Option<TimeoutConfig>,
    /// Retry.
    pub retry: Option<RetryConfig>,
    /// A circuit breaker.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// A bulkhead.
    pub bulkhead: Option<BulkheadConfig>,
    /// Hedging.
    pub hedge: Option<HedgeConfig>,
    /// The observe layer.
    pub observe: Option<ObserveConfig>,
}

impl PolicyConfig {
    /// A [`PolicyBuilder`] named `name` with these settings; attach the
    /// settings that are not data (classifier, replay, request ids,
    /// listeners) to it, then [`build`](PolicyBuilder::build) it, which
    /// checks every setting as for a policy built in code.
    ///
    /// Errors name the field as the builders do (`retry.max_attempts`);
    /// [`PolicySetConfig`](super::PolicySetConfig) puts the path of the
    /// policy in the file before it.
    pub fn builder(&self, name: impl Into<String>) -> Result<PolicyBuilder, ConfigError> {
        let mut builder = Policy::builder().name(name.into());
        if let Some(timeout) = &self.timeout {
            if let Some(total) = timeout.total {
                builder = builder.total_timeout(total);
            }
            if let Some(attempt) = timeout.attempt {
                builder = builder.attempt_timeout(attempt);
            }
        }
        if let Some(retry) = &self.retry {
            builder = builder.retry(retry.apply(RetryLayer::builder())?);
        }
        if let Some(breaker) = &self.circuit_breaker {
            builder = builder.circuit_breaker(breaker.apply(CircuitBreakerLayer::builder())?);
        }
        if let Some(bulkhead) = &self.bulkhead {
            builder = builder.bulkhead(bulkhead.apply(BulkheadLayer::builder()));
        }
        if let Some(observe) = &self.observe {
            builder = builder.observe();
            if let Some(route) = &observe.route {
                builder = builder.route(route.clone());
            }
            if let Some(threshold) = observe.slow_call {
                builder = builder.slow_call(threshold);
            }
            if let Some(on) = observe.metrics {
                builder = builder.metrics(on);
            }
        }
        Ok(builder)
    }

    /// Builds `builder` (made by [`builder`](Self::builder), then given
    /// what is not data) with the levels these settings choose: a breaker
    /// and a bulkhead per host where `per = "host"`, hedging where there
    /// is a `hedge` table. A host level needs a `K` with hosts
    /// ([`ByHost`](crate::http::ByHost)); with [`NoHost`](super::NoHost)
    /// it is refused.
    pub fn build_policy<C, P, R, K>(
        &self,
        builder: PolicyBuilder<C, P, R>,
    ) -> Result<ConfigPolicy<C, P, R, K>, ConfigError>
    where
        C: Clone + Send + Sync + 'static,
        P: Clone,
        K: HostLevel,
    {
        let host = |field: &str, per: Option<Per>, max_keys: Option<u64>| match (
            per.unwrap_or_default(),
            max_keys,
        ) {
            (Per::Shared, None) => Ok(None),
            (Per::Shared, Some(n)) => Err(ConfigError::new(
                format!("{field}.max_keys"),
                n,
                "applies to `per = \"host\"` only",
            )),
            (Per::Host, max_keys) => {
                let per = K::per_host().ok_or_else(|| {
                        ConfigError::new(
                            format!("{field}.per"),
                            "host",
                            "a level per host needs HTTP requests: build the set with `build_http_with`",
                        )
                    })?;
                Ok(Some(match max_keys {
                    Some(n) => per.max_keys(n),
                    None => per,
                }))
            }
        };
        let breaker: Option<PerKey<K::Key, K>> = match &self.circuit_breaker {
            Some(b) => host("circuit_breaker", b.per, b.max_keys)?,
            None => None,
        };
        let bulkhead: Option<PerKey<K::Key, K>> = match &self.bulkhead {
            Some(b) => host("bulkhead", b.per, b.max_keys)?,
            None => None,
        };
        let hedge = self
            .hedge
            .as_ref()
            .map(|hedge| hedge.apply(HedgeLayer::builder()))
            .transpose()?;
        Ok(match (breaker, bulkhead, hedge) {
            (None, None, None) => ConfigPolicy::Plain(builder.build()?),
            (Some(b), None, None) => {
                ConfigPolicy::HostBreaker(builder.circuit_breaker_per(b).build()?)
            }
            (None, Some(k), None) => ConfigPolicy::HostBulkhead(builder.bulkhead_per(k).build()?),
            (Some(b), Some(k), None) => {
                ConfigPolicy::Host(builder.circuit_breaker_per(b).bulkhead_per(k).build()?)
            }
            (None, None, Some(h)) => ConfigPolicy::Hedged(builder.hedge(h).build()?),
            (Some(b), None, Some(h)) => {
                ConfigPolicy::HedgedHostBreaker(builder.circuit_breaker_per(b).hedge(h).build()?)
            }
            (None, Some(k), Some(h)) => {
                ConfigPolicy::HedgedHostBulkhead(builder.bulkhead_per(k).hedge(h).build()?)
            }
            (Some(b), Some(k), Some(h)) => ConfigPolicy::HedgedHost(
                builder
                    .circuit_breaker_per(b)
                    .bulkhead_per(k)
                    .hedge(h)
                    .build()?,
            ),
        })
    }
}

/// One route of a [`PolicySetConfig`](super::PolicySetConfig), keyed by
/// its path pattern (`/users/{id}`): which requests it takes, and either
/// the name of a policy in `policies` (`policy = "reads"`, sharing that
/// policy's state with every route that names it) or settings of its own,
/// as in a [`PolicyConfig`].
///
/// ```toml
/// [routes."/search"]
/// method = "GET"
/// policy = "reads"
///
/// [routes."/users/{id}"]
/// host = "api.example"
/// timeout = { total = "2s" }
/// retry = { max_attempts = 2 }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteConfig {
    /// The method the route takes (any if left out).
    pub method: Option<String>,
    /// The host the route takes, without port (any if left out).
    pub host: Option<String>,
    /// The name of a policy in `policies`.
    pub policy: Option<String>,
    /// The route's own timeouts.
    pub timeout: Option<TimeoutConfig>,
    /// The route's own retry.
    pub retry: Option<RetryConfig>,
    /// The route's own circuit breaker.
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// The route's own bulkhead.
    pub bulkhead: Option<BulkheadConfig>,
    /// The route's own hedging.
    pub hedge: Option<HedgeConfig>,
    /// The route's own observe layer.
    pub observe: Option<ObserveConfig>,
}

impl RouteConfig {
    /// The route's own settings, if it names no policy.
    pub(crate) fn own(&self) -> PolicyConfig {
        PolicyConfig {
            timeout: self.timeout.clone(),
            retry: self.retry.clone(),
            circuit_breaker: self.circuit_breaker.clone(),
            bulkhead: self.bulkhead.clone(),
            hedge: self.hedge.clone(),
            observe: self.observe.clone(),
        }
    }

    pub(crate) fn has_own(&self) -> bool {
        self.own() != PolicyConfig::default()
    }
}
