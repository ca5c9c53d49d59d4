//! Retry transient failures with jittered backoff, within a retry budget.
//!
//! [`RetryLayer`] sends a request again when its attempt is judged a
//! transient failure ([`Verdict::Transient`](crate::classify::Verdict)):
//!
//! - at most [`max_attempts`](RetryLayerBuilder::max_attempts) attempts,
//!   the first included;
//! - after a [`Backoff`] delay: constant, linear or exponential, capped,
//!   with no, full, equal or decorrelated [`Jitter`] drawn from a seedable
//!   [`RandomSource`];
//! - never sooner than a retry-after hint asks, and not at all when the hint
//!   is longer than the time left or than the maximum of
//!   [`honor_retry_after`](RetryLayerBuilder::honor_retry_after): the call then
//!   ends with [`RetryAfterTooLong`](crate::error::RetryAfterTooLong);
//! - never past the total [`Deadline`](crate::timeout::Deadline): no
//!   backoff sleep starts that would end after it;
//! - within a [`RetryBudget`] shared by every clone of the layer: when it is
//!   spent, the failure is returned as it is and an event says why;
//! - only with a second copy of the request, made by a [`Replay`]
//!   ([`CloneReplay`] for `Clone` requests): a request that can't be copied
//!   is sent once.
//!
//! Successes, functional errors, non-transient failures and rejections by
//! inner policies (an open circuit) are returned at once.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use steadfast::retry::RetryLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! // Fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let flaky = service_fn({
//!     let calls = calls.clone();
//!     move |x: u32| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if n < 2 { Err(steadfast::BoxError::from("connection reset")) } else { Ok(x * 2) }
//!         }
//!     }
//! });
//!
//! let svc = RetryLayer::builder().max_attempts(3).build()?.layer(flaky);
//! assert_eq!(svc.oneshot(21).await?, 42);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # Ok(())
//! # }
//! ```
//!
//! # Configured
//!
//! ```
//! use std::time::Duration;
//! use steadfast::classify::Verdict;
//! use steadfast::retry::{Backoff, Jitter, RetryBudget, RetryLayer};
//!
//! # fn main() -> Result<(), steadfast::ConfigError> {
//! // One budget for every route to the same host.
//! let budget = RetryBudget::builder().ratio(0.1).reserve(5).build()?;
//!
//! #[derive(Debug)]
//! enum Reply { Ok, Busy { retry_after: Duration }, NotFound }
//!
//! let layer = RetryLayer::builder()
//!     .max_attempts(4)
//!     .backoff(
//!         Backoff::exponential(Duration::from_millis(25))
//!             .cap(Duration::from_millis(250))
//!             .jitter(Jitter::Decorrelated),
//!     )
//!     .budget(budget.clone())
//!     .honor_retry_after(Duration::from_secs(5))
//!     .seed(42)
//!     .classifier(|outcome: Result<&Reply, &std::io::Error>| match outcome {
//!         Ok(Reply::Ok) => Verdict::Success,
//!         Ok(Reply::NotFound) => Verdict::FunctionalError,
//!         Ok(Reply::Busy { retry_after }) => Verdict::transient_after(*retry_after),
//!         Err(_) => Verdict::transient(),
//!     })
//!     .build()?;
//! assert_eq!(layer.max_attempts(), 4);
//!
//! // Bad settings are refused when built.
//! let err = RetryLayer::builder()
//!     .backoff(Backoff::linear(Duration::from_secs(1)).cap(Duration::from_millis(10)))
//!     .build()
//!     .unwrap_err();
//! assert_eq!(err.field(), "retry.backoff.cap");
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::classify::Classify;
use crate::error::BoxError;

mod backoff;
pub mod future;
mod layer;
mod policy;

pub use self::backoff::{Backoff, BackoffState, Jitter};
pub use self::layer::{RetryLayer, RetryLayerBuilder};
pub use crate::budget::{RetryBudget, RetryBudgetBuilder};
pub use crate::random::{RandomSource, SeededRandom};
pub use crate::replay::{CloneReplay, NoReplay, Replay};

use self::policy::Policy;

/// Retries transient failures of the inner service. Made by [`RetryLayer`].
///
/// Each call's future holds its own clone of the layer's classifier and
/// replay, as tower's `Retry` clones its policy, so both must be `Clone`.
/// They are cloned per call: the crate's own are copied in a word or
/// two; keep expensive state of your own behind an `Arc`.
pub struct Retry<S, C = crate::classify::DefaultClassifier, P = CloneReplay> {
    inner: S,
    policy: Arc<Policy<C, P>>,
}

