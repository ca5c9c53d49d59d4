//! Half-open under real concurrency (multi-thread runtime, real clock).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::poll;
use steadfast::BoxError;
use steadfast::circuit_breaker::{CircuitBreakerHandle, CircuitBreakerLayer, State};
use steadfast::error::CircuitOpen;
use tokio::sync::{Barrier, Semaphore};
use tower::{Layer, Service, ServiceExt, service_fn};

#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
    entered: AtomicUsize,
}

struct Entered(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> Entered {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        self.entered.fetch_add(1, Ordering::SeqCst);
        Entered(self.clone())
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A breaker (count window 1, open 1 ms) around a service whose calls wait
/// for `gate`, with its in-flight calls counted.
fn gated(
    probes: u32,
) -> (
    impl Service<bool, Response = (), Error = BoxError, Future: Send> + Clone + Send + 'static,
    CircuitBreakerHandle,
    Arc<InFlight>,
    Arc<Semaphore>,
) {
    let layer = CircuitBreakerLayer::builder()
        .count_window(1)
        .open_duration(Duration::from_millis(1))
        .half_open_probes(probes)
        .build()
        .unwrap();
    let stats = Arc::new(InFlight::default());
    let gate = Arc::new(Semaphore::new(0));
    let (s, g) = (stats.clone(), gate.clone());
    let service = layer.layer(service_fn(move |fail: bool| {
        let (stats, gate) = (s.clone(), g.clone());
        async move {
            if fail {
                return Err::<(), BoxError>("reset".into());
            }
            let _entered = stats.enter();
            gate.acquire().await?.forget();
            Ok(())
        }
    }));
    (service, layer.handle(), stats, gate)
}

/// Opens the breaker with one failure and waits (yielding, on the real
/// clock) until its 1 ms open period is over.
async fn open_then_wait<S>(service: &mut S, handle: &CircuitBreakerHandle)
where
    S: Service<bool, Response = (), Error = BoxError>,
{
    handle.reset();
    assert!(service.ready().await.unwrap().call(true).await.is_err());
    assert_eq!(handle.state(), State::Open);
    while handle.snapshot().open_remaining != Some(Duration::ZERO) {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_open_never_admits_more_probes_than_configured() {
    const PROBES: usize = 3;
    const TASKS: usize = 16;
    let (mut service, handle, stats, gate) = gated(PROBES as u32);
    for round in 0..100 {
        stats.entered.store(0, Ordering::SeqCst);
        open_then_wait(&mut service, &handle).await;
        let refused = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (service, refused, barrier) =
                    (service.clone(), refused.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    match service.oneshot(false).await {
                        Ok(()) => {}
                        Err(err) if err.is::<CircuitOpen>() => {
                            refused.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(err) => panic!("unexpected error {err}"),
                    }
                })
            })
            .collect();
        // Every task has been admitted (and waits at the gate) or refused.
        while stats.entered.load(Ordering::SeqCst) + refused.load(Ordering::SeqCst) < TASKS {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            stats.entered.load(Ordering::SeqCst),
            PROBES,
            "round {round}"
        );
        assert_eq!(handle.state(), State::HalfOpen);
        gate.add_permits(TASKS);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            refused.load(Ordering::SeqCst),
            TASKS - PROBES,
            "round {round}"
        );
        assert_eq!(
            handle.state(),
            State::Closed,
            "round {round}: the probes passed"
        );
        gate.forget_permits(TASKS);
    }
    assert_eq!(stats.max.load(Ordering::SeqCst), PROBES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dropped_probes_free_their_slots() {
    const PROBES: usize = 2;
    const TASKS: usize = 32;
    let (mut service, handle, stats, gate) = gated(PROBES as u32);
    for round in 0..100 {
        open_then_wait(&mut service, &handle).await;
        let barrier = Arc::new(Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let (mut service, barrier) = (service.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    for _ in 0..4 {
                        let mut call = Box::pin(service.ready().await.unwrap().call(false));
                        if i % 2 == 0 {
                            // Started, then abandoned while it waits.
                            let _ = poll!(call.as_mut());
                        }
                        tokio::task::yield_now().await;
                        drop(call);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            handle.state(),
            State::HalfOpen,
            "round {round}: abandoned probes count for nothing"
        );
        assert_eq!(stats.now.load(Ordering::SeqCst), 0);
        // Every slot is free again: two probes go through and close it.
        gate.add_permits(PROBES);
        for _ in 0..PROBES {
            service.ready().await.unwrap().call(false).await.unwrap();
        }
        assert_eq!(handle.state(), State::Closed, "round {round}");
    }
    assert!(stats.max.load(Ordering::SeqCst) <= PROBES);
}
