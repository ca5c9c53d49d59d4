use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::Retry;
use super::backoff::Backoff;
use super::policy::Policy;
use crate::budget::RetryBudget;
use crate::classify::DefaultClassifier;
use crate::error::{ConfigError, check};
use crate::random::{RandomSource, SeededRandom};
use crate::replay::CloneReplay;

/// Retries transient failures. See the [module docs](super).
///
/// Every service this layer makes, and every clone of it, shares one
/// policy and one [`RetryBudget`].
pub struct RetryLayer<C = DefaultClassifier, P = CloneReplay> {
    pub(super) policy: Arc<Policy<C, P>>,
}

impl RetryLayer {
    /// Starts building a retry layer with the default settings:
    /// 3 attempts, [`Backoff::default`] (exponential from 100 ms, capped at
    /// 1 s, full jitter), a budget of 20 % of calls with a reserve of 10
    /// retries, retry-after hints honoured up to 60 s.
    pub fn builder() -> RetryLayerBuilder {
        RetryLayerBuilder {
            settings: Settings {
                max_attempts: 3,
                backoff: Backoff::default(),
                budget: BudgetChoice::Own,
                max_retry_after: Duration::from_secs(60),
                honor_retry_after: true,
                random: None,
                name: Cow::Borrowed("retry"),
            },
            classifier: DefaultClassifier,
            replay: CloneReplay,
        }
    }
}

impl<C, P> RetryLayer<C, P> {
    /// The budget this layer draws retries from, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.policy.settings.budget.as_ref()
    }

    /// The most attempts a call makes, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.policy.settings.max_attempts
    }

    /// The backoff between attempts.
    pub fn backoff(&self) -> &Backoff {
        &self.policy.settings.backoff
    }
}

impl<C, P> Clone for RetryLayer<C, P> {
    fn clone(&self) -> Self {
        Self {
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<C, P> fmt::Debug for RetryLayer<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, C, P> Layer<S> for RetryLayer<C, P> {
    type Service = Retry<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::from_parts(inner, Arc::clone(&self.policy))
    }
}

enum BudgetChoice {
    Own,
    Shared(RetryBudget),
    Unlimited,
}

/// Builds a [`RetryLayer`]; settings are checked by [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use steadfast::retry::{Backoff, Jitter, RetryBudget, RetryLayer};
///
/// let retry = RetryLayer::builder()
///     .max_attempts(4)
///     .backoff(Backoff::exponential(Duration::from_millis(50)).cap(Duration::from_secs(1)).jitter(Jitter::Equal))
///     .budget(RetryBudget::builder().ratio(0.1).build()?)
///     .build()?;
/// assert_eq!(retry.max_attempts(), 4);
///
/// let err = RetryLayer::builder().honor_retry_after(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.field(), "retry.honor_retry_after");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct RetryLayerBuilder<C = DefaultClassifier, P = CloneReplay> {
    settings: Settings,
    classifier: C,
    replay: P,
}

/// The settings that don't change the builder's type.
struct Settings {
    max_attempts: u32,
    backoff: Backoff,
    budget: BudgetChoice,
    max_retry_after: Duration,
    honor_retry_after: bool,
    random: Option<Arc<dyn RandomSource>>,
    name: Cow<'static, str>,
}

impl<C, P> RetryLayerBuilder<C, P> {
    /// The most attempts a call makes, the first included; at least 1.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.settings.max_attempts = max_attempts;
        self
    }

