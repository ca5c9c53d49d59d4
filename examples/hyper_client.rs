//! A hyper-util client whose POST bodies are buffered so that they can be
//! sent again: the backend answers the first POST with 503, and the
//! POST's `Idempotency-Key` makes it safe to send again, so the backend
//! takes the replayed copy.
//!
//! Run: `cargo run --example hyper_client --features hyper,axum`

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use steadfast::http::{BufferRequestBodyLayer, PropagateDeadlineLayer, ReplayBody};
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, RetryLayer};
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), steadfast::BoxError> {
    let calls = Arc::new(AtomicU32::new(0));
    let backend = Router::new().route(
        "/orders",
        post({
            let calls = calls.clone();
            move |body: Bytes| async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    (StatusCode::SERVICE_UNAVAILABLE, "busy".to_owned())
                } else {
                    (StatusCode::CREATED, format!("stored {} bytes", body.len()))
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, backend).await });

    let hyper: Client<_, ReplayBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build_http();
    let policy = Policy::standard_http_client()
        .retry(
            RetryLayer::builder()
                .max_attempts(3)
                .backoff(Backoff::exponential(Duration::from_millis(50))),
        )
        .build()?;
    let client = ServiceBuilder::new()
        .layer(BufferRequestBodyLayer::new(64 * 1024)?)
        .layer(policy)
        .layer(PropagateDeadlineLayer::new().max(Duration::from_secs(10)))
        .service(hyper);

    // Without the key, a POST answered 503 is not sent again.
    let request = http::Request::post(format!("http://{addr}/orders"))
        .header("idempotency-key", "\"order-tea-2\"")
        .body(Full::new(Bytes::from_static(
            b"{\"item\":\"tea\",\"qty\":2}",
        )))?;
    let response = client.oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "POST /orders -> {status} {body:?} after {} calls (the body was replayed)",
        calls.load(Ordering::SeqCst)
    );
    Ok(())
}
