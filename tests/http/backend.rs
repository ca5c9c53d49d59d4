//! A flaky axum backend, and a server that resets every connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// What the backend saw: per path, when each request arrived and the size
/// of its body.
#[derive(Clone, Default)]
pub(crate) struct Log(Arc<Mutex<HashMap<String, Vec<Arrival>>>>);

/// When a request arrived, and the size of its body.
type Arrival = (Instant, usize);

impl Log {
    fn record(&self, path: &str, body: usize) -> usize {
        let mut map = self.0.lock().unwrap();
        let hits = map.entry(path.to_owned()).or_default();
        hits.push((Instant::now(), body));
        hits.len()
    }

    pub(crate) fn hits(&self, path: &str) -> usize {
        self.0.lock().unwrap().get(path).map_or(0, Vec::len)
    }

    pub(crate) fn arrivals(&self, path: &str) -> Vec<Instant> {
        self.0
            .lock()
            .unwrap()
            .get(path)
            .map(|v| v.iter().map(|(at, _)| *at).collect())
            .unwrap_or_default()
    }

    pub(crate) fn bodies(&self, path: &str) -> Vec<usize> {
        self.0
            .lock()
            .unwrap()
            .get(path)
            .map(|v| v.iter().map(|(_, n)| *n).collect())
            .unwrap_or_default()
    }
}

/// Serves `router` on 127.0.0.1, on a port of its own.
pub(crate) async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// The flaky backend:
/// - `/busy/{n}/{id}`: 503 with `Retry-After: 1` for the first `n` calls of
///   `id`, then 200;
/// - `/fail/{id}`: always 500;
/// - `/gateway/{id}`: always 502;
/// - `/ok/{id}`: 200;
/// - `/slow/{id}`: answers after 30 s.
pub(crate) async fn flaky() -> (SocketAddr, Log) {
    let log = Log::default();
    let router = Router::new()
        .route(
            "/busy/{n}/{id}",
            any({
                let log = log.clone();
                move |Path((n, id)): Path<(usize, String)>, body: Bytes| async move {
                    let hits = log.record(&format!("/busy/{n}/{id}"), body.len());
                    if hits <= n {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "1")],
                            "busy",
                        )
                            .into_response()
                    } else {
                        (StatusCode::OK, format!("ok after {hits}")).into_response()
                    }
                }
            }),
        )
        .route(
            "/fail/{id}",
            any({
                let log = log.clone();
                move |Path(id): Path<String>| async move {
                    log.record(&format!("/fail/{id}"), 0);
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            }),
        )
        .route(
            "/gateway/{id}",
            any({
                let log = log.clone();
                move |Path(id): Path<String>| async move {
                    log.record(&format!("/gateway/{id}"), 0);
                    StatusCode::BAD_GATEWAY
                }
            }),
        )
        .route(
            "/ok/{id}",
            any({
                let log = log.clone();
                move |Path(id): Path<String>| async move {
                    log.record(&format!("/ok/{id}"), 0);
                    "ok"
                }
            }),
        )
        .route(
            "/slow/{id}",
            get({
                let log = log.clone();
                move |Path(id): Path<String>| async move {
                    log.record(&format!("/slow/{id}"), 0);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }
            }),
        );
    (serve(router).await, log)
}

/// A server that reads each request's head, counts it and closes the
/// connection without answering: the request reached the server.
pub(crate) async fn resetting() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            });
        }
    });
    (addr, hits)
}

/// A port held for the test that refuses every connection: bound but never
/// listening, so no other test's server can take it meanwhile (as it could
/// a port found free and given back).
pub(crate) struct ClosedPort(tokio::net::TcpSocket);

impl ClosedPort {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.0.local_addr().unwrap()
    }
}

/// A port that refuses connections for as long as the value lives.
pub(crate) fn closed_port() -> ClosedPort {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    ClosedPort(socket)
}

/// Asserts that consecutive arrivals are at least `at_least` apart.
pub(crate) fn assert_spaced(arrivals: &[Instant], at_least: Duration) {
    for pair in arrivals.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= at_least,
            "arrivals {gap:?} apart, expected at least {at_least:?}"
        );
    }
}
