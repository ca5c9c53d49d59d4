//! Fault injection: rates, seeds, run-time switches, latency on paused time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::chaos::{ChaosLayer, ChaosStats, InjectedFault};
use steadfast::error::Elapsed;
use steadfast::timeout::TimeoutLayer;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

fn counting() -> (
    Arc<AtomicU32>,
    impl Service<
        u32,
        Response = u32,
        Error = BoxError,
        Future = impl Future<Output = Result<u32, BoxError>> + Send,
    > + Clone,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let svc = service_fn({
        let calls = calls.clone();
        move |n: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, BoxError>(n) }
        }
    });
    (calls, svc)
}

#[tokio::test(start_paused = true)]
async fn no_rates_no_faults() {
    let (calls, svc) = counting();
    let chaos = ChaosLayer::builder().build().unwrap();
    let mut svc = chaos.layer(svc);
    for n in 0..50 {
        assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 50);
    let stats = chaos.handle().stats();
    assert_eq!(
        (stats.calls, stats.errors, stats.hangs, stats.delayed),
        (50, 0, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn an_injected_error_never_reaches_the_service() {
    let (calls, svc) = counting();
    let mut svc = ChaosLayer::builder()
        .error_rate(1.0)
        .build()
        .unwrap()
        .layer(svc);
    for n in 0..10 {
        let err = svc.ready().await.unwrap().call(n).await.unwrap_err();
        assert!(err.is::<InjectedFault>());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_hang_lasts_until_a_timeout_gives_up() {
    let (_, svc) = counting();
    let svc = ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(3)).unwrap())
        .layer(ChaosLayer::builder().hang_rate(1.0).build().unwrap())
        .service(svc);
    let start = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(err.is::<Elapsed>());
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_chosen_response_replaces_the_call() {
    let (calls, svc) = counting();
    let svc = ChaosLayer::builder()
        .respond(1.0, || 503)
        .build()
        .unwrap()
        .layer(svc);
    assert_eq!(svc.oneshot(7).await.unwrap(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn latency_holds_the_outcome_back_within_its_range() {
    let (_, svc) = counting();
    let min = Duration::from_millis(200);
    let max = Duration::from_millis(300);
    let mut svc = ChaosLayer::builder()
        .latency(1.0, min, max)
        .seed(3)
        .build()
        .unwrap()
        .layer(svc);
    for n in 0..20 {
        let start = Instant::now();
        assert_eq!(svc.ready().await.unwrap().call(n).await.unwrap(), n);
        let took = start.elapsed();
        assert!(took >= min && took <= max, "{took:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn rates_are_met_over_many_calls_and_a_seed_repeats_them() {
    async fn run(seed: u64) -> (Vec<bool>, ChaosStats) {
        let (_, svc) = counting();
        let chaos = ChaosLayer::builder()
            .error_rate(0.25)
            .seed(seed)
            .build()
            .unwrap();
        let mut svc = chaos.layer(svc);
        let mut failed = Vec::new();
        for n in 0..4_000 {
            failed.push(svc.ready().await.unwrap().call(n).await.is_err());
        }
        (failed, chaos.handle().stats())
    }
    let (first, stats) = run(11).await;
    // 4,000 draws at 25 %: 1,000 expected, the standard deviation is 27.
    assert!((880..=1_120).contains(&stats.errors), "{stats:?}");
    assert_eq!(
        first,
        run(11).await.0,
        "the same seed gives the same faults"
    );
    assert_ne!(first, run(12).await.0);
}

#[tokio::test(start_paused = true)]
async fn the_handle_switches_faults_while_services_run() {
    let (calls, svc) = counting();
    let chaos = ChaosLayer::builder().error_rate(1.0).build().unwrap();
    let handle = chaos.handle();
    let mut a = chaos.layer(svc.clone());
    let mut b = chaos.clone().layer(svc);
    assert!(a.ready().await.unwrap().call(1).await.is_err());
    handle.disable();
    assert!(!handle.is_enabled());
    assert!(b.ready().await.unwrap().call(2).await.is_ok());
    handle.enable();
    handle.set_error_rate(0.0).unwrap();
    handle.set_hang_rate(0.0).unwrap();
    assert!(a.ready().await.unwrap().call(3).await.is_ok());
    handle.set_error_rate(1.0).unwrap();
    assert!(b.ready().await.unwrap().call(4).await.is_err());
    handle.heal();
    assert!(b.ready().await.unwrap().call(5).await.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(handle.stats().calls, 5);
}

#[test]
fn bad_rates_are_refused() {
    let err = ChaosLayer::builder().error_rate(1.5).build().unwrap_err();
    assert_eq!(err.field(), "chaos.error_rate");
    let err = ChaosLayer::builder()
        .hang_rate(f64::NAN)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "chaos.hang_rate");
    let err = ChaosLayer::builder()
        .error_rate(0.6)
        .hang_rate(0.6)
        .build()
        .unwrap_err();
    assert!(err.rule().contains("at most 1"), "{err}");
    let err = ChaosLayer::builder()
        .latency(0.5, Duration::from_secs(2), Duration::from_secs(1))
        .build()
        .unwrap_err();
    assert_eq!(err.other().map(|o| o.0), Some("chaos.latency_max"));
    let handle = ChaosLayer::builder().build().unwrap().handle();
    let err = handle.set_respond_rate(0.1).unwrap_err();
    assert_eq!(err.field(), "chaos.respond_rate");
    assert!(
        handle
            .set_latency(2.0, Duration::ZERO, Duration::ZERO)
            .is_err()
    );
}
