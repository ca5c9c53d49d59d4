//! A reqwest client (and a hyper-util one) under a cached fallback, over
//! `Policy::standard_http_client()`, against a real axum server on
//! 127.0.0.1: cached answers when the backend fails, callers kept apart by
//! their credentials, and a composed cache key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use bytes::Bytes;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use steadfast::BoxError;
use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource, HttpKey};
use steadfast::http::HttpClassifier;
use steadfast::policy::Policy;
use tower::{Layer, ServiceExt};

/// A backend that answers `"{uri}|{authorization}|{cookie}|{tenant}"`
/// while up and 503 while down; counts the requests it answered.
#[derive(Clone, Default)]
struct Backend {
    down: Arc<AtomicBool>,
    hits: Arc<AtomicU32>,
}

impl Backend {
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

async fn answer(
    State(backend): State<Backend>,
    uri: http::Uri,
    headers: HeaderMap,
) -> (StatusCode, String) {
    backend.hits.fetch_add(1, Ordering::SeqCst);
    if backend.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down".to_owned());
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let text = format!(
        "{uri}|{}|{}|{}",
        header("authorization"),
        header("cookie"),
        header("x-tenant")
    );
    (StatusCode::OK, text)
}

async fn serve(backend: Backend) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/{*path}", get(answer))
        .with_state(backend);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn offline() -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(b"offline"));
    *response.status_mut() = StatusCode::OK;
    response
}

const SOURCE: HeaderName = HeaderName::from_static("x-fallback");

/// The standard reqwest policy under a fallback to `cache`, then to a
/// static `offline` answer; no adapter: the fallback takes
/// `reqwest::Request` and gives `reqwest::Response`.
fn client(
    cache: FallbackCache<HttpKey>,
) -> impl tower::Service<reqwest::Request, Response = reqwest::Response, Error = BoxError, Future: Send>
+ Clone {
    let policy = Policy::standard_http_client()
        .total_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let fallback = FallbackLayer::builder()
        .cache(cache)
        .static_response(offline())
        .classifier(HttpClassifier::new())
        .reqwest()
        .source_header(SOURCE)
        .build()
        .unwrap();
    let reqwest = reqwest::Client::builder().no_proxy().build().unwrap();
    fallback.layer(policy.layer(reqwest))
}

/// `GET http://{addr}{target}` with `headers`.
fn to(addr: SocketAddr, target: &str, headers: &[(HeaderName, &str)]) -> reqwest::Request {
    let url = format!("http://{addr}{target}").parse().unwrap();
    let mut request = reqwest::Request::new(reqwest::Method::GET, url);
    for (name, value) in headers {
        request
            .headers_mut()
            .append(name.clone(), value.parse().unwrap());
    }
    request
}

/// What a call answered: the body, and the fallback source if any.
async fn call<S>(service: &S, request: reqwest::Request) -> (String, Option<FallbackSource>)
where
    S: tower::Service<reqwest::Request, Response = reqwest::Response, Error = BoxError> + Clone,
{
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let source = response.extensions().get::<FallbackSource>().copied();
    let header = response.headers().get(&SOURCE).cloned();
    assert_eq!(
        header.as_ref().and_then(|v| v.to_str().ok()),
        source.as_ref().map(FallbackSource::as_str),
        "the header names the same source as the extension"
    );
    (response.text().await.unwrap(), source)
}

fn is_cache(source: Option<FallbackSource>) -> bool {
    matches!(source, Some(FallbackSource::Cache { .. }))
}

#[tokio::test]
async fn reqwest_under_the_standard_policy_is_answered_from_the_cache_when_the_backend_fails() {
    let backend = Backend::default();
    let addr = serve(backend.clone()).await;
    let cache = FallbackCache::http().build().unwrap();
    let service = client(cache.clone());
    let alice = [(AUTHORIZATION, "Bearer alice")];

    let (live, source) = call(&service, to(addr, "/users/1", &alice)).await;
    assert_eq!(live, "/users/1|Bearer alice|-|-");
    assert_eq!(source, None);
    cache.run_pending_tasks();
    assert_eq!(
        cache.entry_count(),
        1,
        "the answer was recorded as it was read"
    );

    backend.set_down(true);
    let hits = backend.hits.load(Ordering::SeqCst);
    let response = service
        .clone()
        .oneshot(to(addr, "/users/1", &alice))
        .await
        .unwrap();
    assert!(
        backend.hits.load(Ordering::SeqCst) > hits,
        "the backend was tried"
    );
    assert!(is_cache(response.extensions().get().copied()));
    assert_eq!(response.headers()[&SOURCE], "cache");
    assert_eq!(
        response.url().as_str(),
        format!("http://{addr}/users/1"),
        "the rebuilt reqwest::Response keeps its URL"
    );
    assert_eq!(response.text().await.unwrap(), live);

    // Another path was never cached: the static answer.
    let (text, source) = call(&service, to(addr, "/users/2", &alice)).await;
    assert_eq!(
        (text.as_str(), source),
        ("offline", Some(FallbackSource::Static))
    );
}

