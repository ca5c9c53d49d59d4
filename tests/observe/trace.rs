//! The `call` span and one event per decision, with the documented
//! targets, levels and fields.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};
use steadfast::error::{BulkheadFull, CircuitOpen, DeadlineExceeded, RateLimited};
use steadfast::fallback::FallbackLayer;
use steadfast::hedge::HedgeLayer;
use steadfast::observe::ObserveLayer;
use steadfast::policy::Policy;
use steadfast::rate_limit::{Mode, Quota, RateLimitLayer};
use steadfast::retry::{Backoff, Jitter, RetryBudget, RetryLayer, RetryLayerBuilder};
use steadfast::timeout::TotalDeadlineLayer;
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tracing::Level;

use crate::capture::{Capture, EventRecord, SpanRecord};
use crate::{Switch, flaky, is_generated_id, ms, slow};

/// Retries after a fixed delay, without jitter or budget.
pub(crate) fn retry(attempts: u32, delay: Duration) -> RetryLayerBuilder {
    RetryLayer::builder()
        .max_attempts(attempts)
        .backoff(Backoff::constant(delay).jitter(Jitter::None))
        .unlimited_budget()
}

/// Asserts that `event` carries the context of `call`.
#[track_caller]
fn in_call(event: &EventRecord, call: &SpanRecord) {
    assert_eq!(event.field("policy"), call.field("policy"), "{event:?}");
    assert_eq!(event.field("route"), call.field("route"), "{event:?}");
    assert_eq!(
        event.field("request_id"),
        call.field("request_id"),
        "{event:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn one_span_per_call_with_its_fields() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let policy = Policy::builder()
        .name("inventory")
        .route("/items/{id}")
        .retry(retry(3, ms(100)))
        .build()?;

    // Two resets, a 100 ms backoff after each, then a 50 ms answer.
    let service = policy.layer(flaky(2, ms(50)));
    assert_eq!(service.oneshot(7).await?, 7);
    // Three resets: the last one is returned after 200 ms of backoff.
    let service = policy.layer(flaky(3, ms(50)));
    assert!(service.oneshot(7).await.is_err());

    let calls = capture.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    for call in &calls {
        assert_eq!(call.level, Level::DEBUG);
        assert_eq!(call.field("policy"), "inventory");
        assert_eq!(call.field("route"), "/items/{id}");
        assert!(is_generated_id(call.field("request_id")), "{call:?}");
        assert_eq!(call.field("attempts"), "3");
    }
    assert_eq!(calls[0].field("verdict"), "success");
    assert_eq!(calls[0].field("elapsed_ms"), "250");
    assert_eq!(calls[1].field("verdict"), "transient");
    assert_eq!(calls[1].field("elapsed_ms"), "200");
    assert_ne!(calls[0].field("request_id"), calls[1].field("request_id"));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_retry_is_a_debug_event_of_the_call() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let policy = Policy::builder()
        .name("inventory")
        .route("/items/{id}")
        .retry(retry(3, ms(100)).name("inventory_retry"))
        .build()?;
    policy.layer(flaky(2, ms(50))).oneshot(7).await?;

    let spans = capture.spans();
    let call = &capture.calls()[0];
    let scheduled = capture.events_saying("retry scheduled");
    assert_eq!(scheduled.len(), 2, "{:#?}", capture.events());
    for (n, event) in scheduled.iter().enumerate() {
        assert_eq!(event.target, "steadfast::retry");
        assert_eq!(event.level, Level::DEBUG);
        assert_eq!(event.field("layer"), "retry");
        assert_eq!(event.field("name"), "inventory_retry");
        assert_eq!(event.field("attempt"), (n + 1).to_string());
        assert_eq!(event.field("verdict"), "transient");
        assert_eq!(event.field("delay_ms"), "100");
        in_call(event, call);
        assert_eq!(event.field("policy"), "inventory");
        assert_eq!(event.field("route"), "/items/{id}");
        // Made while the call's span was entered.
        assert_eq!(spans[event.span.expect("inside a span")].name, "call");
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn each_attempt_is_a_trace_event_of_the_call() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let policy = Policy::builder()
        .name("inventory")
        .route("/items/{id}")
        .retry(retry(3, ms(100)))
        .build()?;
    policy.layer(flaky(2, ms(50))).oneshot(7).await?;

    let call = &capture.calls()[0];
    let attempts = capture.events_saying("attempt ended");
    let seen: Vec<(&str, &str)> = attempts
        .iter()
        .map(|e| (e.field("attempt"), e.field("verdict")))
        .collect();
    assert_eq!(
        seen,
        [("1", "transient"), ("2", "transient"), ("3", "success")]
    );
    for event in &attempts {
        assert_eq!(event.target, "steadfast::observe");
        assert_eq!(event.level, Level::TRACE);
        in_call(event, call);
    }
    assert_eq!(call.field("attempts"), "3");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_is_a_warning_and_other_stops_are_debug() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let empty = RetryBudget::builder().ratio(0.0).reserve(0).build()?;
    let policy = Policy::builder()
        .name("inventory")
        .observe()
        .retry(RetryLayer::builder().max_attempts(3).budget(empty))
        .build()?;
    policy.layer(flaky(9, ms(0))).oneshot(1).await.unwrap_err();

    let spent = capture.event_saying("retry budget spent; returning the failure");
    assert_eq!(spent.target, "steadfast::retry");
    assert_eq!(spent.level, Level::WARN);
    assert_eq!(spent.field("layer"), "retry");
    assert_eq!(spent.field("name"), "retry");
    assert_eq!(spent.field("attempt"), "1");
    assert_eq!(spent.field("verdict"), "transient");
    assert_eq!(spent.field("reason"), "budget_spent");
    assert_eq!(spent.field("policy"), "inventory");
    // No route was given: the field is left out.
    assert!(!spent.has("route"), "{spent:?}");
    in_call(&spent, &capture.calls()[0]);

    capture.clear();
    let policy = Policy::builder()
        .name("inventory")
        .observe()
        .retry(retry(2, ms(10)))
        .build()?;
    policy.layer(flaky(9, ms(0))).oneshot(1).await.unwrap_err();
    let stopped = capture.event_saying("not retrying");
    assert_eq!(stopped.level, Level::DEBUG);
    assert_eq!(stopped.field("attempt"), "2");
    assert_eq!(stopped.field("reason"), "attempts_exhausted");
    assert!(
        capture
            .events_saying("retry budget spent; returning the failure")
            .is_empty()
    );
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn an_opening_is_a_warning_and_other_transitions_are_info() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let switch = Switch::default();
    let policy = Policy::builder()
        .name("orders")
        .route("/orders")
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .name("orders_db")
                .count_window(2)
                .open_duration(ms(1_000))
                .half_open_probes(1),
        )
        .build()?;
    let handle = policy.circuit_breaker().expect("a breaker");
    let mut service = policy.layer(switch.service());

    switch.fail(true);
    for _ in 0..2 {
        service.ready().await?.call(1).await.unwrap_err();
    }
    let opened = capture.event_saying("circuit breaker opened");
    assert_eq!(opened.target, "steadfast::circuit_breaker");
    assert_eq!(opened.level, Level::WARN);
    assert_eq!(opened.field("layer"), "circuit_breaker");
    assert_eq!(opened.field("name"), "orders_db");
    assert!(!opened.has("key"), "an unkeyed breaker: {opened:?}");
    assert_eq!(opened.field("from"), "closed");
    assert_eq!(opened.field("to"), "open");
    assert_eq!(opened.field("state"), "open");
    assert_eq!(opened.field("reason"), "failure_rate");
    assert_eq!(opened.field("delay_ms"), "1000");
    // Opened by the second call's outcome.
    in_call(&opened, &capture.calls()[1]);

    let err = service.ready().await?.call(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    let refused = capture.event_saying("call refused");
    assert_eq!(refused.target, "steadfast::circuit_breaker");
    assert_eq!(refused.level, Level::DEBUG);
    assert_eq!(refused.field("layer"), "circuit_breaker");
    assert_eq!(refused.field("name"), "orders_db");
    assert_eq!(refused.field("kind"), "circuit_open");
    assert_eq!(refused.field("delay_ms"), "1000");
    in_call(&refused, &capture.calls()[2]);

    advance(ms(1_000)).await;
    switch.fail(false);
    service.ready().await?.call(1).await?;
    let changed = capture.events_saying("circuit breaker state changed");
    assert_eq!(changed.len(), 2, "{changed:#?}");
    let probe_call = &capture.calls()[3];
    for (event, (from, to, reason)) in changed.iter().zip([
        ("open", "half_open", "open_elapsed"),
        ("half_open", "closed", "probes_passed"),
    ]) {
        assert_eq!(event.target, "steadfast::circuit_breaker");
        assert_eq!(event.level, Level::INFO);
        assert_eq!(event.field("layer"), "circuit_breaker");
        assert_eq!(event.field("name"), "orders_db");
        assert_eq!(event.field("from"), from);
        assert_eq!(event.field("to"), to);
        assert_eq!(event.field("state"), to);
        assert_eq!(event.field("reason"), reason);
        assert!(!event.has("delay_ms"), "{event:?}");
        in_call(event, probe_call);
    }

    // Forced through the handle, outside any call: no call context.
    handle.force_open();
    let forced = capture
        .events_saying("circuit breaker state changed")
        .pop()
        .expect("an event");
    assert_eq!(forced.level, Level::INFO);
    assert_eq!(forced.field("from"), "closed");
    assert_eq!(forced.field("to"), "forced_open");
    assert_eq!(forced.field("reason"), "forced");
    for field in ["policy", "route", "request_id"] {
        assert!(!forced.has(field), "{forced:?}");
    }
    assert_eq!(forced.span, None);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_refusal_names_its_kind() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();

    // A full bulkhead.
    let policy = Policy::builder()
        .name("uploads")
        .observe()
        .bulkhead(
            BulkheadLayer::builder()
                .max_concurrent(1)
                .name("uploads_pool"),
        )
        .build()?;
    let mut service = policy.layer(slow(ms(1_000)));
    let first = service.ready().await?.call(1);
    let err = service.ready().await?.call(2).await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
    drop(first);
    let full = capture.event_saying("call refused");
    assert_eq!(full.target, "steadfast::bulkhead");
    assert_eq!(full.level, Level::DEBUG);
    assert_eq!(full.field("layer"), "bulkhead");
    assert_eq!(full.field("name"), "uploads_pool");
    assert_eq!(full.field("kind"), "bulkhead_full");
    assert!(!full.has("delay_ms"), "{full:?}");
    in_call(&full, &capture.calls()[1]);
    assert_eq!(full.field("policy"), "uploads");

    // A rate limit.
    capture.clear();
    let mut service = ServiceBuilder::new()
        .layer(ObserveLayer::builder("search").route("/search").build()?)
        .layer(
            RateLimitLayer::builder()
                .tier("free", Quota::per_minute(1))
                .build()?,
        )
        .service(slow(ms(0)));
    service.ready().await?.call(1).await?;
    let err = service.ready().await?.call(2).await.unwrap_err();
    assert!(err.is::<RateLimited>(), "{err}");
    let limited = capture.event_saying("call refused");
    assert_eq!(limited.target, "steadfast::rate_limit");
    assert_eq!(limited.level, Level::DEBUG);
    assert_eq!(limited.field("layer"), "rate_limit");
    assert_eq!(limited.field("name"), "free");
    assert_eq!(limited.field("tier"), "free");
    assert_eq!(limited.field("kind"), "rate_limited");
    assert_eq!(limited.field("delay_ms"), "60000");
    in_call(&limited, &capture.calls()[1]);
    assert_eq!(limited.field("route"), "/search");

    // The total deadline.
    capture.clear();
    let service = ServiceBuilder::new()
        .layer(ObserveLayer::builder("reports").build()?)
        .layer(TotalDeadlineLayer::new(ms(100))?)
        .service(slow(ms(1_000)));
    let err = service.oneshot(1).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    let late = capture.event_saying("call refused");
    assert_eq!(late.target, "steadfast::timeout");
    assert_eq!(late.level, Level::DEBUG);
    assert_eq!(late.field("layer"), "total_deadline");
    assert_eq!(late.field("name"), "total_deadline");
    assert_eq!(late.field("kind"), "deadline_exceeded");
    in_call(&late, &capture.calls()[0]);
    assert_eq!(capture.calls()[0].field("verdict"), "rejected");
    assert_eq!(capture.calls()[0].field("elapsed_ms"), "100");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_fallback_says_which_source_answered_or_that_none_did() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let observe = ObserveLayer::builder("prices").route("/prices").build()?;

    let service = ServiceBuilder::new()
        .layer(observe.clone())
        .layer(
            FallbackLayer::builder()
                .static_response(0_u32)
                .name("prices_fallback")
                .build()?,
        )
        .service(flaky(9, ms(0)));
    assert_eq!(service.oneshot(5).await?, 0);
    let served = capture.event_saying("fallback answered");
    assert_eq!(served.target, "steadfast::fallback");
    assert_eq!(served.level, Level::INFO);
    assert_eq!(served.field("layer"), "fallback");
    assert_eq!(served.field("name"), "prices_fallback");
    assert_eq!(served.field("source"), "static");
    assert_eq!(served.field("verdict"), "transient");
    assert_eq!(served.field("reason"), "transient");
    assert_eq!(served.field("age_ms"), "0");
    in_call(&served, &capture.calls()[0]);
    // The fallback answered: the call succeeded.
    assert_eq!(capture.calls()[0].field("verdict"), "success");

    let service = ServiceBuilder::new()
        .layer(observe)
        .layer(
            FallbackLayer::builder()
                .alternate(flaky(9, ms(0)))
                .name("prices_fallback")
                .build()?,
        )
        .service(flaky(9, ms(0)));
    assert!(service.oneshot(5).await.is_err());
    let missed =
        capture.event_saying("no fallback source answered; returning the original outcome");
    assert_eq!(missed.target, "steadfast::fallback");
    assert_eq!(missed.level, Level::WARN);
    assert_eq!(missed.field("name"), "prices_fallback");
    assert_eq!(missed.field("source"), "none");
    assert_eq!(missed.field("verdict"), "transient");
    assert_eq!(missed.field("reason"), "transient");
    in_call(&missed, &capture.calls()[1]);
    Ok(())
}

/// A backend whose first call takes a second, and every later one 10 ms.
pub(crate) fn slow_first()
-> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    let calls = Arc::new(AtomicU32::new(0));
    service_fn(move |request: u32| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(ms(if n == 0 { 1_000 } else { 10 })).await;
            Ok::<_, BoxError>(request)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_hedge_reports_the_copy_it_sent_and_the_copy_that_won() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let service = ServiceBuilder::new()
        .layer(ObserveLayer::builder("search").build()?)
        .layer(
            HedgeLayer::builder()
                .delay(ms(50))
                .name("search_hedge")
                .build()?,
        )
        .service(slow_first());
    let started = Instant::now();
    assert_eq!(service.oneshot(3).await?, 3);
    assert_eq!(started.elapsed(), ms(60));

    let call = &capture.calls()[0];
    assert_eq!(call.field("elapsed_ms"), "60");
    let sent = capture.event_saying("copy sent");
    assert_eq!(sent.target, "steadfast::hedge");
    assert_eq!(sent.level, Level::DEBUG);
    assert_eq!(sent.field("layer"), "hedge");
    assert_eq!(sent.field("name"), "search_hedge");
    assert_eq!(sent.field("copy"), "1");
    assert_eq!(sent.field("delay_ms"), "50");
    in_call(&sent, call);
    let won = capture.event_saying("hedged copy won");
    assert_eq!(won.target, "steadfast::hedge");
    assert_eq!(won.level, Level::DEBUG);
    assert_eq!(won.field("name"), "search_hedge");
    assert_eq!(won.field("copy"), "1");
    in_call(&won, call);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_is_a_warning_even_when_it_succeeds() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let policy = Policy::builder()
        .name("reports")
        .route("/reports/{id}")
        .slow_call(ms(200))
        .build()?;
    for latency in [250, 199, 200] {
        assert_eq!(policy.layer(slow(ms(latency))).oneshot(1).await?, 1);
    }

    let calls = capture.calls();
    let warnings = capture.events_saying("slow call");
    // 250 ms and 200 ms reach the threshold; 199 ms does not.
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    for (warning, (call, elapsed)) in warnings
        .iter()
        .zip([(&calls[0], "250"), (&calls[2], "200")])
    {
        assert_eq!(warning.target, "steadfast::observe");
        assert_eq!(warning.level, Level::WARN);
        assert_eq!(warning.field("policy"), "reports");
        assert_eq!(warning.field("route"), "/reports/{id}");
        assert_eq!(warning.field("request_id"), call.field("request_id"));
        assert!(is_generated_id(warning.field("request_id")));
        assert_eq!(warning.field("verdict"), "success");
        assert_eq!(warning.field("elapsed_ms"), elapsed);
        assert_eq!(warning.field("threshold_ms"), "200");
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn every_event_of_a_call_carries_its_policy_route_and_request_id() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let policy = Policy::builder()
        .name("checkout")
        .route("/cart")
        .retry(retry(3, ms(10)))
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .name("checkout_db")
                .count_window(2)
                .open_duration(ms(1_000)),
        )
        .build()?;
    let mut service = policy.layer(flaky(99, ms(0)));
    // Two resets open the breaker; the third attempt is refused.
    service.ready().await?.call(1).await.unwrap_err();
    // Refused at once.
    service.ready().await?.call(2).await.unwrap_err();

    let spans = capture.spans();
    let calls = capture.calls();
    assert_eq!(calls.len(), 2);
    let first = calls[0].field("request_id");
    let second = calls[1].field("request_id");
    assert!(is_generated_id(first), "{first}");
    assert!(is_generated_id(second), "{second}");
    assert_ne!(first, second);

    let events = capture.events();
    let messages: Vec<&str> = events.iter().map(EventRecord::message).collect();
    assert_eq!(
        messages,
        [
            "attempt ended",
            "retry scheduled",
            "circuit breaker opened",
            "attempt ended",
            "retry scheduled",
            "call refused",
            "attempt ended",
            "call refused",
            "attempt ended",
        ]
    );
    for event in &events {
        let call = &spans[event.span.expect("inside the call's span")];
        assert_eq!(call.name, "call");
        assert_eq!(event.field("policy"), "checkout", "{event:?}");
        assert_eq!(event.field("route"), "/cart", "{event:?}");
        assert_eq!(event.field("request_id"), call.field("request_id"));
    }
    let ids: Vec<&str> = events.iter().map(|e| e.field("request_id")).collect();
    assert_eq!(
        ids,
        [
            first, first, first, first, first, first, first, second, second
        ]
    );
    assert_eq!(calls[0].field("verdict"), "rejected");
    assert_eq!(calls[0].field("attempts"), "3");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_throttled_call_says_how_long_it_waits() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let service = ServiceBuilder::new()
        .layer(ObserveLayer::builder("search").route("/search").build()?)
        .layer(
            RateLimitLayer::builder()
                .tier("pro", Quota::per_second(1))
                .mode(Mode::Throttle {
                    max_delay: ms(2_000),
                })
                .build()?,
        )
        .service(slow(ms(0)));
    let started = Instant::now();
    service.clone().oneshot(1).await?;
    service.oneshot(2).await?;
    assert_eq!(started.elapsed(), ms(1_000));

    let delayed = capture.event_saying("call delayed to fit its quota");
    assert_eq!(delayed.target, "steadfast::rate_limit");
    assert_eq!(delayed.level, Level::DEBUG);
    assert_eq!(delayed.field("layer"), "rate_limit");
    assert_eq!(delayed.field("tier"), "pro");
    assert_eq!(delayed.field("delay_ms"), "1000");
    in_call(&delayed, &capture.calls()[1]);
    assert_eq!(capture.calls()[1].field("elapsed_ms"), "1000");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_keyed_breaker_names_its_key() -> Result<(), BoxError> {
    let (capture, _guard) = Capture::install();
    let breakers = KeyedCircuitBreakerLayer::builder()
        .key(|request: &(&'static str, u32)| request.0)
        .name("hosts")
        .count_window(1)
        .open_duration(ms(500))
        .build()?;
    let service = ServiceBuilder::new()
        .layer(ObserveLayer::builder("proxy").build()?)
        .layer(breakers)
        .service(service_fn(|_: (&'static str, u32)| async {
            Err::<(), BoxError>("connection reset".into())
        }));
    service
        .clone()
        .oneshot(("api.example", 1))
        .await
        .unwrap_err();
    service.oneshot(("api.example", 2)).await.unwrap_err();

    let opened = capture.event_saying("circuit breaker opened");
    assert_eq!(opened.field("name"), "hosts");
    assert_eq!(opened.field("key"), "api.example");
    let refused = capture.event_saying("call refused");
    assert_eq!(refused.field("key"), "api.example");
    assert_eq!(refused.field("kind"), "circuit_open");
    assert_eq!(refused.field("delay_ms"), "500");
    Ok(())
}
