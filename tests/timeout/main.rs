//! Attempt timeouts and the total deadline, on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::error::{DeadlineExceeded, Elapsed};
use steadfast::timeout::{Deadline, TimeoutLayer, TotalDeadlineLayer};
use tokio::time::{Instant, advance};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn attempt_times_out_at_its_timeout_and_not_before() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<&str, &str, _>(TimeoutLayer::new(ms(100)).unwrap());
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call("hi"));
    let _pending_reply = assert_request_eq!(handle, "hi");
    assert_pending!(call.poll());
    advance(ms(99)).await;
    assert_pending!(call.poll());
    advance(ms(1)).await;
    let err = assert_ready_err!(call.poll());
    assert!(err.is::<Elapsed>(), "{err}");
}

/// The timeout counts from the call, not from the future's first poll: a
/// future polled late fires when the call's timeout ends.
#[tokio::test(start_paused = true)]
async fn timeout_counts_from_the_call_not_the_first_poll() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<&str, &str, _>(TimeoutLayer::new(ms(100)).unwrap());
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call("hi"));
    advance(ms(70)).await;
    let _pending_reply = assert_request_eq!(handle, "hi");
    assert_pending!(call.poll());
    advance(ms(29)).await;
    assert_pending!(call.poll());
    advance(ms(1)).await;
    let err = assert_ready_err!(call.poll());
    assert!(err.is::<Elapsed>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn answer_in_time_passes_through() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<&str, &str, _>(TimeoutLayer::new(ms(100)).unwrap());
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call("hi"));
    assert_pending!(call.poll());
    advance(ms(60)).await;
    assert_request_eq!(handle, "hi").send_response("there");
    assert_eq!(assert_ready_ok!(call.poll()), "there");
}

#[tokio::test(start_paused = true)]
async fn inner_errors_come_through_boxed() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<&str, &str, _>(TimeoutLayer::new(ms(100)).unwrap());
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call("hi"));
    assert_request_eq!(handle, "hi").send_error(std::io::Error::other("reset"));
    let err = assert_ready_err!(call.poll());
    assert!(err.is::<std::io::Error>());
}

#[tokio::test(start_paused = true)]
async fn total_deadline_clamps_the_attempt_timeout() {
    let (mut svc, mut handle) = mock::spawn_with::<&str, &str, _, _>(|mock| {
        ServiceBuilder::new()
            .layer(TotalDeadlineLayer::new(ms(40)).unwrap())
            .layer(TimeoutLayer::new(ms(100)).unwrap())
            .service(mock)
    });
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call("hi"));
    let _pending_reply = assert_request_eq!(handle, "hi");
    advance(ms(39)).await;
    assert_pending!(call.poll());
    advance(ms(1)).await;
    let err = assert_ready_err!(call.poll());
    assert!(err.is::<DeadlineExceeded>(), "{err}");
}

/// `Duration::MAX` is an attempt timeout like any other: no bound of its
/// own, and still cut at the total deadline (it used to switch the
/// clamping off).
#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_of_duration_max_is_still_clamped_to_the_deadline() {
    // The attempt's own error is told apart from the deadline's timer.
    let (mut svc, mut handle) = mock::spawn_with::<&str, &str, _, _>(|mock| {
        ServiceBuilder::new()
            .layer(TotalDeadlineLayer::new(ms(40)).unwrap())
            .map_err(|err: BoxError| -> BoxError {
                if err.is::<DeadlineExceeded>() {
                    "the attempt was cut".into()
                } else {
                    err
                }
            })
            .layer(TimeoutLayer::new(Duration::MAX).unwrap())
            .service(mock)
    });
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call("hi"));
    let _pending_reply = assert_request_eq!(handle, "hi");
    advance(ms(39)).await;
    assert_pending!(call.poll());
    advance(ms(1)).await;
    let err = assert_ready_err!(call.poll());
    assert_eq!(err.to_string(), "the attempt was cut");

    // Without a deadline, it bounds nothing a test can wait for.
    let (mut svc, mut handle) =
        mock::spawn_layer::<&str, &str, _>(TimeoutLayer::new(Duration::MAX).unwrap());
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call("hi"));
    let reply = assert_request_eq!(handle, "hi");
    advance(Duration::from_secs(365 * 86_400)).await;
    assert_pending!(call.poll());
    reply.send_response("late");
    assert_eq!(assert_ready_ok!(call.poll()), "late");
}

