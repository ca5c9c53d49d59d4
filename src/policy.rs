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

/// The composed policy: a layer. See the [module docs](self).
pub struct Policy<
    C = DefaultClassifier,
    P = CloneReplay,
    R = GenerateRequestId,
    H = Identity,
    F = Identity,
    B = Optional<CircuitBreakerLayer<C>>,
    Bk = Option<BulkheadLayer>,
> {
    name: Cow<'static, str>,
    observe: Option<ObserveLayer<C, R>>,
    fallback: F,
    hedge: H,
    total: Option<TotalDeadlineLayer>,
    bulkhead: Bk,
    // Each level left out is a `Level::Off`: the service below, called
    // directly.
    retry: Option<RetryLayer<C, P>>,
    adaptive: Option<AdaptiveLayer<C>>,
    breaker: B,
    attempt: Option<TimeoutLayer>,
}

impl Policy {
    /// A builder with no layer at all; add the ones you need.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            settings: Settings {
                name: Cow::Borrowed("default"),
                observe: None,
                total_timeout: None,
                attempt_timeout: None,
                retry: None,
                breaker: None,
                bulkhead: None,
                derive: Derive::default(),
                adaptive: None,
            },
            classifier: DefaultClassifier,
            replay: CloneReplay,
            request_id: GenerateRequestId,
            hedge: Identity::new(),
            fallback: Identity::new(),
            keyed: Unkeyed,
            bulkheads: Unkeyed,
        }
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Policy<crate::http::HttpClassifier, crate::http::HttpReplay, RequestIdHeader> {
    /// The standard HTTP client policy, modelled on the .NET standard
    /// resilience handler; see the [module docs](self#the-standard-http-client-feature-http).
    ///
    /// Its breaker and its bulkhead are per host ([`ByHost`]): one host
    /// failing or slow does not refuse calls to the others.
    /// [`circuit_breaker_for`](Policy::circuit_breaker_for) and
    /// [`bulkhead_for`](Policy::bulkhead_for) give a host's;
    /// [`circuit_breaker(..)`](PolicyBuilder::circuit_breaker) and
    /// [`bulkhead(..)`](PolicyBuilder::bulkhead) make them one for every
    /// host again.
    pub fn standard_http_client() -> PolicyBuilder<
        crate::http::HttpClassifier,
        crate::http::HttpReplay,
        RequestIdHeader,
        Identity,
        Identity,
        PerHost,
        PerHost,
    > {
        let mut builder = Policy::builder()
            .name("http_client")
            .classifier(crate::http::HttpClassifier::new())
            .replay(crate::http::HttpReplay::new())
            .request_id(RequestIdHeader::new())
            .total_timeout(Duration::from_secs(30))
            .bulkhead(BulkheadLayer::builder().max_concurrent(1_000))
            .retry(
                RetryLayer::builder()
                    .max_attempts(4)
                    .backoff(standard_backoff(STANDARD_TOTAL)),
            )
            .circuit_breaker(
                CircuitBreakerLayer::builder()
                    .time_window(Duration::from_secs(30), 30)
                    .failure_rate_threshold(50.0)
                    .minimum_calls(100)
                    .consecutive_failures(20)
                    .honor_retry_after(Duration::from_secs(60))
                    .open_duration(Duration::from_secs(5))
                    .half_open_probes(1),
            )
            .attempt_timeout(standard_attempt(STANDARD_TOTAL));
        // Until the user sets them, the attempt timeout and the backoff
        // follow the total timeout.
        builder.settings.derive = Derive {
            attempt: true,
            backoff: true,
        };
        builder.circuit_breaker_per_host().bulkhead_per_host()
    }
}

/// The standard HTTP client's total timeout.
#[cfg(feature = "http")]
const STANDARD_TOTAL: Duration = Duration::from_secs(30);

/// The standard attempt timeout for a total timeout: a third of it, at
/// most 10 s.
#[cfg(feature = "http")]
fn standard_attempt(total: Duration) -> Duration {
    (total / 3).clamp(Duration::from_nanos(1), Duration::from_secs(10))
}

/// The standard backoff for a total timeout: exponential from a
/// fifteenth of it (at most 2 s), capped at four fifteenths (at most
/// 8 s), full jitter. Three retries wait at most 7/15 of the total.
#[cfg(feature = "http")]
fn standard_backoff(total: Duration) -> crate::retry::Backoff {
    let base = (total / 15).clamp(Duration::from_nanos(1), Duration::from_secs(2));
    let cap = (total / 15)
        .checked_mul(4)
        .unwrap_or(Duration::MAX)
        .clamp(base, Duration::from_secs(8));
    crate::retry::Backoff::exponential(base)
        .cap(cap)
        .jitter(crate::retry::Jitter::Full)
}

/// Which preset settings still follow the total timeout: those the user
/// has not set.
#[derive(Debug, Default, Clone, Copy)]
struct Derive {
    attempt: bool,
    backoff: bool,
}

#[cfg(feature = "http")]
impl Derive {
    fn apply(self, settings: &mut Settings) {
        let Some(total) = settings.total_timeout else {
            return;
        };
        if self.attempt {
            settings.attempt_timeout = Some(standard_attempt(total));
        }
        if self.backoff {
            settings.retry = settings.retry.take().map(|retry| {
                let retry = retry.backoff(standard_backoff(total));
                // A total too short for a nanosecond of backoff holds no
                // retry at all.
                if total < Duration::from_nanos(15) {
                    retry.max_attempts(1)
                } else {
                    retry
                }
            });
        }
    }
}

#[cfg(not(feature = "http"))]
impl Derive {
    fn apply(self, _settings: &mut Settings) {}
}

