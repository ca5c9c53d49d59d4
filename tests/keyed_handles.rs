//! Every keyed layer (breaker, bulkhead, rate limiter, adaptive limiter)
//! answers the same questions with the same names: `get` a key's handle
//! without making one, `handles` of every live key, `len`,
//! `run_pending_tasks`; and its events name the key.
#![cfg(feature = "rate-limit")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::adaptive::KeyedAdaptiveLayer;
use steadfast::bulkhead::KeyedBulkheadLayer;
use steadfast::circuit_breaker::KeyedCircuitBreakerLayer;
use steadfast::observe::{Event, ObserveLayer};
use steadfast::rate_limit::{Mode, Quota, RateLimitLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

type Req = &'static str;

fn key(req: &Req) -> Req {
    req
}

fn echo() -> impl Service<Req, Response = Req, Error = BoxError, Future: Send> + Clone {
    service_fn(|req: Req| async move { Ok::<_, BoxError>(req) })
}

/// The keys of `handles`, sorted.
fn keys<H>(handles: Vec<(Req, H)>) -> Vec<Req> {
    let mut keys: Vec<_> = handles.into_iter().map(|(key, _)| key).collect();
    keys.sort_unstable();
    keys
}

async fn call<S>(service: &S, keys: &[Req])
where
    S: Service<Req> + Clone,
{
    for &key in keys {
        let _ = service.clone().oneshot(key).await;
    }
}

#[tokio::test(start_paused = true)]
async fn every_keyed_layer_has_the_same_handle_vocabulary() {
    let breakers = KeyedCircuitBreakerLayer::builder()
        .key(key)
        .build()
        .expect("valid");
    let bulkheads = KeyedBulkheadLayer::builder(key)
        .max_concurrent(3)
        .build()
        .expect("valid");
    let limits = RateLimitLayer::builder()
        .quota(Quota::per_second(4).burst(4))
        .key(key)
        .build()
        .expect("valid");
    let adaptive = KeyedAdaptiveLayer::builder(key).build().expect("valid");

    let used = ["a", "b", "a"];
    call(&breakers.layer(echo()), &used).await;
    call(&bulkheads.layer(echo()), &used).await;
    call(&limits.layer(echo()), &used).await;
    call(&adaptive.layer(echo()), &used).await;

    // `get` answers for a live key and makes nothing for another.
    assert_eq!(
        breakers.get(&"a").expect("a has a breaker").key(),
        Some("a")
    );
    assert_eq!(
        bulkheads.get(&"a").expect("a has a bulkhead").key(),
        Some("a")
    );
    assert_eq!(
        limits.get(&"a").expect("a has an allowance").key(),
        Some("a")
    );
    assert_eq!(
        adaptive.get(&"a").expect("a has a limiter").in_flight(),
        0,
        "every call has returned its permit"
    );
    assert!(breakers.get(&"z").is_none());
    assert!(bulkheads.get(&"z").is_none());
    assert!(limits.get(&"z").is_none());
    assert!(adaptive.get(&"z").is_none());

    // `handles` lists the live keys, the same on all four, and `len`
    // counts them; `get` above inserted nothing.
    assert_eq!(keys(breakers.handles()), ["a", "b"]);
    assert_eq!(keys(bulkheads.handles()), ["a", "b"]);
    assert_eq!(keys(limits.handles()), ["a", "b"]);
    assert_eq!(keys(adaptive.handles()), ["a", "b"]);
    assert_eq!(
        [
            breakers.len(),
            bulkheads.len(),
            limits.len(),
            adaptive.len()
        ],
        [2, 2, 2, 2]
    );
    // The cloneable views answer the same.
    assert_eq!(keys(bulkheads.handle().handles()), ["a", "b"]);
    assert_eq!(keys(limits.handle().handles()), ["a", "b"]);
    assert_eq!(keys(adaptive.handle().handles()), ["a", "b"]);
    assert!(limits.handle().get(&"b").is_some());

    // `get_or_insert` is the one way to make a key's state before its
    // first call (breaker and bulkhead).
    breakers.get_or_insert(&"c").force_open();
    assert_eq!(bulkheads.get_or_insert(&"c").available(), 3);
    assert_eq!(breakers.len(), 3);
    assert_eq!(bulkheads.len(), 3);

    // Unused keys go within two idle periods, on every layer alike.
    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(601)).await;
        breakers.run_pending_tasks();
        bulkheads.run_pending_tasks();
        limits.run_pending_tasks();
        adaptive.run_pending_tasks();
    }
    assert_eq!(
        [
            breakers.len(),
            bulkheads.len(),
            limits.len(),
            adaptive.len()
        ],
        [0, 0, 0, 0]
    );
    assert!(limits.get(&"a").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_rate_limiter_key_handle_reads_its_allowance_without_taking_any() {
    let limits = RateLimitLayer::builder()
        .tier("free", Quota::per_second(2).burst(4))
        .key(key)
        .build()
        .expect("valid");
    let service = limits.layer(echo());
    call(&service, &["a", "a", "a", "b"]).await;

    let a = limits.get(&"a").expect("a has an allowance");
    assert_eq!((a.tier(), a.limit()), ("free", 4));
    assert_eq!((a.remaining(), a.used()), (1, 3));
    // Reading takes nothing.
    assert_eq!(a.remaining(), 1);
    let allowance = a.allowance();
    assert_eq!((allowance.limit, allowance.remaining), (4, 1));
    assert_eq!(allowance.reset, Duration::from_millis(1_500));
    assert_eq!(allowance.window, Duration::from_secs(2));
    assert_eq!(limits.get(&"b").expect("b too").remaining(), 3);

    // The handle follows the key's allowance as calls use it up and time
    // gives it back.
    call(&service, &["a"]).await;
    assert_eq!(a.remaining(), 0);
    let refused = service.clone().oneshot("a").await;
    assert!(refused.is_err(), "a's burst is used up");
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(a.remaining(), 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!((a.remaining(), a.used()), (4, 0));
    assert_eq!(a.allowance().reset, Duration::ZERO);

    // An unkeyed limiter has no keys to hand out.
    let global = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .build()
        .expect("valid");
    call(&global.layer(echo()), &["a"]).await;
    assert!(global.get(&()).is_none());
    assert!(global.handles().is_empty());
}

/// The `(event, key)` pairs a listener hears.
type Heard = Arc<Mutex<Vec<(String, Option<String>)>>>;

fn listener() -> (ObserveLayer, Heard) {
    let heard: Heard = Arc::default();
    let log = Arc::clone(&heard);
    let observe = ObserveLayer::builder("p")
        .on_event(move |event: &Event<'_>| {
            let (what, key) = match event {
                Event::Rejected { rejection, key, .. } => (format!("rejected {rejection}"), key),
                Event::Throttled { key, .. } => ("throttled".to_owned(), key),
                Event::LimitChanged { key, .. } => ("limit_changed".to_owned(), key),
                _ => return,
            };
            log.lock()
                .expect("log")
                .push((what, key.map(str::to_owned)));
        })
        .build()
        .expect("valid");
    (observe, heard)
}

fn heard(heard: &Heard, what: &str) -> Vec<Option<String>> {
    heard
        .lock()
        .expect("log")
        .iter()
        .filter(|(w, _)| w == what)
        .map(|(_, key)| key.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn keyed_rate_limit_and_adaptive_events_carry_the_key() {
    let (observe, log) = listener();

    // A rate limiter refusing key a, then one throttling key b.
    let reject = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .key(key)
        .build()
        .expect("valid");
    call(&observe.layer(reject.layer(echo())), &["a", "a", "c"]).await;
    let throttle = RateLimitLayer::builder()
        .quota(Quota::per_second(1))
        .mode(Mode::Throttle {
            max_delay: Duration::from_secs(5),
        })
        .key(key)
        .build()
        .expect("valid");
    call(&observe.layer(throttle.layer(echo())), &["b", "b"]).await;
    assert_eq!(heard(&log, "rejected rate_limited"), [Some("a".to_owned())]);
    assert_eq!(heard(&log, "throttled"), [Some("b".to_owned())]);

    // A keyed adaptive limiter: while it measures the no-load round-trip
    // time it admits 3 calls at once, so the fourth is refused; once
    // measured, its limit moves. Both name the key.
    let adaptive = KeyedAdaptiveLayer::builder(key).build().expect("valid");
    let slow = observe.layer(adaptive.layer(service_fn(|req: Req| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, BoxError>(req)
    })));
    let calls: Vec<_> = (0..4).map(|_| slow.clone().oneshot("t")).collect();
    let results = futures::future::join_all(calls).await;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    for _ in 0..10 {
        slow.clone().oneshot("t").await.expect("answered");
    }
    assert_eq!(
        heard(&log, "rejected concurrency_limited"),
        [Some("t".to_owned())]
    );
    let changes = heard(&log, "limit_changed");
    assert!(!changes.is_empty(), "the limit moved");
    assert!(
        changes.iter().all(|key| key.as_deref() == Some("t")),
        "{changes:?}"
    );
}
