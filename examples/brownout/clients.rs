//! The four clients, each a function from a URL to the outcome of one
//! logical call.

use std::sync::Arc;

use futures::future::BoxFuture;
use steadfast::BoxError;
use steadfast::circuit_breaker::CircuitBreakerHandle;
use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource};
use steadfast::hedge::HedgeLayer;
use steadfast::http::{HttpClassifier, HttpReplay};
use steadfast::policy::{Policy, StandardHttpClient};
use tower::{Layer, ServiceExt};

use crate::backend::ms;
use crate::{CALL_TIMEOUT, STALE_AFTER};

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

/// A client: sends `GET url` and reports the outcome; with the breakers
/// it calls through, if it has them (one per host: give it the backend's
/// `host:port`).
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) call: Arc<dyn Fn(String) -> BoxFuture<'static, Outcome> + Send + Sync>,
    pub(crate) breaker: Option<BreakerOf>,
}

/// The breaker a client uses for a host.
pub(crate) type BreakerOf = Arc<dyn Fn(&str) -> CircuitBreakerHandle + Send + Sync>;

/// The breakers of `policy`, by host.
fn breakers(policy: &StandardHttpClient) -> Option<BreakerOf> {
    let policy = policy.clone();
    Some(Arc::new(move |authority: &str| {
        policy.circuit_breaker_for(authority)
    }))
}

fn reqwest_client() -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder().no_proxy().build()?)
}

/// `Policy::standard_http_client()` as a user gets it: the total timeout
/// set, nothing else.
fn standard() -> Result<StandardHttpClient, BoxError> {
    Ok(Policy::standard_http_client()
        .total_timeout(CALL_TIMEOUT)
        .build()?)
}

async fn read(response: reqwest::Response) -> Outcome {
    let ok = response.status().is_success() && response.bytes().await.is_ok();
    Outcome {
        ok,
        fallback: false,
    }
}

/// reqwest with the same total timeout, and nothing else.
pub(crate) fn bare() -> Result<Client, BoxError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(CALL_TIMEOUT)
        .build()?;
    Ok(Client {
        call: Arc::new(move |url: String| {
            let client = client.clone();
            Box::pin(async move {
                match client.get(url).send().await {
                    Ok(response) => read(response).await,
                    Err(_) => Outcome::FAILED,
                }
            })
        }),
        breaker: None,
    })
}

/// Sends `GET url` through `service`, a `Service<reqwest::Request>`.
fn through<S>(service: S, breaker: Option<BreakerOf>) -> Client
where
    S: tower::Service<reqwest::Request, Response = reqwest::Response, Error = BoxError>,
    S: Clone + Send + Sync + 'static,
    S::Future: Send,
{
    let call = Arc::new(move |url: String| {
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
        }) as BoxFuture<'static, Outcome>
    });
    Client { call, breaker }
}

pub(crate) fn with_policy() -> Result<Client, BoxError> {
    let policy = standard()?;
    Ok(through(policy.layer(reqwest_client()?), breakers(&policy)))
}

/// Hedging around the standard policy: a copy of a call that has not
/// answered by the latency of the slowest 10 % (never before 20 ms) is
/// sent through the same policy, so it meets the same breaker and draws
/// on the same retry budget.
pub(crate) fn with_hedging() -> Result<Client, BoxError> {
    let policy = standard()?;
    let mut hedge = HedgeLayer::builder()
        .classifier(HttpClassifier::new())
        .replay(HttpReplay::new())
        .latency_percentile(0.10, ms(20));
    if let Some(budget) = policy.retry_budget() {
        hedge = hedge.budget(budget.clone());
    }
    let service = hedge.build()?.layer(policy.layer(reqwest_client()?));
    Ok(through(service, breakers(&policy)))
}

/// The standard policy under a fallback to cached answers, outermost:
/// served when a call fails or is refused (stale-if-error), and to a call
/// still waiting after 100 ms, which then runs on in the background to its
/// deadline so the breaker learns of it. The fallback takes
/// `reqwest::Request` and answers `reqwest::Response`, as the policy does.
pub(crate) fn with_fallback() -> Result<Client, BoxError> {
    let policy = standard()?;
    let breaker = breakers(&policy);
    let fallback = FallbackLayer::builder()
        .cache(FallbackCache::http().capacity(1_000).build()?)
        .serve_stale_after(STALE_AFTER)
        .finish_in_background(1_000)
        .classifier(HttpClassifier::new())
        .reqwest()
        .build()?;
    // Boxed: names the response future's type once, so it is known to be `Send`.
    let service =
        tower::util::BoxCloneSyncService::new(fallback.layer(policy.layer(reqwest_client()?)));
    let call = Arc::new(move |url: String| {
        let service = service.clone();
        Box::pin(async move {
            let Ok(url) = url.parse() else {
                return Outcome::FAILED;
            };
            let request = reqwest::Request::new(reqwest::Method::GET, url);
            match service.oneshot(request).await {
                Ok(response) => {
                    let fallback = response.extensions().get::<FallbackSource>().is_some();
                    Outcome {
                        fallback,
                        ..read(response).await
                    }
                }
                Err(_) => Outcome::FAILED,
            }
        }) as BoxFuture<'static, Outcome>
    });
    Ok(Client { call, breaker })
}
