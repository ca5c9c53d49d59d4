//! Sends N calls through the standard stack, for counting instructions
//! per call with callgrind (which, unlike a clock, does not depend on what
//! else the machine is doing):
//!
//! ```sh
//! cargo build --release --all-features --example stack_calls
//! for n in 10000 20000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/stack_calls observed $n 2>&1 | grep Collected
//! done   # per call: the difference / 10,000
//! ```
//!
//! Modes: `plain` (a `Policy` without the observe layer), `observed` (with
//! it, nobody watching), `metrics` (with call metrics on, no recorder),
//! `builder` (the same five layers stacked with tower's `ServiceBuilder`).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::Duration;

use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, RetryLayer};
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

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
        ready(Ok(a.wrapping_add(b)))
    }
}

async fn drive<S>(mut service: S, calls: u64) -> u64
where
    S: Service<(u64, u64), Response = u64>,
    S::Error: std::fmt::Debug,
{
    let mut sum = 0u64;
    for i in 0..calls {
        let ready = service.ready().await.expect("ready");
        sum = sum.wrapping_add(ready.call((i, 1)).await.expect("call"));
    }
    sum
}

fn main() -> Result<(), steadfast::BoxError> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "observed".into());
    let calls: u64 = match std::env::args().nth(2) {
        Some(n) => n.parse()?,
        None => 100_000,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let sum = rt.block_on(async {
        let second = Duration::from_secs(1);
        if mode == "builder" {
            let stack = ServiceBuilder::new()
                .layer(TotalDeadlineLayer::new(5 * second)?)
                .layer(BulkheadLayer::builder().max_concurrent(1_000).build()?)
                .layer(
                    RetryLayer::builder()
                        .max_attempts(3)
                        .backoff(Backoff::exponential(Duration::from_millis(10)))
                        .build()?,
                )
                .layer(CircuitBreakerLayer::builder().count_window(100).build()?)
                .layer(TimeoutLayer::new(second)?)
                .service(Echo);
            return Ok::<_, steadfast::BoxError>(drive(stack, calls).await);
        }
        let policy = Policy::builder()
            .total_timeout(5 * second)
            .bulkhead(BulkheadLayer::builder().max_concurrent(1_000))
            .retry(
                RetryLayer::builder()
                    .max_attempts(3)
                    .backoff(Backoff::exponential(Duration::from_millis(10))),
            )
            .circuit_breaker(CircuitBreakerLayer::builder().count_window(100))
            .attempt_timeout(second);
        let policy = match mode.as_str() {
            "plain" => policy,
            "metrics" => policy.observe().metrics(true),
            _ => policy.observe(),
        };
        Ok(drive(policy.build()?.layer(Echo), calls).await)
    })?;
    std::hint::black_box(sum);
    Ok(())
}
