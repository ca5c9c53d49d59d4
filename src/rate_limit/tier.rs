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

/// The limiter of one key of a keyed limiter (`None`: the one shared by
/// the keys that found no room), naming its key for events: the key is
/// formatted once, here, never per event.
pub(crate) fn keyed_limiter<K: std::fmt::Debug>(
    quota: governor::Quota,
    key: Option<&K>,
) -> Limiter {
    let name = key.map_or_else(|| crate::keyed::OVERFLOW_KEY.into(), crate::keyed::key_name);
    Limiter::keyed(quota, name)
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
    pub(crate) fn emit_throttled(&self, delay: Duration, key: Option<&str>) {
        crate::event::emit_counted(
            &self.decisions,
            &crate::event::Listeners::none(),
            &crate::event::Event::Throttled {
                tier: &self.name,
                key,
                delay,
            },
        );
    }

    /// Reports a refused call, counted in the tier's series.
    #[cold]
    pub(crate) fn emit_rejected(&self, retry_after: Duration, key: Option<&str>) {
        crate::event::emit_counted(
            &self.decisions,
            &crate::event::Listeners::none(),
            &crate::event::Event::Rejected {
                rejection: crate::event::Rejection::RateLimited,
                name: &self.name,
                key,
                retry_after: Some(retry_after),
            },
        );
    }
}

/// Reports a delayed call of `key` (of a keyed limiter).
#[cold]
pub(crate) fn emit_throttled(tier: &str, key: Option<&str>, delay: Duration) {
    crate::event::emit(&crate::event::Event::Throttled { tier, key, delay });
}

/// Reports a refused call of `key` (of a keyed limiter).
#[cold]
pub(crate) fn emit_rejected(tier: &str, key: Option<&str>, retry_after: Duration) {
    crate::event::emit(&crate::event::Event::Rejected {
        rejection: crate::event::Rejection::RateLimited,
        name: tier,
        key,
        retry_after: Some(retry_after),
    });
}
