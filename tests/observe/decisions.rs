//! Every decision of a layer reaches the listeners of the call it is made
//! in, as an `Event`: attempt timeouts, a bulkhead's admission after a wait,
//! a hedge's refusals, failures and wins, a skipped alternate, chaos
//! faults, an unknown rate-limit tier and a scatter's stages, branches and
//! gathering.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use steadfast::BoxError;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::chaos::ChaosLayer;
use steadfast::fallback::FallbackLayer;
use steadfast::hedge::HedgeLayer;
use steadfast::observe::{
    ChaosFault, Event, HedgeRefusal, ObserveLayer, SkipReason, TimeoutReason,
};
use steadfast::rate_limit::{Quota, RateLimitLayer};
use steadfast::retry::NoReplay;
use steadfast::scatter::{Gather, Scatter, StopReason};
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use crate::{ms, slow};

type Log = Arc<Mutex<Vec<String>>>;

/// An observe layer whose listener writes each event as `kind: detail`.
fn observed(log: &Log) -> ObserveLayer {
    let log = Arc::clone(log);
    ObserveLayer::builder("decisions")
        .on_event(move |event| {
            let detail = match *event {
                Event::AttemptTimedOut { name, reason } => format!("{name} {reason}"),
                Event::AdmittedAfterWait { name, key, waited } => {
                    format!("{name} {key:?} {waited:?}")
                }
                Event::HedgeRefused {
                    layer,
                    name,
                    copy,
                    reason,
                } => format!("{layer} {name} copy {copy} {reason}"),
                Event::HedgeFailed {
                    layer,
                    name,
                    copies,
                    verdict,
                } => format!("{layer} {name} {copies} copies {verdict}"),
                Event::HedgeWon { name, copy } => format!("{name} copy {copy}"),
                Event::FallbackSkipped {
                    name,
                    source,
                    reason,
                } => format!("{name} {source} {reason}"),
                Event::FaultInjected { name, fault, delay } => {
                    format!("{name} {fault} {delay:?}")
                }
                Event::UnknownTier { tier } => format!("default {tier}"),
                Event::StageStarted {
                    layer,
                    name,
                    stage,
                    branches,
                } => format!("{layer} {name} stage {stage} of {branches}"),
                Event::BranchEnded {
                    layer,
                    branch,
                    verdict,
                    ..
                } => format!("{layer} branch {branch} {verdict:?}"),
                Event::Gathered {
                    layer,
                    answered,
                    failed,
                    stop,
                    ..
                } => format!(
                    "{layer} {answered} answered {failed} failed {:?}",
                    stop.map(|s| (s.stage(), s.reason()))
                ),
                _ => String::new(),
            };
            log.lock()
                .unwrap()
                .push(format!("{}: {detail}", event.kind()));
        })
        .build()
        .unwrap()
}

