//! What watching calls costs when nobody looks: the standard stack (total
//! deadline, bulkhead, retry with its budget, breaker, attempt timeout)
//! without the observe layer, and with it, in the same run, no tracing
//! subscriber and no metrics recorder installed.
//!
//! ```text
//! cargo bench --all-features --bench observe
//! ```

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::policy::{Policy, PolicyBuilder};
use steadfast::retry::{Backoff, RetryLayer};
use tower::{Layer, Service};

mod common;

use common::{Request, bench_service, runtime};

/// Always ready; answers at once.
#[derive(Clone, Copy)]
struct Echo;

impl Service<Request> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (a, b): Request) -> Self::Future {
        ready(Ok(a.wrapping_add(b)))
    }
}

fn standard() -> PolicyBuilder {
    Policy::builder()
        .name("bench")
        .total_timeout(Duration::from_secs(5))
        .bulkhead(BulkheadLayer::builder().max_concurrent(1_000))
        .retry(
            RetryLayer::builder()
                .max_attempts(3)
                .backoff(Backoff::exponential(Duration::from_millis(10))),
        )
        .circuit_breaker(CircuitBreakerLayer::builder().count_window(100))
        .attempt_timeout(Duration::from_secs(1))
}

fn observe(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();

    bench_service(c, "observe", "bare", &rt, Echo);
    let plain = standard().build().unwrap();
    bench_service(c, "observe", "standard", &rt, plain.layer(Echo));
    let watched = standard().observe().metrics(false).build().unwrap();
    bench_service(c, "observe", "standard_observed", &rt, watched.layer(Echo));
    if cfg!(feature = "metrics") {
        // Metrics on, but no recorder: handles are no-ops, the clock is
        // still read twice per call for the durations.
        let metered = standard().observe().metrics(true).build().unwrap();
        bench_service(
            c,
            "observe",
            "standard_observed_metrics_no_recorder",
            &rt,
            metered.layer(Echo),
        );
    }
}

criterion_group!(benches, observe);
criterion_main!(benches);
