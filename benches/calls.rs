//! Sends N calls through one layer (or its tower peer) over the suite's
//! always-ready inner service, for counting instructions per call with
//! callgrind, which unlike a clock does not depend on what else the
//! machine is doing.
//!
//! ```sh
//! cargo build --release -p steadfast-benches --bin calls
//! benches/calls.sh            # every row, steadfast beside tower
//! ```
//!
//! `calls.sh` runs each row under `valgrind --tool=callgrind` with 10,000
//! and 20,000 calls and prints the difference / 10,000, so the runtime's
//! start and the layer's construction cancel out.
//!
//! Rows: `bare`, `bulkhead/steadfast`, `bulkhead/tower`,
//! `rate_limit/steadfast`, `rate_limit/tower`, `retry/steadfast`,
//! `retry/tower`, `retry/suite_echo` and `retry/tower_suite_echo` (the
//! same two over the inner service of `benches/suite.rs`, 8 bytes with a
//! loop of no rounds), `retry_budget/steadfast`, `retry_budget/tower`,
//! `hedge/steadfast` (the first request answers before any copy),
//! `scatter/steadfast` (two branches, every answer gathered),
//! `fallback/steadfast` (a static answer, never used),
//! `chaos/switched_off` (rates set, switched off), `chaos/zero_rates`
//! (every rate zero) and `rate_limit/keyed` (1,000 keys, each call the
//! next key); the
//! standard stack (total deadline, bulkhead, retry within its budget,
//! breaker, attempt timeout): `policy/steadfast` as it is,
//! `policy/observed` observed as the HTTP preset is, and
//! `policy/observed_info_listener` observed, with a tracing subscriber at
//! INFO installed and another policy with listeners built and called; and
//! three policies: `policy/standard` (total deadline, bulkhead, retry,
//! breaker and attempt timeout, not observed), `policy/attempt` (only an
//! attempt timeout: every other level absent) and `policy/empty` (no
//! layer at all). Beside `policy/standard`, in the same run:
//! `policy/service_builder` (the same five layers, with the same
//! settings, stacked with tower's `ServiceBuilder`) and each of those
//! layers alone over the same inner service, whose sum is the cost of the
//! parts: `part/total_deadline`, `part/bulkhead`, `part/retry`,
//! `part/circuit_breaker`, `part/attempt_timeout`.

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::process::ExitCode;
use std::task::{Context, Poll};
use std::time::Duration;

use steadfast::bulkhead::BulkheadLayer;
use steadfast::chaos::ChaosLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::fallback::FallbackLayer;
use steadfast::hedge::HedgeLayer;
use steadfast::policy::{Policy, PolicyBuilder};
use steadfast::rate_limit::{Quota, RateLimitLayer};
use steadfast::retry::{Backoff, RetryLayer};
use steadfast::scatter::Scatter;
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

#[allow(dead_code)] // The timing harness is not used here.
mod common;

use common::{Attempts, Budgeted, Echo, Request, runtime};

/// The inner service of `benches/suite.rs`: always ready, answers at once
/// after `rounds` rounds of arithmetic (here none). Unlike [`Echo`] it is
/// not zero-sized and its call holds a loop, which changes what the
/// compiler inlines around it.
#[derive(Clone, Copy)]
struct SuiteEcho {
    rounds: u64,
}

impl Service<Request> for SuiteEcho {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (a, b): Request) -> Self::Future {
        let mut h = a.wrapping_add(b);
        for i in 0..self.rounds {
            h = black_box(h.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ i);
        }
        ready(Ok(h))
    }
}

/// Permits no call exhausts (as in the suite).
const PERMITS: usize = 1_024;

/// A rate no call reaches (as in the suite).
const RATE: u32 = 1_000_000_000;

/// The standard stack, as in the suite.
fn standard(name: &'static str) -> PolicyBuilder {
    Policy::builder()
        .name(name)
        .total_timeout(Duration::from_secs(5))
        .bulkhead(BulkheadLayer::builder().max_concurrent(PERMITS))
        .retry(RetryLayer::builder().max_attempts(3))
        .circuit_breaker(CircuitBreakerLayer::builder())
        .attempt_timeout(Duration::from_secs(1))
}

/// The total deadline of `policy/standard`.
fn total_layer() -> TotalDeadlineLayer {
    TotalDeadlineLayer::new(Duration::from_secs(5)).expect("valid settings")
}

