//! Overhead per call of the rate limiter, side by side with a direct
//! governor check in the same run.
//!
//! Quotas are large enough that every call passes. Each iteration polls the
//! service ready, calls it and polls the response future to completion, on
//! an inner service whose futures are ready at once.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::ops::Add;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{DefaultKeyedRateLimiter, RateLimiter};
use steadfast::BoxError;
use steadfast::error::RateLimited;
use steadfast::rate_limit::{Quota, RateLimitLayer};
use tower::{Layer, Service, service_fn};

const RATE: u32 = 1_000_000_000;

fn governor_quota() -> governor::Quota {
    let n = NonZeroU32::new(RATE).expect("non-zero");
    governor::Quota::per_second(n).allow_burst(n)
}

fn inner() -> impl Service<u64, Response = u64, Error = BoxError> + Clone {
    service_fn(|x: u64| std::future::ready(Ok::<_, BoxError>(x)))
}

/// The same clock as steadfast's (tokio's `Instant`), so that the direct
/// check and the layer differ only by the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TokioInstant(tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;
    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }
    fn saturating_sub(&self, duration: Nanos) -> Self {
        self.0.checked_sub(duration.into()).map_or(*self, Self)
    }
}

#[derive(Debug, Clone, Copy)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;
    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

/// A hand-written service doing a direct governor check before the call:
/// the least a rate-limiting layer can do.
#[derive(Clone)]
struct DirectCheck<S, C: Clock> {
    limiter: Arc<RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>>,
    inner: S,
}

impl<S, C> Service<u64> for DirectCheck<S, C>
where
    S: Service<u64, Response = u64, Error = BoxError>,
    C: Clock,
{
    type Response = u64;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u64, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, x: u64) -> Self::Future {
        match self.limiter.check() {
            Ok(()) => std::future::ready(Ok(x)),
            Err(_) => std::future::ready(Err(RateLimited::new(Duration::ZERO).into())),
        }
    }
}

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
        other => panic!("the benchmarked call passes at once: {other:?}"),
    }
}

fn bench(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("rate_limit");

    let quanta = RateLimiter::direct(governor_quota());
    group.bench_function("governor check (default clock)", |b| {
        b.iter(|| black_box(quanta.check()));
    });
    let tokio_direct = RateLimiter::direct_with_clock(governor_quota(), TokioClock);
    group.bench_function("governor check (tokio clock)", |b| {
        b.iter(|| black_box(tokio_direct.check()));
    });

    let mut direct = DirectCheck {
        limiter: Arc::new(RateLimiter::direct_with_clock(
            governor_quota(),
            DefaultClock::default(),
        )),
        inner: inner(),
    };
    group.bench_function("service + governor check (default clock)", |b| {
        b.iter(|| black_box(round_trip(&mut direct, &mut cx, black_box(1))));
    });
    let mut direct_tokio = DirectCheck {
        limiter: Arc::new(RateLimiter::direct_with_clock(governor_quota(), TokioClock)),
        inner: inner(),
    };
    group.bench_function("service + governor check (tokio clock)", |b| {
        b.iter(|| black_box(round_trip(&mut direct_tokio, &mut cx, black_box(1))));
    });

    let mut global = RateLimitLayer::builder()
        .quota(Quota::per_second(RATE))
        .build()
        .expect("valid settings")
        .layer(inner());
    group.bench_function("steadfast RateLimit (unkeyed)", |b| {
        b.iter(|| black_box(round_trip(&mut global, &mut cx, black_box(1))));
    });

    let keyed_direct: DefaultKeyedRateLimiter<u64> = RateLimiter::keyed(governor_quota());
    let mut n = 0u64;
    group.bench_function("governor keyed check (1,000 keys)", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(keyed_direct.check_key(&(n % 1_000)))
        });
    });
    let keyed_tokio: RateLimiter<
        u64,
        governor::state::keyed::DefaultKeyedStateStore<u64>,
        TokioClock,
        governor::middleware::NoOpMiddleware<<TokioClock as Clock>::Instant>,
    > = RateLimiter::new(governor_quota(), Default::default(), TokioClock);
    group.bench_function("governor keyed check (1,000 keys, tokio clock)", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(keyed_tokio.check_key(&(n % 1_000)))
        });
    });
    let mut keyed = RateLimitLayer::builder()
        .quota(Quota::per_second(RATE))
        .key(|x: &u64| *x % 1_000)
        .build()
        .expect("valid settings")
        .layer(inner());
    group.bench_function("steadfast RateLimit (1,000 keys)", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            black_box(round_trip(&mut keyed, &mut cx, black_box(n)))
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
