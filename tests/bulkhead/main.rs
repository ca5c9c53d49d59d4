//! Bulkhead tests: admission, waiting on paused time, permits returned on
//! every path, keyed bulkheads, a multi-thread stress test.

mod keyed;
mod stress;

use std::time::Duration;

use steadfast::BoxError;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::error::BulkheadFull;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

fn layer(permits: usize, max_wait: Duration) -> BulkheadLayer {
    BulkheadLayer::builder()
        .max_concurrent(permits)
        .max_wait(max_wait)
        .build()
        .expect("valid settings")
}

#[tokio::test(start_paused = true)]
async fn admits_up_to_the_limit_then_refuses_at_once() {
    let layer = layer(2, Duration::ZERO);
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(service.poll_ready());
    let mut first = task::spawn(service.call("a"));
    assert_ready_ok!(service.poll_ready());
    let mut second = task::spawn(service.call("b"));
    assert_eq!(handle.in_flight(), 2);
    assert_eq!(handle.available(), 0);

    assert_ready_ok!(service.poll_ready());
    let mut third = task::spawn(service.call("c"));
    let err = assert_ready_err!(third.poll());
    assert!(err.is::<BulkheadFull>(), "{err}");

    assert_request_eq!(mock, "a").send_response("A");
    assert_request_eq!(mock, "b").send_response("B");
    assert_eq!(assert_ready_ok!(first.poll()), "A");
    assert_eq!(assert_ready_ok!(second.poll()), "B");
    assert_eq!(handle.in_flight(), 0);
    assert_eq!(handle.available(), 2);
}

