//! The latency budget: a slow call is answered from the cache once it has
//! waited `serve_stale_after`, and the slow call is dropped or finished in
//! the background. All on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource, RequestKey};
use steadfast::timeout::TimeoutLayer;
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

use super::{Reply, mark, reply};

const BUDGET: Duration = Duration::from_millis(100);

/// A backend whose calls take `delay` (paused time), then answer or fail;
/// counts calls started, finished and dropped before they ended.
#[derive(Clone, Default)]
struct Slow {
    delay_ms: Arc<AtomicU64>,
    down: Arc<AtomicBool>,
    started: Arc<AtomicU32>,
    finished: Arc<AtomicU32>,
    dropped: Arc<AtomicU32>,
}

/// Counts the call as dropped unless it finished.
struct Tracker {
    slow: Slow,
    done: bool,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let counter = if self.done {
            &self.slow.finished
        } else {
            &self.slow.dropped
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

impl Slow {
    fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn counts(&self) -> (u32, u32, u32) {
        (
            self.started.load(Ordering::SeqCst),
            self.finished.load(Ordering::SeqCst),
            self.dropped.load(Ordering::SeqCst),
        )
    }

    fn service(
        &self,
    ) -> impl Service<u32, Response = Reply, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + use<> {
        let this = self.clone();
        service_fn(move |request: u32| {
            this.started.fetch_add(1, Ordering::SeqCst);
            let delay = Duration::from_millis(this.delay_ms.load(Ordering::SeqCst));
            let down = this.down.load(Ordering::SeqCst);
            let mut tracker = Tracker {
                slow: this.clone(),
                done: false,
            };
            async move {
                tokio::time::sleep(delay).await;
                tracker.done = true;
                drop(tracker);
                if down {
                    Err(BoxError::from("backend down"))
                } else {
                    Ok(reply(format!("backend:{request}")))
                }
            }
        })
    }
}

fn cache(staleness: Duration) -> FallbackCache<RequestKey> {
    FallbackCache::builder()
        .capacity(100)
        .max_staleness(staleness)
        .build()
        .expect("valid settings")
}

/// Lets spawned tasks and timers at the current instant run.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_call_is_answered_from_the_cache_at_its_budget_and_dropped() {
    let backend = Slow::default();
    let svc = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .serve_stale_after(BUDGET)
        .mark(mark)
        .build()
        .unwrap()
        .layer(backend.service());

    assert_eq!(svc.clone().oneshot(1).await.unwrap(), reply("backend:1"));
    advance(Duration::from_secs(3)).await;

    backend.set_delay(Duration::from_secs(10));
    let started = Instant::now();
    let answer = svc.clone().oneshot(1).await.unwrap();
    assert_eq!(
        started.elapsed(),
        BUDGET,
        "answered at the budget, not later"
    );
    assert_eq!(answer.text, "backend:1");
    assert_eq!(
        answer.source,
        Some(FallbackSource::Cache {
            age: Duration::from_secs(3) + BUDGET
        })
    );
    assert_eq!(backend.counts(), (2, 1, 1), "the slow call was dropped");
}

#[tokio::test(start_paused = true)]
async fn a_call_within_its_budget_gets_the_real_answer() {
    let backend = Slow::default();
    let svc = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .serve_stale_after(BUDGET)
        .mark(mark)
        .build()
        .unwrap()
        .layer(backend.service());
    svc.clone().oneshot(1).await.unwrap();

    backend.set_delay(Duration::from_millis(99));
    let started = Instant::now();
    let answer = svc.clone().oneshot(1).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(99));
    assert_eq!(answer, reply("backend:1"), "the real answer, unmarked");
    assert_eq!(backend.counts(), (2, 2, 0));
}

#[tokio::test(start_paused = true)]
async fn without_a_cached_answer_the_call_waits_and_its_answer_is_recorded() {
    let backend = Slow::default();
    let svc = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .serve_stale_after(BUDGET)
        .mark(mark)
        .build()
        .unwrap()
        .layer(backend.service());

    backend.set_delay(Duration::from_secs(1));
    let started = Instant::now();
    let answer = svc.clone().oneshot(2).await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "waited past the budget"
    );
    assert_eq!(answer, reply("backend:2"));

    // Recorded although the budget had passed: the next slow call for the
    // same request is answered from it.
    backend.set_delay(Duration::from_secs(10));
    let answer = svc.clone().oneshot(2).await.unwrap();
    assert_eq!(answer.source, Some(FallbackSource::Cache { age: BUDGET }));
}

