//! The scope of watched calls: the policy, route, listeners and call
//! metrics an observe layer shares with the calls it watches.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use super::context::Context;
use super::event::Listeners;
use crate::classify::Verdict;

/// What every service and future of one [`ObserveLayer`](crate::observe::ObserveLayer) shares:
/// the scope of the calls it watches.
pub(crate) struct Shared {
    pub(crate) policy: Cow<'static, str>,
    pub(crate) route: Cow<'static, str>,
    pub(crate) slow_call: Option<Duration>,
    pub(crate) listeners: Listeners,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<super::metrics::CallMetrics>,
}

impl Shared {
    /// Whether attempts are timed (for the attempt-duration histogram).
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn times_attempts(&self) -> bool {
        #[cfg(feature = "metrics")]
        {
            self.metrics.is_some()
        }
        #[cfg(not(feature = "metrics"))]
        {
            false
        }
    }

    /// The shared state of a service this layer makes now: its own, or,
    /// if it names no route and a route is being layered, a copy named
    /// after that route, with its own call metrics.
    pub(crate) fn for_service(shared: &Arc<Self>) -> Arc<Self> {
        if !shared.route.is_empty() {
            return Arc::clone(shared);
        }
        let Some(route) = super::context::route_being_layered() else {
            return Arc::clone(shared);
        };
        let route = Cow::Owned(route.to_string());
        Arc::new(Self {
            #[cfg(feature = "metrics")]
            metrics: shared
                .metrics
                .as_ref()
                .map(|_| super::metrics::CallMetrics::register(&shared.policy, &route)),
            policy: shared.policy.clone(),
            route,
            slow_call: shared.slow_call,
            listeners: shared.listeners.clone(),
        })
    }

    /// Whether calls must be timed and judged whatever the subscriber.
    #[inline]
    pub(crate) fn watches(&self) -> bool {
        self.slow_call.is_some() || !self.listeners.is_empty() || self.times_attempts()
    }
}

/// Records one attempt's metrics; the context times attempts.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn record_attempt(context: &Context, verdict: Verdict) {
    #[cfg(feature = "metrics")]
    if let Some(metrics) = &context.shared.metrics {
        let now = tokio::time::Instant::now();
        let elapsed = context
            .attempt_start
            .replace(Some(now))
            .map_or(Duration::ZERO, |start| now.saturating_duration_since(start));
        metrics.attempt(verdict, elapsed);
    }
}