impl<S, C, P> Retry<S, C, P> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &RetryLayer<C, P>) -> Self
    where
        RetryLayer<C, P>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S, C, P> Retry<S, C, P> {
    fn from_parts(inner: S, policy: Arc<Policy<C, P>>) -> Self {
        Self { inner, policy }
    }

    /// The budget retries are drawn from, if any.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.policy.settings.budget.as_ref()
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C, P> Clone for Retry<S, C, P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<S: fmt::Debug, C, P> fmt::Debug for Retry<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<S, Req, C, P> Service<Req> for Retry<S, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error> + Clone,
    P: Replay<Req> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = future::ResponseFuture<S, Req, C, P>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    // Always inlined: out of line, the call returns its 64-byte future
    // through memory and the caller copies it into its own state with
    // wide loads of the narrow stores just made (36 instructions more a
    // call over the suite's inner service, and about 6 ns). A plain
    // `#[inline]` left two of the suite's three copies of its loop
    // calling out of line.
    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        let policy = &*self.policy;
        let facts = policy.classifier.facts(&request);
        if let Some(budget) = &policy.budget {
            budget.deposit_once();
        }
        let next = if policy.max_attempts > 1 {
            policy.replay.replay(&request)
        } else {
            None
        };
        // The ready service sends this attempt; a clone, made ready when
        // needed, sends the later ones.
        // A `match`, not `Option::map`: through a closure, the clone (of
        // a breaker's lane, say) was left out of line.
        let again = match next {
            Some(request) => Some((self.inner.clone(), request)),
            None => None,
        };
        let future = match &policy.budget {
            Some(budget) => budget.calling(
                #[inline(always)]
                || self.inner.call(request),
            ),
            None => self.inner.call(request),
        };
        future::ResponseFuture::new(future::Parts {
            future,
            classifier: policy.classifier.clone(),
            replay: policy.replay.clone(),
            settings: policy.settings.to_ref(),
            again,
            facts,
        })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(feature = "metrics")]
    use std::time::Duration;

    #[cfg(feature = "metrics")]
    use super::policy::Settings;
    use super::*;
    #[cfg(feature = "metrics")]
    use crate::intern::Interner;

    #[cfg(feature = "metrics")]
    fn settings(name: &'static str) -> Settings {
        Settings {
            max_attempts: 2,
            backoff: Backoff::constant(Duration::from_millis(10)).jitter(Jitter::None),
            budget: None,
            max_retry_after: Duration::from_secs(60),
            honor_retry_after: true,
            random: None,
            name: name.into(),
            decisions: crate::event::Decisions::new(),
        }
    }

    fn layer(builder: RetryLayerBuilder) -> RetryLayer {
        builder.build().expect("valid settings")
    }

    #[test]
    fn settings_without_state_of_their_own_are_interned_once() {
        let named = || {
            RetryLayer::builder()
                .unlimited_budget()
                .name("interned_retry")
        };
        let (a, b) = (layer(named()), layer(named()));
        assert!(a.policy.settings.is_static());
        assert!(std::ptr::eq(&*a.policy.settings, &*b.policy.settings));
        // Other settings, other entry.
        let other = layer(named().max_attempts(5));
        assert!(other.policy.settings.is_static());
        assert!(!std::ptr::eq(&*a.policy.settings, &*other.policy.settings));
        assert_eq!((a.max_attempts(), other.max_attempts()), (3, 5));
        // A budget or a generator is state of the layer's own: counted.
        let budgeted = layer(RetryLayer::builder().name("interned_retry"));
        assert!(!budgeted.policy.settings.is_static());
        let seeded = layer(named().seed(7));
        assert!(!seeded.policy.settings.is_static());
    }

    /// Settings that found the table full still schedule, stop and count
    /// their retries under their own name, in their own series.
    #[cfg(feature = "metrics")]
    #[tokio::test(start_paused = true)]
    async fn settings_past_the_cap_count_their_retries_and_stops() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        use tower::ServiceExt;

        let table = Interner::new(1);
        assert!(Settings::share_in(&table, settings("first")).is_static());
        let late = Settings::share_in(&table, settings("late_retry"));
        assert!(!late.is_static());
        let policy = Arc::new(Policy {
            classifier: crate::classify::DefaultClassifier,
            replay: CloneReplay,
            max_attempts: late.max_attempts,
            budget: None,
            settings: late,
        });

        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let _guard = metrics::set_default_local_recorder(&recorder);
        let failing = tower::service_fn(|_: u32| async { Err::<u32, BoxError>("reset".into()) });
        let service = Retry::from_parts(failing, policy);
        service.clone().oneshot(1).await.unwrap_err();
        service.oneshot(2).await.unwrap_err();
        let mut counted = crate::event::metrics::recorded(&snapshotter);
        counted.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        assert_eq!(
            counted,
            [
                (
                    crate::event::metrics::RETRIES_STOPPED.to_owned(),
                    "policy=,route=,name=late_retry,reason=attempts_exhausted".to_owned(),
                    DebugValue::Counter(2)
                ),
                (
                    crate::event::metrics::RETRIES.to_owned(),
                    "policy=,route=,name=late_retry,verdict=transient".to_owned(),
                    DebugValue::Counter(2)
                ),
            ]
        );
    }
}