#[tokio::test(start_paused = true)]
async fn deadline_is_visible_inside_and_an_outer_one_stays_in_force() {
    let svc = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(ms(300)).unwrap())
        .layer(TotalDeadlineLayer::new(ms(900)).unwrap())
        .service(service_fn(|()| async {
            Ok::<_, BoxError>(Deadline::current().map(Deadline::remaining))
        }));
    assert_eq!(svc.oneshot(()).await.unwrap(), Some(ms(300)));

    // Outside any total deadline there is none.
    assert_eq!(Deadline::current(), None);
    let bare = TimeoutLayer::new(ms(5))
        .unwrap()
        .layer(service_fn(|()| async {
            Ok::<_, BoxError>(Deadline::current())
        }));
    assert_eq!(bare.oneshot(()).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn deadline_is_seen_by_futures_polled_later() {
    let svc = TotalDeadlineLayer::new(ms(500))
        .unwrap()
        .layer(service_fn(|()| async {
            tokio::time::sleep(ms(200)).await;
            Ok::<_, BoxError>(Deadline::current().map(Deadline::remaining))
        }));
    assert_eq!(svc.oneshot(()).await.unwrap(), Some(ms(300)));
}

#[tokio::test(start_paused = true)]
async fn total_deadline_fires_on_a_hung_call() {
    let svc = TotalDeadlineLayer::new(ms(250))
        .unwrap()
        .layer(service_fn(|()| async {
            std::future::pending::<()>().await;
            Ok::<_, BoxError>(())
        }));
    let start = Instant::now();
    let err = svc.oneshot(()).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(start.elapsed(), ms(250));
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_drops_the_inner_work() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let svc = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(ms(500)).unwrap())
        .layer(TimeoutLayer::new(ms(100)).unwrap())
        .service(service_fn({
            let dropped = dropped.clone();
            move |()| {
                let flag = Flag(dropped.clone());
                async move {
                    std::future::pending::<()>().await;
                    drop(flag);
                    Ok::<_, BoxError>(())
                }
            }
        }));
    let mut call = tokio_test::task::spawn(svc.oneshot(()));
    assert_pending!(call.poll());
    assert!(!dropped.load(Ordering::SeqCst));
    drop(call);
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn zero_durations_are_refused() {
    let err = TimeoutLayer::new(Duration::ZERO).unwrap_err();
    assert_eq!(err.field(), "timeout.attempt");
    assert_eq!(err.rule(), "must be greater than zero");
    let err = TotalDeadlineLayer::new(Duration::ZERO).unwrap_err();
    assert_eq!(err.field(), "timeout.total");
}

#[tokio::test(start_paused = true)]
async fn absurd_timeouts_do_not_overflow() {
    let svc = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::MAX).unwrap())
        .layer(TimeoutLayer::new(Duration::MAX).unwrap())
        .service(service_fn(|()| async { Ok::<_, BoxError>(7) }));
    assert_eq!(svc.oneshot(()).await.unwrap(), 7);
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn http_requests_carry_the_deadline_in_their_extensions() {
    let svc = TotalDeadlineLayer::new(ms(750))
        .unwrap()
        .stamp_extensions()
        .layer(service_fn(|req: http::Request<()>| async move {
            Ok::<_, BoxError>(req.extensions().get::<Deadline>().map(|d| d.remaining()))
        }));
    let req = http::Request::new(());
    assert_eq!(svc.oneshot(req).await.unwrap(), Some(ms(750)));
}
