//! Outage simulation on paused time: the standard HTTP client as a user
//! gets it (only the total timeout set), 32 paced callers, a mock backend.
//!
//! Each scenario runs a healthy phase at full rate longer than the
//! breaker's 30 s window, then a total outage of one kind (requests hang,
//! fail at the transport, or are answered 503 with `Retry-After: 1`), then
//! recovery; or a 10 % brownout that retries absorb. The figures each run
//! measures are printed (`cargo test --all-features --test outage --
//! --nocapture`) and asserted against the preset's promises: the breaker
//! opens within a second, the outage costs at most one backend request per
//! call (at most 0.1 once open), a brownout never opens it, and calls
//! succeed again within the open duration plus a second.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{Request, Response, StatusCode};
use steadfast::BoxError;
use steadfast::circuit_breaker::{CircuitBreakerHandle, State};
use steadfast::error::CircuitOpen;
use steadfast::hedge::HedgeLayer;
use steadfast::http::ReplayBody;
use steadfast::policy::Policy;
use tokio::time::{Instant, sleep, sleep_until};
use tower::{Layer, Service, ServiceExt, service_fn};

type Body = ReplayBody<String>;
type Req = Request<Body>;
type Resp = Response<String>;

const CALLERS: u32 = 32;
/// Each caller starts a call every 25 ms, or at once if the last took
/// longer: 1,280 calls per second at full rate.
const PERIOD: Duration = Duration::from_millis(25);
const HEALTHY_LATENCY: Duration = Duration::from_millis(5);
/// Longer than the preset's 30 s breaker window.
const HEALTHY: Duration = Duration::from_secs(35);
const OUTAGE: Duration = Duration::from_secs(5);
const RECOVERY: Duration = Duration::from_secs(10);
const BROWNOUT: Duration = Duration::from_secs(20);
/// The preset's open duration.
const OPEN: Duration = Duration::from_secs(5);
/// The only setting the simulated user gives the preset.
const TOTAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Requests are accepted and never answered.
    Hang,
    /// Requests fail at the transport (connection reset).
    Error,
    /// Every request is answered 503 with `Retry-After: 1`.
    RetryAfter,
    /// 10 % of requests are answered 503, the rest as usual.
    Brownout,
}

impl Kind {
    fn fault_length(self) -> Duration {
        match self {
            Kind::Brownout => BROWNOUT,
            _ => OUTAGE,
        }
    }
}

/// The backend: its fault schedule and what it received.
struct Backend {
    start: Instant,
    kind: Kind,
    requests: Mutex<Vec<Duration>>,
    random: AtomicU64,
}

impl Backend {
    fn faulty(&self, at: Duration) -> bool {
        at >= HEALTHY && at < HEALTHY + self.kind.fault_length()
    }

