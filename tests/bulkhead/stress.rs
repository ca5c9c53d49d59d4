//! Many tasks on a multi-thread runtime, cancelled at seeded random points:
//! the bulkhead never lets more than its limit through and gets every permit
//! back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::bulkhead::BulkheadLayer;
use steadfast::error::BulkheadFull;
use tower::{Layer, Service, service_fn};

/// SplitMix64: a small seeded generator, enough to pick cancellation points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Polls a future at most `polls` times, then drops it.
struct PollAtMost<F> {
    future: Option<Pin<Box<F>>>,
    polls: u64,
}

impl<F: Future> Future for PollAtMost<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            self.future = None;
            return Poll::Ready(None);
        }
        self.polls -= 1;
        let Some(future) = self.future.as_mut() else {
            return Poll::Ready(None);
        };
        match future.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Some(output)),
            Poll::Pending if self.polls == 0 => {
                // Cancel at this await point.
                self.future = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Counts calls inside the inner service, from `call` until its future ends
/// or is dropped.
struct InFlight(Arc<Counters>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Counters {
    current: AtomicUsize,
    max_seen: AtomicUsize,
}

async fn run(seed: u64, limit: usize, queue: usize, tasks: u64) {
    let layer = BulkheadLayer::builder()
        .max_concurrent(limit)
        .max_wait(Duration::from_secs(3600))
        .queue(queue)
        .build()
        .expect("valid settings");
    let handle = layer.handle();
    let counters = Arc::new(Counters::default());
    let inner_counters = Arc::clone(&counters);
    let service = layer.layer(service_fn(move |yields: u64| {
        let now = inner_counters.current.fetch_add(1, Ordering::SeqCst) + 1;
        inner_counters.max_seen.fetch_max(now, Ordering::SeqCst);
        let guard = InFlight(Arc::clone(&inner_counters));
        async move {
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            drop(guard);
            Ok::<_, BoxError>(yields)
        }
    }));

    let served = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let mut rng = Rng(seed);
    let mut joins = Vec::new();
    for _ in 0..tasks {
        let yields = rng.below(8);
        // Half of the calls are cancelled after 1 to 6 polls.
        let polls = if rng.below(2) == 0 {
            1 + rng.below(6)
        } else {
            u64::MAX
        };
        let mut service = service.clone();
        let (served, refused, cancelled) = (
            Arc::clone(&served),
            Arc::clone(&refused),
            Arc::clone(&cancelled),
        );
        joins.push(tokio::spawn(async move {
            // Calls are made on the worker threads, so that permits are taken
            // and returned concurrently. `service_fn` is always ready.
            let call = PollAtMost {
                future: Some(Box::pin(service.call(yields))),
                polls,
            };
            match call.await {
                Some(Ok(n)) => {
                    assert_eq!(n, yields);
                    served.fetch_add(1, Ordering::Relaxed);
                }
                Some(Err(err)) => {
                    assert!(err.is::<BulkheadFull>(), "unexpected error: {err}");
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let all = async {
        for join in joins {
            join.await.expect("task finished without panicking");
        }
    };
    // A liveness guard, not a timing assertion: a lost wake-up would leave a
    // waiter parked for an hour.
    tokio::time::timeout(Duration::from_secs(120), all)
        .await
        .expect("every call finished: no waiter was left parked");

    let (served, refused, cancelled) = (
        served.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        cancelled.load(Ordering::Relaxed),
    );
    assert_eq!((served + refused + cancelled) as u64, tasks);
    assert!(
        served > 0 && cancelled > 0,
        "{served} served, {cancelled} cancelled"
    );
    let max_seen = counters.max_seen.load(Ordering::SeqCst);
    assert!(
        max_seen <= limit,
        "seed {seed}: {max_seen} calls in flight with {limit} permits"
    );
    assert!(max_seen >= 1);
    assert_eq!(counters.current.load(Ordering::SeqCst), 0);
    assert_eq!(handle.in_flight(), 0, "seed {seed}: every permit returned");
    assert_eq!(handle.available(), limit);
    assert_eq!(handle.waiting(), 0, "seed {seed}: every waiter left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_exceeds_the_limit_and_returns_every_permit() {
    for seed in [1, 7, 42, 2024, 0xDEAD_BEEF] {
        run(seed, 8, 64, 4_000).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_permit_under_heavy_contention() {
    for seed in [3, 99] {
        run(seed, 1, 1_000, 2_000).await;
    }
}
