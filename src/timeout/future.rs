//! Futures of the timeout services.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::{Deadline, later};
pub use crate::deadline::Scoped;
use crate::error::{BoxError, DeadlineExceeded, Elapsed};
use crate::event::TimeoutReason;

pin_project! {
    /// Response future of [`Timeout`](super::Timeout).
    ///
    /// The timer is armed only if the inner future is not ready on its
    /// first poll, so a call answered at once costs no timer.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        timer: Timer,
        cut_by_deadline: bool,
        // The total deadline had passed when the attempt was made: it is
        // never started.
        too_late: bool,
        // The layer's name and series; `None`: no layer made it.
        name: super::Name,
    }
}

pin_project! {
    /// The timer of an attempt: when it fires until it is armed (an armed
    /// timer knows its instant).
    #[project = TimerProj]
    #[derive(Debug)]
    enum Timer {
        // The call of a policy without an attempt timeout, which no
        // timeout layer bounds.
        Unbounded,
        // At the total deadline, which cut the attempt's own timeout.
        At { at: Instant },
        // The attempt's own timeout after the call began: its instant is
        // worked out only if the timer is armed, so a call answered at
        // once never adds a duration to an instant.
        After { start: Instant, timeout: Duration },
        Armed { #[pin] sleep: Sleep },
    }
}

impl Timer {
    /// Arms the timer on first use and polls it; `Ready` once it fired,
    /// never for an unbounded attempt.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let at = match self.as_mut().project() {
            TimerProj::Armed { sleep } => return sleep.poll(cx),
            TimerProj::Unbounded => return Poll::Pending,
            TimerProj::At { at } => *at,
            TimerProj::After { start, timeout } => later(*start, *timeout),
        };
        self.set(Timer::Armed {
            sleep: sleep_until(at),
        });
        match self.project() {
            TimerProj::Armed { sleep } => sleep.poll(cx),
            _ => Poll::Pending,
        }
    }
}

impl<F> ResponseFuture<F> {
    /// An attempt begun at `start` that times out `timeout` later, or at
    /// `deadline` if that is earlier (the total deadline cut it): then it
    /// is never started if the deadline had passed.
    #[inline]
    pub(super) fn new(
        inner: F,
        start: Instant,
        timeout: Duration,
        deadline: Option<Instant>,
        name: super::Name,
    ) -> Self {
        let (timer, cut_by_deadline, too_late) = match deadline {
            Some(at) if cuts(at, start, timeout) => (Timer::At { at }, true, at <= start),
            _ => (Timer::After { start, timeout }, false, false),
        };
        Self {
            inner,
            timer,
            cut_by_deadline,
            too_late,
            name,
        }
    }

    /// An attempt no timeout layer bounds (the attempt level of a policy
    /// without an attempt timeout): the timeout's own future, unbounded.
    pub(crate) fn unbounded(inner: F) -> Self {
        Self {
            inner,
            timer: Timer::Unbounded,
            cut_by_deadline: false,
            too_late: false,
            name: None,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if *this.too_late {
            attempt_ended(this.name, TimeoutReason::DeadlinePassed);
            return Poll::Ready(Err(Box::new(DeadlineExceeded::new())));
        }
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        ready!(this.timer.poll(cx));
        let err: BoxError = if *this.cut_by_deadline {
            attempt_ended(this.name, TimeoutReason::CutByDeadline);
            Box::new(DeadlineExceeded::new())
        } else {
            attempt_ended(this.name, TimeoutReason::Elapsed);
            Box::new(Elapsed::new())
        };
        Poll::Ready(Err(err))
    }
}

/// Whether the total deadline at `at` comes no later than the timeout of
/// an attempt begun at `start`. Out of line: asked only while a deadline
/// is in force.
#[inline(never)]
fn cuts(at: Instant, start: Instant, timeout: Duration) -> bool {
    at <= later(start, timeout)
}

/// Reports an attempt the timeout or the total deadline ended, counted in
/// the timeout layer's series.
#[cold]
fn attempt_ended(name: &super::Name, reason: TimeoutReason) {
    let (name, decisions) = super::Named::parts(name, "timeout");
    report(
        decisions,
        &crate::event::Event::AttemptTimedOut { name, reason },
    );
}

/// Reports `event`, counted in `decisions` if a layer made the deadline.
fn report(decisions: Option<&crate::event::Decisions>, event: &crate::event::Event<'_>) {
    match decisions {
        Some(decisions) => {
            crate::event::emit_counted(decisions, &crate::event::Listeners::none(), event);
        }
        None => crate::event::emit(event),
    }
}

/// Arms the timer on first use and polls it; `Ready` once it fired.
#[inline]
fn poll_timer(mut sleep: Pin<&mut Option<Sleep>>, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
    if sleep.is_none() {
        sleep.set(Some(sleep_until(at)));
    }
    match sleep.as_pin_mut() {
        Some(timer) => timer.poll(cx),
        None => Poll::Pending,
    }
}

pin_project! {
    /// Response future of [`TotalDeadline`](super::TotalDeadline).
    ///
    /// Keeps the deadline visible to the inner futures while they run.
    #[derive(Debug)]
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: Scoped<F>,
        #[pin]
        sleep: Option<Sleep>,
        at: Instant,
        // The layer's name and series; `None`: no layer made it.
        name: super::Name,
    }
}

