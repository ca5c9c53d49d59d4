//! The shared state of one bulkhead: permits counted with atomics, waiters
//! woken through a [`Notify`].

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// One bulkhead's permits and waiters, shared by every service, clone and
/// handle made from the same layer.
///
/// Permits are an atomic counter rather than a [`tokio::sync::Semaphore`]:
/// taking one is a compare-and-swap, returning one a subtraction, and
/// neither takes a lock. A caller that may wait registers with `notify`
/// before it retries, and every returned permit wakes one registered waiter
/// while any caller is waiting, so no wake-up is lost (see [`Permit`]'s
/// `Drop`).
pub(crate) struct Shared {
    in_flight: AtomicUsize,
    waiting: AtomicUsize,
    max_concurrent: usize,
    max_wait: Duration,
    queue: usize,
    pub(crate) notify: Arc<Notify>,
    name: Cow<'static, str>,
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
}

impl Shared {
    pub(crate) fn new(
        max_concurrent: usize,
        max_wait: Duration,
        queue: usize,
        name: Cow<'static, str>,
    ) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            max_concurrent,
            max_wait,
            queue,
            notify: Arc::new(Notify::new()),
            #[cfg(feature = "metrics")]
            gauge: crate::observe::metrics::bulkhead_in_flight(&name),
            name,
        }
    }

    /// The state of a bulkhead that never admits through it (the
    /// pass-through level of a policy): it registers no metric.
    pub(crate) fn unused() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            max_concurrent: usize::MAX,
            max_wait: Duration::ZERO,
            queue: 0,
            notify: Arc::new(Notify::new()),
            #[cfg(feature = "metrics")]
            gauge: metrics::Gauge::noop(),
            name: Cow::Borrowed(""),
        }
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
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        #[cfg(feature = "metrics")]
        shared.gauge.decrement(1.0);
        // A waiter raises `waiting` before it registers and retries. Both
        // sides use SeqCst, so either this load sees the waiter (and wakes
        // it, or leaves a notification it will consume), or the waiter's
        // retry sees the permit returned above.
        if shared.waiting.load(Ordering::SeqCst) > 0 {
            shared.notify.notify_one();
        }
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
        self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
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
    crate::observe::emit(&crate::observe::Event::Rejected {
        rejection: crate::observe::Rejection::BulkheadFull,
        name: shared.name(),
        key: None,
        retry_after: None,
    });
}

/// Reports a call that got its permit after waiting.
pub(crate) fn emit_admitted_after_wait(shared: &Shared, waited: Duration) {
    tracing::trace!(
        target: "steadfast::bulkhead",
        layer = "bulkhead",
        name = shared.name(),
        delay_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        "call admitted after waiting"
    );
}
