//! The deadline of a logical call, visible to every layer inside it.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;

thread_local! {
    /// The deadline in force on this thread: set while a [`Scoped`]
    /// future is polled or a [`Deadline::sync_scope`] closure runs, and
    /// put back as it was when they return (or unwind). Constant
    /// initialised and without a destructor, so that reading it is one
    /// load from thread-local storage, on any thread, at any time.
    static CURRENT: Cell<Option<Deadline>> = const { Cell::new(None) };

    /// The clock reading a total deadline took when its call began, while
    /// that call runs down the stack synchronously: the layers inside
    /// read it instead of the clock ([`now`]). Set by
    /// [`Deadline::sync_scope_read`] only, never while a future is polled.
    static READING: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Now, as the layers of a call read it: the reading the total deadline
/// took when the call began, while that call runs down the stack
/// synchronously (the same instant to the nanoseconds between them, and
/// never later than the clock, so that what is timed from it ends no
/// later than timed from a fresh reading); a fresh reading anywhere else,
/// and in every poll.
#[inline]
pub(crate) fn now() -> Instant {
    reading().unwrap_or_else(Instant::now)
}

/// The reading [`now`] answers with, if one is in force.
#[inline]
pub(crate) fn reading() -> Option<Instant> {
    READING.get()
}

/// Durations past this are treated as "no limit" (about thirty years), so
/// that adding a huge duration to an instant never overflows.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The instant by which a logical call must be over.
///
/// A [`TotalDeadline`](crate::timeout::TotalDeadline) sets it for the whole of its
/// inner call, futures included, and the layers inside read it with
/// [`Deadline::current`]: an attempt [`Timeout`](crate::timeout::Timeout) is
/// clamped to it, and retry never starts a backoff sleep or an attempt
/// that cannot finish before it. This works for any request type. With the
/// `http` feature and [`TotalDeadlineLayer::stamp_extensions`], HTTP
/// requests also carry it in their extensions, where a handler or a
/// header-writing layer can find it.
///
/// The deadline follows the task: work handed to another task (for
/// example through tower's `Buffer`) does not see it.
///
/// [`TotalDeadlineLayer::stamp_extensions`]: crate::timeout::TotalDeadlineLayer::stamp_extensions
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// A deadline `timeout` from now; timeouts of decades mean no limit.
    pub fn after(timeout: Duration) -> Self {
        Deadline(later(Instant::now(), timeout))
    }

    /// The deadline of the logical call this code runs in, if any.
    #[inline]
    pub fn current() -> Option<Deadline> {
        CURRENT.get()
    }

    /// The instant of the deadline.
    pub const fn instant(self) -> Instant {
        self.0
    }

    /// The time left, zero once passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(self) -> bool {
        self.0 <= Instant::now()
    }

    /// Runs `future` with this deadline visible to the layers it calls
    /// through. An earlier deadline already in force stays in force.
    #[inline]
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        self.tighten().scope_tightened(future)
    }

    /// Runs `f` with this deadline visible, as [`scope`](Self::scope) does
    /// for a future.
    #[inline]
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        self.tighten().sync_scope_tightened(f)
    }

    /// [`scope`](Self::scope) for a deadline already
    /// [tightened](Self::tighten) in the same synchronous call: it is set
    /// as it is, without reading the one in force again.
    #[inline]
    pub(crate) fn scope_tightened<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            deadline: self,
            future,
        }
    }

    /// [`sync_scope`](Self::sync_scope) for a deadline already
    /// [tightened](Self::tighten), as [`scope_tightened`](Self::scope_tightened).
    #[inline(always)]
    pub(crate) fn sync_scope_tightened<R>(self, f: impl FnOnce() -> R) -> R {
        let _restore = Restore(CURRENT.replace(Some(self)));
        f()
    }

    /// [`sync_scope_tightened`](Self::sync_scope_tightened) for the
    /// synchronous call of a total deadline that read the clock at `now`:
    /// the layers inside read `now` through [`now`](self::now) instead of
    /// the clock until `f` returns.
    #[inline]
    pub(crate) fn sync_scope_read<R>(self, now: Instant, f: impl FnOnce() -> R) -> R {
        let _restore = Restore(CURRENT.replace(Some(self)));
        let _reading = RestoreReading(READING.replace(Some(now)));
        f()
    }

    /// This deadline or the one already in force, whichever comes first.
    pub fn tighten(self) -> Deadline {
        match Deadline::current() {
            Some(outer) if outer < self => outer,
            _ => self,
        }
    }
}

/// Puts back the deadline that was in force before a scope, when the
/// scope returns or unwinds.
struct Restore(Option<Deadline>);

impl Drop for Restore {
    #[inline]
    fn drop(&mut self) {
        CURRENT.set(self.0);
    }
}

/// Puts back the reading that was in force before
/// [`Deadline::sync_scope_read`], when it returns or unwinds.
struct RestoreReading(Option<Instant>);

