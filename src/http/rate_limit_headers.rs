//! Rate-limit response headers on the server side: the IETF `RateLimit-Policy`
//! and `RateLimit` fields, optionally the legacy `X-RateLimit-*` trio, and
//! `Retry-After` on refusals.

use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower_layer::Layer;
use tower_service::Service;

use crate::rate_limit::report::{Allowance, AllowanceSlot};

/// Writes what the rate limiter inside decided into each response, for
/// either store (in-process or shared):
///
/// | header | value |
/// |---|---|
/// | `RateLimit-Policy` | `"free";q=10;w=60`: the burst and the seconds it takes to refill; a period quota adds `"free-quota";q=10000` |
/// | `RateLimit` | `"free";r=4;t=6`: calls left at once and seconds until full again; with a quota, `"free-quota";r=9876;t=…` |
/// | `X-RateLimit-Limit`, `-Remaining`, `-Reset` | with [`legacy`](Self::legacy): the burst, the fewest calls left, seconds until that resets |
/// | `Retry-After` | on a 429 that has none: seconds until a call would pass (at least 1) |
///
/// The fields follow draft-ietf-httpapi-ratelimit-headers. Put the layer
/// outside an [`ErrorResponseLayer`](super::ErrorResponseLayer), which
/// turns the limiter's refusals into 429s; the layer sees those and adds
/// the fields. A response no limiter decided for passes untouched.
///
/// ```
/// use steadfast::http::{ErrorResponseLayer, RateLimitHeadersLayer};
/// use steadfast::rate_limit::{Quota, RateLimitLayer};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let service = ServiceBuilder::new()
///     .layer(RateLimitHeadersLayer::new().legacy(true))
///     .layer(ErrorResponseLayer::new())
///     .layer(RateLimitLayer::builder().quota(Quota::per_minute(60).burst(2)).build()?)
///     .service(service_fn(|_: http::Request<()>| async {
///         Ok::<_, steadfast::BoxError>(http::Response::new(String::new()))
///     }));
/// let response = service.clone().oneshot(http::Request::new(())).await?;
/// assert_eq!(response.headers()["ratelimit-policy"], "\"default\";q=2;w=2");
/// assert_eq!(response.headers()["ratelimit"], "\"default\";r=1;t=1");
/// assert_eq!(response.headers()["x-ratelimit-remaining"], "1");
/// service.clone().oneshot(http::Request::new(())).await?;
/// let refused = service.oneshot(http::Request::new(())).await?;
/// assert_eq!(refused.status(), 429);
/// assert_eq!(refused.headers()["ratelimit"], "\"default\";r=0;t=1");
/// assert_eq!(refused.headers()["retry-after"], "1");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimitHeadersLayer {
    legacy: bool,
}

impl RateLimitHeadersLayer {
    /// The IETF fields only.
    pub const fn new() -> Self {
        Self { legacy: false }
    }

    /// Also writes `X-RateLimit-Limit`, `X-RateLimit-Remaining` and
    /// `X-RateLimit-Reset` (seconds from now), as gateways do.
    #[must_use]
    pub const fn legacy(mut self, legacy: bool) -> Self {
        self.legacy = legacy;
        self
    }
}

impl<S> Layer<S> for RateLimitHeadersLayer {
    type Service = RateLimitHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitHeaders {
            inner,
            legacy: self.legacy,
        }
    }
}

/// Writes the rate-limit headers. Made by [`RateLimitHeadersLayer`].
#[derive(Debug, Clone)]
pub struct RateLimitHeaders<S> {
    inner: S,
    legacy: bool,
}

impl<S> RateLimitHeaders<S> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &RateLimitHeadersLayer) -> Self
    where
        RateLimitHeadersLayer: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S> RateLimitHeaders<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RateLimitHeadersFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let slot = AllowanceSlot::new();
        let future = slot.sync_scope(|| self.inner.call(request));
        RateLimitHeadersFuture {
            inner: Arc::clone(&slot).scope(future),
            slot,
            legacy: self.legacy,
        }
    }
}

pin_project! {
    /// The response future of [`RateLimitHeaders`].
    pub struct RateLimitHeadersFuture<F> {
        #[pin]
        inner: TaskLocalFuture<Arc<AllowanceSlot>, F>,
        slot: Arc<AllowanceSlot>,
        legacy: bool,
    }
}

impl<F: std::fmt::Debug> std::fmt::Debug for RateLimitHeadersFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitHeadersFuture")
            .field("legacy", &self.legacy)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for RateLimitHeadersFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(allowance) = this.slot.get() {
            let refused = response.status() == StatusCode::TOO_MANY_REQUESTS;
            write_headers(response.headers_mut(), allowance, *this.legacy, refused);
        }
        Poll::Ready(Ok(response))
    }
}

