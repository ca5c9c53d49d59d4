//! A composed policy: the standard layers in the standard order, with
//! their settings checked against each other.
//!
//! [`Policy::builder`] wires, outermost first,
//!
//! ```text
//! observe → fallback → total deadline → bulkhead → retry → hedge → adaptive limit
//!         → circuit breaker → attempt timeout → service
//! ```
//!
//! each of them optional, and refuses settings that cannot work together
//! with a [`ConfigError`] naming both fields:
//!
//! - the attempt timeout must not exceed the total timeout
//!   (`timeout.attempt`, `timeout.total`);
//! - the longest total backoff of all retries must fit in the total
//!   timeout (`retry.backoff`, `timeout.total`);
//! - a breaker's time window must last at least twice the attempt timeout
//!   (`circuit_breaker.time_window`, `timeout.attempt`), or it judges too
//!   few attempts.
//!
//! One classifier judges the attempts for retry and breaker alike; one
//! [`Replay`] copies requests for retry. The layers are built once, in
//! [`build`](PolicyBuilder::build): every service the policy makes and
//! every clone of it share one breaker, bulkhead and retry budget.
//!
//! A layer left out is absent from its level: the policy alone decides
//! it, once, when it layers a service, and the [`Level`] there calls the
//! level below directly. No layer carries a switch, a sentinel or a
//! stand-in for the policy's sake. The
//! observe layer ([`observe`](PolicyBuilder::observe), or any of
//! [`route`](PolicyBuilder::route), [`slow_call`](PolicyBuilder::slow_call),
//! [`on_event`](PolicyBuilder::on_event), [`metrics`](PolicyBuilder::metrics),
//! [`request_id`](PolicyBuilder::request_id)) shares the outer level with
//! the total deadline; [`snapshot`](Policy::snapshot) reads every stateful
//! layer at once.
//!
//! The fallback ([`fallback`](PolicyBuilder::fallback)) sits inside observe
//! and outside everything else: it answers the failures and rejections of
//! every layer, a call the total deadline ended included, and its events
//! reach the policy's listeners. Hedging ([`hedge`](PolicyBuilder::hedge))
//! sits inside retry and outside the breaker, so a copy sent to an open
//! circuit is refused cheaply, and spends the policy's retry budget.
//!
//! The breaker and the bulkhead can be one per key, say per host
//! ([`circuit_breaker_per`](PolicyBuilder::circuit_breaker_per) and
//! [`bulkhead_per`](PolicyBuilder::bulkhead_per) with a [`PerKey`];
//! [`circuit_breaker_per_host`](PolicyBuilder::circuit_breaker_per_host)
//! and [`bulkhead_per_host`](PolicyBuilder::bulkhead_per_host) for
//! [`PerKey::host`], which the HTTP presets have), at the same level, each
//! with the one breaker's (bulkhead's) settings and a bounded number of
//! keys;
//! [`circuit_breakers`](Policy::circuit_breakers) and
//! [`bulkheads`](Policy::bulkheads) list them.
//!
//! A named policy's breaker and bulkhead take its name, unless their
//! builders name them: two policies' state gauges never share a series.
//! A preset's layers are changed one setting at a time with
//! [`circuit_breaker_with`](PolicyBuilder::circuit_breaker_with),
//! [`retry_with`](PolicyBuilder::retry_with) and
//! [`bulkhead_with`](PolicyBuilder::bulkhead_with).
//!
//! ```
//! use std::time::Duration;
//! use steadfast::fallback::FallbackLayer;
//! use steadfast::hedge::HedgeLayer;
//! use steadfast::policy::Policy;
//! use steadfast::retry::RetryLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let policy = Policy::builder()
//!     .name("prices")
//!     .retry(RetryLayer::builder().max_attempts(2))
//!     .hedge(HedgeLayer::builder().delay(Duration::from_millis(50)))
//!     .fallback(FallbackLayer::builder().static_response(0_u32))
//!     .on_event(|event| println!("{}", event.kind()))
//!     .build()?;
//! let down = service_fn(|_: u32| async { Err::<u32, steadfast::BoxError>("reset".into()) });
//! // Retried, then answered by the fallback ("fallback_served").
//! assert_eq!(policy.layer(down).oneshot(7).await?, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::circuit_breaker::CircuitBreakerLayer;
//! use steadfast::policy::Policy;
//! use steadfast::retry::{Backoff, RetryLayer};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let policy = Policy::builder()
//!     .total_timeout(Duration::from_secs(5))
//!     .retry(RetryLayer::builder().max_attempts(3).backoff(Backoff::exponential(Duration::from_millis(100))))
//!     .circuit_breaker(CircuitBreakerLayer::builder().time_window(Duration::from_secs(10), 10))
//!     .attempt_timeout(Duration::from_secs(1))
//!     .build()?;
//! let service = policy.layer(service_fn(|x: u32| async move { Ok::<_, steadfast::BoxError>(x + 1) }));
//! assert_eq!(service.oneshot(41).await?, 42);
//!
//! // Settings that contradict each other are refused.
//! let err = Policy::builder()
//!     .total_timeout(Duration::from_secs(1))
//!     .attempt_timeout(Duration::from_secs(2))
//!     .build()
//!     .unwrap_err();
//! assert_eq!(err.field(), "timeout.attempt");
//! assert_eq!(err.other().map(|(field, _)| field), Some("timeout.total"));
//! # Ok(())
//! # }
//! ```
//!
//! # The standard HTTP client (feature `http`)
//!
//! [`Policy::standard_http_client`] follows the .NET standard resilience
//! handler, with a breaker and a budget that protect in an outage; every
//! default can be overridden before `build`:
//!
//! | layer | default |
//! |---|---|
//! | total timeout | 30 s |
//! | bulkhead | per host and port ([`ByHost`], at most 10,000 hosts, a host idle for 10 minutes dropped): 1,000 calls in flight per host, no waiting |
//! | retry | 4 attempts (3 retries), exponential backoff from a fifteenth of the total timeout (2 s) capped at four fifteenths (8 s), full jitter, honouring `Retry-After`; a budget of 20 % of calls with a reserve of 10 retries |
//! | circuit breaker | per host and port, at most 10,000 hosts, a host idle for 10 minutes dropped; each: time window 30 s (30 buckets), opens at 50 % failures once 100 calls were seen, or after 20 failed attempts in a row; 5 failed attempts in a row, the last with a `Retry-After` (up to 60 s), open it for that period for every caller; open 5 s, 1 probe |
//! | attempt timeout | a third of the total timeout, at most 10 s |
//! | observe | name `http_client`, request ids from `x-request-id`, call metrics off |
//!
//! While you have not set them yourself, the attempt timeout and the
//! backoff follow the total timeout: `.total_timeout(2 s)` gives attempts
//! of 667 ms and a backoff from 133 ms capped at 533 ms, so that four
//! attempts and three waits fit. A setting you wrote out is kept, and a
//! contradiction between settings you wrote out is refused.
//!
//! ## Why these defaults
//!
//! Measured by the outage simulation in the crate's tests
//! (`tests/outage`, paused time, mock backend): 32 callers each starting
//! a call every 25 ms (1,280 calls/s), 35 s healthy (longer than the
//! breaker's window), then 5 s of a total outage, then recovery; the
//! preset as a user gets it with only `.total_timeout(2 s)` set.
//!
//! | outage | breaker opened after | backend requests per call in the outage (once open) | calls succeed again after the outage |
//! |---|---|---|---|
//! | requests hang | 682 ms | 0.008 (0.0) | 693 ms |
//! | connection reset | 18–20 ms | 0.004 (0.0) | 29–31 ms |
//! | 503 with `Retry-After: 1` | at once | 0.000 (0.0) | 1.01 s |
//! | 10 % of requests 503 (brownout) | never | 1.108 | — (100 % success, p99 134 ms) |
//!
//! With a [`HedgeLayer`] inside on the policy's
//! budget the figures are the same but for hangs (0.017 requests per call,
//! 0.004 once open). With nothing set at all (30 s total), the outages that
//! answer give the same figures, and the brownout 1.096 requests per call
//! at 100 % success.
//!
//! - **A fast trip beside the rate.** The 30 s window is full of the
//!   healthy phase's successes when an outage starts: its 50 % rate needs
//!   more failures than the successes it holds, which a short outage never
//!   brings. Twenty failed attempts in a row open the breaker within the
//!   first failures of 32 callers (Envoy ejects a host after 5
//!   consecutive 5xx). Twenty, not five: under independent failures at
//!   10 %, a run of 20 starts at a given attempt with probability 10⁻²⁰,
//!   so a brownout that retries absorb never opens it, while a total
//!   outage does in its first round of attempts. A hang is seen after one
//!   attempt timeout: with the default 30 s total that is 10 s, so give
//!   the total timeout your callers can really wait.
//! - **Retry-After for every caller, once it is corroborated.** A run of
//!   503s or 429s with `Retry-After` says the server does not want the
//!   next second's calls, from anyone: after 5 failed attempts in a row,
//!   the last with a hint, the breaker refuses every call for that
//!   period, each refusal carrying the time left (which a fallback serves
//!   as a failure). One hinted 503 among successes does not: in a
//!   brownout one overloaded replica of many answers 503 with
//!   `Retry-After: 1` while the rest answer, and a breaker that opened on
//!   each such answer refused almost every call (the brownout demo: 0.8 %
//!   success against 90.5 % for bare reqwest; with the run of 5, 99.1 %).
//!   At 10 % failures a run of 5 ends a given attempt with probability
//!   10⁻⁵, while an outage answering every call with a hint opens the
//!   breaker within 6 ms at the demo's load.
//! - **The rate stays at 50 %** (Resilience4j's default), not .NET's 10 %:
//!   behind retry, a breaker that opens at 10 % opens in a mild brownout
//!   whose failures the retries were absorbing, and then refuses every
//!   call for its open period. In the brownout demo (10 % of calls
//!   answered 503), a 10 % breaker brought the policy's success rate down
//!   to 57.8 %, below the bare client's 90.4 %. Retries handle brownouts;
//!   the breaker is for outages.
//! - **A budget that bounds an outage.** A retry budget counted over a
//!   time window lets the healthy past pay for the outage's retries, and a
//!   per-second floor dominates at the low call rates of an outage. The
//!   bucket saves at most 10 retries, then pays 20 % of calls: at most
//!   about 1.2× load without the breaker, and a brownout's 10 % of
//!   retries fit in it.
//! - **Open 5 s, one probe**, as .NET: calls succeed again at most about
//!   the open duration plus one attempt after the dependency is back.
//!
//! Attempts are judged by the [`HttpClassifier`](crate::http::HttpClassifier)
//! and copied by [`HttpReplay`](crate::http::HttpReplay).
//!
//! ```
//! # #[cfg(feature = "http")]
//! # fn main() -> Result<(), steadfast::ConfigError> {
//! use std::time::Duration;
//! use steadfast::policy::Policy;
//!
//! // Set only the total timeout: the attempt timeout and the backoff
//! // follow it.
//! let policy = Policy::standard_http_client()
//!     .total_timeout(Duration::from_secs(2))
//!     .build()?;
//! // A breaker per host, made on a host's first call.
//! assert!(policy.circuit_breakers().is_empty());
//! assert_eq!(policy.attempt_timeout(), Some(Duration::from_secs(2) / 3));
//!
//! // A contradiction written out is refused.
//! let err = Policy::standard_http_client()
//!     .total_timeout(Duration::from_secs(5))
//!     .attempt_timeout(Duration::from_secs(10))
//!     .build()
//!     .unwrap_err();
//! assert_eq!(err.field(), "timeout.attempt");
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "http"))]
//! # fn main() {}
//! ```

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::{Identity, Layer};
use tower_service::Service;

