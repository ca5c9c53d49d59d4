//! The soak run shared by `tests/soak` (tens of thousands of calls) and
//! `examples/soak.rs` (a million): calls with injected faults through the
//! full stack of layers on a multi-thread runtime, some of them abandoned
//! mid-flight, then checks that nothing was lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::bulkhead::{KeyedBulkheadHandle, KeyedBulkheadLayer};
use steadfast::chaos::ChaosLayer;
use steadfast::circuit_breaker::KeyedCircuitBreakerLayer;
use steadfast::retry::{Backoff, Jitter, RetryLayer};
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

/// Calls `service` once. Going through a function whose future is declared
/// `Send` sidesteps a rustc limitation (the same for tower's own layers):
/// an `async` block that holds a stack of `Into<BoxError>` layers' futures
/// across an `.await` fails the `Send` check of `tokio::spawn` with
/// "implementation of `From` is not general enough".
fn call<S>(service: S, n: u64) -> impl Future<Output = Result<u64, BoxError>> + Send
where
    S: Service<u64, Response = u64, Error = BoxError> + Send,
    S::Future: Send,
{
    service.oneshot(n)
}

/// Distinct keys the calls use, more than each keyed store may hold.
pub(crate) const KEYS: u64 = 96;
/// The most keys each keyed store holds.
pub(crate) const MAX_KEYS: u64 = 32;
/// Permits per key.
pub(crate) const PERMITS: usize = 4;

/// What a soak run saw.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) calls: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Failed calls that a layer refused (bulkhead full, circuit open,
    /// deadline): with more keys in flight than places, the keys left over
    /// share one overflow bulkhead, so many are refused by design.
    pub(crate) refused: u64,
    pub(crate) abandoned: u64,
    pub(crate) rss_after_warm_up: Option<u64>,
    pub(crate) rss_at_end: Option<u64>,
}

/// Counts a failed call, and whether a layer refused it.
fn tally(err: &BoxError, failed: &AtomicU64, refused: &AtomicU64) -> u64 {
    if steadfast::error::rejection(err).is_some() {
        refused.fetch_add(1, Ordering::Relaxed);
    }
    failed.fetch_add(1, Ordering::Relaxed)
}

/// Resident memory of this process, in bytes (Linux).
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Runs `calls` calls from `tasks` tasks and checks what must hold after.
/// Panics with a message naming the broken invariant.
pub(crate) async fn soak(calls: u64, tasks: u64, seed: u64) -> Outcome {
    let bulkheads = KeyedBulkheadLayer::builder(|n: &u64| *n % KEYS)
        .max_concurrent(PERMITS)
        .max_wait(Duration::from_millis(5))
        .queue(8)
        .max_keys(MAX_KEYS)
        .build()
        .expect("bulkhead settings");
    let bulkhead_handle = bulkheads.handle();
    let breakers = KeyedCircuitBreakerLayer::builder()
        .key(|n: &u64| *n % KEYS)
        .count_window(20)
        .minimum_calls(10)
        .failure_rate_threshold(50.0)
        .open_duration(Duration::from_millis(20))
        .half_open_probes(2)
        .max_keys(MAX_KEYS)
        .build()
        .expect("breaker settings");
    let chaos = ChaosLayer::builder()
        .error_rate(0.10)
        .hang_rate(0.01)
        .latency(0.30, Duration::from_micros(100), Duration::from_millis(3))
        .seed(seed)
        .build()
        .expect("chaos settings");

    let service = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_millis(60)).expect("deadline"))
        .layer(bulkheads)
        .layer(
            RetryLayer::builder()
                .max_attempts(3)
                .backoff(
                    Backoff::exponential(Duration::from_micros(200))
                        .cap(Duration::from_millis(2))
                        .jitter(Jitter::Full),
                )
                .seed(seed)
                .build()
                .expect("retry settings"),
        )
        .layer(breakers.clone())
        .layer(TimeoutLayer::new(Duration::from_millis(10)).expect("timeout"))
        .layer(chaos)
        .service(service_fn(|n: u64| async move {
            tokio::task::yield_now().await;
            Ok::<_, BoxError>(n)
        }));

    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let abandoned = Arc::new(AtomicU64::new(0));
    let warm_up = calls / 10;
    let rss_after_warm_up = Arc::new(AtomicU64::new(0));

    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (service, next, ok, failed, refused, abandoned, rss) = (
            service.clone(),
            next.clone(),
            ok.clone(),
            failed.clone(),
            refused.clone(),
            abandoned.clone(),
            rss_after_warm_up.clone(),
        );
        workers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= calls {
                    break;
                }
                if n == warm_up {
                    rss.store(resident_bytes().unwrap_or(0), Ordering::Relaxed);
                }
                let call = call(service.clone(), n);
                // One call in seven is abandoned after a short while, at
                // whatever point it has reached.
                if n % 7 == 3 {
                    match tokio::time::timeout(Duration::from_micros(50 + (n * 37) % 900), call)
                        .await
                    {
                        Ok(Ok(_)) => ok.fetch_add(1, Ordering::Relaxed),
                        Ok(Err(err)) => tally(&err, &failed, &refused),
                        Err(_) => abandoned.fetch_add(1, Ordering::Relaxed),
                    };
                } else {
                    match call.await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(err) => tally(&err, &failed, &refused),
                    };
                }
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.expect("a soak task panicked");
    }
    drop(service);

    check_bulkheads(&bulkhead_handle);
    for (key, handle) in breakers.handles() {
        let snapshot = handle.snapshot();
        assert_eq!(
            snapshot.probes_in_flight, 0,
            "breaker of key {key} still counts probes in flight: {snapshot:?}"
        );
    }
    assert!(
        breakers.len() <= MAX_KEYS,
        "{} breakers kept, bound {MAX_KEYS}",
        breakers.len()
    );

    let outcome = Outcome {
        calls,
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        abandoned: abandoned.load(Ordering::Relaxed),
        rss_after_warm_up: Some(rss_after_warm_up.load(Ordering::Relaxed)).filter(|b| *b > 0),
        rss_at_end: resident_bytes(),
    };
    assert_eq!(
        outcome.ok + outcome.failed + outcome.abandoned,
        calls,
        "every call ended one way or another"
    );
    outcome
}

fn check_bulkheads(handle: &KeyedBulkheadHandle<u64>) {
    assert!(
        handle.len() <= MAX_KEYS,
        "{} bulkheads kept, bound {MAX_KEYS}",
        handle.len()
    );
    for (key, bulkhead) in handle.handles() {
        assert_eq!(
            bulkhead.in_flight(),
            0,
            "bulkhead of key {key} kept a permit"
        );
        assert_eq!(bulkhead.waiting(), 0, "bulkhead of key {key} kept a waiter");
        assert_eq!(
            bulkhead.available(),
            PERMITS,
            "bulkhead of key {key} lost a permit"
        );
    }
}