#[tokio::test(start_paused = true)]
async fn admission_happens_in_call_not_poll_ready() {
    // axum never waits for readiness: a full bulkhead must still report ready.
    let layer = layer(1, Duration::ZERO);
    let handle = layer.handle();
    let mut service = layer.layer(service_fn(|x: u8| async move { Ok::<_, BoxError>(x) }));

    let first = service.ready().await.expect("ready").call(1);
    assert_eq!(handle.in_flight(), 1, "the permit is taken in call");
    let mut probe = task::spawn(async { service.ready().await.map(|_| ()) });
    assert_ready_ok!(
        probe.poll(),
        "poll_ready only forwards to the inner service"
    );
    drop(probe);
    assert_eq!(first.await.expect("served"), 1);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn permit_returned_on_error() {
    let layer = layer(1, Duration::ZERO);
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(service.poll_ready());
    let mut call = task::spawn(service.call("a"));
    assert_request_eq!(mock, "a").send_error("boom");
    let err = assert_ready_err!(call.poll());
    assert_eq!(err.to_string(), "boom");
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn permit_returned_when_the_response_future_is_dropped() {
    let layer = layer(1, Duration::ZERO);
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(service.poll_ready());
    let mut call = task::spawn(service.call("a"));
    assert_pending!(call.poll());
    let _request = assert_request_eq!(mock, "a");
    assert_eq!(handle.in_flight(), 1);
    drop(call);
    assert_eq!(handle.in_flight(), 0);

    // The permit is usable again.
    assert_ready_ok!(service.poll_ready());
    let mut again = task::spawn(service.call("b"));
    assert_request_eq!(mock, "b").send_response("B");
    assert_eq!(assert_ready_ok!(again.poll()), "B");
}

#[tokio::test(start_paused = true)]
async fn permit_returned_when_a_timeout_cancels_the_call() {
    let bulkhead = layer(1, Duration::ZERO);
    let handle = bulkhead.handle();
    let service = tower::ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .layer(bulkhead)
        .service(service_fn(|_: ()| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, BoxError>(())
        }));
    let err = service.oneshot(()).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>());
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_gets_the_permit_when_one_is_returned() {
    let layer = layer(1, Duration::from_millis(100));
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(service.poll_ready());
    let mut first = task::spawn(service.call("a"));
    assert_ready_ok!(service.poll_ready());
    let mut second = task::spawn(service.call("b"));
    assert_pending!(second.poll());
    assert_eq!(handle.waiting(), 1);

    tokio::time::advance(Duration::from_millis(60)).await;
    assert_pending!(second.poll());
    assert_request_eq!(mock, "a").send_response("A");
    assert_eq!(assert_ready_ok!(first.poll()), "A");
    assert!(second.is_woken(), "a returned permit wakes the waiter");

    assert_pending!(second.poll());
    assert_eq!(handle.waiting(), 0);
    assert_eq!(handle.in_flight(), 1);
    assert_request_eq!(mock, "b").send_response("B");
    assert_eq!(assert_ready_ok!(second.poll()), "B");
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_call_is_refused_after_max_wait() {
    let layer = layer(1, Duration::from_millis(100));
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(service.poll_ready());
    let mut first = task::spawn(service.call("a"));
    assert_ready_ok!(service.poll_ready());
    let mut second = task::spawn(service.call("b"));
    assert_pending!(second.poll());

    tokio::time::advance(Duration::from_millis(99)).await;
    assert_pending!(second.poll());
    tokio::time::advance(Duration::from_millis(1)).await;
    let err = assert_ready_err!(second.poll());
    assert!(err.is::<BulkheadFull>());
    assert_eq!(handle.waiting(), 0);

    assert_request_eq!(mock, "a").send_response("A");
    assert_eq!(assert_ready_ok!(first.poll()), "A");
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue_and_passes_on_its_wake_up() {
    let layer = layer(1, Duration::from_secs(1));
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(service.poll_ready());
    let mut first = task::spawn(service.call("a"));
    assert_ready_ok!(service.poll_ready());
    let mut second = task::spawn(service.call("b"));
    assert_ready_ok!(service.poll_ready());
    let mut third = task::spawn(service.call("c"));
    assert_pending!(second.poll());
    assert_pending!(third.poll());
    assert_eq!(handle.waiting(), 2);

    // The permit comes back and wakes `second`, which is dropped unpolled:
    // its wake-up must reach `third`.
    assert_request_eq!(mock, "a").send_response("A");
    assert_eq!(assert_ready_ok!(first.poll()), "A");
    drop(second);
    assert_eq!(handle.waiting(), 1);
    assert!(third.is_woken());
    assert_pending!(third.poll());
    assert_request_eq!(mock, "c").send_response("C");
    assert_eq!(assert_ready_ok!(third.poll()), "C");
    assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn the_queue_bounds_the_waiters() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(1))
        .queue(1)
        .build()
        .expect("valid settings");
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(service.poll_ready());
    let mut first = task::spawn(service.call("a"));
    assert_ready_ok!(service.poll_ready());
    let mut waiter = task::spawn(service.call("b"));
    assert_ready_ok!(service.poll_ready());
    let mut refused = task::spawn(service.call("c"));
    assert!(assert_ready_err!(refused.poll()).is::<BulkheadFull>());
    assert_pending!(waiter.poll());
    assert_eq!(handle.waiting(), 1);

    assert_request_eq!(mock, "a").send_response("A");
    assert_ready_ok!(first.poll());
    assert_pending!(waiter.poll());
    assert_request_eq!(mock, "b").send_response("B");
    assert_eq!(assert_ready_ok!(waiter.poll()), "B");
}

#[tokio::test(start_paused = true)]
async fn clones_and_layer_calls_share_one_bulkhead() {
    let layer = layer(1, Duration::ZERO);
    let handle = layer.handle();
    let inner = service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, BoxError>(())
    });
    let mut a = layer.layer(inner);
    let mut b = layer.layer(inner);
    let mut c = a.clone();
    let held = a.call(());
    assert!(b.call(()).await.unwrap_err().is::<BulkheadFull>());
    assert!(c.call(()).await.unwrap_err().is::<BulkheadFull>());
    assert_eq!(c.handle().in_flight(), 1);
    held.await.expect("served");
    assert_eq!(handle.available(), 1);
}

