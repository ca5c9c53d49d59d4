//! A plain harness for the closed-breaker rows: instruction counts under
//! callgrind, and the throughput of one shared breaker from one and two
//! tasks on a 2-worker runtime, with the process's CPU time over wall time.
//!
//! ```sh
//! cargo bench -p steadfast-benches --bench breaker_calls --no-run
//! benches/callgrind.sh                     # instructions per call, every case
//! target/release/deps/breaker_calls-* tasks count 2 3   # calls/s, CPU/wall
//! ```
//!
//! `calls <case> <n>` makes `n` calls back to back in a current-thread
//! runtime; `tasks <case> <tasks> <seconds>` runs `tasks` tasks calling
//! back to back on a 2-worker runtime for `seconds`. Cases: `bare`,
//! `count` (steadfast, count window 100), `time` (steadfast, 60 s in 10
//! buckets), `recloser` (ring of 100), `failsafe` (60 s, 100 calls).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use steadfast::circuit_breaker::CircuitBreakerLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

#[path = "breaker_peers.rs"]
mod breaker_peers;

use breaker_peers::{Failsafe, Reclosed};

type Inner = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

fn inner() -> Inner {
    service_fn(|x: u64| ready(Ok::<_, Infallible>(x)))
}

/// Runs `f` with the service of `case`.
macro_rules! with_case {
    ($case:expr, |$svc:ident| $body:expr) => {
        match $case {
            "bare" => {
                let $svc = inner();
                $body
            }
            "count" => {
                let $svc = CircuitBreakerLayer::builder()
                    .count_window(100)
                    .build()
                    .expect("settings")
                    .layer(inner());
                $body
            }
            "time" => {
                let $svc = CircuitBreakerLayer::builder()
                    .time_window(Duration::from_secs(60), 10)
                    .build()
                    .expect("settings")
                    .layer(inner());
                $body
            }
            "recloser" => {
                let $svc = Reclosed::new(inner(), 100);
                $body
            }
            "failsafe" => {
                let $svc = Failsafe::new(inner(), Duration::from_secs(60), 100);
                $body
            }
            other => panic!("unknown case {other}"),
        }
    };
}

async fn call_n<S>(svc: &mut S, from: u64, n: u64)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    for i in from..from + n {
        let ready = svc.ready().await.expect("ready");
        black_box(ready.call(black_box(i)).await.expect("call"));
    }
}

fn calls<S>(mut svc: S, n: u64)
where
    S: Service<u64, Response = u64>,
    S::Error: std::fmt::Debug,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(call_n(&mut svc, 0, n));
}

/// On-CPU time of every thread of this process so far.
fn cpu_time() -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").expect("/proc") {
        let path = task.expect("task").path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

fn tasks<S>(svc: S, tasks: u64, seconds: f64)
where
    S: Service<u64, Response = u64> + Clone + Send + 'static,
    S::Error: std::fmt::Debug,
    S::Future: Send,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    // Warm both workers and the breaker up.
    rt.block_on(async {
        let mut svc = svc.clone();
        call_n(&mut svc, 0, 100_000).await;
    });
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let mut svc = svc.clone();
            let (stop, started, done) = (stop.clone(), started.clone(), done.clone());
            rt.spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                while started.load(Ordering::SeqCst) < tasks {
                    std::hint::spin_loop();
                }
                let mut made = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    call_n(&mut svc, made, 1_024).await;
                    made += 1_024;
                }
                done.fetch_add(made, Ordering::SeqCst);
            })
        })
        .collect();
    while started.load(Ordering::SeqCst) < tasks {
        std::hint::spin_loop();
    }
    let (wall0, cpu0) = (Instant::now(), cpu_time());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    // The main thread sleeps: the CPU time is the workers'.
    let (wall, cpu) = (wall0.elapsed(), cpu_time() - cpu0);
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for handle in handles {
            handle.await.expect("task");
        }
    });
    let made = done.load(Ordering::SeqCst);
    println!(
        "{tasks} task(s): {:.1} M calls/s, CPU/wall {:.2}",
        made as f64 / wall.as_secs_f64() / 1e6,
        cpu.as_secs_f64() / wall.as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    match args.as_slice() {
        ["calls", case, n] => {
            let n = n.parse().expect("calls");
            with_case!(*case, |svc| calls(svc, n));
        }
        ["tasks", case, count, seconds] => {
            let count = count.parse().expect("tasks");
            let seconds = seconds.parse().expect("seconds");
            with_case!(*case, |svc| tasks(svc, count, seconds));
        }
        // `cargo bench` runs every bench binary: nothing to do then.
        _ => eprintln!("usage: breaker_calls calls <case> <n> | tasks <case> <tasks> <seconds>"),
    }
}