impl<C, P, R, H, F, B, Bk> Policy<C, P, R, H, F, B, Bk> {
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
    pub fn adaptive(&self) -> Option<AdaptiveHandle> {
        self.adaptive.as_ref().map(AdaptiveLayer::handle)
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
impl<C, P, R, H, F, Bk> Policy<C, P, R, H, F, KeyedCircuitBreakerLayer<HostKey, ByHost, C>, Bk>
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
        self.breaker.handle(&HostKey::parse(authority))
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<C, P, R, H, F, B> Policy<C, P, R, H, F, B, KeyedBulkheadLayer<HostKey, ByHost>> {
    /// The bulkhead of the host `authority` (`host:port`), in a policy
    /// with a bulkhead per host: made if the host has none yet. Case does
    /// not matter.
    pub fn bulkhead_for(&self, authority: &str) -> BulkheadHandle {
        self.bulkhead.bulkhead(&HostKey::parse(authority))
    }
}

impl<C: Clone, P, R: Clone, H: Clone, F: Clone, B: Clone, Bk: Clone> Clone
    for Policy<C, P, R, H, F, B, Bk>
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

impl<C, P, R, H: fmt::Debug, F: fmt::Debug, B: fmt::Debug, Bk: fmt::Debug> fmt::Debug
    for Policy<C, P, R, H, F, B, Bk>
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
/// level itself without an adaptive limit.
pub type AdaptiveService<S, C, B = Optional<CircuitBreakerLayer<C>>> =
    Level<Adaptive<BreakerLevelService<S, B>, C>, BreakerLevelService<S, B>>;
/// The hedging level of a policy (the adaptive level itself without
/// hedging).
pub type HedgeService<S, C, H = Identity, B = Optional<CircuitBreakerLayer<C>>> =
    <H as Layer<AdaptiveService<S, C, B>>>::Service;
/// The retry level of a policy: a [`Retry`], or the hedging level itself
/// without retry.
pub type RetryService<S, C, P, H = Identity, B = Optional<CircuitBreakerLayer<C>>> =
    Level<Retry<HedgeService<S, C, H, B>, C, P>, HedgeService<S, C, H, B>>;
/// The bulkhead level of a policy: one bulkhead or none, or one per key,
/// as `Bk` is.
pub type BulkheadService<
    S,
    C,
    P,
    H = Identity,
    B = Optional<CircuitBreakerLayer<C>>,
    Bk = Option<BulkheadLayer>,
> = <Bk as BulkheadLevel>::Service<RetryService<S, C, P, H, B>>;
/// The service a [`Policy`] makes: its outer layers (observe, fallback,
/// total deadline), each there or not, in one enum, so that a call's
/// future is wrapped once at this level whichever are there.
pub type PolicyService<
    S,
    C,
    P,
    R = GenerateRequestId,
    H = Identity,
    F = Identity,
    B = Optional<CircuitBreakerLayer<C>>,
    Bk = Option<BulkheadLayer>,
> = <F as FallbackLevel<BulkheadService<S, C, P, H, B, Bk>, C, R>>::Service;

impl<S, C: Clone, P, R: Clone, H, F, B, Bk> Layer<S> for Policy<C, P, R, H, F, B, Bk>
where
    B: Layer<AttemptService<S>>,
    H: Layer<AdaptiveService<S, C, B>>,
    Bk: BulkheadLevel,
    F: FallbackLevel<BulkheadService<S, C, P, H, B, Bk>, C, R>,
{
    type Service = PolicyService<S, C, P, R, H, F, B, Bk>;

    fn layer(&self, service: S) -> Self::Service {
        let service = Level::new(self.attempt.as_ref(), service);
        let service = self.breaker.layer(service);
        let service = Level::new(self.adaptive.as_ref(), service);
        let service = self.hedge.layer(service);
        let service = Level::new(self.retry.as_ref(), service);
        let service = self.bulkhead.layer_level(service);
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
pub type Built<C, P, R, H, F, K = Unkeyed, Kb = Unkeyed> = Policy<
    C,
    P,
    R,
    <H as HedgeSetting<C, P>>::Layer,
    <F as FallbackSetting<C>>::Layer,
    <K as BreakerSetting<C>>::Layer,
    <Kb as BulkheadSetting>::Layer,
>;

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
            .entries()
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

/// The outer level of a [`Policy`], without a fallback ([`Identity`]) or
/// with one ([`FallbackLayer`]): observe outermost, then the fallback, then
/// the total deadline, so that the fallback sees the calls the deadline
/// ends and its events reach the policy's listeners.
pub trait FallbackLevel<S, C, R> {
    /// The service made.
    type Service;

    /// Wraps `service` (the bulkhead level) in the outer layers there are.
    fn outer(
        &self,
        observe: Option<&ObserveLayer<C, R>>,
        total: Option<&TotalDeadlineLayer>,
        service: S,
    ) -> Self::Service;
}

impl<S, C: Clone, R: Clone> FallbackLevel<S, C, R> for Identity {
    type Service = Outer<ObserveDeadline<S, C, R>, TotalDeadline<S>, Observe<S, C, R>, S>;

    fn outer(
        &self,
        observe: Option<&ObserveLayer<C, R>>,
        total: Option<&TotalDeadlineLayer>,
        service: S,
    ) -> Self::Service {
        match (observe, total) {
            (Some(observe), Some(total)) => Outer::Both {
                service: observe.with_deadline(service, total.total()),
            },
            (None, Some(total)) => Outer::Deadline {
                service: total.layer(service),
            },
            (Some(observe), None) => Outer::Observed {
                service: observe.layer(service),
            },
            (None, None) => Outer::Neither { service },
        }
    }
}

impl<S, C: Clone, R: Clone, A, Ca, Fl, Cf, K> FallbackLevel<S, C, R>
    for FallbackLayer<A, Ca, Fl, Cf, K>
where
    K: CheckService<TotalDeadline<S>, Ca, Cf> + CheckService<S, Ca, Cf>,
{
    type Service = Outer<
        Observe<Fallback<TotalDeadline<S>, A, Ca, Fl, Cf, K>, C, R>,
        Fallback<TotalDeadline<S>, A, Ca, Fl, Cf, K>,
        Observe<Fallback<S, A, Ca, Fl, Cf, K>, C, R>,
        Fallback<S, A, Ca, Fl, Cf, K>,
    >;

    fn outer(
        &self,
        observe: Option<&ObserveLayer<C, R>>,
        total: Option<&TotalDeadlineLayer>,
        service: S,
    ) -> Self::Service {
        match (observe, total) {
            (Some(observe), Some(total)) => Outer::Both {
                service: observe.layer(self.layer(total.layer(service))),
            },
            (None, Some(total)) => Outer::Deadline {
                service: self.layer(total.layer(service)),
            },
            (Some(observe), None) => Outer::Observed {
                service: observe.layer(self.layer(service)),
            },
            (None, None) => Outer::Neither {
                service: self.layer(service),
            },
        }
    }
}

/// A hedging setting of a [`PolicyBuilder`]: none ([`Identity`]) or a
/// [`HedgeLayerBuilder`], built with the policy's classifier, replay and
/// retry budget.
pub trait HedgeSetting<C, P> {
    /// The level built.
    type Layer;
    /// The copy of the policy's replay the level keeps.
    type Replay;

    /// Copies the policy's replay, if the level needs it.
    fn replay(&self, replay: &P) -> Self::Replay;

    /// Builds the level.
    fn build_level(
        self,
        classifier: C,
        replay: Self::Replay,
        budget: Option<RetryBudget>,
    ) -> Result<Self::Layer, ConfigError>;
}

impl<C, P> HedgeSetting<C, P> for Identity {
    type Layer = Identity;
    type Replay = ();

    fn replay(&self, _: &P) {}

    fn build_level(self, _: C, _: (), _: Option<RetryBudget>) -> Result<Identity, ConfigError> {
        Ok(Identity::new())
    }
}

impl<C, P: Clone> HedgeSetting<C, P> for HedgeLayerBuilder {
    type Layer = HedgeLayer<C, P>;
    type Replay = P;

    fn replay(&self, replay: &P) -> P {
        replay.clone()
    }

    fn build_level(
        self,
        classifier: C,
        replay: P,
        budget: Option<RetryBudget>,
    ) -> Result<HedgeLayer<C, P>, ConfigError> {
        let mut hedge = self;
        if let Some(budget) = budget {
            hedge = hedge.budget(budget);
        }
        hedge.classifier(classifier).replay(replay).build()
    }
}

/// A fallback setting of a [`PolicyBuilder`]: none ([`Identity`]) or a
/// [`FallbackLayerBuilder`], built with the policy's classifier.
pub trait FallbackSetting<C> {
    /// The level built.
    type Layer;

    /// Builds the level.
    fn build_level(self, classifier: C) -> Result<Self::Layer, ConfigError>;
}

impl<C> FallbackSetting<C> for Identity {
    type Layer = Identity;

    fn build_level(self, _: C) -> Result<Identity, ConfigError> {
        Ok(Identity::new())
    }
}

impl<C, A, Ca, Fl, Cf, K> FallbackSetting<C> for FallbackLayerBuilder<A, Ca, Fl, Cf, K>
where
    K: CheckSources<A, Ca, Fl>,
{
    type Layer = FallbackLayer<A, Ca, Fl, C, K>;

    fn build_level(self, classifier: C) -> Result<Self::Layer, ConfigError> {
        self.classifier(classifier).build()
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

/// Builds a [`Policy`]; settings are checked, alone and against each
/// other, by [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use steadfast::bulkhead::BulkheadLayer;
/// use steadfast::policy::Policy;
/// use steadfast::retry::RetryLayer;
///
/// let policy = Policy::builder()
///     .name("payments")
///     .total_timeout(Duration::from_secs(2))
///     .bulkhead(BulkheadLayer::builder().max_concurrent(50))
///     .retry(RetryLayer::builder().max_attempts(2))
///     .attempt_timeout(Duration::from_millis(800))
///     .build()?;
/// assert_eq!(policy.name(), "payments");
/// assert_eq!(policy.bulkhead().map(|b| b.max_concurrent()), Some(50));
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct PolicyBuilder<
    C = DefaultClassifier,
    P = CloneReplay,
    R = GenerateRequestId,
    H = Identity,
    F = Identity,
    B = Unkeyed,
    Kb = Unkeyed,
> {
    settings: Settings,
    classifier: C,
    replay: P,
    request_id: R,
    hedge: H,
    fallback: F,
    keyed: B,
    bulkheads: Kb,
}

/// What a [`PolicyBuilder`] keeps besides its type parameters.
#[derive(Debug)]
struct Settings {
    name: Cow<'static, str>,
    observe: Option<ObserveSettings>,
    total_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    retry: Option<RetryLayerBuilder>,
    breaker: Option<CircuitBreakerBuilder>,
    bulkhead: Option<BulkheadLayerBuilder>,
    derive: Derive,
    adaptive: Option<AdaptiveLayerBuilder>,
}

impl<C, P, R, H: fmt::Debug, F: fmt::Debug, B: fmt::Debug, Kb: fmt::Debug> fmt::Debug
    for PolicyBuilder<C, P, R, H, F, B, Kb>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBuilder")
            .field("settings", &self.settings)
            .field("hedge", &self.hedge)
            .field("fallback", &self.fallback)
            .field("keyed", &self.keyed)
            .field("bulkheads", &self.bulkheads)
            .finish_non_exhaustive()
    }
}

impl<C, P, R, H, F, B, Kb> PolicyBuilder<C, P, R, H, F, B, Kb> {
    /// Names the policy, in its snapshot, its spans, events and metrics.
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// Watches every call, outermost: a span per call, the request id on
    /// every event, call and attempt metrics (feature `metrics`); see
    /// [`ObserveLayer`]. The settings below turn it on too.
    pub fn observe(mut self) -> Self {
        self.observing();
        self
    }

    /// Stops watching calls (no span, no call metrics, no slow-call
    /// alert, no call listeners).
    pub fn no_observe(mut self) -> Self {
        self.settings.observe = None;
        self
    }

    /// Names the route these calls take, for events and metric labels;
    /// watches calls.
    pub fn route(mut self, route: impl Into<Cow<'static, str>>) -> Self {
        self.observing().route = route.into();
        self
    }

    /// Warns when a call takes `threshold` or longer, even if it
    /// succeeds; watches calls.
    pub fn slow_call(mut self, threshold: Duration) -> Self {
        self.observing().slow_call = Some(threshold);
        self
    }

    /// Calls `listener` with every [`Event`](crate::observe::Event) made
    /// inside the policy's calls; watches calls.
    pub fn on_event(
        mut self,
        listener: impl Fn(&crate::observe::Event<'_>) + Send + Sync + 'static,
    ) -> Self {
        let observing = self.observing();
        observing.listeners = std::mem::take(&mut observing.listeners).with(listener);
        self
    }

    /// Records call and attempt metrics (feature `metrics`; off by
    /// default: they cost two clock reads and two histogram records per
    /// call); watches calls.
    pub fn metrics(mut self, on: bool) -> Self {
        self.observing().metrics = on;
        self
    }

    /// Takes request ids from `request_id` (for example a
    /// [`RequestIdHeader`]); watches calls.
    pub fn request_id<R2>(mut self, request_id: R2) -> PolicyBuilder<C, P, R2, H, F, B, Kb> {
        self.observing();
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id,
            hedge: self.hedge,
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
        }
    }

    fn observing(&mut self) -> &mut ObserveSettings {
        self.settings
            .observe
            .get_or_insert_with(ObserveSettings::default)
    }

    /// Bounds the whole call, retries included.
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.settings.total_timeout = Some(timeout);
        self
    }

    /// No total timeout.
    pub fn no_total_timeout(mut self) -> Self {
        self.settings.total_timeout = None;
        self
    }

    /// Bounds each attempt.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.settings.attempt_timeout = Some(timeout);
        self.settings.derive.attempt = false;
        self
    }

    /// No attempt timeout.
    pub fn no_attempt_timeout(mut self) -> Self {
        self.settings.attempt_timeout = None;
        self.settings.derive.attempt = false;
        self
    }

    /// Retries with these settings; the policy's classifier and replay
    /// replace the builder's.
    pub fn retry(mut self, retry: RetryLayerBuilder) -> Self {
        self.settings.retry = Some(retry);
        self.settings.derive.backoff = false;
        self
    }

    /// No retry.
    pub fn no_retry(mut self) -> Self {
        self.settings.retry = None;
        self.settings.derive.backoff = false;
        self
    }

    /// One circuit breaker for every call, with these settings (in place
    /// of one per key); the policy's classifier replaces the builder's.
    pub fn circuit_breaker(
        mut self,
        breaker: CircuitBreakerBuilder,
    ) -> PolicyBuilder<C, P, R, H, F, Unkeyed, Kb> {
        self.settings.breaker = Some(breaker);
        self.with_levels(|_, bulkheads| (Unkeyed, bulkheads))
    }

    /// A circuit breaker per key (say, per host) in place of the one
    /// breaker: each key opens and closes on its own, so one failing host
    /// does not refuse calls to the others. Each key's breaker has the
    /// settings of the breaker set so far (a preset's, say, changed with
    /// [`circuit_breaker_with`](Self::circuit_breaker_with), or the
    /// breaker's defaults); `per` says what the key is and how many keys
    /// are kept. The policy's classifier judges, and an unnamed breaker
    /// takes the policy's name. [`Policy::circuit_breakers`] lists the
    /// keys' breakers; [`Policy::circuit_breaker`] shows none.
    ///
    /// ```
    /// # #[cfg(feature = "reqwest")]
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use steadfast::policy::{PerKey, Policy};
    ///
    /// // One breaker per tenant, named by a header.
    /// let tenant = |request: &reqwest::Request| {
    ///     request.headers().get("x-tenant").map(|v| v.as_bytes().to_vec())
    /// };
    /// let policy = Policy::standard_http_client()
    ///     .circuit_breaker_with(|b| b.consecutive_failures(5))
    ///     .circuit_breaker_per(PerKey::new(tenant).max_keys(1_000))
    ///     .build()?;
    /// assert!(policy.circuit_breaker().is_none(), "no single breaker");
    /// assert!(policy.circuit_breakers().is_empty(), "no tenant called yet");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "reqwest"))]
    /// # fn main() {}
    /// ```
    pub fn circuit_breaker_per<K, Fk>(
        mut self,
        per: PerKey<K, Fk>,
    ) -> PolicyBuilder<C, P, R, H, F, PerKey<K, Fk>, Kb> {
        self.settings
            .breaker
            .get_or_insert_with(CircuitBreakerLayer::builder);
        self.with_levels(|_, bulkheads| (per, bulkheads))
    }

    /// A circuit breaker per host and port ([`PerKey::host`]), with the
    /// settings of the breaker set so far: what the HTTP presets have.
    ///
    /// ```
    /// # #[cfg(feature = "http")]
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use steadfast::policy::Policy;
    /// use steadfast::retry::RetryLayer;
    ///
    /// let policy = Policy::builder()
    ///     .classifier(steadfast::http::HttpClassifier::new())
    ///     .circuit_breaker_with(|b| b.consecutive_failures(5))
    ///     .circuit_breaker_per_host()
    ///     .build()?;
    /// assert!(policy.circuit_breaker().is_none(), "one breaker per host");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "http"))]
    /// # fn main() {}
    /// ```
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn circuit_breaker_per_host(self) -> PolicyBuilder<C, P, R, H, F, PerHost, Kb> {
        self.circuit_breaker_per(PerKey::host())
    }

    /// No circuit breaker, keyed or not.
    pub fn no_circuit_breaker(mut self) -> PolicyBuilder<C, P, R, H, F, Unkeyed, Kb> {
        self.settings.breaker = None;
        self.with_levels(|_, bulkheads| (Unkeyed, bulkheads))
    }

    /// A bulkhead with these settings, outside retry (in place of one per
    /// key): a call holds one permit for all its attempts.
    pub fn bulkhead(
        mut self,
        bulkhead: BulkheadLayerBuilder,
    ) -> PolicyBuilder<C, P, R, H, F, B, Unkeyed> {
        self.settings.bulkhead = Some(bulkhead);
        self.with_levels(|keyed, _| (keyed, Unkeyed))
    }

    /// A bulkhead per key (say, per host) in place of the one bulkhead,
    /// outside retry: each key has its own permits, so calls piling up on
    /// one slow host do not refuse calls to the others. Each key's
    /// bulkhead has the settings of the bulkhead set so far (a preset's,
    /// changed with [`bulkhead_with`](Self::bulkhead_with), or the
    /// bulkhead's defaults); `per` says what the key is and how many keys
    /// are kept. An unnamed bulkhead takes the policy's name.
    /// [`Policy::bulkheads`] lists the keys' bulkheads;
    /// [`Policy::bulkhead`] shows none.
    ///
    /// ```
    /// # #[cfg(feature = "reqwest")]
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use steadfast::policy::{PerKey, Policy, by_host};
    ///
    /// // By host, whatever the port, for at most 1,000 hosts.
    /// let policy = Policy::standard_http_client()
    ///     .bulkhead_with(|b| b.max_concurrent(100))
    ///     .bulkhead_per(PerKey::new(by_host::<reqwest::Request>).max_keys(1_000))
    ///     .build()?;
    /// assert!(policy.bulkhead().is_none(), "no single bulkhead");
    /// assert!(policy.bulkheads().is_empty(), "no host called yet");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "reqwest"))]
    /// # fn main() {}
    /// ```
    pub fn bulkhead_per<K, Fk>(
        mut self,
        per: PerKey<K, Fk>,
    ) -> PolicyBuilder<C, P, R, H, F, B, PerKey<K, Fk>> {
        self.settings.bulkhead.get_or_insert_with(Default::default);
        self.with_levels(|keyed, _| (keyed, per))
    }

    /// A bulkhead per host and port ([`PerKey::host`]), with the settings
    /// of the bulkhead set so far: what the HTTP presets have.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn bulkhead_per_host(self) -> PolicyBuilder<C, P, R, H, F, B, PerHost> {
        self.bulkhead_per(PerKey::host())
    }

    /// No bulkhead, keyed or not.
    pub fn no_bulkhead(mut self) -> PolicyBuilder<C, P, R, H, F, B, Unkeyed> {
        self.settings.bulkhead = None;
        self.with_levels(|keyed, _| (keyed, Unkeyed))
    }

    /// The same builder with other breaker and bulkhead levels: one
    /// ([`Unkeyed`]) or per key ([`PerKey`]) each.
    fn with_levels<B2, Kb2>(
        self,
        levels: impl FnOnce(B, Kb) -> (B2, Kb2),
    ) -> PolicyBuilder<C, P, R, H, F, B2, Kb2> {
        let (keyed, bulkheads) = levels(self.keyed, self.bulkheads);
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback: self.fallback,
            keyed,
            bulkheads,
        }
    }