#[test]
fn zero_permits_is_a_config_error() {
    let err = BulkheadLayer::builder()
        .max_concurrent(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_concurrent");
    assert_eq!(err.value(), "0");
}

#[test]
fn handle_reports_settings() {
    let layer = BulkheadLayer::builder()
        .name("db")
        .max_concurrent(7)
        .max_wait(Duration::from_millis(5))
        .queue(3)
        .build()
        .expect("valid settings");
    let handle = layer.handle();
    assert_eq!(handle.name(), "db");
    assert_eq!(handle.max_concurrent(), 7);
    assert_eq!(handle.available(), 7);
    assert_eq!(handle.max_wait(), Duration::from_millis(5));
    assert_eq!(handle.queue(), 3);
    assert_eq!(handle.waiting(), 0);
}

/// A service whose calls finish when the test says: each call waits on the
/// receiver it is given.
fn gated() -> impl Service<
    (&'static str, tokio::sync::oneshot::Receiver<()>),
    Response = &'static str,
    Error = BoxError,
    Future: Send,
> + Clone {
    service_fn(
        |(name, gate): (&'static str, tokio::sync::oneshot::Receiver<()>)| async move {
            let _ = gate.await;
            Ok::<_, BoxError>(name)
        },
    )
}

#[tokio::test(start_paused = true)]
async fn a_freed_permit_goes_to_the_oldest_waiter_not_to_a_newcomer() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_millis(100))
        .queue(10)
        .build()
        .expect("valid settings");
    let mut service = layer.layer(gated());
    let (release_holder, gate) = tokio::sync::oneshot::channel();
    let mut holder = task::spawn(service.ready().await.unwrap().call(("holder", gate)));
    assert_pending!(holder.poll());
    let (_release_waiter, gate) = tokio::sync::oneshot::channel();
    let mut waiter = task::spawn(service.ready().await.unwrap().call(("waiter", gate)));
    assert_pending!(waiter.poll());

    // The holder finishes; before the waiter runs again, a newcomer calls.
    release_holder.send(()).unwrap();
    assert_eq!(assert_ready_ok!(holder.poll()), "holder");
    let (_release_newcomer, gate) = tokio::sync::oneshot::channel();
    let mut newcomer = task::spawn(service.ready().await.unwrap().call(("newcomer", gate)));
    assert_pending!(newcomer.poll());
    assert!(waiter.is_woken());
    assert_pending!(waiter.poll()); // admitted: now waiting on its gate
    assert_eq!(layer.handle().in_flight(), 1);
    assert_eq!(layer.handle().waiting(), 1);

    // The newcomer waits its turn and times out; the waiter keeps its permit.
    tokio::time::advance(Duration::from_millis(100)).await;
    let err = assert_ready_err!(newcomer.poll());
    assert!(err.is::<BulkheadFull>());
    assert_pending!(waiter.poll());
    assert_eq!(layer.handle().in_flight(), 1);
}
#[tokio::test(start_paused = true)]
async fn newest_first_admits_the_latest_waiter() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(1))
        .queue(10)
        .order(steadfast::bulkhead::QueueOrder::NewestFirst)
        .build()
        .expect("valid settings");
    let mut service = layer.layer(gated());
    let (release_holder, gate) = tokio::sync::oneshot::channel();
    let mut holder = task::spawn(service.ready().await.unwrap().call(("holder", gate)));
    assert_pending!(holder.poll());
    let (_a, gate) = tokio::sync::oneshot::channel();
    let mut older = task::spawn(service.ready().await.unwrap().call(("older", gate)));
    assert_pending!(older.poll());
    let (release_newer, gate) = tokio::sync::oneshot::channel();
    let mut newer = task::spawn(service.ready().await.unwrap().call(("newer", gate)));
    assert_pending!(newer.poll());
    release_holder.send(()).unwrap();
    assert_ready_ok!(holder.poll());
    assert!(newer.is_woken());
    assert!(!older.is_woken());
    assert_pending!(newer.poll());
    release_newer.send(()).unwrap();
    assert_eq!(assert_ready_ok!(newer.poll()), "newer");
    // Then the older waiter.
    assert!(older.is_woken());
    assert_pending!(older.poll());
    assert_eq!(layer.handle().in_flight(), 1);
    assert_eq!(layer.handle().waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_permit_handed_to_a_waiter_that_gives_up_is_not_lost() {
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(Duration::from_secs(1))
        .build()
        .expect("valid settings");
    let handle = layer.handle();
    let mut service = layer.layer(gated());
    let (release_holder, gate) = tokio::sync::oneshot::channel();
    let mut holder = task::spawn(service.ready().await.unwrap().call(("holder", gate)));
    assert_pending!(holder.poll());
    let (_w, gate) = tokio::sync::oneshot::channel();
    let mut waiter = task::spawn(service.ready().await.unwrap().call(("waiter", gate)));
    assert_pending!(waiter.poll());
    release_holder.send(()).unwrap();
    assert_ready_ok!(holder.poll());
    // Handed over, not yet claimed: then the waiter is dropped.
    assert_eq!(handle.in_flight(), 1);
    drop(waiter);
    assert_eq!((handle.in_flight(), handle.waiting()), (0, 0));
    let (done, gate) = tokio::sync::oneshot::channel();
    let mut next = task::spawn(service.ready().await.unwrap().call(("next", gate)));
    assert_pending!(next.poll());
    done.send(()).unwrap();
    assert_eq!(assert_ready_ok!(next.poll()), "next");
}
