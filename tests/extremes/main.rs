//! Every builder over extreme settings: each setting is either refused with
//! a `ConfigError` naming a field, or the layer works: it builds, and a few
//! calls on paused time complete. Nothing panics, wraps or spins.

use std::future::Future;
use std::time::Duration;

use proptest::prelude::*;
use steadfast::BoxError;
use steadfast::bulkhead::{BulkheadLayer, KeyedBulkheadLayer, QueueOrder};
use steadfast::chaos::ChaosLayer;
use steadfast::circuit_breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};
use steadfast::error::{BulkheadFull, CircuitOpen, ConfigError, RateLimited};
use steadfast::hedge::HedgeLayer;
use steadfast::http::{ErrorResponseLayer, ServerDeadlineLayer};
use steadfast::policy::Policy;
use steadfast::rate_limit::{Mode, Quota, RateLimitLayer};
use steadfast::retry::{Backoff, Jitter, RetryBudget, RetryLayer};
use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn durations() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(1)),
        Just(Duration::from_secs(3600)),
        Just(YEAR * 100),
        Just(YEAR * 600),
        Just(Duration::from_nanos(u64::MAX)),
        Just(Duration::from_secs(u64::MAX)),
        Just(Duration::MAX),
        (0u64..u64::MAX).prop_map(Duration::from_nanos),
    ]
}

fn counts() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(1_000),
        Just(1_000_000_000),
        Just(u32::MAX - 1),
        Just(u32::MAX),
        any::<u32>(),
    ]
}

fn counts_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(u64::from(u32::MAX) + 1),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn sizes() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(2),
        Just(usize::MAX - 1),
        Just(usize::MAX)
    ]
}

fn reals() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        Just(0.0),
        Just(f64::MIN_POSITIVE),
        Just(0.5),
        Just(1.0),
        Just(1.0 + f64::EPSILON),
        Just(2.0),
        Just(50.0),
        Just(100.0),
        Just(101.0),
        Just(1e10),
        Just(f64::MAX),
        Just(f64::INFINITY),
        -10.0f64..1e3,
    ]
}

/// Runs `f` on a fresh current-thread runtime with paused time.
fn paused<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}

/// Even requests succeed, odd ones fail.
fn backend() -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send {
    service_fn(|n: u32| async move {
        if n % 2 == 0 {
            Ok(n)
        } else {
            Err::<u32, BoxError>("boom".into())
        }
    })
}

/// Makes `calls` calls one after another; each must end (with any outcome)
/// within a thousand years of paused time.
async fn drive<S>(mut service: S, calls: u32)
where
    S: Service<u32, Response = u32>,
    S::Error: Into<BoxError>,
{
    for n in 0..calls {
        let call = async {
            match service.ready().await {
                Ok(ready) => ready.call(n).await.map_err(Into::into),
                Err(err) => Err(err.into()),
            }
        };
        let ended = tokio::time::timeout(YEAR * 1_000, call).await;
        assert!(ended.is_ok(), "call {n} never ended");
    }
}

