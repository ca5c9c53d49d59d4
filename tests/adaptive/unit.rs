//! Admission, refusals, permits returned on every path, keyed limiters,
//! events and settings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::adaptive::{AdaptiveLayer, Aimd, Gradient, KeyedAdaptiveLayer, Throttle};
use steadfast::error::{ClientThrottled, ConcurrencyLimited, rejection};
use steadfast::observe::{Event, ObserveLayer};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

fn aimd(min: usize, max: usize, initial: usize) -> AdaptiveLayer {
    AdaptiveLayer::builder()
        .aimd(Aimd::new())
        .limits(min, max)
        .initial_limit(initial)
        .build()
        .expect("valid settings")
}

#[tokio::test(start_paused = true)]
async fn admits_up_to_the_limit_then_refuses_at_once() {
    let layer = aimd(2, 10, 2);
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<&str, &str, _>(layer);

    assert_ready_ok!(service.poll_ready());
    let mut first = task::spawn(service.call("a"));
    assert_ready_ok!(service.poll_ready());
    let mut second = task::spawn(service.call("b"));
    assert_eq!((handle.in_flight(), handle.available()), (2, 0));

    assert_ready_ok!(service.poll_ready());
    let err = assert_ready_err!(task::spawn(service.call("c")).poll());
    assert!(err.is::<ConcurrencyLimited>(), "{err}");
    assert_eq!(rejection(&err), Some(None), "a rejection marker");

    assert_request_eq!(mock, "a").send_response("A");
    assert_request_eq!(mock, "b").send_response("B");
    assert_eq!(assert_ready_ok!(first.poll()), "A");
    assert_eq!(assert_ready_ok!(second.poll()), "B");
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_gives_its_permit_back() {
    let layer = aimd(1, 10, 1);
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<u8, u8, _>(layer);
    assert_ready_ok!(service.poll_ready());
    let mut call = task::spawn(service.call(1));
    assert_pending!(call.poll());
    assert_eq!(handle.in_flight(), 1);
    drop(call);
    assert_eq!(handle.in_flight(), 0);
    assert_ready_ok!(service.poll_ready());
    let mut again = task::spawn(service.call(2));
    assert_request_eq!(mock, 1);
    assert_request_eq!(mock, 2).send_response(2);
    assert_eq!(assert_ready_ok!(again.poll()), 2);
}

#[tokio::test(start_paused = true)]
async fn the_gradient_measures_the_no_load_rtt_first_at_the_minimum_limit() {
    let layer = AdaptiveLayer::builder().build().expect("defaults");
    let handle = layer.handle();
    assert!(handle.probing());
    assert_eq!(handle.admitted(), 3, "the minimum limit while probing");
    assert_eq!(handle.limit(), 20, "the limit that resumes after");
    let service = layer.layer(service_fn(|()| async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok::<_, BoxError>(())
    }));
    for _ in 0..10 {
        service.clone().oneshot(()).await.expect("answered");
    }
    assert!(!handle.probing());
    assert_eq!(handle.admitted(), 20);
    assert_eq!(handle.min_rtt(), Some(Duration::from_millis(40)));
}

#[tokio::test(start_paused = true)]
async fn aimd_backs_off_on_failures_and_grows_while_in_use() {
    let layer = AdaptiveLayer::builder()
        .aimd(Aimd::new())
        .limits(1, 100)
        .initial_limit(10)
        .min_samples(1)
        .window(Duration::from_millis(10))
        .build()
        .expect("valid");
    let handle = layer.handle();
    let failing = layer.layer(service_fn(|()| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err::<(), BoxError>("boom".into())
    }));
    for _ in 0..5 {
        let _ = failing.clone().oneshot(()).await;
    }
    assert!(handle.limit() < 10, "{}", handle.limit());

    let before = handle.limit();
    let working = layer.layer(service_fn(|()| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, BoxError>(())
    }));
    // Keep the whole limit in use for a while.
    for _ in 0..10 {
        let calls: Vec<_> = (0..handle.admitted())
            .map(|_| working.clone().oneshot(()))
            .collect();
        for result in futures::future::join_all(calls).await {
            result.expect("answered");
        }
    }
    assert!(handle.limit() > before, "{} after {before}", handle.limit());
}

