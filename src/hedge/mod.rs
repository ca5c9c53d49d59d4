//! Hedging and racing: send more than one copy of a request, keep the
//! first good answer.
//!
//! [`HedgeLayer`] sends a request once; if no answer has come after a
//! delay, it sends another copy, up to
//! [`max_hedges`](HedgeLayerBuilder::max_hedges) more:
//!
//! - the delay is fixed ([`delay`](HedgeLayerBuilder::delay)) or derived
//!   from observed latency
//!   ([`latency_percentile`](HedgeLayerBuilder::latency_percentile)): with
//!   a maximum extra load of 2 %, copies are sent at the 98th percentile of
//!   recent latencies, never sooner than a floor. Latencies are counted in
//!   a lock-free histogram of atomic log-linear buckets;
//! - the first success or functional error wins, and every other copy in
//!   flight is dropped at once (cancelled);
//! - hedges never add load to a failing dependency. With one target, a
//!   failure answer (a transient failure such as a 503, with or without
//!   `Retry-After`) or a refusal by an inner policy (an open circuit)
//!   sends no more copies: failures are retry's, with its backoff. Across
//!   [`endpoints`](HedgeLayer::endpoints), the same sends the next copy to
//!   the next endpoint at once instead of waiting. A non-transient
//!   [`Failure`](crate::classify::Verdict::Failure) sends no more copies.
//!   When every copy fails, the last failure is returned, a real failure
//!   being preferred to a refusal;
//! - hedges are drawn from a [`RetryBudget`], which can be the one retries
//!   use: extra load stays within one bound. A hedge refused by the budget
//!   is not sent, and a token taken for a copy that never left (its call
//!   dropped while the copy waited for its service) is given back;
//! - copies are made by a [`Replay`]: a request that
//!   can't be copied is sent once;
//! - a request the classifier says must not run twice
//!   ([`Classify::may_overlap`]; with the HTTP classifier, a POST without
//!   `Idempotency-Key`) gets no copy on a timer; across endpoints it moves
//!   on only after a failure that proves it was not processed (event
//!   reason `not_idempotent`);
//! - no copy is sent once the total [`Deadline`](crate::timeout::Deadline)
//!   has passed;
//! - [`HedgeLayer::endpoints`] sends copies to a list of alternative
//!   services, each of which may sit behind its own circuit breaker.
//!
//! [`Race`] sends a request to several alternatives at once (or staggered)
//! and keeps the first good answer, on the same machinery without a budget.
//!
//! A call answered by its first copy before the delay allocates nothing of
//! its own, and one answered at its first poll doesn't even read the clock.
//! Events have target `steadfast::hedge` and fields `policy`, `name`,
//! `copy`, `verdict`, `reason` and `delay_ms`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::hedge::HedgeLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! // The first call takes a second, every later one 10 ms.
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let backend = service_fn({
//!     let calls = calls.clone();
//!     move |x: u32| {
//!         let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!         async move {
//!             let ms = if n == 0 { 1_000 } else { 10 };
//!             tokio::time::sleep(Duration::from_millis(ms)).await;
//!             Ok::<_, steadfast::BoxError>(x + 1)
//!         }
//!     }
//! });
//! let hedged = HedgeLayer::builder()
//!     .delay(Duration::from_millis(50))
//!     .build()?
//!     .layer(backend);
//!
//! let started = tokio::time::Instant::now();
//! assert_eq!(hedged.oneshot(41).await?, 42);
//! // The hedge left at 50 ms and answered 10 ms later.
//! assert_eq!(started.elapsed(), Duration::from_millis(60));
//! # Ok(())
//! # }
//! ```
//!
//! # Derived delay, shared budget, endpoints behind breakers, racing
//!
//! ```
//! use std::time::Duration;
//! use steadfast::circuit_breaker::CircuitBreakerLayer;
//! use steadfast::hedge::{HedgeLayer, Race};
//! use steadfast::retry::RetryBudget;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let replica = |name: &'static str| {
//!     service_fn(move |path: &'static str| async move {
//!         Ok::<_, steadfast::BoxError>(format!("{name}{path}"))
//!     })
//! };
//! // One budget for retries and hedges to these hosts.
//! let budget = RetryBudget::builder().ratio(0.05).build()?;
//! let hedge = HedgeLayer::builder()
//!     .max_hedges(2)
//!     .latency_percentile(0.02, Duration::from_millis(20))
//!     .budget(budget.clone())
//!     .build()?;
//! let breaker = || CircuitBreakerLayer::builder().build();
//! let endpoints = vec![
//!     breaker()?.layer(replica("a")),
//!     breaker()?.layer(replica("b")),
//! ];
//! let svc = hedge.endpoints(endpoints)?;
//! assert_eq!(svc.oneshot("/x").await?, "a/x");
//!
//! // Bad settings fail when built.
//! let err = HedgeLayer::builder().latency_percentile(1.5, Duration::from_millis(5)).build();
//! assert_eq!(err.unwrap_err().field(), "hedge.max_extra_load");
//!
//! // Ask both replicas at once, keep the first answer.
//! let race = Race::builder().build([replica("a"), replica("b")])?;
//! assert_eq!(race.oneshot("/y").await?, "a/y");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use crate::budget::RetryBudget;
use crate::classify::{Classify, DefaultClassifier};
use crate::error::{BoxError, ConfigError};
use crate::replay::{CloneReplay, Replay};

pub mod future;
mod latency;
mod layer;
mod policy;

pub use self::layer::{HedgeLayer, HedgeLayerBuilder, RaceBuilder};

use self::policy::{Delay, Policy};

/// The policy and the services copies are sent to, shared by every clone
/// of a service and every call's future.
pub(crate) struct Shared<S, C, P> {
    pub(crate) policy: Arc<Policy<C, P>>,
    pub(crate) targets: Box<[S]>,
}

/// Sends a copy of a slow request again. Made by [`HedgeLayer`].
pub struct Hedge<S, C = DefaultClassifier, P = CloneReplay> {
    primary: S,
    shared: Arc<Shared<S, C, P>>,
}

impl<S, C, P> Hedge<S, C, P> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &HedgeLayer<C, P>) -> Self
    where
        HedgeLayer<C, P>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, C, P> Hedge<S, C, P> {
    fn from_parts(primary: S, shared: Arc<Shared<S, C, P>>) -> Self {
        Self { primary, shared }
    }

    /// The service first copies go to.
    pub fn get_ref(&self) -> &S {
        &self.primary
    }

    /// The service first copies go to, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.primary
    }

    /// The service first copies go to, consuming the hedge.
    pub fn into_inner(self) -> S {
        self.primary
    }

    /// The budget hedges are drawn from, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.shared.policy.budget.as_ref()
    }
}