use crate::adaptive::{Adaptive, AdaptiveHandle, AdaptiveLayer, AdaptiveLayerBuilder};
use crate::bulkhead::{
    Bulkhead, BulkheadHandle, BulkheadLayer, BulkheadLayerBuilder, KeyedBulkhead,
    KeyedBulkheadLayer, KeyedBulkheadLayerBuilder,
};
use crate::circuit_breaker::{
    CircuitBreaker, CircuitBreakerBuilder, CircuitBreakerHandle, CircuitBreakerLayer, Keyed,
    KeyedCircuitBreakerLayer,
};
use crate::classify::DefaultClassifier;
use crate::error::{BoxError, ConfigError, check};
use crate::fallback::{CheckService, CheckSources, Fallback, FallbackLayer, FallbackLayerBuilder};
use crate::hedge::{HedgeLayer, HedgeLayerBuilder};
#[cfg(feature = "http")]
use crate::observe::RequestIdHeader;
use crate::observe::{GenerateRequestId, Observe, ObserveDeadline, ObserveLayer, PolicyStatus};
use crate::observe::{ObserveLayerBuilder, ObserveSettings};
use crate::retry::{CloneReplay, Retry, RetryBudget, RetryLayer, RetryLayerBuilder};
use crate::timeout::{Timeout, TimeoutLayer, TotalDeadline, TotalDeadlineLayer};

