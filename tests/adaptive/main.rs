//! Adaptive limiter tests: a simulated backend of fixed capacity on paused
//! time, whose service time doubles and recovers, under open-loop load;
//! client-side throttling against a backend that sheds load; admission,
//! refusals and settings.

mod unit;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::adaptive::{AdaptiveHandle, AdaptiveLayer, Aimd, Throttle};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

/// A backend with `servers` calls served at once and the rest queued (or
/// shed, if `shed`), each taking the current service time.
#[derive(Clone)]
struct Backend {
    state: Arc<BackendState>,
}

struct BackendState {
    servers: Arc<Semaphore>,
    service: AtomicU64,
    shed: bool,
    received: AtomicU64,
    served: AtomicU64,
    max_wait: AtomicU64,
}

impl Backend {
    fn new(servers: usize, service: Duration, shed: bool) -> Self {
        Self {
            state: Arc::new(BackendState {
                servers: Arc::new(Semaphore::new(servers)),
                service: AtomicU64::new(nanos(service)),
                shed,
                received: AtomicU64::new(0),
                served: AtomicU64::new(0),
                max_wait: AtomicU64::new(0),
            }),
        }
    }

    fn set_service(&self, service: Duration) {
        self.state.service.store(nanos(service), Ordering::Relaxed);
    }

    /// The longest queue wait since the last call, then reset.
    fn take_max_wait(&self) -> Duration {
        Duration::from_nanos(self.state.max_wait.swap(0, Ordering::Relaxed))
    }

    fn received(&self) -> u64 {
        self.state.received.load(Ordering::Relaxed)
    }

    fn served(&self) -> u64 {
        self.state.served.load(Ordering::Relaxed)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).expect("short")
}

impl Service<()> for Backend {
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            state.received.fetch_add(1, Ordering::Relaxed);
            let arrived = Instant::now();
            let permit = if state.shed {
                match Arc::clone(&state.servers).try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => return Err("overloaded".into()),
                }
            } else {
                Arc::clone(&state.servers)
                    .acquire_owned()
                    .await
                    .expect("open")
            };
            state
                .max_wait
                .fetch_max(nanos(arrived.elapsed()), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_nanos(state.service.load(Ordering::Relaxed))).await;
            drop(permit);
            state.served.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
    }
}

/// Sends `rate` calls a second for `length`, open loop: each call is a task
/// of its own, whatever happened to the others. Samples the limit every
/// 100 ms.
async fn drive<S>(service: &S, handle: &AdaptiveHandle, rate: u64, length: Duration) -> Vec<usize>
where
    S: Service<()> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    let gap = Duration::from_secs(1) / u32::try_from(rate).expect("rate");
    let mut next = Instant::now();
    let end = next + length;
    let mut next_sample = next;
    let mut limits = Vec::new();
    while next < end {
        tokio::time::sleep_until(next).await;
        let mut service = service.clone();
        tokio::spawn(async move {
            if let Ok(ready) = service.ready().await {
                let _ = ready.call(()).await;
            }
        });
        if Instant::now() >= next_sample {
            limits.push(handle.limit());
            next_sample += Duration::from_millis(100);
        }
        next += gap;
    }
    limits
}

/// The earliest sample from which every later sample of the phase is
/// within 25 % of `capacity`, in seconds since the phase began.
fn settled_after(limits: &[usize], capacity: usize) -> Option<f64> {
    let within = |l: usize| l * 4 >= capacity * 3 && l * 4 <= capacity * 5;
    let last_out = limits.iter().rposition(|&l| !within(l));
    match last_out {
        None => Some(0.0),
        Some(i) if i + 1 < limits.len() => Some((i + 1) as f64 / 10.0),
        Some(_) => None,
    }
}

