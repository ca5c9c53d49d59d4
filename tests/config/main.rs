//! Policies from configuration files: good and bad files, full paths in
//! every error, unknown fields refused, and a loaded policy that behaves as
//! the same policy built in code.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::Method;
use steadfast::circuit_breaker::{CircuitBreakerLayer, State};
use steadfast::classify::Verdict;
use steadfast::config::{PolicySet, PolicySetConfig};
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, Jitter, RetryLayer};
use steadfast::{BoxError, ConfigError};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

#[cfg(all(feature = "reqwest", feature = "axum"))]
mod levels;

const EXAMPLE: &str = include_str!("../../examples/config/policies.toml");

fn load(text: &str) -> Result<PolicySetConfig, ConfigError> {
    let de = toml::Deserializer::parse(text).expect("the test's TOML parses");
    PolicySetConfig::from_deserializer(de)
}

fn build(text: &str) -> Result<PolicySet, ConfigError> {
    load(text)?.build()
}

#[test]
fn the_example_file_loads() {
    let set = build(EXAMPLE).unwrap();
    let standard = set.policy("standard").unwrap();
    assert_eq!(standard.total_timeout(), Some(Duration::from_secs(5)));
    assert_eq!(standard.attempt_timeout(), Some(Duration::from_secs(1)));
    assert_eq!(standard.bulkhead().unwrap().max_concurrent(), 100);
    assert!(standard.circuit_breaker().is_some());
    assert_eq!(set.default_policy().name(), "standard");

    let routes: Vec<_> = set.routes().map(|(path, p)| (path, p.name())).collect();
    assert_eq!(
        routes,
        [("/search", "/search"), ("/users/{id}", "standard")]
    );
    let search = set.routes().next().unwrap().1;
    assert_eq!(search.total_timeout(), Some(Duration::from_millis(800)));
    assert_eq!(search.observer().unwrap().route(), "/search");

    let table = set.route_table();
    assert_eq!(
        table.route_of(&Method::GET, None, "/users/7"),
        Some("/users/{id}")
    );
    assert_eq!(table.route_of(&Method::POST, None, "/search"), None);
    assert_eq!(
        table.layer_of(&Method::POST, None, "/search").name(),
        "standard"
    );
}

#[test]
fn routes_naming_a_policy_share_its_state() {
    let set = build(EXAMPLE).unwrap();
    let table = set.route_table();
    let users = table
        .layer_of(&Method::GET, None, "/users/1")
        .circuit_breaker()
        .unwrap();
    let default = table
        .layer_of(&Method::GET, None, "/other")
        .circuit_breaker()
        .unwrap();
    let search = table
        .layer_of(&Method::GET, None, "/search")
        .circuit_breaker();
    users.force_open();
    assert_eq!(default.state(), State::ForcedOpen);
    assert!(
        search.is_none(),
        "the search route has no breaker of its own"
    );
}