#[cfg(doc)]
use crate::retry::Replay;

#[cfg(feature = "http")]
use crate::http::{ByHost, HostKey};
use crate::keyed::{DEFAULT_IDLE, DEFAULT_MAX_KEYS};
use std::marker::PhantomData;

mod builder;
mod keyed;
mod level;
mod outer;
mod parts;
mod preset;

pub use self::builder::PolicyBuilder;
use self::builder::Settings;
pub use self::keyed::{
    BreakerLevel, BreakerSetting, BulkheadLevel, BulkheadSetting, PerKey, Unkeyed,
};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::keyed::{PerHost, by_host};
pub use self::level::{Level, Optional};
pub use self::outer::Outer;
pub use self::parts::{
    AdaptiveLevel, AdaptiveSetting, FallbackLevel, FallbackSetting, HedgeSetting,
};
use self::preset::Derive;

/// The composed policy: a layer. See the [module docs](self).
pub struct Policy<
    C = DefaultClassifier,
    P = CloneReplay,
    R = GenerateRequestId,
    H = Identity,
    F = Identity,
    B = Optional<CircuitBreakerLayer<C>>,
    Bk = Option<BulkheadLayer>,
    Ad = Identity,
> {
    name: Cow<'static, str>,
    observe: Option<ObserveLayer<C, R>>,
    fallback: F,
    hedge: H,
    total: Option<TotalDeadlineLayer>,
    bulkhead: Bk,
    // Each level left out is a `Level::Off`: the service below, called
    // directly; a policy without retry is one of `Outer`'s `Once*`
    // variants.
    retry: Option<RetryLayer<C, P>>,
    // The adaptive level is the policy's type: `Identity` when it has none.
    adaptive: Ad,
    breaker: B,
    attempt: Option<TimeoutLayer>,
}