#[tokio::test(start_paused = true)]
async fn throttling_is_deterministic_for_a_seed() {
    async fn refusals(seed: u64) -> Vec<usize> {
        let layer = AdaptiveLayer::builder()
            .aimd(Aimd::new())
            .limits(1_000, 1_000)
            .initial_limit(1_000)
            .throttle(Throttle::new().seed(seed))
            .build()
            .expect("valid");
        let service = layer.layer(service_fn(|n: usize| async move {
            if n % 4 == 0 {
                Ok(())
            } else {
                Err::<(), BoxError>("overloaded".into())
            }
        }));
        let mut refused = Vec::new();
        for n in 0..400 {
            if let Err(err) = service.clone().oneshot(n).await {
                if err.is::<ClientThrottled>() {
                    refused.push(n);
                }
            }
        }
        refused
    }
    let first = refusals(7).await;
    assert!(first.len() > 50, "{} refused", first.len());
    assert_eq!(first, refusals(7).await);
    assert_ne!(first, refusals(8).await);
}

#[tokio::test(start_paused = true)]
async fn the_throttle_does_not_count_what_the_limit_refused() {
    // A limit of one with a call held in flight: 200 calls refused by the
    // limit, none of which reached the dependency.
    let layer = AdaptiveLayer::builder()
        .aimd(Aimd::new())
        .limits(1, 1)
        .initial_limit(1)
        .throttle(Throttle::new())
        .build()
        .expect("valid");
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<u8, u8, _>(layer);
    assert_ready_ok!(service.poll_ready());
    let mut held = task::spawn(service.call(0));
    for _ in 0..200 {
        assert_ready_ok!(service.poll_ready());
        let err = assert_ready_err!(task::spawn(service.call(1)).poll());
        assert!(err.is::<ConcurrencyLimited>(), "{err}");
    }
    assert_eq!(handle.throttle_counts(), Some((0, 0)));
    assert_request_eq!(mock, 0).send_response(0);
    assert_eq!(assert_ready_ok!(held.poll()), 0);
    assert_eq!(handle.throttle_counts(), Some((1, 1)));
    assert_eq!(handle.reject_probability(), Some(0.0));

    // The next calls are let through: the dependency accepted all it saw.
    for n in 2..12 {
        assert_ready_ok!(service.poll_ready());
        let mut call = task::spawn(service.call(n));
        assert_request_eq!(mock, n).send_response(n);
        assert_eq!(assert_ready_ok!(call.poll()), n);
    }
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_limiter_and_a_full_registry_shares_the_overflow_one() {
    let layer = KeyedAdaptiveLayer::builder(|req: &(&'static str, u8)| req.0)
        .aimd(Aimd::new())
        .limits(1, 10)
        .initial_limit(1)
        .max_keys(1)
        .build()
        .expect("valid");
    let handle = layer.handle();
    let (mut service, mut mock) = mock::spawn_layer::<(&str, u8), u8, _>(layer);

    assert_ready_ok!(service.poll_ready());
    let mut a = task::spawn(service.call(("a", 1)));
    assert_pending!(a.poll());
    assert_eq!(handle.get(&"a").map(|h| h.in_flight()), Some(1));

    // The only place is held by "a": "b" and "c" share the overflow limiter
    // (limit 1), never a fresh, unlimited state.
    assert_ready_ok!(service.poll_ready());
    let mut b = task::spawn(service.call(("b", 2)));
    assert_pending!(b.poll());
    assert!(handle.get(&"b").is_none());
    assert_eq!(handle.overflow().in_flight(), 1);
    assert_ready_ok!(service.poll_ready());
    let err = assert_ready_err!(task::spawn(service.call(("c", 3))).poll());
    assert!(err.is::<ConcurrencyLimited>(), "{err}");

    assert_request_eq!(mock, ("a", 1)).send_response(1);
    assert_request_eq!(mock, ("b", 2)).send_response(2);
    assert_eq!(assert_ready_ok!(a.poll()), 1);
    assert_eq!(assert_ready_ok!(b.poll()), 2);
    assert_eq!(handle.overflow().in_flight(), 0);
    assert!(handle.len() <= 1);
}

#[tokio::test(start_paused = true)]
async fn refusals_and_limit_changes_are_events() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let observe = ObserveLayer::builder("p")
        .on_event(move |event: &Event<'_>| {
            let line = match event {
                Event::Rejected {
                    rejection, name, ..
                } => format!("rejected {rejection} {name}"),
                Event::LimitChanged {
                    name,
                    from,
                    to,
                    reason,
                    ..
                } => {
                    format!("limit {name} {from}->{to} {reason}")
                }
                _ => return,
            };
            log.lock().expect("log").push(line);
        })
        .build()
        .expect("valid");
    let adaptive = AdaptiveLayer::builder()
        .name("backend")
        .build()
        .expect("defaults");
    let service = observe.layer(adaptive.layer(service_fn(|()| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, BoxError>(())
    })));
    let calls: Vec<_> = (0..4).map(|_| service.clone().oneshot(())).collect();
    let results = futures::future::join_all(calls).await;
    assert_eq!(
        results.iter().filter(|r| r.is_err()).count(),
        1,
        "3 admitted while probing"
    );
    for _ in 0..10 {
        service.clone().oneshot(()).await.expect("answered");
    }
    let seen = seen.lock().expect("log").clone();
    assert!(
        seen.contains(&"rejected concurrency_limited backend".to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"limit backend 3->20 probe_done".to_owned()),
        "{seen:?}"
    );
}