#[tokio::test]
async fn callers_are_kept_apart_by_authorization_and_cookie() {
    let backend = Backend::default();
    let addr = serve(backend.clone()).await;
    let service = client(FallbackCache::http().build().unwrap());
    let alice = [(AUTHORIZATION, "Bearer alice"), (COOKIE, "session=a")];
    let (alice_live, _) = call(&service, to(addr, "/me", &alice)).await;
    let bob = [(AUTHORIZATION, "Bearer bob"), (COOKIE, "session=b")];
    let (bob_live, _) = call(&service, to(addr, "/me", &bob)).await;
    assert_ne!(alice_live, bob_live);

    backend.set_down(true);
    let (text, source) = call(&service, to(addr, "/me", &alice)).await;
    assert!(is_cache(source));
    assert_eq!(text, alice_live);
    let (text, source) = call(&service, to(addr, "/me", &bob)).await;
    assert!(is_cache(source));
    assert_eq!(text, bob_live);
    // Alice's token with another cookie, another cookie alone, nobody:
    // none was served an answer made for someone else.
    for other in [
        vec![(AUTHORIZATION, "Bearer alice"), (COOKIE, "session=b")],
        vec![(COOKIE, "session=a")],
        vec![(AUTHORIZATION, "Bearer alice")],
        vec![],
    ] {
        let (text, source) = call(&service, to(addr, "/me", &other)).await;
        assert_eq!(
            (text.as_str(), source),
            ("offline", Some(FallbackSource::Static)),
            "{other:?}"
        );
    }
}

#[tokio::test]
async fn a_composed_key_ignores_tracking_parameters_and_keeps_callers_apart() {
    let backend = Backend::default();
    let addr = serve(backend.clone()).await;
    let tenant = HeaderName::from_static("x-tenant");
    let key = HttpKey::new()
        .ignore_query_param("utm_source")
        .ignore_query_param("utm_medium")
        .header(tenant.clone());
    let service = client(FallbackCache::http_with(key).build().unwrap());
    let alice = [(AUTHORIZATION, "Bearer alice"), (tenant.clone(), "t1")];
    let (live, _) = call(&service, to(addr, "/items?id=7&utm_source=mail", &alice)).await;
    assert_eq!(live, "/items?id=7&utm_source=mail|Bearer alice|-|t1");

    backend.set_down(true);
    for target in [
        "/items?id=7&utm_source=ads&utm_medium=cpc",
        "/items?utm_medium=x&id=7",
        "/items?id=7",
    ] {
        let (text, source) = call(&service, to(addr, target, &alice)).await;
        assert!(is_cache(source), "{target}");
        assert_eq!(text, live, "{target}");
    }
    let misses: [(&str, Vec<(HeaderName, &str)>); 4] = [
        ("/items?id=8&utm_source=mail", alice.to_vec()),
        (
            "/items?id=7&utm_source=mail",
            vec![(AUTHORIZATION, "Bearer bob"), (tenant.clone(), "t1")],
        ),
        (
            "/items?id=7&utm_source=mail",
            vec![(AUTHORIZATION, "Bearer alice"), (tenant.clone(), "t2")],
        ),
        ("/items?id=7&utm_source=mail", vec![(tenant.clone(), "t1")]),
    ];
    for (target, headers) in misses {
        let (text, source) = call(&service, to(addr, target, &headers)).await;
        assert_eq!(
            (text.as_str(), source),
            ("offline", Some(FallbackSource::Static)),
            "{target} {headers:?}"
        );
    }
}

#[tokio::test]
async fn ignoring_the_query_and_dropping_an_identity_header_are_explicit() {
    let backend = Backend::default();
    let addr = serve(backend.clone()).await;
    let key = HttpKey::new()
        .ignore_query()
        .danger_ignore_identity_header(COOKIE);
    let service = client(FallbackCache::http_with(key).build().unwrap());
    let alice = [(AUTHORIZATION, "Bearer alice"), (COOKIE, "tracking=1")];
    let (live, _) = call(&service, to(addr, "/feed?page=1", &alice)).await;

    backend.set_down(true);
    let other_cookie = [(AUTHORIZATION, "Bearer alice"), (COOKIE, "tracking=2")];
    let (text, source) = call(&service, to(addr, "/feed?page=9", &other_cookie)).await;
    assert!(is_cache(source));
    assert_eq!(text, live);
    // Authorization was not dropped: another caller is not served it.
    let bob = [(AUTHORIZATION, "Bearer bob"), (COOKIE, "tracking=1")];
    let (text, source) = call(&service, to(addr, "/feed?page=1", &bob)).await;
    assert_eq!(
        (text.as_str(), source),
        ("offline", Some(FallbackSource::Static))
    );
}

