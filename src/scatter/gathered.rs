//! What a scatter or staged fan-out gathered: every branch and its outcome.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::classify::Verdict;
use crate::error::BoxError;
pub use crate::event::{Stop, StopReason};

/// How many answers a [`Scatter`](super::Scatter) waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gather {
    /// Every branch, each bounded by the branch timeout. Satisfied when
    /// every branch answered.
    All,
    /// `n` answers. The call ends as soon as `n` branches answered (the
    /// others are cancelled) or as soon as so many failed that `n` answers
    /// can no longer come. Satisfied when `n` answered.
    Quorum(usize),
    /// The first `k` answers: the call ends as soon as `k` branches answered
    /// (the others are cancelled); failures don't end it early, so fewer
    /// answers are still gathered when fewer come. Satisfied when `k`
    /// answered.
    FirstK(usize),
}

/// How one branch ended.
#[derive(Debug)]
pub enum Outcome<Res> {
    /// The branch's service answered or failed; `verdict` judges it.
    Completed {
        /// The classifier's verdict on the outcome.
        verdict: Verdict,
        /// What the service returned.
        result: Result<Res, BoxError>,
    },
    /// The branch timeout (or the deadline) passed first.
    TimedOut,
    /// Dropped unfinished once the gather had what it needed.
    Cancelled,
    /// Never called: its stage did not run, or its request could not be
    /// copied.
    NotSent,
}

impl<Res> Outcome<Res> {
    /// The verdict: a timed-out branch is a transient failure; a cancelled
    /// or unsent branch has none.
    pub fn verdict(&self) -> Option<Verdict> {
        match self {
            Outcome::Completed { verdict, .. } => Some(*verdict),
            Outcome::TimedOut => Some(Verdict::transient()),
            Outcome::Cancelled | Outcome::NotSent => None,
        }
    }
}

/// A branch's name, stored once when the fan-out is built: a static string
/// is copied into each result, an owned one shared by them (no allocation
/// per call either way).
#[derive(Clone)]
pub(crate) enum BranchName {
    Static(&'static str),
    Shared(Arc<str>),
}

impl BranchName {
    pub(crate) fn new(name: Cow<'static, str>) -> Self {
        match name {
            Cow::Borrowed(name) => Self::Static(name),
            Cow::Owned(name) => Self::Shared(Arc::from(name)),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Static(name) => name,
            Self::Shared(name) => name,
        }
    }
}

impl fmt::Debug for BranchName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One branch of the gathered result: where it was, what it is called and
/// how it ended.
pub struct BranchOutcome<Res> {
    pub(crate) index: usize,
    pub(crate) stage: usize,
    pub(crate) name: Option<BranchName>,
    pub(crate) hard: bool,
    pub(crate) outcome: Outcome<Res>,
}

impl<Res> BranchOutcome<Res> {
    /// The branch's position, counting every branch of every stage in order.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The stage the branch belongs to (0 for a scatter).
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// The branch's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().map(BranchName::as_str)
    }

    /// Whether the branch's failure stops every later stage.
    pub fn is_hard(&self) -> bool {
        self.hard
    }

    /// How the branch ended.
    pub fn outcome(&self) -> &Outcome<Res> {
        &self.outcome
    }

    /// How the branch ended, by value.
    pub fn into_outcome(self) -> Outcome<Res> {
        self.outcome
    }

    /// The branch's verdict (see [`Outcome::verdict`]).
    pub fn verdict(&self) -> Option<Verdict> {
        self.outcome.verdict()
    }

    /// Whether the callee answered (success or functional error).
    pub fn is_answer(&self) -> bool {
        self.verdict().is_some_and(|v| v.is_answer())
    }

    /// Whether the branch failed: a failure or refusal, or a timeout.
    pub fn is_failure(&self) -> bool {
        self.verdict().is_some_and(|v| !v.is_answer())
    }

    /// The response, if the service returned one.
    pub fn response(&self) -> Option<&Res> {
        match &self.outcome {
            Outcome::Completed { result: Ok(r), .. } => Some(r),
            _ => None,
        }
    }
}

impl<Res: fmt::Debug> fmt::Debug for BranchOutcome<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BranchOutcome")
            .field("index", &self.index)
            .field("stage", &self.stage)
            .field("name", &self.name)
            .field("hard", &self.hard)
            .field("outcome", &self.outcome)
            .finish()
    }
}

/// The result of a scatter-gather or a staged fan-out: every branch, by
/// index and name, with its outcome; where it stopped, and whether it got
/// what it needed.
pub struct Gathered<Res> {
    pub(crate) branches: Vec<BranchOutcome<Res>>,
    pub(crate) stop: Option<Stop>,
    pub(crate) satisfied: bool,
}

impl<Res> Gathered<Res> {
    /// Every branch, in order.
    pub fn branches(&self) -> &[BranchOutcome<Res>] {
        &self.branches
    }

    /// Every branch, by value.
    pub fn into_branches(self) -> Vec<BranchOutcome<Res>> {
        self.branches
    }

    /// The branch at `index`.
    pub fn get(&self, index: usize) -> Option<&BranchOutcome<Res>> {
        self.branches.get(index)
    }

    /// The first branch named `name`.
    pub fn by_name(&self, name: &str) -> Option<&BranchOutcome<Res>> {
        self.branches.iter().find(|b| b.name() == Some(name))
    }

    /// The branches that answered.
    pub fn answers(&self) -> impl Iterator<Item = &BranchOutcome<Res>> {
        self.branches.iter().filter(|b| b.is_answer())
    }

    /// The branches that failed or timed out.
    pub fn failures(&self) -> impl Iterator<Item = &BranchOutcome<Res>> {
        self.branches.iter().filter(|b| b.is_failure())
    }

    /// Where and why it stopped early; `None` when every stage ran and no
    /// branch was cancelled.
    pub fn stopped(&self) -> Option<Stop> {
        self.stop
    }

    /// Whether it got what it needed: for a scatter, the answers its
    /// [`Gather`] mode asks for; for stages, every stage ran (no hard
    /// failure, no deadline), whatever soft branches failed.
    pub fn is_satisfied(&self) -> bool {
        self.satisfied
    }
}

impl<Res: fmt::Debug> fmt::Debug for Gathered<Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gathered")
            .field("satisfied", &self.satisfied)
            .field("stopped", &self.stop)
            .field("branches", &self.branches)
            .finish()
    }
}
