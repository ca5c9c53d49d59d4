//! Every layer in one run: the per-call overhead of each steadfast layer on
//! its success path beside its peers (tower 0.5, tower-resilience 0.13,
//! governor), the heap allocations per call of each, and one shared
//! standard stack driven from one and two threads.
//!
//! Every service wraps the same always-ready inner service and runs its
//! calls back to back inside one current-thread runtime, so the figures
//! are the layers' cost plus a constant for the inner call (`bare/inner`).
//! Nothing is ever refused, retried, hedged or faulted: quotas, permits and
//! delays are far beyond what the calls reach.
//!
//! Allocations are counted by a global allocator over 10,000 calls after a
//! warm-up, on the calling thread; the table is printed at the end of the
//! run and written to `target/criterion/allocs.txt`. Counting stays off
//! while criterion times, but every allocation still pays for the check of
//! a thread-local flag.
//!
//! At the end, the bulkhead, rate limit and retry rows are timed again
//! beside their tower peers in alternating chunks of calls, so that both
//! meet the same machine conditions; the medians and the median of the
//! per-round ratios are printed and written to
//! `target/criterion/ratios.txt`.
//!
//! ```text
//! cargo bench --all-features --bench suite -- --warm-up-time 1 --measurement-time 3
//! ```

use std::convert::Infallible;
use std::fmt::{Debug, Write as _};
use std::future::{Ready, ready};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures::TryFutureExt;
use steadfast::BoxError;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::chaos::ChaosLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::fallback::FallbackLayer;
use steadfast::hedge::HedgeLayer;
use steadfast::policy::Policy;
use steadfast::rate_limit::{Quota, RateLimitLayer};
use steadfast::retry::{Backoff, RetryLayer};
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tokio::runtime::Runtime;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_resilience as tr;

#[path = "breaker_peers.rs"]
mod breaker_peers;
mod common;
#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;

use breaker_peers::{Failsafe, Reclosed};
use common::{Attempts, Budgeted, Hedgeable, Request, bench_service, runtime};
use counting_alloc::allocations_in;

/// Calls counted per service, after as many again to warm up.
const COUNTED_CALLS: u64 = 10_000;

/// A rate no call of this suite reaches.
const RATE: u32 = 1_000_000_000;

/// Permits no call of this suite exhausts.
const PERMITS: usize = 1_024;

const ATTEMPT: Duration = Duration::from_secs(1);
const TOTAL: Duration = Duration::from_secs(5);

/// Always ready; answers at once after `rounds` rounds of arithmetic (400
/// are about a microsecond).
#[derive(Clone, Copy)]
struct Echo {
    rounds: u64,
}

const ECHO: Echo = Echo { rounds: 0 };
const BUSY: Echo = Echo { rounds: 400 };

impl Service<Request> for Echo {
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

/// A direct governor check before the inner call: the least a rate
/// limiting layer can do. The quota is never reached.
struct GovernorCheck<S> {
    limiter: governor::DefaultDirectRateLimiter,
    inner: S,
}

impl<S> Service<Request> for GovernorCheck<S>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = futures::future::ErrInto<S::Future, BoxError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        black_box(self.limiter.check().is_ok());
        self.inner.call(request).err_into()
    }
}

/// The error tower-resilience's retry sees from its breaker over its time
/// limiter over `Echo`.
type PeerStackError =
    tr::circuitbreaker::CircuitBreakerError<tr::timelimiter::TimeLimiterError<Infallible>>;

/// The standard stack: total timeout → bulkhead → retry within a budget →
/// circuit breaker → attempt timeout.
fn steadfast_stack<S>(
    inner: S,
) -> impl Service<Request, Response = u64, Error = BoxError> + Clone + Send
where
    S: Service<Request, Response = u64, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
    Policy::builder()
        .total_timeout(TOTAL)
        .bulkhead(BulkheadLayer::builder().max_concurrent(PERMITS))
        .retry(RetryLayer::builder().max_attempts(3))
        .circuit_breaker(CircuitBreakerLayer::builder())
        .attempt_timeout(ATTEMPT)
        .build()
        .expect("valid settings")
        .layer(inner)
}

/// tower's nearest stack: timeout → concurrency limit → retry with
/// `TpsBudget` → timeout (tower has no breaker).
fn tower_stack(
    inner: Echo,
) -> impl Service<Request, Response = u64, Error = BoxError> + Clone + Send {
    ServiceBuilder::new()
        .timeout(TOTAL)
        .concurrency_limit(PERMITS)
        .retry(Budgeted::new())
        .timeout(ATTEMPT)
        .service(inner)
}

