//! Through reqwest.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Client, Method, Request};
use steadfast::BoxError;
use steadfast::circuit_breaker::{CircuitBreakerLayer, State};
use steadfast::error::CircuitOpen;
use steadfast::http::{HttpClassifier, HttpReplay};
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, RetryLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::backend::{assert_spaced, closed_port, flaky, resetting};

fn retry_fast(attempts: u32) -> RetryLayer<HttpClassifier, HttpReplay> {
    RetryLayer::builder()
        .max_attempts(attempts)
        .backoff(Backoff::constant(Duration::from_millis(5)))
        .unlimited_budget()
        .classifier(HttpClassifier::new())
        .replay(HttpReplay::new())
        .build()
        .unwrap()
}

fn request(method: Method, url: String) -> Request {
    Request::new(method, url.parse().unwrap())
}

#[tokio::test]
async fn retry_after_is_obeyed() {
    let (addr, log) = flaky().await;
    let client = ServiceBuilder::new()
        .layer(retry_fast(3))
        .service(Client::new());

    let response = client
        .oneshot(request(Method::GET, format!("http://{addr}/busy/2/r1")))
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(log.hits("/busy/2/r1"), 3);
    // Backoff is 5 ms; the server asked for a second each time.
    assert_spaced(&log.arrivals("/busy/2/r1"), Duration::from_secs(1));
}

#[tokio::test]
async fn a_post_that_reached_the_server_is_not_retried() {
    let (addr, hits) = resetting().await;
    let client = ServiceBuilder::new()
        .layer(retry_fast(3))
        .service(Client::new());

    let err = client
        .clone()
        .oneshot(request(Method::POST, format!("http://{addr}/orders")))
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // The same failure after a GET is retried.
    client
        .oneshot(request(Method::GET, format!("http://{addr}/orders")))
        .await
        .unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 1 + 3);
}

#[tokio::test]
async fn a_post_answered_by_a_gateway_error_is_not_retried() {
    let (addr, log) = flaky().await;
    let client = ServiceBuilder::new()
        .layer(retry_fast(3))
        .service(Client::new());
    let response = client
        .clone()
        .oneshot(request(Method::POST, format!("http://{addr}/gateway/p")))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(log.hits("/gateway/p"), 1);

    let mut marked = request(Method::POST, format!("http://{addr}/gateway/k"));
    marked
        .headers_mut()
        .insert("idempotency-key", "order-1".parse().unwrap());
    let response = client.oneshot(marked).await.unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(log.hits("/gateway/k"), 3);
}

#[tokio::test]
async fn a_connect_failure_is_retried_even_for_a_post() {
    let refused = closed_port();
    let addr = refused.addr();
    let attempts = Arc::new(AtomicUsize::new(0));
    let counting = {
        let attempts = attempts.clone();
        let client = Client::new();
        tower::service_fn(move |req: Request| {
            attempts.fetch_add(1, Ordering::SeqCst);
            client.execute(req)
        })
    };
    let client = ServiceBuilder::new().layer(retry_fast(3)).service(counting);

    let err: BoxError = client
        .oneshot(request(Method::POST, format!("http://{addr}/orders")))
        .await
        .unwrap_err();
    let err = err
        .downcast_ref::<reqwest::Error>()
        .expect("a reqwest error");
    assert!(err.is_connect());
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_breaker_opens_and_refuses() {
    let (addr, log) = flaky().await;
    let policy = Policy::builder()
        .classifier(HttpClassifier::new())
        .replay(HttpReplay::new())
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .count_window(4)
                .minimum_calls(4)
                .failure_rate_threshold(50.0)
                .open_duration(Duration::from_secs(60)),
        )
        .build()
        .unwrap();
    let handle = policy.circuit_breaker().unwrap();
    let mut client = ServiceBuilder::new().layer(policy).service(Client::new());

    for _ in 0..4 {
        let response = client
            .ready()
            .await
            .unwrap()
            .call(request(Method::GET, format!("http://{addr}/fail/b")))
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
    }
    assert_eq!(handle.state(), State::Open);
    let err = client
        .ready()
        .await
        .unwrap()
        .call(request(Method::GET, format!("http://{addr}/fail/b")))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(log.hits("/fail/b"), 4);
}
