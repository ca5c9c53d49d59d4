//! Overhead per call of the bulkhead, side by side with tower's
//! `ConcurrencyLimit` in the same run.
//!
//! Each iteration polls the service ready, calls it and polls the response
//! future to completion, on an inner service whose futures are ready at once
//! and with permits to spare, so the figures are the admission cost alone.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::BoxError;
use steadfast::bulkhead::{BulkheadLayer, KeyedBulkheadLayer};
use tower::limit::ConcurrencyLimitLayer;
use tower::{Layer, Service, service_fn};

fn inner() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    service_fn(|x: u64| std::future::ready(Ok::<_, BoxError>(x)))
}

/// One ready-call-complete round trip, without an executor.
#[inline]
fn round_trip<S>(service: &mut S, cx: &mut Context<'_>, x: u64) -> u64
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    match service.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => panic!("the benchmarked service is always ready"),
    }
    let future = pin!(service.call(x));
    match future.poll(cx) {
        Poll::Ready(Ok(y)) => y,
        _ => panic!("the benchmarked call completes at once"),
    }
}

fn bench(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("bulkhead");

    let mut bare = inner();
    group.bench_function("bare service", |b| {
        b.iter(|| black_box(round_trip(&mut bare, &mut cx, black_box(1))));
    });

    let mut tower_limit = ConcurrencyLimitLayer::new(1_024).layer(inner());
    group.bench_function("tower ConcurrencyLimit", |b| {
        b.iter(|| black_box(round_trip(&mut tower_limit, &mut cx, black_box(1))));
    });

    let mut bulkhead = BulkheadLayer::builder()
        .max_concurrent(1_024)
        .build()
        .expect("valid settings")
        .layer(inner());
    group.bench_function("steadfast Bulkhead", |b| {
        b.iter(|| black_box(round_trip(&mut bulkhead, &mut cx, black_box(1))));
    });

    let mut keyed = KeyedBulkheadLayer::builder(|x: &u64| *x % 64)
        .max_concurrent(1_024)
        .build()
        .expect("valid settings")
        .layer(inner());
    let mut n = 0u64;
    group.bench_function("steadfast KeyedBulkhead (64 keys)", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(round_trip(&mut keyed, &mut cx, black_box(n)))
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
