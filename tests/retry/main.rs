//! Retry: attempts, backoff, retry-after hints, deadlines, budget, replay
//! and cancellation, on paused time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::classify::Verdict;
use steadfast::error::{CircuitOpen, DeadlineExceeded, RetryAfterTooLong};
use steadfast::retry::{Backoff, Jitter, NoReplay, RetryBudget, RetryLayer};
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tokio::time::{Instant, advance};
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_test::{assert_request_eq, mock};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the scripted backend does on each call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reply {
    Ok,
    NotFound,
    Busy(Duration),
    Broken,
    Reset,
    Open,
    Hang,
}

/// A backend that plays a script of replies (the last one repeats) and
/// logs when each call arrived.
#[derive(Clone)]
struct Backend {
    script: Arc<Mutex<VecDeque<Reply>>>,
    calls: Arc<Mutex<Vec<Instant>>>,
}

impl Backend {
    fn new(script: &[Reply]) -> Self {
        Self {
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Gaps between consecutive calls.
    fn gaps(&self) -> Vec<Duration> {
        let calls = self.calls.lock().unwrap();
        calls.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

impl Service<u32> for Backend {
    type Response = Reply;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Reply, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: u32) -> Self::Future {
        self.calls.lock().unwrap().push(Instant::now());
        let reply = {
            let mut script = self.script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                *script.front().unwrap()
            }
        };
        Box::pin(async move {
            match reply {
                Reply::Reset => Err("connection reset".into()),
                Reply::Open => Err(Box::new(CircuitOpen::new(ms(500))) as BoxError),
                Reply::Hang => {
                    std::future::pending::<()>().await;
                    Ok(Reply::Hang)
                }
                other => Ok(other),
            }
        })
    }
}

fn classify(outcome: Result<&Reply, &BoxError>) -> Verdict {
    match outcome {
        Ok(Reply::Ok) => Verdict::Success,
        Ok(Reply::NotFound) => Verdict::FunctionalError,
        Ok(Reply::Busy(after)) => Verdict::transient_after(*after),
        Ok(Reply::Broken) => Verdict::Failure,
        Ok(_) | Err(_) => Verdict::transient(),
    }
}

fn fixed(delay: Duration) -> Backoff {
    Backoff::constant(delay).jitter(Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn retries_transient_failures_until_success() {
    let backend = Backend::new(&[Reply::Reset, Reply::Busy(ms(1)), Reply::Ok]);
    let layer = RetryLayer::builder()
        .max_attempts(5)
        .backoff(fixed(ms(10)))
        .classifier(classify)
        .build()
        .unwrap();
    let reply = layer.layer(backend.clone()).oneshot(1).await.unwrap();
    assert_eq!(reply, Reply::Ok);
    assert_eq!(backend.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn answers_and_lasting_failures_are_not_retried() {
    for reply in [Reply::Ok, Reply::NotFound, Reply::Broken] {
        let backend = Backend::new(&[reply]);
        let layer = RetryLayer::builder().classifier(classify).build().unwrap();
        assert_eq!(
            layer.layer(backend.clone()).oneshot(1).await.unwrap(),
            reply
        );
        assert_eq!(backend.calls(), 1, "{reply:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn gives_the_last_failure_back_after_max_attempts() {
    let backend = Backend::new(&[Reply::Busy(Duration::ZERO)]);
    let layer = RetryLayer::builder()
        .max_attempts(4)
        .backoff(fixed(ms(5)))
        .classifier(classify)
        .build()
        .unwrap();
    let reply = layer.layer(backend.clone()).oneshot(1).await.unwrap();
    assert_eq!(reply, Reply::Busy(Duration::ZERO));
    assert_eq!(backend.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn waits_the_backoff_before_each_retry_and_not_less() {
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(
        RetryLayer::builder()
            .max_attempts(3)
            .backoff(Backoff::exponential(ms(100)).jitter(Jitter::None))
            .build()
            .unwrap(),
    );
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call(7));
    assert_request_eq!(handle, 7).send_error(std::io::Error::other("reset"));
    assert_pending!(call.poll());
    advance(ms(99)).await;
    assert_pending!(call.poll());
    assert!(
        handle.poll_request().is_pending(),
        "retried before the backoff"
    );
    advance(ms(1)).await;
    assert_pending!(call.poll());
    assert_request_eq!(handle, 7).send_error(std::io::Error::other("reset"));
    assert_pending!(call.poll());
    advance(ms(199)).await;
    assert_pending!(call.poll());
    assert!(handle.poll_request().is_pending());
    advance(ms(1)).await;
    assert_pending!(call.poll());
    assert_request_eq!(handle, 7).send_response(70);
    assert_eq!(assert_ready_ok!(call.poll()), 70);
}

#[tokio::test(start_paused = true)]
async fn never_retries_sooner_than_a_retry_after_hint() {
    let backend = Backend::new(&[Reply::Busy(ms(1_500)), Reply::Busy(ms(700)), Reply::Ok]);
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(fixed(ms(100)))
        .classifier(classify)
        .build()
        .unwrap();
    assert_eq!(
        layer.layer(backend.clone()).oneshot(1).await.unwrap(),
        Reply::Ok
    );
    assert_eq!(backend.gaps(), [ms(1_500), ms(700)]);
}

#[tokio::test(start_paused = true)]
async fn a_hint_can_be_ignored_when_asked() {
    let backend = Backend::new(&[Reply::Busy(ms(1_500)), Reply::Ok]);
    let layer = RetryLayer::builder()
        .backoff(fixed(ms(100)))
        .ignore_retry_after()
        .classifier(classify)
        .build()
        .unwrap();
    assert_eq!(
        layer.layer(backend.clone()).oneshot(1).await.unwrap(),
        Reply::Ok
    );
    assert_eq!(backend.gaps(), [ms(100)]);
}

#[tokio::test(start_paused = true)]
async fn a_hint_longer_than_the_maximum_ends_the_call_with_a_clear_error() {
    let backend = Backend::new(&[Reply::Busy(Duration::from_secs(120))]);
    let layer = RetryLayer::builder()
        .honor_retry_after(Duration::from_secs(30))
        .classifier(classify)
        .build()
        .unwrap();
    let err = layer.layer(backend.clone()).oneshot(1).await.unwrap_err();
    let err = err
        .downcast_ref::<RetryAfterTooLong>()
        .expect("RetryAfterTooLong");
    assert_eq!(err.requested(), Duration::from_secs(120));
    assert_eq!(err.allowed(), Duration::from_secs(30));
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hint_longer_than_the_time_left_ends_the_call_at_once() {
    let backend = Backend::new(&[Reply::Busy(Duration::from_secs(5))]);
    let svc = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(2)).unwrap())
        .layer(RetryLayer::builder().classifier(classify).build().unwrap())
        .service(backend.clone());
    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    let err = err
        .downcast_ref::<RetryAfterTooLong>()
        .expect("RetryAfterTooLong");
    assert_eq!(err.requested(), Duration::from_secs(5));
    assert_eq!(err.allowed(), Duration::from_secs(2));
    assert_eq!(backend.calls(), 1);
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "it must not wait for nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn the_total_deadline_cuts_a_retry_loop() {
    // Every attempt hangs until its 300 ms timeout; backoff 100 ms; the
    // whole call has 1 s. Attempts start at 0, 400 and 800 ms; the third is
    // cut at 1 s, and no fourth starts.
    let backend = Backend::new(&[Reply::Hang]);
    let svc = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(1)).unwrap())
        .layer(
            RetryLayer::builder()
                .max_attempts(10)
                .backoff(fixed(ms(100)))
                .unlimited_budget()
                .classifier(classify)
                .build()
                .unwrap(),
        )
        .layer(TimeoutLayer::new(ms(300)).unwrap())
        .service(backend.clone());
    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(err.is::<DeadlineExceeded>(), "{err}");
    assert_eq!(backend.calls(), 3);
    assert_eq!(backend.gaps(), [ms(400), ms(400)]);
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn no_backoff_sleep_starts_that_would_end_past_the_deadline() {
    // Attempt fails at once; the 800 ms backoff fits once in 1 s but not
    // twice: the second failure is returned at 800 ms, without sleeping.
    let backend = Backend::new(&[Reply::Reset]);
    let svc = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(1)).unwrap())
        .layer(
            RetryLayer::builder()
                .max_attempts(5)
                .backoff(fixed(ms(800)))
                .build()
                .unwrap(),
        )
        .service(backend.clone());
    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "connection reset");
    assert_eq!(backend.calls(), 2);
    assert_eq!(start.elapsed(), ms(800));
}

#[tokio::test(start_paused = true)]
async fn the_budget_stops_a_retry_storm() {
    // 100 calls to a backend that always fails, 3 attempts each: without a
    // budget it would see 300 calls. A 20 % budget with no reserve lets 20
    // retries through.
    let backend = Backend::new(&[Reply::Reset]);
    let budget = RetryBudget::builder()
        .ratio(0.2)
        .reserve(0)
        .build()
        .unwrap();
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(fixed(ms(1)))
        .budget(budget.clone())
        .build()
        .unwrap();
    let mut svc = layer.layer(backend.clone());
    for _ in 0..100 {
        let _ = svc.ready().await.unwrap().call(1).await;
    }
    assert_eq!(backend.calls(), 120);
    assert_eq!(budget.counts(), (100, 20));
}

#[tokio::test(start_paused = true)]
async fn every_clone_and_every_layered_service_shares_one_budget() {
    let layer = RetryLayer::builder()
        .max_attempts(2)
        .backoff(fixed(ms(1)))
        .budget(
            RetryBudget::builder()
                .ratio(0.0)
                .reserve(2)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let a = Backend::new(&[Reply::Reset]);
    let b = Backend::new(&[Reply::Reset]);
    // A reserve of two and no ratio: two retries in all, whoever asks.
    let _ = layer.layer(a.clone()).oneshot(1).await;
    let _ = layer.clone().layer(b.clone()).oneshot(1).await;
    let _ = layer.layer(b.clone()).oneshot(1).await;
    assert_eq!(a.calls() + b.calls(), 3 + 2);
    assert_eq!(layer.budget().unwrap().counts(), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_replayed_is_sent_once() {
    let backend = Backend::new(&[Reply::Reset, Reply::Ok]);
    let layer = RetryLayer::builder().replay(NoReplay).build().unwrap();
    let err = layer.layer(backend.clone()).oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "connection reset");
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_replay_closure_decides_per_request() {
    let backend = Backend::new(&[Reply::Reset, Reply::Ok]);
    let odd_only = |n: &u32| (n % 2 == 1).then_some(*n);
    let layer = RetryLayer::builder()
        .replay(odd_only)
        .backoff(fixed(ms(1)))
        .build()
        .unwrap();
    assert!(layer.layer(backend.clone()).oneshot(2).await.is_err());
    assert_eq!(backend.calls(), 1);
    let backend = Backend::new(&[Reply::Reset, Reply::Ok]);
    assert_eq!(
        layer.layer(backend.clone()).oneshot(3).await.unwrap(),
        Reply::Ok
    );
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_inside_is_not_retried() {
    let backend = Backend::new(&[Reply::Open, Reply::Ok]);
    let layer = RetryLayer::builder()
        .max_attempts(5)
        .classifier(classify)
        .build()
        .unwrap();
    let err = layer.layer(backend.clone()).oneshot(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_in_backoff_gives_its_budget_token_back_and_sends_nothing() {
    let backend = Backend::new(&[Reply::Reset]);
    let layer = RetryLayer::builder()
        .max_attempts(3)
        .backoff(fixed(ms(100)))
        .budget(
            RetryBudget::builder()
                .ratio(0.0)
                .reserve(1)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let budget = layer.budget().unwrap().clone();
    let mut call = tokio_test::task::spawn(layer.layer(backend.clone()).oneshot(1));
    assert_pending!(call.poll());
    assert_eq!(budget.counts(), (1, 1), "the retry is taken while it waits");
    drop(call);
    assert_eq!(budget.counts(), (1, 0), "and given back when dropped");
    advance(ms(500)).await;
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_mid_attempt_drops_the_attempt() {
    let (mut svc, mut handle) =
        mock::spawn_layer::<u32, u32, _>(RetryLayer::builder().build().unwrap());
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call(1));
    let reply = assert_request_eq!(handle, 1);
    assert_pending!(call.poll());
    drop(call);
    // The mock sees its response channel closed: the attempt was dropped.
    reply.send_response(1);
    assert!(handle.poll_request().is_pending());
}

#[tokio::test(start_paused = true)]
async fn a_failing_poll_ready_before_a_retry_ends_the_call() {
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(
        RetryLayer::builder()
            .backoff(fixed(ms(10)))
            .build()
            .unwrap(),
    );
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call(1));
    assert_request_eq!(handle, 1).send_error(std::io::Error::other("reset"));
    handle.send_error(std::io::Error::other("pool closed"));
    assert_pending!(call.poll());
    advance(ms(10)).await;
    let err = assert_ready_err!(call.poll());
    assert_eq!(err.to_string(), "pool closed");
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_gives_the_same_delays() {
    async fn gaps(seed: u64) -> Vec<Duration> {
        let backend = Backend::new(&[Reply::Reset]);
        let layer = RetryLayer::builder()
            .max_attempts(6)
            .backoff(
                Backoff::exponential(ms(100))
                    .cap(ms(5_000))
                    .jitter(Jitter::Decorrelated),
            )
            .unlimited_budget()
            .seed(seed)
            .build()
            .unwrap();
        let _ = layer.layer(backend.clone()).oneshot(1).await;
        backend.gaps()
    }
    let first = gaps(11).await;
    assert_eq!(first.len(), 5);
    assert_eq!(first, gaps(11).await);
    assert_ne!(first, gaps(12).await);
}

#[test]
fn bad_settings_are_refused_when_built() {
    let err = RetryLayer::builder().max_attempts(0).build().unwrap_err();
    assert_eq!((err.field(), err.value()), ("retry.max_attempts", "0"));
    let err = RetryLayer::builder()
        .backoff(Backoff::constant(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry.backoff.base");
    let err = RetryLayer::builder()
        .backoff(Backoff::exponential(ms(500)).cap(ms(100)))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry.backoff.cap");
    assert_eq!(err.other(), Some(("retry.backoff.base", "500ms")));
    let err = RetryLayer::builder()
        .honor_retry_after(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry.honor_retry_after");
    let err = RetryBudget::builder().ratio(1.2).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid setting `retry.budget.ratio` = 1.2: must be between 0 and 1"
    );
}

#[tokio::test(start_paused = true)]
async fn a_later_attempt_waits_for_the_service_to_be_ready_after_its_backoff() {
    let (mut svc, mut handle) = mock::spawn_layer::<u32, u32, _>(
        RetryLayer::builder()
            .max_attempts(3)
            .backoff(fixed(ms(10)))
            .build()
            .unwrap(),
    );
    handle.allow(1);
    assert_ready_ok!(svc.poll_ready());
    let mut call = tokio_test::task::spawn(svc.call(1));
    assert_request_eq!(handle, 1).send_error(std::io::Error::other("reset"));
    assert_pending!(call.poll());
    advance(ms(10)).await;
    // The backoff is over, the service is not ready: nothing is sent.
    assert_pending!(call.poll());
    assert!(handle.poll_request().is_pending());
    handle.allow(1);
    assert!(call.is_woken());
    assert_pending!(call.poll());
    assert_request_eq!(handle, 1).send_error(std::io::Error::other("reset"));
    assert_pending!(call.poll());
    advance(ms(10)).await;
    handle.allow(1);
    assert_pending!(call.poll());
    assert_request_eq!(handle, 1).send_response(7);
    assert_eq!(assert_ready_ok!(call.poll()), 7);
}
