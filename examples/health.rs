//! Observability end to end: a reqwest client under the standard policy,
//! watched (request ids, slow-call alerts, listeners), and an axum health
//! endpoint that serves the state of every breaker, bulkhead and budget as
//! JSON.
//!
//! Run: `cargo run --example health --features reqwest,axum,serde`

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::observe::{CallContext, Event, Health};
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, RetryLayer};
use tower::{Layer, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), steadfast::BoxError> {
    // A backend that fails every call but the first three.
    let calls = Arc::new(AtomicU32::new(0));
    let backend = Router::new().route(
        "/quote",
        get({
            let calls = calls.clone();
            move || async move {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    (StatusCode::OK, "17.5")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "down")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let backend_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, backend).await });

    // The client policy: named, watched, with a listener that prints each
    // decision with the request id of its call.
    let policy = Policy::standard_http_client()
        .name("quotes")
        .route("/quote")
        .slow_call(Duration::from_millis(200))
        .retry(
            RetryLayer::builder()
                .max_attempts(2)
                .backoff(Backoff::constant(Duration::from_millis(10))),
        )
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .name("quotes")
                .count_window(4)
                .minimum_calls(4)
                .failure_rate_threshold(50.0)
                .open_duration(Duration::from_secs(30)),
        )
        .bulkhead(BulkheadLayer::builder().max_concurrent(8).name("quotes"))
        .on_event(|event| {
            let id = CallContext::current()
                .map(|c| c.request_id().to_string())
                .unwrap_or_default();
            match event {
                Event::CallEnded {
                    verdict, attempts, ..
                } => {
                    println!("[{id}] call ended: {verdict} after {attempts} attempt(s)")
                }
                Event::StateChanged {
                    from, to, reason, ..
                } => {
                    println!("[{id}] breaker {from} -> {to} ({reason})")
                }
                other => println!("[{id}] {}", other.kind()),
            }
        })
        .build()?;
    let health = Health::new().policy(&policy);
    let client = policy.layer(reqwest::Client::new());

    // The health endpoint: 200 while every breaker is closed, 503 after.
    let app = Router::new()
        .route(
            "/health",
            get(|State(health): State<Health>| async move {
                let snapshot = health.snapshot();
                let status = if snapshot.healthy {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (status, axum::Json(snapshot))
            }),
        )
        .with_state(health);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let health_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let probe = reqwest::Client::new();
    let show = async |when: &str| -> Result<(), steadfast::BoxError> {
        let response = probe
            .get(format!("http://{health_addr}/health"))
            .send()
            .await?;
        println!(
            "GET /health {when}: {}\n{}\n",
            response.status(),
            response.text().await?
        );
        Ok(())
    };
    show("before any call").await?;

    for i in 0..8 {
        let mut request = reqwest::Request::new(
            reqwest::Method::GET,
            format!("http://{backend_addr}/quote").parse()?,
        );
        // Callers that have a request id pass it on; the others get one.
        if i % 2 == 0 {
            request
                .headers_mut()
                .insert("x-request-id", format!("req-{i}").parse()?);
        }
        match client.clone().oneshot(request).await {
            Ok(response) => println!("call {i}: {}", response.status()),
            Err(err) => println!("call {i}: refused: {err}"),
        }
    }
    show("after the backend went down").await?;
    Ok(())
}
