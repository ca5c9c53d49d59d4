//! The POST rule over HTTP/2 (h2c, prior knowledge), through reqwest: a
//! request that is not idempotent is sent again only when the server
//! provably did not process it, as a stream it refused with
//! `REFUSED_STREAM` (RFC 9113 §8.7); a 503 over HTTP/2 proves nothing, as
//! over HTTP/1.1.
//!
//! reqwest retries these protocol refusals on its own by default; the
//! clients here turn that off (`retry(never())`), so that every stream the
//! server sees was sent by the policy.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request as ServerRequest;
use axum::http::StatusCode;
use axum::routing::any;
use reqwest::{Client, Method, Request};
use steadfast::policy::Policy;
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};

use crate::backend::serve;

/// A reqwest client that speaks HTTP/2 only and retries nothing itself.
fn h2_client() -> Client {
    Client::builder()
        .http2_prior_knowledge()
        .retry(reqwest::retry::never())
        .no_proxy()
        .build()
        .unwrap()
}

/// The standard client with a 3 s total, as in the HTTP/1.1 table.
fn policy() -> steadfast::policy::StandardHttpClient {
    Policy::standard_http_client()
        .total_timeout(Duration::from_secs(3))
        .build()
        .unwrap()
}

fn request(method: Method, keyed: bool, url: String) -> Request {
    let mut request = Request::new(method, url.parse().unwrap());
    if keyed {
        request
            .headers_mut()
            .insert("idempotency-key", "\"order-9\"".parse().unwrap());
    }
    request
}

/// Sends one request through a fresh standard client over HTTP/2 and
/// answers the result.
async fn send(method: Method, keyed: bool, url: String) -> Result<reqwest::Response, String> {
    let client = ServiceBuilder::new().layer(policy()).service(h2_client());
    client
        .oneshot(request(method, keyed, url))
        .await
        .map_err(|err| err.to_string())
}

#[tokio::test]
async fn over_http2_a_post_answered_503_is_sent_once_and_a_get_four_times() {
    // An axum server answering 503, counting requests per path and the
    // HTTP versions it saw.
    let hits = Arc::new(Mutex::new(Vec::<(String, http::Version)>::new()));
    let router = Router::new().route(
        "/{*case}",
        any({
            let hits = Arc::clone(&hits);
            move |request: ServerRequest| async move {
                hits.lock()
                    .unwrap()
                    .push((request.uri().path().to_owned(), request.version()));
                StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    let addr = serve(router).await;
    let cases = [
        (Method::GET, false, "/get", 4),
        (Method::POST, false, "/post", 1),
        (Method::POST, true, "/post-keyed", 4),
        (Method::PUT, false, "/put", 4),
    ];
    let sends = cases.iter().map(|(method, keyed, path, _)| {
        send(method.clone(), *keyed, format!("http://{addr}{path}"))
    });
    for result in futures::future::join_all(sends).await {
        assert_eq!(result.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let hits = hits.lock().unwrap();
    assert!(
        hits.iter()
            .all(|(_, version)| *version == http::Version::HTTP_2)
    );
    for (method, keyed, path, sent) in cases {
        let served = hits.iter().filter(|(p, _)| p == path).count();
        assert_eq!(served, sent, "{method} keyed={keyed}");
    }
}

/// An HTTP/2 server on 127.0.0.1 that refuses the first `refuse` streams
/// it is sent with `REFUSED_STREAM` and answers the others 200; it counts
/// both.
async fn refusing_server(refuse: usize) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (refused, served) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counts = (Arc::clone(&refused), Arc::clone(&served));
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let (refused, served) = (Arc::clone(&counts.0), Arc::clone(&counts.1));
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(socket).await.unwrap();
                while let Some(Ok((_request, mut respond))) = conn.accept().await {
                    if refused.fetch_add(1, Ordering::SeqCst) < refuse {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                    } else {
                        refused.fetch_sub(1, Ordering::SeqCst);
                        served.fetch_add(1, Ordering::SeqCst);
                        let response = http::Response::new(());
                        let _ = respond.send_response(response, true);
                    }
                }
            });
        }
    });
    (addr, refused, served)
}

#[tokio::test]
async fn a_post_on_a_refused_stream_is_sent_again() {
    // Two refusals, then an answer: the POST is sent three times and
    // processed once.
    let (addr, refused, served) = refusing_server(2).await;
    let response = send(Method::POST, false, format!("http://{addr}/orders"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(refused.load(Ordering::SeqCst), 2);
    assert_eq!(served.load(Ordering::SeqCst), 1);

    // Refused on every attempt: four streams, none processed, and the
    // refusal is the call's error.
    let (addr, refused, served) = refusing_server(usize::MAX).await;
    let err = send(Method::POST, false, format!("http://{addr}/orders"))
        .await
        .unwrap_err();
    assert_eq!(refused.load(Ordering::SeqCst), 4, "{err}");
    assert_eq!(served.load(Ordering::SeqCst), 0);
}