impl Drop for RestoreReading {
    #[inline]
    fn drop(&mut self) {
        READING.set(self.0);
    }
}

pin_project! {
    /// A future run with a [`Deadline`] in force: made by
    /// [`Deadline::scope`].
    ///
    /// While the inner future is polled, [`Deadline::current`] answers
    /// with this deadline (or an earlier one that was in force when the
    /// scope was made); around each poll, the deadline in force before is
    /// put back. The deadline follows the future, not the thread: work the
    /// future hands to another task does not see it.
    #[derive(Debug)]
    #[must_use = "futures do nothing unless polled"]
    pub struct Scoped<F> {
        deadline: Deadline,
        #[pin]
        future: F,
    }
}

impl<F> Scoped<F> {
    /// The deadline in force while the inner future is polled.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// The inner future.
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// The inner future, consuming the scope.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.deadline.sync_scope_tightened(
            #[inline(always)]
            || this.future.poll(cx),
        )
    }
}

/// `now + d`, saturating at the far future instead of overflowing.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    match now.checked_add(d.min(FAR)) {
        Some(at) => at,
        None => near_end(now),
    }
}

/// The far future as seen from `now`, which is too close to the end of
/// the clock's range for [`later`]'s bound.
#[cold]
fn near_end(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(86_400)).unwrap_or(now)
}

/// Where a [`TotalDeadline`](crate::timeout::TotalDeadline) writes its deadline into
/// a request, besides making it visible to the layers inside.
pub trait Stamp<Req> {
    /// Records `deadline` in `request`.
    fn stamp(&self, request: &mut Req, deadline: Deadline);
}

/// Writes the deadline nowhere: inner layers still see it through
/// [`Deadline::current`]. Works for every request type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoStamp;

impl<Req> Stamp<Req> for NoStamp {
    #[inline]
    fn stamp(&self, _request: &mut Req, _deadline: Deadline) {}
}

/// Inserts the [`Deadline`] into an `http::Request`'s extensions.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtensionStamp;

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<B> Stamp<http::Request<B>> for ExtensionStamp {
    fn stamp(&self, request: &mut http::Request<B>, deadline: Deadline) {
        request.extensions_mut().insert(deadline);
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> Deadline {
        Deadline::at(Instant::now() + Duration::from_secs(secs))
    }

    #[tokio::test(start_paused = true)]
    async fn a_scope_is_in_force_only_while_its_future_is_polled() {
        let deadline = at(5);
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        // A scoped task that waits with its deadline in force.
        let scoped = tokio::spawn(deadline.scope(async move {
            let before = Deadline::current();
            go_rx.await.unwrap();
            (before, Deadline::current())
        }));
        tokio::task::yield_now().await;
        // Another task on the same thread, polled while the scoped one
        // waits, sees no deadline.
        tokio::spawn(async move { seen_tx.send(Deadline::current()).unwrap() });
        assert_eq!(seen_rx.await.unwrap(), None);
        assert_eq!(Deadline::current(), None);
        go_tx.send(()).unwrap();
        assert_eq!(scoped.await.unwrap(), (Some(deadline), Some(deadline)));
        assert_eq!(Deadline::current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn nested_scopes_keep_the_earliest_and_put_the_outer_one_back() {
        let (early, late) = (at(1), at(9));
        let inner = early.sync_scope(|| {
            let inner = late.sync_scope(Deadline::current);
            (inner, Deadline::current())
        });
        assert_eq!(inner, (Some(early), Some(early)));
        let widened = late.sync_scope(|| early.scope(async { Deadline::current() }));
        assert_eq!(widened.deadline(), early);
        assert_eq!(widened.await, Some(early));
        assert_eq!(Deadline::current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_inside_a_scope_puts_the_outer_deadline_back() {
        let (outer, inner) = (at(9), at(1));
        outer.sync_scope(|| {
            let unwound = catch_unwind(AssertUnwindSafe(|| {
                inner.sync_scope(|| panic!("inside the scope"));
            }));
            assert!(unwound.is_err());
            assert_eq!(Deadline::current(), Some(outer));
        });
        assert_eq!(Deadline::current(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reading_of_a_call_holds_only_while_it_runs_down_synchronously() {
        let taken = Instant::now() - Duration::from_millis(3);
        let deadline = at(5);
        let (inside, polled) = deadline.sync_scope_read(taken, || {
            let inside = (now(), reading(), Deadline::current());
            // A future made here and polled later reads the clock.
            (inside, deadline.scope(async { (reading(), now()) }))
        });
        assert_eq!(inside, (taken, Some(taken), Some(deadline)));
        assert_eq!(reading(), None);
        assert_eq!(Deadline::current(), None);
        tokio::time::advance(Duration::from_millis(7)).await;
        let (during_poll, fresh) = polled.await;
        assert_eq!(during_poll, None);
        assert_eq!(fresh, Instant::now());
        assert_eq!(now(), Instant::now());
    }
}
