//! Per-call cost of the HTTP pieces on the success path: the classifier,
//! the standard HTTP client policy around an always-ready in-memory
//! "client", and the server's error-to-response and deadline layers.
//!
//! ```text
//! cargo bench --bench http --features http -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use steadfast::BoxError;
use steadfast::classify::{Classify, Verdict};
use steadfast::http::{
    ErrorResponseLayer, HttpClassifier, HttpReplay, ReplayBody, ServerDeadlineLayer,
};
use steadfast::policy::Policy;
use tokio::runtime::Runtime;
use tower::{Service, ServiceBuilder, ServiceExt};

type Body = ReplayBody<http_body_util::Empty<bytes::Bytes>>;

/// Always ready; answers 200 at once.
#[derive(Clone, Copy)]
struct Ok200;

impl<B> Service<Request<B>> for Ok200 {
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Ready<Result<Response<()>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        ready(Ok(Response::new(())))
    }
}

fn request() -> Request<Body> {
    Request::get("http://api.example/items/7")
        .body(ReplayBody::buffered(bytes::Bytes::new()))
        .unwrap()
}

fn classify(c: &mut Criterion) {
    let classifier = HttpClassifier::new();
    let req = request();
    let ok = Response::new(());
    let busy = Response::builder()
        .status(503)
        .header("retry-after", "2")
        .body(())
        .unwrap();
    let mut group = c.benchmark_group("http_classifier");
    group.bench_function("facts_and_200", |b| {
        b.iter(|| {
            let facts = Classify::<_, Response<()>, BoxError>::facts(&classifier, black_box(&req));
            let v: Verdict = Classify::<Request<Body>, _, BoxError>::classify(
                &classifier,
                &facts,
                Ok(black_box(&ok)),
            );
            black_box(v)
        });
    });
    group.bench_function("facts_and_503_retry_after", |b| {
        b.iter(|| {
            let facts = Classify::<_, Response<()>, BoxError>::facts(&classifier, black_box(&req));
            let v: Verdict = Classify::<Request<Body>, _, BoxError>::classify(
                &classifier,
                &facts,
                Ok(black_box(&busy)),
            );
            black_box(v)
        });
    });
    group.finish();
}

fn stacks(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let _guard = rt.enter();
    let mut group = c.benchmark_group("http_call");
    let mut bare = Ok200;
    group.bench_function("bare", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    ServiceExt::<Request<Body>>::ready(&mut bare)
                        .await
                        .unwrap()
                        .call(request())
                        .await
                        .unwrap(),
                )
            })
        });
    });
    let mut standard = ServiceBuilder::new()
        .layer(Policy::standard_http_client().build().unwrap())
        .service(Ok200);
    group.bench_function("standard_http_client", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    ServiceExt::<Request<Body>>::ready(&mut standard)
                        .await
                        .unwrap()
                        .call(request())
                        .await
                        .unwrap(),
                )
            })
        });
    });
    let mut server = ServiceBuilder::new()
        .layer(ErrorResponseLayer::new())
        .layer(ServerDeadlineLayer::new(Duration::from_secs(10)).unwrap())
        .service(Ok200);
    group.bench_function("error_response_and_server_deadline", |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    ServiceExt::<Request<Body>>::ready(&mut server)
                        .await
                        .unwrap()
                        .call(request())
                        .await
                        .unwrap(),
                )
            })
        });
    });
    let _ = HttpReplay::new();
    group.finish();
}

criterion_group!(benches, classify, stacks);
criterion_main!(benches);