fn peer_breaker() -> tr::circuitbreaker::CircuitBreakerLayer {
    tr::circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .expect("valid settings")
}

fn peer_bulkhead() -> tr::bulkhead::BulkheadLayer {
    tr::bulkhead::BulkheadLayer::builder()
        .max_concurrent_calls(PERMITS)
        .build()
        .expect("valid settings")
}

fn peer_time_limiter(timeout: Duration) -> tr::timelimiter::TimeLimiterLayer {
    tr::timelimiter::TimeLimiterLayer::builder()
        .timeout_duration(timeout)
        .build()
}

fn peer_budget() -> Arc<dyn tr::retry::RetryBudget> {
    tr::retry::RetryBudgetBuilder::new()
        .token_bucket()
        .tokens_per_second(10.0)
        .max_tokens(100)
        .build()
        .expect("valid settings")
}

/// tower-resilience's stack: time limiter → bulkhead → retry with a token
/// bucket budget → circuit breaker → time limiter.
fn peer_stack(inner: Echo) -> impl Service<Request, Response = u64, Error: Debug> + Clone + Send {
    ServiceBuilder::new()
        .layer(peer_time_limiter(TOTAL))
        .layer(peer_bulkhead())
        .layer(
            tr::retry::RetryLayer::<Request, u64, PeerStackError>::builder()
                .max_attempts(3)
                .exponential_backoff(Duration::from_millis(100))
                .budget(peer_budget())
                .build(),
        )
        .layer(peer_breaker())
        .layer(peer_time_limiter(ATTEMPT))
        .service(inner)
}

/// The policy of `benches/calls.rs` `policy/standard`: total deadline
/// 5 s, bulkhead 1,024, retry (3 attempts, exponential backoff, default
/// budget), breaker (count window 100), attempt timeout 1 s.
fn standard_policy<S>(
    inner: S,
) -> impl Service<Request, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static
where
    S: Service<Request, Response = u64, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
    Policy::builder()
        .total_timeout(TOTAL)
        .bulkhead(standard_bulkhead())
        .retry(standard_retry())
        .circuit_breaker(standard_breaker())
        .attempt_timeout(ATTEMPT)
        .build()
        .expect("valid settings")
        .layer(inner)
}

fn standard_bulkhead() -> steadfast::bulkhead::BulkheadLayerBuilder {
    BulkheadLayer::builder().max_concurrent(PERMITS)
}

fn standard_retry() -> steadfast::retry::RetryLayerBuilder {
    RetryLayer::builder()
        .max_attempts(3)
        .backoff(Backoff::exponential(Duration::from_millis(10)))
}

fn standard_breaker() -> steadfast::circuit_breaker::CircuitBreakerBuilder {
    CircuitBreakerLayer::builder().count_window(100)
}

/// The same five layers as [`standard_policy`], stacked with tower's
/// `ServiceBuilder`.
fn standard_service_builder<S>(
    inner: S,
) -> impl Service<Request, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static
where
    S: Service<Request, Response = u64, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
    ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(TOTAL).expect("valid settings"))
        .layer(standard_bulkhead().build().expect("valid settings"))
        .layer(standard_retry().build().expect("valid settings"))
        .layer(standard_breaker().build().expect("valid settings"))
        .layer(TimeoutLayer::new(ATTEMPT).expect("valid settings"))
        .service(inner)
}

fn steadfast_bulkhead() -> impl Service<Request, Response = u64, Error: Debug> {
    BulkheadLayer::builder()
        .max_concurrent(PERMITS)
        .build()
        .unwrap()
        .layer(ECHO)
}

fn tower_bulkhead() -> impl Service<Request, Response = u64, Error: Debug> {
    tower::limit::ConcurrencyLimit::new(ECHO, PERMITS)
}

fn steadfast_rate_limit() -> impl Service<Request, Response = u64, Error: Debug> {
    RateLimitLayer::builder()
        .quota(Quota::per_second(RATE))
        .build()
        .unwrap()
        .layer(ECHO)
}

fn tower_rate_limit() -> impl Service<Request, Response = u64, Error: Debug> {
    let rate = tower::limit::rate::Rate::new(u64::from(RATE), Duration::from_secs(1));
    tower::limit::RateLimit::new(ECHO, rate)
}

