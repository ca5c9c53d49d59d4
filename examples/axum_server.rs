//! An axum server whose routes are guarded by a bulkhead, a breaker and
//! the caller's deadline; errors become 503 / 504 with `Retry-After`.
//!
//! Run: `cargo run --example axum_server --features axum`

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::http::{ErrorResponseLayer, HttpClassifier, ServerDeadlineLayer};
use steadfast::timeout::Deadline;
use tower::ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), steadfast::BoxError> {
    let breaker = CircuitBreakerLayer::builder()
        .classifier(HttpClassifier::new())
        .build()?;
    let breaker_handle = breaker.handle();
    let app = Router::new()
        .route(
            "/report",
            get(|| async {
                let left = Deadline::current().map(Deadline::remaining);
                tokio::time::sleep(Duration::from_millis(300)).await;
                format!("report done with {left:?} to spare")
            }),
        )
        // `Router::route_layer`: every route above gets the stack.
        .route_layer(
            ServiceBuilder::new()
                .layer(ErrorResponseLayer::new())
                .layer(ServerDeadlineLayer::new(Duration::from_secs(2))?)
                .layer(BulkheadLayer::builder().max_concurrent(32).build()?),
        )
        // `MethodRouter::layer`: one route with its own breaker.
        .route(
            "/inventory",
            get(|| async { "12 in stock" }).layer(
                ServiceBuilder::new()
                    .layer(ErrorResponseLayer::new())
                    .layer(breaker),
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    let show =
        async |label: &str, response: reqwest::Response| -> Result<(), steadfast::BoxError> {
            let status = response.status();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("?").to_owned());
            println!(
                "{label:<42} -> {status} retry-after={retry_after:?} {:?}",
                response.text().await?
            );
            Ok(())
        };

    let r = client.get(format!("http://{addr}/report")).send().await?;
    show("GET /report (no deadline header)", r).await?;
    let r = client
        .get(format!("http://{addr}/report"))
        .header("x-request-timeout-ms", "100")
        .send()
        .await?;
    show("GET /report (caller gives 100 ms)", r).await?;
    let r = client
        .get(format!("http://{addr}/report"))
        .header("x-request-timeout-ms", "3600000")
        .send()
        .await?;
    show("GET /report (caller asks an hour: clamped)", r).await?;
    let r = client
        .get(format!("http://{addr}/inventory"))
        .send()
        .await?;
    show("GET /inventory", r).await?;
    breaker_handle.force_open();
    let r = client
        .get(format!("http://{addr}/inventory"))
        .send()
        .await?;
    show("GET /inventory (breaker forced open)", r).await?;
    Ok(())
}
