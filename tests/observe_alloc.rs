//! Observation costs nothing unless asked for: a successful call through
//! the standard stack (total deadline, bulkhead, retry within its budget,
//! circuit breaker, attempt timeout), observed as the HTTP preset is,
//! makes no heap allocation while a tracing subscriber is installed at
//! INFO and another policy has listeners.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
/// Serializes the tests that install a tracing subscriber: tracing caches
/// each callsite's interest across every live subscriber, and a subscriber
/// dropped by one test while another is being installed can leave a
/// callsite's interest computed without the new one.
static SUBSCRIBERS: Mutex<()> = Mutex::new(());

fn one_subscriber_at_a_time() -> MutexGuard<'static, ()> {
    SUBSCRIBERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
    let _serial = one_subscriber_at_a_time();
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
    let _serial = one_subscriber_at_a_time();
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

/// A service whose call for `0` never answers, and whose other calls fail
/// (`Err(n)`) for odd `n` and answer `n` for even `n`: a held permit, a
/// failing primary and a slow first copy, without allocating.
#[cfg(feature = "metrics")]
#[derive(Clone, Copy)]
struct Scripted;

#[cfg(feature = "metrics")]
struct ScriptedFuture(u64);

#[cfg(feature = "metrics")]
#[derive(Debug)]
struct Odd;

#[cfg(feature = "metrics")]
impl std::fmt::Display for Odd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("odd")
    }
}

#[cfg(feature = "metrics")]
impl std::error::Error for Odd {}

#[cfg(feature = "metrics")]
impl std::future::Future for ScriptedFuture {
    type Output = Result<u64, Odd>;

    fn poll(self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0 {
            0 => Poll::Pending,
            n if n % 2 == 1 => Poll::Ready(Err(Odd)),
            n => Poll::Ready(Ok(n)),
        }
    }
}

#[cfg(feature = "metrics")]
impl Service<u64> for Scripted {
    type Response = u64;
    type Error = Odd;
    type Future = ScriptedFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Odd>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u64) -> ScriptedFuture {
        ScriptedFuture(n)
    }
}

/// A recorder installed on this thread, a paused runtime entered, and the
/// value of every counter named `name` once `f` ran.
#[cfg(feature = "metrics")]
fn counted(name: &str, f: impl FnOnce(&tokio::runtime::Runtime)) -> Vec<u64> {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recorder = metrics::set_default_local_recorder(&recorder);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let guard = rt.enter();
    f(&rt);
    drop(guard);
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == name)
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            other => panic!("{other:?}"),
        })
        .collect()
}

/// The allocations of 100 calls of `svc` with `request` (each polled
/// once, with a no-op waker, after one call that registers the series),
/// and how many ended in an error; every answer is `answer`.
#[cfg(feature = "metrics")]
fn allocations_in_100<S>(svc: &mut S, request: u64, answer: u64) -> (usize, usize)
where
    S: Service<u64, Response = u64>,
{
    let mut once = || {
        let mut fut = std::pin::pin!(async { svc.ready().await?.call(request).await });
        let waker = std::task::Waker::noop();
        match fut.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(Ok(n)) => {
                assert_eq!(n, answer);
                false
            }
            Poll::Ready(Err(_)) => true,
            Poll::Pending => panic!("the decision is made at the first poll"),
        }
    };
    once();
    let mut errors = 0;
    let ((), allocations) = allocations_in(|| {
        for _ in 0..100 {
            errors += usize::from(once());
        }
    });
    (allocations, errors)
}

/// A full bulkhead refusing calls: counted without allocating, besides the
/// refusal's boxed error.
#[cfg(feature = "metrics")]
#[test]
fn a_full_bulkhead_counts_its_refusals_without_allocating() {
    let refusals = counted("steadfast_rejections_total", |_| {
        let layer = BulkheadLayer::builder()
            .name("pool")
            .max_concurrent(1)
            .build()
            .unwrap();
        let mut holder = layer.layer(Scripted);
        let mut held = Box::pin(async move { holder.ready().await.unwrap().call(0).await });
        let waker = std::task::Waker::noop();
        assert!(
            held.as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_pending()
        );
        let mut svc = layer.layer(Scripted);
        let (allocations, errors) = allocations_in_100(&mut svc, 2, 2);
        assert_eq!(errors, 100);
        assert!(
            allocations <= 100,
            "{allocations} allocations in 100 refusals"
        );
    });
    assert_eq!(refusals, [101]);
}

