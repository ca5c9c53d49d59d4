//! Over real axum backends on 127.0.0.1, through a reqwest client: the
//! primary fails and the alternate answers; the alternate fails too and the
//! cache answers; with the cache empty, the static answer; a backend that
//! never answers is answered from the cache at the latency budget.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use http_body_util::BodyExt;
use steadfast::BoxError;
use steadfast::classify::Verdict;
use steadfast::fallback::{FallbackBody, FallbackCache, FallbackLayer, FallbackSource};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A backend named `name` that answers `"{name}:{path}:{authorization}"`
/// while up, and 503 otherwise.
#[derive(Clone)]
struct Backend {
    name: &'static str,
    up: Arc<AtomicBool>,
}

async fn answer(
    State(backend): State<Backend>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    if !backend.up.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down".to_owned());
    }
    let who = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    (StatusCode::OK, format!("{}:{path}:{who}", backend.name))
}

/// Serves `backend` on a free port of 127.0.0.1.
async fn serve(backend: Backend) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/{*path}", get(answer))
        .with_state(backend);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A reqwest client for the server at `addr`, as a service of
/// `http::Request<()>` to `http::Response<reqwest::Body>`.
fn client(
    addr: SocketAddr,
) -> impl Service<Request<()>, Response = Response<reqwest::Body>, Error = BoxError, Future: Send> + Clone
{
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    service_fn(move |request: Request<()>| {
        let url = format!("http://{addr}{}", request.uri());
        let mut builder = client.request(request.method().clone(), url);
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        async move {
            let response = builder.send().await?;
            Ok::<_, BoxError>(Response::<reqwest::Body>::from(response))
        }
    })
}

fn by_status(outcome: Result<&Response<reqwest::Body>, &BoxError>) -> Verdict {
    match outcome {
        Ok(r) if r.status().is_server_error() => Verdict::transient(),
        Ok(r) if r.status().is_client_error() => Verdict::FunctionalError,
        Ok(_) => Verdict::Success,
        Err(_) => Verdict::transient(),
    }
}

fn request(path: &str, who: &str) -> Request<()> {
    Request::builder()
        .uri(path)
        .header(AUTHORIZATION, who)
        .body(())
        .unwrap()
}

/// The status, source header, source extension and body of a response.
async fn read(
    response: Response<FallbackBody<reqwest::Body>>,
) -> (StatusCode, Option<String>, Option<FallbackSource>, String) {
    let status = response.status();
    let header = response
        .headers()
        .get("x-fallback")
        .map(|v| v.to_str().unwrap().to_owned());
    let source = response.extensions().get::<FallbackSource>().copied();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        header,
        source,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn alternate_then_cache_then_static_over_real_servers() {
    let primary = Backend {
        name: "primary",
        up: Arc::new(AtomicBool::new(true)),
    };
    let alternate = Backend {
        name: "alternate",
        up: Arc::new(AtomicBool::new(true)),
    };
    let primary_addr = serve(primary.clone()).await;
    let alternate_addr = serve(alternate.clone()).await;

    let cache = FallbackCache::http()
        .capacity(100)
        .max_staleness(Duration::from_secs(300))
        .build()
        .unwrap();
    let layer = FallbackLayer::builder()
        .alternate(client(alternate_addr))
        .cache(cache.clone())
        .static_response(Response::new(Bytes::from_static(b"[]")))
        .classifier(by_status)
        .http()
        .source_header(HeaderName::from_static("x-fallback"))
        .build()
        .unwrap();
    let mut svc = layer.layer(client(primary_addr));
    let mut send = async |path: &str, who: &str| {
        read(
            svc.ready()
                .await
                .unwrap()
                .call(request(path, who))
                .await
                .unwrap(),
        )
        .await
    };

    // Everything up: the primary answers, and its answer is recorded.
    let real = send("/items/1", "Bearer alice").await;
    assert_eq!(
        real,
        (
            StatusCode::OK,
            None,
            None,
            "primary:items/1:Bearer alice".to_owned()
        )
    );
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 1);

    // The primary fails: the alternate answers.
    primary.up.store(false, Ordering::SeqCst);
    let (status, header, source, body) = send("/items/1", "Bearer alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header.as_deref(), Some("alternate"));
    assert_eq!(source, Some(FallbackSource::Alternate));
    assert_eq!(body, "alternate:items/1:Bearer alice");

    // The alternate fails too: the cache answers with the primary's answer.
    alternate.up.store(false, Ordering::SeqCst);
    let (status, header, source, body) = send("/items/1", "Bearer alice").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header.as_deref(), Some("cache"));
    assert!(matches!(source, Some(FallbackSource::Cache { .. })));
    assert_eq!(body, "primary:items/1:Bearer alice");

    // Nothing cached for this item, or for this caller: the static answer.
    for (path, who) in [("/items/2", "Bearer alice"), ("/items/1", "Bearer bob")] {
        let (status, header, source, body) = send(path, who).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header.as_deref(), Some("static"));
        assert_eq!(source, Some(FallbackSource::Static));
        assert_eq!(body, "[]");
    }

    // Back up: real answers again.
    primary.up.store(true, Ordering::SeqCst);
    let (_, header, source, body) = send("/items/2", "Bearer alice").await;
    assert_eq!((header, source), (None, None));
    assert_eq!(body, "primary:items/2:Bearer alice");
}

