//! Listeners: what they receive, and the call context they see.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::circuit_breaker::{CircuitBreakerLayer, State};
use steadfast::classify::Verdict;
use steadfast::fallback::{FallbackSource, Reason};
use steadfast::observe::{
    CallContext, Event, Listeners, ObserveLayer, Rejection, RetryStopReason, TransitionReason,
};
use steadfast::policy::Policy;
use tower::{Layer, ServiceBuilder, ServiceExt};

use crate::trace::retry;
use crate::{Switch, flaky, is_generated_id, ms, slow};

/// What a listener saw of one event, and of the context it ran in.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    kind: &'static str,
    detail: String,
    /// Policy, route, request id and attempts so far.
    context: Option<(String, String, String, u32)>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A listener that logs every event with its context.
fn listener(log: &Log) -> impl Fn(&Event<'_>) + Send + Sync + 'static {
    let log = Arc::clone(log);
    move |event| {
        let detail = match *event {
            Event::RetryScheduled { attempt, delay, .. } => {
                format!("attempt {attempt}, delay {delay:?}")
            }
            Event::StateChanged {
                from, to, reason, ..
            } => format!("{from} -> {to}, {reason}"),
            Event::Rejected {
                rejection, name, ..
            } => format!("{rejection} by {name}"),
            Event::SlowCall {
                elapsed, threshold, ..
            } => format!("{elapsed:?} >= {threshold:?}"),
            Event::CallEnded {
                verdict,
                attempts,
                elapsed,
                ..
            } => format!("{verdict}, {attempts} attempts, {elapsed:?}"),
            _ => String::new(),
        };
        let context = CallContext::current().map(|c| {
            (
                c.policy().to_owned(),
                c.route().to_owned(),
                c.request_id().to_string(),
                c.attempts(),
            )
        });
        log.lock().unwrap().push(Seen {
            kind: event.kind(),
            detail,
            context,
        });
    }
}

#[tokio::test(start_paused = true)]
async fn an_observe_listener_sees_the_events_of_inner_layers_in_their_call() -> Result<(), BoxError>
{
    let log = Log::default();
    let observe = ObserveLayer::builder("inventory")
        .route("/items/{id}")
        .slow_call(ms(200))
        .on_event(listener(&log))
        .build()?;
    let service = ServiceBuilder::new()
        .layer(observe)
        .layer(retry(3, ms(100)).build()?)
        .service(flaky(2, ms(50)));
    service.oneshot(7).await?;

    let seen = log.lock().unwrap().clone();
    let kinds: Vec<&str> = seen.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            "retry_scheduled",
            "retry_scheduled",
            "slow_call",
            "call_ended"
        ]
    );
    assert_eq!(seen[0].detail, "attempt 1, delay 100ms");
    assert_eq!(seen[1].detail, "attempt 2, delay 100ms");
    assert_eq!(seen[2].detail, "250ms >= 200ms");
    assert_eq!(seen[3].detail, "success, 3 attempts, 250ms");

    // Every listener call ran in the call's context: one request id.
    let (policy, route, id, _) = seen[0].context.clone().expect("a call context");
    assert_eq!(policy, "inventory");
    assert_eq!(route, "/items/{id}");
    assert!(is_generated_id(&id), "{id}");
    let attempts: Vec<u32> = seen
        .iter()
        .map(|s| {
            let (p, r, i, attempts) = s.context.clone().expect("a call context");
            assert_eq!(
                (p.as_str(), r.as_str(), i.as_str()),
                ("inventory", "/items/{id}", id.as_str()),
                "{s:?}"
            );
            attempts
        })
        .collect();
    // Attempts finished when each event was made.
    assert_eq!(attempts, [1, 2, 3, 3]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_policy_listener_sees_every_layer_of_the_policy() -> Result<(), BoxError> {
    let log = Log::default();
    let switch = Switch::default();
    let policy = Policy::builder()
        .name("orders")
        .route("/orders")
        .retry(retry(3, ms(10)))
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .name("orders_db")
                .count_window(2)
                .open_duration(ms(1_000)),
        )
        .on_event(listener(&log))
        .build()?;
    switch.fail(true);
    policy.layer(switch.service()).oneshot(1).await.unwrap_err();
    policy.layer(switch.service()).oneshot(2).await.unwrap_err();

    let seen = log.lock().unwrap().clone();
    let summary: Vec<(&str, &str)> = seen.iter().map(|s| (s.kind, s.detail.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("retry_scheduled", "attempt 1, delay 10ms"),
            ("state_changed", "closed -> open, failure_rate"),
            ("retry_scheduled", "attempt 2, delay 10ms"),
            ("rejected", "circuit_open by orders_db"),
            ("call_ended", "rejected, 3 attempts, 20ms"),
            ("rejected", "circuit_open by orders_db"),
            ("call_ended", "rejected, 1 attempts, 0ns"),
        ]
    );
    let ids: Vec<String> = seen
        .iter()
        .map(|s| {
            let (policy, route, id, _) = s.context.clone().expect("a call context");
            assert_eq!((policy.as_str(), route.as_str()), ("orders", "/orders"));
            id
        })
        .collect();
    assert!(ids[..5].iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(ids[5], ids[6]);
    assert_ne!(ids[0], ids[5]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn a_breaker_listener_sees_transitions_forced_outside_any_call() -> Result<(), BoxError> {
    let log = Log::default();
    let layer = CircuitBreakerLayer::builder()
        .name("db")
        .on_event(listener(&log))
        .build()?;
    let handle = layer.handle();
    handle.force_open();
    handle.disable();
    handle.metrics_only();
    handle.reset();
    handle.force_open();
    // A refusal inside a call is its own too, seen in the call's context.
    let service = ServiceBuilder::new()
        .layer(ObserveLayer::builder("api").build()?)
        .layer(layer)
        .service(slow(ms(0)));
    service.oneshot(1).await.unwrap_err();

    let seen = log.lock().unwrap().clone();
    let forced: Vec<(&str, &str)> = seen[..5]
        .iter()
        .map(|s| (s.kind, s.detail.as_str()))
        .collect();
    assert_eq!(
        forced,
        [
            ("state_changed", "closed -> forced_open, forced"),
            ("state_changed", "forced_open -> disabled, forced"),
            ("state_changed", "disabled -> metrics_only, forced"),
            ("state_changed", "metrics_only -> closed, reset"),
            ("state_changed", "closed -> forced_open, forced"),
        ]
    );
    assert!(seen[..5].iter().all(|s| s.context.is_none()), "{seen:#?}");
    assert_eq!(seen.len(), 6, "{seen:#?}");
    assert_eq!(seen[5].kind, "rejected");
    assert_eq!(seen[5].detail, "circuit_open by db");
    assert_eq!(seen[5].context.as_ref().map(|c| c.0.as_str()), Some("api"));
    Ok(())
}

#[test]
fn listeners_are_called_in_the_order_they_were_added() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let (first, second) = (Arc::clone(&order), Arc::clone(&order));
    let listeners = Listeners::none();
    assert!(listeners.is_empty());
    let listeners = listeners
        .with(move |e| first.lock().unwrap().push(("first", e.kind())))
        .with(move |e| second.lock().unwrap().push(("second", e.kind())));
    assert!(!listeners.is_empty());
    listeners.notify(&Event::HedgeWon {
        name: "hedge",
        copy: 1,
    });
    assert_eq!(
        *order.lock().unwrap(),
        [("first", "hedge_won"), ("second", "hedge_won")]
    );
    assert_eq!(format!("{listeners:?}"), "Listeners { count: 2 }");
}

#[test]
fn kinds_and_rejections_have_stable_names() {
    let d = Duration::from_millis(1);
    let source = FallbackSource::Static;
    let events = [
        Event::RetryScheduled {
            name: "r",
            attempt: 1,
            verdict: Verdict::transient(),
            delay: d,
        },
        Event::RetryStopped {
            name: "r",
            attempt: 1,
            verdict: Verdict::transient(),
            reason: RetryStopReason::BudgetSpent,
        },
        Event::StateChanged {
            name: "b",
            key: None,
            from: State::Closed,
            to: State::Open,
            reason: TransitionReason::FailureRate,
            open_for: Some(d),
        },
        Event::Rejected {
            rejection: Rejection::CircuitOpen,
            name: "b",
            key: None,
            retry_after: None,
        },
        Event::Throttled {
            tier: "t",
            key: None,
            delay: d,
        },
        Event::FallbackServed {
            name: "f",
            source: &source,
            verdict: Verdict::Failure,
            reason: Reason::Failure,
        },
        Event::FallbackMissed {
            name: "f",
            verdict: Verdict::Failure,
            reason: Reason::Failure,
        },
        Event::HedgeSent {
            name: "h",
            copy: 1,
            delay: d,
        },
        Event::HedgeWon { name: "h", copy: 1 },
        Event::SlowCall {
            policy: "p",
            route: "",
            elapsed: d,
            threshold: d,
            verdict: Verdict::Success,
        },
        Event::CallEnded {
            policy: "p",
            route: "",
            verdict: Verdict::Success,
            attempts: 1,
            elapsed: d,
        },
    ];
    let kinds: Vec<&str> = events.iter().map(Event::kind).collect();
    assert_eq!(
        kinds,
        [
            "retry_scheduled",
            "retry_stopped",
            "state_changed",
            "rejected",
            "throttled",
            "fallback_served",
            "fallback_missed",
            "hedge_sent",
            "hedge_won",
            "slow_call",
            "call_ended",
        ]
    );

    let rejections = [
        Rejection::CircuitOpen,
        Rejection::BulkheadFull,
        Rejection::RateLimited,
        Rejection::DeadlineExceeded,
    ];
    let names: Vec<String> = rejections.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "circuit_open",
            "bulkhead_full",
            "rate_limited",
            "deadline_exceeded"
        ]
    );
    assert!(rejections.iter().zip(&names).all(|(r, n)| r.as_str() == n));
}

#[test]
fn typed_reasons_keep_their_text() {
    assert_eq!(RetryStopReason::BudgetSpent.as_str(), "budget_spent");
    assert_eq!(RetryStopReason::BudgetSpent, "budget_spent");
    assert_eq!("attempts_exhausted", RetryStopReason::AttemptsExhausted);
    assert_eq!(
        RetryStopReason::RetryAfterTooLong.to_string(),
        "retry_after_too_long"
    );
    assert_eq!(TransitionReason::ProbeSlowCallRate, "probe_slow_call_rate");
    assert_ne!(TransitionReason::Forced, "reset");
    assert_eq!(
        steadfast::observe::LimitReason::ProbeDone.as_str(),
        "probe_done"
    );
    assert_eq!(Reason::LatencyBudget.as_str(), "latency_budget");
}