    /// An adaptive concurrency limit with these settings, inside retry and
    /// outside the breaker: each attempt holds one place and is one sample,
    /// and its throttling (if any) refuses locally before the breaker would
    /// open. The policy's classifier replaces the builder's.
    pub fn adaptive(mut self, adaptive: AdaptiveLayerBuilder) -> Self {
        self.settings.adaptive = Some(adaptive);
        self
    }

    /// No adaptive concurrency limit.
    pub fn no_adaptive(mut self) -> Self {
        self.settings.adaptive = None;
        self
    }

    /// Judges attempts, for retry and breaker, with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> PolicyBuilder<C2, P, R, H, F, B, Kb> {
        PolicyBuilder {
            settings: self.settings,
            classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
        }
    }

    /// Copies requests for retry with `replay`.
    pub fn replay<P2>(self, replay: P2) -> PolicyBuilder<C, P2, R, H, F, B, Kb> {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
        }
    }

    /// Hedges each attempt with these settings, inside retry and outside
    /// the adaptive limit and the breaker: each copy is judged by the
    /// breaker, and a copy of an open circuit is refused cheaply. The
    /// policy's classifier and replay replace the builder's, and a policy
    /// that retries spends its retry budget on hedges too, so retries and
    /// hedges together stay within it.
    pub fn hedge(
        self,
        hedge: HedgeLayerBuilder,
    ) -> PolicyBuilder<C, P, R, HedgeLayerBuilder, F, B, Kb> {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge,
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
        }
    }

    /// No hedging.
    pub fn no_hedge(self) -> PolicyBuilder<C, P, R, Identity, F, B, Kb> {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: Identity::new(),
            fallback: self.fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
        }
    }

    /// Falls back with these sources, outside every other layer but
    /// observe: it sees the failures and rejections of every layer, the
    /// total deadline's included, and its events
    /// ([`FallbackServed`](crate::observe::Event::FallbackServed),
    /// [`FallbackMissed`](crate::observe::Event::FallbackMissed)) reach
    /// the policy's listeners. The policy's classifier replaces the
    /// builder's.
    ///
    /// A fallback that names its request and response types
    /// ([`reqwest`](FallbackLayerBuilder::reqwest),
    /// [`http_for`](FallbackLayerBuilder::http_for)) checks its sources
    /// here and the service at [`layer`](Layer::layer):
    ///
    /// ```compile_fail
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use steadfast::fallback::FallbackLayer;
    /// use steadfast::policy::Policy;
    ///
    /// // A `String` is no `reqwest::Response`: refused here, with
    /// // "the static or computed answer `Static<String>` does not fit
    /// // `reqwest::Response` responses".
    /// let policy = Policy::standard_http_client()
    ///     .fallback(FallbackLayer::builder().static_response(String::from("offline")).reqwest())
    ///     .build()?;
    /// # Ok(())
    /// # }
    /// ```
    #[allow(clippy::type_complexity)] // The builder's own type, spelled once.
    pub fn fallback<A, Ca, Fl, Cf, K>(
        self,
        fallback: FallbackLayerBuilder<A, Ca, Fl, Cf, K>,
    ) -> PolicyBuilder<C, P, R, H, FallbackLayerBuilder<A, Ca, Fl, Cf, K>, B, Kb>
    where
        K: CheckSources<A, Ca, Fl>,
    {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback,
            keyed: self.keyed,
            bulkheads: self.bulkheads,
        }
    }

    /// No fallback.
    pub fn no_fallback(self) -> PolicyBuilder<C, P, R, H, Identity, B, Kb> {
        PolicyBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay: self.replay,
            request_id: self.request_id,
            hedge: self.hedge,
            fallback: Identity::new(),
            keyed: self.keyed,
            bulkheads: self.bulkheads,
        }
    }

    /// Changes the circuit breaker's settings, starting from the ones set
    /// so far (a preset's, for example) or from the breaker's defaults.
    ///
    /// ```
    /// # #[cfg(feature = "http")]
    /// # fn main() -> Result<(), steadfast::ConfigError> {
    /// use std::time::Duration;
    /// use steadfast::policy::Policy;
    ///
    /// // The standard breaker (one per host), but open for 10 s.
    /// let policy = Policy::standard_http_client()
    ///     .circuit_breaker_with(|breaker| breaker.open_duration(Duration::from_secs(10)))
    ///     .build()?;
    /// let api = policy.circuit_breaker_for("api.example:443");
    /// assert_eq!(api.key(), Some("api.example:443"));
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "http"))]
    /// # fn main() {}
    /// ```
    pub fn circuit_breaker_with(
        mut self,
        change: impl FnOnce(CircuitBreakerBuilder) -> CircuitBreakerBuilder,
    ) -> Self {
        let breaker = self
            .settings
            .breaker
            .take()
            .unwrap_or_else(CircuitBreakerLayer::builder);
        self.settings.breaker = Some(change(breaker));
        self
    }

    /// Changes the retry settings, starting from the ones set so far or
    /// from retry's defaults. A preset's backoff keeps following the total
    /// timeout unless `change` sets one: it is computed for the total
    /// timeout set when `build` runs.
    pub fn retry_with(
        mut self,
        change: impl FnOnce(RetryLayerBuilder) -> RetryLayerBuilder,
    ) -> Self {
        let retry = self
            .settings
            .retry
            .take()
            .unwrap_or_else(RetryLayer::builder);
        let before = retry.backoff_set();
        let retry = change(retry);
        if retry.backoff_set() != before {
            self.settings.derive.backoff = false;
        }
        self.settings.retry = Some(retry);
        self
    }

    /// Changes the bulkhead's settings, starting from the ones set so far
    /// or from the bulkhead's defaults.
    pub fn bulkhead_with(
        mut self,
        change: impl FnOnce(BulkheadLayerBuilder) -> BulkheadLayerBuilder,
    ) -> Self {
        let bulkhead = self.settings.bulkhead.take().unwrap_or_default();
        self.settings.bulkhead = Some(change(bulkhead));
        self
    }

    /// The circuit breaker's settings so far, if any.
    pub fn circuit_breaker_settings(&self) -> Option<&CircuitBreakerBuilder> {
        self.settings.breaker.as_ref()
    }

    /// The retry settings so far, if any.
    pub fn retry_settings(&self) -> Option<&RetryLayerBuilder> {
        self.settings.retry.as_ref()
    }

    /// The bulkhead's settings so far, if any.
    pub fn bulkhead_settings(&self) -> Option<&BulkheadLayerBuilder> {
        self.settings.bulkhead.as_ref()
    }

    /// Checks every setting and their consistency, and builds the layers.
    #[allow(clippy::type_complexity)] // The built policy's type, spelled once.
    pub fn build(self) -> Result<Built<C, P, R, H, F, B, Kb>, ConfigError>
    where
        C: Clone,
        B: BreakerSetting<C>,
        Kb: BulkheadSetting,
        H: HedgeSetting<C, P>,
        F: FallbackSetting<C>,
    {
        let mut s = self.settings;
        s.derive.apply(&mut s);
        // Stateful layers left with their default names take the policy's,
        // so that two policies' state gauges (registered when they are
        // built, outside any call) never mix. Events made inside a call
        // carry the policy's name already.
        let named = (s.name != "default").then(|| s.name.clone());
        let observe = match s.observe {
            Some(settings) => Some(
                ObserveLayerBuilder::from_settings(
                    s.name.clone(),
                    settings,
                    self.classifier.clone(),
                    self.request_id,
                )
                .build()?,
            ),
            None => None,
        };
        let total = s.total_timeout.map(TotalDeadlineLayer::new).transpose()?;
        let attempt = s.attempt_timeout.map(TimeoutLayer::new).transpose()?;
        if let (Some(total), Some(attempt)) = (s.total_timeout, s.attempt_timeout) {
            check::not_above(
                "timeout.attempt",
                attempt,
                "timeout.total",
                total,
                "the attempt timeout must not exceed the total timeout",
            )?;
        }
        if let Some(attempt) = s.attempt_timeout {
            if let Some(span) = self.keyed.time_window_span(s.breaker.as_ref()) {
                if span < attempt.saturating_mul(2) {
                    return Err(ConfigError::conflict(
                        "circuit_breaker.time_window",
                        span,
                        "timeout.attempt",
                        attempt,
                        "the breaker's time window must last at least twice the attempt timeout",
                    ));
                }
            }
        }
        let hedge_replay = self.hedge.replay(&self.replay);
        let retry = match s.retry {
            Some(retry) => Some(
                retry
                    .classifier(self.classifier.clone())
                    .replay(self.replay)
                    .build()?,
            ),
            None => None,
        };
        let hedge = self.hedge.build_level(
            self.classifier.clone(),
            hedge_replay,
            retry.as_ref().and_then(RetryLayer::budget).cloned(),
        )?;
        let fallback = self.fallback.build_level(self.classifier.clone())?;
        if let (Some(retry), Some(total)) = (&retry, s.total_timeout) {
            let backoff = retry.backoff().max_total(retry.max_attempts() - 1);
            if backoff > total {
                return Err(ConfigError::conflict(
                    "retry.backoff",
                    backoff,
                    "timeout.total",
                    total,
                    "the longest backoff of all retries together must fit in the total timeout",
                ));
            }
        }
        let adaptive = s
            .adaptive
            .map(|adaptive| adaptive.classifier(self.classifier.clone()).build())
            .transpose()?;
        let breaker = self
            .keyed
            .build_level(s.breaker, self.classifier, named.clone())?;
        let bulkhead = self.bulkheads.build_level(s.bulkhead, named)?;
        Ok(Policy {
            name: s.name,
            observe,
            fallback,
            hedge,
            total,
            bulkhead,
            retry,
            adaptive,
            breaker,
            attempt,
        })
    }
}

