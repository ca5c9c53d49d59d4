//! Scatter-gather (all, quorum, first k) and staged fan-out (hard and soft
//! stops, one deadline), on paused time.

mod stages;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::classify::Verdict;
use steadfast::scatter::{Gather, Outcome, Scatter, Stages, StopReason};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Counts calls dropped before they finished.
pub(crate) struct Guard(Arc<AtomicUsize>, bool);

impl Guard {
    fn finish(&mut self) {
        self.1 = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Shared counters of every branch of a test.
#[derive(Clone, Default)]
pub(crate) struct Log {
    pub(crate) calls: Arc<AtomicUsize>,
    pub(crate) cancelled: Arc<AtomicUsize>,
}

impl Log {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// A branch that answers `x * 10 + tag`, or fails, after `ms`.
pub(crate) fn branch(
    log: &Log,
    tag: u32,
    ms: u64,
    ok: bool,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + use<> {
    let log = log.clone();
    service_fn(move |x: u32| {
        log.calls.fetch_add(1, Ordering::SeqCst);
        let mut guard = Guard(log.cancelled.clone(), false);
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            guard.finish();
            if ok {
                Ok(x * 10 + tag)
            } else {
                Err(BoxError::from("down"))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn all_waits_for_every_branch_and_names_each() {
    let log = Log::default();
    let svc = Scatter::builder()
        .named_branch("a", branch(&log, 1, 30, true))
        .named_branch("b", branch(&log, 2, 10, false))
        .named_branch("c", branch(&log, 3, 20, true))
        .build()
        .unwrap();
    let started = Instant::now();
    let Ok(g) = svc.oneshot(4).await;
    assert_eq!(started.elapsed(), ms(30));
    assert_eq!(g.branches().len(), 3);
    assert_eq!(g.get(0).unwrap().response(), Some(&41));
    assert_eq!(g.by_name("c").unwrap().response(), Some(&43));
    let b = g.by_name("b").unwrap();
    assert_eq!((b.index(), b.stage()), (1, 0));
    assert_eq!(b.verdict(), Some(Verdict::transient()));
    assert!(
        matches!(b.outcome(), Outcome::Completed { result: Err(e), .. } if e.to_string() == "down")
    );
    assert!(!g.is_satisfied(), "one branch failed");
    assert_eq!(g.stopped(), None);
    assert_eq!(log.cancelled(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_branch_past_its_timeout_is_timed_out() {
    let log = Log::default();
    let svc = Scatter::builder()
        .branch(branch(&log, 1, 10, true))
        .branch(branch(&log, 2, 1_000, true))
        .branch_timeout(ms(100))
        .build()
        .unwrap();
    let started = Instant::now();
    let Ok(g) = svc.oneshot(0).await;
    assert_eq!(started.elapsed(), ms(100));
    assert!(g.get(0).unwrap().is_answer());
    assert!(matches!(g.get(1).unwrap().outcome(), Outcome::TimedOut));
    assert!(g.get(1).unwrap().is_failure());
    assert_eq!(g.failures().count(), 1);
    assert_eq!(log.cancelled(), 1);
    assert!(!g.is_satisfied());
}

#[tokio::test(start_paused = true)]
async fn a_quorum_ends_the_call_and_cancels_the_rest() {
    let log = Log::default();
    let svc = Scatter::builder()
        .branch(branch(&log, 1, 40, true))
        .branch(branch(&log, 2, 10, true))
        .branch(branch(&log, 3, 500, true))
        .branch(branch(&log, 4, 5, false))
        .gather(Gather::Quorum(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let Ok(g) = svc.oneshot(1).await;
    assert_eq!(started.elapsed(), ms(40));
    assert!(g.is_satisfied());
    let answers: Vec<_> = g.answers().map(|b| b.index()).collect();
    assert_eq!(answers, [0, 1]);
    assert!(matches!(g.get(2).unwrap().outcome(), Outcome::Cancelled));
    assert!(g.get(3).unwrap().is_failure());
    let stop = g.stopped().unwrap();
    assert_eq!((stop.stage(), stop.reason()), (0, StopReason::Gathered));
    assert_eq!(log.cancelled(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_quorum_out_of_reach_ends_early() {
    let log = Log::default();
    let svc = Scatter::builder()
        .branch(branch(&log, 1, 5, false))
        .branch(branch(&log, 2, 10, false))
        .branch(branch(&log, 3, 500, true))
        .gather(Gather::Quorum(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let Ok(g) = svc.oneshot(1).await;
    // Two failures out of three: two answers can't come any more.
    assert_eq!(started.elapsed(), ms(10));
    assert!(!g.is_satisfied());
    assert_eq!(g.stopped().unwrap().reason(), StopReason::Unreachable);
    assert!(matches!(g.get(2).unwrap().outcome(), Outcome::Cancelled));
    assert_eq!(log.cancelled(), 1);
}

#[tokio::test(start_paused = true)]
async fn first_k_takes_the_fastest_answers_past_failures() {
    let log = Log::default();
    let svc = Scatter::builder()
        .branch(branch(&log, 1, 5, false))
        .branch(branch(&log, 2, 100, true))
        .branch(branch(&log, 3, 10, true))
        .branch(branch(&log, 4, 50, true))
        .gather(Gather::FirstK(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let Ok(g) = svc.oneshot(1).await;
    assert_eq!(started.elapsed(), ms(50));
    assert!(g.is_satisfied());
    let answers: Vec<_> = g.answers().map(|b| *b.response().unwrap()).collect();
    assert_eq!(answers, [13, 14]);
    assert!(matches!(g.get(1).unwrap().outcome(), Outcome::Cancelled));

    // Fewer answers than k: it gathers what comes, unsatisfied.
    let log = Log::default();
    let svc = Scatter::builder()
        .branch(branch(&log, 1, 5, false))
        .branch(branch(&log, 2, 10, false))
        .branch(branch(&log, 3, 30, true))
        .gather(Gather::FirstK(2))
        .build()
        .unwrap();
    let Ok(g) = svc.oneshot(1).await;
    assert_eq!(g.answers().count(), 1);
    assert!(!g.is_satisfied());
    assert_eq!(g.stopped(), None);
    assert_eq!(log.cancelled(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_custom_classifier_judges_each_branch() {
    let log = Log::default();
    // Odd answers are functional errors: still answers.
    let svc = Scatter::builder()
        .branch(branch(&log, 1, 5, true))
        .branch(branch(&log, 2, 5, true))
        .classifier(|outcome: Result<&u32, &BoxError>| match outcome {
            Ok(n) if n % 2 == 1 => Verdict::FunctionalError,
            Ok(_) => Verdict::Success,
            Err(_) => Verdict::Failure,
        })
        .build()
        .unwrap();
    let Ok(g) = svc.oneshot(0).await;
    assert_eq!(g.get(0).unwrap().verdict(), Some(Verdict::FunctionalError));
    assert_eq!(g.get(1).unwrap().verdict(), Some(Verdict::Success));
    assert!(g.is_satisfied());
}

#[test]
fn bad_settings_fail_at_build_time() {
    let log = Log::default();
    let two = || {
        Scatter::builder()
            .branch(branch(&log, 1, 1, true))
            .branch(branch(&log, 2, 1, true))
    };
    let err = two().gather(Gather::Quorum(3)).build().unwrap_err();
    assert_eq!(err.field(), "scatter.gather");
    assert_eq!(err.other(), Some(("scatter.branches", "2")));
    assert_eq!(
        two().gather(Gather::FirstK(3)).build().unwrap_err().field(),
        "scatter.gather"
    );
    assert_eq!(
        two().gather(Gather::Quorum(0)).build().unwrap_err().field(),
        "scatter.gather"
    );
    assert!(two().gather(Gather::Quorum(2)).build().is_ok());
    assert_eq!(
        two()
            .branch_timeout(Duration::ZERO)
            .build()
            .unwrap_err()
            .field(),
        "scatter.branch_timeout"
    );
    let none = Scatter::builder()
        .branches(Vec::<tower::util::BoxCloneService<u32, u32, BoxError>>::new())
        .build();
    assert_eq!(none.unwrap_err().field(), "scatter.branches");

    let no_stages = Stages::<tower::util::BoxCloneService<u32, u32, BoxError>>::builder().build();
    assert_eq!(no_stages.unwrap_err().field(), "stages.stages");
    let empty_stage = Stages::builder()
        .stage([steadfast::scatter::Branch::hard(branch(&log, 1, 1, true))])
        .stage([])
        .build();
    assert_eq!(empty_stage.unwrap_err().field(), "stages.stage");
    let zero_deadline = Stages::builder()
        .stage([steadfast::scatter::Branch::hard(branch(&log, 1, 1, true))])
        .deadline(Duration::ZERO)
        .build();
    assert_eq!(zero_deadline.unwrap_err().field(), "stages.deadline");
}
