//! The backend: a few GET routes over a bounded set of ids, faults
//! injected by a `ChaosLayer` switched phase by phase, every request counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use steadfast::BoxError;
use steadfast::chaos::{ChaosHandle, ChaosLayer};
use tower::ServiceBuilder;

/// A phase of the timeline: its name, calls per worker, and the faults the
/// backend injects during it.
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) what: &'static str,
    pub(crate) calls_per_worker: usize,
    pub(crate) faults: fn(&ChaosHandle) -> Result<(), steadfast::ConfigError>,
}

pub(crate) const PHASES: [Phase; 5] = [
    Phase {
        name: "healthy",
        what: "no faults",
        calls_per_worker: 40,
        faults: |_| Ok(()),
    },
    Phase {
        name: "brownout",
        what: "10 % 503 + Retry-After: 1, 10 % slowed 200-500 ms",
        calls_per_worker: 60,
        faults: |h| {
            h.set_respond_rate(0.10)?;
            h.set_latency(0.10, ms(200), ms(500))
        },
    },
    Phase {
        name: "long tail",
        what: "5 % of calls take 1 s",
        calls_per_worker: 60,
        faults: |h| h.set_latency(0.05, ms(1_000), ms(1_000)),
    },
    Phase {
        name: "outage",
        what: "90 % 503 + Retry-After: 1, 10 % never answered",
        calls_per_worker: 40,
        faults: |h| {
            h.set_respond_rate(0.90)?;
            h.set_hang_rate(0.10)
        },
    },
    Phase {
        name: "recovery",
        what: "no faults",
        calls_per_worker: 60,
        faults: |_| Ok(()),
    },
];

pub(crate) const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One backend: its address, its fault switch, and how many requests
/// reached it.
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    pub(crate) chaos: ChaosHandle,
    pub(crate) requests: Arc<AtomicU64>,
}

pub(crate) async fn backend() -> Result<Backend, BoxError> {
    let chaos = ChaosLayer::builder()
        .respond(0.0, || {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "busy",
            )
                .into_response()
        })
        .seed(2026)
        .build()?;
    let handle = chaos.handle();
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    let answer = |kind: &'static str| {
        get(move |Path(id): Path<u32>| async move {
            format!(
                "{{\"kind\":\"{kind}\",\"id\":{id},\"value\":{}}}",
                u64::from(id) * 7 + 3
            )
        })
    };
    let app = Router::new()
        .route("/items/{id}", answer("item"))
        .route("/prices/{id}", answer("price"))
        .route("/stock/{id}", answer("stock"))
        .layer(
            ServiceBuilder::new()
                // Every request that reaches the backend is counted, faulted or not.
                .map_request(move |request: axum::extract::Request| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    request
                })
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    StatusCode::INTERNAL_SERVER_ERROR
                }))
                .layer(chaos),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Backend {
        addr,
        chaos: handle,
        requests,
    })
}
