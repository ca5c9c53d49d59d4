//! Scatter-gather and staged fan-out: call several services for one
//! request and gather what each said.
//!
//! [`Scatter`] sends a copy of the request to every branch at once and
//! gathers by its [`Gather`] mode: [`All`](Gather::All) branches, a
//! [`Quorum`](Gather::Quorum) of answers (ending early, unsatisfied, once
//! it can no longer be reached) or the [`FirstK`](Gather::FirstK) answers;
//! branches no longer needed are cancelled.
//!
//! [`Stages`] runs ordered stages of branches: the branches of a stage run
//! concurrently, stages one after another. A [`hard`](Branch::hard)
//! branch's failure stops every later stage (its own stage's branches still
//! finish); a [`soft`](Branch::soft) branch's failure is recorded and the
//! work goes on. This is how nine back-end calls run in serial buckets of
//! concurrent calls.
//!
//! Both bound each branch by an optional
//! [`branch_timeout`](ScatterBuilder::branch_timeout) (readiness included)
//! and the whole fan-out by one deadline: their own
//! [`deadline`](StagesBuilder::deadline), the
//! [`Deadline`](crate::timeout::Deadline) of an enclosing total deadline,
//! whichever comes first; the branches see it through
//! [`Deadline::current`](crate::timeout::Deadline::current). The call
//! never fails: it answers a [`Gathered`] result naming every branch (by
//! index and optional name), its [`Outcome`] and verdict, where the
//! fan-out [`stopped`](Gathered::stopped) and whether it was
//! [`satisfied`](Gathered::is_satisfied).
//!
//! Every branch gets a copy of the request made by a
//! [`Replay`] (a clone by default); branch services
//! are cloned when their stage starts and made ready inside the call's
//! future, so [`poll_ready`](tower_service::Service::poll_ready) is always
//! ready. Branches of one type: for services of different types, box them
//! (`tower::util::BoxCloneService`) or map each request with
//! `ServiceBuilder::map_request`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::scatter::{Gather, Scatter};
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let replica = |ms: u64| {
//!     service_fn(move |key: &'static str| async move {
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, steadfast::BoxError>(format!("{key}@{ms}"))
//!     })
//! };
//! // Read from three replicas, keep the first two answers.
//! let reads = Scatter::builder()
//!     .named_branch("eu", replica(30))
//!     .named_branch("us", replica(10))
//!     .named_branch("ap", replica(500))
//!     .gather(Gather::Quorum(2))
//!     .branch_timeout(Duration::from_secs(1))
//!     .build()?;
//!
//! let Ok(gathered) = reads.oneshot("k").await;
//! assert!(gathered.is_satisfied());
//! let answers: Vec<_> = gathered.answers().filter_map(|b| b.name()).collect();
//! assert_eq!(answers, ["eu", "us"]);
//! assert!(gathered.by_name("ap").unwrap().outcome().verdict().is_none()); // cancelled
//! # Ok(())
//! # }
//! ```
//!
//! # Stages with hard and soft branches under one deadline
//!
//! ```
//! use std::time::Duration;
//! use steadfast::scatter::{Branch, Stages, StopReason};
//! use tower::{ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let backend = |fails: bool| {
//!     service_fn(move |order: u32| async move {
//!         if fails { Err(steadfast::BoxError::from("down")) } else { Ok(order) }
//!     })
//! };
//! let checkout = Stages::builder()
//!     .stage([Branch::hard(backend(false)).named("auth"), Branch::soft(backend(true)).named("recommend")])
//!     .stage([Branch::hard(backend(true)).named("stock")])
//!     .stage([Branch::hard(backend(false)).named("charge")])
//!     .branch_timeout(Duration::from_millis(500))
//!     .deadline(Duration::from_secs(2))
//!     .build()?;
//!
//! let Ok(gathered) = checkout.oneshot(7).await;
//! // The soft failure was recorded and the work went on; the hard one
//! // stopped it before the charge.
//! let failed: Vec<_> = gathered.failures().filter_map(|b| b.name()).collect();
//! assert_eq!(failed, ["recommend", "stock"]);
//! let stop = gathered.stopped().unwrap();
//! assert_eq!((stop.stage(), stop.reason()), (1, StopReason::HardFailure { branch: 2 }));
//! assert!(!gathered.is_satisfied());
//!
//! // A quorum larger than the branches fails when built.
//! use steadfast::scatter::{Gather, Scatter};
//! let err = Scatter::builder().branch(backend(false)).gather(Gather::Quorum(2)).build();
//! assert_eq!(err.unwrap_err().field(), "scatter.gather");
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use crate::classify::{Classify, DefaultClassifier};
use crate::error::{BoxError, ConfigError};
use crate::replay::{CloneReplay, Replay};

mod builder;
pub mod future;
mod gathered;
mod plan;

pub use self::builder::{Branch, ScatterBuilder, StagesBuilder};
pub use self::gathered::{BranchOutcome, Gather, Gathered, Outcome, Stop, StopReason};

use self::plan::Plan;

/// Sends one request to several branches at once and gathers their
/// outcomes. Made by [`Scatter::builder`].
pub struct Scatter<S, C = DefaultClassifier, P = CloneReplay> {
    plan: Arc<Plan<S, C, P>>,
}

impl<S> Scatter<S> {
    /// Starts building a scatter: add branches, then choose how to gather.
    pub fn builder() -> ScatterBuilder<S> {
        ScatterBuilder::new()
    }

    /// A scatter over `branches` with the default settings: every branch
    /// gathered, no timeout, requests cloned
    /// (`Scatter::builder().branches(branches).build()`). Fails if
    /// `branches` is empty.
    ///
    /// ```
    /// use steadfast::scatter::Scatter;
    /// use tower::{ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), steadfast::BoxError> {
    /// let shard = |n: u32| service_fn(move |x: u32| async move { Ok::<_, steadfast::BoxError>(x * n) });
    /// let mut scatter = Scatter::new([shard(1), shard(2)])?;
    /// assert_eq!(scatter.get_ref().len(), 2);
    /// scatter.get_mut().swap(0, 1);
    /// let Ok(gathered) = scatter.clone().oneshot(5).await;
    /// let answers: Vec<_> = gathered.answers().filter_map(|b| b.response()).collect();
    /// assert_eq!(answers, [&10, &5]);
    /// assert_eq!(scatter.into_inner().len(), 2);
    ///
    /// assert_eq!(Scatter::<()>::new([]).unwrap_err().field(), "scatter.branches");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(branches: impl IntoIterator<Item = S>) -> Result<Self, ConfigError> {
        Self::builder().branches(branches).build()
    }
}

