//! `grpc-timeout`: the time a client is willing to wait, on the wire.

use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use tower_layer::Layer;
use tower_service::Service;

use super::status::GRPC_TIMEOUT;
use crate::deadline::Deadline;
use crate::error::{BoxError, ConfigError, check};
use crate::timeout::future::DeadlineFuture;

const MAX_VALUE: u64 = 99_999_999;

/// Writes `timeout` as a `grpc-timeout` value: at most 8 digits and a unit
/// (`n`, `u`, `m`, `S`, `M`, `H`), the finest unit that fits, rounded
/// down so that the server stops a little early, never late. Durations
/// beyond 99,999,999 hours are written as that.
///
/// ```
/// use std::time::Duration;
/// use steadfast::grpc::encode_grpc_timeout;
///
/// assert_eq!(encode_grpc_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(encode_grpc_timeout(Duration::from_secs(3_600)), "3600000m");
/// assert_eq!(encode_grpc_timeout(Duration::MAX), "99999999H");
/// ```
pub fn encode_grpc_timeout(timeout: Duration) -> HeaderValue {
    let nanos = timeout.as_nanos();
    let units: [(u128, &str); 6] = [
        (1, "n"),
        (1_000, "u"),
        (1_000_000, "m"),
        (1_000_000_000, "S"),
        (60_000_000_000, "M"),
        (3_600_000_000_000, "H"),
    ];
    for (per, unit) in units {
        let value = nanos / per;
        if value <= u128::from(MAX_VALUE) {
            return HeaderValue::from_str(&format!("{value}{unit}"))
                .unwrap_or_else(|_| HeaderValue::from_static("99999999H"));
        }
    }
    HeaderValue::from_static("99999999H")
}

/// Parses a `grpc-timeout` value (1 to 8 ASCII digits and a unit, `H`
/// hours, `M` minutes, `S` seconds, `m` milliseconds, `u` microseconds,
/// `n` nanoseconds), clamped to `max`.
///
/// Anything else (empty, more than 8 digits, a sign, an unknown unit,
/// garbage) is `None`. Never panics, and a value is never above `max`,
/// whatever the bytes.
///
/// ```
/// use std::time::Duration;
/// use steadfast::grpc::parse_grpc_timeout;
///
/// let max = Duration::from_secs(30);
/// assert_eq!(parse_grpc_timeout(b"250m", max), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout(b"2H", max), Some(max));
/// assert_eq!(parse_grpc_timeout(b"123456789S", max), None);
/// assert_eq!(parse_grpc_timeout(b"-1S", max), None);
/// ```
pub fn parse_grpc_timeout(value: &[u8], max: Duration) -> Option<Duration> {
    let value = value.trim_ascii();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    let timeout = match unit {
        b'H' => Duration::from_secs(n * 3_600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    };
    Some(timeout.min(max))
}

/// Client side: writes the time left before the current [`Deadline`] into
/// `grpc-timeout`, so that the server stops working when the caller has
/// stopped waiting.
///
/// Put it innermost, next to the channel (inside retry and the attempt
/// timeout): each attempt then carries the time left when it is sent. With
/// [`max`](Self::max), the header never exceeds it (give it the attempt
/// timeout). A `grpc-timeout` the request already carries (tonic's
/// `Request::set_timeout`) is kept when it is shorter. Without a deadline
/// and without `max`, nothing is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateGrpcTimeoutLayer {
    max: Option<Duration>,
}

impl PropagateGrpcTimeoutLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self { max: None }
    }

    /// Never announces more than `max` (say, the attempt timeout).
    pub const fn max(mut self, max: Duration) -> Self {
        self.max = Some(max);
        self
    }
}

impl<S> Layer<S> for PropagateGrpcTimeoutLayer {
    type Service = PropagateGrpcTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateGrpcTimeout {
            inner,
            max: self.max,
        }
    }
}

/// Writes the time left into `grpc-timeout`; made by
/// [`PropagateGrpcTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct PropagateGrpcTimeout<S> {
    inner: S,
    max: Option<Duration>,
}

