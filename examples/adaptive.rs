//! Adaptive concurrency against static limits, on real sockets.
//!
//! An axum backend serves each request on one of 20 workers (a semaphore;
//! calls beyond them queue) in 50 ms, then 100 ms, then 50 ms again. A
//! reqwest client sends 600 requests a second, open loop (1.5 times what
//! the backend serves in the first and last phases, 3 times in the
//! second), each with a 1 s timeout, through:
//!
//! - no limit;
//! - a static bulkhead of 1,000 (too high);
//! - a static bulkhead of 20 (right for the first phase);
//! - the adaptive limit (gradient, defaults);
//! - the adaptive limit with client-side throttling (defaults).
//!
//! For each, per phase: goodput (answers within the timeout per second),
//! p50 and p99 of the answers, timeouts, local refusals, and the requests
//! the backend received per second.
//!
//! Run: `cargo run --release --features reqwest,axum --example adaptive`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use steadfast::BoxError;
use steadfast::adaptive::{AdaptiveLayer, Throttle};
use steadfast::bulkhead::BulkheadLayer;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceExt};

const WORKERS: usize = 20;
const RATE: u32 = 600;
const PHASE: Duration = Duration::from_secs(3);
const PHASES: [u64; 3] = [50, 100, 50];
const TIMEOUT: Duration = Duration::from_secs(1);

struct Backend {
    workers: Semaphore,
    service_ms: AtomicU64,
    received: AtomicU64,
}

async fn work(State(backend): State<Arc<Backend>>) -> &'static str {
    backend.received.fetch_add(1, Ordering::Relaxed);
    let _worker = backend.workers.acquire().await.expect("open");
    let ms = backend.service_ms.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "done"
}

type Client = BoxCloneService<reqwest::Request, reqwest::Response, BoxError>;

