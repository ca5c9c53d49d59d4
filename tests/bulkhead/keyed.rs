use std::time::Duration;

use steadfast::BoxError;
use steadfast::bulkhead::KeyedBulkheadLayer;
use steadfast::error::BulkheadFull;
use tower::{Layer, Service, ServiceExt, service_fn};

fn slow_echo() -> impl Service<(String, u32), Response = u32, Error = BoxError, Future: Send> + Clone
{
    service_fn(|(_, n): (String, u32)| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, BoxError>(n)
    })
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_permits() {
    let layer = KeyedBulkheadLayer::builder(|req: &(String, u32)| req.0.clone())
        .max_concurrent(1)
        .build()
        .expect("valid settings");
    let handle = layer.handle();
    let mut service = layer.layer(slow_echo());

    let a1 = service.ready().await.expect("ready").call(("a".into(), 1));
    let err = service
        .ready()
        .await
        .expect("ready")
        .call(("a".into(), 2))
        .await
        .unwrap_err();
    assert!(err.is::<BulkheadFull>());
    let b1 = service.ready().await.expect("ready").call(("b".into(), 3));
    let a = handle.get(&"a".to_owned()).expect("key a has a bulkhead");
    assert_eq!((a.in_flight(), a.available()), (1, 0));
    assert_eq!(b1.await.expect("served"), 3);
    assert_eq!(a1.await.expect("served"), 1);
    assert_eq!(a.in_flight(), 0);
    assert!(handle.get(&"c".to_owned()).is_none());
}

#[tokio::test(start_paused = true)]
async fn keyed_waiters_wait_per_key() {
    let layer = KeyedBulkheadLayer::builder(|req: &(String, u32)| req.0.clone())
        .max_concurrent(1)
        .max_wait(Duration::from_secs(2))
        .queue(4)
        .build()
        .expect("valid settings");
    let service = layer.layer(slow_echo());
    // Two calls to one key: the second waits one second for the permit.
    let (x, y) = tokio::join!(
        service.clone().oneshot(("a".into(), 1)),
        service.clone().oneshot(("a".into(), 2)),
    );
    assert_eq!(
        (x.expect("served"), y.expect("served after waiting")),
        (1, 2)
    );
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_keys_stays_within_max_keys() {
    let layer = KeyedBulkheadLayer::builder(|req: &(String, u32)| req.0.clone())
        .max_concurrent(2)
        .max_keys(100)
        .build()
        .expect("valid settings");
    let handle = layer.handle();
    let mut service = layer.layer(service_fn(|(_, n): (String, u32)| async move {
        Ok::<_, BoxError>(n)
    }));
    for n in 0..10_000u32 {
        let reply = service
            .ready()
            .await
            .expect("ready")
            .call((format!("host-{n}"), n))
            .await;
        assert_eq!(reply.expect("served"), n);
    }
    handle.run_pending_tasks();
    assert!(handle.len() <= 100, "{} keys held", handle.len());
    assert!(handle.handles().len() <= 100);
    assert_eq!(handle.max_keys(), 100);
}

#[test]
fn bad_keyed_settings_fail_at_build() {
    let key = |req: &String| req.clone();
    let err = KeyedBulkheadLayer::builder(key)
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_keys");
    let err = KeyedBulkheadLayer::builder(key)
        .max_concurrent(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "bulkhead.max_concurrent");
    let err = KeyedBulkheadLayer::builder(key)
        .idle(Some(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "bulkhead.idle");
}

#[tokio::test(start_paused = true)]
async fn a_full_registry_of_held_keys_still_caps_a_new_key() {
    let layer = KeyedBulkheadLayer::builder(|req: &(String, u32)| req.0.clone())
        .max_concurrent(1)
        .max_keys(2)
        .build()
        .expect("valid settings");
    let mut service = layer.layer(slow_echo());
    // Both registered keys have a call in flight.
    let a = service.ready().await.unwrap().call(("a".into(), 1));
    let b = service.ready().await.unwrap().call(("b".into(), 2));
    let mut calls = Vec::new();
    for n in 0..5 {
        calls.push(service.ready().await.unwrap().call(("c".into(), n)));
    }
    let outcomes = futures::future::join_all(calls).await;
    let served = outcomes.iter().filter(|o| o.is_ok()).count();
    let full = outcomes
        .iter()
        .filter(|o| o.as_ref().is_err_and(|e| e.is::<BulkheadFull>()))
        .count();
    assert_eq!((served, full), (1, 4));
    assert_eq!((a.await.unwrap(), b.await.unwrap()), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_call_sent_to_the_overflow_state_is_reported() {
    use std::sync::{Arc, Mutex};
    use steadfast::observe::{Event, ObserveLayer};

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let observe = ObserveLayer::builder("api")
        .on_event(move |event| {
            if let Event::KeyOverflow {
                layer,
                name,
                max_keys,
            } = *event
            {
                log.lock().unwrap().push((layer, name.to_owned(), max_keys));
            }
        })
        .build()
        .unwrap();
    let layer = KeyedBulkheadLayer::builder(|req: &(String, u32)| req.0.clone())
        .max_concurrent(1)
        .max_keys(1)
        .name("per-host")
        .build()
        .expect("valid settings");
    let mut service = observe.layer(layer.layer(slow_echo()));
    let a = service.ready().await.unwrap().call(("a".into(), 1));
    let b = service.ready().await.unwrap().call(("b".into(), 2));
    assert_eq!((a.await.unwrap(), b.await.unwrap()), (1, 2));
    assert_eq!(
        *seen.lock().unwrap(),
        [("bulkhead", "per-host".to_owned(), 1)]
    );
}
