//! Staged fan-out: stages in order, hard and soft stops, one deadline.

use std::time::Duration;

use steadfast::BoxError;
use steadfast::scatter::{Branch, Outcome, Stages, StopReason};
use steadfast::timeout::{Deadline, TotalDeadlineLayer};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

use super::{Log, branch, ms};

#[tokio::test(start_paused = true)]
async fn stages_run_in_order_and_soft_failures_are_recorded() {
    let log = Log::default();
    let svc = Stages::builder()
        .stage([
            Branch::hard(branch(&log, 1, 20, true)).named("auth"),
            Branch::soft(branch(&log, 2, 10, false)).named("ads"),
        ])
        .stage([
            Branch::hard(branch(&log, 3, 30, true)).named("stock"),
            Branch::soft(branch(&log, 4, 5, true)).named("reviews"),
        ])
        .stage([Branch::hard(branch(&log, 5, 10, true)).named("charge")])
        .build()
        .unwrap();
    let started = Instant::now();
    let Ok(g) = svc.oneshot(1).await;
    // 20 ms, then 30 ms, then 10 ms: stages in series, branches in parallel.
    assert_eq!(started.elapsed(), ms(60));
    assert_eq!(log.calls(), 5);
    assert!(g.is_satisfied());
    assert_eq!(g.stopped(), None);
    let failed: Vec<_> = g
        .failures()
        .map(|b| (b.name(), b.stage(), b.is_hard()))
        .collect();
    assert_eq!(failed, [(Some("ads"), 0, false)]);
    assert_eq!(g.by_name("charge").unwrap().response(), Some(&15));
    assert_eq!(g.by_name("charge").unwrap().stage(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hard_failure_stops_every_later_stage() {
    let log = Log::default();
    let svc = Stages::builder()
        .stage([Branch::hard(branch(&log, 1, 10, true)).named("auth")])
        .stage([
            Branch::hard(branch(&log, 2, 5, false)).named("stock"),
            Branch::soft(branch(&log, 3, 40, true)).named("reviews"),
        ])
        .stage([
            Branch::hard(branch(&log, 4, 10, true)).named("charge"),
            Branch::soft(branch(&log, 5, 10, true)).named("email"),
        ])
        .build()
        .unwrap();
    let started = Instant::now();
    let Ok(g) = svc.oneshot(1).await;
    // Its own stage's other branch finishes; the last stage never starts.
    assert_eq!(started.elapsed(), ms(50));
    assert_eq!(log.calls(), 3);
    assert!(!g.is_satisfied());
    let stop = g.stopped().unwrap();
    assert_eq!(stop.stage(), 1);
    assert_eq!(stop.reason(), StopReason::HardFailure { branch: 1 });
    assert!(g.by_name("reviews").unwrap().is_answer());
    for name in ["charge", "email"] {
        assert!(matches!(
            g.by_name(name).unwrap().outcome(),
            Outcome::NotSent
        ));
    }
    let failed: Vec<_> = g.failures().filter_map(|b| b.name()).collect();
    assert_eq!(failed, ["stock"]);
}

#[tokio::test(start_paused = true)]
async fn a_hard_branch_timing_out_is_a_hard_failure() {
    let log = Log::default();
    let svc = Stages::builder()
        .stage([Branch::hard(branch(&log, 1, 1_000, true))])
        .stage([Branch::soft(branch(&log, 2, 10, true))])
        .branch_timeout(ms(100))
        .build()
        .unwrap();
    let Ok(g) = svc.oneshot(1).await;
    assert!(matches!(g.get(0).unwrap().outcome(), Outcome::TimedOut));
    assert_eq!(
        g.stopped().unwrap().reason(),
        StopReason::HardFailure { branch: 0 }
    );
    assert_eq!(log.cancelled(), 1);
    assert_eq!(log.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn one_deadline_bounds_every_stage() {
    let log = Log::default();
    let svc = Stages::builder()
        .stage([Branch::soft(branch(&log, 1, 60, true))])
        .stage([
            Branch::soft(branch(&log, 2, 20, true)),
            Branch::soft(branch(&log, 3, 200, true)),
        ])
        .stage([Branch::soft(branch(&log, 4, 10, true))])
        .deadline(ms(100))
        .build()
        .unwrap();
    let started = Instant::now();
    let Ok(g) = svc.oneshot(1).await;
    assert_eq!(started.elapsed(), ms(100));
    assert!(g.get(1).unwrap().is_answer());
    assert!(matches!(g.get(2).unwrap().outcome(), Outcome::TimedOut));
    assert!(matches!(g.get(3).unwrap().outcome(), Outcome::NotSent));
    let stop = g.stopped().unwrap();
    assert_eq!((stop.stage(), stop.reason()), (1, StopReason::Deadline));
    assert_eq!(log.cancelled(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_enclosing_deadline_is_honoured_and_shown_to_branches() {
    // Each branch reports the time left to it.
    let left = || {
        service_fn(|_: ()| async {
            tokio::time::sleep(ms(30)).await;
            Ok::<_, BoxError>(Deadline::current().map(Deadline::remaining))
        })
    };
    let stages = Stages::builder()
        .stage([Branch::soft(left())])
        .stage([Branch::soft(left())])
        .stage([Branch::soft(left())])
        .build()
        .unwrap();
    // An outer total deadline of 70 ms: the third stage starts at 60 ms and
    // is cut at 70 ms.
    let svc = TotalDeadlineLayer::new(ms(70))
        .unwrap()
        .layer(stages.clone());
    let g = svc.oneshot(()).await.unwrap();
    assert_eq!(g.get(0).unwrap().response(), Some(&Some(ms(40))));
    assert_eq!(g.get(1).unwrap().response(), Some(&Some(ms(10))));
    assert!(matches!(g.get(2).unwrap().outcome(), Outcome::TimedOut));
    assert_eq!(g.stopped().unwrap().reason(), StopReason::Deadline);

    // Its own deadline is visible to the branches too.
    let own = Stages::builder()
        .stage([Branch::soft(left())])
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let Ok(g) = own.oneshot(()).await;
    assert_eq!(g.get(0).unwrap().response(), Some(&Some(ms(970))));
}
