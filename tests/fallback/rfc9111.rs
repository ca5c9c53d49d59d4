//! HTTP caching rules of the fallback cache, one by one, from RFC 9111
//! (shared cache), RFC 3986 and RFC 5861: cache an answer, take the
//! backend down, send a second request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AGE, CACHE_CONTROL, RANGE, SET_COOKIE, VARY};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use steadfast::BoxError;
use steadfast::classify::Verdict;
use steadfast::fallback::{FallbackBody, FallbackCache, FallbackLayer, FallbackSource, HttpKey};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt, service_fn};

type Body = Full<Bytes>;
type Answer = Response<FallbackBody<Body>>;

/// A backend answering `"{uri} {x-tenant}"` with the headers its script
/// gives for the request, or 503 when down.
#[derive(Clone)]
struct Backend {
    up: Arc<AtomicBool>,
}

impl Backend {
    fn new() -> Self {
        Self {
            up: Arc::new(AtomicBool::new(true)),
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
    }

    /// `script` gives the status and response headers for a request.
    fn service<F>(
        &self,
        script: F,
    ) -> impl Service<Request<()>, Response = Response<Body>, Error = BoxError> + Clone
    where
        F: Fn(&Request<()>) -> (StatusCode, Vec<(HeaderName, &'static str)>) + Clone,
    {
        let up = self.up.clone();
        service_fn(move |request: Request<()>| {
            let up = up.load(Ordering::SeqCst);
            let (status, headers) = script(&request);
            let tenant = request
                .headers()
                .get("x-tenant")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let mut response = Response::new(Body::from(format!("{} {tenant}", request.uri())));
            if up {
                *response.status_mut() = status;
                for (name, value) in headers {
                    response
                        .headers_mut()
                        .append(name, HeaderValue::from_static(value));
                }
            } else {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            }
            std::future::ready(Ok::<_, BoxError>(response))
        })
    }
}

fn by_status<B>(outcome: Result<&Response<B>, &BoxError>) -> Verdict {
    match outcome {
        Ok(r) if r.status().is_server_error() => Verdict::transient(),
        Ok(r) if r.status().is_client_error() => Verdict::FunctionalError,
        Ok(_) => Verdict::Success,
        Err(_) => Verdict::transient(),
    }
}

fn cached<S>(
    cache: FallbackCache<HttpKey>,
    backend: S,
) -> impl Service<Request<()>, Response = Answer, Error = BoxError>
where
    S: Service<Request<()>, Response = Response<Body>, Error = BoxError>,
{
    FallbackLayer::builder()
        .cache(cache)
        .classifier(by_status::<Body>)
        .http()
        .build()
        .unwrap()
        .layer(backend)
}

fn get(uri: &str) -> Request<()> {
    Request::builder().uri(uri).body(()).unwrap()
}

fn get_with(uri: &str, headers: &[(&'static str, &'static str)]) -> Request<()> {
    let mut request = get(uri);
    for (name, value) in headers {
        request.headers_mut().append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    request
}

/// Calls and reads the whole body.
async fn call<S>(svc: &mut S, request: Request<()>) -> (Answer, String)
where
    S: Service<Request<()>, Response = Answer, Error = BoxError>,
{
    let answer = svc.ready().await.unwrap().call(request).await.unwrap();
    let (parts, body) = answer.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    (
        Response::from_parts(parts, FallbackBody::from_bytes(Bytes::new())),
        text,
    )
}

/// Whether the answer came from the cache.
fn from_cache(answer: &Answer) -> bool {
    matches!(
        answer.extensions().get::<FallbackSource>(),
        Some(FallbackSource::Cache { .. })
    )
}

fn plain(_: &Request<()>) -> (StatusCode, Vec<(HeaderName, &'static str)>) {
    (StatusCode::OK, Vec::new())
}

#[tokio::test]
async fn userinfo_is_case_sensitive() {
    let backend = Backend::new();
    let mut svc = cached(
        FallbackCache::http().build().unwrap(),
        backend.service(plain),
    );
    call(&mut svc, get("http://alice:Secret@host/me")).await;
    backend.down();

    let (answer, text) = call(&mut svc, get("http://alice:Secret@host/me")).await;
    assert!(from_cache(&answer));
    assert_eq!(text, "http://alice:Secret@host/me -");
    for other in [
        "http://alice:secret@host/me",
        "http://Alice:Secret@host/me",
        "http://host/me",
        "http://@host/me",
    ] {
        let (answer, _) = call(&mut svc, get(other)).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "{other}");
    }
}

#[tokio::test]
async fn scheme_host_and_default_port_are_normalised_path_and_query_are_not() {
    let backend = Backend::new();
    let mut svc = cached(
        FallbackCache::http().build().unwrap(),
        backend.service(plain),
    );
    call(&mut svc, get("http://example.com/a/b?q=1")).await;
    call(&mut svc, get("https://example.com:443/x")).await;
    backend.down();

    for same in [
        "http://example.com/a/b?q=1",
        "HTTP://EXAMPLE.com/a/b?q=1",
        "http://Example.COM:80/a/b?q=1",
        "http://example.com:/a/b?q=1",
    ] {
        let (answer, text) = call(&mut svc, get(same)).await;
        assert!(from_cache(&answer), "{same}");
        assert_eq!(text, "http://example.com/a/b?q=1 -");
    }
    for same in ["https://example.com/x", "HTTPS://example.com:443/x"] {
        let (answer, _) = call(&mut svc, get(same)).await;
        assert!(from_cache(&answer), "{same}");
    }
    for other in [
        "http://example.com/A/b?q=1",
        "http://example.com/a/b?Q=1",
        "http://example.com/a/b?q=1&",
        "http://example.com/a/b",
        "http://example.com/a/b?",
        "http://example.com/a/%62?q=1",
        "http://example.com:8080/a/b?q=1",
        "https://example.com/a/b?q=1",
        "https://example.com:80/x",
        "http://example.com/x",
        "http://example.org/a/b?q=1",
    ] {
        let (answer, _) = call(&mut svc, get(other)).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "{other}");
    }
}

#[tokio::test]
async fn the_host_header_ignores_case_credentials_do_not() {
    let backend = Backend::new();
    let mut svc = cached(
        FallbackCache::http().build().unwrap(),
        backend.service(plain),
    );
    call(
        &mut svc,
        get_with(
            "/me",
            &[("host", "api.example"), ("authorization", "Bearer Tok")],
        ),
    )
    .await;
    backend.down();

    let (answer, _) = call(
        &mut svc,
        get_with(
            "/me",
            &[("host", "API.Example"), ("authorization", "Bearer Tok")],
        ),
    )
    .await;
    assert!(from_cache(&answer));
    let (answer, _) = call(
        &mut svc,
        get_with(
            "/me",
            &[("host", "api.example"), ("authorization", "Bearer tok")],
        ),
    )
    .await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_response_that_sets_a_cookie_is_not_stored_unless_asked() {
    fn cookie(_: &Request<()>) -> (StatusCode, Vec<(HeaderName, &'static str)>) {
        (
            StatusCode::OK,
            vec![(SET_COOKIE, "session=alice; HttpOnly")],
        )
    }
    let backend = Backend::new();
    let mut svc = cached(
        FallbackCache::http().build().unwrap(),
        backend.service(cookie),
    );
    let (first, _) = call(&mut svc, get("/login")).await;
    assert_eq!(first.headers()[SET_COOKIE], "session=alice; HttpOnly");
    backend.down();
    let (answer, _) = call(&mut svc, get("/login")).await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);

    let backend = Backend::new();
    let cache = FallbackCache::http()
        .store_set_cookie(true)
        .build()
        .unwrap();
    let mut svc = cached(cache, backend.service(cookie));
    call(&mut svc, get("/login")).await;
    backend.down();
    let (answer, _) = call(&mut svc, get("/login")).await;
    assert!(from_cache(&answer));
    assert_eq!(answer.headers()[SET_COOKIE], "session=alice; HttpOnly");
}

#[tokio::test]
async fn vary_keys_each_answer_on_the_request_headers_it_names() {
    fn varies(_: &Request<()>) -> (StatusCode, Vec<(HeaderName, &'static str)>) {
        (
            StatusCode::OK,
            vec![(VARY, "X-Tenant"), (VARY, "accept-language, X-TENANT")],
        )
    }
    let backend = Backend::new();
    let mut svc = cached(
        FallbackCache::http().build().unwrap(),
        backend.service(varies),
    );
    call(&mut svc, get_with("/report", &[("x-tenant", "a")])).await;
    call(
        &mut svc,
        get_with("/report", &[("x-tenant", "b"), ("accept-language", "fr")]),
    )
    .await;
    call(&mut svc, get("/report")).await;
    backend.down();

    // Each variant is served to the requests that select it, and only to them.
    let (answer, text) = call(&mut svc, get_with("/report", &[("x-tenant", "a")])).await;
    assert!(from_cache(&answer));
    assert_eq!(text, "/report a");
    let (answer, text) = call(
        &mut svc,
        get_with("/report", &[("accept-language", "fr"), ("x-tenant", "b")]),
    )
    .await;
    assert!(from_cache(&answer));
    assert_eq!(text, "/report b");
    let (answer, text) = call(&mut svc, get_with("/report", &[("user-agent", "curl")])).await;
    assert!(from_cache(&answer), "headers it doesn't name don't matter");
    assert_eq!(text, "/report -");
    for other in [
        get_with("/report", &[("x-tenant", "b")]),
        get_with("/report", &[("x-tenant", "c")]),
        get_with("/report", &[("x-tenant", "A")]),
        get_with("/report", &[("x-tenant", "a"), ("accept-language", "fr")]),
        get_with("/report", &[("x-tenant", "a"), ("x-tenant", "a")]),
    ] {
        let (answer, _) = call(&mut svc, other).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
}

#[tokio::test]
async fn vary_star_is_never_served() {
    fn star(_: &Request<()>) -> (StatusCode, Vec<(HeaderName, &'static str)>) {
        (StatusCode::OK, vec![(VARY, "accept, *")])
    }
    let backend = Backend::new();
    let mut svc = cached(
        FallbackCache::http().build().unwrap(),
        backend.service(star),
    );
    call(&mut svc, get("/any")).await;
    backend.down();
    let (answer, _) = call(&mut svc, get("/any")).await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn partial_and_not_modified_answers_are_not_stored() {
    fn partial(request: &Request<()>) -> (StatusCode, Vec<(HeaderName, &'static str)>) {
        match request.headers().get(RANGE) {
            Some(_) => (
                StatusCode::PARTIAL_CONTENT,
                vec![(http::header::CONTENT_RANGE, "bytes 0-9/100")],
            ),
            None if request.headers().contains_key("if-none-match") => {
                (StatusCode::NOT_MODIFIED, Vec::new())
            }
            None => (StatusCode::OK, Vec::new()),
        }
    }
    let backend = Backend::new();
    let mut svc = cached(
        FallbackCache::http().build().unwrap(),
        backend.service(partial),
    );
    let (first, _) = call(&mut svc, get_with("/file", &[("range", "bytes=0-9")])).await;
    assert_eq!(first.status(), StatusCode::PARTIAL_CONTENT);
    let (first, _) = call(&mut svc, get_with("/etag", &[("if-none-match", "\"v1\"")])).await;
    assert_eq!(first.status(), StatusCode::NOT_MODIFIED);
    backend.down();

    for uri in ["/file", "/etag"] {
        let (answer, _) = call(&mut svc, get(uri)).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
    }
}

#[tokio::test]
async fn a_request_marked_no_store_is_neither_stored_nor_served() {
    let backend = Backend::new();
    let mut svc = cached(
        FallbackCache::http().build().unwrap(),
        backend.service(plain),
    );
    call(
        &mut svc,
        get_with("/secret", &[("cache-control", "No-Store")]),
    )
    .await;
    call(&mut svc, get("/shared")).await;
    backend.down();

    let (answer, _) = call(&mut svc, get("/secret")).await;
    assert_eq!(
        answer.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not stored"
    );
    let (answer, _) = call(
        &mut svc,
        get_with("/shared", &[("cache-control", "max-age=0, no-store")]),
    )
    .await;
    assert_eq!(
        answer.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "not served"
    );
    let (answer, _) = call(&mut svc, get("/shared")).await;
    assert!(from_cache(&answer));
}

#[tokio::test]
async fn no_cache_and_quoted_directives_are_read_as_rfc_9111_says() {
    fn directives(request: &Request<()>) -> (StatusCode, Vec<(HeaderName, &'static str)>) {
        let value = match request.uri().path() {
            "/no-cache" => "no-cache",
            "/quoted-comma" => r#"community="a, no-store", max-age=60"#,
            "/unquoted" => "max-age=60, community=x",
            _ => "max-age=60",
        };
        (StatusCode::OK, vec![(CACHE_CONTROL, value)])
    }
    let backend = Backend::new();
    let mut svc = cached(
        FallbackCache::http().build().unwrap(),
        backend.service(directives),
    );
    for uri in ["/no-cache", "/quoted-comma", "/unquoted"] {
        call(&mut svc, get(uri)).await;
    }
    backend.down();
    let (answer, _) = call(&mut svc, get("/no-cache")).await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    for uri in ["/quoted-comma", "/unquoted"] {
        let (answer, _) = call(&mut svc, get(uri)).await;
        assert!(from_cache(&answer), "{uri}");
    }
}

fn with_cache_control(request: &Request<()>) -> (StatusCode, Vec<(HeaderName, &'static str)>) {
    let headers = match request.uri().path() {
        "/sie" => vec![(CACHE_CONTROL, "max-age=10, stale-if-error=20")],
        "/sie-aged" => vec![(CACHE_CONTROL, "max-age=10, stale-if-error=20"), (AGE, "5")],
        "/revalidate" => vec![(
            CACHE_CONTROL,
            "max-age=10, must-revalidate, stale-if-error=60",
        )],
        "/s-maxage" => vec![(CACHE_CONTROL, "s-maxage=10, max-age=100")],
        "/s-maxage-sie" => vec![(CACHE_CONTROL, "s-maxage=10, stale-if-error=5")],
        "/expires" => vec![
            (http::header::DATE, "Tue, 01 Dec 2026 10:00:00 GMT"),
            (http::header::EXPIRES, "Tue, 01 Dec 2026 10:00:07 GMT"),
            (CACHE_CONTROL, "stale-if-error=3"),
        ],
        "/aged" => vec![(AGE, "40")],
        _ => Vec::new(),
    };
    (StatusCode::OK, headers)
}

/// The longest each path's answer is served after it was recorded: with
/// `stale-if-error`, its freshness plus N less its `Age`; revalidation
/// directives, only while fresh; with neither, the cache's limit.
#[tokio::test(start_paused = true)]
async fn stale_if_error_bounds_staleness_and_revalidation_forbids_it() {
    let paths = [
        ("/sie", 30),
        ("/sie-aged", 25),
        ("/revalidate", 10),
        ("/s-maxage", 10),
        ("/s-maxage-sie", 15),
        ("/expires", 10),
        ("/plain", 100),
    ];
    for (path, limit) in paths {
        let backend = Backend::new();
        let cache = FallbackCache::http()
            .max_staleness(Duration::from_secs(100))
            .build()
            .unwrap();
        let mut svc = cached(cache, backend.service(with_cache_control));
        call(&mut svc, get(path)).await;
        backend.down();
        advance(Duration::from_secs(limit)).await;
        let (answer, _) = call(&mut svc, get(path)).await;
        assert!(from_cache(&answer), "{path} at {limit} s");
        advance(Duration::from_millis(1)).await;
        let (answer, _) = call(&mut svc, get(path)).await;
        assert_eq!(
            answer.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{path} past {limit} s"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_if_error_longer_than_the_cache_allows_is_capped() {
    fn long(_: &Request<()>) -> (StatusCode, Vec<(HeaderName, &'static str)>) {
        (
            StatusCode::OK,
            vec![(
                CACHE_CONTROL,
                "max-age=60, stale-if-error=99999999999999999999",
            )],
        )
    }
    let backend = Backend::new();
    let cache = FallbackCache::http()
        .max_staleness(Duration::from_secs(90))
        .build()
        .unwrap();
    let mut svc = cached(cache, backend.service(long));
    call(&mut svc, get("/")).await;
    backend.down();
    advance(Duration::from_secs(90)).await;
    assert!(from_cache(&call(&mut svc, get("/")).await.0));
    advance(Duration::from_millis(1)).await;
    assert_eq!(
        call(&mut svc, get("/")).await.0.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test(start_paused = true)]
async fn a_served_answer_reports_its_age() {
    let backend = Backend::new();
    let mut svc = cached(
        FallbackCache::http().build().unwrap(),
        backend.service(with_cache_control),
    );
    let (first, _) = call(&mut svc, get("/aged")).await;
    assert_eq!(
        first.headers()[AGE],
        "40",
        "the origin's answer passes untouched"
    );
    call(&mut svc, get("/plain")).await;
    backend.down();
    advance(Duration::from_millis(12_700)).await;

    let (answer, _) = call(&mut svc, get("/aged")).await;
    assert_eq!(answer.headers().get_all(AGE).iter().count(), 1);
    assert_eq!(answer.headers()[AGE], "52");
    let (answer, _) = call(&mut svc, get("/plain")).await;
    assert_eq!(answer.headers()[AGE], "12");
    assert_eq!(
        answer.extensions().get(),
        Some(&FallbackSource::Cache {
            age: Duration::from_millis(12_700)
        })
    );
}

#[tokio::test]
async fn connection_headers_are_not_stored() {
    fn hop(_: &Request<()>) -> (StatusCode, Vec<(HeaderName, &'static str)>) {
        (
            StatusCode::OK,
            vec![
                (http::header::CONNECTION, "x-hop, keep-alive"),
                (HeaderName::from_static("x-hop"), "1"),
                (HeaderName::from_static("keep-alive"), "timeout=5"),
                (HeaderName::from_static("x-kept"), "1"),
            ],
        )
    }
    let backend = Backend::new();
    let mut svc = cached(FallbackCache::http().build().unwrap(), backend.service(hop));
    call(&mut svc, get("/")).await;
    backend.down();
    let (answer, _) = call(&mut svc, get("/")).await;
    assert!(from_cache(&answer));
    assert_eq!(answer.headers()["x-kept"], "1");
    for gone in ["connection", "x-hop", "keep-alive"] {
        assert!(answer.headers().get(gone).is_none(), "{gone}");
    }
}

/// Over a real axum backend on 127.0.0.1 through reqwest: `Vary` keeps
/// tenants apart, a cookie-setting answer is not replayed, and a served
/// answer reports the origin's `Age`.
#[tokio::test]
async fn vary_set_cookie_and_age_over_a_real_server() {
    use axum::extract::State;
    use axum::routing::get as route;

    async fn answer(
        State(up): State<Arc<AtomicBool>>,
        uri: http::Uri,
        headers: http::HeaderMap,
    ) -> Response<String> {
        let tenant = headers
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let mut response = Response::new(format!("{} {tenant}", uri.path()));
        if !up.load(Ordering::SeqCst) {
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            return response;
        }
        let headers = response.headers_mut();
        headers.insert(VARY, HeaderValue::from_static("x-tenant"));
        headers.insert(AGE, HeaderValue::from_static("3"));
        if uri.path() == "/cookie" {
            headers.insert(SET_COOKIE, HeaderValue::from_static("id=1"));
        }
        response
    }

    let up = Arc::new(AtomicBool::new(true));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/{*path}", route(answer))
        .with_state(up.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let http_client = service_fn(move |request: Request<()>| {
        let mut builder = client.get(format!("http://{addr}{}", request.uri()));
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        async move {
            let response = builder.send().await?;
            Ok::<_, BoxError>(Response::<reqwest::Body>::from(response))
        }
    });
    let mut svc = FallbackLayer::builder()
        .cache(FallbackCache::http().build().unwrap())
        .classifier(by_status::<reqwest::Body>)
        .http()
        .build()
        .unwrap()
        .layer(http_client);
    let mut call = async |request: Request<()>| {
        let answer = svc.ready().await.unwrap().call(request).await.unwrap();
        let status = answer.status();
        let age = answer.headers().get(AGE).cloned();
        let cached = answer.extensions().get::<FallbackSource>().is_some();
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            cached,
            age,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    };

    for request in [
        get_with("/report", &[("x-tenant", "a")]),
        get_with("/report", &[("x-tenant", "b")]),
        get("/cookie"),
    ] {
        let (status, cached, _, _) = call(request).await;
        assert_eq!((status, cached), (StatusCode::OK, false));
    }
    up.store(false, Ordering::SeqCst);

    let (status, cached, age, body) = call(get_with("/report", &[("x-tenant", "a")])).await;
    assert_eq!(
        (status, cached, body.as_str()),
        (StatusCode::OK, true, "/report a")
    );
    let age: u64 = age.unwrap().to_str().unwrap().parse().unwrap();
    assert!(age >= 3, "the origin's Age counts: {age}");
    let (_, cached, _, body) = call(get_with("/report", &[("x-tenant", "b")])).await;
    assert_eq!((cached, body.as_str()), (true, "/report b"));
    for request in [
        get_with("/report", &[("x-tenant", "c")]),
        get("/report"),
        get("/cookie"),
    ] {
        let (status, cached, _, _) = call(request).await;
        assert_eq!((status, cached), (StatusCode::SERVICE_UNAVAILABLE, false));
    }
    server.abort();
}
