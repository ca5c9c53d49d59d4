//! The presets: the standard policies, with defaults worked out from the
//! total timeout.

use super::*;

impl Policy {
    /// A builder with no layer at all; add the ones you need.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder {
            settings: Settings {
                name: Cow::Borrowed("default"),
                observe: None,
                total_timeout: None,
                attempt_timeout: None,
                retry: None,
                breaker: None,
                bulkhead: None,
                derive: Derive::default(),
            },
            classifier: DefaultClassifier,
            replay: CloneReplay,
            request_id: GenerateRequestId,
            hedge: Identity::new(),
            fallback: Identity::new(),
            keyed: Unkeyed,
            bulkheads: Unkeyed,
            adaptive: Identity::new(),
        }
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Policy<crate::http::HttpClassifier, crate::http::HttpReplay, RequestIdHeader> {
    /// The standard HTTP client policy, modelled on the .NET standard
    /// resilience handler; see the [module docs](crate::policy#the-standard-http-client-feature-http).
    ///
    /// Its breaker and its bulkhead are per host ([`ByHost`]): one host
    /// failing or slow does not refuse calls to the others.
    /// [`circuit_breaker_for`](Policy::circuit_breaker_for) and
    /// [`bulkhead_for`](Policy::bulkhead_for) give a host's;
    /// [`circuit_breaker(..)`](PolicyBuilder::circuit_breaker) and
    /// [`bulkhead(..)`](PolicyBuilder::bulkhead) make them one for every
    /// host again.
    pub fn standard_http_client() -> PolicyBuilder<
        crate::http::HttpClassifier,
        crate::http::HttpReplay,
        RequestIdHeader,
        Identity,
        Identity,
        PerHost,
        PerHost,
    > {
        let mut builder = Policy::builder()
            .name("http_client")
            .classifier(crate::http::HttpClassifier::new())
            .replay(crate::http::HttpReplay::new())
            .request_id(RequestIdHeader::new())
            .total_timeout(Duration::from_secs(30))
            .bulkhead(BulkheadLayer::builder().max_concurrent(1_000))
            .retry(
                RetryLayer::builder()
                    .max_attempts(4)
                    .backoff(standard_backoff(STANDARD_TOTAL)),
            )
            .circuit_breaker(
                CircuitBreakerLayer::builder()
                    .time_window(Duration::from_secs(30), 30)
                    .failure_rate_threshold(50.0)
                    .minimum_calls(100)
                    .consecutive_failures(20)
                    .honor_retry_after(Duration::from_secs(60))
                    .open_duration(Duration::from_secs(5))
                    .half_open_probes(1),
            )
            .attempt_timeout(standard_attempt(STANDARD_TOTAL));
        // Until the user sets them, the attempt timeout and the backoff
        // follow the total timeout.
        builder.settings.derive = Derive {
            attempt: true,
            backoff: true,
        };
        builder.circuit_breaker_per_host().bulkhead_per_host()
    }
}

/// The standard HTTP client's total timeout.
#[cfg(feature = "http")]
pub(super) const STANDARD_TOTAL: Duration = Duration::from_secs(30);

/// The standard attempt timeout for a total timeout: a third of it, at
/// most 10 s.
#[cfg(feature = "http")]
pub(super) fn standard_attempt(total: Duration) -> Duration {
    (total / 3).clamp(Duration::from_nanos(1), Duration::from_secs(10))
}

/// The standard backoff for a total timeout: exponential from a
/// fifteenth of it (at most 2 s), capped at four fifteenths (at most
/// 8 s), full jitter. Three retries wait at most 7/15 of the total.
#[cfg(feature = "http")]
pub(super) fn standard_backoff(total: Duration) -> crate::retry::Backoff {
    let base = (total / 15).clamp(Duration::from_nanos(1), Duration::from_secs(2));
    let cap = (total / 15)
        .checked_mul(4)
        .unwrap_or(Duration::MAX)
        .clamp(base, Duration::from_secs(8));
    crate::retry::Backoff::exponential(base)
        .cap(cap)
        .jitter(crate::retry::Jitter::Full)
}

/// Which preset settings still follow the total timeout: those the user
/// has not set.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Derive {
    pub(super) attempt: bool,
    pub(super) backoff: bool,
}

#[cfg(feature = "http")]
impl Derive {
    pub(super) fn apply(self, settings: &mut Settings) {
        let Some(total) = settings.total_timeout else {
            return;
        };
        if self.attempt {
            settings.attempt_timeout = Some(standard_attempt(total));
        }
        if self.backoff {
            settings.retry = settings.retry.take().map(|retry| {
                let retry = retry.backoff(standard_backoff(total));
                // A total too short for a nanosecond of backoff holds no
                // retry at all.
                if total < Duration::from_nanos(15) {
                    retry.max_attempts(1)
                } else {
                    retry
                }
            });
        }
    }
}

#[cfg(not(feature = "http"))]
impl Derive {
    // Nothing to work out without the HTTP preset; the same call either way.
    #[allow(clippy::unused_self)]
    pub(super) fn apply(self, _settings: &mut Settings) {}
}