pub use self::outer::Outer;

// The projection of `Outer` is generated without docs.
#[allow(missing_docs)]
mod outer {
    use super::*;

    pin_project! {
        /// The outer layers of a [`Policy`]: observe and total deadline,
        /// both, one or neither. Errors become [`BoxError`].
        #[project = OuterProj]
        #[derive(Debug, Clone)]
        pub enum Outer<A, B, C, D> {
            /// Observe over the total deadline.
            Both {
                #[pin]
                service: A,
            },
            /// The total deadline only.
            Deadline {
                #[pin]
                service: B,
            },
            /// Observe only.
            Observed {
                #[pin]
                service: C,
            },
            /// Neither.
            Neither {
                #[pin]
                service: D,
            },
        }
    }

    impl<A, B, C, D, Req> Service<Req> for Outer<A, B, C, D>
    where
        A: Service<Req>,
        A::Error: Into<BoxError>,
        B: Service<Req, Response = A::Response>,
        B::Error: Into<BoxError>,
        C: Service<Req, Response = A::Response>,
        C::Error: Into<BoxError>,
        D: Service<Req, Response = A::Response>,
        D::Error: Into<BoxError>,
    {
        type Response = A::Response;
        type Error = BoxError;
        type Future = Outer<A::Future, B::Future, C::Future, D::Future>;

        #[inline]
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            match self {
                Outer::Both { service } => service.poll_ready(cx).map_err(Into::into),
                Outer::Deadline { service } => service.poll_ready(cx).map_err(Into::into),
                Outer::Observed { service } => service.poll_ready(cx).map_err(Into::into),
                Outer::Neither { service } => service.poll_ready(cx).map_err(Into::into),
            }
        }

