//! The response future of [`Scatter`](super::Scatter) and
//! [`Stages`](super::Stages).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::gathered::{BranchOutcome, Gather, Gathered, Outcome, Stop, StopReason};
use super::plan::{Heard, Kind, Plan};
use crate::classify::{Classify, judge};
use crate::deadline::{Deadline, later};
use crate::error::BoxError;
use crate::oneshot::Oneshot;
use crate::replay::Replay;

pin_project! {
    /// Response future of [`Scatter`](super::Scatter) and
    /// [`Stages`](super::Stages).
    #[project = Proj]
    pub struct GatherFuture<S, Req, C, P>
    where
        S: Service<Req>,
        C: Classify<Req, S::Response, S::Error>,
    {
        // When the running stage's branches time out (or the deadline).
        #[pin]
        timer: Option<Sleep>,
        timer_is_deadline: bool,
        plan: Arc<Plan<S, C, P>>,
        // Kept for the branches of later stages.
        request: Option<Req>,
        facts: C::Facts,
        // Every branch, by index, its outcome `NotSent` until it ends:
        // handed over as the gathered result.
        branches: Vec<BranchOutcome<S::Response>>,
        running: Vec<Branch<S, Req, S::Future>>,
        next_stage: usize,
        deadline: Option<Deadline>,
        // The deadline is this fan-out's own: show it to the branches.
        scoped: bool,
        answered: usize,
        failed: usize,
        stop: Option<Stop>,
    }
}

struct Branch<S, Req, F> {
    index: usize,
    hard: bool,
    // Boxed: the vector of running branches holds them by pointer.
    call: Pin<Box<Oneshot<S, Req, F>>>,
}

impl<S, Req, C, P> GatherFuture<S, Req, C, P>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    pub(super) fn new(plan: Arc<Plan<S, C, P>>, request: Req) -> Self {
        let facts = plan.classifier.facts(&request);
        let (deadline, scoped) = match plan.deadline {
            Some(total) => (Some(Deadline::after(total).tighten()), true),
            None => (Deadline::current(), false),
        };
        let mut branches = Vec::with_capacity(plan.branches);
        for (stage, specs) in plan.stages.iter().enumerate() {
            branches.extend(specs.iter().map(|spec| BranchOutcome {
                index: spec.index,
                stage,
                name: spec.name.clone(),
                hard: spec.hard,
                outcome: Outcome::NotSent,
            }));
        }
        Self {
            timer: None,
            timer_is_deadline: false,
            plan,
            request: Some(request),
            facts,
            branches,
            running: Vec::new(),
            next_stage: 0,
            deadline,
            scoped,
            answered: 0,
            failed: 0,
            stop: None,
        }
    }
}

impl<S, Req, C, P> Future for GatherFuture<S, Req, C, P>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    type Output = Result<Gathered<S::Response>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let gathered = match *this.deadline {
            Some(deadline) if *this.scoped => deadline.sync_scope(|| drive(this, cx)),
            _ => drive(this, cx),
        };
        gathered.map(Ok)
    }
}

fn drive<S, Req, C, P>(
    mut this: Proj<'_, S, Req, C, P>,
    cx: &mut Context<'_>,
) -> Poll<Gathered<S::Response>>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    let mut heard = Heard::default();
    loop {
        if this.running.is_empty() {
            if this.stop.is_some() || *this.next_stage == this.plan.stages.len() {
                return Poll::Ready(finish(&mut this, &mut heard));
            }
            if this.deadline.is_some_and(Deadline::is_expired) {
                *this.stop = Some(Stop {
                    stage: *this.next_stage,
                    reason: StopReason::Deadline,
                });
                continue;
            }
            start_stage(&mut this, &mut heard);
            continue;
        }

        let stage = *this.next_stage - 1;
        let mut i = 0;
        while i < this.running.len() {
            match poll_branch(&mut this.running[i], cx) {
                Poll::Pending => i += 1,
                Poll::Ready(result) => {
                    let branch = this.running.swap_remove(i);
                    let verdict = judge(&this.plan.classifier, this.facts, result.as_ref());
                    let outcome = Outcome::Completed {
                        verdict,
                        result: result.map_err(Into::into),
                    };
                    record(
                        &mut this,
                        &mut heard,
                        stage,
                        branch.index,
                        branch.hard,
                        outcome,
                    );
                }
            }
        }
        if let Some(reason) = gathered_enough(&this) {
            *this.stop = Some(Stop { stage, reason });
            for branch in mem::take(this.running) {
                this.branches[branch.index].outcome = Outcome::Cancelled;
            }
        }
        if this.running.is_empty() {
            this.timer.set(None);
            continue;
        }

        if let Some(timer) = this.timer.as_mut().as_pin_mut() {
            if timer.poll(cx).is_ready() {
                this.timer.set(None);
                if *this.timer_is_deadline && this.stop.is_none() {
                    *this.stop = Some(Stop {
                        stage,
                        reason: StopReason::Deadline,
                    });
                }
                for branch in mem::take(this.running) {
                    record(
                        &mut this,
                        &mut heard,
                        stage,
                        branch.index,
                        branch.hard,
                        Outcome::TimedOut,
                    );
                }
                continue;
            }
        }
        return Poll::Pending;
    }
}