/// The bulkhead of `policy/standard`.
fn bulkhead_layer() -> BulkheadLayer {
    BulkheadLayer::builder()
        .max_concurrent(PERMITS)
        .build()
        .expect("valid settings")
}

/// The retry of `policy/standard`: 3 attempts, exponential backoff, the
/// default budget.
fn retry_layer() -> RetryLayer {
    RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(10)))
        .build()
        .expect("valid settings")
}

/// The breaker of `policy/standard`: a count window of 100.
fn breaker_layer() -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .count_window(100)
        .build()
        .expect("valid settings")
}

/// The attempt timeout of `policy/standard`.
fn attempt_layer() -> TimeoutLayer {
    TimeoutLayer::new(Duration::from_secs(1)).expect("valid settings")
}

/// A subscriber at INFO, as an application logs in production: every
/// callsite at INFO or above, counted; no span kept.
struct Info(std::sync::atomic::AtomicU64);

impl tracing::Subscriber for Info {
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if *metadata.level() <= tracing::Level::INFO {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::INFO)
    }

    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::INFO
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, _: &tracing::Event<'_>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Readies and calls `service` `calls` times back to back, as the suite's
/// harness does.
async fn drive<S>(mut service: S, calls: u64) -> u64
where
    S: Service<Request, Response = u64>,
    S::Error: Debug,
{
    let mut sum = 0u64;
    for i in 0..calls {
        let ready = service.ready().await.expect("ready");
        sum = sum.wrapping_add(ready.call(black_box((i, 1))).await.expect("call"));
    }
    sum
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(row), calls) = (args.next(), args.next()) else {
        eprintln!("usage: calls <row> [calls]");
        return ExitCode::FAILURE;
    };
    let calls: u64 = match calls.map(|n| n.parse()) {
        None => 100_000,
        Some(Ok(n)) => n,
        Some(Err(err)) => {
            eprintln!("calls: {err}");
            return ExitCode::FAILURE;
        }
    };
    let rt = runtime();
    let _guard = rt.enter();
    let sum = rt.block_on(async {
        match row.as_str() {
            "bare" => Some(drive(Echo, calls).await),
            "bulkhead/steadfast" => {
                let layer = BulkheadLayer::builder()
                    .max_concurrent(PERMITS)
                    .build()
                    .expect("valid settings");
                Some(drive(layer.layer(Echo), calls).await)
            }
            "bulkhead/tower" => {
                let service = tower::limit::ConcurrencyLimit::new(Echo, PERMITS);
                Some(drive(service, calls).await)
            }
            "rate_limit/steadfast" => {
                let layer = RateLimitLayer::builder()
                    .quota(Quota::per_second(RATE))
                    .build()
                    .expect("valid settings");
                Some(drive(layer.layer(Echo), calls).await)
            }
            "rate_limit/keyed" => {
                let layer = RateLimitLayer::builder()
                    .quota(Quota::per_second(RATE))
                    .key(|(n, _): &Request| n % 1_000)
                    .build()
                    .expect("valid settings");
                Some(drive(layer.layer(Echo), calls).await)
            }
            "rate_limit/tower" => {
                let rate = tower::limit::rate::Rate::new(u64::from(RATE), Duration::from_secs(1));
                Some(drive(tower::limit::RateLimit::new(Echo, rate), calls).await)
            }
            "retry/steadfast" => {
                let layer = RetryLayer::builder()
                    .max_attempts(3)
                    .unlimited_budget()
                    .build()
                    .expect("valid settings");
                Some(drive(layer.layer(Echo), calls).await)
            }
            "retry/tower" => {
                let service = tower::retry::Retry::new(Attempts(3), Echo);
                Some(drive(service, calls).await)
            }
            "retry/suite_echo" => {
                let layer = RetryLayer::builder()
                    .max_attempts(3)
                    .unlimited_budget()
                    .build()
                    .expect("valid settings");
                Some(drive(layer.layer(SuiteEcho { rounds: 0 }), calls).await)
            }
            "retry/tower_suite_echo" => {
                let service = tower::retry::Retry::new(Attempts(3), SuiteEcho { rounds: 0 });
                Some(drive(service, calls).await)
            }
            "retry_budget/steadfast" => {
                let layer = RetryLayer::builder()
                    .max_attempts(3)
                    .build()
                    .expect("valid settings");
                Some(drive(layer.layer(Echo), calls).await)
            }
            "policy/steadfast" => {
                let policy = standard("bench").build().expect("valid settings");
                Some(drive(policy.layer(Echo), calls).await)
            }
            "policy/observed" => {
                let policy = standard("bench").observe().build().expect("valid settings");
                Some(drive(policy.layer(Echo), calls).await)
            }
            "policy/observed_info_listener" => {
                let _subscriber =
                    tracing::subscriber::set_default(Info(std::sync::atomic::AtomicU64::new(0)));
                let other = standard("other")
                    .on_event(|event| {
                        black_box(event);
                    })
                    .build()
                    .expect("valid settings");
                drive(other.layer(Echo), 1).await;
                let policy = standard("bench").observe().build().expect("valid settings");
                Some(drive(policy.layer(Echo), calls).await)
            }
            "retry_budget/tower" => {
                let service = tower::retry::Retry::new(Budgeted::new(), Echo);
                Some(drive(service, calls).await)
            }
            "hedge/steadfast" => {
                let layer = HedgeLayer::builder()
                    .delay(Duration::from_secs(1))
                    .unlimited_budget()
                    .build()
                    .expect("valid settings");
                Some(drive(layer.layer(Echo), calls).await)
            }
            "scatter/steadfast" => {
                let scatter = Scatter::builder()
                    .branch(Echo)
                    .branch(Echo)
                    .build()
                    .expect("valid settings")
                    .map_response(|gathered| gathered.answers().count() as u64);
                Some(drive(scatter, calls).await)
            }
            "policy/standard" => {
                let second = Duration::from_secs(1);
                let policy = Policy::builder()
                    .total_timeout(5 * second)
                    .bulkhead(BulkheadLayer::builder().max_concurrent(PERMITS))
                    .retry(
                        RetryLayer::builder()
                            .max_attempts(3)
                            .backoff(Backoff::exponential(Duration::from_millis(10))),
                    )
                    .circuit_breaker(CircuitBreakerLayer::builder().count_window(100))
                    .attempt_timeout(second)
                    .build()
                    .expect("valid settings");
                Some(drive(policy.layer(Echo), calls).await)
            }
            "policy/service_builder" => {
                let service = ServiceBuilder::new()
                    .layer(total_layer())
                    .layer(bulkhead_layer())
                    .layer(retry_layer())
                    .layer(breaker_layer())
                    .layer(attempt_layer())
                    .service(Echo);
                Some(drive(service, calls).await)
            }
            "part/total_deadline" => Some(drive(total_layer().layer(Echo), calls).await),
            "part/bulkhead" => Some(drive(bulkhead_layer().layer(Echo), calls).await),
            "part/retry" => Some(drive(retry_layer().layer(Echo), calls).await),
            "part/circuit_breaker" => Some(drive(breaker_layer().layer(Echo), calls).await),
            "part/attempt_timeout" => Some(drive(attempt_layer().layer(Echo), calls).await),
            "policy/attempt" => {
                let policy = Policy::builder()
                    .attempt_timeout(Duration::from_secs(1))
                    .build()
                    .expect("valid settings");
                Some(drive(policy.layer(Echo), calls).await)
            }
            "fallback/steadfast" => {
                let layer = FallbackLayer::builder()
                    .static_response(0u64)
                    .build()
                    .expect("valid settings");
                Some(drive(layer.layer(Echo), calls).await)
            }
            "chaos/switched_off" => {
                let layer = ChaosLayer::builder()
                    .error_rate(0.1)
                    .latency(0.1, Duration::from_millis(10), Duration::from_millis(100))
                    .enabled(false)
                    .build()
                    .expect("valid settings");
                Some(drive(layer.layer(Echo), calls).await)
            }
            "chaos/zero_rates" => {
                let layer = ChaosLayer::builder().build().expect("valid settings");
                Some(drive(layer.layer(Echo), calls).await)
            }
            "policy/empty" => {
                let policy = Policy::builder().build().expect("valid settings");
                Some(drive(policy.layer(Echo), calls).await)
            }
            _ => None,
        }
    });
    match sum {
        Some(sum) => {
            black_box(sum);
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("unknown row {row}");
            ExitCode::FAILURE
        }
    }
}
