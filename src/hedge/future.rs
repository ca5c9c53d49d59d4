//! The response future of [`Hedge`](super::Hedge) and [`Race`](super::Race).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::Shared;
use super::policy::Event;
use crate::budget::{RetryBudget, Withdrawal};
use crate::classify::{Classify, Verdict, judge};
use crate::deadline::{Deadline, later};
use crate::error::BoxError;
use crate::event::HedgeRefusal;
use crate::oneshot::Oneshot;
use crate::replay::Replay;

pin_project! {
    /// Response future of [`Hedge`](super::Hedge) and [`Race`](super::Race).
    ///
    /// The first copy of the request is held inline; later copies live in a
    /// vector that is only allocated once a second copy is sent, so a call
    /// answered by its first copy allocates nothing of its own.
    #[project = Proj]
    pub struct ResponseFuture<S, Req, C, P>
    where
        S: Service<Req>,
        C: Classify<Req, S::Response, S::Error>,
    {
        #[pin]
        first: Option<S::Future>,
        // When the next copy is due.
        #[pin]
        timer: Option<Sleep>,
        shared: Arc<Shared<S, C, P>>,
        facts: C::Facts,
        // The copy of the request the next hedge sends.
        spare: Option<Req>,
        copies: Vec<Copy<S, Req, S::Future>>,
        // Copies sent so far, the first included.
        sent: u32,
        // When the first copy was found still running; set only when needed.
        first_started: Option<Instant>,
        // The most informative failure so far.
        last: Option<(Verdict, Result<S::Response, S::Error>)>,
        // A verdict said another copy would not help.
        stopped: bool,
        // The timer has fired at least once.
        rearmed: bool,
        // Copies may run alongside one another (the classifier's
        // `may_overlap`): else a copy only follows a failure.
        overlap: bool,
    }
}

/// A copy after the first: waiting for its service, then running. Boxed,
/// as only a call that sends a copy needs one.
struct Copy<S, Req, F> {
    call: Pin<Box<Oneshot<S, Req, F>>>,
    // Given back to the budget if the copy is never sent.
    withdrawal: Option<Withdrawal>,
    started: Instant,
    number: u32,
}

type Output<S, Req> = Result<<S as Service<Req>>::Response, BoxError>;

impl<S, Req, C, P> ResponseFuture<S, Req, C, P>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    pub(super) fn new(
        first: S::Future,
        shared: Arc<Shared<S, C, P>>,
        facts: C::Facts,
        spare: Option<Req>,
        overlap: bool,
    ) -> Self {
        Self {
            first: Some(first),
            timer: None,
            shared,
            facts,
            spare,
            copies: Vec::new(),
            sent: 1,
            first_started: None,
            last: None,
            stopped: false,
            rearmed: false,
            overlap,
        }
    }
}

impl<S, Req, C, P> Future for ResponseFuture<S, Req, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    type Output = Output<S, Req>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The path of almost every call: the first copy answers while it is
        // the only one. Everything else lives out of line, in `drive`.
        let mut first_pending = false;
        if this.copies.is_empty() {
            if let Some(first) = this.first.as_mut().as_pin_mut() {
                match first.poll(cx) {
                    Poll::Ready(outcome) => {
                        let policy = &this.shared.policy;
                        let verdict = judge(&policy.classifier, this.facts, outcome.as_ref());
                        if verdict.is_answer() {
                            if policy.learns() {
                                policy.record(
                                    this.first_started.map_or(Duration::ZERO, |s| s.elapsed()),
                                );
                            }
                            this.first.set(None);
                            return Poll::Ready(outcome.map_err(Into::into));
                        }
                        this.first.set(None);
                        let started = *this.first_started;
                        if let Some(output) = settle(&mut this, 0, started, verdict, outcome) {
                            return Poll::Ready(output);
                        }
                    }
                    Poll::Pending => first_pending = true,
                }
            }
        }
        drive(this, cx, first_pending)
    }
}

