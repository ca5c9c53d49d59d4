use std::time::Duration;

use steadfast::ConfigError;
use steadfast::rate_limit::{Mode, Quota, RateLimitLayer};

fn field(result: Result<impl std::fmt::Debug, ConfigError>) -> ConfigError {
    result.expect_err("settings must be refused")
}

#[test]
fn zero_quota_is_refused() {
    let err = field(
        RateLimitLayer::builder()
            .quota(Quota::per_second(0))
            .build(),
    );
    assert_eq!(err.field(), "rate_limit.quota.per_period");
    assert_eq!(err.value(), "0");
    assert!(err.rule().contains("tier `default`"), "{err}");

    let err = field(
        RateLimitLayer::builder()
            .tier("free", Quota::new(5, Duration::ZERO))
            .build(),
    );
    assert_eq!(err.field(), "rate_limit.quota.period");
    assert!(err.rule().contains("tier `free`"), "{err}");
}

#[test]
fn zero_burst_is_refused() {
    let err = field(
        RateLimitLayer::builder()
            .quota(Quota::per_second(5).burst(0))
            .build(),
    );
    assert_eq!(err.field(), "rate_limit.quota.burst");
}

#[test]
fn a_quota_finer_than_a_nanosecond_is_refused() {
    let err = field(
        RateLimitLayer::builder()
            .quota(Quota::new(10, Duration::from_nanos(5)))
            .build(),
    );
    assert_eq!(err.field(), "rate_limit.quota.per_period");
}

#[test]
fn a_default_tier_that_is_not_defined_is_refused() {
    let err = field(
        RateLimitLayer::builder()
            .tier("free", Quota::per_minute(10))
            .default_tier("pro")
            .build(),
    );
    assert_eq!(err.field(), "rate_limit.default_tier");
    assert_eq!(err.value(), "pro");
    assert_eq!(
        err.to_string(),
        "invalid setting `rate_limit.default_tier` = pro: names no defined tier"
    );
}

#[test]
fn several_tiers_need_a_default() {
    let err = field(
        RateLimitLayer::builder()
            .tier("free", Quota::per_minute(10))
            .tier("pro", Quota::per_minute(100))
            .key(|req: &String| req.clone())
            .tier_of(|key: &String| key.clone())
            .build(),
    );
    assert_eq!(err.field(), "rate_limit.default_tier");
}

#[test]
fn tiers_must_be_defined_once() {
    let err = field(
        RateLimitLayer::builder()
            .tier("free", Quota::per_minute(10))
            .tier("free", Quota::per_minute(20))
            .build(),
    );
    assert_eq!(err.field(), "rate_limit.tier");
    assert_eq!(err.value(), "free");
    let err = field(RateLimitLayer::builder().build());
    assert_eq!(err.field(), "rate_limit.tier");
}

#[test]
fn zero_max_delay_max_keys_and_idle_are_refused() {
    let base = || RateLimitLayer::builder().quota(Quota::per_second(1));
    let err = field(
        base()
            .mode(Mode::Throttle {
                max_delay: Duration::ZERO,
            })
            .build(),
    );
    assert_eq!(err.field(), "rate_limit.max_delay");
    let err = field(base().max_keys(0).build());
    assert_eq!(err.field(), "rate_limit.max_keys");
    let err = field(base().idle(Some(Duration::ZERO)).build());
    assert_eq!(err.field(), "rate_limit.idle");
    assert!(base().idle(None).build().is_ok());
}
