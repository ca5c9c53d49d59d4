//! One breaker per key.

use std::time::Duration;

use steadfast::BoxError;
use steadfast::circuit_breaker::{KeyedCircuitBreakerLayer, State};
use steadfast::error::CircuitOpen;
use tower::{Layer, Service, ServiceExt, service_fn};

/// (host, fail)
type Req = (&'static str, bool);

fn backend() -> impl Service<Req, Response = &'static str, Error = BoxError> + Clone {
    service_fn(|(host, fail): Req| async move {
        if fail {
            Err::<_, BoxError>("reset".into())
        } else {
            Ok(host)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_breaker() {
    let layer = KeyedCircuitBreakerLayer::builder()
        .key(|(host, _): &Req| *host)
        .count_window(2)
        .open_duration(Duration::from_secs(5))
        .half_open_probes(1)
        .build()
        .unwrap();
    let mut service = layer.layer(backend());
    for _ in 0..2 {
        let _ = service.ready().await.unwrap().call(("a", true)).await;
    }
    assert_eq!(layer.get_or_insert(&"a").state(), State::Open);
    let err = service
        .ready()
        .await
        .unwrap()
        .call(("a", false))
        .await
        .unwrap_err();
    assert_eq!(
        err.downcast_ref::<CircuitOpen>()
            .map(CircuitOpen::remaining),
        Some(Duration::from_secs(5))
    );
    // Another host is untouched, and a clone of the layer shares the keys.
    assert_eq!(
        service
            .ready()
            .await
            .unwrap()
            .call(("b", false))
            .await
            .unwrap(),
        "b"
    );
    let other = layer.clone().layer(backend());
    assert!(
        other
            .oneshot(("a", false))
            .await
            .unwrap_err()
            .is::<CircuitOpen>()
    );
    assert_eq!(layer.get_or_insert(&"b").snapshot().calls, 1);

    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        service
            .ready()
            .await
            .unwrap()
            .call(("a", false))
            .await
            .unwrap(),
        "a"
    );
    assert_eq!(layer.get_or_insert(&"a").state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_key_can_be_forced_before_its_first_call() {
    let layer = KeyedCircuitBreakerLayer::builder()
        .key(|(host, _): &Req| host.to_string())
        .build()
        .unwrap();
    layer.get_or_insert(&"down".to_owned()).force_open();
    let mut service = layer.layer(backend());
    let err = service
        .ready()
        .await
        .unwrap()
        .call(("down", false))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(
        service
            .ready()
            .await
            .unwrap()
            .call(("up", false))
            .await
            .unwrap(),
        "up"
    );
    let mut keys: Vec<_> = layer
        .handles()
        .into_iter()
        .map(|(key, handle)| (key, handle.state()))
        .collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        keys,
        [
            ("down".to_owned(), State::ForcedOpen),
            ("up".to_owned(), State::Closed)
        ]
    );
}

#[tokio::test]
async fn the_number_of_keys_is_bounded() {
    let layer = KeyedCircuitBreakerLayer::builder()
        .key(|n: &u32| *n)
        .max_keys(50)
        .build()
        .unwrap();
    let mut service = layer.layer(service_fn(|n: u32| async move { Ok::<_, BoxError>(n) }));
    for n in 0..5_000 {
        assert_eq!(service.ready().await.unwrap().call(n).await.unwrap(), n);
    }
    layer.run_pending_tasks();
    assert!(layer.len() <= 50, "{} keys kept", layer.len());
    assert!(!layer.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_full_registry_of_held_keys_keeps_protecting_a_new_key() {
    let layer = KeyedCircuitBreakerLayer::builder()
        .key(|(host, _): &Req| *host)
        .count_window(4)
        .max_keys(2)
        .build()
        .unwrap();
    let mut service = layer.layer(backend());
    for host in ["a", "b"] {
        service
            .ready()
            .await
            .unwrap()
            .call((host, false))
            .await
            .unwrap();
    }
    // Both registered keys are held: by handles, as a call in flight would.
    let held = [layer.get_or_insert(&"a"), layer.get_or_insert(&"b")];
    let mut refused = 0;
    for _ in 0..50 {
        let err = service
            .ready()
            .await
            .unwrap()
            .call(("c", true))
            .await
            .unwrap_err();
        refused += usize::from(err.is::<CircuitOpen>());
    }
    assert_eq!(layer.get_or_insert(&"c").state(), State::Open);
    assert!(refused >= 40, "only {refused} of 50 calls refused");
    // A fourth key shares the overflow breaker, open too.
    let err = service
        .ready()
        .await
        .unwrap()
        .call(("d", false))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(held.map(|h| h.state()), [State::Closed, State::Closed]);
    assert_eq!(layer.len(), 2);
}