/// Every bad value names its full path, its value and the rule.
#[test]
fn every_bad_value_names_its_full_path() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[policies.api]\nretry = { max_attempts = 0 }",
            "policies.api.retry.max_attempts",
            "0",
        ),
        (
            "[routes.\"/users/{id}\"]\nretry = { max_attempts = 0 }",
            "routes.\"/users/{id}\".retry.max_attempts",
            "0",
        ),
        (
            "[policies.api]\ntimeout = { total = \"0s\" }",
            "policies.api.timeout.total",
            "0ns",
        ),
        (
            "[policies.api]\ntimeout = { total = \"1s\", attempt = \"2s\" }",
            "policies.api.timeout.attempt",
            "2s",
        ),
        (
            "[policies.api]\ntimeout = { total = \"1s\" }\nretry = { max_attempts = 10, backoff = { kind = \"constant\", base = \"1s\" } }",
            "policies.api.retry.backoff",
            "9s",
        ),
        (
            "[policies.api]\ncircuit_breaker = { failure_rate_threshold = 150.0 }",
            "policies.api.circuit_breaker.failure_rate_threshold",
            "150.0",
        ),
        (
            "[policies.api]\ncircuit_breaker = { failure_rate_threshold = nan }",
            "policies.api.circuit_breaker.failure_rate_threshold",
            "NaN",
        ),
        (
            "[policies.api]\ncircuit_breaker = { time_window = \"10s\" }",
            "policies.api.circuit_breaker.time_window_buckets",
            "10s",
        ),
        (
            "[policies.api]\ncircuit_breaker = { count_window = 10, time_window = \"10s\", time_window_buckets = 10 }",
            "policies.api.circuit_breaker.count_window",
            "10",
        ),
        (
            "[policies.api]\ntimeout = { attempt = \"1s\" }\ncircuit_breaker = { time_window = \"1s\", time_window_buckets = 10 }",
            "policies.api.circuit_breaker.time_window",
            "1s",
        ),
        (
            "[policies.api]\nretry = { backoff = { factor = 0.5 } }",
            "policies.api.retry.backoff.factor",
            "0.5",
        ),
        (
            "[policies.api]\nretry = { backoff = { kind = \"linear\", factor = 3.0 } }",
            "policies.api.retry.backoff.factor",
            "3.0",
        ),
        (
            "[policies.api]\nretry = { budget = { ratio = 2.0 } }",
            "policies.api.retry.budget.ratio",
            "2.0",
        ),
        (
            "[policies.api]\nretry = { budget = { ratio = -0.5, reserve = 20 } }",
            "policies.api.retry.budget.ratio",
            "-0.5",
        ),
        (
            "[policies.api]\nbulkhead = { max_concurrent = 0 }",
            "policies.api.bulkhead.max_concurrent",
            "0",
        ),
        ("default = \"missing\"", "default", "missing"),
        (
            "[routes.\"/a\"]\npolicy = \"missing\"",
            "routes.\"/a\".policy",
            "missing",
        ),
        (
            "[policies.api]\n[routes.\"/a\"]\npolicy = \"api\"\nretry = { max_attempts = 2 }",
            "routes.\"/a\".policy",
            "api",
        ),
        (
            "[routes.\"/a\"]\nmethod = \"NOT A METHOD\"",
            "routes.\"/a\".method",
            "NOT A METHOD",
        ),
        ("[routes.\"/a/{id\"]\n", "routes.\"/a/{id\"", "/a/{id"),
    ];
    for (text, field, value) in cases {
        let err = build(text).expect_err(text);
        assert_eq!((err.field(), err.value()), (*field, *value), "{text}");
        assert!(!err.rule().is_empty(), "{text}");
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn conflicts_name_both_full_paths() {
    let err = build("[policies.api]\ntimeout = { total = \"1s\", attempt = \"2s\" }").unwrap_err();
    assert_eq!(err.other(), Some(("policies.api.timeout.total", "1s")));
    assert_eq!(
        err.to_string(),
        "conflicting settings `policies.api.timeout.attempt` = 2s and \
         `policies.api.timeout.total` = 1s: the attempt timeout must not exceed the total timeout"
    );
}

/// Unknown fields and values of the wrong type are refused at their path.
#[test]
fn unknown_fields_and_wrong_types_are_refused_at_their_path() {
    let cases: &[(&str, &str)] = &[
        ("polices = {}", "polices"),
        ("[policies.api]\nretries = 3", "policies.api.retries"),
        (
            "[routes.\"/users/{id}\"]\nretry = { max_attempt = 3 }",
            "routes.\"/users/{id}\".retry.max_attempt",
        ),
        (
            "[policies.api]\nretry = { backoff = { base = \"100ms\", jiter = \"full\" } }",
            "policies.api.retry.backoff.jiter",
        ),
        (
            "[policies.api]\nretry = { max_attempts = \"three\" }",
            "policies.api.retry.max_attempts",
        ),
        (
            "[policies.api]\nretry = { max_attempts = 4294967296 }",
            "policies.api.retry.max_attempts",
        ),
        (
            "[policies.api]\nretry = { max_attempts = -1 }",
            "policies.api.retry.max_attempts",
        ),
        (
            "[policies.api]\ntimeout = { total = \"3 parsecs\" }",
            "policies.api.timeout.total",
        ),
        (
            "[policies.api]\ntimeout = { total = 5 }",
            "policies.api.timeout.total",
        ),
        (
            "[policies.api]\nretry = { backoff = { jitter = \"some\" } }",
            "policies.api.retry.backoff.jitter",
        ),
        (
            "[policies.api]\ncircuit_breaker = { name = \"x\" }",
            "policies.api.circuit_breaker.name",
        ),
    ];
    for (text, field) in cases {
        let err = load(text).expect_err(text);
        assert_eq!(err.field(), *field, "{text}: {err}");
        assert!(
            err.to_string()
                .starts_with(&format!("invalid setting `{field}`: ")),
            "{err}"
        );
    }
}

#[test]
fn the_largest_values_are_checked_not_panicked_on() {
    // Duration::MAX-sized timeouts are valid; their sum with a backoff must
    // not overflow.
    let text = "[policies.api]\ntimeout = { total = \"584542046090y\", attempt = \"584542046090y\" }\n\
                retry = { max_attempts = 4294967295, backoff = { base = \"584542046090y\" } }";
    let err = build(text).unwrap_err();
    assert_eq!(err.field(), "policies.api.retry.backoff");
}

proptest::proptest! {
    /// The longest total backoff, checked against the total timeout when a
    /// policy is built, is the sum of the undithered delays, computed
    /// without a loop over every retry.
    #[test]
    fn max_total_is_the_sum_of_the_delays(
        kind in 0u8..3,
        base_ms in 1u64..2_000,
        cap_ms in proptest::option::of(1u64..20_000),
        retries in 0u32..200,
    ) {
        let base = Duration::from_millis(base_ms);
        let backoff = match kind {
            0 => Backoff::constant(base),
            1 => Backoff::linear(base),
            _ => Backoff::exponential(base),
        };
        let backoff = match cap_ms {
            Some(cap) => backoff.cap(Duration::from_millis(cap).max(base)),
            None => backoff,
        }
        .jitter(Jitter::None);
        let mut state = steadfast::retry::BackoffState::new();
        let sum = (1..=retries).fold(Duration::ZERO, |sum, n| sum + backoff.delay(n, &mut state, 0.5));
        proptest::prop_assert_eq!(backoff.max_total(retries), sum);
    }
}

#[test]
fn what_is_not_data_is_attached_in_code() {
    let set = load("[policies.api]\nretry = { max_attempts = 3 }")
        .unwrap()
        .build_with(|name, builder| {
            // The named policy, then the default (the file names none).
            assert!(name == "api" || name == "default", "{name}");
            builder.classifier(|_: Result<&u32, &BoxError>| Verdict::Success)
        })
        .unwrap();
    let policy = set.policy("api").unwrap().clone();
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let service = policy.layer(tower::service_fn(move |_: u32| {
        counted.fetch_add(1, Ordering::Relaxed);
        async { Err::<u32, BoxError>("boom".into()) }
    }));
    let _ = futures::executor::block_on(service.oneshot(1));
    assert_eq!(
        calls.load(Ordering::Relaxed),
        1,
        "the attached classifier sees no failure"
    );
}

const SCENARIO_POLICY: &str = r#"
[policies.scenario]
timeout = { total = "3s", attempt = "500ms" }
retry = { max_attempts = 3, unlimited_budget = true, backoff = { kind = "constant", base = "100ms", jitter = "none" } }
circuit_breaker = { count_window = 4, minimum_calls = 4, failure_rate_threshold = 50.0, open_duration = "10s", half_open_probes = 1 }
bulkhead = { max_concurrent = 1 }
"#;

fn scenario_in_code() -> Policy {
    Policy::builder()
        .name("scenario")
        .total_timeout(Duration::from_secs(3))
        .attempt_timeout(Duration::from_millis(500))
        .retry(
            RetryLayer::builder()
                .max_attempts(3)
                .unlimited_budget()
                .backoff(Backoff::constant(Duration::from_millis(100)).jitter(Jitter::None)),
        )
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .count_window(4)
                .minimum_calls(4)
                .failure_rate_threshold(50.0)
                .open_duration(Duration::from_secs(10))
                .half_open_probes(1),
        )
        .bulkhead(steadfast::bulkhead::BulkheadLayer::builder().max_concurrent(1))
        .build()
        .unwrap()
}

