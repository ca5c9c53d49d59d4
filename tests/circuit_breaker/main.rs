//! Circuit breaker: behaviour on paused time, a model-based property test,
//! half-open under real concurrency, settings and keyed breakers.

mod batched;
mod concurrency;
mod config;
#[path = "../support/counting_alloc.rs"]
mod counting_alloc;
mod deadline;
mod keyed;
mod model;

use std::time::Duration;

use steadfast::BoxError;
use steadfast::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerLayer, Single, State};
use steadfast::classify::Verdict;
use steadfast::error::CircuitOpen;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

type Judge = fn(Result<&Verdict, &BoxError>) -> Verdict;

/// The verdict a test request asks for, and how long its call takes.
type Req = (Verdict, u64);

fn by_response(out: Result<&Verdict, &BoxError>) -> Verdict {
    match out {
        Ok(verdict) => *verdict,
        Err(_) => Verdict::transient(),
    }
}

fn builder() -> CircuitBreakerBuilder<Judge, Single> {
    CircuitBreakerLayer::builder().classifier(by_response as Judge)
}

/// A service answering each request with the verdict it carries, after
/// its duration (paused time); `Rejected` comes back as an inner
/// `CircuitOpen`.
fn scripted(
    layer: &CircuitBreakerLayer<Judge>,
) -> impl Service<Req, Response = Verdict, Error = BoxError, Future: Send> + Clone + use<> {
    layer.layer(service_fn(|(verdict, ms): Req| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        match verdict {
            Verdict::Rejected { .. } => {
                Err::<_, BoxError>(Box::new(CircuitOpen::new(Duration::from_secs(1))))
            }
            verdict => Ok(verdict),
        }
    }))
}

async fn send<S>(service: &mut S, verdict: Verdict) -> Result<Verdict, BoxError>
where
    S: Service<Req, Response = Verdict, Error = BoxError>,
{
    service.ready().await?.call((verdict, 0)).await
}

fn open_left(result: Result<Verdict, BoxError>) -> Duration {
    let err = result.expect_err("refused");
    err.downcast_ref::<CircuitOpen>()
        .unwrap_or_else(|| panic!("expected CircuitOpen, got {err}"))
        .remaining()
}

#[tokio::test(start_paused = true)]
async fn sliding_count_window_opens_within_five_failures() {
    let layer = builder()
        .count_window(10)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    for _ in 0..1_000 {
        send(&mut service, Verdict::Success).await.unwrap();
    }
    let mut failures = 0;
    while handle.state() == State::Closed {
        send(&mut service, Verdict::Failure).await.unwrap();
        failures += 1;
        assert!(failures <= 5, "still closed after {failures} failures");
    }
    assert_eq!(failures, 5);
    assert_eq!(handle.state(), State::Open);
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (10, 5));
    assert_eq!(snapshot.failure_rate(), 50.0);
}

#[tokio::test(start_paused = true)]
async fn open_refuses_with_time_left_then_probes_close_it() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(4)
        .minimum_calls(2)
        .open_duration(Duration::from_secs(10))
        .half_open_probes(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (mut service, mut backend) = mock::spawn_with(|mock| layer.layer(mock));

    for _ in 0..2 {
        assert_ready_ok!(service.poll_ready());
        let mut response = task::spawn(service.call("ping"));
        assert_request_eq!(backend, "ping").send_error("reset");
        assert_ready_err!(response.poll());
    }
    assert_eq!(handle.state(), State::Open);

    advance(Duration::from_secs(4)).await;
    assert_ready_ok!(service.poll_ready());
    let err = assert_ready_err!(task::spawn(service.call("ping")).poll());
    assert_eq!(
        err.downcast_ref::<CircuitOpen>()
            .map(CircuitOpen::remaining),
        Some(Duration::from_secs(6))
    );
    assert_pending!(backend.poll_request());

    advance(Duration::from_secs(6)).await;
    assert_ready_ok!(service.poll_ready());
    let mut first = task::spawn(service.call("probe 1"));
    assert_ready_ok!(service.poll_ready());
    let mut second = task::spawn(service.call("probe 2"));
    assert_eq!(handle.state(), State::HalfOpen);
    // Both probe slots are taken: a third call is refused, with no time left.
    assert_ready_ok!(service.poll_ready());
    let third = assert_ready_err!(task::spawn(service.call("probe 3")).poll());
    assert_eq!(
        third
            .downcast_ref::<CircuitOpen>()
            .map(CircuitOpen::remaining),
        Some(Duration::ZERO)
    );
    assert_request_eq!(backend, "probe 1").send_response("pong");
    assert_request_eq!(backend, "probe 2").send_response("pong");
    assert_pending!(backend.poll_request());
    assert_eq!(assert_ready_ok!(first.poll()), "pong");
    assert_eq!(handle.state(), State::HalfOpen);
    assert_eq!(assert_ready_ok!(second.poll()), "pong");
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(handle.snapshot().calls, 0, "closing starts a fresh window");
}

