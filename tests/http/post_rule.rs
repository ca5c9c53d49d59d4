//! What the standard HTTP client sends again, per method and outcome,
//! counted by the servers: a request that is not idempotent (a POST
//! without `Idempotency-Key`) is sent again only when it provably did not
//! reach the application.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::any;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use reqwest::{Client, Method, Request};
use steadfast::http::{BufferRequestBodyLayer, ReplayBody};
use steadfast::policy::Policy;
use tower::{ServiceBuilder, ServiceExt};

use crate::backend::{closed_port, resetting, serve};

/// Hits per path.
#[derive(Clone, Default)]
struct Hits(Arc<Mutex<HashMap<String, usize>>>);

impl Hits {
    fn get(&self, path: &str) -> usize {
        self.0.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// `/status/{code}/{case}`: counts the request, answers `code`.
async fn statuses() -> (SocketAddr, Hits) {
    let hits = Hits::default();
    let router = Router::new().route(
        "/status/{code}/{case}",
        any({
            let hits = hits.clone();
            move |Path((code, case)): Path<(u16, String)>| async move {
                *hits
                    .0
                    .lock()
                    .unwrap()
                    .entry(format!("/status/{code}/{case}"))
                    .or_default() += 1;
                StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    (serve(router).await, hits)
}

#[derive(Clone, Copy, Debug)]
enum Outcome {
    Status(u16),
    /// The server reads the request, then closes without an answer.
    Closed,
    /// Nothing listens: the connection is refused.
    Refused,
}

/// The six columns: method and whether the request has an
/// `Idempotency-Key`.
const COLUMNS: [(&str, bool); 6] = [
    ("GET", false),
    ("GET", true),
    ("PUT", false),
    ("PUT", true),
    ("POST", false),
    ("POST", true),
];

/// Times each request is sent, by the standard client's 4 attempts, as
/// documented in the table of `steadfast::http`.
const TABLE: [(Outcome, [usize; 6]); 6] = [
    (Outcome::Status(503), [4, 4, 4, 4, 1, 4]),
    (Outcome::Status(429), [4, 4, 4, 4, 4, 4]),
    (Outcome::Status(408), [4, 4, 4, 4, 4, 4]),
    (Outcome::Status(500), [1, 1, 1, 1, 1, 1]),
    (Outcome::Closed, [4, 4, 4, 4, 1, 4]),
    (Outcome::Refused, [4, 4, 4, 4, 4, 4]),
];

/// The standard client with a 3 s total: backoff from 200 ms, capped at
/// 800 ms, so that three retries fit.
fn policy() -> steadfast::policy::StandardHttpClient {
    Policy::standard_http_client()
        .total_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

fn request(method: &str, keyed: bool, url: String) -> Request {
    let mut request = Request::new(method.parse::<Method>().unwrap(), url.parse().unwrap());
    if keyed {
        request
            .headers_mut()
            .insert("idempotency-key", "\"order-7\"".parse().unwrap());
    }
    request
}

/// Sends one request through a fresh standard client (its own breaker and
/// budget) and returns how many times it left the client.
async fn send(method: &str, keyed: bool, url: String) -> usize {
    let attempts = Arc::new(AtomicUsize::new(0));
    let counting = {
        let attempts = attempts.clone();
        let client = Client::new();
        tower::service_fn(move |req: Request| {
            attempts.fetch_add(1, Ordering::SeqCst);
            client.execute(req)
        })
    };
    let client = ServiceBuilder::new().layer(policy()).service(counting);
    // The outcome is an answer or an error; only the count matters here.
    let _ = client.oneshot(request(method, keyed, url)).await;
    attempts.load(Ordering::SeqCst)
}

#[tokio::test]
async fn the_standard_reqwest_client_sends_again_only_what_is_safe() {
    let (status_addr, hits) = statuses().await;
    let (closed_addr, closed_hits) = resetting().await;
    let refused = closed_port();
    let refused_addr = refused.addr();

    // The statuses and the refused connection run at once; closed
    // connections share one counter, so they run one after the other.
    let mut cases = Vec::new();
    for (row, (outcome, _)) in TABLE.iter().enumerate() {
        for (col, &(method, keyed)) in COLUMNS.iter().enumerate() {
            let url = match outcome {
                Outcome::Status(code) => {
                    format!("http://{status_addr}/status/{code}/{method}-{keyed}")
                }
                Outcome::Refused => format!("http://{refused_addr}/orders"),
                Outcome::Closed => continue,
            };
            cases.push(async move { (row, col, send(method, keyed, url).await) });
        }
    }
    let mut seen = [[0usize; 6]; 6];
    for (row, col, attempts) in futures::future::join_all(cases).await {
        seen[row][col] = match TABLE[row].0 {
            Outcome::Status(code) => {
                let (method, keyed) = COLUMNS[col];
                let served = hits.get(&format!("/status/{code}/{method}-{keyed}"));
                assert_eq!(served, attempts, "{code} {method} keyed={keyed}");
                served
            }
            // Nothing to count on the server side: the client's attempts.
            _ => attempts,
        };
    }
    let closed_row = TABLE
        .iter()
        .position(|(o, _)| matches!(o, Outcome::Closed))
        .unwrap();
    for (col, &(method, keyed)) in COLUMNS.iter().enumerate() {
        let before = closed_hits.load(Ordering::SeqCst);
        send(method, keyed, format!("http://{closed_addr}/orders")).await;
        seen[closed_row][col] = closed_hits.load(Ordering::SeqCst) - before;
    }

    let expected: Vec<_> = TABLE.iter().map(|(o, row)| (*o, *row)).collect();
    let got: Vec<_> = TABLE.iter().map(|(o, _)| *o).zip(seen).collect();
    assert_eq!(format!("{got:?}"), format!("{expected:?}"));
}

#[tokio::test]
async fn the_standard_hyper_client_sends_again_only_what_is_safe() {
    let (addr, hits) = statuses().await;
    let hyper: HyperClient<_, ReplayBody<Full<Bytes>>> =
        HyperClient::builder(TokioExecutor::new()).build_http();
    let client = |hyper| {
        ServiceBuilder::new()
            .layer(BufferRequestBodyLayer::new(1024).unwrap())
            .layer(policy())
            .service(hyper)
    };
    let post = |code: u16, case: &str, keyed: bool| {
        let mut builder = http::Request::post(format!("http://{addr}/status/{code}/{case}"));
        if keyed {
            builder = builder.header("idempotency-key", "\"order-8\"");
        }
        builder.body(Full::new(Bytes::from_static(b"{}"))).unwrap()
    };
    for (code, keyed, sent) in [
        (503, false, 1),
        (503, true, 4),
        (429, false, 4),
        (500, true, 1),
    ] {
        let case = format!("hyper-{keyed}");
        let response = client(hyper.clone())
            .oneshot(post(code, &case, keyed))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), code);
        assert_eq!(
            hits.get(&format!("/status/{code}/{case}")),
            sent,
            "{code} keyed={keyed}"
        );
    }
}