/// Polls every copy and the timer, sends copies when due.
#[inline(never)]
fn drive<S, Req, C, P>(
    mut this: Proj<'_, S, Req, C, P>,
    cx: &mut Context<'_>,
    mut skip_first: bool,
) -> Poll<Output<S, Req>>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    loop {
        if !skip_first {
            if let Some(first) = this.first.as_mut().as_pin_mut() {
                if let Poll::Ready(outcome) = first.poll(cx) {
                    this.first.set(None);
                    let verdict =
                        judge(&this.shared.policy.classifier, this.facts, outcome.as_ref());
                    let started = *this.first_started;
                    if let Some(output) = settle(&mut this, 0, started, verdict, outcome) {
                        return Poll::Ready(output);
                    }
                }
            }
        }
        skip_first = false;

        let mut i = 0;
        while i < this.copies.len() {
            match poll_copy(&mut this.copies[i], this.shared.policy.budget.as_ref(), cx) {
                Poll::Pending => i += 1,
                Poll::Ready(outcome) => {
                    let copy = this.copies.swap_remove(i);
                    let verdict =
                        judge(&this.shared.policy.classifier, this.facts, outcome.as_ref());
                    if let Some(output) =
                        settle(&mut this, copy.number, Some(copy.started), verdict, outcome)
                    {
                        return Poll::Ready(output);
                    }
                }
            }
        }

        let in_flight = this.first.is_some() || !this.copies.is_empty();
        if !in_flight {
            return Poll::Ready(finish(&mut this));
        }
        let more = *this.overlap && can_send_more(&this);
        if this.first.is_some()
            && this.first_started.is_none()
            && (more || this.shared.policy.learns())
        {
            *this.first_started = Some(Instant::now());
        }
        if this.timer.is_none() && more {
            let delay = this.shared.policy.delay();
            // A zero delay (a race) sends every copy at once.
            let at_once = delay.is_some_and(|d| d.is_zero());
            if at_once && fire(&mut this, None) {
                continue;
            }
            if let Some(delay) = delay.filter(|_| !at_once) {
                let base = match *this.first_started {
                    Some(started) if !*this.rearmed => started,
                    _ => Instant::now(),
                };
                this.timer.set(Some(sleep_until(later(base, delay))));
            }
        }
        if let Some(timer) = this.timer.as_mut().as_pin_mut() {
            if timer.poll(cx).is_ready() {
                this.timer.set(None);
                *this.rearmed = true;
                let delay = this.shared.policy.delay();
                fire(&mut this, delay);
                continue;
            }
        }
        return Poll::Pending;
    }
}

/// Drives one later copy: readiness, then its call.
fn poll_copy<S, Req>(
    copy: &mut Copy<S, Req, S::Future>,
    budget: Option<&RetryBudget>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, S::Error>>
where
    S: Service<Req>,
{
    let withdrawal = &mut copy.withdrawal;
    let polled = ready!(copy.call.as_mut().poll_with(cx, |mut service, request| {
        if let Some(withdrawal) = withdrawal.take() {
            withdrawal.spend();
        }
        // A copy is part of the same logical call: inner layers on the
        // same budget don't count it again.
        match budget {
            Some(budget) => budget.calling(|| service.call(request)),
            None => service.call(request),
        }
    }));
    match polled {
        Some(Ok(outcome)) => Poll::Ready(outcome),
        Some(Err(err)) => Poll::Ready(Err(err)),
        // Never polled again once its outcome is known.
        None => Poll::Pending,
    }
}

/// Whether another copy may be sent.
fn can_send_more<S, Req, C, P>(this: &Proj<'_, S, Req, C, P>) -> bool
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    !*this.stopped && this.spare.is_some() && *this.sent <= this.shared.policy.max_hedges
}

/// Acts on copy `number`'s verdict; the call's output if it ends the call.
fn settle<S, Req, C, P>(
    this: &mut Proj<'_, S, Req, C, P>,
    number: u32,
    started: Option<Instant>,
    verdict: Verdict,
    outcome: Result<S::Response, S::Error>,
) -> Option<Output<S, Req>>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    if verdict.is_answer() {
        won(this, number, started);
        return Some(outcome.map_err(Into::into));
    }
    // A real failure says more than a refusal by an inner policy.
    let keep_old =
        matches!(&this.last, Some((old, _)) if !old.is_rejection() && verdict.is_rejection());
    if !keep_old {
        *this.last = Some((verdict, outcome));
    }
    if (verdict.is_retryable() || verdict.is_rejection()) && this.shared.targets.len() > 1 {
        // Another endpoint may answer: don't wait for the delay, send the
        // next copy now.
        if can_send_more(this) {
            this.timer.set(None);
            fire(this, None);
        }
    } else if verdict.is_retryable() || verdict.is_rejection() {
        // The only target is failing, refusing (an open circuit) or asking
        // for a wait: another copy would only add to its load. Retry, with
        // its backoff, is the layer for failures.
        if can_send_more(this) {
            this.shared.policy.emit(
                Event::Refused(HedgeRefusal::TargetFailing),
                *this.sent,
                None,
            );
        }
        *this.stopped = true;
    } else {
        // The classifier says another copy would not help.
        *this.stopped = true;
    }
    None
}

