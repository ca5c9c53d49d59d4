use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::state::Limiter;

/// A cloneable view of one adaptive limiter: its limit, the calls in
/// flight and its latency estimates.
///
/// Got from [`AdaptiveLayer::handle`](super::AdaptiveLayer::handle),
/// [`Adaptive::handle`](super::Adaptive::handle) or a keyed handle.
#[derive(Clone)]
pub struct AdaptiveHandle {
    limiter: Arc<Limiter>,
}

impl AdaptiveHandle {
    pub(crate) fn new(limiter: Arc<Limiter>) -> Self {
        Self { limiter }
    }

    /// The current limit. While the no-load round-trip time is measured,
    /// the limit that resumes after it; see [`admitted`](Self::admitted).
    pub fn limit(&self) -> usize {
        self.limiter.limit()
    }

    /// The calls admitted at once now: the limit, or the minimum while the
    /// no-load round-trip time is measured.
    pub fn admitted(&self) -> usize {
        self.limiter.permits()
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.limiter.in_flight()
    }

    /// Places free now.
    pub fn available(&self) -> usize {
        self.limiter
            .permits()
            .saturating_sub(self.limiter.in_flight())
    }

    /// The estimated no-load round-trip time, once measured.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.limiter.min_rtt()
    }

    /// The mean round-trip time of the last window, once a call answered.
    pub fn rtt(&self) -> Option<Duration> {
        self.limiter.last_rtt()
    }

    /// Whether the no-load round-trip time is being measured now.
    pub fn probing(&self) -> bool {
        self.limiter.probing()
    }

    /// The lowest limit.
    pub fn min_limit(&self) -> usize {
        self.limiter.min()
    }

    /// The highest limit.
    pub fn max_limit(&self) -> usize {
        self.limiter.max()
    }

    /// `gradient` or `aimd`.
    pub fn algorithm(&self) -> &'static str {
        self.limiter.algorithm()
    }

    /// The probability with which the throttle refuses a call now, if the
    /// limiter throttles.
    pub fn reject_probability(&self) -> Option<f64> {
        self.limiter.throttle_probability()
    }

    /// The requests and accepts the throttle counts now, if the limiter
    /// throttles.
    pub fn throttle_counts(&self) -> Option<(u64, u64)> {
        self.limiter.throttle_counts()
    }

    /// The limiter's name, as used in events.
    pub fn name(&self) -> &str {
        self.limiter.name()
    }
}

impl fmt::Debug for AdaptiveHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AdaptiveHandle")
            .field(&self.limiter)
            .finish()
    }
}
