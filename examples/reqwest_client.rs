//! A reqwest client with the standard HTTP client policy, against a flaky
//! in-process axum backend that answers 503 with `Retry-After: 1` twice.
//!
//! Run: `cargo run --example reqwest_client --features reqwest,axum`

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use steadfast::http::PropagateDeadlineLayer;
use steadfast::policy::Policy;
use tower::{ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), steadfast::BoxError> {
    let calls = Arc::new(AtomicU32::new(0));
    let backend = Router::new().route(
        "/price",
        get({
            let calls = calls.clone();
            move || async move {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        [("retry-after", "1")],
                        "busy",
                    )
                } else {
                    (StatusCode::OK, [("retry-after", "0")], "42")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, backend).await });

    // The whole client: a policy over reqwest's `Client`.
    let policy = Policy::standard_http_client()
        .total_timeout(Duration::from_secs(15))
        .build()?;
    let client = ServiceBuilder::new()
        .layer(policy)
        .layer(PropagateDeadlineLayer::new().max(Duration::from_secs(10)))
        .service(reqwest::Client::new());

    let started = Instant::now();
    let request = reqwest::Request::new(
        reqwest::Method::GET,
        format!("http://{addr}/price").parse()?,
    );
    let response = client.oneshot(request).await?;
    println!(
        "GET /price -> {} {:?} after {} calls in {:.1?} (Retry-After obeyed)",
        response.status(),
        response.text().await?,
        calls.load(Ordering::SeqCst),
        started.elapsed()
    );
    Ok(())
}
