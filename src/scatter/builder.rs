use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::gathered::{BranchName, Gather};
use super::plan::{Kind, Plan, Spec};
use super::{Scatter, Stages};
use crate::classify::DefaultClassifier;
use crate::error::{ConfigError, check};
use crate::replay::CloneReplay;

/// A branch of a staged fan-out: a service, whether its failure stops the
/// later stages, and an optional name.
pub struct Branch<S> {
    service: S,
    name: Option<Cow<'static, str>>,
    hard: bool,
}

impl<S> Branch<S> {
    /// A branch whose failure (or timeout) stops every later stage.
    pub fn hard(service: S) -> Self {
        Self {
            service,
            name: None,
            hard: true,
        }
    }

    /// A branch whose failure is recorded while the work goes on.
    pub fn soft(service: S) -> Self {
        Self {
            service,
            name: None,
            hard: false,
        }
    }

    /// Names the branch in the gathered result: a static string, or an
    /// owned one (read from a file), stored once when built.
    pub fn named(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = Some(name.into());
        self
    }
}

impl<S> fmt::Debug for Branch<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Branch")
            .field("name", &self.name)
            .field("hard", &self.hard)
            .finish_non_exhaustive()
    }
}

/// Settings shared by both builders.
struct Common<C, P> {
    branch_timeout: Option<Duration>,
    deadline: Option<Duration>,
    name: Cow<'static, str>,
    classifier: C,
    replay: P,
}

impl Common<DefaultClassifier, CloneReplay> {
    fn new(name: &'static str) -> Self {
        Self {
            branch_timeout: None,
            deadline: None,
            name: Cow::Borrowed(name),
            classifier: DefaultClassifier,
            replay: CloneReplay,
        }
    }
}

impl<C, P> Common<C, P> {
    fn classifier<C2>(self, classifier: C2) -> Common<C2, P> {
        Common {
            branch_timeout: self.branch_timeout,
            deadline: self.deadline,
            name: self.name,
            classifier,
            replay: self.replay,
        }
    }

    fn replay<P2>(self, replay: P2) -> Common<C, P2> {
        Common {
            branch_timeout: self.branch_timeout,
            deadline: self.deadline,
            name: self.name,
            classifier: self.classifier,
            replay,
        }
    }

    fn plan<S>(
        self,
        stages: Vec<Vec<Branch<S>>>,
        kind: Kind,
        fields: [&'static str; 2],
    ) -> Result<Plan<S, C, P>, ConfigError> {
        if let Some(timeout) = self.branch_timeout {
            check::positive(fields[0], timeout)?;
        }
        if let Some(deadline) = self.deadline {
            check::positive(fields[1], deadline)?;
        }
        let mut services = Vec::with_capacity(stages.iter().map(Vec::len).sum());
        let widest = stages.iter().map(Vec::len).max().unwrap_or(0);
        let stages = stages
            .into_iter()
            .map(|stage| {
                stage
                    .into_iter()
                    .map(|b| {
                        services.push(b.service);
                        Spec {
                            name: b.name.map(BranchName::new),
                            hard: b.hard,
                            index: services.len() - 1,
                        }
                    })
                    .collect()
            })
            .collect();
        Ok(Plan {
            branches: services.len(),
            widest,
            services: services.into_boxed_slice(),
            stages,
            kind,
            branch_timeout: self.branch_timeout,
            deadline: self.deadline,
            classifier: self.classifier,
            replay: self.replay,
            name: self.name,
            decisions: crate::event::Decisions::new(),
        })
    }
}

/// Builds a [`Scatter`]; made by [`Scatter::builder`].
///
/// ```
/// use std::time::Duration;
/// use steadfast::scatter::{Gather, Scatter};
/// use tower::service_fn;
///
/// let replica = || service_fn(|key: &'static str| async move { Ok::<_, steadfast::BoxError>(key.len()) });
/// let reads = Scatter::builder()
///     .named_branch("eu", replica())
///     .named_branch("us", replica())
///     .named_branch("ap", replica())
///     .gather(Gather::Quorum(2))
///     .branch_timeout(Duration::from_millis(300))
///     .deadline(Duration::from_secs(1))
///     .build()?;
/// assert_eq!(reads.branches(), 3);
///
/// let err = Scatter::builder().branch(replica()).gather(Gather::Quorum(2)).build().unwrap_err();
/// assert_eq!(err.field(), "scatter.gather");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct ScatterBuilder<S, C = DefaultClassifier, P = CloneReplay> {
    branches: Vec<Branch<S>>,
    gather: Gather,
    common: Common<C, P>,
}

