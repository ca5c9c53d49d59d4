//! A hyper-util client with one policy per route, each built on the
//! standard HTTP client preset: `GET /users/{id}` hedges slow answers and
//! falls back to the last good answer; `POST /orders` carries an
//! `Idempotency-Key`, so a 503 may be sent again, and its body is buffered
//! so that it can be. A local axum backend (started here, on 127.0.0.1) is
//! healthy, then slow, then down; every event of every layer is printed.
//!
//! Run: `cargo run --example hyper_client --features hyper,axum,cache`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource};
use steadfast::hedge::HedgeLayer;
use steadfast::http::{BufferRequestBodyLayer, ReplayBody};
use steadfast::observe::Event;
use steadfast::policy::Policy;
use tower::{ServiceBuilder, ServiceExt};

const HEALTHY: u8 = 0;
const SLOW: u8 = 1;
const DOWN: u8 = 2;

#[derive(Clone, Default)]
struct Backend {
    mode: Arc<AtomicU8>,
    hits: Arc<AtomicU32>,
    hang_next: Arc<AtomicBool>,
}

async fn user(State(backend): State<Backend>, Path(id): Path<u32>) -> (StatusCode, String) {
    backend.hits.fetch_add(1, Ordering::SeqCst);
    match backend.mode.load(Ordering::SeqCst) {
        // While slow, the first request hangs: a hedge answers for it.
        SLOW if backend.hang_next.swap(false, Ordering::SeqCst) => std::future::pending().await,
        DOWN => (StatusCode::SERVICE_UNAVAILABLE, "down".to_owned()),
        _ => (StatusCode::OK, format!("{{\"id\":{id},\"name\":\"Ada\"}}")),
    }
}

async fn order(State(backend): State<Backend>, body: Bytes) -> (StatusCode, String) {
    // The first order is refused, the next stored.
    if backend.hits.fetch_add(1, Ordering::SeqCst) == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, "busy".to_owned())
    } else {
        (StatusCode::CREATED, format!("stored {} bytes", body.len()))
    }
}

async fn serve(users: Backend, orders: Backend) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/users/{id}", get(user).with_state(users))
        .route("/orders", post(order).with_state(orders));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Prints what a layer did.
fn print_event(event: &Event<'_>) {
    match event {
        Event::RetryScheduled { attempt, delay, .. } => {
            println!("    retry: attempt {attempt} failed, next in {delay:.0?}");
        }
        Event::RetryStopped { reason, .. } => println!("    retry: stopped ({reason})"),
        Event::HedgeSent { copy, delay, .. } => {
            println!("    hedge: copy {copy} sent after {delay:.0?}");
        }
        Event::HedgeWon { copy, .. } => println!("    hedge: copy {copy} answered first"),
        Event::FallbackServed { source, reason, .. } => {
            println!("    fallback: served from {} ({reason})", source.as_str());
        }
        Event::Rejected { .. } | Event::StateChanged { .. } | Event::FallbackMissed { .. } => {
            println!("    {}", event.kind());
        }
        _ => {}
    }
}

type Body = ReplayBody<Full<Bytes>>;

#[tokio::main]
async fn main() -> Result<(), steadfast::BoxError> {
    let (users_backend, orders_backend) = (Backend::default(), Backend::default());
    let addr = serve(users_backend.clone(), orders_backend.clone()).await?;
    let hyper: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();

    // GET /users/{id}: the preset, hedged after 50 ms, falling back to the
    // last good answer. One policy, no adapter.
    let users = ServiceBuilder::new()
        .layer(BufferRequestBodyLayer::new(64 * 1024)?)
        .layer(
            Policy::standard_http_client()
                .name("users")
                .route("/users/{id}")
                .total_timeout(Duration::from_secs(3))
                .hedge(HedgeLayer::builder().delay(Duration::from_millis(50)))
                .fallback(
                    FallbackLayer::builder()
                        .cache(FallbackCache::http().build()?)
                        .http_for::<http::Request<Body>, http::Response<Incoming>>(),
                )
                .on_event(print_event)
                .build()?,
        )
        .service(hyper.clone());
    // POST /orders: the preset with a 2 s total; retries wait 50 ms at first.
    let orders = ServiceBuilder::new()
        .layer(BufferRequestBodyLayer::new(64 * 1024)?)
        .layer(
            Policy::standard_http_client()
                .name("orders")
                .route("/orders")
                .total_timeout(Duration::from_secs(2))
                .retry_with(|r| {
                    r.backoff(steadfast::retry::Backoff::exponential(
                        Duration::from_millis(50),
                    ))
                })
                .on_event(print_event)
                .build()?,
        )
        .service(hyper);

    for (mode, label) in [(HEALTHY, "healthy"), (SLOW, "slow"), (DOWN, "down")] {
        users_backend.mode.store(mode, Ordering::SeqCst);
        users_backend
            .hang_next
            .store(mode == SLOW, Ordering::SeqCst);
        let before = users_backend.hits.load(Ordering::SeqCst);
        println!("GET /users/7 while the backend is {label}:");
        let request = http::Request::get(format!("http://{addr}/users/7")).body(Full::default())?;
        let response = users.clone().oneshot(request).await?;
        let source = response.extensions().get::<FallbackSource>().copied();
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "  -> {status} {} ({}; requests that reached the backend: {})",
            String::from_utf8_lossy(&body),
            source.map_or("live", |s| s.as_str()),
            users_backend.hits.load(Ordering::SeqCst) - before,
        );
    }

    println!("POST /orders with an Idempotency-Key (the first answered 503):");
    let request = http::Request::post(format!("http://{addr}/orders"))
        .header("idempotency-key", "\"order-tea-2\"")
        .body(Full::new(Bytes::from_static(
            b"{\"item\":\"tea\",\"qty\":2}",
        )))?;
    let response = orders.oneshot(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "  -> {status} {}; requests that reached the backend: {} (the body was replayed)",
        String::from_utf8_lossy(&body),
        orders_backend.hits.load(Ordering::SeqCst)
    );
    Ok(())
}
