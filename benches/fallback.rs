//! Overhead per call of the fallback layer on the success path, against a
//! bare call in the same run: with a static answer only (judging the
//! outcome), with an alternate (a copy of every request), and with a cache
//! (recording every success). With the `http` feature, the same for an
//! HTTP service whose 64-byte body is read to its end, so that the cached
//! variant buffers and stores it.
//!
//! Each iteration polls the service ready, calls it and polls the response
//! future (and body) to completion, without an executor.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::BoxError;
use steadfast::fallback::{FallbackCache, FallbackLayer};
use tower::{Layer, Service, service_fn};

fn inner() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    service_fn(|x: u64| std::future::ready(Ok::<_, BoxError>(x)))
}

/// One ready-call-complete round trip.
#[inline]
fn round_trip<S, Req>(service: &mut S, cx: &mut Context<'_>, request: Req) -> S::Response
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    match service.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("the benchmarked service is always ready"),
    }
    let future = pin!(service.call(request));
    match future.poll(cx) {
        Poll::Ready(Ok(response)) => response,
        _ => panic!("the benchmarked call completes at once"),
    }
}

fn plain(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("fallback");

    let mut bare = inner();
    group.bench_function("bare service", |b| {
        b.iter(|| black_box(round_trip(&mut bare, &mut cx, black_box(1))));
    });

    let mut fixed = FallbackLayer::builder()
        .static_response(0u64)
        .build()
        .expect("valid settings")
        .layer(inner());
    group.bench_function("fallback, static answer", |b| {
        b.iter(|| black_box(round_trip(&mut fixed, &mut cx, black_box(1))));
    });

    let mut alternate = FallbackLayer::builder()
        .alternate(inner())
        .build()
        .expect("valid settings")
        .layer(inner());
    group.bench_function("fallback, alternate", |b| {
        b.iter(|| black_box(round_trip(&mut alternate, &mut cx, black_box(1))));
    });

    let cache = FallbackCache::builder()
        .capacity(10_000)
        .max_staleness(Duration::from_secs(60))
        .build()
        .expect("valid settings");
    let mut cached = FallbackLayer::builder()
        .cache(cache)
        .static_response(0u64)
        .build()
        .expect("valid settings")
        .layer(inner());
    let mut n = 0u64;
    group.bench_function("fallback, cache (records, 1,024 keys) + static", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(round_trip(&mut cached, &mut cx, black_box(n % 1_024)))
        });
    });
    group.finish();
}

#[cfg(feature = "http")]
mod http_bench {
    use super::*;
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body::Body;
    use http_body_util::Full;

    const BODY: &[u8] = &[b'x'; 64];

    fn inner()
    -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = BoxError> + Clone {
        service_fn(|_: Request<()>| {
            std::future::ready(Ok::<_, BoxError>(Response::new(Full::new(
                Bytes::from_static(BODY),
            ))))
        })
    }

    /// Reads a body to its end; returns its length.
    fn drain<B: Body<Data = Bytes>>(body: B, cx: &mut Context<'_>) -> usize
    where
        B::Error: std::fmt::Debug,
    {
        let mut body = pin!(body);
        let mut len = 0;
        loop {
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => len += frame.data_ref().map_or(0, Bytes::len),
                Poll::Ready(None) => return len,
                _ => panic!("the benchmarked body is ready at once"),
            }
        }
    }

    pub(super) fn http(c: &mut Criterion) {
        let mut cx = Context::from_waker(Waker::noop());
        let mut group = c.benchmark_group("fallback http");
        let request = || {
            Request::builder()
                .uri("/items/1")
                .header("authorization", "Bearer abc")
                .body(())
                .expect("valid request")
        };

        let mut bare = inner();
        group.bench_function("bare service", |b| {
            b.iter(|| {
                let response = round_trip(&mut bare, &mut cx, black_box(request()));
                black_box(drain(response.into_body(), &mut cx))
            });
        });

        let mut fixed = FallbackLayer::builder()
            .static_response(Response::new(Bytes::from_static(b"[]")))
            .http()
            .build()
            .expect("valid settings")
            .layer(inner());
        group.bench_function("fallback, static answer", |b| {
            b.iter(|| {
                let response = round_trip(&mut fixed, &mut cx, black_box(request()));
                black_box(drain(response.into_body(), &mut cx))
            });
        });

        let cache = FallbackCache::http().build().expect("valid settings");
        let mut cached = FallbackLayer::builder()
            .cache(cache)
            .static_response(Response::new(Bytes::from_static(b"[]")))
            .http()
            .build()
            .expect("valid settings")
            .layer(inner());
        group.bench_function("fallback, cache (records the body) + static", |b| {
            b.iter(|| {
                let response = round_trip(&mut cached, &mut cx, black_box(request()));
                black_box(drain(response.into_body(), &mut cx))
            });
        });
        group.finish();
    }
}

#[cfg(feature = "http")]
criterion_group!(benches, plain, http_bench::http);
#[cfg(not(feature = "http"))]
criterion_group!(benches, plain);
criterion_main!(benches);
