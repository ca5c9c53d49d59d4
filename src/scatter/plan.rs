//! The branches of a fan-out and its settings, shared by every call.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use super::gathered::{BranchName, Gather, Stop};
use crate::classify::Verdict;
use crate::event::{Decisions, Event, Listeners, emit_counted, heard};

/// Scatter (one stage, a gather mode) or stages (hard and soft stops).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Scatter(Gather),
    Stages,
}

/// A branch's place in its stage; its service is `Plan::services[index]`.
#[derive(Clone)]
pub(crate) struct Spec {
    pub(crate) name: Option<BranchName>,
    pub(crate) hard: bool,
    pub(crate) index: usize,
}

pub(crate) struct Plan<S, C, P> {
    /// Every branch's service, by index: every stage's, in order.
    pub(crate) services: Box<[S]>,
    pub(crate) stages: Box<[Box<[Spec]>]>,
    pub(crate) branches: usize,
    /// How many branches the widest stage has.
    pub(crate) widest: usize,
    pub(crate) kind: Kind,
    pub(crate) branch_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) classifier: C,
    pub(crate) replay: P,
    pub(crate) name: Cow<'static, str>,
    /// The metric series of its decisions, made with the layer.
    pub(crate) decisions: Decisions,
}

/// Whether the events of the success path can be heard, asked at most
/// once per poll of a call: a scatter has no listeners of its own and no
/// metrics for these events, so only the listeners of the call it runs
/// in, or a subscriber that wants its callsites, can hear them, and
/// neither changes while the call is polled.
#[derive(Debug, Default)]
pub(crate) struct Heard(Option<bool>);

impl Heard {
    /// Whether an event of the success path, traced at TRACE, can be
    /// heard, by the rule an observe layer watches a call with.
    #[inline]
    fn get(&mut self) -> bool {
        match self.0 {
            Some(heard) => heard,
            None => self.ask(),
        }
    }

    #[inline(never)]
    fn ask(&mut self) -> bool {
        let heard = heard(
            &Listeners::none(),
            tracing::enabled!(target: "steadfast::scatter", tracing::Level::TRACE),
        );
        self.0 = Some(heard);
        heard
    }
}

impl<S, C, P> Plan<S, C, P> {
    fn policy(&self) -> &'static str {
        match self.kind {
            Kind::Scatter(_) => "scatter",
            Kind::Stages => "stages",
        }
    }

    /// [`Heard::get`], for an early stop, traced at DEBUG.
    #[inline]
    fn stop_heard() -> bool {
        heard(
            &Listeners::none(),
            tracing::enabled!(target: "steadfast::scatter", tracing::Level::DEBUG),
        )
    }

    /// Reports `event`, counted in the layer's series.
    #[cold]
    fn emit(&self, event: &Event<'_>) {
        emit_counted(&self.decisions, &Listeners::none(), event);
    }

    pub(crate) fn emit_stage(&self, heard: &mut Heard, stage: usize, branches: usize) {
        if !heard.get() {
            return;
        }
        self.emit(&Event::StageStarted {
            layer: self.policy(),
            name: &self.name,
            stage,
            branches,
        });
    }

    pub(crate) fn emit_branch(&self, heard: &mut Heard, branch: usize, verdict: Option<Verdict>) {
        if !heard.get() {
            return;
        }
        self.emit(&Event::BranchEnded {
            layer: self.policy(),
            name: &self.name,
            branch,
            verdict,
        });
    }

    pub(crate) fn emit_done(
        &self,
        heard: &mut Heard,
        answered: usize,
        failed: usize,
        stop: Option<Stop>,
    ) {
        let heard = match stop {
            Some(_) => Self::stop_heard(),
            None => heard.get(),
        };
        if !heard {
            return;
        }
        self.emit(&Event::Gathered {
            layer: self.policy(),
            name: &self.name,
            answered,
            failed,
            stop,
        });
    }
}

/// A copy for a service that changes its branches while its clones keep
/// theirs: the same settings, and a metric series table of its own.
impl<S: Clone, C: Clone, P: Clone> Clone for Plan<S, C, P> {
    fn clone(&self) -> Self {
        Self {
            services: self.services.clone(),
            stages: self.stages.clone(),
            branches: self.branches,
            widest: self.widest,
            kind: self.kind,
            branch_timeout: self.branch_timeout,
            deadline: self.deadline,
            classifier: self.classifier.clone(),
            replay: self.replay.clone(),
            name: self.name.clone(),
            decisions: Decisions::new(),
        }
    }
}

impl<S, C, P> fmt::Debug for Plan<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<Vec<_>> = self
            .stages
            .iter()
            .map(|stage| {
                stage
                    .iter()
                    .map(|b| (b.name.as_ref().map(BranchName::as_str), b.hard))
                    .collect()
            })
            .collect();
        f.debug_struct("Plan")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("stages", &names)
            .field("branch_timeout", &self.branch_timeout)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