/// Opens `service`'s breaker (count window 1) with one failure.
async fn trip<S>(service: &mut S, verdict: Verdict)
where
    S: Service<Req, Response = Verdict, Error = BoxError>,
{
    send(service, verdict).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_probes_reopen_for_longer_up_to_the_cap() {
    let layer = builder()
        .count_window(1)
        .open_duration(Duration::from_secs(1))
        .open_backoff(3.0, Duration::from_secs(5))
        .half_open_probes(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    trip(&mut service, Verdict::Failure).await;
    for expected in [1, 3, 5, 5] {
        let left = open_left(send(&mut service, Verdict::Success).await);
        assert_eq!(left, Duration::from_secs(expected));
        advance(left).await;
        // The probe fails: open again, for longer.
        send(&mut service, Verdict::Failure).await.unwrap();
        assert_eq!(handle.state(), State::Open);
    }
    advance(Duration::from_secs(5)).await;
    send(&mut service, Verdict::Success).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    // Closing forgets the growth.
    trip(&mut service, Verdict::Failure).await;
    let left = open_left(send(&mut service, Verdict::Success).await);
    assert_eq!(left, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_hint_extends_the_open_period_up_to_its_cap() {
    let layer = builder()
        .count_window(1)
        .open_duration(Duration::from_secs(2))
        .honor_retry_after(Duration::from_secs(30))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    trip(
        &mut service,
        Verdict::transient_after(Duration::from_secs(12)),
    )
    .await;
    assert_eq!(
        open_left(send(&mut service, Verdict::Success).await),
        Duration::from_secs(12)
    );
    handle.reset();
    trip(
        &mut service,
        Verdict::transient_after(Duration::from_secs(600)),
    )
    .await;
    assert_eq!(
        open_left(send(&mut service, Verdict::Success).await),
        Duration::from_secs(30)
    );
    handle.reset();
    // A hint shorter than the open duration changes nothing.
    trip(
        &mut service,
        Verdict::transient_after(Duration::from_secs(1)),
    )
    .await;
    assert_eq!(
        open_left(send(&mut service, Verdict::Success).await),
        Duration::from_secs(2)
    );

    // Without `honor_retry_after`, hints are ignored.
    let layer = builder()
        .count_window(1)
        .open_duration(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut service = scripted(&layer);
    trip(
        &mut service,
        Verdict::transient_after(Duration::from_secs(12)),
    )
    .await;
    assert_eq!(
        open_left(send(&mut service, Verdict::Success).await),
        Duration::from_secs(2)
    );
}

#[tokio::test(start_paused = true)]
async fn slow_calls_open_the_breaker_whatever_their_verdict() {
    let layer = builder()
        .count_window(4)
        .slow_call_duration(Duration::from_millis(100))
        .slow_call_rate_threshold(75.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    let calls = [
        (Verdict::Success, 150),
        (Verdict::FunctionalError, 100), // exactly the limit: not slow
        (Verdict::Success, 101),
        (Verdict::Failure, 500),
    ];
    for (i, (verdict, ms)) in calls.into_iter().enumerate() {
        assert_eq!(handle.state(), State::Closed, "call {i}");
        let _ = service.ready().await.unwrap().call((verdict, ms)).await;
    }
    let snapshot = handle.snapshot();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(
        (snapshot.calls, snapshot.failures, snapshot.slow_calls),
        (4, 1, 3)
    );
    assert_eq!(snapshot.slow_call_rate(), 75.0);
    assert_eq!(snapshot.failure_rate(), 25.0);
}

#[tokio::test(start_paused = true)]
async fn functional_errors_are_successes_and_rejections_are_not_counted() {
    let layer = builder().count_window(4).build().unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    for _ in 0..3 {
        send(&mut service, Verdict::FunctionalError).await.unwrap();
    }
    for _ in 0..10 {
        // An inner policy refused: an error for the caller, nothing for the
        // breaker.
        assert!(
            send(&mut service, Verdict::Rejected { retry_after: None })
                .await
                .is_err()
        );
    }
    let snapshot = handle.snapshot();
    assert_eq!((snapshot.calls, snapshot.failures), (3, 0));
    send(&mut service, Verdict::Failure).await.unwrap();
    assert_eq!(handle.state(), State::Closed, "1 failure in 4 calls");
    send(&mut service, Verdict::Failure).await.unwrap();
    assert_eq!(
        handle.state(),
        State::Open,
        "2 failures in the last 4 calls"
    );
}

#[tokio::test(start_paused = true)]
async fn max_half_open_wait_reopens_a_breaker_whose_probes_hang() {
    let layer = builder()
        .count_window(1)
        .open_duration(Duration::from_secs(1))
        .half_open_probes(1)
        .max_half_open_wait(Duration::from_secs(3))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    trip(&mut service, Verdict::Failure).await;
    advance(Duration::from_secs(1)).await;
    // The probe hangs (an hour).
    let mut hung = task::spawn(
        service
            .ready()
            .await
            .unwrap()
            .call((Verdict::Success, 3_600_000)),
    );
    assert_pending!(hung.poll());
    assert_eq!(handle.state(), State::HalfOpen);
    assert_eq!(
        open_left(send(&mut service, Verdict::Success).await),
        Duration::ZERO
    );
    advance(Duration::from_secs(3)).await;
    // The wait is over: the next call reopens the breaker.
    assert_eq!(
        open_left(send(&mut service, Verdict::Success).await),
        Duration::from_secs(1)
    );
    assert_eq!(handle.state(), State::Open);
    advance(Duration::from_secs(1)).await;
    // A fresh half-open period, with a fresh probe slot.
    send(&mut service, Verdict::Success).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    // The old probe's end counts for nothing.
    advance(Duration::from_secs(3_600)).await;
    assert!(hung.poll().is_ready());
    assert_eq!(handle.snapshot().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot_and_counts_for_nothing() {
    let layer = builder()
        .count_window(1)
        .open_duration(Duration::from_secs(1))
        .half_open_probes(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    trip(&mut service, Verdict::Failure).await;
    advance(Duration::from_secs(1)).await;
    let probe = service.ready().await.unwrap().call((Verdict::Failure, 10));
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    assert_eq!(
        open_left(send(&mut service, Verdict::Success).await),
        Duration::ZERO
    );
    drop(probe);
    assert_eq!(handle.snapshot().probes_in_flight, 0);
    assert_eq!(handle.state(), State::HalfOpen);
    // Polled once, then dropped: the same.
    let mut probe = task::spawn(service.ready().await.unwrap().call((Verdict::Failure, 10)));
    assert_pending!(probe.poll());
    drop(probe);
    assert_eq!(handle.state(), State::HalfOpen);
    send(&mut service, Verdict::Success).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_handle_forces_states() {
    let layer = builder().count_window(2).build().unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);

    handle.force_open();
    assert_eq!(handle.state(), State::ForcedOpen);
    advance(Duration::from_secs(3_600)).await;
    assert_eq!(
        open_left(send(&mut service, Verdict::Success).await),
        Duration::ZERO
    );

    handle.disable();
    for _ in 0..5 {
        send(&mut service, Verdict::Failure).await.unwrap();
    }
    assert_eq!(handle.state(), State::Disabled);
    assert_eq!(handle.snapshot().calls, 0, "disabled records nothing");

    handle.metrics_only();
    for _ in 0..5 {
        send(&mut service, Verdict::Failure).await.unwrap();
    }
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.state, State::MetricsOnly);
    assert_eq!((snapshot.calls, snapshot.failures), (2, 2));
    assert_eq!(snapshot.failure_rate(), 100.0);

    handle.reset();
    assert_eq!(handle.snapshot().calls, 0);
    send(&mut service, Verdict::Failure).await.unwrap();
    send(&mut service, Verdict::Failure).await.unwrap();
    assert_eq!(handle.state(), State::Open);
    handle.disable();
    assert_eq!(handle.state(), State::Disabled);
    assert_eq!(handle.state().to_string(), "disabled");
}

#[tokio::test(start_paused = true)]
async fn clones_and_layer_calls_share_one_breaker() {
    let layer = builder().count_window(2).build().unwrap();
    let observer = layer.clone().handle();
    let mut a = scripted(&layer);
    let other = layer.clone();
    let mut b = scripted(&other);
    let mut c = a.clone();
    send(&mut a, Verdict::Failure).await.unwrap();
    send(&mut b, Verdict::Failure).await.unwrap();
    assert_eq!(observer.state(), State::Open);
    assert!(
        send(&mut c, Verdict::Success)
            .await
            .unwrap_err()
            .is::<CircuitOpen>()
    );

    // And through a ServiceBuilder, the service's own handle.
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    assert_eq!(service.handle().state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn the_time_window_forgets_old_buckets() {
    let layer = builder()
        .time_window(Duration::from_secs(10), 5)
        .minimum_calls(4)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    for _ in 0..3 {
        send(&mut service, Verdict::Failure).await.unwrap();
    }
    advance(Duration::from_secs(9)).await;
    send(&mut service, Verdict::Success).await.unwrap();
    assert_eq!(handle.snapshot().calls, 4);
    assert_eq!(handle.state(), State::Open, "3 failures in 4 calls");

    handle.reset();
    for _ in 0..3 {
        send(&mut service, Verdict::Failure).await.unwrap();
    }
    // Ten seconds on, the bucket of those failures has left the window.
    advance(Duration::from_secs(10)).await;
    assert_eq!(handle.snapshot().calls, 0);
    send(&mut service, Verdict::Failure).await.unwrap();
    assert_eq!(handle.state(), State::Closed, "1 call is below the minimum");
    assert_eq!(handle.snapshot().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn time_buckets_start_when_the_breaker_is_made() {
    // Whatever the clock reads when the breaker is made, its buckets are
    // measured from that moment, to the nanosecond.
    for offset in [0, 1, 300_000_000, 999_999_999] {
        advance(Duration::from_nanos(offset)).await;
        let layer = builder()
            .time_window(Duration::from_secs(10), 10)
            .minimum_calls(100)
            .build()
            .unwrap();
        let handle = layer.handle();
        // Answers at once, so the failure ends the moment it is sent.
        let mut service = layer.layer(service_fn(|verdict: Verdict| {
            std::future::ready(Ok(verdict))
        }));
        service
            .ready()
            .await
            .unwrap()
            .call(Verdict::Failure)
            .await
            .unwrap();
        advance(Duration::from_nanos(9_999_999_999)).await;
        assert_eq!(handle.snapshot().failures, 1, "offset {offset}");
        advance(Duration::from_nanos(1)).await;
        assert_eq!(handle.snapshot().failures, 0, "offset {offset}");
    }
}

#[tokio::test(start_paused = true)]
async fn poll_ready_forwards_and_admission_happens_in_call() {
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    layer.handle().force_open();
    let (mut service, mut backend) = mock::spawn_with::<(), (), _, _>(|mock| layer.layer(mock));
    backend.allow(0);
    assert_pending!(service.poll_ready());
    backend.allow(1);
    assert_ready_ok!(service.poll_ready());
    let err = assert_ready_err!(task::spawn(service.call(())).poll());
    assert!(err.is::<CircuitOpen>());
    assert_pending!(backend.poll_request());
}

#[tokio::test(start_paused = true)]
async fn a_run_of_failures_opens_whatever_the_window_holds() {
    // A long time window full of successes: 50 % failures is far away.
    let layer = builder()
        .time_window(Duration::from_secs(30), 30)
        .minimum_calls(100)
        .consecutive_failures(5)
        .open_duration(Duration::from_secs(5))
        .half_open_probes(1)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    for _ in 0..10_000 {
        send(&mut service, Verdict::Success).await.unwrap();
    }
    // A success or a functional error ends a run; a rejection neither adds
    // to it nor ends it.
    for _ in 0..4 {
        send(&mut service, Verdict::Failure).await.unwrap();
    }
    send(&mut service, Verdict::FunctionalError).await.unwrap();
    for _ in 0..2 {
        send(&mut service, Verdict::transient()).await.unwrap();
    }
    send(&mut service, Verdict::Rejected { retry_after: None })
        .await
        .unwrap_err();
    send(&mut service, Verdict::Failure).await.unwrap();
    send(&mut service, Verdict::Failure).await.unwrap();
    assert_eq!(handle.state(), State::Closed, "four in a row so far");
    send(&mut service, Verdict::Failure).await.unwrap();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(
        open_left(send(&mut service, Verdict::Success).await),
        Duration::from_secs(5)
    );
    // The probe closes it, and the run starts again from zero.
    advance(Duration::from_secs(5)).await;
    send(&mut service, Verdict::Success).await.unwrap();
    assert_eq!(handle.state(), State::Closed);
    for _ in 0..4 {
        send(&mut service, Verdict::Failure).await.unwrap();
    }
    assert_eq!(handle.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_hint_refuses_every_caller_for_its_period() {
    let layer = builder()
        .time_window(Duration::from_secs(30), 30)
        .minimum_calls(100)
        .open_duration(Duration::from_secs(5))
        .honor_retry_after(Duration::from_secs(60))
        .retry_after_run(1)
        .half_open_probes(2)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    let mut other = service.clone();
    for _ in 0..1_000 {
        send(&mut service, Verdict::Success).await.unwrap();
    }
    // A hint of zero asks for no wait.
    send(&mut service, Verdict::transient_after(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(handle.state(), State::Closed);
    // One answer with a hint: every caller is refused for the hint alone,
    // not the open duration, with the time left.
    send(
        &mut service,
        Verdict::transient_after(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(
        open_left(send(&mut other, Verdict::Success).await),
        Duration::from_secs(2)
    );
    advance(Duration::from_millis(1_500)).await;
    assert_eq!(
        open_left(send(&mut other, Verdict::Success).await),
        Duration::from_millis(500)
    );
    // A probe failing with a hint reopens at once, for the longer of the
    // open duration and the hint, without waiting for the second probe.
    advance(Duration::from_millis(500)).await;
    send(
        &mut service,
        Verdict::transient_after(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(
        open_left(send(&mut other, Verdict::Success).await),
        Duration::from_secs(5)
    );
}

#[tokio::test(start_paused = true)]
async fn a_lone_hint_among_successes_does_not_open_but_a_run_of_hints_does() {
    // A brownout: one replica in ten answers 503 with `Retry-After: 1`,
    // the others answer. The default run of 5 keeps the breaker closed.
    let layer = builder()
        .time_window(Duration::from_secs(30), 30)
        .minimum_calls(100)
        .open_duration(Duration::from_secs(5))
        .honor_retry_after(Duration::from_secs(60))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = scripted(&layer);
    for i in 0..1_000u32 {
        let verdict = if i % 10 == 0 {
            Verdict::transient_after(Duration::from_secs(1))
        } else {
            Verdict::Success
        };
        send(&mut service, verdict).await.unwrap();
        assert_eq!(handle.state(), State::Closed, "call {i}");
    }
    // Four hinted failures in a row are not yet a run.
    for _ in 0..4 {
        send(
            &mut service,
            Verdict::transient_after(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    }
    assert_eq!(handle.state(), State::Closed);
    // The fifth opens the breaker for every caller, for the hint.
    send(
        &mut service,
        Verdict::transient_after(Duration::from_secs(1)),
    )
    .await
    .unwrap();
    assert_eq!(handle.state(), State::Open);
    assert_eq!(
        open_left(send(&mut service, Verdict::Success).await),
        Duration::from_secs(1)
    );
}
