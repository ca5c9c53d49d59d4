//! A soak run: a million calls with injected faults through the full stack
//! of layers (total deadline, keyed bulkheads, retry with a budget, keyed
//! breakers, attempt timeout, chaos) on a multi-thread runtime, one call in
//! seven abandoned mid-flight. At the end it checks that every permit and
//! probe slot came back, that every keyed store stayed within its bound and
//! that resident memory did not grow past a fixed margin after warm-up.
//!
//! ```text
//! cargo run --release --example soak [calls]
//! ```

#[path = "../tests/soak/run.rs"]
mod run;

const RSS_MARGIN: u64 = 64 << 20;

fn main() {
    let calls = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = std::time::Instant::now();
    let outcome = runtime.block_on(run::soak(calls, 128, 0x50A4));
    println!(
        "{} calls in {:.1} s: {} ok, {} failed ({} refused), {} abandoned",
        outcome.calls,
        started.elapsed().as_secs_f64(),
        outcome.ok,
        outcome.failed,
        outcome.refused,
        outcome.abandoned
    );
    println!(
        "every permit and probe slot back; keyed stores within {} keys",
        run::MAX_KEYS
    );
    match (outcome.rss_after_warm_up, outcome.rss_at_end) {
        (Some(warm), Some(end)) => {
            println!(
                "resident memory: {:.1} MiB after warm-up, {:.1} MiB at the end",
                warm as f64 / (1 << 20) as f64,
                end as f64 / (1 << 20) as f64
            );
            assert!(
                end <= warm + RSS_MARGIN,
                "resident memory grew past the margin"
            );
        }
        _ => println!("resident memory: not readable on this system"),
    }
}
