//! One service shared by 1 and 2 threads, each calling back to back on its
//! own current-thread runtime: total calls per second, and the process's
//! CPU time over wall time (near the thread count, or the run is void).
//!
//! ```sh
//! cargo build --release -p steadfast-benches --bin scaling
//! target/release/scaling policy/standard part/bulkhead   # rows to run
//! ```
//!
//! Rows: `bare`, the standard stack `policy/standard` and the same stack
//! with one level left out (`policy/no_total`, `policy/no_bulkhead`,
//! `policy/no_retry`, `policy/no_breaker`, `policy/no_attempt`), and each
//! of its layers alone: `part/total_deadline`, `part/bulkhead`,
//! `part/retry`, `part/retry_unlimited`, `part/circuit_breaker`,
//! `part/attempt_timeout`. It tells which layer keeps a shared stack from
//! gaining from a second core.

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::fmt::Debug;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::policy::{Policy, PolicyBuilder};
use steadfast::retry::RetryLayer;
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tower::{Layer, Service, ServiceExt};

#[allow(dead_code)] // The timing harness is not used here.
mod common;

use common::{Echo, Request, runtime};

/// Permits no call exhausts (as in the suite).
const PERMITS: usize = 1_024;

/// The standard stack of the suite, with the levels `keep` names.
fn standard(keep: &[&str]) -> PolicyBuilder {
    let mut builder = Policy::builder();
    if keep.contains(&"total") {
        builder = builder.total_timeout(Duration::from_secs(5));
    }
    if keep.contains(&"bulkhead") {
        builder = builder.bulkhead(BulkheadLayer::builder().max_concurrent(PERMITS));
    }
    if keep.contains(&"retry") {
        builder = builder.retry(RetryLayer::builder().max_attempts(3));
    }
    if keep.contains(&"breaker") {
        builder = builder.circuit_breaker(CircuitBreakerLayer::builder());
    }
    if keep.contains(&"attempt") {
        builder = builder.attempt_timeout(Duration::from_secs(1));
    }
    builder
}

/// Measures the row `name`; `false` if there is no such row.
fn row(name: &str) -> bool {
    const ALL: [&str; 5] = ["total", "bulkhead", "retry", "breaker", "attempt"];
    let policy = |keep: &[&str]| {
        let policy = standard(keep).build().expect("valid settings");
        measure(name, &policy.layer(Echo));
    };
    let without = |level: &str| {
        let keep: Vec<&str> = ALL.into_iter().filter(|l| *l != level).collect();
        policy(&keep);
    };
    match name {
        "bare" => measure(name, &Echo),
        "policy/standard" => policy(&ALL),
        "policy/no_total" => without("total"),
        "policy/no_bulkhead" => without("bulkhead"),
        "policy/no_retry" => without("retry"),
        "policy/no_breaker" => without("breaker"),
        "policy/no_attempt" => without("attempt"),
        "part/total_deadline" => measure(
            name,
            &TotalDeadlineLayer::new(Duration::from_secs(5))
                .expect("valid settings")
                .layer(Echo),
        ),
        "part/bulkhead" => measure(
            name,
            &BulkheadLayer::builder()
                .max_concurrent(PERMITS)
                .build()
                .expect("valid settings")
                .layer(Echo),
        ),
        "part/retry" => measure(
            name,
            &RetryLayer::builder()
                .max_attempts(3)
                .build()
                .expect("valid settings")
                .layer(Echo),
        ),
        "part/retry_unlimited" => measure(
            name,
            &RetryLayer::builder()
                .max_attempts(3)
                .unlimited_budget()
                .build()
                .expect("valid settings")
                .layer(Echo),
        ),
        "part/circuit_breaker" => measure(
            name,
            &CircuitBreakerLayer::builder()
                .build()
                .expect("valid settings")
                .layer(Echo),
        ),
        "part/attempt_timeout" => measure(
            name,
            &TimeoutLayer::new(Duration::from_secs(1))
                .expect("valid settings")
                .layer(Echo),
        ),
        _ => return false,
    }
    true
}

/// On-CPU time of the calling thread so far.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// `calls` calls on each of `threads` threads, each with its own clone of
/// `service`: the slowest thread's wall time and the CPU time the
/// threads spent calling.
fn run<S>(service: &S, threads: u64, calls: u64) -> (Duration, Duration)
where
    S: Service<Request, Response = u64> + Clone + Send,
    S::Error: Debug,
{
    let running = AtomicU64::new(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let mut service = service.clone();
                let running = &running;
                scope.spawn(move || {
                    let rt = runtime();
                    rt.block_on(async {
                        running.fetch_add(1, Ordering::SeqCst);
                        while running.load(Ordering::SeqCst) < threads {
                            std::hint::spin_loop();
                        }
                        let (start, cpu) = (Instant::now(), thread_cpu());
                        for i in 0..calls {
                            let ready = service.ready().await.expect("ready");
                            black_box(ready.call(black_box((i, 1))).await.expect("call"));
                        }
                        (start.elapsed(), thread_cpu().saturating_sub(cpu))
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .fold((Duration::ZERO, Duration::ZERO), |(wall, cpu), (w, c)| {
                (wall.max(w), cpu + c)
            })
    })
}

/// Runs one row: the median of five rounds with 1 and 2 threads.
fn measure<S>(name: &str, service: &S)
where
    S: Service<Request, Response = u64> + Clone + Send,
    S::Error: Debug,
{
    let calls: u64 = std::env::var("SCALING_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000_000);
    let mut rates = [Vec::new(), Vec::new()];
    let mut busy = f64::MAX;
    for _ in 0..5 {
        for threads in [1u64, 2] {
            let (wall, cpu) = run(service, threads, calls);
            let rate = (threads * calls) as f64 / wall.as_secs_f64() / 1e6;
            rates[threads as usize - 1].push(rate);
            if threads == 2 {
                busy = busy.min(cpu.as_secs_f64() / wall.as_secs_f64());
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (one, two) = (median(&mut rates[0]), median(&mut rates[1]));
    println!(
        "{name:<22} 1 thread {one:8.2} M/s  2 threads {two:8.2} M/s  2/1 {:.2}x  cpu/wall {busy:.2}",
        two / one
    );
}

fn main() -> ExitCode {
    for name in std::env::args().skip(1) {
        if !row(&name) {
            eprintln!("unknown row {name}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
