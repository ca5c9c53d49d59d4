//! A view of one key's allowance in a keyed rate limiter.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::gcra::Limiter;
use super::report::Allowance;
use super::state::Tier;

/// A cloneable view of one key's allowance in a keyed rate limiter.
///
/// Got from [`RateLimitHandle::get`](super::RateLimitHandle::get) or
/// [`handles`](super::RateLimitHandle::handles) (or the same methods of
/// [`RateLimitLayer`](super::RateLimitLayer)). Reading it takes nothing
/// from the allowance. The handle keeps the key's limiter from being
/// dropped while it lives.
#[derive(Clone)]
pub struct AllowanceHandle {
    limiter: Arc<Limiter>,
    tier: Cow<'static, str>,
    burst: u64,
    window: Duration,
}

impl AllowanceHandle {
    pub(crate) fn new(limiter: Arc<Limiter>, tier: &Tier) -> Self {
        Self {
            limiter,
            tier: tier.name.clone(),
            burst: u64::from(tier.quota.burst_size()),
            window: tier.governor.burst_size_replenished_in(),
        }
    }

    /// The key, as events and snapshots name it (`(overflow)` for the
    /// limiter shared by keys that found no room).
    pub fn key(&self) -> Option<&str> {
        self.limiter.key()
    }

    /// The tier whose quota the key has.
    pub fn tier(&self) -> &str {
        &self.tier
    }

    /// Calls allowed at once (the tier's burst).
    pub fn limit(&self) -> u64 {
        self.burst
    }

    /// Calls the key could make at once now.
    pub fn remaining(&self) -> u64 {
        u64::from(self.limiter.level().remaining)
    }

    /// Calls the key has used of its burst, not yet given back.
    pub fn used(&self) -> u64 {
        self.burst.saturating_sub(self.remaining())
    }

    /// The key's allowance now, as a decision reports it to the
    /// `RateLimit` headers: `reset` is the time until it is whole again.
    pub fn allowance(&self) -> Allowance {
        let level = self.limiter.level();
        Allowance {
            tier: self.tier.clone(),
            limit: self.burst,
            remaining: u64::from(level.remaining),
            reset: level.full_in,
            window: self.window,
            quota: None,
        }
    }
}

impl fmt::Debug for AllowanceHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AllowanceHandle")
            .field("key", &self.key())
            .field("tier", &self.tier)
            .field("limit", &self.burst)
            .field("remaining", &self.remaining())
            .finish()
    }
}
