//! A policy with layers left out: those levels pass calls through, report
//! nothing and expose no handle.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::policy::Policy;
use tokio_test::{assert_pending, assert_ready_err};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::test(start_paused = true)]
async fn a_policy_without_layers_calls_once_and_reports_only_the_call() -> Result<(), BoxError> {
    let kinds = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&kinds);
    let policy = Policy::builder()
        .name("bare")
        .on_event(move |event| log.lock().unwrap().push(event.kind()))
        .build()?;
    assert!(policy.circuit_breaker().is_none());
    assert!(policy.bulkhead().is_none());
    assert!(policy.retry_budget().is_none());
    assert_eq!(policy.total_timeout(), None);
    assert_eq!(policy.attempt_timeout(), None);

    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let failing = service_fn(move |_: u32| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Err::<u32, BoxError>("connection reset".into()) }
    });
    let err = policy.layer(failing).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "connection reset");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no retry");
    // No retry stopped, no breaker transition: only the end of the call.
    assert_eq!(*kinds.lock().unwrap(), ["call_ended"]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn without_timeouts_a_slow_call_is_not_cut() -> Result<(), BoxError> {
    let policy = Policy::builder().build()?;
    let slow = service_fn(|_: u32| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, BoxError>(7)
    });
    let mut call = tokio_test::task::spawn(policy.layer(slow).oneshot(1));
    assert_pending!(call.poll());
    tokio::time::advance(Duration::from_secs(3599)).await;
    assert_pending!(call.poll());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(call.await?, 7);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_policy_with_only_an_attempt_timeout_still_bounds_attempts() -> Result<(), BoxError> {
    let policy = Policy::builder()
        .attempt_timeout(Duration::from_millis(100))
        .build()?;
    let hang = service_fn(|_: u32| std::future::pending::<Result<u32, BoxError>>());
    let mut call = tokio_test::task::spawn(policy.layer(hang).oneshot(1));
    assert_pending!(call.poll());
    tokio::time::advance(Duration::from_millis(100)).await;
    let err = assert_ready_err!(call.poll());
    assert!(err.is::<steadfast::error::Elapsed>(), "{err}");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn each_outer_choice_retries_as_set_and_bounds_the_call() -> Result<(), BoxError> {
    for retry in [false, true] {
        for observe in [false, true] {
            for total in [false, true] {
                let mut builder = Policy::builder();
                if retry {
                    builder =
                        builder.retry(steadfast::retry::RetryLayer::builder().max_attempts(3));
                }
                if observe {
                    builder = builder.observe();
                }
                if total {
                    builder = builder.total_timeout(Duration::from_secs(1));
                }
                let policy = builder.build()?;
                let calls = Arc::new(AtomicU32::new(0));
                let counted = Arc::clone(&calls);
                let failing = service_fn(move |_: u32| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async { Err::<u32, BoxError>("connection reset".into()) }
                });
                let err = policy.layer(failing).oneshot(1).await.unwrap_err();
                assert_eq!(err.to_string(), "connection reset");
                let sent = calls.load(Ordering::SeqCst);
                assert_eq!(sent, if retry { 3 } else { 1 }, "{retry} {observe} {total}");

                let answering = service_fn(|x: u32| async move { Ok::<_, BoxError>(x + 1) });
                assert_eq!(policy.layer(answering).oneshot(41).await?, 42);

                let slow = service_fn(|_: u32| async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<_, BoxError>(7)
                });
                let mut call = tokio_test::task::spawn(policy.layer(slow).oneshot(1));
                assert_pending!(call.poll());
                tokio::time::advance(Duration::from_secs(2)).await;
                if total {
                    let err = assert_ready_err!(call.poll());
                    assert!(err.is::<steadfast::error::DeadlineExceeded>(), "{err}");
                } else {
                    assert_pending!(call.poll());
                }
            }
        }
    }
    Ok(())
}
