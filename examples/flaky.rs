//! Retry and timeouts rescuing calls to a flaky service.
//!
//! An in-process service fails a share of its calls at once (a reset
//! connection) and hangs on some others. The same 2,000 calls go through it
//! bare, then through a total deadline, retry with jittered backoff and an
//! attempt timeout. Run with:
//!
//! ```text
//! cargo run --release --example flaky
//! ```
//!
//! Time is simulated (tokio's paused clock), so the run takes about a second
//! of real time whatever the latencies, and the same seed gives the same
//! figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use steadfast::BoxError;
use steadfast::retry::{Backoff, Jitter, RetryBudget, RetryLayer, SeededRandom};
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

const CALLS: u64 = 2_000;
const FAIL_RATE: f64 = 0.20;
const HANG_RATE: f64 = 0.05;

#[derive(Default)]
struct Stats {
    sent: AtomicU64,
}

/// A backend that answers in 20 ms, but fails 20 % of calls at once and
/// hangs on 5 % of them.
fn flaky_backend(
    stats: Arc<Stats>,
    seed: u64,
) -> impl Service<u64, Response = u64, Error = BoxError, Future = impl Send> + Clone {
    let random = Arc::new(SeededRandom::new(seed));
    service_fn(move |n: u64| {
        stats.sent.fetch_add(1, Ordering::Relaxed);
        let draw =
            (steadfast::retry::RandomSource::next_u64(&*random) >> 11) as f64 / (1u64 << 53) as f64;
        async move {
            if draw < FAIL_RATE {
                return Err(BoxError::from("connection reset"));
            }
            if draw < FAIL_RATE + HANG_RATE {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(n)
        }
    })
}

struct Report {
    ok: u64,
    p99: Duration,
    sent: u64,
}

async fn drive<S>(mut svc: S, stats: &Stats) -> Report
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    let mut latencies = Vec::with_capacity(CALLS as usize);
    let mut ok = 0;
    for n in 0..CALLS {
        let start = Instant::now();
        // A bare caller would wait forever on a hung call: give every
        // caller the same 2 s patience so the comparison ends.
        let call = svc.ready().await.expect("ready").call(n);
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), call).await {
            ok += 1;
        }
        latencies.push(start.elapsed());
    }
    latencies.sort();
    Report {
        ok,
        p99: latencies[(latencies.len() * 99) / 100],
        sent: stats.sent.load(Ordering::Relaxed),
    }
}

fn print(name: &str, r: &Report) {
    println!(
        "{name:<10} success {:>6.2} %   p99 {:>6} ms   backend calls per call {:.2}",
        100.0 * r.ok as f64 / CALLS as f64,
        r.p99.as_millis(),
        r.sent as f64 / CALLS as f64,
    );
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), BoxError> {
    println!(
        "{CALLS} calls to a backend that fails {:.0} % of calls and hangs on {:.0} %:\n",
        FAIL_RATE * 100.0,
        HANG_RATE * 100.0
    );

    let stats = Arc::new(Stats::default());
    let bare = drive(flaky_backend(stats.clone(), 7), &stats).await;
    print("bare", &bare);

    let stats = Arc::new(Stats::default());
    let steadfast = ServiceBuilder::new()
        .layer(TotalDeadlineLayer::new(Duration::from_secs(1))?)
        .layer(
            RetryLayer::builder()
                .max_attempts(3)
                .backoff(
                    Backoff::exponential(Duration::from_millis(25))
                        .cap(Duration::from_millis(250))
                        .jitter(Jitter::Full),
                )
                .budget(RetryBudget::builder().ratio(0.5).build()?)
                .seed(1)
                .build()?,
        )
        .layer(TimeoutLayer::new(Duration::from_millis(100))?)
        .service(flaky_backend(stats.clone(), 7));
    let rescued = drive(steadfast, &stats).await;
    print("steadfast", &rescued);

    println!(
        "\nFailed calls: {} bare, {} with retry and timeouts.",
        CALLS - bare.ok,
        CALLS - rescued.ok
    );
    Ok(())
}
