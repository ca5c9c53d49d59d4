//! The shared state of one bulkhead: permits counted with atomics, waiters
//! woken through a [`Notify`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use crate::stripe::{Spread, Striped};

/// Which waiter a returned permit goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum QueueOrder {
    /// The call that has waited longest (first in, first out), as
    /// Resilience4j's fair semaphore and .NET's `OldestFirst` do.
    #[default]
    OldestFirst,
    /// The call that arrived last (last in, first out): under overload the
    /// freshest callers, the likeliest still to care, are served first.
    NewestFirst,
}

/// One bulkhead's permits and waiters, shared by every service, clone and
/// handle made from the same layer.
///
/// Free permits are atomic counters rather than a
/// [`tokio::sync::Semaphore`], one per stripe (so that a thread takes and
/// returns its permits on its own core's cache line) and a pool: taking one
/// is a compare-and-swap on the caller's stripe, returning one an addition,
/// and neither takes a lock. A call is refused only when the pool and every
/// stripe are empty. A caller that may wait registers with `notify`
/// before it retries. A permit returned while any caller waits is not
/// freed but handed over: it stays counted in flight, `handoff` counts it,
/// and one registered waiter (the oldest, or the newest, as `order` says)
/// is woken to claim it, so a newcomer never takes it first and no wake-up
/// is lost (see [`Permit`]'s `Drop`). A handed-over permit that no waiter is
/// left to claim is freed by the last waiter to leave.
pub(crate) struct Shared {
    /// Free permits kept by each stripe: a thread takes and returns its
    /// permits here, on a line of its own core.
    stripes: Striped<AtomicUsize>,
    /// Free permits no stripe keeps yet. In flight = `max_concurrent`
    /// minus these minus the stripes' (a handed-over permit counts in
    /// flight).
    pool: AtomicUsize,
    waiting: AtomicUsize,
    /// Permits handed to woken waiters and not yet claimed.
    handoff: AtomicUsize,
    max_concurrent: usize,
    max_wait: Duration,
    queue: usize,
    order: QueueOrder,
    pub(crate) notify: Arc<Notify>,
    name: Cow<'static, str>,
    /// The key, for a keyed bulkhead's state.
    key: Option<Box<str>>,
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
    /// The series of its refusals.
    decisions: crate::event::Decisions,
}

impl Shared {
    pub(crate) fn new(
        max_concurrent: usize,
        max_wait: Duration,
        queue: usize,
        order: QueueOrder,
        name: Cow<'static, str>,
    ) -> Self {
        Self {
            stripes: Striped::new(|| AtomicUsize::new(0)),
            pool: AtomicUsize::new(max_concurrent),
            waiting: AtomicUsize::new(0),
            handoff: AtomicUsize::new(0),
            max_concurrent,
            max_wait,
            queue,
            order,
            notify: Arc::new(Notify::new()),
            #[cfg(feature = "metrics")]
            gauge: crate::event::metrics::bulkhead_in_flight(&name),
            name,
            key: None,
            decisions: crate::event::Decisions::new(),
        }
    }

    /// The same state, for a key of a keyed bulkhead.
    pub(crate) fn with_key(mut self, key: Box<str>) -> Self {
        self.key = Some(key);
        self
    }

    /// The key, for a keyed bulkhead's state.
    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }
    /// Takes a permit for an empty stripe: a batch from the pool (one
    /// used now, the rest left on the caller's stripe), else one from any
    /// stripe. Refuses only when the pool and every stripe were empty.
    #[cold]
    #[inline(never)]
    fn refill(&self) -> bool {
        let batch = (self.max_concurrent / (2 * self.stripes.iter().count())).max(1);
        if let Ok(pool) = self
            .pool
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                n.checked_sub(n.min(batch)).filter(|_| n > 0)
            })
        {
            let rest = pool.min(batch) - 1;
            if rest > 0 {
                self.stripes.local().fetch_add(rest, Ordering::SeqCst);
            }
            return true;
        }
        self.stripes.iter().any(take_one)
    }

    /// Wakes the next waiter, in the bulkhead's order.
    fn wake_one(&self) {
        match self.order {
            QueueOrder::OldestFirst => self.notify.notify_one(),
            QueueOrder::NewestFirst => self.notify.notify_last(),
        }
    }

    /// Frees the handed-over permits when no waiter is left to claim them,
    /// waking any waiter that arrived meanwhile to take them the usual way.
    fn reclaim_handoff(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return;
        }
        let unclaimed = self.handoff.swap(0, Ordering::SeqCst);
        if unclaimed == 0 {
            return;
        }
        self.pool.fetch_add(unclaimed, Ordering::SeqCst);
        #[cfg(feature = "metrics")]
        self.gauge.decrement(unclaimed as f64);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            for _ in 0..unclaimed {
                self.wake_one();
            }
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        let free = self
            .stripes
            .iter()
            .fold(self.pool.load(Ordering::SeqCst), |sum, n| {
                sum.saturating_add(n.load(Ordering::SeqCst))
            });
        self.max_concurrent.saturating_sub(free)
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub(crate) fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }

    pub(crate) fn max_wait(&self) -> Duration {
        self.max_wait
    }

    pub(crate) fn queue(&self) -> usize {
        self.queue
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.name)
            .field("in_flight", &self.in_flight())
            .field("waiting", &self.waiting())
            .field("max_concurrent", &self.max_concurrent)
            .field("max_wait", &self.max_wait)
            .finish()
    }
}