/// The logged events of `kind`.
fn of(log: &Log, kind: &str) -> Vec<String> {
    let prefix = format!("{kind}: ");
    log.lock()
        .unwrap()
        .iter()
        .filter_map(|e| e.strip_prefix(&prefix).map(str::to_owned))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_an_event() {
    let log = Log::default();
    let svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(TimeoutLayer::new(ms(100)).unwrap())
        .service(slow(ms(500)));
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(of(&log, "attempt_timed_out"), ["timeout attempt_timeout"]);
    assert_eq!(TimeoutReason::Elapsed, "attempt_timeout");
}

#[tokio::test(start_paused = true)]
async fn an_attempt_cut_by_the_total_deadline_is_an_event() {
    let log = Log::default();
    let svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(TotalDeadlineLayer::new(ms(50)).unwrap())
        .layer(TimeoutLayer::new(ms(100)).unwrap())
        .service(slow(ms(500)));
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(of(&log, "attempt_timed_out"), ["timeout cut_by_deadline"]);
    // The deadline's own refusal is reported as before.
    assert_eq!(of(&log, "rejected").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_admitted_after_waiting_for_a_permit_is_an_event() {
    let log = Log::default();
    let svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(
            BulkheadLayer::builder()
                .max_concurrent(1)
                .max_wait(ms(1_000))
                .build()
                .unwrap(),
        )
        .service(slow(ms(100)));
    let (a, b) = tokio::join!(svc.clone().oneshot(1), svc.oneshot(2));
    assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
    assert_eq!(of(&log, "admitted_after_wait"), ["bulkhead None 100ms"]);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_sends_no_copy_to_a_failing_target_says_so_and_that_all_failed() {
    let log = Log::default();
    let failing = service_fn(|_: u32| async {
        tokio::time::sleep(ms(5)).await;
        Err::<u32, BoxError>("connection reset".into())
    });
    let svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(
            HedgeLayer::builder()
                .delay(ms(50))
                .unlimited_budget()
                .build()
                .unwrap(),
        )
        .service(failing);
    assert!(svc.oneshot(1).await.is_err());
    assert_eq!(
        of(&log, "hedge_refused"),
        ["hedge hedge copy 1 target_failing"]
    );
    assert_eq!(of(&log, "hedge_failed"), ["hedge hedge 1 copies transient"]);
    assert_eq!(HedgeRefusal::TargetFailing, "target_failing");
}

#[tokio::test(start_paused = true)]
async fn a_hedge_that_cannot_copy_the_request_again_says_so() {
    let log = Log::default();
    // The request can be copied once: for the first hedge, not the second.
    let copies = Arc::new(AtomicU32::new(0));
    let once = move |x: &u32| (copies.fetch_add(1, Ordering::SeqCst) == 0).then_some(*x);
    let svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(
            HedgeLayer::builder()
                .delay(ms(50))
                .max_hedges(2)
                .unlimited_budget()
                .replay(once)
                .build()
                .unwrap(),
        )
        .service(slow(ms(500)));
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    assert_eq!(of(&log, "hedge_sent").len(), 1);
    assert_eq!(
        of(&log, "hedge_refused"),
        ["hedge hedge copy 2 not_replayable"]
    );

    // A request that cannot be copied at all gets no copy, and says so.
    log.lock().unwrap().clear();
    let svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(
            HedgeLayer::builder()
                .delay(ms(50))
                .unlimited_budget()
                .replay(NoReplay)
                .build()
                .unwrap(),
        )
        .service(slow(ms(100)));
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    assert!(of(&log, "hedge_sent").is_empty());
    assert_eq!(
        of(&log, "hedge_refused"),
        ["hedge hedge copy 1 not_replayable"]
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_request_winning_after_a_copy_left_is_an_event_and_alone_is_none() {
    let log = Log::default();
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    // The first request answers at 60 ms, its copy (sent at 50 ms) later.
    let backend = service_fn(move |x: u32| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(ms(if n == 0 { 60 } else { 100 })).await;
            Ok::<u32, BoxError>(x)
        }
    });
    let hedge = HedgeLayer::builder()
        .delay(ms(50))
        .unlimited_budget()
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(hedge.clone())
        .service(backend);
    assert_eq!(svc.oneshot(1).await.unwrap(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(of(&log, "hedge_sent").len(), 1);
    assert_eq!(of(&log, "hedge_won"), ["hedge copy 0"]);

    // Answered before the delay: no copy, no event of the hedge.
    log.lock().unwrap().clear();
    let svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(hedge)
        .service(slow(ms(10)));
    assert_eq!(svc.oneshot(2).await.unwrap(), 2);
    assert_eq!(*log.lock().unwrap(), ["call_ended: "]);
}

#[tokio::test(start_paused = true)]
async fn an_alternate_skipped_for_a_request_it_cannot_copy_is_an_event() {
    let log = Log::default();
    let alternate = service_fn(|x: u32| async move { Ok::<u32, BoxError>(x + 100) });
    let svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(
            FallbackLayer::builder()
                .alternate(alternate)
                .replay(NoReplay)
                .build()
                .unwrap(),
        )
        .service(service_fn(|_: u32| async {
            Err::<u32, BoxError>("primary down".into())
        }));
    assert_eq!(
        svc.oneshot(1).await.unwrap_err().to_string(),
        "primary down"
    );
    assert_eq!(
        of(&log, "fallback_skipped"),
        ["fallback alternate not_replayable"]
    );
    assert_eq!(of(&log, "fallback_missed").len(), 1);
    assert_eq!(SkipReason::NotReplayable, "not_replayable");
}

#[tokio::test(start_paused = true)]
async fn an_injected_fault_is_an_event() {
    let log = Log::default();
    let mut svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(ChaosLayer::builder().error_rate(1.0).build().unwrap())
        .service(slow(ms(1)));
    for n in 0..3 {
        assert!(svc.ready().await.unwrap().call(n).await.is_err());
    }
    assert_eq!(of(&log, "fault_injected"), ["chaos error None"; 3]);
    assert_eq!(ChaosFault::Error.as_str(), "error");
}

#[tokio::test(start_paused = true)]
async fn a_key_mapped_to_an_undefined_tier_is_an_event() {
    let log = Log::default();
    let limit = RateLimitLayer::builder()
        .tier("free", Quota::per_minute(10))
        .tier("pro", Quota::per_minute(100))
        .default_tier("free")
        .key(|req: &u32| *req)
        .tier_of(|key: &u32| if *key == 7 { "gold" } else { "pro" })
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(observed(&log))
        .layer(limit)
        .service(slow(ms(1)));
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 1);
    assert!(of(&log, "unknown_tier").is_empty());
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), 7);
    assert_eq!(of(&log, "unknown_tier"), ["default free"]);
}

fn branch(
    latency: u64,
    ok: bool,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + use<> {
    service_fn(move |x: u32| async move {
        tokio::time::sleep(ms(latency)).await;
        if ok {
            Ok(x)
        } else {
            Err(BoxError::from("branch down"))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_scatter_reports_its_stage_its_branches_and_what_it_gathered() {
    let log = Log::default();
    let scatter = Scatter::builder()
        .branch(branch(10, true))
        .branch(branch(5, false))
        .branch(branch(500, true))
        .gather(Gather::Quorum(1))
        .build()
        .unwrap();
    let svc = ServiceBuilder::new().layer(observed(&log)).service(scatter);
    let gathered = svc.oneshot(1).await.unwrap();
    assert!(gathered.is_satisfied());
    assert_eq!(of(&log, "stage_started"), ["scatter scatter stage 0 of 3"]);
    assert_eq!(
        of(&log, "branch_ended"),
        [
            "scatter branch 1 Some(Transient { retry_after: None })",
            "scatter branch 0 Some(Success)",
        ]
    );
    assert_eq!(
        of(&log, "gathered"),
        [format!(
            "scatter 1 answered 1 failed {:?}",
            Some((0, StopReason::Gathered))
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn a_scatter_outside_a_watched_call_is_heard_by_a_subscriber() {
    let (capture, _guard) = crate::capture::Capture::install();
    let scatter = Scatter::builder()
        .branch(branch(10, true))
        .branch(branch(20, true))
        .build()
        .unwrap();
    let gathered = scatter.oneshot(1).await.unwrap();
    assert!(gathered.is_satisfied());
    let messages: Vec<String> = capture
        .events()
        .iter()
        .filter(|e| e.target == "steadfast::scatter")
        .map(|e| format!("{} {}", e.message(), e.field("layer")))
        .collect();
    assert_eq!(
        messages,
        [
            "stage started scatter",
            "branch ended scatter",
            "branch ended scatter",
            "gathered scatter"
        ]
    );
}
