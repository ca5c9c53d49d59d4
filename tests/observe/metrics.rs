//! Metric names, labels and values, read from a `DebuggingRecorder`
//! installed on the test's thread before the layers are built.

use std::time::Duration;

use steadfast::BoxError;
use steadfast::bulkhead::{BulkheadLayer, KeyedBulkheadLayer};
use steadfast::circuit_breaker::{
    CircuitBreakerHandle, CircuitBreakerLayer, KeyedCircuitBreakerLayer, State,
};
use steadfast::fallback::FallbackLayer;
use steadfast::hedge::HedgeLayer;
use steadfast::observe::ObserveLayer;
use steadfast::observe::metrics as names;
use steadfast::policy::Policy;
use steadfast::rate_limit::{Mode, Quota, RateLimitLayer};
use steadfast::retry::{RetryBudget, RetryLayer};
use steadfast::timeout::TotalDeadlineLayer;
use tokio::time::advance;
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::recorder::{Metrics, Reading, labels_of};
use crate::trace::{retry, slow_first};
use crate::{Switch, flaky, ms, slow};

const VERDICTS: [&str; 5] = [
    "success",
    "functional_error",
    "transient",
    "failure",
    "rejected",
];

const STATES: [&str; 6] = [
    "closed",
    "open",
    "half_open",
    "forced_open",
    "disabled",
    "metrics_only",
];

#[test]
fn the_names_are_the_documented_ones() {
    assert_eq!(names::CALLS, "steadfast_calls_total");
    assert_eq!(names::CALL_DURATION, "steadfast_call_duration_seconds");
    assert_eq!(names::ATTEMPTS, "steadfast_attempts_total");
    assert_eq!(
        names::ATTEMPT_DURATION,
        "steadfast_attempt_duration_seconds"
    );
    assert_eq!(names::RETRIES, "steadfast_retries_total");
    assert_eq!(names::RETRIES_STOPPED, "steadfast_retries_stopped_total");
    assert_eq!(names::REJECTIONS, "steadfast_rejections_total");
    assert_eq!(names::BREAKER_STATE, "steadfast_circuit_breaker_state");
    assert_eq!(
        names::BREAKER_TRANSITIONS,
        "steadfast_circuit_breaker_transitions_total"
    );
    assert_eq!(names::BULKHEAD_IN_FLIGHT, "steadfast_bulkhead_in_flight");
    assert_eq!(names::RATE_LIMITED, "steadfast_rate_limited_total");
    assert_eq!(names::FALLBACKS, "steadfast_fallbacks_total");
    assert_eq!(names::HEDGES_SENT, "steadfast_hedges_sent_total");
    assert_eq!(names::HEDGES_WON, "steadfast_hedges_won_total");
    assert_eq!(names::SLOW_CALLS, "steadfast_slow_calls_total");
}

fn by_verdict<'a>(policy: &'a str, route: &'a str, verdict: &'a str) -> [(&'a str, &'a str); 3] {
    [("policy", policy), ("route", route), ("verdict", verdict)]
}

