//! Health snapshots: every registered component read at once, and their
//! JSON.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use steadfast::BoxError;
use steadfast::bulkhead::{BulkheadLayer, KeyedBulkheadLayer};
use steadfast::circuit_breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};
use steadfast::observe::{BreakerStatus, Health, HealthSnapshot, Status};
use steadfast::policy::Policy;
use steadfast::rate_limit::{Quota, RateLimitLayer};
use steadfast::retry::{RetryBudget, RetryLayer};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

use crate::{Switch, ms, slow};

/// A request to a host, which fails if asked to.
type Req = (&'static str, bool);

fn host(request: &Req) -> &'static str {
    request.0
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn breaker<'a>(snapshot: &'a HealthSnapshot, key: &str) -> &'a BreakerStatus {
    snapshot
        .circuit_breakers
        .iter()
        .find(|b| b.key.as_deref() == Some(key))
        .unwrap_or_else(|| panic!("no breaker for {key}: {snapshot:#?}"))
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_reads_every_component() -> Result<(), BoxError> {
    let budget = RetryBudget::builder().build()?;
    let policy = Policy::builder()
        .name("payments")
        .retry(RetryLayer::builder().max_attempts(2).budget(budget))
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .name("payments_cb")
                .count_window(10),
        )
        .bulkhead(
            BulkheadLayer::builder()
                .max_concurrent(4)
                .name("payments_pool"),
        )
        .build()?;
    let uploads = BulkheadLayer::builder()
        .max_concurrent(2)
        .name("uploads")
        .build()?;
    let per_host = KeyedBulkheadLayer::builder(host)
        .max_concurrent(3)
        .name("per_host")
        .build()?;
    let breakers = KeyedCircuitBreakerLayer::builder()
        .key(host)
        .name("per_host_cb")
        .count_window(2)
        .open_duration(ms(10_000))
        .build()?;
    let limiter = RateLimitLayer::builder()
        .tier("free", Quota::per_minute(60).burst(5))
        .tier("pro", Quota::per_second(100))
        .default_tier("free")
        .key(host)
        .max_keys(100)
        .build()?;
    let health = Health::new()
        .policy(&policy)
        .bulkhead(uploads.handle())
        .keyed_bulkhead(per_host.handle())
        .keyed_circuit_breaker(&breakers)
        .rate_limiter("api", limiter.handle());

    // Nothing called yet: healthy, no keys.
    let snapshot = health.snapshot();
    assert!(snapshot.healthy);
    assert!(snapshot.circuit_breakers.is_empty());

    // The policy answers once, after its retry.
    policy.layer(crate::flaky(1, ms(0))).oneshot(1).await?;
    // Host `a` answers, host `b` fails twice and its breaker opens.
    let backend = service_fn(|(_, fail): Req| async move {
        if fail {
            Err(BoxError::from("connection reset"))
        } else {
            tokio::time::sleep(ms(100)).await;
            Ok(())
        }
    });
    let mut stack = limiter.layer(breakers.layer(per_host.layer(backend)));
    stack.ready().await?.call(("a", false)).await?;
    for _ in 0..2 {
        stack.ready().await?.call(("b", true)).await.unwrap_err();
    }
    // A call to `a` is under way.
    let pending = stack.ready().await?.call(("a", false));
    advance(ms(1_000)).await;

    let snapshot = health.snapshot();
    assert!(!snapshot.healthy);

    assert_eq!(snapshot.policies.len(), 1);
    let payments = &snapshot.policies[0];
    assert_eq!(payments.name, "payments");
    let cb = payments.circuit_breaker.as_ref().expect("a breaker");
    assert_eq!((cb.name.as_str(), cb.key.as_deref()), ("payments_cb", None));
    assert_eq!(cb.state, "closed");
    // One reset and one answer.
    assert_eq!((cb.calls, cb.failures, cb.slow_calls), (2, 1, 0));
    assert_eq!(cb.failure_rate, 50.0);
    assert_eq!(cb.open_remaining_ms, None);
    let pool = payments.bulkhead.as_ref().expect("a bulkhead");
    assert_eq!(pool.name, "payments_pool");
    assert_eq!(
        (pool.in_flight, pool.available, pool.max_concurrent),
        (0, 4, 4)
    );
    let budget = payments.retry_budget.as_ref().expect("a budget");
    assert_eq!((budget.requests, budget.retries), (1, 1));
    assert_eq!(*payments, policy.snapshot());

    assert_eq!(snapshot.circuit_breakers.len(), 2);
    let a = breaker(&snapshot, "a");
    assert_eq!(a.name, "per_host_cb");
    assert_eq!((a.state, a.calls, a.failures), ("closed", 1, 0));
    assert!(a.is_closed());
    let b = breaker(&snapshot, "b");
    assert_eq!((b.state, b.calls, b.failures), ("open", 2, 2));
    assert_eq!(b.failure_rate, 100.0);
    assert_eq!(b.slow_call_rate, 0.0);
    assert_eq!(b.open_remaining_ms, Some(9_000));
    assert_eq!(b.probes_in_flight, 0);
    assert!(!b.is_closed());

    let mut bulkheads = snapshot.bulkheads.clone();
    bulkheads.sort_by(|x, y| x.key.cmp(&y.key));
    let summary: Vec<_> = bulkheads
        .iter()
        .map(|b| {
            (
                b.name.as_str(),
                b.key.as_deref(),
                b.in_flight,
                b.available,
                b.waiting,
                b.max_concurrent,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("uploads", None, 0, 2, 0, 2),
            ("per_host", Some("a"), 1, 2, 0, 3),
            ("per_host", Some("b"), 0, 3, 0, 3),
        ]
    );

    limiter.handle().run_pending_tasks();
    let snapshot = health.snapshot();
    assert_eq!(snapshot.rate_limiters.len(), 1);
    let api = &snapshot.rate_limiters[0];
    assert_eq!(api.name, "api");
    assert_eq!(api.keys, 2);
    assert_eq!(api.max_keys, 200);
    assert_eq!(api.tiers, ["free", "pro"]);
    assert_eq!(api.mode, "reject");

    // Statuses come in registration order: policy, bulkhead, the keys of
    // the keyed bulkhead, then those of the keyed breaker, the limiter.
    let kinds: Vec<&str> = health
        .statuses()
        .iter()
        .map(|s| match s {
            Status::Policy(_) => "policy",
            Status::CircuitBreaker(_) => "breaker",
            Status::Bulkhead(_) => "bulkhead",
            Status::RateLimiter(_) => "limiter",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "policy", "bulkhead", "bulkhead", "bulkhead", "breaker", "breaker", "limiter"
        ]
    );

    // Healthy again once `b` closes.
    breakers.get_or_insert(&"b").reset();
    assert!(health.snapshot().healthy);
    drop(pending);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_open_or_half_open_breaker_is_unhealthy() -> Result<(), BoxError> {
    let policy = Policy::builder()
        .name("payments")
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .count_window(1)
                .open_duration(ms(100))
                .half_open_probes(1),
        )
        .build()?;
    let health = Health::new().policy(&policy);
    let handle = policy.circuit_breaker().expect("a breaker");
    assert!(health.snapshot().healthy);

    let switch = Switch::default();
    switch.fail(true);
    policy.layer(switch.service()).oneshot(1).await.unwrap_err();
    assert!(!health.snapshot().healthy);

    // Half-open while its probe is under way.
    advance(ms(100)).await;
    let mut probe = tokio_test::task::spawn(policy.layer(slow(ms(50))).oneshot(1));
    tokio_test::assert_pending!(probe.poll());
    let snapshot = health.snapshot();
    let status = snapshot.policies[0].circuit_breaker.as_ref().unwrap();
    assert_eq!(status.state, "half_open");
    assert_eq!(status.probes_in_flight, 1);
    assert!(!snapshot.healthy);
    advance(ms(50)).await;
    tokio_test::assert_ready_ok!(probe.poll());
    assert!(health.snapshot().healthy);

    // Disabled and metrics-only let calls through: healthy.
    handle.disable();
    assert!(health.snapshot().healthy);
    handle.metrics_only();
    assert!(health.snapshot().healthy);
    handle.force_open();
    assert!(!health.snapshot().healthy);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_json_has_the_documented_keys() -> Result<(), BoxError> {
    let policy = Policy::builder()
        .name("payments")
        .retry(RetryLayer::builder())
        .circuit_breaker(CircuitBreakerLayer::builder().name("payments_cb"))
        .bulkhead(BulkheadLayer::builder().name("payments_pool"))
        .build()?;
    let bare = Policy::builder().name("bare").build()?;
    let breakers = KeyedCircuitBreakerLayer::builder()
        .key(host)
        .name("per_host_cb")
        .build()?;
    breakers.get_or_insert(&"a").force_open();
    let per_host = KeyedBulkheadLayer::builder(host).name("per_host").build()?;
    per_host
        .layer(service_fn(|_: Req| async { Ok::<_, BoxError>(()) }))
        .oneshot(("a", false))
        .await?;
    let limiter = RateLimitLayer::builder()
        .quota(Quota::per_second(10))
        .build()?;
    let health = Health::new()
        .policy(&policy)
        .policy(&bare)
        .keyed_circuit_breaker(&breakers)
        .keyed_bulkhead(per_host.handle())
        .rate_limiter("global", limiter.handle());

    let snapshot = health.snapshot();
    let value = serde_json::to_value(&snapshot)?;
    assert_eq!(
        keys(&value),
        BTreeSet::from([
            "healthy",
            "policies",
            "circuit_breakers",
            "bulkheads",
            "rate_limiters"
        ])
    );
    assert_eq!(value["healthy"], json!(false));

    let payments = &value["policies"][0];
    assert_eq!(
        keys(payments),
        BTreeSet::from(["name", "circuit_breaker", "bulkhead", "retry_budget"])
    );
    assert_eq!(payments["name"], "payments");
    // A closed, unkeyed breaker leaves out `key` and `open_remaining_ms`.
    assert_eq!(
        payments["circuit_breaker"],
        json!({
            "name": "payments_cb",
            "state": "closed",
            "calls": 0,
            "failures": 0,
            "slow_calls": 0,
            "failure_rate": 0.0,
            "slow_call_rate": 0.0,
            "probes_in_flight": 0,
        })
    );
    assert_eq!(
        payments["bulkhead"],
        json!({
            "name": "payments_pool",
            "in_flight": 0,
            "available": 25,
            "waiting": 0,
            "max_concurrent": 25,
        })
    );
    assert_eq!(
        keys(&payments["retry_budget"]),
        BTreeSet::from(["requests", "retries", "remaining"])
    );
    // A policy without stateful layers has only its name.
    assert_eq!(value["policies"][1], json!({ "name": "bare" }));

    // A keyed breaker names its key; forced open, it has no open period.
    assert_eq!(
        value["circuit_breakers"][0],
        json!({
            "name": "per_host_cb",
            "key": "a",
            "state": "forced_open",
            "calls": 0,
            "failures": 0,
            "slow_calls": 0,
            "failure_rate": 0.0,
            "slow_call_rate": 0.0,
            "probes_in_flight": 0,
        })
    );
    assert_eq!(
        value["bulkheads"][0],
        json!({
            "name": "per_host",
            "key": "a",
            "in_flight": 0,
            "available": 25,
            "waiting": 0,
            "max_concurrent": 25,
        })
    );
    assert_eq!(
        value["rate_limiters"][0],
        json!({
            "name": "global",
            "keys": 0,
            "max_keys": 10_000,
            "tiers": ["default"],
            "mode": "reject",
        })
    );

    // An open breaker says how long it stays open.
    breakers.get_or_insert(&"a").reset();
    let opening = KeyedCircuitBreakerLayer::builder()
        .key(host)
        .name("opening")
        .count_window(1)
        .open_duration(ms(2_000))
        .build()?;
    opening
        .layer(service_fn(|_: Req| async {
            Err::<(), BoxError>("connection reset".into())
        }))
        .oneshot(("z", true))
        .await
        .unwrap_err();
    let value = serde_json::to_value(Health::new().keyed_circuit_breaker(&opening).snapshot())?;
    assert_eq!(value["healthy"], json!(false));
    assert_eq!(value["circuit_breakers"][0]["key"], "z");
    assert_eq!(value["circuit_breakers"][0]["state"], "open");
    assert_eq!(value["circuit_breakers"][0]["failure_rate"], json!(100.0));
    assert_eq!(value["circuit_breakers"][0]["open_remaining_ms"], 2_000);
    Ok(())
}