        #[inline]
        fn call(&mut self, request: Req) -> Self::Future {
            match self {
                Outer::Both { service } => Outer::Both {
                    service: service.call(request),
                },
                Outer::Deadline { service } => Outer::Deadline {
                    service: service.call(request),
                },
                Outer::Observed { service } => Outer::Observed {
                    service: service.call(request),
                },
                Outer::Neither { service } => Outer::Neither {
                    service: service.call(request),
                },
            }
        }
    }

    impl<A, B, C, D, T, EA, EB, EC, ED> Future for Outer<A, B, C, D>
    where
        A: Future<Output = Result<T, EA>>,
        B: Future<Output = Result<T, EB>>,
        C: Future<Output = Result<T, EC>>,
        D: Future<Output = Result<T, ED>>,
        EA: Into<BoxError>,
        EB: Into<BoxError>,
        EC: Into<BoxError>,
        ED: Into<BoxError>,
    {
        type Output = Result<T, BoxError>;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project() {
                OuterProj::Both { service } => service.poll(cx).map_err(Into::into),
                OuterProj::Deadline { service } => service.poll(cx).map_err(Into::into),
                OuterProj::Observed { service } => service.poll(cx).map_err(Into::into),
                OuterProj::Neither { service } => service.poll(cx).map_err(Into::into),
            }
        }
    }
}