/// The inner service of the scenario: the n-th attempt (from 0) hangs if
/// `n % 5 == 0`, fails if `n % 5` is 1 or 2, succeeds otherwise; every
/// attempt is logged with its time since the start.
#[derive(Clone)]
struct Backend {
    attempts: Arc<AtomicU32>,
    log: Arc<Mutex<Vec<(u32, Duration)>>>,
    start: Instant,
}

impl Service<u32> for Backend {
    type Response = u32;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        let n = self.attempts.fetch_add(1, Ordering::Relaxed);
        self.log
            .lock()
            .unwrap()
            .push((request, self.start.elapsed()));
        Box::pin(async move {
            match n % 5 {
                0 => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(request)
                }
                1 | 2 => Err("connection reset".into()),
                _ => Ok(request),
            }
        })
    }
}

/// Runs the same calls through `policy`; returns every call's outcome and
/// end time, and every attempt the backend saw.
async fn scenario(policy: Policy) -> (Vec<(u32, String, Duration)>, Vec<(u32, Duration)>) {
    let start = Instant::now();
    let backend = Backend {
        attempts: Arc::new(AtomicU32::new(0)),
        log: Arc::new(Mutex::new(Vec::new())),
        start,
    };
    let log = backend.log.clone();
    let mut service = policy.layer(backend);
    let mut outcomes = Vec::new();
    for request in 0..12 {
        let outcome = match service.ready().await {
            Ok(ready) => match ready.call(request).await {
                Ok(answer) => format!("ok {answer}"),
                Err(err) => format!("err {err}"),
            },
            Err(err) => format!("not ready {err}"),
        };
        outcomes.push((request, outcome, start.elapsed()));
        if request == 7 {
            // Let the breaker's open period pass.
            tokio::time::sleep(Duration::from_secs(11)).await;
        }
    }
    let attempts = log.lock().unwrap().clone();
    (outcomes, attempts)
}