impl<C, P, R, H, F, B, Bk, Ad> Policy<C, P, R, H, F, B, Bk, Ad> {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The layer that watches the policy's calls, if it has one.
    pub fn observer(&self) -> Option<&ObserveLayer<C, R>> {
        self.observe.as_ref()
    }

    /// The state of every stateful layer of the policy, for a health
    /// endpoint; [`Health`](crate::observe::Health) gathers several.
    pub fn snapshot(&self) -> PolicyStatus
    where
        C: Send + Sync + 'static,
        B: BreakerLevel,
        Bk: BulkheadLevel,
        Ad: AdaptiveLevel<C>,
    {
        status(
            self.name.to_string(),
            &self.breaker,
            &self.bulkhead,
            self.retry_budget(),
        )
        .with_adaptive(self.adaptive().as_ref())
    }

    /// Reads the policy's state each time it is called, for a
    /// [`Health`](crate::observe::Health) registry.
    pub(crate) fn status_reader(&self) -> impl Fn() -> PolicyStatus + Send + Sync + 'static
    where
        C: Send + Sync + 'static,
        B: BreakerLevel + Clone + Send + Sync + 'static,
        Bk: BulkheadLevel + Clone + Send + Sync + 'static,
        Ad: AdaptiveLevel<C>,
    {
        let name = self.name.to_string();
        let breaker = self.breaker.clone();
        let bulkhead = self.bulkhead.clone();
        let budget = self.retry_budget().cloned();
        let adaptive = self.adaptive();
        move || {
            status(name.clone(), &breaker, &bulkhead, budget.as_ref())
                .with_adaptive(adaptive.as_ref())
        }
    }