impl crate::observe::Health {
    /// Adds every stateful layer of `policy`, under the policy's name.
    ///
    /// A keyed breaker or bulkhead (the HTTP presets' are per host) is
    /// read one entry per key it holds when the snapshot is taken.
    pub fn policy<C, P, R, H, F, B, Bk>(self, policy: &Policy<C, P, R, H, F, B, Bk>) -> Self
    where
        C: Send + Sync + 'static,
        B: BreakerLevel + Clone + Send + Sync + 'static,
        Bk: BulkheadLevel + Clone + Send + Sync + 'static,
    {
        let read = policy.status_reader();
        self.reader(move |out| out.push(crate::observe::Status::Policy(read())))
    }
}

pub use self::level::{Level, Optional};

// The projection of `Level` is generated without docs.
#[allow(missing_docs)]
mod level {
    use super::*;

    pin_project! {
        /// One optional level of a [`Policy`]: the layer's service over the
        /// level below, or, when the policy has no such layer, the level
        /// below itself, called directly. No layer holds a switch, a
        /// sentinel or a stand-in for an absent level: the policy decides,
        /// once, when it layers the service. Errors become [`BoxError`].
        ///
        /// A breaker, bulkhead or attempt timeout level answers with its
        /// layer's own future whether the layer is there or not (a call the
        /// layer does not guard is one of that future's states), so the
        /// standard stack pays no second wrapper per call; the adaptive and
        /// retry levels answer with a `Level` of both futures.
        #[project = LevelProj]
        #[derive(Debug, Clone)]
        pub enum Level<On, Off> {
            /// The layer's service.
            On {
                #[pin]
                service: On,
            },
            /// No layer at this level: the service below.
            Off {
                #[pin]
                service: Off,
            },
        }
    }