impl<S> PropagateGrpcTimeout<S> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &PropagateGrpcTimeoutLayer) -> Self
    where
        PropagateGrpcTimeoutLayer: tower_layer::Layer<S, Service = Self>,
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

impl<S, B> Service<http::Request<B>> for PropagateGrpcTimeout<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let left = match (Deadline::current(), self.max) {
            (Some(deadline), Some(max)) => Some(deadline.remaining().min(max)),
            (Some(deadline), None) => Some(deadline.remaining()),
            (None, max) => max,
        };
        if let Some(left) = left {
            let shorter = request
                .headers()
                .get(GRPC_TIMEOUT)
                .and_then(|v| parse_grpc_timeout(v.as_bytes(), Duration::MAX))
                .is_some_and(|asked| asked <= left);
            if !shorter {
                request
                    .headers_mut()
                    .insert(GRPC_TIMEOUT, encode_grpc_timeout(left));
            }
        }
        self.inner.call(request)
    }
}

/// Server side: bounds a handler's work by the caller's `grpc-timeout`,
/// clamped to the server's own maximum.
///
/// The handler runs under the earliest of the header's time, the server's
/// `max` and any deadline already in force; it sees that [`Deadline`]
/// through [`Deadline::current`] and in the request's extensions (to pass
/// on to its own calls), and is dropped when it passes: the call then fails
/// with [`DeadlineExceeded`](crate::error::DeadlineExceeded), which
/// [`GrpcErrorResponseLayer`](super::GrpcErrorResponseLayer) answers with
/// `DEADLINE_EXCEEDED`. A caller can shorten the server's work, never
/// lengthen it; a missing header means `max`, a malformed one too, with an
/// event.
///
/// ```
/// use std::time::Duration;
/// use steadfast::grpc::GrpcServerDeadlineLayer;
/// use steadfast::timeout::Deadline;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let server = GrpcServerDeadlineLayer::new(Duration::from_secs(2))?.layer(service_fn(
///     |_: http::Request<()>| async { Ok::<_, steadfast::BoxError>(Deadline::current().map(Deadline::remaining)) },
/// ));
/// let asks_less = http::Request::post("/pkg.Svc/Get").header("grpc-timeout", "300m").body(())?;
/// assert_eq!(server.clone().oneshot(asks_less).await?, Some(Duration::from_millis(300)));
/// let asks_more = http::Request::post("/pkg.Svc/Get").header("grpc-timeout", "1H").body(())?;
/// assert_eq!(server.oneshot(asks_more).await?, Some(Duration::from_secs(2)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct GrpcServerDeadlineLayer {
    max: Duration,
}

impl GrpcServerDeadlineLayer {
    /// No call may take longer than `max`, which must be greater than zero.
    pub fn new(max: Duration) -> Result<Self, ConfigError> {
        Ok(Self {
            max: check::positive("grpc.server_deadline.max", max)?,
        })
    }

    /// The server's own maximum.
    pub const fn max(&self) -> Duration {
        self.max
    }
}

impl<S> Layer<S> for GrpcServerDeadlineLayer {
    type Service = GrpcServerDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerDeadline {
            inner,
            max: self.max,
        }
    }
}

/// Bounds a handler by the caller's `grpc-timeout`; made by
/// [`GrpcServerDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct GrpcServerDeadline<S> {
    inner: S,
    max: Duration,
}

impl<S> GrpcServerDeadline<S> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &GrpcServerDeadlineLayer) -> Self
    where
        GrpcServerDeadlineLayer: tower_layer::Layer<S, Service = Self>,
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

impl<S, B> Service<http::Request<B>> for GrpcServerDeadline<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let budget = match request.headers().get(GRPC_TIMEOUT) {
            None => self.max,
            Some(value) => match parse_grpc_timeout(value.as_bytes(), self.max) {
                Some(budget) => budget,
                None => malformed(value.as_bytes(), self.max),
            },
        };
        let deadline = Deadline::after(budget).tighten();
        request.extensions_mut().insert(deadline);
        let inner = &mut self.inner;
        let future = deadline.sync_scope(|| inner.call(request));
        DeadlineFuture::new(future, deadline, None)
    }
}