    /// The wait before each retry.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.settings.backoff = backoff;
        self
    }

    /// Draws retries from `budget`, which may be shared with other layers.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.settings.budget = BudgetChoice::Shared(budget);
        self
    }

    /// Retries without a budget: only `max_attempts` bounds them. Under an
    /// outage every caller then multiplies its load by `max_attempts`.
    pub fn unlimited_budget(mut self) -> Self {
        self.settings.budget = BudgetChoice::Unlimited;
        self
    }

    /// Honours retry-after hints up to `max` (the default, with 60 s): a
    /// hint in a verdict is the least wait before the next attempt, and a
    /// hint longer than `max` ends the call with
    /// [`RetryAfterTooLong`](crate::error::RetryAfterTooLong). `max` must
    /// be greater than zero. The breaker's
    /// [`honor_retry_after`](crate::circuit_breaker::CircuitBreakerBuilder::honor_retry_after)
    /// reads the same.
    pub fn honor_retry_after(mut self, max: Duration) -> Self {
        self.settings.honor_retry_after = true;
        self.settings.max_retry_after = max;
        self
    }

    /// Ignores retry-after hints: the backoff alone sets the wait.
    pub fn ignore_retry_after(mut self) -> Self {
        self.settings.honor_retry_after = false;
        self
    }

    /// The longest hint honoured, as set so far.
    #[cfg(feature = "serde")]
    pub(crate) fn max_retry_after_set(&self) -> Duration {
        self.settings.max_retry_after
    }

    /// Jitter draws from `random` (any `Fn() -> u64 + Send + Sync`, or a
    /// [`SeededRandom`]).
    pub fn random(mut self, random: impl RandomSource) -> Self {
        self.settings.random = Some(Arc::new(random));
        self
    }

    /// Jitter draws from a [`SeededRandom`] started at `seed`, for
    /// reproducible delays.
    pub fn seed(self, seed: u64) -> Self {
        self.random(SeededRandom::new(seed))
    }

    /// The name events of this layer carry (default `"retry"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// The backoff set so far.
    pub(crate) fn backoff_set(&self) -> Backoff {
        self.settings.backoff
    }

    /// Judges attempts with `classifier`: only its transient failures are
    /// retried. It is cloned into each call's future (as is the replay):
    /// keep expensive state behind an `Arc`.
    pub fn classifier<C2>(self, classifier: C2) -> RetryLayerBuilder<C2, P> {
        RetryLayerBuilder {
            settings: self.settings,
            classifier,
            replay: self.replay,
        }
    }

    /// Copies requests for another attempt with `replay` (see
    /// [`Replay`](super::Replay)). It is cloned into each call's future:
    /// keep expensive state behind an `Arc`.
    pub fn replay<P2>(self, replay: P2) -> RetryLayerBuilder<C, P2> {
        RetryLayerBuilder {
            settings: self.settings,
            classifier: self.classifier,
            replay,
        }
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<RetryLayer<C, P>, ConfigError> {
        let Self {
            settings: s,
            classifier,
            replay,
        } = self;
        check::at_least("retry.max_attempts", s.max_attempts, 1)?;
        s.backoff.validate()?;
        check::positive("retry.honor_retry_after", s.max_retry_after)?;
        let budget = match s.budget {
            BudgetChoice::Own => Some(RetryBudget::builder().build()?),
            BudgetChoice::Shared(budget) => Some(budget),
            BudgetChoice::Unlimited => None,
        };
        let settings = super::policy::Settings {
            max_attempts: s.max_attempts,
            backoff: s.backoff,
            budget,
            max_retry_after: s.max_retry_after,
            honor_retry_after: s.honor_retry_after,
            random: s.random,
            name: s.name,
            decisions: crate::event::Decisions::new(),
        };
        Ok(RetryLayer {
            policy: Arc::new(Policy {
                classifier,
                replay,
                max_attempts: settings.max_attempts,
                budget: settings.budget.clone(),
                settings: settings.share(),
            }),
        })
    }
}

impl<C, P> fmt::Debug for RetryLayerBuilder<C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("RetryLayerBuilder")
            .field("max_attempts", &s.max_attempts)
            .field("backoff", &s.backoff)
            .field("max_retry_after", &s.max_retry_after)
            .field("honor_retry_after", &s.honor_retry_after)
            .field("name", &s.name)
            .finish_non_exhaustive()
    }
}
