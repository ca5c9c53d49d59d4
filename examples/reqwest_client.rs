//! A reqwest client with one policy per route, each built on the standard
//! HTTP client preset: `GET /users/{id}` hedges slow answers and falls back
//! to the last good answer, `POST /orders` is never sent again once it
//! reached the server. A local axum backend (started here, on 127.0.0.1)
//! is healthy, then slow, then down; every event of every layer is printed.
//!
//! Run: `cargo run --example reqwest_client --features reqwest,axum,cache`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource};
use steadfast::hedge::HedgeLayer;
use steadfast::observe::Event;
use steadfast::policy::Policy;
use tower::{Layer, ServiceExt};

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

async fn order(State(backend): State<Backend>) -> (StatusCode, &'static str) {
    backend.hits.fetch_add(1, Ordering::SeqCst);
    (StatusCode::SERVICE_UNAVAILABLE, "busy")
}

async fn serve(backend: Backend) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/users/{id}", get(user))
        .route("/orders", post(order))
        .with_state(backend);
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

#[tokio::main]
async fn main() -> Result<(), steadfast::BoxError> {
    let backend = Backend::default();
    let addr = serve(backend.clone()).await?;
    let reqwest = reqwest::Client::builder().no_proxy().build()?;

    // GET /users/{id}: the preset, hedged after 50 ms, falling back to the
    // last good answer. One policy, no adapter.
    let users = Policy::standard_http_client()
        .name("users")
        .route("/users/{id}")
        .total_timeout(Duration::from_secs(3))
        .hedge(HedgeLayer::builder().delay(Duration::from_millis(50)))
        .fallback(
            FallbackLayer::builder()
                .cache(FallbackCache::http().build()?)
                .reqwest(),
        )
        .on_event(print_event)
        .build()?
        .layer(reqwest.clone());
    // POST /orders: the preset with a 2 s total and a stricter breaker
    // (one per host, as the preset's are); the rest of the preset is kept.
    let orders = Policy::standard_http_client()
        .name("orders")
        .route("/orders")
        .total_timeout(Duration::from_secs(2))
        .circuit_breaker_with(|b| b.consecutive_failures(5))
        .on_event(print_event)
        .build()?
        .layer(reqwest);

    let get_user = || reqwest::Request::new(reqwest::Method::GET, url(addr, "/users/7"));
    for (mode, label) in [(HEALTHY, "healthy"), (SLOW, "slow"), (DOWN, "down")] {
        backend.mode.store(mode, Ordering::SeqCst);
        backend.hang_next.store(mode == SLOW, Ordering::SeqCst);
        let before = backend.hits.load(Ordering::SeqCst);
        println!("GET /users/7 while the backend is {label}:");
        let response = users.clone().oneshot(get_user()).await?;
        let source = response.extensions().get::<FallbackSource>().copied();
        let status = response.status();
        let body = response.text().await?;
        println!(
            "  -> {status} {body} ({}; requests that reached the backend: {})",
            source.map_or("live", |s| s.as_str()),
            backend.hits.load(Ordering::SeqCst) - before,
        );
    }

    println!("POST /orders (answered 503):");
    let before = backend.hits.load(Ordering::SeqCst);
    let response = orders
        .clone()
        .oneshot(reqwest::Request::new(
            reqwest::Method::POST,
            url(addr, "/orders"),
        ))
        .await?;
    println!(
        "  -> {}; requests that reached the backend: {} (a POST that reached it is not sent again)",
        response.status(),
        backend.hits.load(Ordering::SeqCst) - before,
    );
    Ok(())
}

fn url(addr: SocketAddr, path: &str) -> reqwest::Url {
    format!("http://{addr}{path}").parse().expect("a valid URL")
}
