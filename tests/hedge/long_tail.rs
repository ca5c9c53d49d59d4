//! The long tail: 95 % of calls take 10 ms, 5 % take 1 s (seeded). Over
//! 1,000 calls, hedging at a latency percentile cuts the p99 to at most a
//! third of the unhedged p99, for at most 10 % extra calls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::hedge::HedgeLayer;
use steadfast::retry::{RandomSource, RetryBudget, SeededRandom};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt, service_fn};

const CALLS: usize = 1_000;

/// A backend whose every call draws its latency from a seeded generator.
fn long_tail(
    seed: u64,
    calls: Arc<AtomicUsize>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    let random = Arc::new(Mutex::new(SeededRandom::new(seed)));
    service_fn(move |x: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        // 5 % of draws are slow.
        let slow = random.lock().unwrap().next_u64() % 100 < 5;
        async move {
            let ms = if slow { 1_000 } else { 10 };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, BoxError>(x)
        }
    })
}

/// The latencies of `CALLS` calls made one after another.
async fn latencies<S>(mut svc: S) -> Vec<Duration>
where
    S: Service<u32, Response = u32, Error = BoxError>,
{
    let mut out = Vec::with_capacity(CALLS);
    for i in 0..CALLS as u32 {
        let started = Instant::now();
        assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
        out.push(started.elapsed());
    }
    out.sort();
    out
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(start_paused = true)]
async fn hedging_cuts_the_p99_to_a_third_for_at_most_ten_percent_more_calls() {
    let seed = 0x5eed_f00d;

    let plain_calls = Arc::new(AtomicUsize::new(0));
    let plain = latencies(long_tail(seed, plain_calls.clone())).await;
    assert_eq!(plain_calls.load(Ordering::SeqCst), CALLS);

    let hedged_calls = Arc::new(AtomicUsize::new(0));
    let budget = RetryBudget::builder()
        .ratio(0.1)
        .reserve(10)
        .build()
        .unwrap();
    let layer = HedgeLayer::builder()
        .latency_percentile(0.1, Duration::from_millis(5))
        .max_hedges(2)
        .budget(budget)
        .build()
        .unwrap();
    let handle = layer.handle();
    let hedged = latencies(layer.layer(long_tail(seed, hedged_calls.clone()))).await;
    let extra = hedged_calls.load(Ordering::SeqCst) - CALLS;

    let (plain_p99, hedged_p99) = (p99(&plain), p99(&hedged));
    println!(
        "unhedged p99 {plain_p99:?}, hedged p99 {hedged_p99:?}, extra calls {extra}, delay {:?}",
        handle.delay()
    );
    assert_eq!(plain_p99, Duration::from_secs(1));
    assert!(hedged_p99 * 3 <= plain_p99, "hedged p99 {hedged_p99:?}");
    assert!(extra * 10 <= CALLS, "{extra} extra calls");
    assert_eq!(extra as u64, handle.hedges_sent());
    // The delay settled at the 10 ms of the fast calls.
    let delay = handle.delay().unwrap();
    assert!(delay >= Duration::from_millis(10) && delay < Duration::from_millis(11));
}
