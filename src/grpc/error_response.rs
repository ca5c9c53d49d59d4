//! Turning the errors of a tonic server's stack into gRPC statuses.

use std::error::Error;
use std::time::Duration;

use http::{HeaderValue, Response};
use tower_layer::Layer;

use super::status::{Code, GRPC_MESSAGE, GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS};
use crate::error::{Elapsed, Rejection};
use crate::http::{ErrorAnswer, ErrorResponse};

/// Answers the errors of the layers inside with gRPC statuses, so that a
/// tonic server stack becomes `Infallible`:
///
/// | error | `grpc-status` | `grpc-retry-pushback-ms` |
/// |---|---|---|
/// | [`CircuitOpen`] | `UNAVAILABLE` (14) | the time the circuit stays open, or [`default_pushback`](Self::default_pushback) (1 s) if it is not known (a breaker forced open) |
/// | [`BulkheadFull`], [`ConcurrencyLimited`], [`ClientThrottled`] | `UNAVAILABLE` (14) | [`default_pushback`](Self::default_pushback) (1 s) |
/// | [`RateLimited`] | `RESOURCE_EXHAUSTED` (8) | the marker's wait |
/// | [`DeadlineExceeded`], [`Elapsed`] | `DEADLINE_EXCEEDED` (4) | — |
/// | anything else | `UNKNOWN` (2) | — |
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
/// Each answer is trailers-only: HTTP 200, `content-type:
/// application/grpc`, the status and a `grpc-message` in the headers, an
/// empty body (`B::default()`). Other responses pass through untouched.
///
/// ```
/// use std::time::Duration;
/// use steadfast::error::CircuitOpen;
/// use steadfast::grpc::GrpcErrorResponseLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let svc = GrpcErrorResponseLayer::new().layer(service_fn(|_: ()| async {
///     Err::<http::Response<String>, _>(steadfast::BoxError::from(CircuitOpen::new(
///         Duration::from_millis(1_500),
///     )))
/// }));
/// let response = svc.oneshot(()).await.unwrap(); // Infallible
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["grpc-status"], "14");
/// assert_eq!(response.headers()["grpc-retry-pushback-ms"], "1500");
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GrpcErrorResponseLayer {
    default_pushback: Duration,
}

impl Default for GrpcErrorResponseLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcErrorResponseLayer {
    /// The layer with its defaults.
    pub const fn new() -> Self {
        Self {
            default_pushback: Duration::from_secs(1),
        }
    }

    /// The pushback when the refusing layer gives no time: a full
    /// bulkhead, a breaker forced open (default 1 s). A pushback of zero
    /// would invite every client back at once.
    pub const fn default_pushback(mut self, wait: Duration) -> Self {
        self.default_pushback = wait;
        self
    }

    /// The code, message and pushback for `err`, as the table above says.
    pub fn status_for(
        &self,
        err: &(dyn Error + 'static),
    ) -> (Code, &'static str, Option<Duration>) {
        let pushback = |wait: Option<Duration>| match wait {
            None | Some(Duration::ZERO) => Some(self.default_pushback),
            left => left,
        };
        match Rejection::of(err) {
            Some((Rejection::CircuitOpen, remaining)) => {
                (Code::Unavailable, "circuit open", pushback(remaining))
            }
            Some((Rejection::RateLimited, wait)) => (Code::ResourceExhausted, "rate limited", wait),
            Some((Rejection::DeadlineExceeded, _)) => {
                (Code::DeadlineExceeded, "deadline exceeded", None)
            }
            Some((Rejection::BulkheadFull, _)) => {
                (Code::Unavailable, "bulkhead full", pushback(None))
            }
            Some((Rejection::ConcurrencyLimited, _)) => {
                (Code::Unavailable, "concurrency limited", pushback(None))
            }
            Some((Rejection::ClientThrottled, _)) => {
                (Code::Unavailable, "throttled by client", pushback(None))
            }
            None if err.is::<Elapsed>() => (Code::DeadlineExceeded, "deadline exceeded", None),
            None => {
                unhandled(err);
                (Code::Unknown, "internal error", None)
            }
        }
    }
}

impl ErrorAnswer for GrpcErrorResponseLayer {
    fn answer<B: Default>(&self, err: &(dyn Error + 'static)) -> Response<B> {
        let (code, message, pushback) = self.status_for(err);
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(GRPC_STATUS, HeaderValue::from(code.as_i32()));
        headers.insert(GRPC_MESSAGE, HeaderValue::from_static(message));
        if let Some(wait) = pushback {
            let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
            headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from(ms));
        }
        response
    }
}

#[inline(never)]
fn unhandled(err: &(dyn Error + 'static)) {
    tracing::warn!(
        target: "steadfast::grpc",
        layer = "grpc_error_response",
        error = %err,
        "unhandled error answered with UNKNOWN"
    );
}

impl<S> Layer<S> for GrpcErrorResponseLayer {
    type Service = ErrorResponse<S, GrpcErrorResponseLayer>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorResponse::answering(inner, *self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{
        BoxError, BulkheadFull, ClientThrottled, ConcurrencyLimited, DeadlineExceeded, RateLimited,
    };

    #[test]
    fn statuses() {
        let layer = GrpcErrorResponseLayer::new();
        let answer = |err: BoxError| -> Response<()> { layer.answer(&*err) };
        let r = answer(Box::new(BulkheadFull::new()));
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["grpc-retry-pushback-ms"], "1000");
        let r = answer(Box::new(RateLimited::new(Duration::from_millis(250))));
        assert_eq!(r.headers()["grpc-status"], "8");
        assert_eq!(r.headers()["grpc-retry-pushback-ms"], "250");
        let r = answer(Box::new(DeadlineExceeded::new()));
        assert_eq!(r.headers()["grpc-status"], "4");
        assert!(r.headers().get("grpc-retry-pushback-ms").is_none());
        let r = answer("boom".into());
        assert_eq!(r.headers()["grpc-status"], "2");
        assert_eq!(r.headers()["content-type"], "application/grpc");
    }

    #[test]
    fn adaptive_refusals_are_unavailable_with_the_default_pushback() {
        let layer = GrpcErrorResponseLayer::new().default_pushback(Duration::from_millis(300));
        for (err, message) in [
            (
                BoxError::from(ConcurrencyLimited::new()),
                "concurrency limited",
            ),
            (
                BoxError::from(ClientThrottled::new()),
                "throttled by client",
            ),
        ] {
            let r: Response<()> = layer.answer(&*err);
            assert_eq!(r.headers()["grpc-status"], "14");
            assert_eq!(r.headers()["grpc-message"], message);
            assert_eq!(r.headers()["grpc-retry-pushback-ms"], "300");
        }
    }
}