/// Retry without a budget: only `max_attempts` bounds it.
fn steadfast_retry() -> impl Service<Request, Response = u64, Error: Debug> {
    RetryLayer::builder()
        .max_attempts(3)
        .unlimited_budget()
        .build()
        .unwrap()
        .layer(ECHO)
}

fn steadfast_retry_budget() -> impl Service<Request, Response = u64, Error: Debug> {
    RetryLayer::builder()
        .max_attempts(3)
        .build()
        .unwrap()
        .layer(ECHO)
}

/// Nanoseconds per call over `n` calls through `service`.
async fn chunk<S>(service: &mut S, n: u64) -> f64
where
    S: Service<Request, Response = u64>,
    S::Error: Debug,
{
    let start = Instant::now();
    for i in 0..n {
        let ready = service.ready().await.expect("ready");
        black_box(ready.call(black_box((i, 1))).await.expect("call"));
    }
    start.elapsed().as_secs_f64() * 1e9 / n as f64
}

/// steadfast's layer and its tower peer timed in alternating chunks, so
/// that each round's ratio compares them under the same machine
/// conditions: one line with the medians of both and of the ratios.
fn paired<A, B>(rt: &Runtime, group: &str, mut ours: A, mut peer: B) -> String
where
    A: Service<Request, Response = u64>,
    A::Error: Debug,
    B: Service<Request, Response = u64>,
    B::Error: Debug,
{
    const CHUNK: u64 = 256;
    const ROUNDS: usize = 2_000;
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        for round in 0..ROUNDS + ROUNDS / 10 {
            // Which goes first alternates, so that neither always runs on
            // caches the other warmed.
            let (x, y) = if round % 2 == 0 {
                let x = chunk(&mut ours, CHUNK).await;
                (x, chunk(&mut peer, CHUNK).await)
            } else {
                let y = chunk(&mut peer, CHUNK).await;
                (chunk(&mut ours, CHUNK).await, y)
            };
            // The first tenth warms up.
            if round >= ROUNDS / 10 {
                a.push(x);
                b.push(y);
                ratios.push(x / y);
            }
        }
    });
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (x, y) = (median(&mut a), median(&mut b));
    format!(
        "{group:<13} steadfast {x:6.1} ns  tower {y:6.1} ns  ratio {:.3}  difference {:+.1} ns\n",
        median(&mut ratios),
        x - y
    )
}

/// The same-run ratios of the bulkhead, rate limit and retry rows to their
/// tower peers, over the bare call's inner service.
fn ratios() -> String {
    let rt = runtime();
    let _guard = rt.enter();
    let mut out = String::new();
    out += &paired(&rt, "bulkhead", steadfast_bulkhead(), tower_bulkhead());
    out += &paired(
        &rt,
        "rate_limit",
        steadfast_rate_limit(),
        tower_rate_limit(),
    );
    out += &paired(
        &rt,
        "retry",
        steadfast_retry(),
        tower::retry::Retry::new(Attempts(3), ECHO),
    );
    out += &paired(
        &rt,
        "retry_budget",
        steadfast_retry_budget(),
        tower::retry::Retry::new(Budgeted::new(), ECHO),
    );
    out
}

/// Runs `calls` calls of `svc` back to back in `rt`.
fn calls<S>(rt: &Runtime, svc: &mut S, calls: u64)
where
    S: Service<Request, Response = u64>,
    S::Error: Debug,
{
    rt.block_on(async {
        for i in 0..calls {
            let ready = svc.ready().await.expect("ready");
            black_box(ready.call(black_box((i, 1))).await.expect("call"));
        }
    });
}

/// The overhead rows: each service is counted, then timed.
struct Rows<'a> {
    c: &'a mut Criterion,
    rt: &'a Runtime,
    allocations: Vec<(String, f64)>,
}

impl Rows<'_> {
    fn row<S>(&mut self, group: &str, name: &str, mut svc: S)
    where
        S: Service<Request, Response = u64>,
        S::Error: Debug,
    {
        calls(self.rt, &mut svc, COUNTED_CALLS);
        let ((), allocations) = allocations_in(|| calls(self.rt, &mut svc, COUNTED_CALLS));
        self.allocations.push((
            format!("{group}/{name}"),
            allocations as f64 / COUNTED_CALLS as f64,
        ));
        bench_service(self.c, &format!("suite/{group}"), name, self.rt, svc);
    }
}