impl<S, C: Send + Sync + 'static, P: Send + Sync + 'static> Hedge<S, C, P> {
    /// A handle on the state this service shares with its layer.
    pub fn handle(&self) -> HedgeHandle {
        HedgeHandle::new(Arc::clone(&self.shared.policy) as _)
    }
}

impl<S: Clone, C, P> Clone for Hedge<S, C, P> {
    fn clone(&self) -> Self {
        Self {
            primary: self.primary.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, C, P> fmt::Debug for Hedge<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("primary", &self.primary)
            .field("endpoints", &self.shared.targets.len())
            .field("policy", &self.shared.policy)
            .finish()
    }
}

impl<S, Req, C, P> Service<Req> for Hedge<S, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = future::ResponseFuture<S, Req, C, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.primary.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &*self.shared;
        let policy = &*shared.policy;
        let facts = policy.classifier.facts(&request);
        // A request that must not run twice gets no copy on a timer; across
        // endpoints it may still move on after a failure that proves it
        // was not processed.
        let overlap = policy.classifier.may_overlap(&facts);
        let spare = if policy.max_hedges == 0 {
            None
        } else if overlap {
            spare(policy, &request)
        } else {
            not_idempotent(policy);
            if shared.targets.len() > 1 {
                spare(policy, &request)
            } else {
                None
            }
        };
        let first = match &policy.budget {
            Some(budget) => {
                budget.deposit_once();
                budget.calling(|| self.primary.call(request))
            }
            None => self.primary.call(request),
        };
        future::ResponseFuture::new(first, Arc::clone(&self.shared), facts, spare, overlap)
    }
}

/// The copy of `request` the first hedge sends, if it can be made.
#[inline]
fn spare<Req, C, P: Replay<Req>>(policy: &Policy<C, P>, request: &Req) -> Option<Req> {
    let spare = policy.replay.replay(request);
    if spare.is_none() {
        not_replayable(policy);
    }
    spare
}

/// Reports a request that gets no copy on a timer: it must not run twice.
#[cold]
fn not_idempotent<C, P>(policy: &Policy<C, P>) {
    policy.emit(
        self::policy::Event::Refused(crate::event::HedgeRefusal::NotIdempotent),
        1,
        None,
    );
}

/// Reports a request that gets no copy: it could not be copied.
#[cold]
fn not_replayable<C, P>(policy: &Policy<C, P>) {
    policy.emit(
        self::policy::Event::Refused(crate::event::HedgeRefusal::NotReplayable),
        1,
        None,
    );
}