#[tokio::test(start_paused = true)]
async fn an_answer_too_old_when_the_budget_passes_is_not_served() {
    let backend = Slow::default();
    let svc = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(1)))
        .serve_stale_after(BUDGET)
        .mark(mark)
        .build()
        .unwrap()
        .layer(backend.service());
    svc.clone().oneshot(1).await.unwrap();
    advance(Duration::from_secs(2)).await;

    backend.set_delay(Duration::from_secs(3));
    let started = Instant::now();
    let answer = svc.clone().oneshot(1).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(answer, reply("backend:1"));
}

#[tokio::test(start_paused = true)]
async fn a_call_that_fails_within_its_budget_falls_back_at_once() {
    let backend = Slow::default();
    let svc = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .serve_stale_after(BUDGET)
        .mark(mark)
        .build()
        .unwrap()
        .layer(backend.service());
    svc.clone().oneshot(1).await.unwrap();

    backend.set_down(true);
    backend.set_delay(Duration::from_millis(20));
    let started = Instant::now();
    let answer = svc.clone().oneshot(1).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(20));
    assert_eq!(
        answer.source,
        Some(FallbackSource::Cache {
            age: Duration::from_millis(20)
        })
    );
    // A request never answered has nothing cached: its error comes back
    // when it fails, however long it took.
    backend.set_delay(Duration::from_secs(5));
    let started = Instant::now();
    let err = svc.clone().oneshot(9).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(err.to_string(), "backend down");
}

