//! The gRPC client preset.

use std::time::Duration;

use super::GrpcClassifier;
use crate::bulkhead::BulkheadLayer;
use crate::circuit_breaker::CircuitBreakerLayer;
use crate::http::HttpReplay;
use crate::observe::RequestIdHeader;
use crate::policy::{Policy, PolicyBuilder};
use crate::retry::{Backoff, Jitter, RetryLayer, RetryLayerBuilder};

/// The most attempts gRPC allows a retry policy (`maxAttempts`); larger
/// values are treated as this.
pub const GRPC_MAX_ATTEMPTS: u32 = 5;

/// A retry layer builder that follows a gRPC `retryPolicy`: `max_attempts`
/// (clamped to [`GRPC_MAX_ATTEMPTS`], as gRPC does), and before retry `n`
/// a delay of `random(0, min(initial × multiplier^(n−1), max))`. A
/// server's `grpc-retry-pushback-ms` sets the least delay; a negative or
/// malformed one stops the retries (see
/// [`GrpcClassifier`](super::GrpcClassifier)).
///
/// ```
/// use std::time::Duration;
/// use steadfast::grpc::grpc_retry;
///
/// let retry = grpc_retry(9, Duration::from_millis(100), Duration::from_secs(1), 2.0)
///     .build()?;
/// assert_eq!(retry.max_attempts(), 5);
/// # Ok::<_, steadfast::ConfigError>(())
/// ```
pub fn grpc_retry(
    max_attempts: u32,
    initial: Duration,
    max: Duration,
    multiplier: f64,
) -> RetryLayerBuilder {
    RetryLayer::builder()
        .max_attempts(max_attempts.min(GRPC_MAX_ATTEMPTS))
        .backoff(
            Backoff::exponential(initial)
                .factor(multiplier)
                .cap(max)
                .jitter(Jitter::Full),
        )
}

impl Policy<GrpcClassifier, HttpReplay, RequestIdHeader> {
    /// The gRPC client policy; see the [module docs](super#the-grpc-client-preset).
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::policy::Policy;
    ///
    /// let policy = Policy::grpc_client()
    ///     .attempt_timeout(Duration::from_secs(2))
    ///     .build()?;
    /// assert_eq!(policy.attempt_timeout(), Some(Duration::from_secs(2)));
    /// assert_eq!(policy.name(), "grpc_client");
    /// # Ok::<_, steadfast::ConfigError>(())
    /// ```
    pub fn grpc_client() -> PolicyBuilder<GrpcClassifier, HttpReplay, RequestIdHeader> {
        Policy::builder()
            .name("grpc_client")
            .classifier(GrpcClassifier::new())
            .replay(HttpReplay::new())
            .request_id(RequestIdHeader::new())
            .total_timeout(Duration::from_secs(30))
            .bulkhead(BulkheadLayer::builder().max_concurrent(1_000))
            .retry(grpc_retry(
                4,
                Duration::from_millis(100),
                Duration::from_secs(1),
                2.0,
            ))
            .circuit_breaker(
                CircuitBreakerLayer::builder()
                    .time_window(Duration::from_secs(30), 30)
                    .failure_rate_threshold(50.0)
                    .minimum_calls(100)
                    .open_duration(Duration::from_secs(5))
                    .half_open_probes(1),
            )
            .attempt_timeout(Duration::from_secs(10))
    }
}
