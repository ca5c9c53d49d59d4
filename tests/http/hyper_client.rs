//! Through hyper-util's client, with buffered, replayable bodies.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use steadfast::BoxError;
use steadfast::http::{BufferRequestBodyLayer, HttpClassifier, HttpReplay, ReplayBody};
use steadfast::retry::{Backoff, RetryLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::backend::{assert_spaced, flaky, resetting};

fn retry_fast() -> RetryLayer<HttpClassifier, HttpReplay> {
    RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::constant(Duration::from_millis(5)))
        .unlimited_budget()
        .classifier(HttpClassifier::new())
        .replay(HttpReplay::new())
        .build()
        .unwrap()
}

type Body = ReplayBody<Full<Bytes>>;

fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::test]
async fn a_buffered_post_is_replayed_after_retry_after() {
    let (addr, log) = flaky().await;
    let client = ServiceBuilder::new()
        .layer(BufferRequestBodyLayer::new(1024).unwrap())
        .layer(retry_fast())
        .service(client());

    let request = Request::post(format!("http://{addr}/busy/1/h1"))
        .header("idempotency-key", "\"order-h1\"")
        .body(Full::new(Bytes::from_static(b"twelve bytes")))
        .unwrap();
    let response = client.oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "ok after 2");
    // The key makes the POST safe to send again after a 503, in full.
    assert_eq!(log.bodies("/busy/1/h1"), [12, 12]);
    assert_spaced(&log.arrivals("/busy/1/h1"), Duration::from_secs(1));
}

#[tokio::test]
async fn a_streaming_body_is_sent_once() {
    let (addr, log) = flaky().await;
    let hyper: Client<HttpConnector, ReplayBody<StreamBody<_>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let client = ServiceBuilder::new()
        .layer(BufferRequestBodyLayer::new(1024).unwrap())
        .layer(retry_fast())
        .service(hyper);

    let chunks = futures::stream::iter([
        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"chunk"))),
        Ok(Frame::data(Bytes::from_static(b"ed"))),
    ]);
    let request = Request::put(format!("http://{addr}/busy/1/h2"))
        .body(StreamBody::new(chunks))
        .unwrap();
    let response = client.oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(log.bodies("/busy/1/h2"), [7]);
}

#[tokio::test]
async fn a_reset_is_retried_for_get_only() {
    let (addr, hits) = resetting().await;
    let client = ServiceBuilder::new()
        .layer(BufferRequestBodyLayer::new(1024).unwrap())
        .layer(retry_fast())
        .service(client());

    let post = Request::post(format!("http://{addr}/orders"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    client.clone().oneshot(post).await.unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let get = Request::get(format!("http://{addr}/orders"))
        .body(Full::default())
        .unwrap();
    client.oneshot(get).await.unwrap_err();
    assert_eq!(hits.load(Ordering::SeqCst), 1 + 3);
}

#[tokio::test]
async fn a_connect_failure_is_retried_and_the_post_arrives_once() {
    let (addr, log) = flaky().await;
    // A connector whose first two connections are refused.
    let connects = Arc::new(AtomicUsize::new(0));
    let connector = {
        let connects = connects.clone();
        tower::service_fn(move |uri: http::Uri| {
            let n = connects.fetch_add(1, Ordering::SeqCst);
            let mut http = HttpConnector::new();
            Box::pin(async move {
                if n < 2 {
                    return Err::<_, BoxError>(Box::new(std::io::Error::from(
                        std::io::ErrorKind::ConnectionRefused,
                    )));
                }
                http.call(uri).await.map_err(Into::into)
            })
        })
    };
    let hyper: Client<_, Body> = Client::builder(TokioExecutor::new()).build(connector);
    let client = ServiceBuilder::new()
        .layer(BufferRequestBodyLayer::new(1024).unwrap())
        .layer(retry_fast())
        .service(hyper);

    let post = Request::post(format!("http://{addr}/ok/c1"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let response = client.oneshot(post).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(connects.load(Ordering::SeqCst), 3);
    assert_eq!(log.hits("/ok/c1"), 1);
}
