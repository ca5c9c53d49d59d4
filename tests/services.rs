//! One grammar for every layer: a service made with `new(inner, &layer)`
//! is the service `layer.layer(inner)` makes, sharing the layer's state;
//! every service gives its inner service back; names may be owned
//! strings, as read from a file.

#[path = "support/capture.rs"]
mod capture;

use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use capture::Capture;

use steadfast::BoxError;
use steadfast::bulkhead::{Bulkhead, BulkheadLayer, KeyedBulkhead, KeyedBulkheadLayer};
use steadfast::chaos::{Chaos, ChaosLayer};
use steadfast::circuit_breaker::{
    CircuitBreaker, CircuitBreakerLayer, KeyedCircuitBreaker, KeyedCircuitBreakerLayer, State,
};
use steadfast::error::{BulkheadFull, CircuitOpen, DeadlineExceeded, Elapsed};
use steadfast::hedge::{Hedge, HedgeLayer, Race};
use steadfast::observe::{Event, ObserveDeadline, ObserveLayer};
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, Retry, RetryLayer};
use steadfast::scatter::{Branch, Scatter, Stages};
use steadfast::timeout::{Timeout, TimeoutLayer, TotalDeadline, TotalDeadlineLayer};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::{assert_request_eq, mock};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Adds its number to each request (an HTTP request counts as 0): what
/// `get_mut` changes shows in the next call.
#[derive(Debug, Clone)]
struct Add(u32);

/// A request's number.
trait Number {
    fn number(&self) -> u32;
}

impl Number for u32 {
    fn number(&self) -> u32 {
        *self
    }
}

#[cfg(feature = "http")]
impl<B> Number for http::Request<B> {
    fn number(&self) -> u32 {
        0
    }
}

impl<R: Number> Service<R> for Add {
    type Response = u32;
    type Error = BoxError;
    type Future = Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: R) -> Self::Future {
        ready(Ok(request.number() + self.0))
    }
}

/// Readies `service` and sends it `request`.
async fn call<S: Service<R>, R>(service: &mut S, request: R) -> Result<S::Response, S::Error> {
    service.ready().await?.call(request).await
}