/// Sends a request to several alternative services, at once or staggered,
/// and keeps the first success or functional error; the others are
/// cancelled. Made by [`Race::builder`].
///
/// The first alternative is called at once; the others when the call's
/// future is first polled (or each `stagger` later). A failure starts the
/// next alternative at once; when every alternative fails, the last
/// failure is returned. An alternative may sit behind its own circuit
/// breaker.
pub struct Race<S, C = DefaultClassifier, P = CloneReplay> {
    hedge: Hedge<S, C, P>,
}

impl Race<()> {
    /// Starts building a race: alternatives all at once, default
    /// classifier, requests cloned.
    pub fn builder() -> RaceBuilder {
        RaceBuilder::new()
    }
}

impl<S: Clone> Race<S> {
    /// A race of `alternatives` with the default settings: all at once,
    /// default classifier, requests cloned
    /// (`Race::builder().build(alternatives)`). Fails if `alternatives`
    /// is empty.
    ///
    /// ```
    /// use steadfast::hedge::Race;
    /// use tower::{ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), steadfast::BoxError> {
    /// let replica = |name: &'static str| service_fn(move |()| async move { Ok::<_, steadfast::BoxError>(name) });
    /// let race = Race::new([replica("a"), replica("b")])?;
    /// assert_eq!(race.alternatives().len(), 2);
    /// assert_eq!(race.oneshot(()).await?, "a");
    /// assert_eq!(Race::<()>::new([]).unwrap_err().field(), "race.alternatives");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(alternatives: impl IntoIterator<Item = S>) -> Result<Self, ConfigError> {
        Race::builder().build(alternatives)
    }
}

impl<S, C, P> Race<S, C, P> {
    fn from_hedge(hedge: Hedge<S, C, P>) -> Self {
        Self { hedge }
    }

    /// The alternatives, in order.
    pub fn alternatives(&self) -> &[S] {
        &self.hedge.shared.targets
    }

    /// The first alternative, called at once on every call (the others
    /// are reached through [`alternatives`](Race::alternatives)).
    pub fn get_ref(&self) -> &S {
        self.hedge.get_ref()
    }

    /// The first alternative, mutably: what changes here reaches the
    /// first copy of this service's calls, not the later ones, which are
    /// sent to clones of the shared [`alternatives`](Race::alternatives).
    pub fn get_mut(&mut self) -> &mut S {
        self.hedge.get_mut()
    }

    /// The first alternative, consuming the race.
    pub fn into_inner(self) -> S {
        self.hedge.into_inner()
    }
}

impl<S: Clone, C, P> Clone for Race<S, C, P> {
    fn clone(&self) -> Self {
        Self {
            hedge: self.hedge.clone(),
        }
    }
}

impl<S: fmt::Debug, C, P> fmt::Debug for Race<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Race")
            .field("first", &self.hedge.primary)
            .field("alternatives", &self.hedge.shared.targets.len())
            .finish_non_exhaustive()
    }
}

impl<S, Req, C, P> Service<Req> for Race<S, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = future::ResponseFuture<S, Req, C, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.hedge.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        self.hedge.call(request)
    }
}

/// What a handle reads from a hedge policy, whatever its classifier.
trait View: Send + Sync {
    fn delay(&self) -> Option<Duration>;
    fn hedges_sent(&self) -> u64;
    fn samples(&self) -> u64;
    fn budget(&self) -> Option<&RetryBudget>;
}

impl<C: Send + Sync, P: Send + Sync> View for Policy<C, P> {
    fn delay(&self) -> Option<Duration> {
        Policy::delay(self)
    }

    fn hedges_sent(&self) -> u64 {
        self.hedges_sent.load(Ordering::Relaxed)
    }

    fn samples(&self) -> u64 {
        match &self.delay {
            Delay::Fixed(_) => 0,
            Delay::Percentile(histogram) => histogram.samples(),
        }
    }

    fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }
}

/// A cloneable view of a hedge layer's shared state.
#[derive(Clone)]
pub struct HedgeHandle {
    view: Arc<dyn View>,
}

impl HedgeHandle {
    fn new(view: Arc<dyn View>) -> Self {
        Self { view }
    }

    /// The delay after which a call sent now would send its next copy;
    /// `None` while a derived delay has too few latencies to go on.
    pub fn delay(&self) -> Option<Duration> {
        self.view.delay()
    }

    /// Copies sent besides the first, over every call so far.
    pub fn hedges_sent(&self) -> u64 {
        self.view.hedges_sent()
    }

    /// Latencies counted so far, for a derived delay (zero for a fixed one).
    pub fn samples(&self) -> u64 {
        self.view.samples()
    }

    /// The budget hedges are drawn from, if any.
    pub fn budget(&self) -> Option<RetryBudget> {
        self.view.budget().cloned()
    }
}

impl fmt::Debug for HedgeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeHandle")
            .field("delay", &self.delay())
            .field("hedges_sent", &self.hedges_sent())
            .finish_non_exhaustive()
    }
}