#[derive(Default, Clone)]
struct Phase {
    latencies: Vec<Duration>,
    timeouts: u64,
    refused: u64,
    errors: u64,
    received: u64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let backend = Arc::new(Backend {
        workers: Semaphore::new(WORKERS),
        service_ms: AtomicU64::new(PHASES[0]),
        received: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/work", get(work))
        .with_state(Arc::clone(&backend));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url: reqwest::Url = format!("http://{}/work", listener.local_addr()?).parse()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(2_000)
        .build()?;
    let raw = || client.clone().map_err(BoxError::from);

    let unloaded = unloaded_p99(&backend, raw(), &url).await;
    println!(
        "unloaded p99: {:.1} ms at 50 ms, {:.1} ms at 100 ms",
        ms(unloaded[0]),
        ms(unloaded[1])
    );

    let configs: Vec<(&str, Client)> = vec![
        ("no limit", BoxCloneService::new(raw())),
        (
            "static 1,000",
            BoxCloneService::new(
                BulkheadLayer::builder()
                    .max_concurrent(1_000)
                    .build()?
                    .layer(raw()),
            ),
        ),
        (
            "static 20",
            BoxCloneService::new(
                BulkheadLayer::builder()
                    .max_concurrent(WORKERS)
                    .build()?
                    .layer(raw()),
            ),
        ),
        (
            "adaptive",
            BoxCloneService::new(AdaptiveLayer::builder().build()?.layer(raw())),
        ),
        (
            "adaptive+throttle",
            BoxCloneService::new(
                AdaptiveLayer::builder()
                    .throttle(Throttle::new())
                    .build()?
                    .layer(raw()),
            ),
        ),
    ];

    println!();
    println!(
        "| limit | phase | goodput/s | p50 ms | p99 ms | p99 / unloaded | timeouts | refused | backend req/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, service) in configs {
        let phases = run(&backend, service, &url).await;
        for (i, phase) in phases.iter().enumerate() {
            let mut latencies = phase.latencies.clone();
            latencies.sort();
            let p = |q: f64| {
                latencies
                    .get(
                        ((latencies.len() as f64 * q) as usize)
                            .min(latencies.len().saturating_sub(1)),
                    )
                    .map(|d| ms(*d))
            };
            let shown = |v: Option<f64>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.0}"));
            let unloaded = ms(unloaded[usize::from(PHASES[i] == 100)]);
            println!(
                "| {name} | {} ms | {:.0} | {} | {} | {} | {} | {} | {:.0} |",
                PHASES[i],
                latencies.len() as f64 / PHASE.as_secs_f64(),
                shown(p(0.5)),
                shown(p(0.99)),
                p(0.99).map_or_else(|| "—".to_owned(), |v| format!("{:.1}×", v / unloaded)),
                phase.timeouts,
                phase.refused,
                phase.received as f64 / PHASE.as_secs_f64(),
            );
            if phase.errors > 0 {
                println!("|   ({} other errors) |", phase.errors);
            }
        }
        drain(&backend).await;
    }
    Ok(())
}

/// The p99 of 10 calls at a time for 1 s (no queueing), at each service
/// time.
async fn unloaded_p99<S>(backend: &Backend, service: S, url: &reqwest::Url) -> [Duration; 2]
where
    S: tower::Service<reqwest::Request, Response = reqwest::Response, Error = BoxError>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let mut out = [Duration::ZERO; 2];
    for (slot, service_ms) in [50, 100].into_iter().enumerate() {
        backend.service_ms.store(service_ms, Ordering::Relaxed);
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let end = Instant::now() + Duration::from_secs(1);
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let service = service.clone();
                let url = url.clone();
                let latencies = Arc::clone(&latencies);
                tokio::spawn(async move {
                    while Instant::now() < end {
                        let start = Instant::now();
                        let request = reqwest::Request::new(reqwest::Method::GET, url.clone());
                        if service.clone().oneshot(request).await.is_ok() {
                            latencies.lock().await.push(start.elapsed());
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("ran");
        }
        let mut latencies = latencies.lock().await.clone();
        latencies.sort();
        out[slot] = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    }
    out
}

/// Three phases of open-loop load through `service`.
async fn run(backend: &Arc<Backend>, service: Client, url: &reqwest::Url) -> Vec<Phase> {
    let results = Arc::new(std::sync::Mutex::new(vec![Phase::default(); PHASES.len()]));
    let gap = Duration::from_secs(1) / RATE;
    let mut tasks = Vec::new();
    for (i, service_ms) in PHASES.into_iter().enumerate() {
        backend.service_ms.store(service_ms, Ordering::Relaxed);
        let received = backend.received.load(Ordering::Relaxed);
        let end = Instant::now() + PHASE;
        let mut next = Instant::now();
        while next < end {
            tokio::time::sleep_until(next).await;
            next += gap;
            let service = service.clone();
            let request = reqwest::Request::new(reqwest::Method::GET, url.clone());
            let results = Arc::clone(&results);
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                let outcome = tokio::time::timeout(TIMEOUT, service.oneshot(request)).await;
                let mut results = results.lock().expect("results");
                let phase = &mut results[i];
                match outcome {
                    Ok(Ok(_)) => phase.latencies.push(start.elapsed()),
                    Ok(Err(err)) if steadfast::error::rejection(&err).is_some() => {
                        phase.refused += 1;
                    }
                    Ok(Err(_)) => phase.errors += 1,
                    Err(_) => phase.timeouts += 1,
                }
            }));
        }
        let received = backend.received.load(Ordering::Relaxed) - received;
        results.lock().expect("results")[i].received = received;
    }
    for task in tasks {
        task.await.expect("ran");
    }
    Arc::try_unwrap(results)
        .map(|m| m.into_inner().expect("results"))
        .unwrap_or_default()
}

/// Waits (at most 10 s) until the backend's workers are all free and no
/// request has arrived for 500 ms, so that one configuration's backlog
/// does not weigh on the next.
async fn drain(backend: &Backend) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = backend.received.load(Ordering::Relaxed);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = backend.received.load(Ordering::Relaxed);
        if now == seen && backend.workers.available_permits() == WORKERS {
            return;
        }
        seen = now;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
