//! Observation costs nothing unless asked for: a successful call through
//! the standard stack (total deadline, bulkhead, retry within its budget,
//! circuit breaker, attempt timeout), observed as the HTTP preset is,
//! makes no heap allocation while a tracing subscriber is installed at
//! INFO and another policy has listeners.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use steadfast::bulkhead::BulkheadLayer;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::policy::{Policy, PolicyBuilder};
use steadfast::retry::RetryLayer;
use tower::{Layer, Service, ServiceExt};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_in;

/// Always ready; answers at once.
#[derive(Clone, Copy)]
struct Echo;

impl Service<(u64, u64)> for Echo {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (a, b): (u64, u64)) -> Self::Future {
        ready(Ok(a + b))
    }
}

/// A subscriber at INFO, as an application logs in production: it wants
/// every callsite at INFO or above, counts the events it gets, and keeps
/// no span.
#[derive(Default)]
struct Info {
    events: AtomicUsize,
    spans: AtomicUsize,
}

impl Subscriber for Info {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if *metadata.level() <= Level::INFO {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::INFO)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::INFO
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        let n = self.spans.fetch_add(1, Ordering::Relaxed);
        Id::from_u64(u64::try_from(n).unwrap_or(u64::MAX - 1) + 1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, _: &Event<'_>) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// The standard stack, named `name`.
fn standard(name: &'static str) -> PolicyBuilder {
    Policy::builder()
        .name(name)
        .total_timeout(Duration::from_secs(5))
        .bulkhead(BulkheadLayer::builder().max_concurrent(1_000))
        .retry(RetryLayer::builder().max_attempts(3))
        .circuit_breaker(CircuitBreakerLayer::builder().count_window(100))
        .attempt_timeout(Duration::from_secs(1))
}

/// Runs 100 successful calls of `svc`, after one to warm up, and answers
/// the heap allocations they made.
fn allocations_in_100_calls<S>(rt: &tokio::runtime::Runtime, svc: &mut S) -> usize
where
    S: Service<(u64, u64), Response = u64>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        assert_eq!(svc.ready().await.unwrap().call((1, 2)).await.unwrap(), 3);
        let mut total = 0;
        for i in 0..100 {
            let (sum, allocations) = allocations_in(|| {
                let mut fut =
                    std::pin::pin!(async { svc.ready().await.unwrap().call((i, 1)).await });
                let waker = std::task::Waker::noop();
                match fut.as_mut().poll(&mut Context::from_waker(waker)) {
                    Poll::Ready(result) => result.unwrap(),
                    Poll::Pending => panic!("a ready service answers at the first poll"),
                }
            });
            assert_eq!(sum, i + 1);
            total += allocations;
        }
        total
    })
}

#[test]
fn the_observed_standard_stack_allocates_nothing_with_a_subscriber_at_info_and_listeners_elsewhere()
{
    let subscriber = Arc::new(Info::default());
    let _default = tracing::subscriber::set_default(Arc::clone(&subscriber));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();

    // Another policy, with listeners on the policy and on its breaker.
    let heard = Arc::new(AtomicUsize::new(0));
    let (a, b) = (Arc::clone(&heard), Arc::clone(&heard));
    let other = standard("other")
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .name("other_cb")
                .on_event(move |_| {
                    a.fetch_add(1, Ordering::Relaxed);
                }),
        )
        .on_event(move |_| {
            b.fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let mut other = other.layer(Echo);
    rt.block_on(async { other.ready().await.unwrap().call((1, 1)).await.unwrap() });
    // Its listeners hear its calls end.
    assert_eq!(heard.load(Ordering::Relaxed), 1);

    // The standard stack, observed as the HTTP preset is, and not.
    let mut observed = standard("api").observe().build().unwrap().layer(Echo);
    assert_eq!(allocations_in_100_calls(&rt, &mut observed), 0);
    let mut plain = standard("api").build().unwrap().layer(Echo);
    assert_eq!(allocations_in_100_calls(&rt, &mut plain), 0);

    // The subscriber is live: an INFO event of the stack's breaker reaches it.
    let before = subscriber.events.load(Ordering::Relaxed);
    let breaker = CircuitBreakerLayer::builder()
        .name("api_cb")
        .build()
        .unwrap();
    breaker.handle().force_open();
    assert!(subscriber.events.load(Ordering::Relaxed) > before);
    // The other policy heard nothing of these calls.
    assert_eq!(heard.load(Ordering::Relaxed), 1);
}

#[test]
fn a_subscriber_that_wants_the_call_span_is_served() {
    // The same stack under a subscriber at DEBUG is watched: the span of
    // each call reaches it (and costs the call's context).
    #[derive(Default)]
    struct Debug(AtomicUsize);
    impl Subscriber for Debug {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            *metadata.level() <= Level::DEBUG
        }
        fn max_level_hint(&self) -> Option<LevelFilter> {
            Some(LevelFilter::DEBUG)
        }
        fn new_span(&self, attributes: &Attributes<'_>) -> Id {
            if attributes.metadata().name() == "call" {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
    let subscriber = Arc::new(Debug::default());
    let _default = tracing::subscriber::set_default(Arc::clone(&subscriber));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut observed = standard("api").observe().build().unwrap().layer(Echo);
    rt.block_on(async {
        for i in 0..3 {
            observed.ready().await.unwrap().call((i, 1)).await.unwrap();
        }
    });
    assert_eq!(subscriber.0.load(Ordering::Relaxed), 3);
}

/// An open breaker refusing calls in an outage: each refusal is counted
/// in `steadfast_rejections_total` without allocating (the refusal's own
/// error, boxed as every layer's error is, is the one allocation).
#[cfg(feature = "metrics")]
#[test]
fn a_refusal_is_counted_without_allocating() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let breaker = CircuitBreakerLayer::builder().name("down").build().unwrap();
    breaker.handle().force_open();
    let mut svc = breaker.layer(Echo);
    let mut refuse = || {
        let mut fut = std::pin::pin!(async { svc.ready().await.unwrap().call((1, 1)).await });
        let waker = std::task::Waker::noop();
        match fut.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(result) => assert!(result.is_err()),
            Poll::Pending => panic!("a refusal is immediate"),
        }
    };
    // The first refusal registers the series.
    refuse();
    let ((), allocations) = allocations_in(|| {
        for _ in 0..100 {
            refuse();
        }
    });
    assert!(
        allocations <= 100,
        "{allocations} allocations in 100 refusals"
    );
    let refusals: Vec<u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "steadfast_rejections_total")
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(refusals, [101]);
}
