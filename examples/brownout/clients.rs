//! The four clients, each a function from a URL to the outcome of one
//! logical call.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::BodyExt;
use steadfast::BoxError;
use steadfast::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerLayer};
use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource};
use steadfast::hedge::HedgeLayer;
use steadfast::http::{HttpClassifier, HttpReplay};
use steadfast::observe::RequestIdHeader;
use steadfast::policy::{Policy, PolicyBuilder};
use steadfast::retry::{Backoff, Jitter, RetryLayer};
use tower::{Layer, ServiceExt, service_fn};

use crate::backend::ms;
use crate::{CALL_TIMEOUT, SCALE};

/// The outcome of one logical call: a 2xx answer read to its end (real, or
/// from the fallback), or not.
#[derive(Clone, Copy)]
pub(crate) struct Outcome {
    pub(crate) ok: bool,
    pub(crate) fallback: bool,
}

impl Outcome {
    pub(crate) const FAILED: Self = Self {
        ok: false,
        fallback: false,
    };
}

/// A client: sends `GET url` and reports the outcome.
pub(crate) type Client = Arc<dyn Fn(String) -> BoxFuture<'static, Outcome> + Send + Sync>;

fn reqwest_client() -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(CALL_TIMEOUT)
        .build()?)
}

/// The standard breaker (50 % failures over the window, once 100 calls
/// were seen; open 5 s, 1 probe) on the demo's time scale: the window is
/// 20 times shorter, so the minimum number of calls is too, keeping the
/// same rate (100 calls in 30 s is 5 in 1.5 s). Without that, the demo's
/// load could never reach the minimum within a window and the breaker
/// would never open.
fn breaker() -> CircuitBreakerBuilder {
    CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(30) / SCALE, 30)
        .failure_rate_threshold(50.0)
        .minimum_calls(100 / u64::from(SCALE))
        .open_duration(Duration::from_secs(5) / SCALE)
        .half_open_probes(1)
}

/// `Policy::standard_http_client()` on the demo's time scale: same retry
/// rules (4 attempts, exponential backoff with full jitter, `Retry-After`
/// honoured), same retry budget, same breaker.
fn standard() -> PolicyBuilder<HttpClassifier, HttpReplay, RequestIdHeader> {
    Policy::standard_http_client()
        .total_timeout(CALL_TIMEOUT)
        .retry(
            RetryLayer::builder().max_attempts(4).backoff(
                Backoff::exponential(Duration::from_secs(2) / SCALE)
                    .cap(Duration::from_secs(8) / SCALE)
                    .jitter(Jitter::Full),
            ),
        )
        .circuit_breaker(breaker())
        .attempt_timeout(Duration::from_secs(10) / SCALE)
}

async fn read(response: reqwest::Response) -> Outcome {
    let ok = response.status().is_success() && response.bytes().await.is_ok();
    Outcome {
        ok,
        fallback: false,
    }
}

pub(crate) fn bare() -> Result<Client, BoxError> {
    let client = reqwest_client()?;
    Ok(Arc::new(move |url: String| {
        let client = client.clone();
        Box::pin(async move {
            match client.get(url).send().await {
                Ok(response) => read(response).await,
                Err(_) => Outcome::FAILED,
            }
        })
    }))
}

/// Sends `GET url` through `service`, a `Service<reqwest::Request>`.
fn through<S>(service: S) -> Client
where
    S: tower::Service<reqwest::Request, Response = reqwest::Response, Error = BoxError>,
    S: Clone + Send + Sync + 'static,
    S::Future: Send,
{
    Arc::new(move |url: String| {
        let service = service.clone();
        Box::pin(async move {
            let Ok(url) = url.parse() else {
                return Outcome::FAILED;
            };
            let request = reqwest::Request::new(reqwest::Method::GET, url);
            match service.oneshot(request).await {
                Ok(response) => read(response).await,
                Err(_) => Outcome::FAILED,
            }
        })
    })
}

pub(crate) fn with_policy() -> Result<Client, BoxError> {
    let policy = standard().build()?;
    Ok(through(policy.layer(reqwest_client()?)))
}

/// Hedging in the standard order: total deadline → bulkhead → retry →
/// hedge → breaker → attempt timeout; hedges draw on the retry budget.
pub(crate) fn with_hedging() -> Result<Client, BoxError> {
    let outer = standard()
        .no_circuit_breaker()
        .no_attempt_timeout()
        .build()?;
    let mut hedge = HedgeLayer::builder()
        .classifier(HttpClassifier::new())
        .replay(HttpReplay::new())
        // Hedge at most the slowest 10 % of calls, never before 20 ms.
        .latency_percentile(0.10, ms(20));
    if let Some(budget) = outer.retry_budget() {
        hedge = hedge.budget(budget.clone());
    }
    let inner = Policy::builder()
        .classifier(HttpClassifier::new())
        .replay(HttpReplay::new())
        .circuit_breaker(breaker())
        .attempt_timeout(Duration::from_secs(10) / SCALE)
        .build()?;
    let service = outer.layer(hedge.build()?.layer(inner.layer(reqwest_client()?)));
    Ok(through(service))
}

/// The standard policy under a fallback to cached answers (stale-if-error),
/// outermost. The fallback works on `http::Request`, so reqwest is adapted.
pub(crate) fn with_fallback() -> Result<Client, BoxError> {
    let policy = standard().build()?;
    let inner = policy.layer(reqwest_client()?);
    let adapted = service_fn(move |request: http::Request<String>| {
        let inner = inner.clone();
        async move {
            let request = reqwest::Request::try_from(request).map_err(BoxError::from)?;
            match inner.oneshot(request).await {
                Ok(response) => Ok(http::Response::<reqwest::Body>::from(response)),
                Err(err) => Err::<_, BoxError>(err),
            }
        }
    });
    let fallback = FallbackLayer::builder()
        .cache(FallbackCache::http().capacity(1_000).build()?)
        .classifier(HttpClassifier::new())
        .http()
        .build()?;
    // Boxed: names the response future's type once, so it is known to be `Send`.
    let service = tower::util::BoxCloneSyncService::new(fallback.layer(adapted));
    Ok(Arc::new(move |url: String| {
        let service = service.clone();
        Box::pin(async move {
            let Ok(request) = http::Request::get(url).body(String::new()) else {
                return Outcome::FAILED;
            };
            match service.oneshot(request).await {
                Ok(response) => {
                    let fallback = response.extensions().get::<FallbackSource>().is_some();
                    let ok = response.status().is_success()
                        && response.into_body().collect().await.is_ok();
                    Outcome { ok, fallback }
                }
                Err(_) => Outcome::FAILED,
            }
        })
    }))
}