#[inline(never)]
fn malformed(value: &[u8], max: Duration) -> Duration {
    tracing::debug!(
        target: "steadfast::grpc",
        layer = "grpc_server_deadline",
        reason = "malformed",
        value = %String::from_utf8_lossy(&value[..value.len().min(64)]),
        "grpc-timeout ignored; using the server's maximum"
    );
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_finest_unit_that_fits() {
        let cases = [
            (Duration::ZERO, "0n"),
            (Duration::from_nanos(99_999_999), "99999999n"),
            (Duration::from_millis(100), "100000u"),
            (Duration::from_secs(100), "100000m"),
            (Duration::from_secs(100_000), "100000S"),
            (Duration::from_secs(100_000_000), "1666666M"),
            (Duration::from_secs(6_000_000_000), "1666666H"),
        ];
        for (d, text) in cases {
            assert_eq!(encode_grpc_timeout(d), text, "{d:?}");
            let back = parse_grpc_timeout(text.as_bytes(), Duration::MAX).unwrap();
            assert!(back <= d, "{d:?} came back as {back:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_client_writes_the_time_left_and_keeps_a_shorter_header() {
        use tower::{ServiceExt, service_fn};
        let sent = |max: Option<Duration>, header: Option<&'static str>| async move {
            let layer = match max {
                Some(max) => PropagateGrpcTimeoutLayer::new().max(max),
                None => PropagateGrpcTimeoutLayer::new(),
            };
            let svc = layer.layer(service_fn(|r: http::Request<()>| async move {
                Ok::<_, BoxError>(r.headers().get(GRPC_TIMEOUT).cloned())
            }));
            let mut request = http::Request::post("/pkg.Svc/Get");
            if let Some(h) = header {
                request = request.header(GRPC_TIMEOUT, h);
            }
            let deadline = Deadline::after(Duration::from_secs(3));
            deadline
                .scope(svc.oneshot(request.body(()).unwrap()))
                .await
                .unwrap()
        };
        assert_eq!(sent(None, None).await.unwrap(), "3000000u");
        let capped = sent(Some(Duration::from_secs(1)), None).await;
        assert_eq!(capped.unwrap(), "1000000u");
        assert_eq!(sent(None, Some("20m")).await.unwrap(), "20m");
        assert_eq!(sent(None, Some("1H")).await.unwrap(), "3000000u");
        assert_eq!(sent(None, Some("junk")).await.unwrap(), "3000000u");
        // No deadline, no max: nothing written.
        let svc =
            PropagateGrpcTimeoutLayer::new().layer(service_fn(|r: http::Request<()>| async move {
                Ok::<_, BoxError>(r.headers().get(GRPC_TIMEOUT).cloned())
            }));
        assert_eq!(svc.oneshot(http::Request::new(())).await.unwrap(), None);
    }

    #[test]
    fn parses_every_unit() {
        let max = Duration::MAX;
        assert_eq!(
            parse_grpc_timeout(b"1H", max),
            Some(Duration::from_secs(3_600))
        );
        assert_eq!(
            parse_grpc_timeout(b"1M", max),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_grpc_timeout(b"1S", max), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_grpc_timeout(b"1m", max),
            Some(Duration::from_millis(1))
        );
        assert_eq!(
            parse_grpc_timeout(b"1u", max),
            Some(Duration::from_micros(1))
        );
        assert_eq!(
            parse_grpc_timeout(b"1n", max),
            Some(Duration::from_nanos(1))
        );
        assert_eq!(
            parse_grpc_timeout(b"99999999H", max),
            Some(Duration::from_secs(99_999_999 * 3_600))
        );
        for bad in ["", "S", "1", "1s", "1x", "+1S", "1.5S", "1 S", "123456789n"] {
            assert_eq!(parse_grpc_timeout(bad.as_bytes(), max), None, "{bad:?}");
        }
    }
}