    /// A handle on the policy's breaker, if it has one and it is not
    /// keyed.
    pub fn circuit_breaker(&self) -> Option<CircuitBreakerHandle>
    where
        C: Send + Sync + 'static,
        B: BreakerLevel,
    {
        self.breaker.single()
    }

    /// A handle on every breaker of the policy: its one breaker, or one
    /// per key that has one now (a keyed breaker).
    pub fn circuit_breakers(&self) -> Vec<CircuitBreakerHandle>
    where
        C: Send + Sync + 'static,
        B: BreakerLevel,
    {
        self.breaker.all()
    }

    /// A handle on the policy's bulkhead, if it has one and it is not
    /// keyed.
    pub fn bulkhead(&self) -> Option<BulkheadHandle>
    where
        Bk: BulkheadLevel,
    {
        self.bulkhead.single()
    }

    /// A handle on every bulkhead of the policy: its one bulkhead, or one
    /// per key that has one now (a keyed bulkhead).
    pub fn bulkheads(&self) -> Vec<BulkheadHandle>
    where
        Bk: BulkheadLevel,
    {
        self.bulkhead.all()
    }

    /// A handle on the policy's adaptive concurrency limit, if it has one.
    pub fn adaptive(&self) -> Option<AdaptiveHandle>
    where
        Ad: AdaptiveLevel<C>,
    {
        self.adaptive.handle()
    }

    /// The retry budget, if the policy retries within one.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.retry.as_ref().and_then(RetryLayer::budget)
    }

    /// The total timeout, if any.
    pub fn total_timeout(&self) -> Option<Duration> {
        self.total.as_ref().map(TotalDeadlineLayer::total)
    }

    /// The attempt timeout, if any.
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt.as_ref().map(TimeoutLayer::timeout)
    }

    /// The policy's hedging level: a [`HedgeLayer`] if it hedges,
    /// [`Identity`] if not.
    pub fn hedge(&self) -> &H {
        &self.hedge
    }

    /// The policy's fallback level: a [`FallbackLayer`] if it falls back,
    /// [`Identity`] if not.
    pub fn fallback(&self) -> &F {
        &self.fallback
    }
}

/// A policy's status: its one breaker and bulkhead, or each key's.
fn status(
    name: String,
    breaker: &impl BreakerLevel,
    bulkhead: &impl BulkheadLevel,
    budget: Option<&RetryBudget>,
) -> PolicyStatus {
    let single_breaker = breaker.single();
    let keyed_breakers = if single_breaker.is_some() {
        Vec::new()
    } else {
        breaker.all()
    };
    let single_bulkhead = bulkhead.single();
    let keyed_bulkheads = if single_bulkhead.is_some() {
        Vec::new()
    } else {
        bulkhead.all()
    };
    PolicyStatus::new(name, single_breaker, single_bulkhead, budget)
        .with_keyed(&keyed_breakers, &keyed_bulkheads)
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<C, P, R, H, F, Bk, Ad>
    Policy<C, P, R, H, F, KeyedCircuitBreakerLayer<HostKey, ByHost, C>, Bk, Ad>
where
    C: Clone + Send + Sync + 'static,
{
    /// The breaker of the host `authority` (`host:port`, or `host` for a
    /// request that names no port and no scheme), in a policy with a
    /// breaker per host: made (closed) if the host has none yet, so that
    /// it can be watched before the first call. Case does not matter.
    ///
    /// ```
    /// # #[cfg(feature = "http")]
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use steadfast::policy::Policy;
    ///
    /// let policy = Policy::standard_http_client().build()?;
    /// let api = policy.circuit_breaker_for("API.example:443");
    /// assert_eq!(api.key(), Some("api.example:443"));
    /// assert_eq!(policy.circuit_breakers().len(), 1);
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "http"))]
    /// # fn main() {}
    /// ```
    pub fn circuit_breaker_for(&self, authority: &str) -> CircuitBreakerHandle {
        self.breaker.get_or_insert(&HostKey::parse(authority))
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<C, P, R, H, F, B, Ad> Policy<C, P, R, H, F, B, KeyedBulkheadLayer<HostKey, ByHost>, Ad> {
    /// The bulkhead of the host `authority` (`host:port`), in a policy
    /// with a bulkhead per host: made if the host has none yet. Case does
    /// not matter.
    pub fn bulkhead_for(&self, authority: &str) -> BulkheadHandle {
        self.bulkhead.get_or_insert(&HostKey::parse(authority))
    }
}

impl<C: Clone, P, R: Clone, H: Clone, F: Clone, B: Clone, Bk: Clone, Ad: Clone> Clone
    for Policy<C, P, R, H, F, B, Bk, Ad>
{
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            observe: self.observe.clone(),
            fallback: self.fallback.clone(),
            hedge: self.hedge.clone(),
            total: self.total.clone(),
            bulkhead: self.bulkhead.clone(),
            retry: self.retry.clone(),
            adaptive: self.adaptive.clone(),
            breaker: self.breaker.clone(),
            attempt: self.attempt.clone(),
        }
    }
}