impl<S> ScatterBuilder<S> {
    pub(super) fn new() -> Self {
        Self {
            branches: Vec::new(),
            gather: Gather::All,
            common: Common::new("scatter"),
        }
    }
}

impl<S, C, P> ScatterBuilder<S, C, P> {
    /// Adds a branch.
    pub fn branch(mut self, service: S) -> Self {
        self.branches.push(Branch::soft(service));
        self
    }

    /// Adds a named branch: a static string, or an owned one (read from a
    /// file), stored once when built.
    pub fn named_branch(mut self, name: impl Into<Cow<'static, str>>, service: S) -> Self {
        self.branches.push(Branch::soft(service).named(name));
        self
    }

    /// Adds every service of `services` as a branch.
    pub fn branches(mut self, services: impl IntoIterator<Item = S>) -> Self {
        self.branches.extend(services.into_iter().map(Branch::soft));
        self
    }

    /// How many answers to wait for (default [`Gather::All`]).
    pub fn gather(mut self, gather: Gather) -> Self {
        self.gather = gather;
        self
    }

    /// Bounds each branch, its wait for readiness included: a branch still
    /// running then ends [`TimedOut`](super::Outcome::TimedOut).
    pub fn branch_timeout(mut self, timeout: Duration) -> Self {
        self.common.branch_timeout = Some(timeout);
        self
    }

    /// Bounds the whole fan-out. An earlier
    /// [`Deadline`](crate::timeout::Deadline) already in force stays in
    /// force, and one is honoured without this setting.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.common.deadline = Some(deadline);
        self
    }

    /// The name events carry (default `"scatter"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.common.name = name.into();
        self
    }

    /// Judges each branch's outcome with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> ScatterBuilder<S, C2, P> {
        ScatterBuilder {
            branches: self.branches,
            gather: self.gather,
            common: self.common.classifier(classifier),
        }
    }

    /// Copies the request for each branch with `replay`; a branch whose
    /// copy can't be made is [`NotSent`](super::Outcome::NotSent).
    pub fn replay<P2>(self, replay: P2) -> ScatterBuilder<S, C, P2> {
        ScatterBuilder {
            branches: self.branches,
            gather: self.gather,
            common: self.common.replay(replay),
        }
    }

    /// Checks the settings and builds the scatter.
    pub fn build(self) -> Result<Scatter<S, C, P>, ConfigError> {
        let count = self.branches.len();
        if count == 0 {
            return Err(ConfigError::new(
                "scatter.branches",
                0,
                "must hold at least one service",
            ));
        }
        match self.gather {
            Gather::All => {}
            Gather::Quorum(n) | Gather::FirstK(n) => {
                check::at_least("scatter.gather", n, 1)?;
                if n > count {
                    return Err(ConfigError::conflict(
                        "scatter.gather",
                        self.gather,
                        "scatter.branches",
                        count,
                        "cannot wait for more answers than there are branches",
                    ));
                }
            }
        }
        let plan = self.common.plan(
            vec![self.branches],
            Kind::Scatter(self.gather),
            ["scatter.branch_timeout", "scatter.deadline"],
        )?;
        Ok(Scatter {
            plan: Arc::new(plan),
        })
    }
}

