//! The deadline of a logical call, visible to every layer inside it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::futures::TaskLocalFuture;
use tokio::time::Instant;

tokio::task_local! {
    static CURRENT: Deadline;
}

/// Whether a deadline was ever put in force in this process: until one is,
/// no code runs under one, and [`Deadline::current`] answers with one load
/// instead of reading the task-local.
static EVER_SET: AtomicBool = AtomicBool::new(false);

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
        // A scope is made (and the flag set) before the code it runs; code
        // that runs on another thread got the scope through a hand-over
        // that orders the flag before it.
        if !EVER_SET.load(Ordering::Relaxed) {
            return None;
        }
        CURRENT.try_with(|d| *d).ok()
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
    pub fn scope<F: Future>(self, future: F) -> TaskLocalFuture<Deadline, F> {
        mark_set();
        CURRENT.scope(self.tighten(), future)
    }

    /// Runs `f` with this deadline visible, as [`scope`](Self::scope) does
    /// for a future.
    #[inline]
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        mark_set();
        CURRENT.sync_scope(self.tighten(), f)
    }

    /// [`scope`](Self::scope) for a deadline already
    /// [tightened](Self::tighten) in the same synchronous call: it is set
    /// as it is, without reading the one in force again.
    #[inline]
    pub(crate) fn scope_tightened<F: Future>(self, future: F) -> TaskLocalFuture<Deadline, F> {
        mark_set();
        CURRENT.scope(self, future)
    }

    /// [`sync_scope`](Self::sync_scope) for a deadline already
    /// [tightened](Self::tighten), as [`scope_tightened`](Self::scope_tightened).
    #[inline]
    pub(crate) fn sync_scope_tightened<R>(self, f: impl FnOnce() -> R) -> R {
        mark_set();
        CURRENT.sync_scope(self, f)
    }

    /// This deadline or the one already in force, whichever comes first.
    pub fn tighten(self) -> Deadline {
        match Deadline::current() {
            Some(outer) if outer < self => outer,
            _ => self,
        }
    }
}

/// Notes that a deadline is put in force, writing the flag only once.
#[inline]
fn mark_set() {
    if !EVER_SET.load(Ordering::Relaxed) {
        EVER_SET.store(true, Ordering::Relaxed);
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
