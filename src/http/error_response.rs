//! Turning the errors of a server's stack into responses.

use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, Elapsed, Rejection};

/// Answers the errors of the layers inside with HTTP responses, so that
/// an axum stack becomes `Infallible`:
///
/// | error | status | `Retry-After` |
/// |---|---|---|
/// | [`CircuitOpen`] | 503 | the time the circuit stays open (at least 1 s) |
/// | [`BulkheadFull`], [`ConcurrencyLimited`], [`ClientThrottled`] | 503 | [`bulkhead_retry_after`](Self::bulkhead_retry_after) (1 s) |
/// | [`RateLimited`] | 429 | the marker's wait (at least 1 s) |
/// | [`DeadlineExceeded`], [`Elapsed`] | 504 | — |
/// | anything else | 500 | — |
///
/// The refusal is read by [`Rejection::of`], so a marker wrapped in
/// another error (its source) is answered the same way.
///
/// [`CircuitOpen`]: crate::error::CircuitOpen
/// [`BulkheadFull`]: crate::error::BulkheadFull
/// [`ConcurrencyLimited`]: crate::error::ConcurrencyLimited
/// [`ClientThrottled`]: crate::error::ClientThrottled
/// [`RateLimited`]: crate::error::RateLimited
/// [`DeadlineExceeded`]: crate::error::DeadlineExceeded
///
/// The response has an empty body (`B::default()`); other responses pass
/// through untouched.
///
/// ```
/// use std::time::Duration;
/// use steadfast::error::RateLimited;
/// use steadfast::http::ErrorResponseLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = ErrorResponseLayer::new().layer(service_fn(|_: ()| async {
///     Err::<http::Response<String>, _>(steadfast::BoxError::from(RateLimited::new(
///         Duration::from_millis(1_500),
///     )))
/// }));
/// let response = svc.oneshot(()).await.unwrap(); // Infallible
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "2");
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ErrorResponseLayer {
    bulkhead_retry_after: Duration,
}

impl Default for ErrorResponseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ErrorResponseLayer {
    /// The layer with its defaults.
    pub const fn new() -> Self {
        Self {
            bulkhead_retry_after: Duration::from_secs(1),
        }
    }

    /// The `Retry-After` of a 503 for a full bulkhead (default 1 s).
    pub const fn bulkhead_retry_after(mut self, wait: Duration) -> Self {
        self.bulkhead_retry_after = wait;
        self
    }

    /// The response for `err`, as the table above says.
    pub fn response<B: Default>(&self, err: &(dyn Error + 'static)) -> Response<B> {
        ErrorAnswer::answer(self, err)
    }
}

/// How an [`ErrorResponse`] answers an error: with HTTP statuses
/// ([`ErrorResponseLayer`]) or, with the `grpc` feature, gRPC statuses.
pub trait ErrorAnswer: Copy {
    /// The response for `err`.
    fn answer<B: Default>(&self, err: &(dyn Error + 'static)) -> Response<B>;
}

impl ErrorAnswer for ErrorResponseLayer {
    fn answer<B: Default>(&self, err: &(dyn Error + 'static)) -> Response<B> {
        let (status, retry_after) = match Rejection::of(err) {
            Some((Rejection::CircuitOpen, remaining)) => {
                (StatusCode::SERVICE_UNAVAILABLE, remaining)
            }
            Some((Rejection::RateLimited, wait)) => (StatusCode::TOO_MANY_REQUESTS, wait),
            Some((Rejection::DeadlineExceeded, _)) => (StatusCode::GATEWAY_TIMEOUT, None),
            // A full bulkhead, an adaptive limit, client-side throttling.
            Some(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(self.bulkhead_retry_after),
            ),
            None if err.is::<Elapsed>() => (StatusCode::GATEWAY_TIMEOUT, None),
            None => {
                internal(err);
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            }
        };
        let mut response = Response::new(B::default());
        *response.status_mut() = status;
        if let Some(wait) = retry_after {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(whole_secs(wait)),
            );
        }
        response
    }
}

/// Seconds, rounded up, at least one: `Retry-After: 0` invites a storm.
/// The longest waits saturate at `u64::MAX` seconds.
fn whole_secs(wait: Duration) -> u64 {
    let secs = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0));
    secs.max(1)
}

#[inline(never)]
fn internal(err: &(dyn Error + 'static)) {
    tracing::warn!(
        target: "steadfast::http",
        layer = "error_response",
        error = %err,
        "unhandled error answered with 500"
    );
}

impl<S> Layer<S> for ErrorResponseLayer {
    type Service = ErrorResponse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorResponse::answering(inner, *self)
    }
}

/// Answers errors with responses; made by [`ErrorResponseLayer`].
#[derive(Debug)]
pub struct ErrorResponse<S, A = ErrorResponseLayer> {
    inner: S,
    layer: A,
    // The inner service failed to become ready: the next call is answered
    // with this error without calling it.
    not_ready: Option<BoxError>,
}

impl<S, A> ErrorResponse<S, A> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &A) -> Self
    where
        A: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }

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