impl<C, P, R, H: fmt::Debug, F: fmt::Debug, B: fmt::Debug, Bk: fmt::Debug, Ad: fmt::Debug>
    fmt::Debug for Policy<C, P, R, H, F, B, Bk, Ad>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("observe", &self.observe)
            .field("fallback", &self.fallback)
            .field("hedge", &self.hedge)
            .field("total", &self.total)
            .field("bulkhead", &self.bulkhead)
            .field("retry", &self.retry)
            .field("adaptive", &self.adaptive)
            .field("breaker", &self.breaker)
            .field("attempt", &self.attempt)
            .finish()
    }
}

/// The attempt level of a policy: a [`Timeout`], or the service itself
/// without an attempt timeout.
pub type AttemptService<S> = Level<Timeout<S>, S>;
/// The breaker level of a policy with one breaker: a [`CircuitBreaker`],
/// or the attempt level itself without a breaker.
pub type BreakerService<S, C> = Level<CircuitBreaker<AttemptService<S>, C>, AttemptService<S>>;
/// The breaker level of a policy with a keyed breaker `B`, or with one
/// breaker or none ([`BreakerService`]).
pub type BreakerLevelService<S, B> = <B as Layer<AttemptService<S>>>::Service;
/// The adaptive level of a policy: an [`Adaptive`] limiter, or the breaker
/// level itself without an adaptive limit (`Ad` is [`Identity`]).
pub type AdaptiveService<S, C, B = Optional<CircuitBreakerLayer<C>>, Ad = Identity> =
    <Ad as AdaptiveLevel<C>>::Service<BreakerLevelService<S, B>>;
/// The hedging level of a policy (the adaptive level itself without
/// hedging).
pub type HedgeService<S, C, H = Identity, B = Optional<CircuitBreakerLayer<C>>, Ad = Identity> =
    <H as Layer<AdaptiveService<S, C, B, Ad>>>::Service;
/// The retry level of a policy that retries: a [`Retry`] over the hedging
/// level. A policy without retry has no retry level: its outer level is
/// made over the hedging level directly ([`OnceBulkheadService`]).
pub type RetryService<S, C, P, H = Identity, B = Optional<CircuitBreakerLayer<C>>, Ad = Identity> =
    Retry<HedgeService<S, C, H, B, Ad>, C, P>;
/// The bulkhead level of a policy that retries, over its retry: one
/// bulkhead or none, or one per key, as `Bk` is.
pub type BulkheadService<
    S,
    C,
    P,
    H = Identity,
    B = Optional<CircuitBreakerLayer<C>>,
    Bk = Option<BulkheadLayer>,
    Ad = Identity,
> = <Bk as BulkheadLevel>::Service<RetryService<S, C, P, H, B, Ad>>;
/// The bulkhead level of a policy without retry, over its hedging level:
/// one bulkhead or none, or one per key, as `Bk` is.
pub type OnceBulkheadService<
    S,
    C,
    H = Identity,
    B = Optional<CircuitBreakerLayer<C>>,
    Bk = Option<BulkheadLayer>,
    Ad = Identity,