#[test]
fn bad_settings_name_the_field() {
    let field = |builder: steadfast::adaptive::AdaptiveLayerBuilder| {
        builder.build().unwrap_err().field().to_owned()
    };
    let b = AdaptiveLayer::builder;
    assert_eq!(
        field(b().limits(0, 10).initial_limit(5)),
        "adaptive.min_limit"
    );
    assert_eq!(field(b().limits(10, 5)), "adaptive.max_limit");
    assert_eq!(field(b().initial_limit(5_000)), "adaptive.initial_limit");
    assert_eq!(field(b().window(Duration::ZERO)), "adaptive.window");
    assert_eq!(field(b().min_samples(0)), "adaptive.min_samples");
    assert_eq!(
        field(b().gradient(Gradient::new().smoothing(f64::NAN))),
        "adaptive.gradient.smoothing"
    );
    assert_eq!(
        field(b().gradient(Gradient::new().tolerance(f64::MAX))),
        "adaptive.gradient.tolerance"
    );
    assert_eq!(
        field(b().gradient(Gradient::new().probe_interval(Duration::ZERO))),
        "adaptive.gradient.probe_interval"
    );
    assert_eq!(
        field(b().aimd(Aimd::new().backoff(1.0))),
        "adaptive.aimd.backoff"
    );
    assert_eq!(
        field(b().aimd(Aimd::new().increase(f64::INFINITY))),
        "adaptive.aimd.increase"
    );
    assert_eq!(
        field(b().throttle(Throttle::new().k(f64::NAN))),
        "adaptive.throttle.k"
    );
    assert_eq!(
        field(b().throttle(Throttle::new().buckets(0))),
        "adaptive.throttle.buckets"
    );
    assert_eq!(
        field(b().throttle(Throttle::new().buckets(u32::MAX))),
        "adaptive.throttle.buckets"
    );
    assert_eq!(
        field(b().throttle(Throttle::new().window(Duration::MAX))),
        "adaptive.throttle.window"
    );
    assert_eq!(
        field(b().throttle(Throttle::new().window(Duration::from_millis(5)))),
        "adaptive.throttle.window"
    );
    // Extreme but valid.
    assert!(b().limits(1, usize::MAX).build().is_ok());
    assert!(
        b().window(Duration::MAX)
            .gradient(Gradient::new().probe_interval(Duration::MAX))
            .build()
            .is_ok()
    );
    let keyed = KeyedAdaptiveLayer::builder(|n: &u8| *n)
        .max_keys(0)
        .build()
        .unwrap_err();
    assert_eq!(keyed.field(), "adaptive.max_keys");
}

#[tokio::test(start_paused = true)]
async fn a_policy_limits_each_attempt_and_does_not_retry_a_refusal() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use steadfast::observe::Health;
    use steadfast::policy::Policy;
    use steadfast::retry::{Backoff, RetryLayer};

    let policy = Policy::builder()
        .name("inventory")
        .retry(
            RetryLayer::builder()
                .max_attempts(3)
                .backoff(Backoff::constant(Duration::from_millis(10))),
        )
        .adaptive(
            AdaptiveLayer::builder()
                .name("inventory")
                .throttle(Throttle::new()),
        )
        .build()
        .expect("valid");
    let handle = policy.adaptive().expect("the policy has an adaptive limit");
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let service = policy.layer(service_fn(move |()| {
        counter.fetch_add(1, Ordering::Relaxed);
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, BoxError>(())
        }
    }));

    // The gradient admits 3 calls while it first measures; the 4th is
    // refused at once and not retried.
    let results = futures::future::join_all((0..4).map(|_| service.clone().oneshot(()))).await;
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].is::<ConcurrencyLimited>(), "{}", refused[0]);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        3,
        "the refusal was not retried"
    );
    assert_eq!(handle.in_flight(), 0);

    let snapshot = policy.snapshot();
    let adaptive = snapshot.adaptive.expect("in the snapshot");
    assert_eq!(
        (adaptive.name.as_str(), adaptive.algorithm),
        ("inventory", "gradient")
    );
    assert!(adaptive.reject_probability.is_some());
    let health = Health::new().policy(&policy).adaptive(handle);
    let all = health.snapshot();
    assert_eq!(all.adaptive_limits.len(), 1);
    assert!(all.policies[0].adaptive.is_some());
}
