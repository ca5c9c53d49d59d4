//! Windows whose successes enter in per-thread batches (count windows and
//! minimum calls from 16 up): the counts stay within the documented bound,
//! from one thread and from several at once.

use std::time::Duration;

use steadfast::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, State};
use tower::{Layer, Service, ServiceExt, service_fn};

/// A service that fails on `true`.
fn flaky() -> impl Service<bool, Response = (), Error = &'static str, Future: Send> + Clone + Send {
    service_fn(|fail: bool| async move { if fail { Err("reset") } else { Ok(()) } })
}

async fn call<S: Service<bool>>(service: &mut S, fail: bool) -> bool {
    match service.ready().await {
        Ok(ready) => ready.call(fail).await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(start_paused = true)]
async fn a_count_window_of_100_opens_within_its_bound_of_the_exact_failure_count() {
    // Batch 8 for a window of 100: at most 7 successes of this thread wait.
    let layer = CircuitBreakerLayer::builder()
        .count_window(100)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(flaky());
    for _ in 0..100 {
        assert!(call(&mut service, false).await);
    }
    let calls = handle.snapshot().calls;
    assert!((93..=100).contains(&calls), "{calls} calls in the window");
    let mut failures = 0;
    while handle.state() == State::Closed {
        call(&mut service, true).await;
        failures += 1;
        assert!(failures <= 57, "still closed after {failures} failures");
    }
    // Exactly, 50 failures after 100 successes open it.
    assert!(failures >= 43, "opened after {failures} failures");
    assert_eq!(handle.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_time_window_counts_every_failure_at_once() {
    let layer = CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(60), 10)
        .minimum_calls(100)
        .failure_rate_threshold(100.0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(flaky());
    for round in 0..10u64 {
        assert!(call(&mut service, false).await);
        call(&mut service, true).await;
        let snapshot = handle.snapshot();
        assert_eq!(snapshot.failures, round + 1);
        // Batch 8 for 100 minimum calls: at most 7 successes wait.
        assert!(snapshot.calls + 7 >= 2 * (round + 1), "{snapshot:?}");
        assert!(snapshot.calls <= 2 * (round + 1), "{snapshot:?}");
    }
    // Past the window, the waiting successes enter the bucket of the
    // moment their batch fills; the failures left with their buckets.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(handle.snapshot().failures, 0);
    assert!(handle.snapshot().calls <= 7);
}

fn hammer(service: impl Service<bool, Future: Send> + Clone + Send, threads: usize, calls: usize) {
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let mut service = service.clone();
            scope.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    for _ in 0..calls {
                        call(&mut service, false).await;
                    }
                });
            });
        }
    });
}

fn assert_full_within(handle: &CircuitBreakerHandle, size: u64, bound: u64) {
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.state, State::Closed);
    assert_eq!(snapshot.failures, 0);
    assert!(snapshot.calls <= size, "{snapshot:?}");
    assert!(snapshot.calls + bound >= size, "{snapshot:?}");
}

#[test]
fn threads_calling_at_once_fill_a_count_window_within_the_bound() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(100)
        .build()
        .unwrap();
    let handle = layer.handle();
    hammer(layer.layer(flaky()), 4, 10_000);
    // 4 threads, each with at most 7 successes waiting.
    assert_full_within(&handle, 100, 4 * 7);
}

#[test]
fn threads_calling_at_once_fill_a_time_window_within_the_bound() {
    let layer = CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(3_600), 10)
        .build()
        .unwrap();
    let handle = layer.handle();
    hammer(layer.layer(flaky()), 4, 10_000);
    assert_full_within(&handle, 40_000, 4 * 7);
}

#[test]
fn threads_crossing_bucket_boundaries_count_every_batch_once() {
    // Buckets of 1 ms: each thread's batches keep moving to a new bucket
    // while the others write theirs.
    let layer = CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(1), 1_000)
        .build()
        .unwrap();
    let handle = layer.handle();
    let started = std::time::Instant::now();
    hammer(layer.layer(flaky()), 4, 50_000);
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.failures, 0);
    assert!(snapshot.calls <= 200_000, "{snapshot:?}");
    // Every call is still in the window unless the run outlasted it.
    if started.elapsed() < Duration::from_millis(900) {
        assert_full_within(&handle, 200_000, 4 * 7);
    }
}

#[test]
fn a_window_below_16_stays_exact() {
    let layer = CircuitBreakerLayer::builder()
        .count_window(15)
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(flaky());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for n in 1..=15u64 {
        assert!(rt.block_on(call(&mut service, false)));
        assert_eq!(handle.snapshot().calls, n);
    }
}

#[test]
fn a_successful_call_through_either_batched_window_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let count = CircuitBreakerLayer::builder()
        .count_window(100)
        .build()
        .unwrap();
    let time = CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(60), 10)
        .build()
        .unwrap();
    for layer in [count, time] {
        let mut service = layer.layer(flaky());
        // The first call takes this thread's lane.
        assert!(rt.block_on(call(&mut service, false)));
        let (all_ok, allocations) = crate::counting_alloc::allocations_in(|| {
            rt.block_on(async {
                let mut all_ok = true;
                for _ in 0..1_000 {
                    all_ok &= call(&mut service, false).await;
                }
                all_ok
            })
        });
        assert!(all_ok);
        assert_eq!(allocations, 0);
    }
}
