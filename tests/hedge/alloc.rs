//! A call answered by its first copy, before the hedge delay, allocates
//! nothing of its own: not when it answers at once, and not when it answers
//! after the hedge timer was armed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use steadfast::hedge::HedgeLayer;
use tower::{Layer, Service, ServiceExt};

#[path = "../support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_in;

/// Answers at the second poll of its future, or at the first.
#[derive(Clone, Copy)]
struct Echo {
    pending_once: bool,
}

struct EchoFuture {
    value: u64,
    pending: bool,
}

impl Future for EchoFuture {
    type Output = Result<u64, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.pending {
            self.pending = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(self.value))
    }
}

impl Service<u64> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = EchoFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, value: u64) -> EchoFuture {
        EchoFuture {
            value,
            pending: self.pending_once,
        }
    }
}

fn calls_allocate(layer: &HedgeLayer, pending_once: bool) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut svc = layer.layer(Echo { pending_once });
    rt.block_on(async {
        // Warm up: the runtime's and the timer's lazy set-up is not ours.
        for i in 0..200 {
            assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
        }
        let mut total = 0;
        for i in 0..100 {
            let (value, allocations) = allocations_in(|| {
                let mut fut = std::pin::pin!(async { svc.ready().await?.call(i).await });
                let waker = std::task::Waker::noop();
                let mut cx = Context::from_waker(waker);
                loop {
                    if let Poll::Ready(result) = fut.as_mut().poll(&mut cx) {
                        break result.unwrap();
                    }
                }
            });
            assert_eq!(value, i);
            total += allocations;
        }
        total
    })
}

#[test]
fn a_first_copy_that_wins_allocates_nothing() {
    let fixed = HedgeLayer::builder()
        .delay(Duration::from_millis(50))
        .build()
        .unwrap();
    let learned = HedgeLayer::builder()
        .latency_percentile(0.05, Duration::from_millis(5))
        .build()
        .unwrap();
    for layer in [&fixed, &learned] {
        assert_eq!(calls_allocate(layer, false), 0, "answered at once");
        assert_eq!(
            calls_allocate(layer, true),
            0,
            "answered after a pending poll"
        );
    }
    assert_eq!(fixed.handle().hedges_sent(), 0);
}
