//! A successful call through the timeout, retry, bulkhead and rate limit
//! layers makes no heap allocation, with a `Clone` request that owns no
//! heap data.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::Duration;

use steadfast::retry::RetryLayer;
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_in;

/// Always ready; answers at once.
#[derive(Clone, Copy)]
struct Echo;

impl Service<(u64, u64)> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (a, b): (u64, u64)) -> Self::Future {
        ready(Ok(a + b))
    }
}

#[test]
fn a_successful_call_through_timeout_and_retry_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(5)).unwrap())
        .layer(RetryLayer::builder().max_attempts(3).build().unwrap())
        .layer(TimeoutLayer::new(Duration::from_secs(1)).unwrap())
        .service(Echo);
    // The counter sees allocations: a control.
    let (boxed, allocations) = allocations_in(|| Box::new(7_u64));
    assert_eq!((*boxed, allocations), (7, 1));

    rt.block_on(async {
        // Warm up: the runtime's own lazy set-up is not the layers' cost.
        assert_eq!(svc.ready().await.unwrap().call((1, 2)).await.unwrap(), 3);
        let mut total = 0;
        for i in 0..100 {
            let (sum, allocations) = allocations_in(|| {
                let mut fut =
                    std::pin::pin!(async { svc.ready().await.unwrap().call((i, 1)).await });
                let waker = std::task::Waker::noop();
                match fut.as_mut().poll(&mut Context::from_waker(waker)) {
                    Poll::Ready(result) => result.unwrap(),
                    Poll::Pending => panic!("a ready service answers at the first poll"),
                }
            });
            assert_eq!(sum, i + 1);
            total += allocations;
        }
        assert_eq!(total, 0, "allocations in 100 successful calls");
    });
}

/// Runs 100 successful calls of `svc`, after one to warm up, and answers
/// the heap allocations they made.
fn allocations_in_100_calls<S>(svc: &mut S) -> usize
where
    S: Service<(u64, u64), Response = u64>,
    S::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(svc.ready().await.unwrap().call((1, 2)).await.unwrap(), 3);
        let mut total = 0;
        for i in 0..100 {
            let (sum, allocations) = allocations_in(|| {
                let mut fut =
                    std::pin::pin!(async { svc.ready().await.unwrap().call((i, 1)).await });
                let waker = std::task::Waker::noop();
                match fut.as_mut().poll(&mut Context::from_waker(waker)) {
                    Poll::Ready(result) => result.unwrap(),
                    Poll::Pending => panic!("a ready service answers at the first poll"),
                }
            });
            assert_eq!(sum, i + 1);
            total += allocations;
        }
        total
    })
}

#[test]
fn a_call_admitted_by_the_bulkhead_allocates_nothing() {
    use steadfast::bulkhead::BulkheadLayer;

    // A bulkhead that lets calls wait: the waiting state is never needed.
    let layer = BulkheadLayer::builder()
        .max_concurrent(4)
        .max_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(layer).service(Echo);
    assert_eq!(allocations_in_100_calls(&mut svc), 0);
}

#[cfg(feature = "rate-limit")]
#[test]
fn a_call_the_rate_limiter_lets_through_allocates_nothing() {
    use steadfast::rate_limit::{Mode, Quota, RateLimitLayer};

    // Throttling on, but no call waits.
    let global = RateLimitLayer::builder()
        .quota(Quota::per_second(1_000_000))
        .mode(Mode::Throttle {
            max_delay: Duration::from_millis(100),
        })
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new().layer(global).service(Echo);
    assert_eq!(allocations_in_100_calls(&mut svc), 0);
}