/// A refusal must name the field at fault.
fn refused(err: &ConfigError) {
    assert!(!err.field().is_empty(), "{err}");
    assert!(err.field().contains('.'), "{err}");
    assert!(!err.to_string().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn timeouts(attempt in durations(), total in durations()) {
        paused(async {
            match TimeoutLayer::new(attempt) {
                Ok(layer) => drive(layer.layer(backend()), 4).await,
                Err(err) => refused(&err),
            }
            match TotalDeadlineLayer::new(total) {
                Ok(layer) => drive(layer.layer(backend()), 4).await,
                Err(err) => refused(&err),
            }
        });
    }

    #[test]
    fn retry_and_backoff(
        attempts in counts(),
        base in durations(),
        cap in durations(),
        factor in reals(),
        jitter in prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal), Just(Jitter::Decorrelated)],
        max_retry_after in durations(),
        growth in 0u8..3,
    ) {
        let backoff = match growth {
            0 => Backoff::constant(base),
            1 => Backoff::linear(base),
            _ => Backoff::exponential(base).factor(factor),
        }
        .cap(cap)
        .jitter(jitter);
        // The closed form answers at once whatever the count.
        let _ = backoff.max_total(attempts);
        let built = RetryLayer::builder()
            .max_attempts(attempts)
            .backoff(backoff)
            .honor_retry_after(max_retry_after)
            .build();
        paused(async {
            match built {
                Ok(layer) => {
                    // The backend always fails odd calls: a minute's
                    // deadline ends the retries that many attempts allow.
                    let total = TotalDeadlineLayer::new(Duration::from_secs(60)).unwrap();
                    drive(total.layer(layer.layer(backend())), 3).await;
                }
                Err(err) => refused(&err),
            }
        });
    }

    #[test]
    fn retry_budget(ratio in reals(), reserve in counts()) {
        match RetryBudget::builder().ratio(ratio).reserve(reserve).build() {
            Ok(budget) => paused(async {
                for _ in 0..3 {
                    budget.deposit();
                    let _ = budget.try_withdraw();
                    let _ = budget.remaining();
                    tokio::time::advance(Duration::from_secs(1)).await;
                }
                let layer = RetryLayer::builder().budget(budget).backoff(Backoff::constant(Duration::from_millis(1))).build().unwrap();
                drive(layer.layer(backend()), 4).await;
            }),
            Err(err) => refused(&err),
        }
    }

    #[test]
    fn circuit_breaker(
        failure in reals(),
        slow in reals(),
        slow_after in durations(),
        window in prop_oneof![counts_u64().prop_map(Ok), (durations(), counts()).prop_map(Err)],
        minimum in counts_u64(),
        open in durations(),
        backoff in (reals(), durations()),
        honor in durations(),
        probes in counts(),
        probe_wait in durations(),
        keyed in (any::<bool>(), counts_u64(), durations()),
    ) {
        macro_rules! configure {
            ($builder:expr) => {{
                let builder = $builder
                    .failure_rate_threshold(failure)
                    .slow_call_rate_threshold(slow)
                    .slow_call_duration(slow_after)
                    .minimum_calls(minimum)
                    .open_duration(open)
                    .open_backoff(backoff.0, backoff.1)
                    .honor_retry_after(honor)
                    .half_open_probes(probes)
                    .max_half_open_wait(probe_wait);
                match window {
                    Ok(calls) => builder.count_window(calls),
                    Err((span, buckets)) => builder.time_window(span, buckets),
                }
            }};
        }
        paused(async move {
            if keyed.0 {
                match configure!(KeyedCircuitBreakerLayer::builder().key(|n: &u32| n % 3)).max_keys(keyed.1).idle(Some(keyed.2)).build() {
                    Ok(layer) => {
                        drive(layer.layer(backend()), 12).await;
                        tokio::time::advance(open.min(YEAR)).await;
                        drive(layer.layer(backend()), 6).await;
                    }
                    Err(err) => refused(&err),
                }
            } else {
                match configure!(CircuitBreakerLayer::builder()).build() {
                    Ok(layer) => {
                        drive(layer.layer(backend()), 12).await;
                        let _ = layer.handle().state();
                        tokio::time::advance(open.min(YEAR)).await;
                        drive(layer.layer(backend()), 6).await;
                    }
                    Err(err) => refused(&err),
                }
            }
        });
    }

    #[test]
    fn bulkhead(
        permits in sizes(),
        wait in durations(),
        queue in sizes(),
        newest in any::<bool>(),
        keys in (counts_u64(), proptest::option::of(durations())),
    ) {
        let order = if newest { QueueOrder::NewestFirst } else { QueueOrder::OldestFirst };
        paused(async move {
            match BulkheadLayer::builder().max_concurrent(permits).max_wait(wait).queue(queue).order(order).build() {
                Ok(layer) => drive(layer.layer(backend()), 4).await,
                Err(err) => refused(&err),
            }
            match KeyedBulkheadLayer::builder(|n: &u32| n % 3)
                .max_concurrent(permits)
                .max_wait(wait)
                .queue(queue)
                .max_keys(keys.0)
                .idle(keys.1)
                .build()
            {
                Ok(layer) => drive(layer.layer(backend()), 6).await,
                Err(err) => refused(&err),
            }
        });
    }

    #[test]
    fn rate_limit(
        per_period in counts(),
        period in durations(),
        burst in proptest::option::of(counts()),
        throttle in proptest::option::of(durations()),
        keys in (counts_u64(), proptest::option::of(durations())),
    ) {
        let quota = Quota::new(per_period, period);
        let quota = match burst {
            Some(burst) => quota.burst(burst),
            None => quota,
        };
        let mode = throttle.map_or(Mode::Reject, |max_delay| Mode::Throttle { max_delay });
        paused(async move {
            match RateLimitLayer::builder().quota(quota).mode(mode).build() {
                Ok(layer) => drive(layer.layer(backend()), 4).await,
                Err(err) => refused(&err),
            }
            // Keyed: the same quota is refused at build, never on a key's
            // first call.
            match RateLimitLayer::builder()
                .quota(quota)
                .mode(mode)
                .max_keys(keys.0)
                .idle(keys.1)
                .key(|n: &u32| n % 3)
                .build()
            {
                Ok(layer) => drive(layer.layer(backend()), 6).await,
                Err(err) => refused(&err),
            }
        });
    }

    #[test]
    fn hedge(max_hedges in counts(), delay in durations(), load in reals(), floor in durations(), percentile in any::<bool>()) {
        let builder = HedgeLayer::builder().max_hedges(max_hedges).unlimited_budget();
        let builder = if percentile { builder.latency_percentile(load, floor) } else { builder.delay(delay) };
        paused(async move {
            match builder.build() {
                Ok(layer) => drive(layer.layer(backend()), 6).await,
                Err(err) => refused(&err),
            }
        });
    }

    #[test]
    fn chaos(error in reals(), hang in reals(), latency in (reals(), durations(), durations())) {
        let built = ChaosLayer::builder()
            .error_rate(error)
            .hang_rate(hang)
            .latency(latency.0, latency.1, latency.2)
            .seed(7)
            .build();
        paused(async move {
            match built {
                // A hang is what a hang rate asks for.
                Ok(layer) if hang > 0.0 => drop(layer),
                Ok(layer) => drive(layer.layer(backend()), 6).await,
                Err(err) => refused(&err),
            }
        });
    }

    #[test]
    fn policy(
        total in proptest::option::of(durations()),
        attempt in proptest::option::of(durations()),
        attempts in counts(),
        base in durations(),
        permits in sizes(),
        slow in durations(),
    ) {
        let mut builder = Policy::builder()
            .retry(RetryLayer::builder().max_attempts(attempts).backoff(Backoff::exponential(base)))
            .bulkhead(BulkheadLayer::builder().max_concurrent(permits))
            .slow_call(slow);
        builder = match total {
            Some(total) => builder.total_timeout(total),
            None => builder.no_total_timeout(),
        };
        builder = match attempt {
            Some(attempt) => builder.attempt_timeout(attempt),
            None => builder.no_attempt_timeout(),
        };
        paused(async move {
            match builder.build() {
                Ok(policy) => {
                    let minute = TotalDeadlineLayer::new(Duration::from_secs(60)).unwrap();
                    drive(minute.layer(policy.layer(backend())), 3).await;
                }
                Err(err) => refused(&err),
            }
        });
    }

    #[test]
    fn http_error_responses_and_deadlines(wait in durations(), max in durations()) {
        let layer = ErrorResponseLayer::new().bulkhead_retry_after(wait);
        for err in [
            Box::new(BulkheadFull::new()) as Box<dyn std::error::Error>,
            Box::new(RateLimited::new(wait)),
            Box::new(CircuitOpen::new(wait)),
        ] {
            let response: http::Response<()> = layer.response(&*err);
            let secs: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            prop_assert!(secs >= 1);
            prop_assert!(u128::from(secs) * 1_000_000_000 >= wait.as_nanos().min(u128::from(u64::MAX)));
        }
        match ServerDeadlineLayer::new(max) {
            Ok(layer) => paused(async move {
                let svc = layer.layer(service_fn(|_: http::Request<()>| async {
                    Ok::<_, BoxError>(http::Response::new(()))
                }));
                for value in ["0", "1", "18446744073709551615", "99999999999999999999999"] {
                    let request = http::Request::get("http://x/")
                        .header("grpc-timeout", value)
                        .header("x-request-timeout", value)
                        .body(())
                        .unwrap();
                    let _ = tokio::time::timeout(YEAR * 1_000, svc.clone().oneshot(request)).await;
                }
            }),
            Err(err) => refused(&err),
        }
    }
}