#[tokio::test]
async fn without_a_static_answer_the_original_503_comes_back() {
    let primary = Backend {
        name: "primary",
        up: Arc::new(AtomicBool::new(false)),
    };
    let alternate = Backend {
        name: "alternate",
        up: Arc::new(AtomicBool::new(false)),
    };
    let svc = FallbackLayer::builder()
        .alternate(client(serve(alternate).await))
        .cache(FallbackCache::http().build().unwrap())
        .classifier(by_status)
        .http()
        .source_header(HeaderName::from_static("x-fallback"))
        .build()
        .unwrap()
        .layer(client(serve(primary).await));
    let (status, header, source, body) = read(svc.oneshot(request("/x", "-")).await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!((header, source), (None, None));
    assert_eq!(body, "down");
}

/// Over a real socket, a backend that accepts the request and never
/// answers: the caller gets the cached answer at its latency budget, and
/// the slow call is dropped (the backend sees its connection close).
#[tokio::test(start_paused = true)]
async fn a_hanging_backend_is_answered_from_the_cache_at_the_budget() {
    #[derive(Clone, Default)]
    struct Hanging {
        hang: Arc<AtomicBool>,
        closed: Arc<tokio::sync::Notify>,
    }
    /// Notifies when dropped, that is when hyper drops the handler.
    struct Closed(Arc<tokio::sync::Notify>);
    impl Drop for Closed {
        fn drop(&mut self) {
            self.0.notify_one();
        }
    }
    async fn answer(State(backend): State<Hanging>) -> &'static str {
        if backend.hang.load(Ordering::SeqCst) {
            let _closed = Closed(backend.closed.clone());
            std::future::pending::<()>().await;
        }
        "fresh"
    }
    let backend = Hanging::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/{*path}", get(answer))
        .with_state(backend.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let budget = Duration::from_millis(100);
    let layer = FallbackLayer::builder()
        .cache(FallbackCache::http().build().unwrap())
        .serve_stale_after(budget)
        .classifier(by_status)
        .http()
        .source_header(HeaderName::from_static("x-fallback"))
        .build()
        .unwrap();
    let svc = layer.layer(client(addr));

    let fresh = read(svc.clone().oneshot(request("/a", "-")).await.unwrap()).await;
    assert_eq!((fresh.2, fresh.3.as_str()), (None, "fresh"));

    backend.hang.store(true, Ordering::SeqCst);
    let started = tokio::time::Instant::now();
    let stale = read(svc.clone().oneshot(request("/a", "-")).await.unwrap()).await;
    assert_eq!(started.elapsed(), budget, "on the paused clock");
    assert_eq!(stale.0, StatusCode::OK);
    assert_eq!(stale.1.as_deref(), Some("cache"));
    assert!(matches!(stale.2, Some(FallbackSource::Cache { .. })));
    assert_eq!(stale.3, "fresh");
    // The dropped call closed its connection, and the handler went with it.
    backend.closed.notified().await;
}
