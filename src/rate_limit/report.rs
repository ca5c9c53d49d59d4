//! What a rate limiter decided for the current call, for a layer outside it
//! that tells the client: the `RateLimit` response headers.
//!
//! A layer opens a [`AllowanceSlot`] around the call
//! ([`sync_scope`](AllowanceSlot::sync_scope) for `call`,
//! [`scope`](AllowanceSlot::scope) for its future); the first rate limiter
//! inside that decides writes its [`Allowance`] there. Without a slot, a
//! limiter writes nothing; while no slot exists in the whole process, it
//! pays one relaxed load of a shared counter instead of a task-local read.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::task::futures::TaskLocalFuture;

tokio::task_local! {
    static CURRENT: Arc<AllowanceSlot>;
}

/// Slots alive in the process: while there are none, no call can have one
/// open, and limiters skip the task-local lookup.
static SLOTS: AtomicUsize = AtomicUsize::new(0);

/// A limiter's allowance for one key, as a decision left it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Allowance {
    /// The tier.
    pub tier: Cow<'static, str>,
    /// Calls allowed at once (the burst).
    pub limit: u64,
    /// Calls still allowed at once.
    pub remaining: u64,
    /// Until the allowance is full again (or, refused, until a call would
    /// pass).
    pub reset: Duration,
    /// The time the tier takes to refill its whole burst.
    pub window: Duration,
    /// The period quota, when the tier has one.
    pub quota: Option<QuotaAllowance>,
}

/// What is left of a period quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QuotaAllowance {
    /// Calls allowed in the period.
    pub limit: u64,
    /// Calls left in the period.
    pub remaining: u64,
    /// Until the period ends.
    pub reset: Duration,
}

/// Where the limiter inside writes its [`Allowance`] for one call.
#[derive(Debug)]
pub struct AllowanceSlot(OnceLock<Allowance>);

impl Default for AllowanceSlot {
    fn default() -> Self {
        SLOTS.fetch_add(1, Ordering::Relaxed);
        Self(OnceLock::new())
    }
}

impl Drop for AllowanceSlot {
    fn drop(&mut self) {
        SLOTS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AllowanceSlot {
    /// An empty slot.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The allowance written, if a limiter decided.
    pub fn get(&self) -> Option<&Allowance> {
        self.0.get()
    }

    /// Runs `f` (a service's `call`) with this slot open.
    pub fn sync_scope<R>(self: &Arc<Self>, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(Arc::clone(self), f)
    }

    /// Polls `future` with this slot open.
    pub fn scope<F: Future>(self: Arc<Self>, future: F) -> TaskLocalFuture<Arc<Self>, F> {
        CURRENT.scope(self, future)
    }
}

/// Whether any slot exists, so that one may be open for this call. A slot
/// opened on this task was made (and counted) on this thread, or before
/// the task moved here, so the count cannot miss it.
#[inline]
pub(crate) fn listening() -> bool {
    SLOTS.load(Ordering::Relaxed) != 0
}

/// Writes the allowance `make` gives, if a slot is open.
#[inline]
pub(crate) fn report(make: impl FnOnce() -> Allowance) {
    if !listening() {
        return;
    }
    let _ = CURRENT.try_with(|slot| {
        if slot.0.get().is_none() {
            let _ = slot.0.set(make());
        }
    });
}
