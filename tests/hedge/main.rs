//! Hedging and racing on paused time: when copies leave, which one wins,
//! what is cancelled, the budget, endpoints behind breakers, settings.

mod alloc;
mod long_tail;
#[cfg(feature = "http")]
mod methods;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::classify::Verdict;
use steadfast::error::CircuitOpen;
use steadfast::hedge::{HedgeLayer, Race};
use steadfast::retry::{NoReplay, RetryBudget};
use tokio::time::{Instant, advance};
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{Layer, Service, ServiceExt};
use tower_test::{assert_request_eq, mock};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Counts futures dropped before they finished.
struct Guard {
    cancelled: Arc<AtomicUsize>,
    done: bool,
}

impl Guard {
    fn finish(&mut self) {
        self.done = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A latency in milliseconds and a reply.
type Step = (u64, Result<u32, &'static str>);

/// A backend playing a script of (latency, reply), the last repeating;
/// counts calls and cancelled calls, and logs which endpoint answered.
#[derive(Clone, Debug)]
struct Backend {
    name: &'static str,
    script: Arc<Mutex<VecDeque<Step>>>,
    calls: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
    sent_at: Arc<Mutex<Vec<Instant>>>,
}

impl Backend {
    fn new(name: &'static str, script: &[Step]) -> Self {
        Self {
            name,
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            calls: Arc::default(),
            cancelled: Arc::default(),
            sent_at: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    fn sent_at(&self) -> Vec<Instant> {
        self.sent_at.lock().unwrap().clone()
    }
}

impl Service<u32> for Backend {
    type Response = (&'static str, u32);
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<(&'static str, u32), BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, x: u32) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.sent_at.lock().unwrap().push(Instant::now());
        let (latency, reply) = {
            let mut script = self.script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script[0]
            }
        };
        let mut guard = Guard {
            cancelled: self.cancelled.clone(),
            done: false,
        };
        let name = self.name;
        Box::pin(async move {
            tokio::time::sleep(ms(latency)).await;
            guard.finish();
            reply.map(|n| (name, n + x)).map_err(Into::into)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn the_hedge_leaves_at_the_delay_and_not_before() {
    let (service, mut handle) = mock::pair::<&'static str, &'static str>();
    let layer = HedgeLayer::builder()
        .delay(ms(100))
        .unlimited_budget()
        .build()
        .unwrap();
    let mut svc = layer.layer(service);
    let handle_view = layer.handle();
    svc.ready().await.unwrap();
    let mut fut = task::spawn(svc.call("req"));
    let first = assert_request_eq!(handle, "req");
    assert_pending!(fut.poll());

    advance(ms(99)).await;
    assert_pending!(fut.poll());
    assert_pending!(handle.poll_request());
    assert_eq!(handle_view.hedges_sent(), 0);

    advance(ms(1)).await;
    assert_pending!(fut.poll());
    let hedge = assert_request_eq!(handle, "req");
    assert_eq!(handle_view.hedges_sent(), 1);

    // The hedge answers first and wins.
    hedge.send_response("from the hedge");
    assert_eq!(assert_ready_ok!(fut.poll()), "from the hedge");
    drop(first);
}

#[tokio::test(start_paused = true)]
async fn the_first_answer_wins_and_the_losers_are_dropped() {
    // First copy: 1 s; hedges: 30 ms and 10 ms after their sending.
    let backend = Backend::new("b", &[(1_000, Ok(1)), (300, Ok(2)), (10, Ok(3))]);
    let svc = HedgeLayer::builder()
        .delay(ms(50))
        .max_hedges(2)
        .unlimited_budget()
        .build()
        .unwrap()
        .layer(backend.clone());
    let started = Instant::now();
    let reply = svc.oneshot(0).await.unwrap();
    // Hedge 1 at 50 ms, hedge 2 at 100 ms, which answers at 110 ms.
    assert_eq!(reply, ("b", 3));
    assert_eq!(started.elapsed(), ms(110));
    assert_eq!(backend.calls(), 3);
    // Both losers were dropped as soon as the winner answered.
    assert_eq!(backend.cancelled(), 2);
    let at: Vec<_> = backend.sent_at().iter().map(|t| *t - started).collect();
    assert_eq!(at, [ms(0), ms(50), ms(100)]);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_the_first_copy_answers_in_time() {
    let backend = Backend::new("b", &[(40, Ok(1))]);
    let layer = HedgeLayer::builder()
        .delay(ms(50))
        .unlimited_budget()
        .build()
        .unwrap();
    let svc = layer.layer(backend.clone());
    for _ in 0..10 {
        assert_eq!(svc.clone().oneshot(1).await.unwrap(), ("b", 2));
    }
    assert_eq!(backend.calls(), 10);
    assert_eq!(backend.cancelled(), 0);
    assert_eq!(layer.handle().hedges_sent(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failure_sends_the_next_copy_to_the_next_endpoint_at_once() {
    // The first copy fails after 5 ms: the hedge leaves then, not at 100 ms,
    // for the other endpoint (two endpoints sharing one script).
    let backend = Backend::new("b", &[(5, Err("reset")), (20, Ok(7))]);
    let svc = HedgeLayer::builder()
        .delay(ms(100))
        .unlimited_budget()
        .build()
        .unwrap()
        .endpoints([backend.clone(), backend.clone()])
        .unwrap();
    let started = Instant::now();
    assert_eq!(svc.oneshot(0).await.unwrap(), ("b", 7));
    assert_eq!(started.elapsed(), ms(25));
    let at: Vec<_> = backend.sent_at().iter().map(|t| *t - started).collect();
    assert_eq!(at, [ms(0), ms(5)]);
}

#[tokio::test(start_paused = true)]
async fn when_every_copy_fails_the_last_failure_is_returned() {
    let backend = Backend::new(
        "b",
        &[(5, Err("first")), (5, Err("second")), (5, Err("third"))],
    );
    // Three endpoints (sharing one script): each failure sends the next
    // copy to the next endpoint at once.
    let svc = HedgeLayer::builder()
        .delay(ms(100))
        .max_hedges(2)
        .unlimited_budget()
        .build()
        .unwrap()
        .endpoints([backend.clone(), backend.clone(), backend.clone()])
        .unwrap();
    let started = Instant::now();
    let err = svc.oneshot(0).await.unwrap_err();
    assert_eq!(err.to_string(), "third");
    assert_eq!(started.elapsed(), ms(15));
    assert_eq!(backend.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_non_transient_failure_sends_no_more_copies() {
    let backend = Backend::new("b", &[(5, Err("broken")), (5, Ok(1))]);
    let svc = HedgeLayer::builder()
        .delay(ms(100))
        .unlimited_budget()
        .classifier(
            |outcome: Result<&(&'static str, u32), &BoxError>| match outcome {
                Ok(_) => Verdict::Success,
                Err(_) => Verdict::Failure,
            },
        )
        .build()
        .unwrap()
        .layer(backend.clone());
    assert_eq!(svc.oneshot(0).await.unwrap_err().to_string(), "broken");
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_hedges_and_gives_back_unsent_ones() {
    // Every copy is slow: each call would hedge if the budget let it.
    let backend = Backend::new("b", &[(1_000, Ok(0))]);
    // A reserve of two, which the calls' 10 % cannot grow past.
    let budget = RetryBudget::builder()
        .ratio(0.1)
        .reserve(2)
        .build()
        .unwrap();
    let layer = HedgeLayer::builder()
        .delay(ms(50))
        .max_hedges(3)
        .budget(budget.clone())
        .build()
        .unwrap();
    let svc = layer.layer(backend.clone());
    // Twenty calls at once: the budget grants two hedges.
    let calls: Vec<_> = (0..20).map(|i| svc.clone().oneshot(i)).collect();
    let started = Instant::now();
    let replies = futures::future::join_all(calls).await;
    assert!(replies.iter().all(Result::is_ok));
    assert_eq!(started.elapsed(), ms(1_000));
    assert_eq!(layer.handle().hedges_sent(), 2);
    assert_eq!(budget.counts(), (20, 2));
    assert_eq!(backend.calls(), 22);
    // The first copies won; the two hedges were cancelled.
    assert_eq!(backend.cancelled(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hedge_dropped_before_it_leaves_gives_its_token_back() {
    // The second copy's service is never ready: its token must come back
    // when the call is dropped.
    let (service, mut handle) = mock::pair::<u32, u32>();
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .reserve(1)
        .build()
        .unwrap();
    let mut svc = HedgeLayer::builder()
        .delay(ms(10))
        .budget(budget.clone())
        .build()
        .unwrap()
        .layer(service);
    handle.allow(1);
    svc.ready().await.unwrap();
    let mut fut = task::spawn(svc.call(1));
    let _first = assert_request_eq!(handle, 1);
    assert_pending!(fut.poll());
    advance(ms(10)).await;
    assert_pending!(fut.poll());
    assert_eq!(budget.counts(), (1, 1));
    drop(fut);
    assert_eq!(budget.counts(), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_copied_is_sent_once() {
    let backend = Backend::new("b", &[(1_000, Ok(1))]);
    let svc = HedgeLayer::builder()
        .delay(ms(10))
        .unlimited_budget()
        .replay(NoReplay)
        .build()
        .unwrap()
        .layer(backend.clone());
    assert_eq!(svc.oneshot(0).await.unwrap(), ("b", 1));
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn hedges_go_to_the_next_endpoint_each_behind_its_breaker() {
    let a = Backend::new("a", &[(1_000, Ok(0))]);
    let b = Backend::new("b", &[(10, Ok(0))]);
    let c = Backend::new("c", &[(10, Ok(0))]);
    let breaker_b = CircuitBreakerLayer::builder().build().unwrap();
    let breaker_c = CircuitBreakerLayer::builder().build().unwrap();
    let endpoints = vec![
        CircuitBreakerLayer::builder()
            .build()
            .unwrap()
            .layer(a.clone()),
        breaker_b.layer(b.clone()),
        breaker_c.layer(c.clone()),
    ];
    let hedge = HedgeLayer::builder()
        .delay(ms(50))
        .max_hedges(2)
        .unlimited_budget()
        .build()
        .unwrap()
        .endpoints(endpoints)
        .unwrap();

    // b answers the first hedge.
    let started = Instant::now();
    assert_eq!(hedge.clone().oneshot(0).await.unwrap().0, "b");
    assert_eq!(started.elapsed(), ms(60));

    // With b's breaker open, its hedge is refused on the spot and the next
    // copy goes to c at once, not 50 ms later.
    breaker_b.handle().force_open();
    let started = Instant::now();
    assert_eq!(hedge.clone().oneshot(0).await.unwrap().0, "c");
    assert_eq!(started.elapsed(), ms(60));
    assert_eq!(b.calls(), 1);
    assert_eq!(c.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_real_failure_is_preferred_to_a_refusal() {
    let a = Backend::new("a", &[(5, Err("reset by peer"))]);
    let b = Backend::new("b", &[(5, Ok(0))]);
    let breaker_b = CircuitBreakerLayer::builder().build().unwrap();
    breaker_b.handle().force_open();
    let breaker_a = CircuitBreakerLayer::builder().build().unwrap();
    let hedge = HedgeLayer::builder()
        .delay(ms(50))
        .unlimited_budget()
        .build()
        .unwrap()
        .endpoints([breaker_a.layer(a), breaker_b.layer(b)])
        .unwrap();
    let err = hedge.oneshot(0).await.unwrap_err();
    assert!(!err.is::<CircuitOpen>());
    assert_eq!(err.to_string(), "reset by peer");
}

#[tokio::test(start_paused = true)]
async fn the_delay_follows_the_observed_latency_with_a_floor() {
    let backend = Backend::new("b", &[(30, Ok(0))]);
    let layer = HedgeLayer::builder()
        .latency_percentile(0.1, ms(5))
        .unlimited_budget()
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = layer.layer(backend.clone());
    assert_eq!(handle.delay(), None);
    for _ in 0..32 {
        svc.clone().oneshot(0).await.unwrap();
    }
    // The 90th percentile of 30 ms calls, to the bucket's upper bound.
    let delay = handle.delay().unwrap();
    assert!(delay >= ms(30) && delay < ms(33), "{delay:?}");
    assert_eq!(handle.hedges_sent(), 0);
    assert_eq!(handle.samples(), 32);

    // The floor wins over a shorter percentile.
    let layer = HedgeLayer::builder()
        .latency_percentile(0.1, ms(100))
        .unlimited_budget()
        .build()
        .unwrap();
    let svc = layer.layer(backend);
    for _ in 0..32 {
        svc.clone().oneshot(0).await.unwrap();
    }
    assert_eq!(layer.handle().delay(), Some(ms(100)));
}

#[tokio::test(start_paused = true)]
async fn a_race_asks_every_alternative_at_once_and_cancels_the_rest() {
    let a = Backend::new("a", &[(100, Ok(0))]);
    let b = Backend::new("b", &[(20, Ok(0))]);
    let c = Backend::new("c", &[(50, Ok(0))]);
    let race = Race::builder()
        .build([a.clone(), b.clone(), c.clone()])
        .unwrap();
    let started = Instant::now();
    assert_eq!(race.oneshot(0).await.unwrap().0, "b");
    assert_eq!(started.elapsed(), ms(20));
    for backend in [&a, &b, &c] {
        assert_eq!(backend.sent_at(), [started]);
    }
    assert_eq!(a.cancelled() + c.cancelled(), 2);
    assert_eq!(b.cancelled(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_staggered_race_starts_alternatives_in_turn() {
    let a = Backend::new("a", &[(100, Ok(0))]);
    let b = Backend::new("b", &[(5, Err("down"))]);
    let c = Backend::new("c", &[(10, Ok(0))]);
    let race = Race::builder()
        .stagger(ms(30))
        .build([a.clone(), b.clone(), c.clone()])
        .unwrap();
    let started = Instant::now();
    // b starts at 30 ms and fails at 35 ms; c starts then, answers at 45 ms.
    assert_eq!(race.oneshot(0).await.unwrap().0, "c");
    assert_eq!(started.elapsed(), ms(45));
    assert_eq!(b.sent_at()[0] - started, ms(30));
    assert_eq!(c.sent_at()[0] - started, ms(35));
    assert_eq!(a.cancelled(), 1);
}

#[tokio::test(start_paused = true)]
async fn no_copy_leaves_after_the_deadline() {
    use steadfast::error::DeadlineExceeded;
    use steadfast::timeout::TotalDeadlineLayer;
    let backend = Backend::new("b", &[(1_000, Ok(0))]);
    let svc = TotalDeadlineLayer::new(ms(40)).unwrap().layer(
        HedgeLayer::builder()
            .delay(ms(50))
            .unlimited_budget()
            .build()
            .unwrap()
            .layer(backend.clone()),
    );
    let err = svc.oneshot(0).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>());
    assert_eq!(backend.calls(), 1);
    assert_eq!(backend.cancelled(), 1);
}

#[test]
fn bad_settings_fail_at_build_time() {
    let err = HedgeLayer::builder().max_hedges(0).build().unwrap_err();
    assert_eq!(err.field(), "hedge.max_hedges");
    for load in [0.0, -0.1, 1.01, f64::NAN] {
        let err = HedgeLayer::builder()
            .latency_percentile(load, ms(10))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "hedge.max_extra_load");
    }
    assert!(
        HedgeLayer::builder()
            .latency_percentile(1.0, ms(10))
            .build()
            .is_ok()
    );
    let err = HedgeLayer::builder()
        .latency_percentile(0.05, Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "hedge.floor");
    let err = HedgeLayer::builder()
        .delay(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "hedge.delay");
    let layer = HedgeLayer::builder().build().unwrap();
    let err = layer.endpoints(Vec::<Backend>::new()).unwrap_err();
    assert_eq!(err.field(), "hedge.endpoints");
    let err = Race::builder().build(Vec::<Backend>::new()).unwrap_err();
    assert_eq!(err.field(), "race.alternatives");
}

#[tokio::test(start_paused = true)]
async fn retry_and_hedge_on_one_budget_deposit_once_per_logical_call() {
    // 20 % and no reserve: 5,000 failing calls may cost 1,000 extra
    // attempts in all, whether retry or hedge takes them.
    let budget = RetryBudget::builder()
        .ratio(0.2)
        .reserve(0)
        .build()
        .unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let backend = tower::service_fn({
        let attempts = attempts.clone();
        move |_: u32| {
            attempts.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(ms(20)).await;
                Err::<u32, BoxError>("connection reset".into())
            }
        }
    });
    let hedge = HedgeLayer::builder()
        .delay(ms(10))
        .budget(budget.clone())
        .build()
        .unwrap();
    let retry = steadfast::retry::RetryLayer::builder()
        .max_attempts(3)
        .backoff(steadfast::retry::Backoff::constant(ms(1)))
        .budget(budget.clone())
        .build()
        .unwrap();
    let svc = retry.layer(hedge.layer(backend));
    for i in 0..5_000 {
        let _ = svc.clone().oneshot(i).await;
    }
    let attempts = attempts.load(Ordering::SeqCst);
    assert_eq!(budget.counts().0, 5_000, "one deposit per logical call");
    assert!(attempts <= 6_001, "{attempts} attempts");
}

#[tokio::test(start_paused = true)]
async fn hedges_add_no_load_to_a_failing_only_target() {
    let busy = |outcome: Result<&(&'static str, u32), &BoxError>| match outcome {
        Ok(_) => Verdict::Success,
        Err(err) if err.to_string() == "busy" => Verdict::transient_after(ms(1_000)),
        Err(_) => Verdict::transient(),
    };
    // A failure answer, with or without Retry-After: no copy at once, and
    // none at the delay while the first is still out.
    for reply in ["reset", "busy"] {
        let backend = Backend::new("b", &[(5, Err(reply)), (200, Ok(1))]);
        let svc = HedgeLayer::builder()
            .delay(ms(10))
            .max_hedges(2)
            .unlimited_budget()
            .classifier(busy)
            .build()
            .unwrap()
            .layer(backend.clone());
        let started = Instant::now();
        assert_eq!(svc.oneshot(0).await.unwrap_err().to_string(), reply);
        assert_eq!(started.elapsed(), ms(5));
        assert_eq!(backend.calls(), 1, "{reply}");
    }
    // A hedge copy that fails stops the copies after it; the first still
    // answers.
    let backend = Backend::new("b", &[(100, Ok(1)), (5, Err("busy")), (5, Ok(2))]);
    let svc = HedgeLayer::builder()
        .delay(ms(10))
        .max_hedges(3)
        .unlimited_budget()
        .classifier(busy)
        .build()
        .unwrap()
        .layer(backend.clone());
    assert_eq!(svc.oneshot(0).await.unwrap(), ("b", 1));
    assert_eq!(backend.calls(), 2);
    // An open circuit in front of the only target: refused, nothing sent.
    let backend = Backend::new("b", &[(5, Ok(1))]);
    let breaker = CircuitBreakerLayer::builder().build().unwrap();
    breaker.handle().force_open();
    let svc = HedgeLayer::builder()
        .delay(ms(10))
        .unlimited_budget()
        .build()
        .unwrap()
        .layer(breaker.layer(backend.clone()));
    let err = svc.oneshot(0).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(backend.calls(), 0);
}
