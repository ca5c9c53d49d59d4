//! Hedge overhead when the first copy wins, beside tower's `Hedge`, in the
//! same run.
//!
//! Two inner services: one answers at the first poll of its future, the
//! other at the second (it wakes itself once), so that a hedge timer must
//! be armed, as for any real call. The delay is never reached: every call
//! is won by its first copy. Each sample runs its calls back to back in one
//! current-thread runtime.
//!
//! ```text
//! cargo bench --bench hedge -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::hedge::HedgeLayer;
use tower::{Layer, Service};

mod common;

use common::{Hedgeable, Request, bench_service, runtime};

/// Always ready; answers at the first poll, or at the second.
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

impl Service<Request> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = EchoFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (a, b): Request) -> EchoFuture {
        EchoFuture {
            value: a.wrapping_add(b),
            pending: self.pending_once,
        }
    }
}

fn hedge(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let delay = Duration::from_secs(1);

    for (group, pending_once) in [("hedge_ready", false), ("hedge_pending_once", true)] {
        let echo = Echo { pending_once };
        bench_service(c, group, "bare", &rt, echo);
        // 98th percentile, 10 data points before hedging, 10 s period.
        bench_service(
            c,
            group,
            "tower",
            &rt,
            tower::hedge::Hedge::new::<Request>(echo, Hedgeable, 10, 0.98, Duration::from_secs(10)),
        );
        let percentile = HedgeLayer::builder()
            .latency_percentile(0.02, Duration::from_millis(10))
            .unlimited_budget()
            .build()
            .unwrap();
        bench_service(
            c,
            group,
            "steadfast_percentile",
            &rt,
            percentile.layer(echo),
        );
        let fixed = HedgeLayer::builder()
            .delay(delay)
            .unlimited_budget()
            .build()
            .unwrap();
        bench_service(c, group, "steadfast_fixed", &rt, fixed.layer(echo));
        let budgeted = HedgeLayer::builder()
            .latency_percentile(0.02, Duration::from_millis(10))
            .build()
            .unwrap();
        bench_service(
            c,
            group,
            "steadfast_percentile_budget",
            &rt,
            budgeted.layer(echo),
        );
    }
}

criterion_group!(benches, hedge);
criterion_main!(benches);
