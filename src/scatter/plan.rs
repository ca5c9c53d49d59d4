//! The branches of a fan-out and its settings, shared by every call.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use super::gathered::{Gather, Stop};
use crate::classify::Verdict;

/// Scatter (one stage, a gather mode) or stages (hard and soft stops).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Scatter(Gather),
    Stages,
}

pub(crate) struct Spec<S> {
    pub(crate) service: S,
    pub(crate) name: Option<&'static str>,
    pub(crate) hard: bool,
    pub(crate) index: usize,
}

pub(crate) struct Plan<S, C, P> {
    pub(crate) stages: Box<[Box<[Spec<S>]>]>,
    pub(crate) branches: usize,
    pub(crate) kind: Kind,
    pub(crate) branch_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    pub(crate) classifier: C,
    pub(crate) replay: P,
    pub(crate) name: Cow<'static, str>,
}

impl<S, C, P> Plan<S, C, P> {
    fn policy(&self) -> &'static str {
        match self.kind {
            Kind::Scatter(_) => "scatter",
            Kind::Stages => "stages",
        }
    }

    pub(crate) fn emit_stage(&self, stage: usize, branches: usize) {
        tracing::trace!(
            target: "steadfast::scatter",
            layer = self.policy(),
            name = &*self.name,
            stage,
            branches,
            "stage started"
        );
    }

    pub(crate) fn emit_branch(&self, branch: usize, verdict: Option<Verdict>) {
        tracing::trace!(
            target: "steadfast::scatter",
            layer = self.policy(),
            name = &*self.name,
            branch,
            verdict = verdict.map_or("none", |v| v.as_str()),
            "branch ended"
        );
    }

    pub(crate) fn emit_done(&self, answered: usize, failed: usize, stop: Option<Stop>) {
        match stop {
            Some(stop) => tracing::debug!(
                target: "steadfast::scatter",
                layer = self.policy(),
                name = &*self.name,
                answered,
                failed,
                stage = stop.stage(),
                reason = ?stop.reason(),
                "stopped early"
            ),
            None => tracing::trace!(
                target: "steadfast::scatter",
                layer = self.policy(),
                name = &*self.name,
                answered,
                failed,
                "gathered"
            ),
        }
    }
}

impl<S, C, P> fmt::Debug for Plan<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<Vec<_>> = self
            .stages
            .iter()
            .map(|stage| stage.iter().map(|b| (b.name, b.hard)).collect())
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