    impl<On, Off> Level<On, Off> {
        /// `layer` over `service` if there is one, else `service` itself.
        pub(crate) fn new<L>(layer: Option<&L>, service: Off) -> Self
        where
            L: Layer<Off, Service = On>,
        {
            match layer {
                Some(layer) => Level::On {
                    service: layer.layer(service),
                },
                None => Level::Off { service },
            }
        }

        /// The layer's service, if the level has its layer.
        pub fn layered(&self) -> Option<&On> {
            match self {
                Level::On { service } => Some(service),
                Level::Off { .. } => None,
            }
        }
    }

    /// A layer a [`Policy`] has or not, for a level whose type is a
    /// parameter of the policy (its breaker's): layers `L` over the service
    /// when there is one, else leaves the service as it is, in a [`Level`]
    /// either way.
    #[derive(Debug, Clone)]
    pub struct Optional<L>(Option<L>);

    impl<L> Optional<L> {
        pub(crate) fn new(layer: Option<L>) -> Self {
            Self(layer)
        }

        /// The layer, if there is one.
        pub fn get(&self) -> Option<&L> {
            self.0.as_ref()
        }
    }

    impl<S, L: Layer<S>> Layer<S> for Optional<L> {
        type Service = Level<L::Service, S>;

        fn layer(&self, service: S) -> Self::Service {
            Level::new(self.0.as_ref(), service)
        }
    }