#[tokio::test(start_paused = true)]
async fn calls_and_attempts_are_counted_by_policy_route_and_verdict() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let policy = Policy::builder()
        .name("inventory")
        .route("/items/{id}")
        .metrics(true)
        .retry(retry(3, ms(100)).name("inventory_retry"))
        .build()?;

    // Registered when built, every verdict at zero.
    let m = metrics.read();
    for verdict in VERDICTS {
        let labels = by_verdict("inventory", "/items/{id}", verdict);
        assert_eq!(m.counter(names::CALLS, &labels), Some(0), "{verdict}");
        assert_eq!(m.counter(names::ATTEMPTS, &labels), Some(0), "{verdict}");
    }

    // Retried twice: three attempts, 250 ms in all.
    policy.layer(flaky(2, ms(50))).oneshot(7).await?;
    let m = metrics.read();
    let success = by_verdict("inventory", "/items/{id}", "success");
    let transient = by_verdict("inventory", "/items/{id}", "transient");
    assert_eq!(m.count(names::CALLS, &success), 1);
    assert_eq!(m.total(names::CALLS), 1);
    assert_eq!(m.histogram(names::CALL_DURATION, &success), [0.25]);
    assert_eq!(m.count(names::ATTEMPTS, &transient), 2);
    assert_eq!(m.count(names::ATTEMPTS, &success), 1);
    assert_eq!(m.total(names::ATTEMPTS), 3);
    // The resets were at once; the answer took 50 ms after its backoff.
    assert_eq!(m.histogram(names::ATTEMPT_DURATION, &transient), [0.0, 0.0]);
    assert_eq!(m.histogram(names::ATTEMPT_DURATION, &success), [0.05]);
    assert_eq!(
        m.counters(names::RETRIES),
        [(
            labels_of(&[
                ("policy", "inventory"),
                ("route", "/items/{id}"),
                ("name", "inventory_retry"),
                ("verdict", "transient"),
            ]),
            2
        )]
    );

    // Three resets: the call fails after its last attempt.
    policy.layer(flaky(3, ms(50))).oneshot(7).await.unwrap_err();
    let m = metrics.read();
    assert_eq!(m.count(names::CALLS, &transient), 1);
    assert_eq!(m.histogram(names::CALL_DURATION, &transient), [0.2]);
    assert_eq!(m.count(names::ATTEMPTS, &transient), 5);
    assert_eq!(m.total(names::RETRIES), 4);
    assert_eq!(
        m.counters(names::RETRIES_STOPPED),
        [(
            labels_of(&[
                ("policy", "inventory"),
                ("route", "/items/{id}"),
                ("name", "inventory_retry"),
                ("reason", "attempts_exhausted"),
            ]),
            1
        )]
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_call_without_retry_is_one_attempt() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let observe = ObserveLayer::builder("search").metrics(true).build()?;
    observe.layer(slow(ms(30))).oneshot(1).await?;

    let m = metrics.read();
    // No route: the label is empty.
    let success = by_verdict("search", "", "success");
    assert_eq!(m.count(names::CALLS, &success), 1);
    assert_eq!(m.count(names::ATTEMPTS, &success), 1);
    assert_eq!(m.histogram(names::CALL_DURATION, &success), [0.03]);
    assert_eq!(m.histogram(names::ATTEMPT_DURATION, &success), [0.03]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn call_metrics_can_be_turned_off() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let policy = Policy::builder().name("quiet").metrics(false).build()?;
    policy.layer(slow(ms(1))).oneshot(1).await?;
    let m = metrics.read();
    assert!(m.counters(names::CALLS).is_empty());
    assert!(m.counters(names::ATTEMPTS).is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn rejections_are_counted_by_kind_and_name() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let labels = |kind, name| {
        labels_of(&[
            ("policy", "api"),
            ("route", "/api"),
            ("kind", kind),
            ("name", name),
        ])
    };
    let observe = ObserveLayer::builder("api")
        .route("/api")
        .metrics(true)
        .build()?;

    // A breaker forced open.
    let breaker = CircuitBreakerLayer::builder().name("api_cb").build()?;
    breaker.handle().force_open();
    let service = ServiceBuilder::new()
        .layer(observe.clone())
        .layer(breaker)
        .service(slow(ms(0)));
    service.oneshot(1).await.unwrap_err();

    // A full bulkhead.
    let mut service = ServiceBuilder::new()
        .layer(observe.clone())
        .layer(
            BulkheadLayer::builder()
                .max_concurrent(1)
                .name("api_pool")
                .build()?,
        )
        .service(slow(ms(1_000)));
    let held = service.ready().await?.call(1);
    service.ready().await?.call(2).await.unwrap_err();
    drop(held);

    // A rate limit.
    let mut service = ServiceBuilder::new()
        .layer(observe.clone())
        .layer(
            RateLimitLayer::builder()
                .tier("free", Quota::per_minute(1))
                .build()?,
        )
        .service(slow(ms(0)));
    service.ready().await?.call(1).await?;
    service.ready().await?.call(2).await.unwrap_err();

    // The total deadline.
    let service = ServiceBuilder::new()
        .layer(observe)
        .layer(TotalDeadlineLayer::new(ms(100))?)
        .service(slow(ms(1_000)));
    service.oneshot(1).await.unwrap_err();

    let m = metrics.read();
    assert_eq!(
        m.counters(names::REJECTIONS),
        [
            (labels("bulkhead_full", "api_pool"), 1),
            (labels("circuit_open", "api_cb"), 1),
            (labels("deadline_exceeded", "total_deadline"), 1),
            (labels("rate_limited", "free"), 1),
        ]
    );
    // Each refused call ended with the verdict `rejected`.
    assert_eq!(
        m.count(names::CALLS, &by_verdict("api", "/api", "rejected")),
        4
    );

    // Outside a watched call, policy and route are empty.
    let breaker = CircuitBreakerLayer::builder().name("bare_cb").build()?;
    breaker.handle().force_open();
    breaker.layer(slow(ms(0))).oneshot(1).await.unwrap_err();
    let m = metrics.read();
    assert_eq!(
        m.counter(
            names::REJECTIONS,
            &[
                ("policy", ""),
                ("route", ""),
                ("kind", "circuit_open"),
                ("name", "bare_cb")
            ]
        ),
        Some(1)
    );
    Ok(())
}

/// The state gauges of breaker `name` (key `key`): exactly one is 1, the
/// five others 0; returns the one.
#[track_caller]
pub(crate) fn shown_state(m: &Reading, name: &str, key: &str) -> &'static str {
    let mut shown = Vec::new();
    for state in STATES {
        let labels = [("name", name), ("key", key), ("state", state)];
        match m.gauge(names::BREAKER_STATE, &labels) {
            Some(1.0) => shown.push(state),
            Some(0.0) => {}
            other => panic!("{name}/{key} {state}: {other:?}"),
        }
    }
    assert_eq!(
        m.gauges(names::BREAKER_STATE)
            .iter()
            .filter(|(l, _)| l["name"] == name && l["key"] == key)
            .count(),
        6
    );
    assert_eq!(shown.len(), 1, "{name}/{key}: {shown:?}");
    shown[0]
}

#[track_caller]
fn assert_shows(metrics: &Metrics, handle: &CircuitBreakerHandle, state: State) {
    assert_eq!(handle.state(), state);
    let m = metrics.read();
    assert_eq!(shown_state(&m, "db", ""), state.as_str());
}

#[tokio::test(start_paused = true)]
async fn the_breaker_state_gauges_show_one_state_at_every_step() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let switch = Switch::default();
    let layer = CircuitBreakerLayer::builder()
        .name("db")
        .count_window(2)
        .open_duration(ms(1_000))
        .half_open_probes(1)
        .build()?;
    let handle = layer.handle();
    let mut service = layer.layer(switch.service());
    assert_shows(&metrics, &handle, State::Closed);

    switch.fail(true);
    for _ in 0..2 {
        service.ready().await?.call(1).await.unwrap_err();
    }
    assert_shows(&metrics, &handle, State::Open);
    // Reading twice changes nothing.
    assert_shows(&metrics, &handle, State::Open);

    // The probe is under way: half-open.
    advance(ms(1_000)).await;
    switch.fail(false);
    let mut prober = layer.layer(slow(ms(10)));
    let mut probe = task::spawn(prober.ready().await?.call(1));
    assert_pending!(probe.poll());
    assert_shows(&metrics, &handle, State::HalfOpen);
    advance(ms(10)).await;
    assert_ready_ok!(probe.poll());
    assert_shows(&metrics, &handle, State::Closed);

    handle.force_open();
    assert_shows(&metrics, &handle, State::ForcedOpen);
    handle.disable();
    assert_shows(&metrics, &handle, State::Disabled);
    handle.metrics_only();
    assert_shows(&metrics, &handle, State::MetricsOnly);
    handle.reset();
    assert_shows(&metrics, &handle, State::Closed);

    let m = metrics.read();
    let transition = |from, to, reason| {
        m.count(
            names::BREAKER_TRANSITIONS,
            &[
                ("name", "db"),
                ("from", from),
                ("to", to),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(transition("closed", "open", "failure_rate"), 1);
    assert_eq!(transition("open", "half_open", "open_elapsed"), 1);
    assert_eq!(transition("half_open", "closed", "probes_passed"), 1);
    assert_eq!(transition("closed", "forced_open", "forced"), 1);
    assert_eq!(transition("forced_open", "disabled", "forced"), 1);
    assert_eq!(transition("disabled", "metrics_only", "forced"), 1);
    assert_eq!(transition("metrics_only", "closed", "reset"), 1);
    assert_eq!(m.total(names::BREAKER_TRANSITIONS), 7);
    drop(service);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_keyed_breaker_has_state_gauges_per_key() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let layer = KeyedCircuitBreakerLayer::builder()
        .key(|request: &(&'static str, bool)| request.0)
        .name("hosts")
        .count_window(2)
        .build()?;
    let service = layer.layer(tower::service_fn(
        |(_, fail): (&'static str, bool)| async move {
            if fail {
                Err(BoxError::from("connection reset"))
            } else {
                Ok(())
            }
        },
    ));
    for request in [("a", false), ("b", true), ("b", true)] {
        service.clone().oneshot(request).await.ok();
    }

    let m = metrics.read();
    assert_eq!(shown_state(&m, "hosts", "a"), "closed");
    assert_eq!(shown_state(&m, "hosts", "b"), "open");
    assert_eq!(layer.get_or_insert(&"b").key(), Some("b"));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_bulkhead_gauge_counts_the_calls_in_flight() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let in_flight = |name| {
        metrics
            .read()
            .gauge(names::BULKHEAD_IN_FLIGHT, &[("name", name)])
    };
    let layer = BulkheadLayer::builder()
        .max_concurrent(5)
        .name("pool")
        .build()?;
    assert_eq!(in_flight("pool"), Some(0.0));

    // Rises with each pending call, falls to zero once they answer.
    let mut service = layer.layer(slow(ms(100)));
    let mut pending = Vec::new();
    for n in 0..3 {
        pending.push(service.ready().await?.call(n));
        assert_eq!(in_flight("pool"), Some(f64::from(n + 1)));
    }
    assert_eq!(layer.handle().in_flight(), 3);
    for answer in futures::future::join_all(pending).await {
        answer?;
    }
    assert_eq!(in_flight("pool"), Some(0.0));

    // Falls to zero when the calls are dropped too.
    let mut pending = Vec::new();
    for n in 0..3 {
        pending.push(service.ready().await?.call(n));
    }
    assert_eq!(in_flight("pool"), Some(3.0));
    drop(pending.pop());
    assert_eq!(in_flight("pool"), Some(2.0));
    drop(pending);
    assert_eq!(in_flight("pool"), Some(0.0));

    // The keys of a keyed bulkhead add up in one gauge.
    let keyed = KeyedBulkheadLayer::builder(|request: &(&'static str, u32)| request.0)
        .max_concurrent(2)
        .name("hosts")
        .build()?;
    let mut service = keyed.layer(tower::service_fn(
        |(_, n): (&'static str, u32)| async move {
            tokio::time::sleep(ms(100)).await;
            Ok::<_, BoxError>(n)
        },
    ));
    let mut pending = Vec::new();
    for request in [("a", 1), ("a", 2), ("b", 3)] {
        pending.push(service.ready().await?.call(request));
    }
    assert_eq!(in_flight("hosts"), Some(3.0));
    // A refusal holds nothing.
    service.ready().await?.call(("a", 4)).await.unwrap_err();
    assert_eq!(in_flight("hosts"), Some(3.0));
    let first = pending.remove(0);
    assert_eq!(first.await?, 1);
    assert_eq!(in_flight("hosts"), Some(2.0));
    drop(pending);
    assert_eq!(in_flight("hosts"), Some(0.0));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn rate_limits_are_counted_by_tier_and_outcome() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let limited = |tier, outcome| {
        metrics
            .read()
            .count(names::RATE_LIMITED, &[("tier", tier), ("outcome", outcome)])
    };

    let mut rejecting = RateLimitLayer::builder()
        .tier("free", Quota::per_minute(1))
        .build()?
        .layer(slow(ms(0)));
    rejecting.ready().await?.call(1).await?;
    rejecting.ready().await?.call(2).await.unwrap_err();
    rejecting.ready().await?.call(3).await.unwrap_err();
    assert_eq!(limited("free", "rejected"), 2);

    let mut throttling = RateLimitLayer::builder()
        .tier("pro", Quota::per_second(1))
        .mode(Mode::Throttle {
            max_delay: Duration::from_secs(2),
        })
        .build()?
        .layer(slow(ms(0)));
    throttling.ready().await?.call(1).await?;
    throttling.ready().await?.call(2).await?;
    assert_eq!(limited("pro", "delayed"), 1);
    assert_eq!(limited("pro", "rejected"), 0);
    assert_eq!(metrics.read().total(names::RATE_LIMITED), 3);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn fallbacks_are_counted_by_source() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let observe = ObserveLayer::builder("prices")
        .route("/prices")
        .metrics(true)
        .build()?;
    let source = |source| {
        [
            ("policy", "prices"),
            ("route", "/prices"),
            ("name", "prices_fallback"),
            ("source", source),
        ]
    };

    let alternate = ServiceBuilder::new()
        .layer(observe.clone())
        .layer(
            FallbackLayer::builder()
                .alternate(slow(ms(0)))
                .static_response(0_u32)
                .name("prices_fallback")
                .build()?,
        )
        .service(flaky(9, ms(0)));
    assert_eq!(alternate.oneshot(5).await?, 5);

    let fixed = ServiceBuilder::new()
        .layer(observe.clone())
        .layer(
            FallbackLayer::builder()
                .static_response(0_u32)
                .name("prices_fallback")
                .build()?,
        )
        .service(flaky(9, ms(0)));
    for _ in 0..2 {
        assert_eq!(fixed.clone().oneshot(5).await?, 0);
    }

    let none = ServiceBuilder::new()
        .layer(observe)
        .layer(
            FallbackLayer::builder()
                .alternate(flaky(9, ms(0)))
                .name("prices_fallback")
                .build()?,
        )
        .service(flaky(9, ms(0)));
    none.oneshot(5).await.unwrap_err();

    let m = metrics.read();
    assert_eq!(m.count(names::FALLBACKS, &source("alternate")), 1);
    assert_eq!(m.count(names::FALLBACKS, &source("static")), 2);
    assert_eq!(m.count(names::FALLBACKS, &source("none")), 1);
    assert_eq!(m.total(names::FALLBACKS), 4);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn hedges_sent_and_won_are_counted() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let service = ServiceBuilder::new()
        .layer(ObserveLayer::builder("search").metrics(true).build()?)
        .layer(
            HedgeLayer::builder()
                .delay(ms(50))
                .name("search_hedge")
                .build()?,
        )
        .service(slow_first());
    service.clone().oneshot(1).await?;
    // Every later call answers in 10 ms, before the hedge would leave.
    service.oneshot(2).await?;

    let m = metrics.read();
    let labels = [
        ("policy", "search"),
        ("route", ""),
        ("name", "search_hedge"),
    ];
    assert_eq!(m.count(names::HEDGES_SENT, &labels), 1);
    assert_eq!(m.count(names::HEDGES_WON, &labels), 1);
    assert_eq!(
        m.count(names::CALLS, &by_verdict("search", "", "success")),
        2
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn slow_calls_are_counted() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let policy = Policy::builder()
        .name("reports")
        .route("/reports/{id}")
        .slow_call(ms(200))
        .build()?;
    for latency in [250, 100, 300] {
        policy.layer(slow(ms(latency))).oneshot(1).await?;
    }
    let m = metrics.read();
    assert_eq!(
        m.counters(names::SLOW_CALLS),
        [(
            labels_of(&[("policy", "reports"), ("route", "/reports/{id}")]),
            2
        )]
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_is_counted_as_a_stop() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let empty = RetryBudget::builder().ratio(0.0).reserve(0).build()?;
    let policy = Policy::builder()
        .name("inventory")
        .route("/items/{id}")
        .metrics(true)
        .retry(RetryLayer::builder().budget(empty))
        .build()?;
    policy.layer(flaky(9, ms(0))).oneshot(1).await.unwrap_err();

    let m = metrics.read();
    assert_eq!(
        m.counters(names::RETRIES_STOPPED),
        [(
            labels_of(&[
                ("policy", "inventory"),
                ("route", "/items/{id}"),
                ("name", "retry"),
                ("reason", "budget_spent"),
            ]),
            1
        )]
    );
    assert_eq!(m.total(names::RETRIES), 0);
    assert_eq!(m.total(names::ATTEMPTS), 1);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_for_a_permit_is_not_in_flight() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let in_flight = || {
        metrics
            .read()
            .gauge(names::BULKHEAD_IN_FLIGHT, &[("name", "queue")])
    };
    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_wait(ms(500))
        .name("queue")
        .build()?;
    let handle = layer.handle();
    let mut service = layer.layer(slow(ms(100)));

    let mut first = task::spawn(service.ready().await?.call(1));
    let mut second = task::spawn(service.ready().await?.call(2));
    let mut third = task::spawn(service.ready().await?.call(3));
    assert_pending!(first.poll());
    assert_pending!(second.poll());
    assert_pending!(third.poll());
    assert_eq!((handle.in_flight(), handle.waiting()), (1, 2));
    assert_eq!(in_flight(), Some(1.0));

    // A waiter dropped leaves the gauge alone.
    drop(third);
    assert_eq!(in_flight(), Some(1.0));

    // The first answers; the second takes its permit.
    advance(ms(100)).await;
    assert_ready_ok!(first.poll());
    assert_pending!(second.poll());
    assert_eq!(in_flight(), Some(1.0));
    advance(ms(100)).await;
    assert_ready_ok!(second.poll());
    assert_eq!(in_flight(), Some(0.0));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_evicted_key_shows_no_breaker_state() -> Result<(), BoxError> {
    let metrics = Metrics::new();
    let _recorder = metrics.install();
    let layer = KeyedCircuitBreakerLayer::builder()
        .key(|request: &&'static str| *request)
        .name("tenants")
        .idle(Some(ms(1_000)))
        .build()?;
    let service = layer.layer(tower::service_fn(|_: &'static str| async {
        Ok::<_, BoxError>(())
    }));
    service.clone().oneshot("a").await?;
    assert_eq!(shown_state(&metrics.read(), "tenants", "a"), "closed");

    // Unused for two idle periods, the key is dropped, and its series
    // with it: all six state gauges read 0.
    for _ in 0..2 {
        tokio::time::advance(ms(1_000)).await;
        layer.run_pending_tasks();
    }
    assert_eq!(layer.len(), 0);
    let m = metrics.read();
    let shown: Vec<f64> = m
        .gauges(names::BREAKER_STATE)
        .into_iter()
        .filter(|(l, _)| l["name"] == "tenants" && l["key"] == "a")
        .map(|(_, value)| value)
        .collect();
    assert_eq!(shown, [0.0; 6]);

    // Back again, the key has state (and a series) of its own.
    service.oneshot("a").await?;
    assert_eq!(shown_state(&metrics.read(), "tenants", "a"), "closed");
    Ok(())
}