    /// A deterministic draw in `[0, 1)` (xorshift).
    fn draw(&self) -> f64 {
        let mut x = self.random.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.store(x, Ordering::Relaxed);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    fn service(
        self: &Arc<Self>,
    ) -> impl Service<Req, Response = Resp, Error = BoxError, Future: Send> + Clone + Send + use<>
    {
        let backend = Arc::clone(self);
        service_fn(move |_req: Req| {
            let backend = Arc::clone(&backend);
            async move {
                let at = backend.start.elapsed();
                backend.requests.lock().unwrap().push(at);
                let faulty = backend.faulty(at);
                match backend.kind {
                    Kind::Hang if faulty => std::future::pending().await,
                    Kind::Error if faulty => Err(Box::new(std::io::Error::from(
                        std::io::ErrorKind::ConnectionReset,
                    )) as BoxError),
                    Kind::RetryAfter if faulty => Ok(Response::builder()
                        .status(StatusCode::SERVICE_UNAVAILABLE)
                        .header("retry-after", "1")
                        .body(String::new())?),
                    Kind::Brownout if faulty && backend.draw() < 0.1 => Ok(Response::builder()
                        .status(StatusCode::SERVICE_UNAVAILABLE)
                        .body(String::new())?),
                    _ => {
                        sleep(HEALTHY_LATENCY).await;
                        Ok(Response::new("ok".to_owned()))
                    }
                }
            }
        })
    }
}

/// One logical call as a caller saw it.
#[derive(Debug, Clone, Copy)]
struct Call {
    start: Duration,
    took: Duration,
    ok: bool,
    /// Refused by the open breaker, with the time it stays open.
    refused_for: Option<Duration>,
}

/// What one scenario measured.
#[derive(Debug)]
struct Figures {
    client: &'static str,
    kind: Kind,
    /// From the fault's start to the breaker's opening.
    time_to_open: Option<Duration>,
    /// Backend requests per call started during the fault.
    requests_per_call: f64,
    /// The same, from the breaker's opening to the fault's end.
    requests_per_call_open: Option<f64>,
    /// From the fault's end to the breaker closed again and a call
    /// succeeding.
    recovery: Option<Duration>,
    fault_success: f64,
    fault_p50: Duration,
    fault_p99: Duration,
    healthy_calls: usize,
    fault_calls: usize,
    /// Calls of the fault refused with the time the breaker stays open.
    refused_with_time_left: usize,
}

fn percentile(calls: &[&Call], p: f64) -> Duration {
    let mut took: Vec<Duration> = calls.iter().map(|c| c.took).collect();
    took.sort();
    if took.is_empty() {
        return Duration::ZERO;
    }
    let index = ((took.len() as f64 * p).ceil() as usize).clamp(1, took.len()) - 1;
    took[index]
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Resp, BoxError>> + Send>>;

/// Runs one scenario against `client`, made from the backend's service.
async fn scenario<S, F>(client_name: &'static str, kind: Kind, make: F) -> Figures
where
    F: FnOnce(Arc<Backend>) -> (S, CircuitBreakerHandle),
    S: Service<Req, Response = Resp, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let start = Instant::now();
    let backend = Arc::new(Backend {
        start,
        kind,
        requests: Mutex::new(Vec::new()),
        random: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
    });
    let (client, breaker) = make(Arc::clone(&backend));
    let fault_end = HEALTHY + kind.fault_length();
    let end = fault_end + RECOVERY;

    // The breaker's transitions, read every millisecond.
    let monitor = {
        let breaker = breaker.clone();
        tokio::spawn(async move {
            let mut states = Vec::new();
            let mut last = State::Closed;
            while start.elapsed() < end {
                let state = breaker.state();
                if state != last {
                    states.push((start.elapsed(), state));
                    last = state;
                }
                sleep(Duration::from_millis(1)).await;
            }
            states
        })
    };

    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut callers = Vec::new();
    for i in 0..CALLERS {
        let mut client = client.clone();
        let calls = Arc::clone(&calls);
        callers.push(tokio::spawn(async move {
            sleep(PERIOD * i / CALLERS).await;
            loop {
                let begun = Instant::now();
                let at = begun - start;
                if at >= end {
                    break;
                }
                let request = Request::get("http://backend/")
                    .body(ReplayBody::buffered(""))
                    .unwrap();
                let future: BoxFut = match client.ready().await {
                    Ok(ready) => Box::pin(ready.call(request)),
                    Err(err) => Box::pin(async move { Err(err) }),
                };
                let outcome = future.await;
                let ok = matches!(&outcome, Ok(r) if r.status().is_success());
                let refused_for = outcome
                    .as_ref()
                    .err()
                    .and_then(|err| err.downcast_ref::<CircuitOpen>())
                    .map(CircuitOpen::remaining);
                calls.lock().unwrap().push(Call {
                    start: at,
                    took: begun.elapsed(),
                    ok,
                    refused_for,
                });
                sleep_until(begun + PERIOD).await;
            }
        }));
    }
    for caller in callers {
        caller.await.unwrap();
    }
    let states = monitor.await.unwrap();
    let calls = calls.lock().unwrap().clone();
    let requests = backend.requests.lock().unwrap().clone();

    let opened = states
        .iter()
        .find(|(at, s)| *at >= HEALTHY && *s == State::Open)
        .map(|(at, _)| *at);
    let in_fault = |at: Duration| at >= HEALTHY && at < fault_end;
    let fault_calls: Vec<&Call> = calls.iter().filter(|c| in_fault(c.start)).collect();
    let fault_requests = requests.iter().filter(|at| in_fault(**at)).count();
    let requests_per_call_open = opened.filter(|at| *at < fault_end).map(|open| {
        let calls = calls
            .iter()
            .filter(|c| c.start >= open && c.start < fault_end)
            .count();
        let requests = requests
            .iter()
            .filter(|at| **at >= open && **at < fault_end)
            .count();
        requests as f64 / calls.max(1) as f64
    });
    // Recovered: the breaker is closed for good and a call started then
    // succeeded.
    let closed_again = (breaker.state() == State::Closed).then(|| {
        states
            .last()
            .map_or(fault_end, |(at, _)| (*at).max(fault_end))
    });
    let recovery = closed_again.and_then(|closed| {
        calls
            .iter()
            .filter(|c| c.start >= closed.max(fault_end) && c.ok)
            .map(|c| c.start + c.took)
            .min()
            .map(|at| at.max(closed) - fault_end)
    });
    let fault_ok = fault_calls.iter().filter(|c| c.ok).count();
    Figures {
        client: client_name,
        kind,
        time_to_open: opened.map(|at| at - HEALTHY),
        requests_per_call: fault_requests as f64 / fault_calls.len().max(1) as f64,
        requests_per_call_open,
        recovery,
        fault_success: fault_ok as f64 / fault_calls.len().max(1) as f64,
        fault_p50: percentile(&fault_calls, 0.5),
        fault_p99: percentile(&fault_calls, 0.99),
        healthy_calls: calls.iter().filter(|c| c.start < HEALTHY).count(),
        fault_calls: fault_calls.len(),
        refused_with_time_left: fault_calls
            .iter()
            .filter(|c| c.refused_for.is_some_and(|left| !left.is_zero()))
            .count(),
    }
}

/// The standard client as a user gets it: only the total timeout set.
fn standard(
    backend: Arc<Backend>,
) -> (
    impl Service<Req, Response = Resp, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static,
    CircuitBreakerHandle,
) {
    let policy = Policy::standard_http_client()
        .total_timeout(TOTAL)
        .build()
        .expect("the preset builds with a 2 s total timeout");
    // The preset's breaker is per host: the backend's.
    let breaker = policy.circuit_breaker_for("backend:80");
    (policy.layer(backend.service()), breaker)
}

/// The standard client with nothing set at all (30 s total timeout, 10 s
/// attempt timeout): a hang is only seen after an attempt timeout, so only
/// the outages that answer are run with it.
fn untouched(
    backend: Arc<Backend>,
) -> (
    impl Service<Req, Response = Resp, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static,
    CircuitBreakerHandle,
) {
    let policy = Policy::standard_http_client()
        .build()
        .expect("the preset builds");
    // The preset's breaker is per host: the backend's.
    let breaker = policy.circuit_breaker_for("backend:80");
    (policy.layer(backend.service()), breaker)
}

/// The same with hedging inside, drawing on the policy's retry budget.
fn hedged(
    backend: Arc<Backend>,
) -> (
    impl Service<Req, Response = Resp, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static,
    CircuitBreakerHandle,
) {
    let policy = Policy::standard_http_client()
        .total_timeout(TOTAL)
        .build()
        .expect("the preset builds with a 2 s total timeout");
    // The preset's breaker is per host: the backend's.
    let breaker = policy.circuit_breaker_for("backend:80");
    let budget = policy
        .retry_budget()
        .expect("the preset has a budget")
        .clone();
    let hedge = HedgeLayer::builder()
        .classifier(steadfast::http::HttpClassifier::new())
        .replay(steadfast::http::HttpReplay::new())
        .budget(budget)
        .build()
        .expect("hedge settings");
    (policy.layer(hedge.layer(backend.service())), breaker)
}

fn report(figures: &Figures) {
    eprintln!(
        "{} {:?}: healthy calls {}, fault calls {} ({} refused with the time left), opened after \
         {:?}, requests/call {:.3} (once open {:?}), recovery {:?}, success {:.1} %, p50 {:?}, \
         p99 {:?}",
        figures.client,
        figures.kind,
        figures.healthy_calls,
        figures.fault_calls,
        figures.refused_with_time_left,
        figures.time_to_open,
        figures.requests_per_call,
        figures
            .requests_per_call_open
            .map(|r| (r * 1000.0).round() / 1000.0),
        figures.recovery,
        figures.fault_success * 100.0,
        figures.fault_p50,
        figures.fault_p99,
    );
}

fn assert_outage(figures: &Figures) {
    report(figures);
    let open = figures.time_to_open.expect("the breaker opens");
    assert!(open <= Duration::from_secs(1), "{figures:?}");
    assert!(figures.requests_per_call <= 1.0, "{figures:?}");
    let once_open = figures
        .requests_per_call_open
        .expect("open during the outage");
    assert!(once_open <= 0.1, "{figures:?}");
    // Refusals are what the outage's callers mostly got, each with the
    // time left open, at once.
    assert!(
        figures.refused_with_time_left * 2 > figures.fault_calls,
        "{figures:?}"
    );
    let recovery = figures.recovery.expect("calls succeed again");
    assert!(recovery <= OPEN + Duration::from_secs(1), "{figures:?}");
}

fn assert_brownout(figures: &Figures) {
    report(figures);
    assert_eq!(figures.time_to_open, None, "{figures:?}");
    assert!(figures.fault_success >= 0.999, "{figures:?}");
}

#[tokio::test(start_paused = true)]
async fn hanging_backend() {
    assert_outage(&scenario("standard", Kind::Hang, standard).await);
}

#[tokio::test(start_paused = true)]
async fn failing_backend() {
    assert_outage(&scenario("standard", Kind::Error, standard).await);
}

#[tokio::test(start_paused = true)]
async fn backend_asking_to_retry_after() {
    assert_outage(&scenario("standard", Kind::RetryAfter, standard).await);
}

#[tokio::test(start_paused = true)]
async fn brownout_absorbed_by_retries() {
    assert_brownout(&scenario("standard", Kind::Brownout, standard).await);
}

#[tokio::test(start_paused = true)]
async fn hedged_hanging_backend() {
    assert_outage(&scenario("hedged", Kind::Hang, hedged).await);
}

#[tokio::test(start_paused = true)]
async fn hedged_failing_backend() {
    assert_outage(&scenario("hedged", Kind::Error, hedged).await);
}

#[tokio::test(start_paused = true)]
async fn hedged_backend_asking_to_retry_after() {
    assert_outage(&scenario("hedged", Kind::RetryAfter, hedged).await);
}

#[tokio::test(start_paused = true)]
async fn hedged_brownout_absorbed_by_retries() {
    assert_brownout(&scenario("hedged", Kind::Brownout, hedged).await);
}

#[tokio::test(start_paused = true)]
async fn failing_backend_with_the_untouched_preset() {
    assert_outage(&scenario("untouched", Kind::Error, untouched).await);
}

#[tokio::test(start_paused = true)]
async fn backend_asking_to_retry_after_with_the_untouched_preset() {
    assert_outage(&scenario("untouched", Kind::RetryAfter, untouched).await);
}

#[tokio::test(start_paused = true)]
async fn brownout_with_the_untouched_preset() {
    assert_brownout(&scenario("untouched", Kind::Brownout, untouched).await);
}