/// Taking permits and places in the queue. Each permit and waiter holds a
/// reference to the bulkhead on the calling thread's lane (see
/// [`Spread`]), so that permits taken on two cores never write one
/// reference count.
impl Spread<Shared> {
    /// Takes a permit if one is free: from the caller's stripe, else a
    /// batch from the pool, else one from another stripe.
    #[inline(always)]
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        // SeqCst pairs with the waiter count: see `Permit::drop`.
        let taken = take_one(self.stripes.local()) || self.refill();
        if !taken {
            return None;
        }
        #[cfg(feature = "metrics")]
        self.gauge.increment(1.0);
        Some(Permit {
            shared: self.clone(),
        })
    }

    /// Takes a permit handed over to a woken waiter, if one is left.
    pub(crate) fn claim_handoff(&self) -> Option<Permit> {
        self.handoff
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()
            .map(|_| Permit {
                shared: self.clone(),
            })
    }

    /// Takes a place among the waiters, if waiting is allowed and the queue
    /// has room.
    pub(crate) fn enter_queue(&self) -> Option<WaitGuard> {
        if self.max_wait.is_zero() {
            return None;
        }
        let mut current = self.waiting.load(Ordering::Relaxed);
        loop {
            if current >= self.queue {
                return None;
            }
            match self.waiting.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(WaitGuard {
                        shared: self.clone(),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }
}

/// A permit to have one call in flight; returned when dropped.
pub(crate) struct Permit {
    shared: Spread<Shared>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let shared = &self.shared;
        // A waiter raises `waiting` before it registers and retries. Both
        // sides use SeqCst, so either this load sees the waiter (and hands
        // the permit over: it wakes a waiter, or leaves a notification the
        // waiter will consume, then claim the permit), or the waiter's retry
        // sees the permit freed below.
        if shared.waiting.load(Ordering::SeqCst) > 0 {
            shared.handoff.fetch_add(1, Ordering::SeqCst);
            shared.wake_one();
            // The last waiter may have left since the load above, before
            // the permit was handed over: then no one would claim it.
            shared.reclaim_handoff();
            return;
        }
        shared.stripes.local().fetch_add(1, Ordering::SeqCst);
        #[cfg(feature = "metrics")]
        shared.gauge.decrement(1.0);
    }
}

/// Takes one free permit from a stripe, if it keeps one.
#[inline]
fn take_one(stripe: &AtomicUsize) -> bool {
    let mut current = stripe.load(Ordering::Relaxed);
    while current > 0 {
        match stripe.compare_exchange_weak(
            current,
            current - 1,
            Ordering::SeqCst,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(actual) => current = actual,
        }
    }
    false
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("bulkhead", &self.shared.name)
            .finish()
    }
}

/// A place among a bulkhead's waiters; left when dropped.
pub(crate) struct WaitGuard {
    pub(crate) shared: Spread<Shared>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if self.shared.waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last waiter left: a permit handed to a waiter that gave up
            // is freed.
            self.shared.reclaim_handoff();
        }
    }
}

impl fmt::Debug for WaitGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGuard")
            .field("bulkhead", &self.shared.name)
            .finish()
    }
}

/// Reports a refused call.
#[cold]
pub(crate) fn emit_rejection(shared: &Shared) {
    crate::event::emit_counted(
        &shared.decisions,
        &crate::event::Listeners::none(),
        &crate::event::Event::Rejected {
            rejection: crate::event::Rejection::BulkheadFull,
            name: shared.name(),
            key: shared.key(),
            retry_after: None,
        },
    );
}

/// Reports a call that got its permit after waiting.
#[cold]
pub(crate) fn emit_admitted_after_wait(shared: &Shared, waited: Duration) {
    crate::event::emit(&crate::event::Event::AdmittedAfterWait {
        name: shared.name(),
        key: shared.key(),
        waited,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shared(max: usize) -> Spread<Shared> {
        Spread::new(Shared::new(
            max,
            Duration::ZERO,
            0,
            QueueOrder::OldestFirst,
            Cow::Borrowed("model"),
        ))
    }

    fn free(s: &Shared) -> usize {
        s.pool.load(Ordering::SeqCst)
            + s.stripes
                .iter()
                .map(|n| n.load(Ordering::SeqCst))
                .sum::<usize>()
    }

    proptest! {
        /// Permits are conserved (held + pool + stripes = max) and a call
        /// is refused exactly when all are held, whichever threads take
        /// and return them.
        #[test]
        fn permits_are_conserved_and_refused_only_when_all_are_held(
            max in 1usize..12,
            ops in proptest::collection::vec((any::<bool>(), 0usize..3, any::<prop::sample::Index>()), 1..200),
        ) {
            let s = shared(max);
            let mut held: Vec<Permit> = Vec::new();
            for (acquire, thread, which) in ops {
                let run = |f: &mut (dyn FnMut() + Send)| {
                    if thread == 0 {
                        f();
                    } else {
                        std::thread::scope(|scope| {
                            scope.spawn(f);
                        });
                    }
                };
                if acquire {
                    let mut got = None;
                    run(&mut || got = s.try_acquire());
                    prop_assert_eq!(got.is_some(), held.len() < max);
                    held.extend(got);
                } else if !held.is_empty() {
                    let permit = held.swap_remove(which.index(held.len()));
                    let mut permit = Some(permit);
                    run(&mut || drop(permit.take()));
                }
                prop_assert_eq!(held.len() + free(&s), max);
                prop_assert_eq!(s.in_flight(), held.len());
            }
        }
    }
}
