//! The shared state of one bulkhead: permits counted with atomics, waiters
//! woken through a [`Notify`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

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
/// Permits are an atomic counter rather than a [`tokio::sync::Semaphore`]:
/// taking one is a compare-and-swap, returning one a subtraction, and
/// neither takes a lock. A caller that may wait registers with `notify`
/// before it retries. A permit returned while any caller waits is not
/// freed but handed over: it stays counted in flight, `handoff` counts it,
/// and one registered waiter (the oldest, or the newest, as `order` says)
/// is woken to claim it, so a newcomer never takes it first and no wake-up
/// is lost (see [`Permit`]'s `Drop`). A handed-over permit that no waiter is
/// left to claim is freed by the last waiter to leave.
pub(crate) struct Shared {
    in_flight: AtomicUsize,
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
            in_flight: AtomicUsize::new(0),
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
    /// Takes a permit if one is free.
    #[inline]
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            if current >= self.max_concurrent {
                return None;
            }
            // SeqCst pairs with the waiter count: see `Permit::drop`.
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    #[cfg(feature = "metrics")]
                    self.gauge.increment(1.0);
                    return Some(Permit {
                        shared: Arc::clone(self),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes a permit handed over to a woken waiter, if one is left.
    pub(crate) fn claim_handoff(self: &Arc<Self>) -> Option<Permit> {
        self.handoff
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()
            .map(|_| Permit {
                shared: Arc::clone(self),
            })
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
        self.in_flight.fetch_sub(unclaimed, Ordering::SeqCst);
        #[cfg(feature = "metrics")]
        self.gauge.decrement(unclaimed as f64);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            for _ in 0..unclaimed {
                self.wake_one();
            }
        }
    }

    /// Takes a place among the waiters, if waiting is allowed and the queue
    /// has room.
    pub(crate) fn enter_queue(self: &Arc<Self>) -> Option<WaitGuard> {
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
                        shared: Arc::clone(self),
                    });
                }
                Err(actual) => current = actual,
            }
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
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

/// A permit to have one call in flight; returned when dropped.
pub(crate) struct Permit {
    shared: Arc<Shared>,
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
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        #[cfg(feature = "metrics")]
        shared.gauge.decrement(1.0);
    }
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
    pub(crate) shared: Arc<Shared>,
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
