//! What watching calls costs when nobody looks: the standard stack (total
//! deadline, bulkhead, retry with its budget, breaker, attempt timeout)
//! without the observe layer, and with it, in the same run, no tracing
//! subscriber and no metrics recorder installed.
//!
//! ```text
//! cargo bench --all-features --bench observe
//! ```
//!
//! On a shared VM the two criterion rows move by ±15 % between runs, more
//! than the difference; the paired measurement at the end times the two
//! stacks in alternating chunks and reports the median of the per-round
//! ratios (also written to `target/criterion/observe_paired.txt`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::policy::{Policy, PolicyBuilder};
use steadfast::retry::{Backoff, RetryLayer};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceExt};

mod common;

use common::{Echo, Request, bench_service, runtime};

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

/// Nanoseconds per call over `n` calls through `service`.
async fn chunk<S>(service: &mut S, n: u64) -> f64
where
    S: Service<Request, Response = u64>,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for i in 0..n {
        let ready = service.ready().await.expect("ready");
        black_box(ready.call(black_box((i, 1))).await.expect("call"));
    }
    start.elapsed().as_secs_f64() * 1e9 / n as f64
}

/// Both stacks timed in alternating chunks within each round, so each
/// round's ratio compares them under the same machine conditions; prints
/// the median ratio over the rounds and writes it to
/// `target/criterion/observe_paired.txt`.
fn paired(rt: &Runtime) -> String {
    const CHUNK: u64 = 256;
    const ROUNDS: usize = 2_000;
    let mut plain = standard().build().unwrap().layer(Echo);
    let mut watched = standard()
        .observe()
        .metrics(false)
        .build()
        .unwrap()
        .layer(Echo);
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for round in 0..ROUNDS + ROUNDS / 10 {
            // Which goes first alternates, so that neither always runs on
            // caches the other warmed.
            let (without, with) = if round % 2 == 0 {
                let without = chunk(&mut plain, CHUNK).await;
                (without, chunk(&mut watched, CHUNK).await)
            } else {
                let with = chunk(&mut watched, CHUNK).await;
                (chunk(&mut plain, CHUNK).await, with)
            };
            // The first tenth warms up.
            if round >= ROUNDS / 10 {
                a.push(without);
                b.push(with);
                ratios.push(with / without);
            }
        }
    });
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    format!(
        "paired, {ROUNDS} rounds of {CHUNK} calls each: without observe {:.1} ns, with observe {:.1} ns (medians), median ratio {:.3}\n",
        median(&mut a),
        median(&mut b),
        median(&mut ratios)
    )
}

fn observe_paired(_: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let line = paired(&rt);
    print!("{line}");
    let dir = std::path::Path::new("target/criterion");
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = std::fs::write(dir.join("observe_paired.txt"), &line);
    }
}

criterion_group!(benches, observe, observe_paired);
criterion_main!(benches);
