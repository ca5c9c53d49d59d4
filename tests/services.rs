//! One grammar for every layer: a service made with `new(inner, &layer)`
//! is the service `layer.layer(inner)` makes, sharing the layer's state;
//! every service gives its inner service back; names may be owned
//! strings, as read from a file.

#[path = "support/capture.rs"]
mod capture;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capture::Capture;

use steadfast::BoxError;
use steadfast::bulkhead::{Bulkhead, BulkheadLayer};
use steadfast::chaos::{Chaos, ChaosLayer};
use steadfast::circuit_breaker::{CircuitBreaker, CircuitBreakerLayer, State};
use steadfast::error::{BulkheadFull, CircuitOpen, Elapsed};
use steadfast::observe::{Event, ObserveLayer};
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, Retry, RetryLayer};
use steadfast::timeout::{Timeout, TimeoutLayer, TotalDeadline, TotalDeadlineLayer};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn a_bulkhead_made_with_new_shares_the_layers_permits() {
    let layer = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    let (inner, mut handle) = mock::pair::<&str, &str>();
    let mut first = Bulkhead::new(inner.clone(), &layer);
    let mut second = layer.layer(inner);

    assert_ready_ok!(task::spawn(first.ready()).poll());
    let mut call = task::spawn(first.call("a"));
    assert_pending!(call.poll());
    let _reply = assert_request_eq!(handle, "a");
    assert_eq!(first.handle().in_flight(), 1);

    handle.allow(1);
    let err = second.ready().await.unwrap().call("b").await.unwrap_err();
    assert!(err.is::<BulkheadFull>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_breaker_made_with_new_is_the_layers_breaker() {
    let layer = CircuitBreakerLayer::builder().build().unwrap();
    let service = CircuitBreaker::new(service_fn(|()| async { Ok::<_, BoxError>("pong") }), &layer);
    layer.handle().force_open();
    assert_eq!(service.handle().state(), State::ForcedOpen);
    let err = service.oneshot(()).await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn timeouts_made_with_new_bound_calls_and_give_their_inner_service_back() {
    let layer = TimeoutLayer::new(ms(100)).unwrap();
    let (inner, mut handle) = mock::pair::<&str, &str>();
    let mut service = Timeout::new(inner, &layer);
    assert_ready_ok!(task::spawn(service.ready()).poll());
    let mut call = task::spawn(service.call("hi"));
    let _reply = assert_request_eq!(handle, "hi");
    tokio::time::advance(ms(100)).await;
    let err = assert_ready_err!(call.poll());
    assert!(err.is::<Elapsed>(), "{err}");

    let total = TotalDeadlineLayer::new(ms(50)).unwrap();
    let mut deadline = TotalDeadline::new(Timeout::new(7_u32, &layer), &total);
    *deadline.get_mut().get_mut() += 1;
    assert_eq!(*deadline.get_ref().get_ref(), 8);
    assert_eq!(deadline.into_inner().into_inner(), 8);
}

#[tokio::test(start_paused = true)]
async fn retry_and_chaos_made_with_new_wrap_as_their_layers_do() {
    let retry = RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(ms(10)))
        .build()
        .unwrap();
    let calls = Arc::new(Mutex::new(0_u32));
    let counted = Arc::clone(&calls);
    let flaky = service_fn(move |()| {
        let counted = Arc::clone(&counted);
        async move {
            let mut n = counted.lock().unwrap();
            *n += 1;
            if *n < 3 {
                Err::<u32, BoxError>("reset".into())
            } else {
                Ok(*n)
            }
        }
    });
    assert_eq!(Retry::new(flaky, &retry).oneshot(()).await.unwrap(), 3);

    let chaos = ChaosLayer::builder().build().unwrap();
    let mut service = Chaos::new(5_u8, &chaos);
    *service.get_mut() += 1;
    assert_eq!(*service.get_ref(), 6);
    assert_eq!(service.into_inner(), 6);
}

#[tokio::test(start_paused = true)]
async fn names_read_at_run_time_need_no_static_strings() {
    let from_file = |name: &str| format!("{name}-{}", 1);
    let breaker = CircuitBreakerLayer::builder()
        .name(from_file("payments"))
        .build()
        .unwrap();
    assert_eq!(breaker.handle().name(), "payments-1");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let observe = ObserveLayer::builder("calls")
        .on_event(move |event| {
            if let Event::RetryScheduled { name, .. } = event {
                log.lock().unwrap().push(name.to_string());
            }
        })
        .build()
        .unwrap();
    let retry = RetryLayer::builder()
        .name(from_file("prices"))
        .max_attempts(2)
        .backoff(Backoff::constant(ms(1)))
        .unlimited_budget()
        .build()
        .unwrap();
    let failing = service_fn(|()| async { Err::<u32, BoxError>("reset".into()) });
    let service = observe.layer(retry.layer(failing));
    assert!(service.oneshot(()).await.is_err());
    assert_eq!(*seen.lock().unwrap(), ["prices-1"]);

    // A named policy names the breaker it builds, an owned name as well.
    let policy = Policy::builder()
        .name(from_file("orders"))
        .circuit_breaker(CircuitBreakerLayer::builder())
        .build()
        .unwrap();
    assert_eq!(policy.circuit_breaker().unwrap().name(), "orders-1");
}

/// Collects the names of the `Rejected` events seen under `observe`.
fn rejections(seen: &Arc<Mutex<Vec<String>>>) -> ObserveLayer {
    let log = Arc::clone(seen);
    ObserveLayer::builder("calls")
        .on_event(move |event| {
            if let Event::Rejected { name, .. } = event {
                log.lock().unwrap().push(name.to_string());
            }
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_named_total_deadline_names_its_refusals() {
    use steadfast::error::DeadlineExceeded;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let hung = service_fn(|()| std::future::pending::<Result<u32, BoxError>>());
    let total = TotalDeadlineLayer::new(ms(30))
        .unwrap()
        .name(String::from("checkout"));
    let service = rejections(&seen).layer(total.layer(hung));
    let err = service.oneshot(()).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");

    // Unnamed, as before.
    let total = TotalDeadlineLayer::new(ms(30)).unwrap();
    let service = rejections(&seen).layer(total.layer(hung));
    assert!(service.oneshot(()).await.is_err());

    assert_eq!(*seen.lock().unwrap(), ["checkout", "total_deadline"]);
}

#[tokio::test(start_paused = true)]
async fn a_named_timeout_and_chaos_layer_name_their_log_lines() {
    let (capture, _guard) = Capture::install();
    let hung = service_fn(|()| std::future::pending::<Result<u32, BoxError>>());
    let timeout = TimeoutLayer::new(ms(10)).unwrap().name(String::from("db"));
    let err = timeout.layer(hung).oneshot(()).await.unwrap_err();
    assert!(err.is::<Elapsed>(), "{err}");
    let line = capture.event_saying("attempt timed out");
    assert_eq!(line.field("name"), "db");

    let chaos = ChaosLayer::builder()
        .name(String::from("drill"))
        .error_rate(1.0)
        .build()
        .unwrap();
    let echo = service_fn(|()| async { Ok::<_, BoxError>(1_u32) });
    assert!(chaos.layer(echo).oneshot(()).await.is_err());
    let line = capture.event_saying("fault injected");
    assert_eq!(line.field("name"), "drill");
}

#[cfg(feature = "rate-limit")]
#[tokio::test(start_paused = true)]
async fn a_named_rate_limiter_names_its_refusals() {
    use steadfast::error::RateLimited;
    use steadfast::rate_limit::{Quota, RateLimitLayer};

    let seen = Arc::new(Mutex::new(Vec::new()));
    let limiter = RateLimitLayer::builder()
        .name(String::from("api"))
        .quota(Quota::per_second(1))
        .build()
        .unwrap();
    let echo = service_fn(|()| async { Ok::<_, BoxError>(1_u32) });
    let mut service = rejections(&seen).layer(limiter.layer(echo));
    service.ready().await.unwrap().call(()).await.unwrap();
    let err = service.ready().await.unwrap().call(()).await.unwrap_err();
    assert!(err.is::<RateLimited>(), "{err}");

    assert_eq!(*seen.lock().unwrap(), ["api"]);
}