#[tokio::test]
async fn a_body_larger_than_the_limit_passes_through_and_is_not_stored() {
    let backend = Backend::default();
    let addr = serve(backend.clone()).await;
    let cache = FallbackCache::http().max_body_bytes(8).build().unwrap();
    let service = client(cache.clone());
    let (live, source) = call(&service, to(addr, "/a/long/path/indeed", &[])).await;
    assert_eq!((live.as_str(), source), ("/a/long/path/indeed|-|-|-", None));
    cache.run_pending_tasks();
    assert_eq!(cache.entry_count(), 0);
    backend.set_down(true);
    let (text, source) = call(&service, to(addr, "/a/long/path/indeed", &[])).await;
    assert_eq!(
        (text.as_str(), source),
        ("offline", Some(FallbackSource::Static))
    );
}

#[tokio::test]
async fn hyper_util_under_a_checked_fallback_is_answered_from_the_cache() {
    use hyper::body::Incoming;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    type Request = http::Request<Full<Bytes>>;
    let backend = Backend::default();
    let addr = serve(backend.clone()).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let fallback = FallbackLayer::builder()
        .cache(FallbackCache::http().build().unwrap())
        .static_response(offline())
        .classifier(HttpClassifier::new())
        .http_for::<Request, Response<Incoming>>()
        .build()
        .unwrap();
    let service = fallback.layer(client);
    let get = |who: &str| {
        http::Request::get(format!("http://{addr}/hyper"))
            .header(AUTHORIZATION, who)
            .body(Full::default())
            .unwrap()
    };
    let read = |response: Response<_>| async move {
        let source = response.extensions().get::<FallbackSource>().copied();
        let body = BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (String::from_utf8(body.to_vec()).unwrap(), source)
    };
    let (live, source) = read(service.clone().oneshot(get("alice")).await.unwrap()).await;
    assert_eq!((live.as_str(), source), ("/hyper|alice|-|-", None));

    backend.set_down(true);
    let (text, source) = read(service.clone().oneshot(get("alice")).await.unwrap()).await;
    assert!(is_cache(source));
    assert_eq!(text, live);
    let (text, source) = read(service.clone().oneshot(get("bob")).await.unwrap()).await;
    assert_eq!(
        (text.as_str(), source),
        ("offline", Some(FallbackSource::Static))
    );
}

#[tokio::test]
async fn an_alternate_reqwest_service_answers_with_copies_made_by_http_replay() {
    use steadfast::http::HttpReplay;

    let (primary, other) = (Backend::default(), Backend::default());
    let (addr, other_addr) = (serve(primary.clone()).await, serve(other.clone()).await);
    let reqwest = reqwest::Client::builder().no_proxy().build().unwrap();
    // The other region: the same paths on another address.
    let other_region = tower::service_fn(move |mut request: reqwest::Request| {
        let reqwest = reqwest.clone();
        let port = other_addr.port();
        request.url_mut().set_port(Some(port)).unwrap();
        async move { reqwest.execute(request).await }
    });
    let policy = Policy::standard_http_client()
        .total_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let fallback = FallbackLayer::builder()
        .alternate(other_region)
        .replay(HttpReplay::new())
        .static_response(offline())
        .classifier(HttpClassifier::new())
        .reqwest()
        .source_header(SOURCE)
        .build()
        .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let service = fallback.layer(policy.layer(client));

    primary.set_down(true);
    let response = service
        .clone()
        .oneshot(to(addr, "/orders/3", &[(AUTHORIZATION, "Bearer alice")]))
        .await
        .unwrap();
    assert_eq!(
        response.extensions().get(),
        Some(&FallbackSource::Alternate)
    );
    assert_eq!(response.url().port(), Some(other_addr.port()));
    assert_eq!(response.text().await.unwrap(), "/orders/3|Bearer alice|-|-");
    assert_eq!(other.hits.load(Ordering::SeqCst), 1);

    other.set_down(true);
    let (text, source) = call(&service, to(addr, "/orders/3", &[])).await;
    assert_eq!(
        (text.as_str(), source),
        ("offline", Some(FallbackSource::Static))
    );
}
