//! A call through the adaptive limiter, throttling included, makes no heap
//! allocation.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};

use steadfast::adaptive::{AdaptiveLayer, Throttle};
use tower::{Layer, Service, ServiceExt};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_in;

/// Always ready; answers at once.
#[derive(Clone, Copy)]
struct Echo;

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u64) -> Self::Future {
        ready(Ok(n))
    }
}

#[test]
fn calls_through_the_adaptive_limit_allocate_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let layer = AdaptiveLayer::builder()
        .throttle(Throttle::new())
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut svc = layer.layer(Echo);
    let (boxed, allocations) = allocations_in(|| Box::new(7_u64));
    assert_eq!(
        (*boxed, allocations),
        (7, 1),
        "the counter sees allocations"
    );

    rt.block_on(async {
        // Warm up past the first probe, whose end is reported as an event.
        for i in 0..20 {
            svc.ready().await.unwrap().call(i).await.unwrap();
        }
        assert!(!handle.probing());
        let mut total = 0;
        for i in 0..100 {
            let (n, allocations) = allocations_in(|| {
                let mut fut = std::pin::pin!(async { svc.ready().await.unwrap().call(i).await });
                let waker = std::task::Waker::noop();
                match fut.as_mut().poll(&mut Context::from_waker(waker)) {
                    Poll::Ready(result) => result.unwrap(),
                    Poll::Pending => panic!("a ready service answers at the first poll"),
                }
            });
            assert_eq!(n, i);
            total += allocations;
        }
        assert_eq!(total, 0, "allocations in 100 calls");
    });
}
