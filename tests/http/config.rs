//! Bad settings and inconsistent presets fail at build time, naming both
//! fields.

use std::time::Duration;

use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::http::{BufferRequestBodyLayer, ServerDeadlineLayer};
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, Jitter, RetryLayer};

#[test]
fn attempt_timeout_longer_than_total() {
    let err = Policy::builder()
        .total_timeout(Duration::from_secs(1))
        .attempt_timeout(Duration::from_secs(2))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "timeout.attempt");
    assert_eq!(err.other(), Some(("timeout.total", "1s")));
    assert!(err.to_string().contains("`timeout.attempt` = 2s"));
}

#[test]
fn backoff_longer_than_total() {
    let err = Policy::builder()
        .total_timeout(Duration::from_secs(5))
        .retry(
            RetryLayer::builder()
                .max_attempts(4)
                .backoff(Backoff::constant(Duration::from_secs(2)).jitter(Jitter::None)),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry.backoff");
    assert_eq!(err.value(), "6s");
    assert_eq!(err.other(), Some(("timeout.total", "5s")));
}

#[test]
fn breaker_window_shorter_than_two_attempts() {
    let err = Policy::builder()
        .attempt_timeout(Duration::from_secs(10))
        .circuit_breaker(CircuitBreakerLayer::builder().time_window(Duration::from_secs(15), 15))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit_breaker.time_window");
    assert_eq!(err.other(), Some(("timeout.attempt", "10s")));
}

#[test]
fn inner_settings_are_still_checked() {
    let err = Policy::builder()
        .retry(RetryLayer::builder().max_attempts(0))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry.max_attempts");
    let err = Policy::builder()
        .total_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "timeout.total");
    assert_eq!(
        ServerDeadlineLayer::new(Duration::ZERO)
            .unwrap_err()
            .field(),
        "http.server_deadline.max"
    );
    assert_eq!(
        BufferRequestBodyLayer::new(0).unwrap_err().field(),
        "http.buffer_limit"
    );
}

#[test]
fn the_standard_preset_is_consistent_and_checked_after_overrides() {
    let policy = Policy::standard_http_client().build().unwrap();
    assert_eq!(policy.total_timeout(), Some(Duration::from_secs(30)));
    assert_eq!(policy.attempt_timeout(), Some(Duration::from_secs(10)));
    // Per host: each host's breaker and bulkhead, made on first use.
    assert!(policy.circuit_breaker().is_none() && policy.circuit_breakers().is_empty());
    assert_eq!(
        policy.circuit_breaker_for("a.example:80").key(),
        Some("a.example:80")
    );
    assert_eq!(policy.bulkhead_for("a.example:80").max_concurrent(), 1_000);
    assert!(policy.retry_budget().is_some());

    // Only the total set: the attempt timeout and backoff follow it.
    for total_ms in [1u64, 100, 2_000, 12_000, 29_999, 60_000, u64::MAX] {
        let total = Duration::from_millis(total_ms);
        let policy = Policy::standard_http_client()
            .total_timeout(total)
            .build()
            .unwrap_or_else(|err| panic!("total {total:?}: {err}"));
        let attempt = policy.attempt_timeout().unwrap();
        assert!(attempt <= total / 3 && attempt <= Duration::from_secs(10));
    }
    for total in [Duration::from_nanos(1), Duration::MAX] {
        let policy = Policy::standard_http_client()
            .total_timeout(total)
            .build()
            .unwrap_or_else(|err| panic!("total {total:?}: {err}"));
        assert!(policy.attempt_timeout().unwrap() <= Duration::from_secs(10));
    }
    let policy = Policy::standard_http_client()
        .total_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    assert_eq!(policy.attempt_timeout(), Some(Duration::from_secs(2) / 3));

    // A backoff written out that cannot fit is still refused.
    let err = Policy::standard_http_client()
        .total_timeout(Duration::from_secs(12))
        .retry(
            RetryLayer::builder()
                .max_attempts(4)
                .backoff(Backoff::exponential(Duration::from_secs(2)).cap(Duration::from_secs(8))),
        )
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry.backoff");
    assert_eq!(err.other(), Some(("timeout.total", "12s")));
    let err = Policy::standard_http_client()
        .total_timeout(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(10))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "timeout.attempt");

    let err = Policy::standard_http_client()
        .attempt_timeout(Duration::from_secs(20))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit_breaker.time_window");
}

proptest::proptest! {
    /// Whatever total timeout a user sets alone, the standard preset
    /// builds, its attempt timeout within a third of it and at most 10 s.
    #[test]
    fn the_standard_preset_fits_any_total_timeout(nanos in 1u64..=u64::MAX, secs in 0u64..=u64::MAX) {
        for total in [Duration::from_nanos(nanos), Duration::from_secs(secs).max(Duration::from_nanos(1))] {
            let policy = Policy::standard_http_client().total_timeout(total).build();
            let policy = policy.map_err(|err| proptest::test_runner::TestCaseError::fail(err.to_string()))?;
            let attempt = policy.attempt_timeout().unwrap_or_default();
            proptest::prop_assert!(attempt <= Duration::from_secs(10) && attempt <= total.max(Duration::from_nanos(3)) / 3 + Duration::from_nanos(1));
        }
    }
}