fn overhead(c: &mut Criterion) -> Vec<(String, f64)> {
    let rt = runtime();
    let _guard = rt.enter();
    let mut rows = Rows {
        c,
        rt: &rt,
        allocations: Vec::new(),
    };

    rows.row("bare", "inner", ECHO);

    let group = "attempt_timeout";
    rows.row(
        group,
        "steadfast",
        TimeoutLayer::new(ATTEMPT).unwrap().layer(ECHO),
    );
    rows.row(group, "tower", tower::timeout::Timeout::new(ECHO, ATTEMPT));
    rows.row(
        group,
        "tower_resilience",
        peer_time_limiter(ATTEMPT).layer(ECHO),
    );

    let group = "total_deadline";
    rows.row(
        group,
        "steadfast",
        TotalDeadlineLayer::new(TOTAL).unwrap().layer(ECHO),
    );
    rows.row(group, "tower", tower::timeout::Timeout::new(ECHO, TOTAL));

    let group = "retry";
    rows.row(group, "steadfast", steadfast_retry());
    rows.row(group, "tower", tower::retry::Retry::new(Attempts(3), ECHO));

    let group = "retry_budget";
    rows.row(group, "steadfast", steadfast_retry_budget());
    rows.row(
        group,
        "tower",
        tower::retry::Retry::new(Budgeted::new(), ECHO),
    );
    rows.row(
        group,
        "tower_resilience",
        tr::retry::RetryLayer::<Request, u64, Infallible>::builder()
            .max_attempts(3)
            .exponential_backoff(Duration::from_millis(100))
            .budget(peer_budget())
            .build()
            .layer(ECHO),
    );

    let group = "circuit_breaker";
    rows.row(
        group,
        "steadfast",
        CircuitBreakerLayer::builder().build().unwrap().layer(ECHO),
    );
    rows.row(group, "tower_resilience", peer_breaker().layer(ECHO));

    // The closed breaker beside the peers that keep the same windows.
    let group = "circuit_breaker_count_100";
    rows.row(group, "steadfast", count_breaker(ECHO));
    rows.row(group, "recloser", Reclosed::new(ECHO, 100));
    let group = "circuit_breaker_time_60s";
    rows.row(group, "steadfast", time_breaker(ECHO));
    rows.row(group, "failsafe", Failsafe::new(ECHO, BREAKER_SPAN, 100));

    let group = "bulkhead";
    rows.row(group, "steadfast", steadfast_bulkhead());
    rows.row(group, "tower", tower_bulkhead());
    rows.row(group, "tower_resilience", peer_bulkhead().layer(ECHO));

    let group = "rate_limit";
    rows.row(group, "steadfast", steadfast_rate_limit());
    rows.row(group, "tower", tower_rate_limit());
    let quota = NonZeroU32::new(RATE).expect("non-zero");
    rows.row(
        group,
        "governor_check",
        GovernorCheck {
            limiter: governor::RateLimiter::direct(
                governor::Quota::per_second(quota).allow_burst(quota),
            ),
            inner: ECHO,
        },
    );
    rows.row(
        group,
        "tower_resilience",
        tr::ratelimiter::RateLimiterLayer::builder()
            .limit_for_period(RATE as usize)
            .refresh_period(Duration::from_secs(1))
            .build()
            .unwrap()
            .layer(ECHO),
    );

    let group = "fallback";
    rows.row(
        group,
        "steadfast",
        FallbackLayer::builder()
            .static_response(0u64)
            .build()
            .unwrap()
            .layer(ECHO),
    );
    rows.row(
        group,
        "tower_resilience",
        tr::fallback::FallbackLayer::<Request, u64, Infallible>::builder()
            .value(0)
            .build()
            .layer(ECHO),
    );

    let group = "hedge";
    // Defaults: one hedge at the 98th percentile, never before 10 ms, with
    // its own budget.
    rows.row(
        group,
        "steadfast",
        HedgeLayer::builder().build().unwrap().layer(ECHO),
    );
    rows.row(
        group,
        "steadfast_fixed_delay",
        HedgeLayer::builder()
            .delay(ATTEMPT)
            .build()
            .unwrap()
            .layer(ECHO),
    );
    // 98th percentile, 10 data points before hedging, 10 s period.
    rows.row(
        group,
        "tower",
        tower::hedge::Hedge::new::<Request>(ECHO, Hedgeable, 10, 0.98, Duration::from_secs(10)),
    );
    rows.row(
        group,
        "tower_resilience",
        tr::hedge::HedgeLayer::builder()
            .delay(ATTEMPT)
            .max_hedged_attempts(2)
            .build()
            .layer(ECHO),
    );

    let group = "chaos";
    rows.row(
        group,
        "steadfast_switched_off",
        ChaosLayer::builder()
            .error_rate(0.1)
            .latency(0.1, Duration::from_millis(10), Duration::from_millis(100))
            .enabled(false)
            .build()
            .unwrap()
            .layer(ECHO),
    );
    rows.row(
        group,
        "steadfast_zero_rates",
        ChaosLayer::builder().build().unwrap().layer(ECHO),
    );
    rows.row(
        group,
        "tower_resilience",
        tr::chaos::ChaosLayer::builder().build().layer(ECHO),
    );

    // The standard policy beside its five layers stacked with
    // `ServiceBuilder`, and each layer alone (the sum of its parts).
    let group = "policy";
    rows.row(group, "standard", standard_policy(ECHO));
    rows.row(group, "service_builder", standard_service_builder(ECHO));
    rows.row(
        group,
        "part_total_deadline",
        TotalDeadlineLayer::new(TOTAL).unwrap().layer(ECHO),
    );
    rows.row(
        group,
        "part_bulkhead",
        standard_bulkhead().build().unwrap().layer(ECHO),
    );
    rows.row(
        group,
        "part_retry",
        standard_retry().build().unwrap().layer(ECHO),
    );
    rows.row(
        group,
        "part_circuit_breaker",
        standard_breaker().build().unwrap().layer(ECHO),
    );
    rows.row(
        group,
        "part_attempt_timeout",
        TimeoutLayer::new(ATTEMPT).unwrap().layer(ECHO),
    );

    let group = "stack";
    rows.row(group, "steadfast", steadfast_stack(ECHO));
    rows.row(group, "tower", tower_stack(ECHO));
    rows.row(group, "tower_resilience", peer_stack(ECHO));

    rows.allocations
}