/// Copy `number` answered: learn from it, then drop every other copy.
#[inline(never)]
fn won<S, Req, C, P>(this: &mut Proj<'_, S, Req, C, P>, number: u32, started: Option<Instant>)
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    let policy = &this.shared.policy;
    if policy.learns() {
        let now = Instant::now();
        policy.record(started.map_or(Duration::ZERO, |s| now.saturating_duration_since(s)));
        // A copy cancelled after running longer than the delay is known to
        // lie above the percentile: its time so far places it there.
        if let Some(delay) = policy.delay() {
            let first = this
                .first
                .is_some()
                .then_some(*this.first_started)
                .flatten();
            let running = this
                .copies
                .iter()
                .filter(|c| c.call.is_called())
                .map(|c| Some(c.started));
            for ran in std::iter::once(first)
                .chain(running)
                .flatten()
                .map(|s| now.saturating_duration_since(s))
                .filter(|ran| *ran >= delay)
            {
                policy.record(ran);
            }
        }
    }
    policy.emit(Event::Won { copies: *this.sent }, number, None);
    this.first.set(None);
    this.timer.set(None);
    this.copies.clear();
}

/// Sends the next copy, unless the budget, the deadline or the request
/// forbid it. `delay` is what it waited, for events.
#[inline(never)]
fn fire<S, Req, C, P>(this: &mut Proj<'_, S, Req, C, P>, delay: Option<Duration>) -> bool
where
    S: Service<Req> + Clone,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    let shared = &**this.shared;
    let policy = &shared.policy;
    let number = *this.sent;
    if *this.stopped || number > policy.max_hedges {
        return false;
    }
    let Some(request) = this.spare.take() else {
        policy.emit(Event::Refused(HedgeRefusal::NotReplayable), number, None);
        return false;
    };
    let refuse = |spare: &mut Option<Req>, request, reason| {
        *spare = Some(request);
        policy.emit(Event::Refused(reason), number, None);
        false
    };
    if Deadline::current().is_some_and(Deadline::is_expired) {
        return refuse(this.spare, request, HedgeRefusal::Deadline);
    }
    let withdrawal = match &policy.budget {
        Some(budget) => match budget.withdraw() {
            Some(withdrawal) => Some(withdrawal),
            None => return refuse(this.spare, request, HedgeRefusal::BudgetSpent),
        },
        None => None,
    };
    *this.sent += 1;
    *this.rearmed = true;
    if *this.sent <= policy.max_hedges {
        *this.spare = policy.replay.replay(&request);
        if this.spare.is_none() {
            policy.emit(
                Event::Refused(HedgeRefusal::NotReplayable),
                *this.sent,
                None,
            );
        }
    }
    let service = shared.targets[number as usize % shared.targets.len()].clone();
    this.copies.push(Copy {
        call: Box::pin(Oneshot::new(service, request)),
        withdrawal,
        started: Instant::now(),
        number,
    });
    policy.count_hedge();
    policy.emit(Event::Sent, number, delay);
    true
}

/// Every copy failed: the most informative failure.
#[inline(never)]
fn finish<S, Req, C, P>(this: &mut Proj<'_, S, Req, C, P>) -> Output<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<Req, S::Response, S::Error>,
{
    match this.last.take() {
        Some((verdict, outcome)) => {
            this.shared
                .policy
                .emit(Event::AllFailed(verdict), *this.sent, None);
            outcome.map_err(Into::into)
        }
        None => Err("hedge future polled after completion".into()),
    }
}

impl<S, Req, C, P> fmt::Debug for ResponseFuture<S, Req, C, P>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("sent", &self.sent)
            .field(
                "in_flight",
                &(usize::from(self.first.is_some()) + self.copies.len()),
            )
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}
