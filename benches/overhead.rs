//! Per-call overhead of the timeout and retry layers on the success path,
//! beside tower's own `Timeout` and `Retry`, in the same run.
//!
//! Every service wraps the same always-ready inner service; each sample
//! runs its calls back to back inside one current-thread runtime, so the
//! figures are the layers' cost plus a constant for the inner call.
//!
//! ```text
//! cargo bench --bench overhead
//! ```

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::retry::RetryLayer;
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tower::ServiceBuilder;

mod common;

use common::{Attempts, Budgeted, Echo, bench_service, runtime};

fn overhead(c: &mut Criterion) {
    let rt = runtime();
    let second = Duration::from_secs(1);
    let _guard = rt.enter();

    bench_service(c, "bare", "inner", &rt, Echo);

    bench_service(
        c,
        "timeout",
        "tower",
        &rt,
        tower::timeout::Timeout::new(Echo, second),
    );
    bench_service(
        c,
        "timeout",
        "steadfast",
        &rt,
        ServiceBuilder::new()
            .layer(TimeoutLayer::new(second).unwrap())
            .service(Echo),
    );

    bench_service(
        c,
        "retry",
        "tower",
        &rt,
        tower::retry::Retry::new(Attempts(3), Echo),
    );
    bench_service(
        c,
        "retry",
        "steadfast",
        &rt,
        ServiceBuilder::new()
            .layer(
                RetryLayer::builder()
                    .max_attempts(3)
                    .unlimited_budget()
                    .build()
                    .unwrap(),
            )
            .service(Echo),
    );

    bench_service(
        c,
        "retry_budget",
        "tower",
        &rt,
        tower::retry::Retry::new(Budgeted::new(), Echo),
    );
    bench_service(
        c,
        "retry_budget",
        "steadfast",
        &rt,
        ServiceBuilder::new()
            .layer(RetryLayer::builder().max_attempts(3).build().unwrap())
            .service(Echo),
    );

    // Retry over an attempt timeout, under an overall bound.
    bench_service(
        c,
        "stack",
        "tower",
        &rt,
        ServiceBuilder::new()
            .timeout(Duration::from_secs(5))
            .retry(Budgeted::new())
            .timeout(second)
            .service(Echo),
    );
    bench_service(
        c,
        "stack",
        "steadfast",
        &rt,
        ServiceBuilder::new()
            .layer(TotalDeadlineLayer::new(Duration::from_secs(5)).unwrap())
            .layer(RetryLayer::builder().max_attempts(3).build().unwrap())
            .layer(TimeoutLayer::new(second).unwrap())
            .service(Echo),
    );
}

criterion_group!(benches, overhead);
criterion_main!(benches);
