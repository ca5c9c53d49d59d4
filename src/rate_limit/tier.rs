//! A tier and the decisions a limiter reports for it: below both the
//! in-process limits and the shared store.

use std::borrow::Cow;
use std::time::Duration;

use super::gcra::Limiter;
use super::quota::Quota;

/// A limiter for `quota` on tokio's clock: one key's GCRA state, a single
/// atomic word.
pub(crate) fn new_limiter(quota: governor::Quota) -> Limiter {
    Limiter::new(quota)
}

pub(crate) struct Tier {
    pub(crate) name: Cow<'static, str>,
    pub(crate) quota: Quota,
    pub(crate) governor: governor::Quota,
    /// The series of its refusals and delays.
    pub(crate) decisions: crate::event::Decisions,
}

impl Tier {
    /// Reports a delayed call, counted in the tier's series.
    #[cold]
    pub(crate) fn emit_throttled(&self, delay: Duration) {
        crate::event::emit_counted(
            &self.decisions,
            &crate::event::Listeners::none(),
            &crate::event::Event::Throttled {
                tier: &self.name,
                delay,
            },
        );
    }

    /// Reports a refused call, counted in the tier's series.
    #[cold]
    pub(crate) fn emit_rejected(&self, retry_after: Duration) {
        crate::event::emit_counted(
            &self.decisions,
            &crate::event::Listeners::none(),
            &crate::event::Event::Rejected {
                rejection: crate::event::Rejection::RateLimited,
                name: &self.name,
                key: None,
                retry_after: Some(retry_after),
            },
        );
    }
}

/// Reports a delayed call.
#[cold]
pub(crate) fn emit_throttled(tier: &str, delay: Duration) {
    crate::event::emit(&crate::event::Event::Throttled { tier, delay });
}

/// Reports a refused call.
#[cold]
pub(crate) fn emit_rejected(tier: &str, retry_after: Duration) {
    crate::event::emit(&crate::event::Event::Rejected {
        rejection: crate::event::Rejection::RateLimited,
        name: tier,
        key: None,
        retry_after: Some(retry_after),
    });
}
