//! Per-route client policies: the search route is failing and its breaker
//! opens; the orders route keeps its own, closed breaker.
//!
//! Run: `cargo run --example per_route --features reqwest,axum`

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use reqwest::{Method, Request};
use steadfast::http::{Route, RouteTable};
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, RetryLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), steadfast::BoxError> {
    let backend = Router::new()
        .route(
            "/search",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route("/orders/{id}", get(|| async { "order" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, backend).await });

    // One preset, tuned per route; each route builds its own state.
    let route_policy = |attempt: Duration| {
        Policy::standard_http_client()
            .attempt_timeout(attempt)
            .retry(
                RetryLayer::builder()
                    .max_attempts(2)
                    .backoff(Backoff::constant(Duration::from_millis(20))),
            )
            // The preset's breaker (one per host), tuned.
            .circuit_breaker_with(|breaker| {
                breaker
                    .time_window(Duration::from_secs(30), 30)
                    .minimum_calls(3)
                    .failure_rate_threshold(50.0)
                    .open_duration(Duration::from_secs(5))
            })
            .build()
    };
    let table = RouteTable::builder(Policy::standard_http_client().build()?)
        .route(
            Route::get("/search"),
            route_policy(Duration::from_millis(500))?,
        )
        .route(
            Route::get("/orders/{id}"),
            route_policy(Duration::from_secs(2))?,
        )
        .build()?;
    let search_breaker = table
        .layer_of(&Method::GET, None, "/search")
        .circuit_breaker_for(&addr.to_string());
    let orders_breaker = table
        .layer_of(&Method::GET, None, "/orders/7")
        .circuit_breaker_for(&addr.to_string());
    let mut client = ServiceBuilder::new()
        .layer(table)
        .service(reqwest::Client::new());

    for path in [
        "/search",
        "/orders/7",
        "/search",
        "/search",
        "/search",
        "/orders/8",
    ] {
        let request = Request::new(Method::GET, format!("http://{addr}{path}").parse()?);
        let outcome = match client.ready().await?.call(request).await {
            Ok(response) => response.status().to_string(),
            Err(err) => format!("refused: {err}"),
        };
        println!("GET {path:<10} -> {outcome}");
    }
    println!(
        "breakers: /search {:?}, /orders {:?}",
        search_breaker.state(),
        orders_breaker.state()
    );
    Ok(())
}