#[tokio::test(start_paused = true)]
async fn in_the_background_the_slow_call_runs_to_its_end() {
    let backend = Slow::default();
    let svc = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .serve_stale_after(BUDGET)
        .finish_in_background(10)
        .mark(mark)
        .build()
        .unwrap()
        .layer(backend.service());
    svc.clone().oneshot(1).await.unwrap();

    backend.set_delay(Duration::from_secs(2));
    let started = Instant::now();
    let answer = svc.clone().oneshot(1).await.unwrap();
    assert_eq!(started.elapsed(), BUDGET);
    assert!(matches!(answer.source, Some(FallbackSource::Cache { .. })));
    settle().await;
    assert_eq!(backend.counts(), (2, 1, 0), "still running");

    advance(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(backend.counts(), (2, 2, 0), "finished, not dropped");
}

#[tokio::test(start_paused = true)]
async fn past_the_cap_a_slow_call_is_dropped_instead() {
    let backend = Slow::default();
    let svc = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .serve_stale_after(BUDGET)
        .finish_in_background(1)
        .mark(mark)
        .build()
        .unwrap()
        .layer(backend.service());
    svc.clone().oneshot(1).await.unwrap();

    backend.set_delay(Duration::from_secs(2));
    let (a, b) = tokio::join!(svc.clone().oneshot(1), svc.clone().oneshot(1));
    assert!(matches!(
        a.unwrap().source,
        Some(FallbackSource::Cache { .. })
    ));
    assert!(matches!(
        b.unwrap().source,
        Some(FallbackSource::Cache { .. })
    ));
    settle().await;
    assert_eq!(
        backend.counts(),
        (3, 1, 1),
        "one in the background, one dropped"
    );

    advance(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(backend.counts(), (3, 2, 1));

    // The slot is free again.
    svc.clone().oneshot(1).await.unwrap();
    settle().await;
    assert_eq!(backend.counts(), (4, 2, 1));
}

#[tokio::test(start_paused = true)]
async fn calls_finished_in_the_background_open_the_breaker_inside() {
    let backend = Slow::default();
    let breaker = CircuitBreakerLayer::builder()
        .count_window(2)
        .minimum_calls(2)
        .failure_rate_threshold(50.0)
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(
            FallbackLayer::builder()
                .cache(cache(Duration::from_secs(60)))
                .serve_stale_after(BUDGET)
                .finish_in_background(10)
                .mark(mark)
                .build()
                .unwrap(),
        )
        .layer(breaker.clone())
        .layer(TimeoutLayer::new(Duration::from_secs(1)).unwrap())
        .service(backend.service());
    svc.clone().oneshot(1).await.unwrap();

    // The backend hangs: each caller has the cached answer at the budget,
    // and each call times out at 1 s in the background.
    backend.set_delay(Duration::from_secs(3_600));
    for _ in 0..2 {
        let answer = svc.clone().oneshot(1).await.unwrap();
        assert!(matches!(answer.source, Some(FallbackSource::Cache { .. })));
    }
    advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(backend.counts(), (3, 1, 2), "both timed out");

    // The breaker saw both failures and is open: the next call is refused
    // at once and answered from the cache without reaching the backend.
    let started = Instant::now();
    let answer = svc.clone().oneshot(1).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(matches!(answer.source, Some(FallbackSource::Cache { .. })));
    assert_eq!(backend.counts().0, 3);
}

#[tokio::test(start_paused = true)]
async fn dropping_a_waiting_call_drops_the_primary() {
    let backend = Slow::default();
    let background = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .serve_stale_after(BUDGET)
        .finish_in_background(10)
        .build()
        .unwrap()
        .layer(backend.service());
    let cancel = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .serve_stale_after(BUDGET)
        .build()
        .unwrap()
        .layer(backend.service());

    backend.set_delay(Duration::from_secs(10));
    let mut future = tokio_test::task::spawn(background.oneshot(1));
    tokio_test::assert_pending!(future.poll());
    drop(future);
    let mut future = tokio_test::task::spawn(cancel.oneshot(1));
    tokio_test::assert_pending!(future.poll());
    drop(future);
    settle().await;
    assert_eq!(backend.counts(), (2, 0, 2));
}

#[test]
fn bad_budgets_fail_at_build_time() {
    let build = |wait: Duration| {
        FallbackLayer::builder()
            .cache(cache(Duration::from_secs(60)))
            .serve_stale_after(wait)
            .build()
            .map(drop)
    };
    for wait in [
        Duration::ZERO,
        Duration::from_secs(3_600) + Duration::from_nanos(1),
        Duration::MAX,
    ] {
        let err = build(wait).unwrap_err();
        assert_eq!(err.field(), "fallback.serve_stale_after");
        assert_eq!(err.rule(), "must be greater than zero and at most 1 h");
    }
    assert!(build(Duration::from_nanos(1)).is_ok());
    assert!(build(Duration::from_secs(3_600)).is_ok());

    let background = |max_calls: usize| {
        FallbackLayer::builder()
            .cache(cache(Duration::from_secs(60)))
            .serve_stale_after(BUDGET)
            .finish_in_background(max_calls)
            .build()
            .map(drop)
    };
    let err = background(0).unwrap_err();
    assert_eq!(err.field(), "fallback.finish_in_background");
    assert_eq!(
        err.to_string(),
        "invalid setting `fallback.finish_in_background` = 0: must be at least 1"
    );
    assert!(background(usize::MAX).is_ok());

    // A cache set again replaces the budget, and its settings.
    let replaced = FallbackLayer::builder()
        .cache(cache(Duration::from_secs(60)))
        .serve_stale_after(Duration::ZERO)
        .cache(cache(Duration::from_secs(60)))
        .build();
    assert!(replaced.is_ok());
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn http_answers_from_the_cache_carry_their_source() {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};

    let hang = Arc::new(AtomicBool::new(false));
    let flag = hang.clone();
    let primary = service_fn(move |_: Request<()>| {
        let hang = flag.load(Ordering::SeqCst);
        async move {
            if hang {
                std::future::pending::<()>().await;
            }
            Ok::<_, BoxError>(Response::new(Full::new(Bytes::from_static(b"fresh"))))
        }
    });
    let svc = FallbackLayer::builder()
        .cache(FallbackCache::http().build().unwrap())
        .serve_stale_after(BUDGET)
        .finish_in_background(10)
        .http()
        .build()
        .unwrap()
        .layer(primary);
    let fresh = svc
        .clone()
        .oneshot(Request::get("http://backend/a").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        fresh.into_body().collect().await.unwrap().to_bytes(),
        "fresh"
    );

    hang.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let cached = svc
        .clone()
        .oneshot(Request::get("http://backend/a").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(started.elapsed(), BUDGET);
    assert_eq!(
        cached.extensions().get::<FallbackSource>(),
        Some(&FallbackSource::Cache { age: BUDGET })
    );
    assert_eq!(
        cached.into_body().collect().await.unwrap().to_bytes(),
        "fresh"
    );
}
