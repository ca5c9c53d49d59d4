use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tower_layer::Layer;

use super::latency::Histogram;
use super::policy::{Delay, Policy};
use super::{Hedge, HedgeHandle, Race, Shared};
use crate::budget::RetryBudget;
use crate::classify::DefaultClassifier;
use crate::error::{ConfigError, check};
use crate::replay::CloneReplay;

/// Hedges requests: sends another copy when the first is slow. See the
/// [module docs](super).
///
/// Every service this layer makes, and every clone of it, shares one
/// latency histogram and one [`RetryBudget`].
pub struct HedgeLayer<C = DefaultClassifier, P = CloneReplay> {
    policy: Arc<Policy<C, P>>,
}

impl HedgeLayer {
    /// Starts building a hedge layer with the default settings: one hedge,
    /// sent at the 98th percentile of recent latencies (2 % extra load) but
    /// never sooner than 10 ms, drawn from a budget of its own (20 % of
    /// calls with a reserve of 10, as retries).
    pub fn builder() -> HedgeLayerBuilder {
        HedgeLayerBuilder {
            max_hedges: 1,
            delay: DelayChoice::Percentile {
                max_extra_load: 0.02,
                floor: Duration::from_millis(10),
            },
            budget: BudgetChoice::Own,
            name: Cow::Borrowed("hedge"),
            classifier: DefaultClassifier,
            replay: CloneReplay,
        }
    }
}

impl<C, P> HedgeLayer<C, P> {
    /// Hedges across `endpoints`: the first copy goes to the first one,
    /// hedge `n` to endpoint `n` (modulo their number). Each endpoint may
    /// sit behind its own circuit breaker; one that refuses a copy makes
    /// the next copy go out at once, to the next endpoint.
    ///
    /// Fails if `endpoints` is empty.
    pub fn endpoints<S: Clone>(
        &self,
        endpoints: impl IntoIterator<Item = S>,
    ) -> Result<Hedge<S, C, P>, ConfigError> {
        let targets: Vec<S> = endpoints.into_iter().collect();
        let Some(primary) = targets.first().cloned() else {
            return Err(ConfigError::new(
                "hedge.endpoints",
                0,
                "must hold at least one service",
            ));
        };
        Ok(Hedge::from_parts(
            primary,
            Arc::new(Shared {
                policy: Arc::clone(&self.policy),
                targets: targets.into_boxed_slice(),
            }),
        ))
    }

    /// The most copies a call sends besides the first.
    pub fn max_hedges(&self) -> u32 {
        self.policy.max_hedges
    }

    /// The budget hedges are drawn from, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.policy.budget.as_ref()
    }
}

impl<C: Send + Sync + 'static, P: Send + Sync + 'static> HedgeLayer<C, P> {
    /// A handle on the state every service of this layer shares.
    pub fn handle(&self) -> HedgeHandle {
        HedgeHandle::new(Arc::clone(&self.policy) as _)
    }
}

impl<S: Clone, C, P> Layer<S> for HedgeLayer<C, P> {
    type Service = Hedge<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        let shared = Arc::new(Shared {
            policy: Arc::clone(&self.policy),
            targets: Box::new([inner.clone()]),
        });
        Hedge::from_parts(inner, shared)
    }
}

impl<C, P> Clone for HedgeLayer<C, P> {
    fn clone(&self) -> Self {
        Self {
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<C, P> fmt::Debug for HedgeLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("policy", &self.policy)
            .finish()
    }
}

enum DelayChoice {
    Fixed(Duration),
    Percentile {
        max_extra_load: f64,
        floor: Duration,
    },
}

enum BudgetChoice {
    Own,
    Shared(RetryBudget),
    Unlimited,
}

/// Builds a [`HedgeLayer`]; settings are checked by [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use steadfast::hedge::HedgeLayer;
/// use steadfast::retry::RetryBudget;
///
/// let hedge = HedgeLayer::builder()
///     .max_hedges(2)
///     .latency_percentile(0.05, Duration::from_millis(20))
///     .budget(RetryBudget::builder().ratio(0.1).build()?)
///     .name("search")
///     .build()?;
/// assert_eq!(hedge.max_hedges(), 2);
///
/// let err = HedgeLayer::builder().delay(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "hedge.delay");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct HedgeLayerBuilder<C = DefaultClassifier, P = CloneReplay> {
    max_hedges: u32,
    delay: DelayChoice,
    budget: BudgetChoice,
    name: Cow<'static, str>,
    classifier: C,
    replay: P,
}