#[tokio::test(start_paused = true)]
async fn a_loaded_policy_behaves_as_the_same_policy_built_in_code() {
    let loaded = build(SCENARIO_POLICY)
        .unwrap()
        .policy("scenario")
        .and_then(|policy| policy.plain())
        .unwrap()
        .clone();
    let from_file = scenario(loaded).await;
    let in_code = scenario(scenario_in_code()).await;
    assert_eq!(from_file, in_code);

    // The scenario exercises timeouts, retries, the breaker opening and
    // its half-open probe.
    let outcomes: Vec<&str> = from_file.0.iter().map(|(_, o, _)| o.as_str()).collect();
    assert_eq!(
        outcomes[0], "err connection reset",
        "a timeout, then two failures"
    );
    assert!(outcomes.contains(&"ok 1"), "{outcomes:?}");
    assert!(
        outcomes.contains(&"ok 8"),
        "the probe after the open period: {outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|o| o.contains("circuit open")),
        "{outcomes:?}"
    );
    let first: Vec<u32> = from_file
        .1
        .iter()
        .take(4)
        .map(|(request, _)| *request)
        .collect();
    assert_eq!(first, [0, 0, 0, 1], "the first call took three attempts");
    assert_eq!(
        from_file.0[0].2,
        Duration::from_millis(500 + 100 + 100),
        "{:?}",
        from_file.0
    );
}