/// Whole seconds, rounded up.
fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A tier name as a structured-field string: printable ASCII, with `"`
/// and `\` escaped; anything else becomes `_`.
fn sf_string(out: &mut String, name: &str, suffix: &str) {
    out.push('"');
    for c in name.chars().chain(suffix.chars()) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(HeaderName::from_static(name), value);
        }
        Err(_) => tracing::debug!(
            target: "steadfast::http",
            header = name,
            "rate-limit header value is not valid; left out"
        ),
    }
}

/// Writes the fields for `allowance`.
pub(crate) fn write_headers(
    headers: &mut HeaderMap,
    allowance: &Allowance,
    legacy: bool,
    refused: bool,
) {
    let mut policy = String::with_capacity(48);
    let mut state = String::with_capacity(48);
    sf_string(&mut policy, &allowance.tier, "");
    let _ = write!(
        policy,
        ";q={};w={}",
        allowance.limit,
        secs(allowance.window).max(1)
    );
    sf_string(&mut state, &allowance.tier, "");
    let _ = write!(
        state,
        ";r={};t={}",
        allowance.remaining,
        secs(allowance.reset)
    );
    let (mut remaining, mut reset) = (allowance.remaining, allowance.reset);
    if let Some(quota) = &allowance.quota {
        policy.push_str(", ");
        sf_string(&mut policy, &allowance.tier, "-quota");
        let _ = write!(policy, ";q={}", quota.limit);
        state.push_str(", ");
        sf_string(&mut state, &allowance.tier, "-quota");
        let _ = write!(state, ";r={};t={}", quota.remaining, secs(quota.reset));
        if quota.remaining < remaining || (quota.remaining == 0 && quota.reset > reset) {
            remaining = quota.remaining;
            reset = quota.reset;
        }
    }
    insert(headers, "ratelimit-policy", &policy);
    insert(headers, "ratelimit", &state);
    if legacy {
        insert(headers, "x-ratelimit-limit", &allowance.limit.to_string());
        insert(headers, "x-ratelimit-remaining", &remaining.to_string());
        insert(headers, "x-ratelimit-reset", &secs(reset).to_string());
    }
    if refused && !headers.contains_key(http::header::RETRY_AFTER) {
        insert(headers, "retry-after", &secs(reset).max(1).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::report::QuotaAllowance;

    fn allowance(tier: &'static str) -> Allowance {
        Allowance {
            tier: tier.into(),
            limit: 10,
            remaining: 4,
            reset: Duration::from_millis(5_500),
            window: Duration::from_secs(60),
            quota: None,
        }
    }

    #[test]
    fn fields_follow_the_draft() {
        let mut headers = HeaderMap::new();
        write_headers(&mut headers, &allowance("free"), true, false);
        assert_eq!(headers["ratelimit-policy"], "\"free\";q=10;w=60");
        assert_eq!(headers["ratelimit"], "\"free\";r=4;t=6");
        assert_eq!(headers["x-ratelimit-limit"], "10");
        assert_eq!(headers["x-ratelimit-remaining"], "4");
        assert_eq!(headers["x-ratelimit-reset"], "6");
        assert!(!headers.contains_key("retry-after"));
    }

    #[test]
    fn a_spent_quota_is_the_binding_one() {
        let mut headers = HeaderMap::new();
        let mut a = allowance("gold");
        a.quota = Some(QuotaAllowance {
            limit: 1000,
            remaining: 0,
            reset: Duration::from_secs(3600),
        });
        write_headers(&mut headers, &a, true, true);
        assert_eq!(
            headers["ratelimit-policy"],
            "\"gold\";q=10;w=60, \"gold-quota\";q=1000"
        );
        assert_eq!(
            headers["ratelimit"],
            "\"gold\";r=4;t=6, \"gold-quota\";r=0;t=3600"
        );
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        assert_eq!(headers["retry-after"], "3600");
    }

    #[test]
    fn odd_tier_names_are_escaped() {
        let mut headers = HeaderMap::new();
        let a = Allowance {
            tier: "a\"b\\c\u{e9}\n".into(),
            ..allowance("x")
        };
        write_headers(&mut headers, &a, false, false);
        assert_eq!(headers["ratelimit"], "\"a\\\"b\\\\c__\";r=4;t=6");
        assert!(!headers.contains_key("x-ratelimit-limit"));
    }
}