#[test]
fn a_policy_with_every_attempt_a_u32_counts_is_checked_at_once() {
    let err = Policy::builder()
        .total_timeout(Duration::from_secs(30))
        .retry(RetryLayer::builder().max_attempts(u32::MAX))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "retry.backoff");
    assert_eq!(err.other().map(|(field, _)| field), Some("timeout.total"));
}

#[test]
fn quotas_governor_cannot_hold_are_refused_keyed_or_not() {
    let cases = [
        Quota::new(1, Duration::MAX),
        Quota::new(1, YEAR * 600),
        Quota::per_hour(1).burst(u32::MAX),
        Quota::per_minute(1).burst(1_000_000_000),
        Quota::new(1, Duration::from_nanos(1 << 63)).burst(2),
    ];
    for quota in cases {
        let err = RateLimitLayer::builder().quota(quota).build().unwrap_err();
        assert!(err.field().starts_with("rate_limit.quota."), "{err}");
        let err = RateLimitLayer::builder()
            .quota(quota)
            .key(|n: &u32| *n)
            .build()
            .unwrap_err();
        assert!(err.field().starts_with("rate_limit.quota."), "{err}");
    }
}

#[test]
fn hedges_are_bounded() {
    let err = HedgeLayer::builder()
        .max_hedges(u32::MAX)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "hedge.max_hedges");
    assert!(HedgeLayer::builder().max_hedges(10).build().is_ok());
}