/// A rate limiter refusing calls over its quota: counted (in the
/// rejections and in the tier's refusals) without allocating, besides the
/// refusal's boxed error.
#[cfg(all(feature = "metrics", feature = "rate-limit"))]
#[test]
fn a_rate_limit_refusal_is_counted_without_allocating() {
    use steadfast::rate_limit::{Quota, RateLimitLayer};

    let refusals = counted("steadfast_rejections_total", |rt| {
        let layer = RateLimitLayer::builder()
            .quota(Quota::per_minute(1))
            .build()
            .unwrap();
        let mut svc = layer.layer(Scripted);
        // The one call the quota allows (time is paused: no more come).
        rt.block_on(async { svc.ready().await.unwrap().call(2).await.unwrap() });
        let (allocations, errors) = allocations_in_100(&mut svc, 2, 2);
        assert_eq!(errors, 100);
        assert!(
            allocations <= 100,
            "{allocations} allocations in 100 refusals"
        );
    });
    assert_eq!(refusals, [101]);
}

/// A total deadline that passes, on a call that never answers: the
/// rejection is counted without allocating, besides the boxed error.
#[cfg(feature = "metrics")]
#[test]
fn a_passing_total_deadline_is_counted_without_allocating() {
    use steadfast::timeout::TotalDeadlineLayer;

    let refusals = counted("steadfast_rejections_total", |rt| {
        let layer = TotalDeadlineLayer::new(Duration::from_millis(10))
            .unwrap()
            .name("api_deadline");
        let mut svc = layer.layer(Scripted);
        let mut call = || {
            rt.block_on(async {
                let fut = svc.ready().await.unwrap().call(0);
                assert!(fut.await.is_err());
            });
        };
        // Registers the series, and sets up the runtime's timer.
        call();
        let ((), allocations) = allocations_in(|| {
            for _ in 0..100 {
                call();
            }
        });
        assert!(
            allocations <= 100,
            "{allocations} allocations in 100 deadlines passed"
        );
    });
    assert_eq!(refusals, [101]);
}

/// A fallback serving its static answer for a failing primary: counted
/// without allocating (the caller receives an answer, not an error).
#[cfg(feature = "metrics")]
#[test]
fn a_fallback_serving_is_counted_without_allocating() {
    use steadfast::fallback::FallbackLayer;

    let served = counted("steadfast_fallbacks_total", |_| {
        let layer = FallbackLayer::builder()
            .static_response(7_u64)
            .name("prices")
            .build()
            .unwrap();
        let mut svc = layer.layer(Scripted);
        let (allocations, errors) = allocations_in_100(&mut svc, 1, 7);
        assert_eq!(errors, 0);
        // The primary's error, boxed as the fallback judges it.
        assert!(
            allocations <= 100,
            "{allocations} allocations in 100 fallbacks"
        );
    });
    assert_eq!(served, [101]);
}

/// A hedge sending a copy that wins, counted in the copies sent and won
/// without allocating: the hedge's own allocations (the copy's call and
/// the list of copies) are the same as without a recorder's series.
#[cfg(feature = "metrics")]
#[test]
fn a_hedge_sent_is_counted_without_allocating() {
    use std::sync::atomic::AtomicU64;
    use steadfast::hedge::HedgeLayer;

    /// The first request of each call never answers; its copy does.
    #[derive(Clone)]
    struct SlowFirst(Arc<AtomicU64>);
    impl Service<u64> for SlowFirst {
        type Response = u64;
        type Error = Odd;
        type Future = ScriptedFuture;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Odd>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, n: u64) -> ScriptedFuture {
            let copy = self.0.fetch_add(1, Ordering::Relaxed) % 2 == 1;
            ScriptedFuture(if copy { n } else { 0 })
        }
    }

    let mut per_call = Vec::new();
    let sent = counted("steadfast_hedges_sent_total", |rt| {
        let layer = HedgeLayer::builder()
            .delay(Duration::from_millis(5))
            .unlimited_budget()
            .name("search")
            .build()
            .unwrap();
        let mut svc = layer.layer(SlowFirst(Arc::new(AtomicU64::new(0))));
        let mut call = || {
            rt.block_on(async { svc.ready().await.unwrap().call(2).await.unwrap() });
        };
        call();
        for _ in 0..2 {
            let ((), allocations) = allocations_in(|| {
                for _ in 0..50 {
                    call();
                }
            });
            per_call.push(allocations);
        }
        assert_eq!(layer.handle().hedges_sent(), 101);
    });
    assert_eq!(sent, [101]);
    // The same count in both rounds, a multiple of the calls: the hedge's
    // own boxes per copy, and nothing that grows with the series.
    assert_eq!(per_call[0], per_call[1], "{per_call:?}");
    assert_eq!(per_call[0] % 50, 0, "{per_call:?}");
    assert!(per_call[0] <= 50 * 2, "{per_call:?}");
}