/// What each branch of a gathered result answered, in order.
fn answers(gathered: &steadfast::scatter::Gathered<u32>) -> Vec<u32> {
    gathered
        .answers()
        .filter_map(|b| b.response().copied())
        .collect()
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

#[tokio::test(start_paused = true)]
async fn a_scatter_made_with_new_gives_its_branches_back() {
    let mut scatter = Scatter::new([Add(1), Add(2)]).unwrap();
    let before = scatter.clone();
    scatter.get_mut()[1].0 = 20;
    assert_eq!(scatter.get_ref().len(), 2);
    let Ok(gathered) = scatter.clone().oneshot(1).await;
    assert_eq!(answers(&gathered), [2, 21]);
    // A clone made before keeps the branches it shared.
    let Ok(gathered) = before.oneshot(1).await;
    assert_eq!(answers(&gathered), [2, 3]);
    let branches: Vec<u32> = scatter.into_inner().into_iter().map(|a| a.0).collect();
    assert_eq!(branches, [1, 20]);

    let err = Scatter::<Add>::new([]).unwrap_err();
    assert_eq!(err.field(), "scatter.branches");
}

#[tokio::test(start_paused = true)]
async fn stages_made_with_new_run_in_order_and_give_their_branches_back() {
    let mut stages = Stages::new([
        vec![Branch::hard(Add(1))],
        vec![Branch::soft(Add(2)), Branch::soft(Add(3))],
    ])
    .unwrap();
    assert_eq!(stages.branches(), 3);
    stages.get_mut()[0].0 = 10;
    let Ok(gathered) = stages.clone().oneshot(1).await;
    assert!(gathered.is_satisfied());
    assert_eq!(answers(&gathered), [11, 3, 4]);
    assert_eq!(stages.get_ref()[2].0, 3);
    // Shared with a clone: the branches are cloned out.
    let clone = stages.clone();
    assert_eq!(stages.into_inner().len(), 3);
    assert_eq!(clone.into_inner().len(), 3);

    let none: Vec<Vec<Branch<Add>>> = Vec::new();
    assert_eq!(Stages::new(none).unwrap_err().field(), "stages.stages");
    let err = Stages::new([vec![Branch::hard(Add(1))], vec![]]).unwrap_err();
    assert_eq!(err.field(), "stages.stage");
}

#[tokio::test(start_paused = true)]
async fn scatter_branch_names_may_be_owned_strings() {
    let from_file = |name: &str| format!("{name}-{}", 1);
    let scatter = Scatter::builder()
        .named_branch(from_file("eu"), Add(1))
        .named_branch("us", Add(2))
        .build()
        .unwrap();
    let Ok(gathered) = scatter.oneshot(1).await;
    assert_eq!(gathered.by_name("eu-1").unwrap().response(), Some(&2));
    let names: Vec<_> = gathered
        .branches()
        .iter()
        .filter_map(|b| b.name())
        .collect();
    assert_eq!(names, ["eu-1", "us"]);

    let stages = Stages::builder()
        .stage([Branch::hard(Add(1)).named(from_file("auth"))])
        .build()
        .unwrap();
    let Ok(gathered) = stages.oneshot(1).await;
    assert_eq!(gathered.get(0).unwrap().name(), Some("auth-1"));
}

#[tokio::test(start_paused = true)]
async fn a_race_made_with_new_and_a_hedge_give_their_first_service_back() {
    let mut race = Race::new([Add(1), Add(2)]).unwrap();
    race.get_mut().0 = 10;
    assert_eq!(race.get_ref().0, 10);
    assert_eq!(race.alternatives().len(), 2);
    assert_eq!(race.clone().oneshot(1).await.unwrap(), 11);
    assert_eq!(race.into_inner().0, 10);
    let err = Race::<Add>::new([]).unwrap_err();
    assert_eq!(err.field(), "race.alternatives");

    let layer = HedgeLayer::builder().delay(ms(10)).build().unwrap();
    let mut hedge = Hedge::new(Add(1), &layer);
    hedge.get_mut().0 = 5;
    assert_eq!(hedge.clone().oneshot(1).await.unwrap(), 6);
    assert_eq!(hedge.into_inner().0, 5);
}

#[tokio::test(start_paused = true)]
async fn an_observed_deadline_made_with_new_bounds_calls_and_gives_its_inner_service_back() {
    let observe = ObserveLayer::builder("calls").build().unwrap();
    let total = TotalDeadlineLayer::new(ms(50)).unwrap();
    let hung = service_fn(|()| std::future::pending::<Result<u32, BoxError>>());
    let err = ObserveDeadline::new(hung, &observe, &total)
        .oneshot(())
        .await
        .unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");

    let mut service = ObserveDeadline::new(Add(1), &observe, &total);
    service.get_mut().0 = 2;
    assert_eq!(service.get_ref().0, 2);
    assert_eq!(call(&mut service, 1_u32).await.unwrap(), 3);
    assert_eq!(service.into_inner().0, 2);
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_and_bulkheads_lend_their_inner_service_mutably() {
    let by_parity = |n: &u32| n % 2;
    let breakers = KeyedCircuitBreakerLayer::builder()
        .key(by_parity)
        .build()
        .unwrap();
    let mut service = KeyedCircuitBreaker::new(Add(1), &breakers);
    service.get_mut().0 = 7;
    assert_eq!(call(&mut service, 1_u32).await.unwrap(), 8);
    assert_eq!(breakers.len(), 1);
    assert_eq!(service.into_inner().0, 7);

    let bulkheads = KeyedBulkheadLayer::builder(by_parity)
        .max_concurrent(1)
        .build()
        .unwrap();
    let mut service = KeyedBulkhead::new(Add(1), &bulkheads);
    service.get_mut().0 = 4;
    assert_eq!(service.get_ref().0, 4);
    assert_eq!(call(&mut service, 2_u32).await.unwrap(), 6);
    assert_eq!(service.into_inner().0, 4);
}

#[cfg(feature = "rate-limit")]
#[tokio::test(start_paused = true)]
async fn a_rate_limiter_lends_its_inner_service_mutably() {
    use steadfast::rate_limit::{Quota, RateLimit, RateLimitLayer};

    let layer = RateLimitLayer::builder()
        .quota(Quota::per_second(10))
        .build()
        .unwrap();
    let mut service = RateLimit::new(Add(1), &layer);
    service.get_mut().0 = 3;
    assert_eq!(call(&mut service, 1_u32).await.unwrap(), 4);
    assert_eq!(service.into_inner().0, 3);
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn a_route_service_made_with_new_routes_and_gives_its_default_route_back() {
    use steadfast::http::{Route, RouteService, RouteTable};
    use tower::layer::util::Identity;

    let table = RouteTable::builder(Identity::new())
        .route(Route::get("/search"), Identity::new())
        .build()
        .unwrap();
    let mut service = RouteService::new(Add(1), &table);
    service.get_mut().0 = 2;
    assert_eq!(service.get_ref().0, 2);
    let get = |path: &str| {
        http::Request::get(format!("http://api.example{path}"))
            .body(())
            .unwrap()
    };
    // The default route's service changed, not the route's.
    let other = call(&mut service, get("/other")).await;
    assert_eq!(other.unwrap(), 2);
    let search = call(&mut service, get("/search")).await;
    assert_eq!(search.unwrap(), 1);
    assert_eq!(service.into_inner().0, 2);
}

#[cfg(feature = "axum")]
#[tokio::test(start_paused = true)]
async fn a_matched_path_service_gives_its_inner_service_back() {
    use steadfast::http::axum::{MatchedPathLayer, MatchedPathService};

    let layer = MatchedPathLayer::new(TimeoutLayer::new(ms(100)).unwrap());
    let mut service = MatchedPathService::new(Add(1), &layer);
    // The stack of requests without a matched path was made already.
    service.get_mut().0 = 2;
    assert_eq!(service.get_ref().0, 2);
    let req = http::Request::get("http://api.example/").body(()).unwrap();
    assert_eq!(call(&mut service, req).await.unwrap(), 1);
    assert_eq!(service.into_inner().0, 2);
}
