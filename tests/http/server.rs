//! An axum server stack: errors answered 503 / 429 / 504 with
//! `Retry-After`, handlers bounded by the caller's deadline header.

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use reqwest::{Client, Method, Request};
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::http::{
    ErrorResponseLayer, HttpClassifier, PropagateDeadlineLayer, ServerDeadlineLayer,
};
use steadfast::rate_limit::{Quota, RateLimitLayer};
use steadfast::timeout::{Deadline, TotalDeadlineLayer};
use tokio::sync::{mpsc, oneshot};
use tower::{ServiceBuilder, ServiceExt};

use crate::backend::serve;

/// Sends whether the handler finished when it is dropped.
struct Finished(Option<oneshot::Sender<bool>>, bool);

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(self.1);
        }
    }
}

async fn budget_ms() -> String {
    let left = Deadline::current().map(Deadline::remaining);
    left.map_or_else(|| "none".to_owned(), |d| d.as_millis().to_string())
}

#[tokio::test]
async fn the_server_answers_rejections_with_status_and_retry_after() {
    let breaker = CircuitBreakerLayer::builder()
        .classifier(HttpClassifier::new())
        .build()
        .unwrap();
    breaker.handle().force_open();
    let (entered_tx, mut entered) = mpsc::channel::<()>(1);
    let (release_tx, release) = tokio::sync::watch::channel(false);
    let app = Router::new()
        // `MethodRouter::layer`: an open breaker is a 503.
        .route(
            "/open",
            get(|| async { "never" }).layer(
                ServiceBuilder::new()
                    .layer(ErrorResponseLayer::new())
                    .layer(breaker),
            ),
        )
        // A full bulkhead is a 503 too.
        .route(
            "/full",
            get(move || {
                let entered_tx = entered_tx.clone();
                let mut release = release.clone();
                async move {
                    let _ = entered_tx.send(()).await;
                    let _ = release.wait_for(|go| *go).await;
                    "done"
                }
            })
            .layer(
                ServiceBuilder::new()
                    .layer(ErrorResponseLayer::new().bulkhead_retry_after(Duration::from_secs(3)))
                    .layer(BulkheadLayer::builder().max_concurrent(1).build().unwrap()),
            ),
        )
        // axum's own `HandleErrorLayer`, with this crate's answers.
        .route(
            "/limited",
            get(|| async { "ok" }).layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(steadfast::http::axum::handle_error))
                    .layer(
                        RateLimitLayer::builder()
                            .quota(Quota::per_minute(1).burst(1))
                            .build()
                            .unwrap(),
                    ),
            ),
        )
        .merge(
            // `Router::route_layer`: the deadline passes, 504.
            Router::new()
                .route(
                    "/late",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        "late"
                    }),
                )
                .route_layer(
                    ServiceBuilder::new()
                        .layer(ErrorResponseLayer::new())
                        .layer(ServerDeadlineLayer::new(Duration::from_millis(50)).unwrap()),
                ),
        );
    let addr = serve(app).await;
    let client = Client::new();

    let open = client
        .get(format!("http://{addr}/open"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 503);
    assert_eq!(open.headers()["retry-after"], "1");

    let holder = tokio::spawn({
        let client = client.clone();
        async move { client.get(format!("http://{addr}/full")).send().await }
    });
    entered.recv().await.unwrap();
    let full = client
        .get(format!("http://{addr}/full"))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 503);
    assert_eq!(full.headers()["retry-after"], "3");
    release_tx.send(true).unwrap();
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);

    let first = client
        .get(format!("http://{addr}/limited"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let limited = client
        .get(format!("http://{addr}/limited"))
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    let wait: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "retry-after {wait}");

    let late = client
        .get(format!("http://{addr}/late"))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 504);
    assert!(late.headers().get("retry-after").is_none());
}

#[tokio::test]
async fn the_deadline_header_shortens_the_servers_work() {
    let (done_tx, done_rx) = oneshot::channel();
    let done_tx = std::sync::Mutex::new(Some(done_tx));
    let done_tx = std::sync::Arc::new(done_tx);
    let app = Router::new()
        .route(
            "/work",
            get(move || {
                let guard = Finished(done_tx.lock().unwrap().take(), false);
                async move {
                    let mut guard = guard;
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    guard.1 = true;
                    "finished"
                }
            }),
        )
        .route("/budget", get(budget_ms))
        .route_layer(
            ServiceBuilder::new()
                .layer(ErrorResponseLayer::new())
                .layer(ServerDeadlineLayer::new(Duration::from_secs(60)).unwrap()),
        );
    let addr = serve(app).await;
    let client = Client::new();

    let response = client
        .get(format!("http://{addr}/work"))
        .header("x-request-timeout-ms", "100")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    // The handler was dropped, not left to run for 30 s.
    assert!(!done_rx.await.unwrap());

    let budget: u64 = client
        .get(format!("http://{addr}/budget"))
        .header("x-request-timeout-ms", "200")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(budget <= 200, "{budget}");
}

#[tokio::test]
async fn the_deadline_header_cannot_lengthen_the_servers_work() {
    let app = Router::new().route("/budget", get(budget_ms)).route_layer(
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(ServerDeadlineLayer::new(Duration::from_millis(500)).unwrap()),
    );
    let addr = serve(app).await;
    let client = Client::new();
    for header in ["600000", "99999999999999999999999", "garbage", "-5"] {
        let budget: u64 = client
            .get(format!("http://{addr}/budget"))
            .header("x-request-timeout-ms", header)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .parse()
            .unwrap();
        assert!(budget <= 500, "{header}: {budget}");
    }
}

#[tokio::test]
async fn a_client_deadline_travels_in_the_header() {
    let app = Router::new().route("/budget", get(budget_ms)).route_layer(
        ServiceBuilder::new()
            .layer(ErrorResponseLayer::new())
            .layer(ServerDeadlineLayer::new(Duration::from_secs(60)).unwrap()),
    );
    let addr = serve(app).await;
    let client = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_millis(300)).unwrap())
        .layer(PropagateDeadlineLayer::new())
        .service(Client::new());
    let request = Request::new(
        Method::GET,
        format!("http://{addr}/budget").parse().unwrap(),
    );
    let response = client.oneshot(request).await.unwrap();
    let budget: u64 = response.text().await.unwrap().parse().unwrap();
    assert!(budget <= 300, "{budget}");
}