/// Runs stages of concurrent branches in order, stopping at a hard
/// branch's failure. Made by [`Stages::builder`].
pub struct Stages<S, C = DefaultClassifier, P = CloneReplay> {
    plan: Arc<Plan<S, C, P>>,
}

impl<S> Stages<S> {
    /// Starts building stages: add them in order.
    pub fn builder() -> StagesBuilder<S> {
        StagesBuilder::new()
    }

    /// Stages of `stages`' branches, in order, with the default settings:
    /// no timeout, no deadline of their own, requests cloned (a
    /// [`stage`](StagesBuilder::stage) of the builder for each). Fails if
    /// there is no stage, or a stage without a branch.
    ///
    /// ```
    /// use steadfast::scatter::{Branch, Stages};
    /// use tower::{ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), steadfast::BoxError> {
    /// let step = || service_fn(|x: u32| async move { Ok::<_, steadfast::BoxError>(x + 1) });
    /// let stages = Stages::new([vec![Branch::hard(step())], vec![Branch::soft(step()), Branch::soft(step())]])?;
    /// assert_eq!(stages.get_ref().len(), 3);
    /// let Ok(gathered) = stages.oneshot(1).await;
    /// assert!(gathered.is_satisfied());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new<I>(stages: impl IntoIterator<Item = I>) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = Branch<S>>,
    {
        stages
            .into_iter()
            .fold(Self::builder(), |builder, stage| builder.stage(stage))
            .build()
    }
}

macro_rules! fan_out_service {
    ($name:ident) => {
        impl<S, C, P> $name<S, C, P> {
            /// How many branches there are, over every stage.
            pub fn branches(&self) -> usize {
                self.plan.branches
            }

            /// Every branch's service, by index: every stage's, in order.
            pub fn get_ref(&self) -> &[S] {
                &self.plan.services
            }

            /// Every branch's service, by index, mutably. The branches are
            /// shared with this service's clones (and their calls in
            /// flight): if they are, this service first takes copies of
            /// its own (as [`Arc::make_mut`] does), which the clones don't
            /// see.
            pub fn get_mut(&mut self) -> &mut [S]
            where
                S: Clone,
                C: Clone,
                P: Clone,
            {
                &mut Arc::make_mut(&mut self.plan).services
            }

            /// Every branch's service, by index: moved out if no clone
            /// shares them, cloned otherwise.
            pub fn into_inner(self) -> Vec<S>
            where
                S: Clone,
            {
                match Arc::try_unwrap(self.plan) {
                    Ok(plan) => plan.services.into_vec(),
                    Err(shared) => shared.services.to_vec(),
                }
            }
        }

        impl<S, C, P> Clone for $name<S, C, P> {
            fn clone(&self) -> Self {
                Self {
                    plan: Arc::clone(&self.plan),
                }
            }
        }

        impl<S, C, P> fmt::Debug for $name<S, C, P> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("plan", &self.plan)
                    .finish()
            }
        }

        impl<S, Req, C, P> Service<Req> for $name<S, C, P>
        where
            S: Service<Req> + Clone,
            S::Error: Into<BoxError> + 'static,
            C: Classify<Req, S::Response, S::Error>,
            P: Replay<Req>,
        {
            type Response = Gathered<S::Response>;
            type Error = Infallible;
            type Future = future::GatherFuture<S, Req, C, P>;

            /// Always ready: each branch is made ready inside the call.
            #[inline]
            fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, request: Req) -> Self::Future {
                future::GatherFuture::new(Arc::clone(&self.plan), request)
            }
        }
    };
}

fan_out_service!(Scatter);
fan_out_service!(Stages);
