//! The total deadline and the breaker: an attempt sent in time and ended
//! by the deadline is a failure; one made after it passed is not counted.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::error::DeadlineExceeded;
use steadfast::observe::Rejection;
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, RetryLayer};
use steadfast::timeout::{Deadline, TimeoutLayer, TotalDeadlineLayer};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

/// Answers after `ms`, counting the calls that started.
fn slow(
    started: Arc<AtomicU32>,
) -> impl tower::Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone {
    service_fn(move |ms: u64| {
        let started = started.clone();
        async move {
            started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(ms)
        }
    })
}

fn breaker() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder().build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_attempt_cut_by_the_total_deadline_is_a_failure() {
    let breaker = breaker();
    let started = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_millis(100)).unwrap())
        .layer(breaker.clone())
        // Clamped to the deadline: it ends the attempt with DeadlineExceeded.
        .layer(TimeoutLayer::new(Duration::from_secs(1)).unwrap())
        .service(slow(started.clone()));

    let err = svc.oneshot(5_000).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(started.load(Ordering::SeqCst), 1);
    let snapshot = breaker.handle().snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_by_the_total_deadline_is_a_failure() {
    let breaker = breaker();
    let started = Arc::new(AtomicU32::new(0));
    // No attempt timeout: the deadline drops the breaker's call unfinished.
    let svc = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_millis(100)).unwrap())
        .layer(breaker.clone())
        .service(slow(started.clone()));

    let err = svc.oneshot(5_000).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    let snapshot = breaker.handle().snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_call_made_after_the_deadline_passed_is_not_counted() {
    let breaker = breaker();
    let started = Arc::new(AtomicU32::new(0));
    let svc = ServiceBuilder::new()
        .layer(breaker.clone())
        .layer(TimeoutLayer::new(Duration::from_secs(1)).unwrap())
        .service(slow(started.clone()));

    let passed = Deadline::at(tokio::time::Instant::now());
    tokio::time::advance(Duration::from_millis(1)).await;
    let err = passed.scope(svc.clone().oneshot(10)).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(started.load(Ordering::SeqCst), 0, "never started");
    let snapshot = breaker.handle().snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (0, 0));

    // A call dropped by its caller before any deadline records nothing.
    let mut dropped = tokio_test::task::spawn(svc.clone().oneshot(5_000));
    tokio_test::assert_pending!(dropped.poll());
    drop(dropped);
    assert_eq!(breaker.handle().snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn the_policy_counts_a_call_ended_by_the_deadline_and_reports_it_once() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let policy = Policy::builder()
        .total_timeout(Duration::from_millis(100))
        // The second attempt starts at 85 ms; its timeout is clamped to
        // the deadline, which ends it.
        .attempt_timeout(Duration::from_millis(80))
        .retry(
            RetryLayer::builder()
                .max_attempts(2)
                .backoff(Backoff::constant(Duration::from_millis(5))),
        )
        .circuit_breaker(CircuitBreakerLayer::builder())
        .on_event(move |event| {
            if let steadfast::observe::Event::Rejected {
                rejection, name, ..
            } = event
            {
                log.lock().unwrap().push((*rejection, name.to_string()));
            }
        })
        .build()
        .unwrap();
    let started = Arc::new(AtomicU32::new(0));
    let svc = policy.layer(slow(started.clone()));

    let err = svc.oneshot(5_000).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    let breaker = policy.circuit_breaker().unwrap().snapshot();
    assert_eq!(started.load(Ordering::SeqCst), 2);
    assert_eq!((breaker.calls, breaker.failures), (2, 2));
    assert_eq!(
        *events.lock().unwrap(),
        [(Rejection::DeadlineExceeded, "total_deadline".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn nested_deadlines_at_one_instant_report_once() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = events.clone();
    let policy = Policy::builder()
        .total_timeout(Duration::from_millis(100))
        .on_event(move |event| {
            if let steadfast::observe::Event::Rejected { rejection, .. } = event {
                log.lock().unwrap().push(*rejection);
            }
        })
        .build()
        .unwrap();
    let inner = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(10)).unwrap())
        .service(slow(Arc::new(AtomicU32::new(0))));
    let err = policy.layer(inner).oneshot(5_000).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(*events.lock().unwrap(), [Rejection::DeadlineExceeded]);
}
