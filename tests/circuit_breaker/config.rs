//! Bad settings fail at build time, naming the field.

use std::time::Duration;

use steadfast::ConfigError;
use steadfast::circuit_breaker::{
    CircuitBreakerBuilder, CircuitBreakerLayer, KeyedCircuitBreakerLayer, Single,
};

fn fails(
    builder: CircuitBreakerBuilder<steadfast::classify::DefaultClassifier, Single>,
) -> ConfigError {
    builder.build().expect_err("bad setting accepted")
}

#[test]
fn bad_settings_fail_at_build_with_the_field_named() {
    let b = CircuitBreakerLayer::builder;
    let secs = Duration::from_secs;
    let cases = [
        (
            b().failure_rate_threshold(0.0),
            "circuit_breaker.failure_rate_threshold",
        ),
        (
            b().failure_rate_threshold(100.5),
            "circuit_breaker.failure_rate_threshold",
        ),
        (
            b().failure_rate_threshold(-3.0),
            "circuit_breaker.failure_rate_threshold",
        ),
        (
            b().failure_rate_threshold(f64::NAN),
            "circuit_breaker.failure_rate_threshold",
        ),
        (
            b().slow_call_rate_threshold(0.0),
            "circuit_breaker.slow_call_rate_threshold",
        ),
        (
            b().slow_call_rate_threshold(101.0),
            "circuit_breaker.slow_call_rate_threshold",
        ),
        (
            b().slow_call_duration(Duration::ZERO),
            "circuit_breaker.slow_call_duration",
        ),
        (b().count_window(0), "circuit_breaker.count_window"),
        (b().count_window(2_000_000), "circuit_breaker.count_window"),
        (
            b().time_window(Duration::ZERO, 10),
            "circuit_breaker.time_window",
        ),
        (
            b().time_window(secs(10), 0),
            "circuit_breaker.time_window_buckets",
        ),
        (
            b().time_window(Duration::from_nanos(5), 10),
            "circuit_breaker.time_window_buckets",
        ),
        (b().minimum_calls(0), "circuit_breaker.minimum_calls"),
        (
            b().count_window(10).minimum_calls(11),
            "circuit_breaker.minimum_calls",
        ),
        (
            b().time_window(secs(10), 10).minimum_calls(0),
            "circuit_breaker.minimum_calls",
        ),
        (
            b().open_duration(Duration::ZERO),
            "circuit_breaker.open_duration",
        ),
        (
            b().open_backoff(0.5, secs(100)),
            "circuit_breaker.open_backoff_factor",
        ),
        (
            b().open_backoff(f64::INFINITY, secs(100)),
            "circuit_breaker.open_backoff_factor",
        ),
        (
            b().open_duration(secs(10)).open_backoff(2.0, secs(5)),
            "circuit_breaker.open_duration",
        ),
        (
            b().honor_retry_after(Duration::ZERO),
            "circuit_breaker.honor_retry_after",
        ),
        (
            b().consecutive_failures(0),
            "circuit_breaker.consecutive_failures",
        ),
        (b().half_open_probes(0), "circuit_breaker.half_open_probes"),
        (
            b().half_open_probes(5_000),
            "circuit_breaker.half_open_probes",
        ),
        (
            b().max_half_open_wait(Duration::ZERO),
            "circuit_breaker.max_half_open_wait",
        ),
    ];
    for (builder, field) in cases {
        let err = fails(builder);
        assert_eq!(err.field(), field, "{err}");
    }
    let err = fails(b().failure_rate_threshold(0.0));
    assert_eq!(
        err.to_string(),
        "invalid setting `circuit_breaker.failure_rate_threshold` = 0.0: \
         must be greater than 0 and at most 100"
    );
    let err = fails(b().count_window(10).minimum_calls(11));
    assert_eq!(err.other(), Some(("circuit_breaker.count_window", "10")));
}

#[test]
fn good_settings_build() {
    let secs = Duration::from_secs;
    CircuitBreakerLayer::builder()
        .failure_rate_threshold(100.0)
        .slow_call_rate_threshold(0.1)
        .count_window(1)
        .minimum_calls(1)
        .half_open_probes(4_095)
        .build()
        .unwrap();
    CircuitBreakerLayer::builder()
        .time_window(secs(60), 60)
        .minimum_calls(1_000_000)
        .open_backoff(1.0, secs(60))
        .honor_retry_after(secs(600))
        .consecutive_failures(u32::MAX)
        .max_half_open_wait(secs(1))
        .name("payments")
        .build()
        .unwrap();
}

#[test]
fn keyed_settings_are_checked_too() {
    let keyed = || KeyedCircuitBreakerLayer::builder().key(|req: &u32| *req % 7);
    let err = keyed().max_keys(0).build().unwrap_err();
    assert_eq!(err.field(), "circuit_breaker.max_keys");
    let err = keyed().idle(Some(Duration::ZERO)).build().unwrap_err();
    assert_eq!(err.field(), "circuit_breaker.idle");
    let err = keyed().half_open_probes(0).build().unwrap_err();
    assert_eq!(err.field(), "circuit_breaker.half_open_probes");
    // Settings given before the key are kept.
    let err = KeyedCircuitBreakerLayer::builder()
        .max_keys(0)
        .key(|req: &u32| *req)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "circuit_breaker.max_keys");
}