impl<F: Future> DeadlineFuture<F> {
    /// `inner` under `deadline`, which the caller has
    /// [tightened](Deadline::tighten) (it is the earliest in force).
    pub(crate) fn new(inner: F, deadline: Deadline, name: super::Name) -> Self {
        Self {
            inner: deadline.scope_tightened(inner),
            sleep: None,
            at: deadline.instant(),
            name,
        }
    }
}

impl<F, T, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        poll_named_deadline(this.inner, this.sleep, *this.at, this.name, cx)
    }
}

/// Polls a call under its total deadline: its outcome, or
/// `DeadlineExceeded` once the deadline passed. The timer is armed only if
/// the call is not ready at once.
#[inline]
pub(crate) fn poll_deadline<F, T, E>(
    inner: Pin<&mut Scoped<F>>,
    sleep: Pin<&mut Option<Sleep>>,
    at: Instant,
    cx: &mut Context<'_>,
) -> Poll<Result<T, BoxError>>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    poll_named_deadline(inner, sleep, at, &None, cx)
}

/// The name of a total deadline nobody named.
const TOTAL_DEADLINE: &str = "total_deadline";

/// [`poll_deadline`] for a deadline named `name` (its event's name, and
/// the layer's series it is counted in).
#[inline(always)]
fn poll_named_deadline<F, T, E>(
    inner: Pin<&mut Scoped<F>>,
    mut sleep: Pin<&mut Option<Sleep>>,
    at: Instant,
    name: &super::Name,
    cx: &mut Context<'_>,
) -> Poll<Result<T, BoxError>>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    if let Poll::Ready(result) = inner.poll(cx) {
        let result = result.map_err(Into::into);
        // An attempt inside was cut short by this deadline (an attempt
        // timeout clamped to it): the call ended by the deadline all the
        // same.
        if matches!(&result, Err(err) if err.is::<DeadlineExceeded>()) && at <= Instant::now() {
            deadline_passed(at, name);
        }
        return Poll::Ready(result);
    }
    ready!(poll_timer(sleep.as_mut(), at, cx));
    deadline_passed(at, name);
    Poll::Ready(Err(Box::new(DeadlineExceeded::new())))
}

/// Reports a call ended by the deadline at `at`, once: of nested deadlines
/// at the same instant, the outermost reports.
#[cold]
fn deadline_passed(at: Instant, name: &super::Name) {
    if Deadline::current().is_some_and(|outer| outer.instant() <= at) {
        return;
    }
    let (name, decisions) = super::Named::parts(name, TOTAL_DEADLINE);
    report(
        decisions,
        &crate::event::Event::Rejected {
            rejection: crate::event::Rejection::DeadlineExceeded,
            name,
            key: None,
            retry_after: None,
        },
    );
}
