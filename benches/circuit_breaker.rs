//! Circuit breaker overhead while closed, beside tower-resilience's breaker,
//! and throughput of one shared breaker driven from one and two threads.
//!
//! `cargo bench --bench circuit_breaker -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use steadfast::circuit_breaker::CircuitBreakerLayer;
use tower::{Layer, Service, service_fn};

type Inner = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

fn inner() -> Inner {
    service_fn(|x: u64| ready(Ok::<_, Infallible>(x)))
}

/// An inner service that does about a microsecond of work per call, so the
/// threads have something to do besides the breaker.
type Busy = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

fn busy() -> Busy {
    service_fn(|x: u64| {
        let mut h = x;
        for i in 0..400u64 {
            h = black_box(h.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ i);
        }
        ready(Ok::<_, Infallible>(h))
    })
}

/// One full call as a tower client makes it: `poll_ready`, `call`, and the
/// response future polled to completion (every inner future here is ready
/// at once).
#[inline]
fn drive<S: Service<u64>>(service: &mut S, cx: &mut Context<'_>, request: u64) -> bool {
    match service.poll_ready(cx) {
        Poll::Ready(Ok(())) => {}
        _ => return false,
    }
    let future = pin!(service.call(request));
    matches!(future.poll(cx), Poll::Ready(Ok(_)))
}

fn closed_overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("circuit_breaker/closed_call");
    let mut cx = Context::from_waker(Waker::noop());

    let mut bare = inner();
    group.bench_function("bare_service", |b| {
        b.iter(|| drive(&mut bare, &mut cx, black_box(1)));
    });

    let layer = CircuitBreakerLayer::builder().build().unwrap();
    let mut steadfast = layer.layer(inner());
    group.bench_function("steadfast", |b| {
        b.iter(|| drive(&mut steadfast, &mut cx, black_box(1)));
    });

    let layer = CircuitBreakerLayer::builder()
        .slow_call_duration(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut slow = layer.layer(inner());
    group.bench_function("steadfast_slow_call_detection", |b| {
        b.iter(|| drive(&mut slow, &mut cx, black_box(1)));
    });

    let layer = CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(60), 10)
        .build()
        .unwrap();
    let mut timed = layer.layer(inner());
    group.bench_function("steadfast_time_window", |b| {
        b.iter(|| drive(&mut timed, &mut cx, black_box(1)));
    });

    let peer_layer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .unwrap();
    let mut peer = peer_layer.layer(inner());
    group.bench_function("tower_resilience", |b| {
        b.iter(|| drive(&mut peer, &mut cx, black_box(1)));
    });
    group.finish();
}

/// Each of `threads` threads makes `iters` calls through its clone of
/// `service`; the time is the wall time of the slowest. The threads spin
/// (not block) until all of them run, so that no timed loop starts while a
/// CPU is still waking up.
fn run_threads<S>(service: &S, threads: u64, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send,
{
    let running = AtomicU64::new(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let mut service = service.clone();
                let running = &running;
                scope.spawn(move || {
                    let mut cx = Context::from_waker(Waker::noop());
                    running.fetch_add(1, Ordering::SeqCst);
                    while running.load(Ordering::SeqCst) < threads {
                        std::hint::spin_loop();
                    }
                    let start = Instant::now();
                    for i in 0..iters {
                        black_box(drive(&mut service, &mut cx, i));
                    }
                    start.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .max()
            .unwrap_or_default()
    })
}

fn shared_threads(c: &mut Criterion) {
    for (name, work) in [("no_work", false), ("1us_work", true)] {
        let mut group = c.benchmark_group(format!("circuit_breaker/shared_{name}"));
        for threads in [1u64, 2] {
            // One iteration: one call on each thread.
            group.throughput(Throughput::Elements(threads));
            let layer = CircuitBreakerLayer::builder().build().unwrap();
            let service = if work {
                layer.layer(busy())
            } else {
                layer.layer(inner())
            };
            if work {
                let bare = busy();
                group.bench_function(format!("bare_service/{threads}_threads"), |b| {
                    b.iter_custom(|iters| run_threads(&bare, threads, iters));
                });
            }
            group.bench_function(format!("steadfast/{threads}_threads"), |b| {
                b.iter_custom(|iters| run_threads(&service, threads, iters));
            });
            let peer = tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
                .build()
                .unwrap();
            let service = if work {
                peer.layer(busy())
            } else {
                peer.layer(inner())
            };
            group.bench_function(format!("tower_resilience/{threads}_threads"), |b| {
                b.iter_custom(|iters| run_threads(&service, threads, iters));
            });
        }
        group.finish();
    }
}

criterion_group!(benches, closed_overhead, shared_threads);
criterion_main!(benches);