/// The most copies a hedged call may send besides the first.
const MAX_HEDGES: u32 = 10;

impl<C, P> HedgeLayerBuilder<C, P> {
    /// The most copies a call sends besides the first; from 1 to 10 (as
    /// Polly's `MaxHedgedAttempts`).
    pub fn max_hedges(mut self, max_hedges: u32) -> Self {
        self.max_hedges = max_hedges;
        self
    }

    /// Sends each hedge `delay` after the previous copy; greater than zero.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = DelayChoice::Fixed(delay);
        self
    }

    /// Derives the delay from observed latencies: hedge at the percentile
    /// `1 − max_extra_load` of recent calls (with `0.02`, the 98th), so that
    /// in steady state about `max_extra_load` of calls send a hedge; never
    /// sooner than `floor`.
    ///
    /// `max_extra_load` lies in `(0, 1]`; `floor` is greater than zero.
    /// Until about `2 / max_extra_load` calls have been seen, calls are not
    /// hedged on delay (a failure still sends the next copy at once).
    pub fn latency_percentile(mut self, max_extra_load: f64, floor: Duration) -> Self {
        self.delay = DelayChoice::Percentile {
            max_extra_load,
            floor,
        };
        self
    }

    /// Draws hedges from `budget`, which may be shared with retry layers so
    /// that retries and hedges together stay within one bound.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = BudgetChoice::Shared(budget);
        self
    }

    /// Hedges without a budget: only `max_hedges` bounds them.
    pub fn unlimited_budget(mut self) -> Self {
        self.budget = BudgetChoice::Unlimited;
        self
    }

    /// The name events of this layer carry (default `"hedge"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Judges copies with `classifier`: the first success or functional
    /// error wins; a transient failure or a rejection sends the next copy
    /// at once; a (non-transient) failure stops sending copies.
    pub fn classifier<C2>(self, classifier: C2) -> HedgeLayerBuilder<C2, P> {
        HedgeLayerBuilder {
            max_hedges: self.max_hedges,
            delay: self.delay,
            budget: self.budget,
            name: self.name,
            classifier,
            replay: self.replay,
        }
    }

    /// Copies requests with `replay` (see [`Replay`](crate::retry::Replay));
    /// a request that can't be copied is sent once.
    pub fn replay<P2>(self, replay: P2) -> HedgeLayerBuilder<C, P2> {
        HedgeLayerBuilder {
            max_hedges: self.max_hedges,
            delay: self.delay,
            budget: self.budget,
            name: self.name,
            classifier: self.classifier,
            replay,
        }
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<HedgeLayer<C, P>, ConfigError> {
        check::at_least("hedge.max_hedges", self.max_hedges, 1)?;
        if self.max_hedges > MAX_HEDGES {
            return Err(ConfigError::new(
                "hedge.max_hedges",
                self.max_hedges,
                format!(
                    "must be at most {MAX_HEDGES}: each call may have that many copies in flight"
                ),
            ));
        }
        let delay = match self.delay {
            DelayChoice::Fixed(delay) => Delay::Fixed(check::positive("hedge.delay", delay)?),
            DelayChoice::Percentile {
                max_extra_load,
                floor,
            } => {
                check::in_half_open("hedge.max_extra_load", max_extra_load, 0.0, 1.0)?;
                check::positive("hedge.floor", floor)?;
                Delay::Percentile(Box::new(Histogram::new(max_extra_load, floor)))
            }
        };
        let budget = match self.budget {
            BudgetChoice::Own => Some(RetryBudget::builder().build()?),
            BudgetChoice::Shared(budget) => Some(budget),
            BudgetChoice::Unlimited => None,
        };
        Ok(HedgeLayer {
            policy: Arc::new(Policy {
                max_hedges: self.max_hedges,
                delay,
                budget,
                classifier: self.classifier,
                replay: self.replay,
                kind: "hedge",
                name: self.name,
                hedges_sent: AtomicU64::new(0),
                decisions: crate::event::Decisions::new(),
            }),
        })
    }
}