    // A level whose layer's future can carry a call the layer does not
    // guard (a breaker's untracked call, a bulkhead's call without a
    // permit, an attempt with no bound) answers with that future either way: no second wrapper
    // around every call of the standard stack. The others answer with a
    // `Level` of both futures.

    impl<S, C, Req> Service<Req> for Level<CircuitBreaker<S, C>, S>
    where
        S: Service<Req>,
        S::Error: Into<BoxError> + 'static,
        C: crate::classify::Classify<Req, S::Response, S::Error>,
    {
        type Response = S::Response;
        type Error = BoxError;
        type Future = <CircuitBreaker<S, C> as Service<Req>>::Future;

        #[inline(always)]
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            match self {
                Level::On { service } => service.poll_ready(cx),
                Level::Off { service } => service.poll_ready(cx).map_err(Into::into),
            }
        }

        #[inline(always)]
        fn call(&mut self, request: Req) -> Self::Future {
            match self {
                Level::On { service } => service.call(request),
                Level::Off { service } => crate::circuit_breaker::unguarded(service.call(request)),
            }
        }
    }

    impl<S, Req> Service<Req> for Level<Bulkhead<S>, S>
    where
        S: Service<Req> + Clone,
        S::Error: Into<BoxError>,
    {
        type Response = S::Response;
        type Error = BoxError;
        type Future = <Bulkhead<S> as Service<Req>>::Future;

        #[inline(always)]
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            match self {
                Level::On { service } => service.poll_ready(cx),
                Level::Off { service } => service.poll_ready(cx).map_err(Into::into),
            }
        }

        #[inline(always)]
        fn call(&mut self, request: Req) -> Self::Future {
            match self {
                Level::On { service } => service.call(request),
                Level::Off { service } => crate::bulkhead::unguarded(service.call(request)),
            }
        }
    }

    impl<S, Req> Service<Req> for Level<Timeout<S>, S>
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        type Response = S::Response;
        type Error = BoxError;
        type Future = <Timeout<S> as Service<Req>>::Future;

        #[inline(always)]
        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            match self {
                Level::On { service } => service.poll_ready(cx),
                Level::Off { service } => service.poll_ready(cx).map_err(Into::into),
            }
        }

        #[inline(always)]
        fn call(&mut self, request: Req) -> Self::Future {
            match self {
                Level::On { service } => service.call(request),
                Level::Off { service } => crate::timeout::unbounded(service.call(request)),
            }
        }
    }

    /// `Service` for a level whose future is a [`Level`] of both futures.
    macro_rules! either_level {
        ([$($param:ident),*] $on:ty) => {
            impl<S, $($param,)* Req> Service<Req> for Level<$on, S>
            where
                $on: Service<Req, Error = BoxError>,
                S: Service<Req, Response = <$on as Service<Req>>::Response>,
                S::Error: Into<BoxError>,
            {
                type Response = S::Response;
                type Error = BoxError;
                type Future = Level<<$on as Service<Req>>::Future, S::Future>;

                #[inline(always)]
                fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                    match self {
                        Level::On { service } => service.poll_ready(cx),
                        Level::Off { service } => service.poll_ready(cx).map_err(Into::into),
                    }
                }

                #[inline(always)]
                fn call(&mut self, request: Req) -> Self::Future {
                    match self {
                        Level::On { service } => Level::On {
                            service: service.call(request),
                        },
                        Level::Off { service } => Level::Off {
                            service: service.call(request),
                        },
                    }
                }
            }
        };
    }

    either_level!([C] Adaptive<S, C>);
    either_level!([C, P] Retry<S, C, P>);

    impl<On, Off, T, EOn, EOff> Future for Level<On, Off>
    where
        On: Future<Output = Result<T, EOn>>,
        Off: Future<Output = Result<T, EOff>>,
        EOn: Into<BoxError>,
        EOff: Into<BoxError>,
    {
        type Output = Result<T, BoxError>;

        #[inline(always)]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project() {
                LevelProj::On { service } => service.poll(cx).map_err(Into::into),
                LevelProj::Off { service } => service.poll(cx).map_err(Into::into),
            }
        }
    }
}