/// Sends the next stage's branches and arms its timer.
fn start_stage<S, Req, C, P>(this: &mut Proj<'_, S, Req, C, P>, heard: &mut Heard)
where
    S: Service<Req> + Clone,
    C: Classify<Req, S::Response, S::Error>,
    P: Replay<Req>,
{
    let plan = &**this.plan;
    let stage = *this.next_stage;
    *this.next_stage += 1;
    let last_stage = stage + 1 == plan.stages.len();
    let specs = &plan.stages[stage];
    if this.running.capacity() == 0 {
        // Room for any stage's branches, made at once rather than grown.
        *this.running = Vec::with_capacity(plan.widest);
    }
    for (n, spec) in specs.iter().enumerate() {
        // The last branch of all takes the request itself.
        let request = if last_stage && n + 1 == specs.len() {
            this.request.take()
        } else {
            this.request.as_ref().and_then(|r| plan.replay.replay(r))
        };
        // A branch whose request could not be copied stays `NotSent`.
        if let Some(request) = request {
            this.running.push(Branch {
                index: spec.index,
                hard: spec.hard,
                call: Box::pin(Oneshot::new(plan.services[spec.index].clone(), request)),
            });
        }
    }
    plan.emit_stage(heard, stage, specs.len());
    let branch_at = plan.branch_timeout.map(|t| later(Instant::now(), t));
    let deadline_at = this.deadline.map(Deadline::instant);
    let (at, is_deadline) = match (branch_at, deadline_at) {
        (Some(b), Some(d)) if d <= b => (Some(d), true),
        (Some(b), _) => (Some(b), false),
        (None, Some(d)) => (Some(d), true),
        (None, None) => (None, false),
    };
    *this.timer_is_deadline = is_deadline;
    this.timer.set(at.map(sleep_until));
}

/// Drives one branch: readiness, then its call.
fn poll_branch<S, Req>(
    branch: &mut Branch<S, Req, S::Future>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Response, S::Error>>
where
    S: Service<Req>,
{
    let polled = ready!(
        branch
            .call
            .as_mut()
            .poll_with(cx, |mut service, request| service.call(request))
    );
    match polled {
        Some(Ok(outcome)) => Poll::Ready(outcome),
        Some(Err(err)) => Poll::Ready(Err(err)),
        // Removed once its outcome is known.
        None => Poll::Pending,
    }
}

/// Records a branch's outcome; a hard branch's failure stops later stages.
fn record<S, Req, C, P>(
    this: &mut Proj<'_, S, Req, C, P>,
    heard: &mut Heard,
    stage: usize,
    index: usize,
    hard: bool,
    outcome: Outcome<S::Response>,
) where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    let verdict = outcome.verdict();
    if verdict.is_some_and(|v| v.is_answer()) {
        *this.answered += 1;
    } else {
        *this.failed += 1;
        if hard && this.stop.is_none() {
            *this.stop = Some(Stop {
                stage,
                reason: StopReason::HardFailure { branch: index },
            });
        }
    }
    this.plan.emit_branch(heard, index, verdict);
    this.branches[index].outcome = outcome;
}

/// Whether a scatter's gather mode has what it needs, or never will.
fn gathered_enough<S, Req, C, P>(this: &Proj<'_, S, Req, C, P>) -> Option<StopReason>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    let Kind::Scatter(gather) = this.plan.kind else {
        return None;
    };
    let total = this.plan.branches;
    match gather {
        Gather::All => None,
        Gather::Quorum(n) | Gather::FirstK(n) if *this.answered >= n => {
            (!this.running.is_empty()).then_some(StopReason::Gathered)
        }
        Gather::Quorum(n) if *this.failed > total - n => {
            (!this.running.is_empty()).then_some(StopReason::Unreachable)
        }
        Gather::Quorum(_) | Gather::FirstK(_) => None,
    }
}

#[inline(never)]
fn finish<S, Req, C, P>(
    this: &mut Proj<'_, S, Req, C, P>,
    heard: &mut Heard,
) -> Gathered<S::Response>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    let plan = &**this.plan;
    let satisfied = match plan.kind {
        Kind::Scatter(Gather::All) => *this.answered == plan.branches,
        Kind::Scatter(Gather::Quorum(n) | Gather::FirstK(n)) => *this.answered >= n,
        Kind::Stages => this.stop.is_none(),
    };
    plan.emit_done(heard, *this.answered, *this.failed, *this.stop);
    Gathered {
        branches: mem::take(this.branches),
        stop: *this.stop,
        satisfied,
    }
}

impl<S, Req, C, P> fmt::Debug for GatherFuture<S, Req, C, P>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatherFuture")
            .field("next_stage", &self.next_stage)
            .field("running", &self.running.len())
            .field("answered", &self.answered)
            .field("failed", &self.failed)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}
