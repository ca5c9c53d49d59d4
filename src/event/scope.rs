//! The scope of watched calls: the policy, route, listeners and call
//! metrics an observe layer shares with the calls it watches.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use std::cell::RefCell;

use super::event::Listeners;

thread_local! {
    /// The route whose stack is being layered on this thread, if any.
    static LAYERING: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Layers with `f` on behalf of `route`: an observe layer applied inside
/// `f` that names no route of its own watches its calls as `route`'s (a
/// [`RouteTable`](crate::http::RouteTable) names each route's policy this
/// way, once per route, at layer time). Nested scopes restore the outer
/// one, even if `f` panics.
#[cfg(feature = "http")]
pub(crate) fn layering_route<T>(route: Arc<str>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<Arc<str>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let outer = self.0.take();
            let _ = LAYERING.try_with(|slot| *slot.borrow_mut() = outer);
        }
    }
    let outer = LAYERING.with(|slot| slot.borrow_mut().replace(route));
    let _restore = Restore(outer);
    f()
}

/// The route being layered on this thread, if any.
pub(crate) fn route_being_layered() -> Option<Arc<str>> {
    LAYERING.with(|slot| slot.borrow().clone())
}

/// What every service and future of one [`ObserveLayer`](crate::observe::ObserveLayer) shares:
/// the scope of the calls it watches.
pub(crate) struct Shared {
    pub(crate) policy: Cow<'static, str>,
    pub(crate) route: Cow<'static, str>,
    pub(crate) slow_call: Option<Duration>,
    pub(crate) listeners: Listeners,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<super::metrics::CallMetrics>,
    /// The decision series of the calls in this scope (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub(crate) decisions: super::metrics::Decisions,
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
        let Some(route) = route_being_layered() else {
            return Arc::clone(shared);
        };
        let route = Cow::Owned(route.to_string());
        Arc::new(Self {
            #[cfg(feature = "metrics")]
            metrics: shared
                .metrics
                .as_ref()
                .map(|_| super::metrics::CallMetrics::register(&shared.policy, &route)),
            #[cfg(feature = "metrics")]
            decisions: super::metrics::Decisions::new(),
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