impl<C, P> fmt::Debug for HedgeLayerBuilder<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayerBuilder")
            .field("max_hedges", &self.max_hedges)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Race`]; made by [`Race::builder`].
///
/// ```
/// use std::time::Duration;
/// use steadfast::hedge::Race;
/// use tower::service_fn;
///
/// let replica = || service_fn(|path: &'static str| async move { Ok::<_, steadfast::BoxError>(path.len()) });
/// let race = Race::builder()
///     .stagger(Duration::from_millis(5))
///     .name("lookup")
///     .build([replica(), replica(), replica()])?;
/// assert_eq!(race.alternatives().len(), 3);
///
/// let err = Race::builder().build(Vec::<()>::new()).unwrap_err(); // no alternative
/// assert_eq!(err.field(), "race.alternatives");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct RaceBuilder<C = DefaultClassifier, P = CloneReplay> {
    stagger: Duration,
    name: Cow<'static, str>,
    classifier: C,
    replay: P,
}

impl RaceBuilder {
    pub(super) fn new() -> Self {
        Self {
            stagger: Duration::ZERO,
            name: Cow::Borrowed("race"),
            classifier: DefaultClassifier,
            replay: CloneReplay,
        }
    }
}

impl<C, P> RaceBuilder<C, P> {
    /// Starts each alternative `stagger` after the previous one instead of
    /// all at once (default zero: all at once). A failure still starts the
    /// next one at once.
    pub fn stagger(mut self, stagger: Duration) -> Self {
        self.stagger = stagger;
        self
    }

    /// The name events of this race carry (default `"race"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Judges answers with `classifier`: the first success or functional
    /// error wins.
    pub fn classifier<C2>(self, classifier: C2) -> RaceBuilder<C2, P> {
        RaceBuilder {
            stagger: self.stagger,
            name: self.name,
            classifier,
            replay: self.replay,
        }
    }

    /// Copies requests with `replay`; a request that can't be copied goes
    /// to the first alternative only.
    pub fn replay<P2>(self, replay: P2) -> RaceBuilder<C, P2> {
        RaceBuilder {
            stagger: self.stagger,
            name: self.name,
            classifier: self.classifier,
            replay,
        }
    }

    /// Checks the settings and builds the race over `alternatives`, which
    /// must hold at least one service.
    pub fn build<S: Clone>(
        self,
        alternatives: impl IntoIterator<Item = S>,
    ) -> Result<Race<S, C, P>, ConfigError> {
        let targets: Vec<S> = alternatives.into_iter().collect();
        let Some(primary) = targets.first().cloned() else {
            return Err(ConfigError::new(
                "race.alternatives",
                0,
                "must hold at least one service",
            ));
        };
        let max_hedges = u32::try_from(targets.len() - 1).map_err(|_| {
            ConfigError::new("race.alternatives", targets.len(), "too many services")
        })?;
        let policy = Arc::new(Policy {
            max_hedges,
            delay: Delay::Fixed(self.stagger),
            budget: None,
            classifier: self.classifier,
            replay: self.replay,
            kind: "race",
            name: self.name,
            hedges_sent: AtomicU64::new(0),
            decisions: crate::event::Decisions::new(),
        });
        Ok(Race::from_hedge(Hedge::from_parts(
            primary,
            Arc::new(Shared {
                policy,
                targets: targets.into_boxed_slice(),
            }),
        )))
    }
}

impl<C, P> fmt::Debug for RaceBuilder<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaceBuilder")
            .field("stagger", &self.stagger)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