/// Each of `threads` threads makes `iters` calls through its clone of
/// `service`, in its own current-thread runtime; the time is the wall time
/// of the slowest. The threads spin until all of them run, so that no timed
/// loop starts while a CPU is still waking up.
fn run_threads<S>(service: &S, threads: u64, iters: u64) -> Duration
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
                        let start = Instant::now();
                        for i in 0..iters {
                            let ready = service.ready().await.expect("ready");
                            black_box(ready.call(black_box((i, 1))).await.expect("call"));
                        }
                        start.elapsed()
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn shared(c: &mut Criterion) {
    for (name, inner) in [("no_work", ECHO), ("1us_work", BUSY)] {
        let mut group = c.benchmark_group(format!("suite/shared_{name}"));
        // One service each, made once and cloned into every thread.
        let steadfast = steadfast_stack(inner);
        let tower = tower_stack(inner);
        let peer = peer_stack(inner);
        for threads in [1u64, 2] {
            // One iteration: one call on each thread.
            group.throughput(Throughput::Elements(threads));
            group.bench_function(format!("bare/{threads}_threads"), |b| {
                b.iter_custom(|iters| run_threads(&inner, threads, iters));
            });
            group.bench_function(format!("steadfast/{threads}_threads"), |b| {
                b.iter_custom(|iters| run_threads(&steadfast, threads, iters));
            });
            group.bench_function(format!("tower/{threads}_threads"), |b| {
                b.iter_custom(|iters| run_threads(&tower, threads, iters));
            });
            group.bench_function(format!("tower_resilience/{threads}_threads"), |b| {
                b.iter_custom(|iters| run_threads(&peer, threads, iters));
            });
        }
        group.finish();
    }
}

/// A closed breaker on a count window of 100.
fn count_breaker<S>(inner: S) -> steadfast::circuit_breaker::CircuitBreaker<S> {
    CircuitBreakerLayer::builder()
        .count_window(100)
        .build()
        .unwrap()
        .layer(inner)
}

/// A closed breaker on a time window of 60 s in 10 buckets (100 minimum
/// calls, no slow-call threshold).
fn time_breaker<S>(inner: S) -> steadfast::circuit_breaker::CircuitBreaker<S> {
    CircuitBreakerLayer::builder()
        .time_window(BREAKER_SPAN, 10)
        .build()
        .unwrap()
        .layer(inner)
}

const BREAKER_SPAN: Duration = Duration::from_secs(60);