impl<S, A> ErrorResponse<S, A> {
    pub(crate) fn answering(inner: S, layer: A) -> Self {
        Self {
            inner,
            layer,
            not_ready: None,
        }
    }
}

impl<S: Clone, A: Copy> Clone for ErrorResponse<S, A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer,
            not_ready: None,
        }
    }
}

impl<S, A, Req, B> Service<Req> for ErrorResponse<S, A>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    A: ErrorAnswer,
    B: Default,
{
    type Response = Response<B>;
    type Error = Infallible;
    type Future = ErrorResponseFuture<S::Future, B, A>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.not_ready.is_none() {
            if let Err(err) = ready!(self.inner.poll_ready(cx)) {
                self.not_ready = Some(err.into());
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let state = match self.not_ready.take() {
            Some(err) => AnswerState::Answered {
                response: Some(self.layer.answer(&*err)),
            },
            None => AnswerState::Calling {
                inner: self.inner.call(request),
            },
        };
        ErrorResponseFuture {
            state,
            layer: self.layer,
        }
    }
}

pin_project! {
    /// Response future of [`ErrorResponse`].
    #[derive(Debug)]
    pub struct ErrorResponseFuture<F, B, A = ErrorResponseLayer> {
        #[pin]
        state: AnswerState<F, B>,
        layer: A,
    }
}

pin_project! {
    #[project = AnswerProj]
    #[derive(Debug)]
    enum AnswerState<F, B> {
        Calling { #[pin] inner: F },
        Answered { response: Option<Response<B>> },
    }
}

impl<F, B, E, A> Future for ErrorResponseFuture<F, B, A>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    A: ErrorAnswer,
    B: Default,
{
    type Output = Result<Response<B>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        Poll::Ready(Ok(match this.state.project() {
            AnswerProj::Calling { inner } => match ready!(inner.poll(cx)) {
                Ok(response) => response,
                Err(err) => this.layer.answer(&*err.into()),
            },
            AnswerProj::Answered { response } => response.take().unwrap_or_else(|| {
                this.layer
                    .answer(&*BoxError::from("polled after completion"))
            }),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{BulkheadFull, CircuitOpen, ClientThrottled, RateLimited};

    /// An error of another layer or client around a refusal.
    #[derive(Debug)]
    struct Wrapping(BoxError);

    impl std::fmt::Display for Wrapping {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl Error for Wrapping {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn a_wrapped_refusal_is_answered_as_the_refusal() {
        let layer = ErrorResponseLayer::new();
        let limited = Wrapping(Box::new(RateLimited::new(Duration::from_millis(1_500))));
        let response: Response<()> = layer.response(&limited);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "2");
        let throttled: Response<()> = layer.response(&Wrapping(Box::new(ClientThrottled::new())));
        assert_eq!(throttled.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(throttled.headers()["retry-after"], "1");
        let other: Response<()> = layer.response(&Wrapping("reset".into()));
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_longest_waits_saturate_instead_of_overflowing() {
        let layer = ErrorResponseLayer::new().bulkhead_retry_after(Duration::MAX);
        let full: Response<()> = layer.response(&BulkheadFull::new());
        assert_eq!(full.headers()["retry-after"], u64::MAX.to_string().as_str());
        let limited: Response<()> = layer.response(&RateLimited::new(Duration::MAX));
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            limited.headers()["retry-after"],
            u64::MAX.to_string().as_str()
        );
        let open: Response<()> = layer.response(&CircuitOpen::new(Duration::MAX));
        assert_eq!(open.headers()["retry-after"], u64::MAX.to_string().as_str());
    }
}