> = <Bk as BulkheadLevel>::Service<HedgeService<S, C, H, B, Ad>>;
/// The service a [`Policy`] makes: its outer layers (observe, fallback,
/// total deadline), each there or not, over its retry or over the level
/// below when it does not retry, in one enum ([`Outer`]), so that a
/// call's future is wrapped once at this level whichever are there.
pub type PolicyService<
    S,
    C,
    P,
    R = GenerateRequestId,
    H = Identity,
    F = Identity,
    B = Optional<CircuitBreakerLayer<C>>,
    Bk = Option<BulkheadLayer>,
    Ad = Identity,
> = <F as FallbackLevel<
    BulkheadService<S, C, P, H, B, Bk, Ad>,
    OnceBulkheadService<S, C, H, B, Bk, Ad>,
    C,
    R,
>>::Service;

impl<S, C: Clone, P, R: Clone, H, F, B, Bk, Ad> Layer<S> for Policy<C, P, R, H, F, B, Bk, Ad>
where
    B: Layer<AttemptService<S>>,
    Ad: AdaptiveLevel<C>,
    H: Layer<AdaptiveService<S, C, B, Ad>>,
    Bk: BulkheadLevel,
    F: FallbackLevel<
            BulkheadService<S, C, P, H, B, Bk, Ad>,
            OnceBulkheadService<S, C, H, B, Bk, Ad>,
            C,
            R,
        >,
{
    type Service = PolicyService<S, C, P, R, H, F, B, Bk, Ad>;

    fn layer(&self, service: S) -> Self::Service {
        let service = Level::new(self.attempt.as_ref(), service);
        let service = self.breaker.layer(service);
        let service = self.adaptive.layer_level(service);
        let service = self.hedge.layer(service);
        // Retry or not is chosen with the outer layers, in one enum: the
        // retry's future is wrapped in no level of its own.
        let service = match &self.retry {
            Some(retry) => Level::On {
                service: self.bulkhead.layer_level(retry.layer(service)),
            },
            None => Level::Off {
                service: self.bulkhead.layer_level(service),
            },
        };
        self.fallback
            .outer(self.observe.as_ref(), self.total.as_ref(), service)
    }
}

/// The policy [`Policy::standard_http_client`] builds, with hedging `H`
/// and fallback `F` (none by default): HTTP classifier and replay, request
/// ids from `x-request-id`, a breaker and a bulkhead per host.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub type StandardHttpClient<H = Identity, F = Identity> = Policy<
    crate::http::HttpClassifier,
    crate::http::HttpReplay,
    RequestIdHeader,
    H,
    F,
    KeyedCircuitBreakerLayer<HostKey, ByHost, crate::http::HttpClassifier>,
    KeyedBulkheadLayer<HostKey, ByHost>,
>;

/// The [`Policy`] a [`PolicyBuilder`] with these type parameters builds.
pub type Built<C, P, R, H, F, K = Unkeyed, Kb = Unkeyed, Ad = Identity> = Policy<
    C,
    P,
    R,
    <H as HedgeSetting<C, P>>::Layer,
    <F as FallbackSetting<C>>::Layer,
    <K as BreakerSetting<C>>::Layer,
    <Kb as BulkheadSetting>::Layer,
    <Ad as AdaptiveSetting<C>>::Layer,
>;

impl crate::observe::Health {
    /// Adds every stateful layer of `policy`, under the policy's name.
    ///
    /// A keyed breaker or bulkhead (the HTTP presets' are per host) is
    /// read one entry per key it holds when the snapshot is taken.
    pub fn policy<C, P, R, H, F, B, Bk, Ad>(self, policy: &Policy<C, P, R, H, F, B, Bk, Ad>) -> Self
    where
        C: Send + Sync + 'static,
        B: BreakerLevel + Clone + Send + Sync + 'static,
        Bk: BulkheadLevel + Clone + Send + Sync + 'static,
        Ad: AdaptiveLevel<C>,
    {
        let read = policy.status_reader();
        self.reader(move |out| out.push(crate::observe::Status::Policy(read())))
    }
}
