//! Hedging obeys the HTTP rule of what may be sent twice: a request that
//! is not idempotent is never hedged on a timer, and moves on to another
//! endpoint only after a failure that proves it was not processed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::hedge::HedgeLayer;
use steadfast::http::HttpClassifier;
use tower::{Layer, ServiceExt, service_fn};

fn copy(request: &http::Request<()>) -> Option<http::Request<()>> {
    let mut copy = http::Request::new(());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

fn request(method: http::Method, keyed: bool) -> http::Request<()> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri("http://api.test/orders");
    if keyed {
        builder = builder.header("idempotency-key", "\"k-1\"");
    }
    builder.body(()).unwrap()
}

/// A backend that answers `status` after a second, counting its calls.
fn slow(
    calls: Arc<AtomicUsize>,
    status: u16,
) -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = BoxError,
    Future = impl Future<Output = Result<http::Response<()>, BoxError>>,
> + Clone {
    service_fn(move |_: http::Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap())
        }
    })
}

#[tokio::test(start_paused = true)]
async fn only_requests_that_may_run_twice_are_hedged() {
    let hedge = HedgeLayer::builder()
        .delay(Duration::from_millis(50))
        .unlimited_budget()
        .classifier(HttpClassifier::new())
        .replay(copy)
        .build()
        .unwrap();
    for (method, keyed, sent) in [
        (http::Method::GET, false, 2),
        (http::Method::PUT, false, 2),
        (http::Method::POST, false, 1),
        (http::Method::PATCH, false, 1),
        (http::Method::POST, true, 2),
    ] {
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = hedge.layer(slow(calls.clone(), 200));
        let response = svc.oneshot(request(method.clone(), keyed)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(calls.load(Ordering::SeqCst), sent, "{method} keyed={keyed}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_post_moves_to_the_next_endpoint_only_when_it_was_not_processed() {
    let hedge = HedgeLayer::builder()
        .delay(Duration::from_millis(50))
        .unlimited_budget()
        .classifier(HttpClassifier::new())
        .replay(copy)
        .build()
        .unwrap();
    let failing = |calls: Arc<AtomicUsize>, refused: bool| {
        service_fn(move |_: http::Request<()>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if refused {
                    Err::<http::Response<()>, BoxError>(Box::new(std::io::Error::from(
                        std::io::ErrorKind::ConnectionRefused,
                    )))
                } else {
                    Ok(http::Response::builder().status(503).body(()).unwrap())
                }
            }
        })
    };
    for (refused, second_sent) in [(true, 1), (false, 0)] {
        let first = Arc::new(AtomicUsize::new(0));
        let second = Arc::new(AtomicUsize::new(0));
        let endpoints = vec![
            tower::util::BoxCloneService::new(failing(first.clone(), refused)),
            tower::util::BoxCloneService::new(slow(second.clone(), 200)),
        ];
        let svc = hedge.endpoints(endpoints).unwrap();
        let outcome = svc.oneshot(request(http::Method::POST, false)).await;
        assert_eq!(first.load(Ordering::SeqCst), 1);
        assert_eq!(
            second.load(Ordering::SeqCst),
            second_sent,
            "refused={refused}"
        );
        match outcome {
            Ok(response) if refused => assert_eq!(response.status(), 200),
            Ok(response) => assert_eq!(response.status(), 503),
            Err(err) => panic!("{err}"),
        }
    }
}
