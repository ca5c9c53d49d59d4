//! A CI-sized soak: tens of thousands of calls with injected faults and
//! abandoned calls through the full stack on a multi-thread runtime. Every
//! permit and probe slot comes back, every keyed store stays within its
//! bound, and resident memory does not grow past a margin after warm-up.
//!
//! `cargo run --release --example soak` runs the same with a million calls.

mod run;

/// Resident memory may grow this much after warm-up (allocator slack).
const RSS_MARGIN: u64 = 32 << 20;

#[test]
fn soak_with_faults_loses_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = runtime.block_on(run::soak(30_000, 64, 0x50A4));
    // Faults were injected and survived: most calls that were let through
    // succeeded. (With 64 calls in flight over 96 keys and 32 places, the
    // keys left over share one overflow bulkhead and are often refused.)
    let admitted = outcome.calls - outcome.refused - outcome.abandoned;
    assert!(outcome.ok > admitted / 2, "{outcome:?}");
    assert!(outcome.failed > 0 && outcome.abandoned > 0, "{outcome:?}");
    if let (Some(warm), Some(end)) = (outcome.rss_after_warm_up, outcome.rss_at_end) {
        assert!(
            end <= warm + RSS_MARGIN,
            "resident memory grew from {warm} to {end} bytes"
        );
    }
}