const SERVERS: usize = 40;
const FAST: Duration = Duration::from_millis(50);
const SLOW: Duration = Duration::from_millis(100);
/// 1,000 calls a second: 1.25 times what the backend serves at 50 ms a
/// call, 2.5 times at 100 ms.
const RATE: u64 = 1_000;
const PHASE: Duration = Duration::from_secs(20);
/// How soon after each change the limit must be within 25 % of capacity.
const SETTLE: f64 = 5.0;

#[tokio::test(start_paused = true)]
async fn the_gradient_limit_finds_the_capacity_after_each_change() {
    let backend = Backend::new(SERVERS, FAST, false);
    let layer = AdaptiveLayer::builder().build().expect("defaults");
    let handle = layer.handle();
    let service = layer.layer(backend.clone()).map_err(|e: BoxError| e);

    let mut report = Vec::new();
    for (phase, service_time) in [FAST, SLOW, FAST].into_iter().enumerate() {
        backend.set_service(service_time);
        backend.take_max_wait();
        let served_before = backend.served();
        let limits = drive(&service, &handle, RATE, PHASE).await;
        // Goodput: what the backend served, against what it can serve
        // (what a static limit of exactly its capacity gets).
        let capacity = SERVERS as f64 * PHASE.as_secs_f64() / service_time.as_secs_f64();
        let goodput = (backend.served() - served_before) as f64 / capacity;
        let settled = settled_after(&limits, SERVERS);
        let max_wait = backend.take_max_wait();
        report.push((
            phase,
            service_time,
            settled,
            max_wait,
            limits.iter().copied().max(),
            format!("{:.1} %", goodput * 100.0),
        ));
        assert!(
            goodput >= 0.9,
            "phase {phase}: goodput {goodput:.3} of capacity"
        );
        assert!(
            settled.is_some_and(|s| s <= SETTLE),
            "phase {phase} ({service_time:?}): limit not within 25 % of {SERVERS} after {SETTLE} s: {limits:?}"
        );
        // Queueing beyond the capacity is bounded: no call waits for a
        // server longer than one slow service time.
        assert!(
            max_wait <= SLOW,
            "phase {phase}: a call waited {max_wait:?} in the backend's queue"
        );
    }
    println!("phase, service time, settled after (s), longest queue wait, highest limit, goodput");
    for row in &report {
        println!("{row:?}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(handle.in_flight(), 0, "every permit came back");
}

#[tokio::test(start_paused = true)]
async fn a_static_limit_set_too_high_lets_the_queue_grow() {
    // The same load through a limit of 1,000 (the AIMD limiter pinned to
    // it): the contrast that shows the simulation can fail.
    let backend = Backend::new(SERVERS, SLOW, false);
    let layer = AdaptiveLayer::builder()
        .aimd(Aimd::new())
        .limits(1_000, 1_000)
        .initial_limit(1_000)
        .build()
        .expect("valid");
    let handle = layer.handle();
    let service = layer.layer(backend.clone()).map_err(|e: BoxError| e);
    drive(&service, &handle, RATE, Duration::from_secs(5)).await;
    assert!(
        backend.take_max_wait() > SLOW * 5,
        "without a fitting limit calls queue for many service times"
    );
}

#[tokio::test(start_paused = true)]
async fn throttling_with_the_limit_keeps_backend_requests_near_what_it_serves() {
    // A backend that sheds what it cannot serve at once, overloaded three
    // times over.
    let backend = Backend::new(SERVERS, FAST, true);
    let layer = AdaptiveLayer::builder()
        .throttle(Throttle::new())
        .build()
        .expect("defaults");
    let handle = layer.handle();
    let service = layer.layer(backend.clone()).map_err(|e: BoxError| e);
    // Warm up, then measure 30 s of overload.
    drive(&service, &handle, 2_400, Duration::from_secs(10)).await;
    let (received, served) = (backend.received(), backend.served());
    drive(&service, &handle, 2_400, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = backend.received() - received;
    let served = backend.served() - served;
    let ratio = received as f64 / served as f64;
    println!(
        "backend requests {received}, served {served}, ratio {ratio:.3}, reject probability {:?}",
        handle.reject_probability()
    );
    assert!(
        ratio <= 1.2,
        "backend requests {received} for {served} served"
    );
    // The limit keeps the calls the backend would shed from reaching it,
    // so the backend accepts nearly all it sees and the throttle, which
    // does not count the limit's refusals, refuses next to nothing.
    assert!(handle.reject_probability().is_some_and(|p| p < 0.05));
}

#[tokio::test(start_paused = true)]
async fn throttling_alone_sends_about_k_times_what_is_accepted() {
    let backend = Backend::new(SERVERS, FAST, true);
    let layer = AdaptiveLayer::builder()
        .aimd(Aimd::new())
        .limits(10_000, 10_000)
        .initial_limit(10_000)
        .throttle(Throttle::new())
        .build()
        .expect("valid");
    let handle = layer.handle();
    let service = layer.layer(backend.clone()).map_err(|e: BoxError| e);
    drive(&service, &handle, 2_400, Duration::from_secs(10)).await;
    let (received, served) = (backend.received(), backend.served());
    drive(&service, &handle, 2_400, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = backend.received() - received;
    let served = backend.served() - served;
    let ratio = received as f64 / served as f64;
    println!("throttle alone: backend requests {received}, served {served}, ratio {ratio:.3}");
    // Without throttling the backend would see 3 times what it serves.
    assert!((1.7..=2.3).contains(&ratio), "ratio {ratio}");
}

#[tokio::test(start_paused = true)]
async fn throttling_alone_with_k_1_1_sends_within_1_2_times_what_is_accepted() {
    // The documented setting for a throttle without a working limit: k =
    // 1.1 lets through a tenth more than the backend accepts.
    let backend = Backend::new(SERVERS, FAST, true);
    let layer = AdaptiveLayer::builder()
        .aimd(Aimd::new())
        .limits(10_000, 10_000)
        .initial_limit(10_000)
        .throttle(Throttle::new().k(1.1))
        .build()
        .expect("valid");
    let handle = layer.handle();
    let service = layer.layer(backend.clone()).map_err(|e: BoxError| e);
    drive(&service, &handle, 2_400, Duration::from_secs(10)).await;
    let (received, served) = (backend.received(), backend.served());
    drive(&service, &handle, 2_400, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = backend.received() - received;
    let served = backend.served() - served;
    let ratio = received as f64 / served as f64;
    println!(
        "throttle alone, k = 1.1: backend requests {received}, served {served}, ratio {ratio:.3}"
    );
    assert!(ratio <= 1.2, "ratio {ratio}");
    // The price: with so little slack, random gaps in what it lets through
    // leave workers idle (k = 2 keeps them all busy).
    let capacity = SERVERS as f64 * 20.0 / FAST.as_secs_f64();
    println!(
        "served {:.1} % of capacity",
        served as f64 / capacity * 100.0
    );
    assert!(
        served as f64 >= capacity * 0.85,
        "served {served} of {capacity}"
    );
}

/// What one phase of [`drive_phases`] measured.
#[derive(Debug, Clone, Copy)]
struct PhaseResult {
    /// Calls answered within the timeout.
    answered: u64,
    /// The 99th percentile of their round-trip times.
    p99: Duration,
}

/// Sends `rate` calls a second through each phase (a service time for a
/// length of time), open loop, each call with `timeout`; once they have
/// all ended, what the calls sent in each phase got.
async fn drive_phases<S>(
    service: &S,
    backend: &Backend,
    rate: u64,
    phases: &[(Duration, Duration)],
    timeout: Duration,
) -> Vec<PhaseResult>
where
    S: Service<()> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    let answered: Arc<std::sync::Mutex<Vec<Vec<Duration>>>> =
        Arc::new(std::sync::Mutex::new(vec![Vec::new(); phases.len()]));
    let gap = Duration::from_secs(1) / u32::try_from(rate).expect("rate");
    let mut tasks = Vec::new();
    for (i, &(service_time, length)) in phases.iter().enumerate() {
        backend.set_service(service_time);
        let mut next = Instant::now();
        let end = next + length;
        while next < end {
            tokio::time::sleep_until(next).await;
            let mut service = service.clone();
            let answered = Arc::clone(&answered);
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                let call = async {
                    match service.ready().await {
                        Ok(ready) => ready.call(()).await.is_ok(),
                        Err(_) => false,
                    }
                };
                if let Ok(true) = tokio::time::timeout(timeout, call).await {
                    answered.lock().expect("answers")[i].push(start.elapsed());
                }
            }));
            next += gap;
        }
    }
    for task in tasks {
        task.await.expect("ran");
    }
    let mut answered = answered.lock().expect("answers");
    answered
        .iter_mut()
        .map(|rtts| {
            rtts.sort();
            PhaseResult {
                answered: rtts.len() as u64,
                p99: rtts
                    .get(rtts.len() * 99 / 100)
                    .copied()
                    .unwrap_or(Duration::MAX),
            }
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn in_short_phases_the_adaptive_limit_serves_nine_tenths_of_the_best_static_one() {
    // The example's scenario on paused time: 20 workers, 600 calls a
    // second (1.5 and 3 times what the backend serves), 3 s phases, a 1 s
    // timeout, from a cold start; against a static limit of exactly the
    // workers (the best one, chosen after the fact), whose p99 is the
    // unloaded one.
    const WORKERS: usize = 20;
    let phases = [
        (FAST, Duration::from_secs(3)),
        (SLOW, Duration::from_secs(3)),
        (FAST, Duration::from_secs(3)),
    ];
    let timeout = Duration::from_secs(1);
    let best = {
        let backend = Backend::new(WORKERS, FAST, false);
        let layer = AdaptiveLayer::builder()
            .aimd(Aimd::new())
            .limits(WORKERS, WORKERS)
            .initial_limit(WORKERS)
            .build()
            .expect("valid");
        let service = layer.layer(backend.clone()).map_err(|e: BoxError| e);
        drive_phases(&service, &backend, 600, &phases, timeout).await
    };
    for throttle in [false, true] {
        let backend = Backend::new(WORKERS, FAST, false);
        let mut builder = AdaptiveLayer::builder();
        if throttle {
            builder = builder.throttle(Throttle::new());
        }
        let layer = builder.build().expect("defaults");
        let handle = layer.handle();
        let service = layer.layer(backend.clone()).map_err(|e: BoxError| e);
        let got = drive_phases(&service, &backend, 600, &phases, timeout).await;
        let shares: Vec<f64> = got
            .iter()
            .zip(&best)
            .map(|(a, b)| a.answered as f64 / b.answered as f64)
            .collect();
        println!(
            "throttle {throttle}: {got:?}, static {best:?}, shares {shares:.3?}, \
             limit {}, min_rtt {:?}, throttle counts {:?}",
            handle.limit(),
            handle.min_rtt(),
            handle.throttle_counts()
        );
        for (phase, ((share, result), &(service_time, _))) in
            shares.iter().zip(&got).zip(&phases).enumerate()
        {
            assert!(
                *share >= 0.9,
                "throttle {throttle}, phase {phase}: {share:.3} of the static limit's goodput"
            );
            assert!(
                result.p99 <= service_time * 2,
                "throttle {throttle}, phase {phase}: p99 {:?} over twice the unloaded {service_time:?}",
                result.p99
            );
        }
        // After the speed-up the no-load time was measured again, not
        // taken from a window's mean with a queue in it.
        let min_rtt = handle.min_rtt().expect("measured");
        assert!(
            min_rtt <= FAST.mul_f64(1.1),
            "throttle {throttle}: no-load round-trip time {min_rtt:?}"
        );
    }
}
