//! HTTP: callers never share cached answers, `no-store` and `private`,
//! the body cap, marks in extensions and headers.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, HOST};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use steadfast::BoxError;
use steadfast::classify::Verdict;
use steadfast::fallback::{FallbackBody, FallbackCache, FallbackLayer, FallbackSource, HttpKey};
use tower::{Layer, Service, ServiceExt, service_fn};

type Body = Full<Bytes>;

/// A backend that echoes who asked for what, or answers 503 when down;
/// `cache-control` in the path sets that header.
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

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    fn service(
        &self,
    ) -> impl Service<Request<()>, Response = Response<Body>, Error = BoxError, Future: Send> + Clone
    {
        let up = self.up.clone();
        service_fn(move |request: Request<()>| {
            let up = up.load(Ordering::SeqCst);
            async move {
                if !up {
                    let mut down = Response::new(Body::from("down"));
                    *down.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    return Ok(down);
                }
                let who = |name: HeaderName| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                let text = format!(
                    "{} {} for {} {}",
                    request.method(),
                    request.uri().path(),
                    who(AUTHORIZATION),
                    who(COOKIE)
                );
                let mut response = Response::new(Body::from(text));
                let directive = match request.uri().path() {
                    "/cc/private-field" => Some(r#"max-age=60, private="set-cookie""#),
                    "/cc/shouting" => Some("Max-Age=60, No-Store"),
                    path => path.strip_prefix("/cc/"),
                };
                if let Some(directive) = directive {
                    response
                        .headers_mut()
                        .insert(CACHE_CONTROL, HeaderValue::from_str(directive).unwrap());
                }
                Ok(response)
            }
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

fn get(path: &str) -> Request<()> {
    Request::builder().uri(path).body(()).unwrap()
}

fn get_as(path: &str, header: HeaderName, value: &str) -> Request<()> {
    Request::builder()
        .uri(path)
        .header(header, value)
        .body(())
        .unwrap()
}

async fn text<B>(response: Response<FallbackBody<B>>) -> String
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn cached(
    cache: FallbackCache<HttpKey>,
    backend: &Backend,
) -> impl Service<Request<()>, Response = Response<FallbackBody<Body>>, Error = BoxError> + Clone {
    FallbackLayer::builder()
        .cache(cache)
        .classifier(by_status::<Body>)
        .http()
        .source_header(HeaderName::from_static("x-fallback"))
        .build()
        .unwrap()
        .layer(backend.service())
}

async fn call<S>(svc: &mut S, request: Request<()>) -> Response<FallbackBody<Body>>
where
    S: Service<Request<()>, Response = Response<FallbackBody<Body>>, Error = BoxError>,
{
    svc.ready().await.unwrap().call(request).await.unwrap()
}

#[tokio::test]
async fn callers_with_different_credentials_never_see_each_others_answers() {
    let backend = Backend::new();
    let mut svc = cached(FallbackCache::http().build().unwrap(), &backend);

    for who in ["Bearer alice", "Bearer bob"] {
        let answer = call(&mut svc, get_as("/me", AUTHORIZATION, who)).await;
        assert!(answer.extensions().get::<FallbackSource>().is_none());
        assert!(answer.headers().get("x-fallback").is_none());
        text(answer).await;
    }
    let answer = call(&mut svc, get_as("/me", COOKIE, "session=carol")).await;
    text(answer).await;

    backend.set_up(false);
    let alice = call(&mut svc, get_as("/me", AUTHORIZATION, "Bearer alice")).await;
    assert_eq!(alice.headers()["x-fallback"], "cache");
    assert_eq!(text(alice).await, "GET /me for Bearer alice -");
    let bob = call(&mut svc, get_as("/me", AUTHORIZATION, "Bearer bob")).await;
    assert_eq!(text(bob).await, "GET /me for Bearer bob -");
    let carol = call(&mut svc, get_as("/me", COOKIE, "session=carol")).await;
    assert_eq!(text(carol).await, "GET /me for - session=carol");

    // A caller with other credentials, or none, gets no one's answer.
    for request in [
        get_as("/me", AUTHORIZATION, "Bearer mallory"),
        get_as("/me", COOKIE, "session=mallory"),
        get("/me"),
    ] {
        let answer = call(&mut svc, request).await;
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(answer.headers().get("x-fallback").is_none());
    }
}

#[tokio::test]
async fn no_store_and_private_answers_are_not_stored_unless_asked() {
    let backend = Backend::new();
    let paths = [
        "/cc/no-store",
        "/cc/private",
        "/cc/private-field",
        "/cc/shouting",
    ];

    let mut svc = cached(FallbackCache::http().build().unwrap(), &backend);
    for path in paths {
        text(call(&mut svc, get(path)).await).await;
    }
    backend.set_up(false);
    for path in paths {
        assert_eq!(
            call(&mut svc, get(path)).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    backend.set_up(true);
    let cache = FallbackCache::http()
        .store_private(true)
        .store_no_store(true)
        .build()
        .unwrap();
    let mut svc = cached(cache, &backend);
    for path in paths {
        text(call(&mut svc, get(path)).await).await;
    }
    backend.set_up(false);
    for path in paths {
        let answer = call(&mut svc, get(path)).await;
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
        assert_eq!(answer.headers()["x-fallback"], "cache");
    }
}

#[tokio::test]
async fn only_get_and_head_answers_are_cached() {
    let backend = Backend::new();
    let mut svc = cached(FallbackCache::http().build().unwrap(), &backend);
    let post = || {
        Request::builder()
            .method(Method::POST)
            .uri("/orders")
            .body(())
            .unwrap()
    };
    text(call(&mut svc, post()).await).await;
    text(call(&mut svc, get("/orders")).await).await;
    backend.set_up(false);
    assert_eq!(
        call(&mut svc, post()).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(&mut svc, get("/orders")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_host_and_named_headers_are_part_of_the_key() {
    let backend = Backend::new();
    let cache = FallbackCache::http()
        .vary_on(HeaderName::from_static("accept-language"))
        .build()
        .unwrap();
    let mut svc = cached(cache, &backend);
    text(call(&mut svc, get_as("/", HOST, "a.example")).await).await;
    text(
        call(
            &mut svc,
            get_as("/", HeaderName::from_static("accept-language"), "fr"),
        )
        .await,
    )
    .await;
    backend.set_up(false);
    assert_eq!(
        call(&mut svc, get_as("/", HOST, "a.example"))
            .await
            .status(),
        StatusCode::OK
    );
    for request in [
        get_as("/", HOST, "b.example"),
        get_as("/", HeaderName::from_static("accept-language"), "de"),
    ] {
        assert_eq!(
            call(&mut svc, request).await.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}

type Stream =
    StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A backend streaming `chunks` of `size` bytes each, with no size hint;
/// down after the first call.
fn streaming(
    chunks: usize,
    size: usize,
) -> impl Service<Request<()>, Response = Response<Stream>, Error = BoxError> + Clone {
    let up = Arc::new(AtomicBool::new(true));
    service_fn(move |_: Request<()>| {
        let was_up = up.swap(false, Ordering::SeqCst);
        let frames: Vec<_> = (0..chunks)
            .map(|i| Ok(Frame::data(Bytes::from(vec![b'a' + i as u8; size]))))
            .collect();
        let mut response = Response::new(StreamBody::new(futures::stream::iter(frames)));
        if !was_up {
            *response.status_mut() = StatusCode::BAD_GATEWAY;
        }
        std::future::ready(Ok(response))
    })
}

#[tokio::test]
async fn a_body_over_the_cap_passes_through_untouched_and_is_not_cached() {
    for (chunks, size, stored) in [(3, 10, true), (3, 11, false), (1, 31, false)] {
        let cache = FallbackCache::http().max_body_bytes(30).build().unwrap();
        let mut svc = FallbackLayer::builder()
            .cache(cache)
            .classifier(by_status::<Stream>)
            .http()
            .build()
            .unwrap()
            .layer(streaming(chunks, size));
        let first = svc.ready().await.unwrap().call(get("/big")).await.unwrap();
        let body = first.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), chunks * size, "passed through whole");
        assert_eq!(&body[..size], vec![b'a'; size].as_slice());

        let second = svc.ready().await.unwrap().call(get("/big")).await.unwrap();
        if stored {
            assert_eq!(second.status(), StatusCode::OK);
            assert!(second.body().is_stored());
            let again = second.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(again, body);
        } else {
            assert_eq!(second.status(), StatusCode::BAD_GATEWAY, "{chunks}×{size}");
        }
    }
}

#[tokio::test]
async fn a_body_with_a_size_hint_over_the_cap_is_not_recorded() {
    let backend = Backend::new();
    let cache = FallbackCache::http().max_body_bytes(4).build().unwrap();
    let mut svc = cached(cache, &backend);
    let answer = call(&mut svc, get("/long-enough")).await;
    assert_eq!(text(answer).await, "GET /long-enough for - -");
    backend.set_up(false);
    assert_eq!(
        call(&mut svc, get("/long-enough")).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_body_dropped_before_its_end_is_not_cached() {
    let mut svc = FallbackLayer::builder()
        .cache(FallbackCache::http().build().unwrap())
        .classifier(by_status::<Stream>)
        .http()
        .build()
        .unwrap()
        .layer(streaming(3, 4));
    let first = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    let mut body = first.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap().len(), 4);
    drop(body);
    let second = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(second.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn an_empty_body_is_stored_at_once() {
    let up = Arc::new(AtomicBool::new(true));
    let primary = service_fn({
        let up = up.clone();
        move |_: Request<()>| {
            let mut response = Response::new(Body::new(Bytes::new()));
            if !up.load(Ordering::SeqCst) {
                *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            } else {
                *response.status_mut() = StatusCode::NO_CONTENT;
            }
            std::future::ready(Ok::<_, BoxError>(response))
        }
    });
    let mut svc = FallbackLayer::builder()
        .cache(FallbackCache::http().build().unwrap())
        .classifier(by_status::<Body>)
        .http()
        .build()
        .unwrap()
        .layer(primary);
    // The body is never read.
    let _ = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    up.store(false, Ordering::SeqCst);
    let answer = svc.ready().await.unwrap().call(get("/")).await.unwrap();
    assert_eq!(answer.status(), StatusCode::NO_CONTENT);
    assert!(matches!(
        answer.extensions().get::<FallbackSource>(),
        Some(FallbackSource::Cache { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn every_source_marks_its_answer() {
    let backend = Backend::new();
    let alternate_up = Arc::new(AtomicBool::new(true));
    let alternate = service_fn({
        let up = alternate_up.clone();
        move |_: Request<()>| {
            let mut response = Response::new(Body::from("alternate"));
            if !up.load(Ordering::SeqCst) {
                *response.status_mut() = StatusCode::BAD_GATEWAY;
            }
            std::future::ready(Ok::<_, BoxError>(response))
        }
    });
    let mut fixed = Response::new(Bytes::from_static(b"static"));
    fixed
        .headers_mut()
        .insert("x-fallback", HeaderValue::from_static("stale value"));
    let mut svc = FallbackLayer::builder()
        .alternate(alternate)
        .cache(FallbackCache::http().build().unwrap())
        .static_response(fixed)
        .classifier(by_status::<Body>)
        .http()
        .source_header(HeaderName::from_static("x-fallback"))
        .build()
        .unwrap()
        .layer(backend.service());

    let real = call(&mut svc, get("/a")).await;
    assert!(real.extensions().get::<FallbackSource>().is_none());
    assert_eq!(text(real).await, "GET /a for - -");

    backend.set_up(false);
    let alternate = call(&mut svc, get("/a")).await;
    assert_eq!(
        alternate.extensions().get(),
        Some(&FallbackSource::Alternate)
    );
    assert_eq!(alternate.headers()["x-fallback"], "alternate");
    assert_eq!(text(alternate).await, "alternate");

    alternate_up.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(2)).await;
    let cached = call(&mut svc, get("/a")).await;
    assert_eq!(
        cached.extensions().get(),
        Some(&FallbackSource::Cache {
            age: Duration::from_secs(2)
        })
    );
    assert_eq!(cached.headers()["x-fallback"], "cache");
    assert_eq!(text(cached).await, "GET /a for - -");

    let fixed = call(&mut svc, get("/b")).await;
    assert_eq!(fixed.extensions().get(), Some(&FallbackSource::Static));
    assert_eq!(fixed.headers().get_all("x-fallback").iter().count(), 1);
    assert_eq!(fixed.headers()["x-fallback"], "static");
    assert_eq!(text(fixed).await, "static");
}

#[tokio::test]
async fn a_computed_answer_sees_the_failed_response() {
    let backend = Backend::new();
    backend.set_up(false);
    let svc = FallbackLayer::builder()
        .compute(
            |request: &Request<()>| request.uri().path().to_owned(),
            |path: String, cause: &steadfast::fallback::Cause<'_, Response<Body>>| {
                let status = cause.response().map(Response::status)?;
                Some(Response::new(Bytes::from(format!(
                    "{path} was {}",
                    status.as_u16()
                ))))
            },
        )
        .classifier(by_status::<Body>)
        .http()
        .build()
        .unwrap()
        .layer(backend.service());
    let answer = svc.oneshot(get("/x")).await.unwrap();
    assert_eq!(answer.extensions().get(), Some(&FallbackSource::Static));
    assert_eq!(text(answer).await, "/x was 503");
}