/// On-CPU time of every thread of this process so far.
fn cpu_time() -> Duration {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten() {
        let Ok(task) = task else { continue };
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

/// `tasks` tasks on the 2-worker runtime `rt`, each making `iters` calls
/// back to back through its clone of `service`: the wall time, and the
/// CPU time over it is added to `load`.
fn run_tasks<S>(
    rt: &Runtime,
    service: &S,
    tasks: u64,
    iters: u64,
    load: &mut (f64, u32),
) -> Duration
where
    S: Service<Request, Response = u64> + Clone + Send + 'static,
    S::Error: Debug,
    S::Future: Send,
{
    let running = Arc::new(AtomicU64::new(0));
    let (start, cpu) = (Instant::now(), cpu_time());
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let mut service = service.clone();
                let running = running.clone();
                tokio::spawn(async move {
                    running.fetch_add(1, Ordering::SeqCst);
                    while running.load(Ordering::SeqCst) < tasks {
                        std::hint::spin_loop();
                    }
                    for i in 0..iters {
                        let ready = service.ready().await.expect("ready");
                        black_box(ready.call(black_box((i, 1))).await.expect("call"));
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
    });
    let wall = start.elapsed();
    load.0 += (cpu_time() - cpu).as_secs_f64() / wall.as_secs_f64();
    load.1 += 1;
    wall
}

/// One shared closed breaker (and one shared standard policy, and its
/// layers stacked with `ServiceBuilder`) on a 2-worker runtime, from one
/// task and from two, with no work in the inner service. Prints each row's CPU time over
/// wall time: near 2.0 for two tasks, or the run is void.
fn breaker_tasks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("suite/breaker_tasks");
    let mut loads = Vec::new();
    for tasks in [1u64, 2] {
        // One iteration: one call on each task.
        group.throughput(Throughput::Elements(tasks));
        let mut row = |name: &str, run: &mut dyn FnMut(u64, &mut (f64, u32)) -> Duration| {
            let mut load = (0.0, 0);
            group.bench_function(format!("{name}/{tasks}_tasks"), |b| {
                b.iter_custom(|iters| run(iters, &mut load));
            });
            loads.push((
                format!("{name}/{tasks}_tasks"),
                load.0 / f64::from(load.1.max(1)),
            ));
        };
        let bare = ECHO;
        row("bare", &mut |n, l| run_tasks(&rt, &bare, tasks, n, l));
        let count = count_breaker(ECHO);
        row("steadfast_count_100", &mut |n, l| {
            run_tasks(&rt, &count, tasks, n, l)
        });
        let time = time_breaker(ECHO);
        row("steadfast_time_60s", &mut |n, l| {
            run_tasks(&rt, &time, tasks, n, l)
        });
        let recloser = Reclosed::new(ECHO, 100);
        row("recloser", &mut |n, l| {
            run_tasks(&rt, &recloser, tasks, n, l)
        });
        let failsafe = Failsafe::new(ECHO, BREAKER_SPAN, 100);
        row("failsafe", &mut |n, l| {
            run_tasks(&rt, &failsafe, tasks, n, l)
        });
        // The standard policy, one shared by every task.
        let policy = standard_policy(ECHO);
        row("policy_standard", &mut |n, l| {
            run_tasks(&rt, &policy, tasks, n, l)
        });
        let stacked = standard_service_builder(ECHO);
        row("policy_service_builder", &mut |n, l| {
            run_tasks(&rt, &stacked, tasks, n, l)
        });
    }
    group.finish();
    println!("\nCPU time / wall time of the breaker task rows (void unless near the task count):");
    for (name, load) in loads {
        println!("{name:32} {load:.2}");
    }
}

/// Where criterion writes its reports.
fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("criterion"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/criterion"))
        })
}

/// Prints `text` and writes it to `name` beside criterion's reports.
fn write_report(name: &str, text: &str) {
    let dir = criterion_dir();
    let path = dir.join(name);
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
        Ok(()) => println!("written to {}", path.display()),
        Err(err) => eprintln!("could not write {}: {err}", path.display()),
    }
}

/// Prints the allocations table and writes it beside criterion's reports.
fn report(allocations: &[(String, f64)]) {
    let width = allocations
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    let mut table = format!("{:width$}  allocs/call\n", "name");
    for (name, per_call) in allocations {
        let _ = writeln!(table, "{name:width$}  {per_call:.2}");
    }
    println!("\nHeap allocations per call, over {COUNTED_CALLS} calls after a warm-up:\n{table}");
    write_report("allocs.txt", &table);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let allocations = overhead(&mut c);
    shared(&mut c);
    breaker_tasks(&mut c);
    c.final_summary();
    report(&allocations);
    let ratios = ratios();
    println!("\nSame-run ratios to tower, alternating chunks (medians):\n{ratios}");
    write_report("ratios.txt", &ratios);
}