impl<S, C, P> fmt::Debug for ScatterBuilder<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScatterBuilder")
            .field("branches", &self.branches)
            .field("gather", &self.gather)
            .field("branch_timeout", &self.common.branch_timeout)
            .field("deadline", &self.common.deadline)
            .finish_non_exhaustive()
    }
}

/// Builds [`Stages`]; made by [`Stages::builder`].
///
/// ```
/// use std::time::Duration;
/// use steadfast::scatter::{Branch, Stages};
/// use tower::service_fn;
///
/// let backend = || service_fn(|order: u32| async move { Ok::<_, steadfast::BoxError>(order) });
/// let checkout = Stages::builder()
///     .stage([Branch::hard(backend()).named("auth"), Branch::soft(backend()).named("recommend")])
///     .stage([Branch::hard(backend()).named("charge")])
///     .branch_timeout(Duration::from_millis(500))
///     .deadline(Duration::from_secs(2))
///     .build()?;
/// assert_eq!(checkout.branches(), 3);
///
/// let err = Stages::builder().stage([Branch::hard(backend())]).stage([]).build().unwrap_err();
/// assert_eq!(err.field(), "stages.stage");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct StagesBuilder<S, C = DefaultClassifier, P = CloneReplay> {
    stages: Vec<Vec<Branch<S>>>,
    common: Common<C, P>,
}

impl<S> StagesBuilder<S> {
    pub(super) fn new() -> Self {
        Self {
            stages: Vec::new(),
            common: Common::new("stages"),
        }
    }
}

impl<S, C, P> StagesBuilder<S, C, P> {
    /// Adds a stage: its branches run concurrently, after every earlier
    /// stage has ended.
    pub fn stage(mut self, branches: impl IntoIterator<Item = Branch<S>>) -> Self {
        self.stages.push(branches.into_iter().collect());
        self
    }

    /// Bounds each branch, its wait for readiness included.
    pub fn branch_timeout(mut self, timeout: Duration) -> Self {
        self.common.branch_timeout = Some(timeout);
        self
    }

    /// Bounds the whole fan-out, every stage included; an earlier
    /// [`Deadline`](crate::timeout::Deadline) already in force stays in
    /// force, and one is honoured without this setting.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.common.deadline = Some(deadline);
        self
    }

    /// The name events carry (default `"stages"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.common.name = name.into();
        self
    }

    /// Judges each branch's outcome with `classifier`.
    pub fn classifier<C2>(self, classifier: C2) -> StagesBuilder<S, C2, P> {
        StagesBuilder {
            stages: self.stages,
            common: self.common.classifier(classifier),
        }
    }

    /// Copies the request for each branch with `replay`.
    pub fn replay<P2>(self, replay: P2) -> StagesBuilder<S, C, P2> {
        StagesBuilder {
            stages: self.stages,
            common: self.common.replay(replay),
        }
    }

    /// Checks the settings and builds the stages.
    pub fn build(self) -> Result<Stages<S, C, P>, ConfigError> {
        if self.stages.is_empty() {
            return Err(ConfigError::new(
                "stages.stages",
                0,
                "must hold at least one stage",
            ));
        }
        if let Some(empty) = self.stages.iter().position(Vec::is_empty) {
            return Err(ConfigError::new(
                "stages.stage",
                empty,
                "every stage must hold at least one branch",
            ));
        }
        let plan = self.common.plan(
            self.stages,
            Kind::Stages,
            ["stages.branch_timeout", "stages.deadline"],
        )?;
        Ok(Stages {
            plan: Arc::new(plan),
        })
    }
}

impl<S, C, P> fmt::Debug for StagesBuilder<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagesBuilder")
            .field("stages", &self.stages)
            .field("branch_timeout", &self.common.branch_timeout)
            .field("deadline", &self.common.deadline)
            .finish_non_exhaustive()
    }
}
