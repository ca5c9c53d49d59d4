//! Deadlines on the wire: the time left travels in a request header.

use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tower_layer::Layer;
use tower_service::Service;

use super::parts::RequestParts;
use crate::deadline::Deadline;
use crate::error::{BoxError, ConfigError, check};
use crate::timeout::future::DeadlineFuture;

/// The header that carries the time left, in whole milliseconds, unless
/// another is configured.
pub const DEFAULT_DEADLINE_HEADER: HeaderName = HeaderName::from_static("x-request-timeout-ms");

/// Parses a deadline header: whole milliseconds (`"250"`), surrounding
/// whitespace allowed, clamped to `max`.
///
/// Anything else (empty, negative, fractional, garbage) is `None`. Never
/// panics, and a value is never above `max`, whatever the bytes.
///
/// ```
/// use std::time::Duration;
/// use steadfast::http::parse_deadline_header;
///
/// let max = Duration::from_secs(5);
/// assert_eq!(parse_deadline_header(b"250", max), Some(Duration::from_millis(250)));
/// assert_eq!(parse_deadline_header(b"600000", max), Some(max));
/// assert_eq!(parse_deadline_header(b"-1", max), None);
/// ```
pub fn parse_deadline_header(value: &[u8], max: Duration) -> Option<Duration> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ms = value.iter().fold(0u64, |acc, &d| {
        acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some(Duration::from_millis(ms).min(max))
}

/// Client side: writes the time left before the current [`Deadline`] into
/// a request header, so that the server can stop working when the caller
/// has stopped waiting.
///
/// Put it innermost, next to the client (inside retry and the attempt
/// timeout): each attempt then carries the time left when it is sent.
/// With [`max`](Self::max), the header never exceeds it (give it the
/// attempt timeout). Without a deadline and without `max`, no header is
/// written.
#[derive(Debug, Clone)]
pub struct PropagateDeadlineLayer {
    header: HeaderName,
    max: Option<Duration>,
}

impl Default for PropagateDeadlineLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PropagateDeadlineLayer {
    /// Writes [`DEFAULT_DEADLINE_HEADER`].
    pub const fn new() -> Self {
        Self {
            header: DEFAULT_DEADLINE_HEADER,
            max: None,
        }
    }

    /// Writes the time left into `header` instead.
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// Never announces more than `max` (say, the attempt timeout).
    pub fn max(mut self, max: Duration) -> Self {
        self.max = Some(max);
        self
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            header: self.header.clone(),
            max: self.max,
        }
    }
}

/// Writes the time left into a header; made by [`PropagateDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
    header: HeaderName,
    max: Option<Duration>,
}

impl<S> PropagateDeadline<S> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &PropagateDeadlineLayer) -> Self
    where
        PropagateDeadlineLayer: tower_layer::Layer<S, Service = Self>,
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

impl<S, R> Service<R> for PropagateDeadline<S>
where
    S: Service<R>,
    R: RequestParts,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: R) -> Self::Future {
        let left = match (Deadline::current(), self.max) {
            (Some(deadline), Some(max)) => Some(deadline.remaining().min(max)),
            (Some(deadline), None) => Some(deadline.remaining()),
            (None, max) => max,
        };
        if let Some(left) = left {
            // Rounded down: the server may stop a little early, never late.
            let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            request
                .headers_mut()
                .insert(self.header.clone(), HeaderValue::from(ms));
        }
        self.inner.call(request)
    }
}

/// Server side: bounds a handler's work by the caller's deadline header,
/// clamped to the server's own maximum.
///
/// The handler runs under the earliest of the header's time, the server's
/// `max` and any deadline already in force; it sees that [`Deadline`]
/// through [`Deadline::current`] and in the request's extensions (to pass
/// on to its own calls), and is dropped when it passes: the call then fails
/// with [`DeadlineExceeded`](crate::error::DeadlineExceeded), which
/// [`ErrorResponseLayer`](super::ErrorResponseLayer) answers with 504. A
/// caller can shorten the server's work, never lengthen it; a missing or
/// malformed header means `max`.
///
/// ```
/// use std::time::Duration;
/// use steadfast::http::ServerDeadlineLayer;
/// use steadfast::timeout::Deadline;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let server = ServerDeadlineLayer::new(Duration::from_secs(2))?.layer(service_fn(
///     |_: http::Request<()>| async { Ok::<_, steadfast::BoxError>(Deadline::current().map(Deadline::remaining)) },
/// ));
/// let asks_less = http::Request::get("/").header("x-request-timeout-ms", "300").body(())?;
/// assert_eq!(server.clone().oneshot(asks_less).await?, Some(Duration::from_millis(300)));
/// let asks_more = http::Request::get("/").header("x-request-timeout-ms", "90000").body(())?;
/// assert_eq!(server.oneshot(asks_more).await?, Some(Duration::from_secs(2)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServerDeadlineLayer {
    header: HeaderName,
    max: Duration,
}

impl ServerDeadlineLayer {
    /// Reads [`DEFAULT_DEADLINE_HEADER`]; no request may take longer than
    /// `max`, which must be greater than zero.
    pub fn new(max: Duration) -> Result<Self, ConfigError> {
        Ok(Self {
            header: DEFAULT_DEADLINE_HEADER,
            max: check::positive("http.server_deadline.max", max)?,
        })
    }

    /// Reads `header` instead.
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// The server's own maximum.
    pub const fn max(&self) -> Duration {
        self.max
    }
}

impl<S> Layer<S> for ServerDeadlineLayer {
    type Service = ServerDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerDeadline {
            inner,
            header: self.header.clone(),
            max: self.max,
        }
    }
}

/// Bounds a handler by the caller's deadline; made by
/// [`ServerDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct ServerDeadline<S> {
    inner: S,
    header: HeaderName,
    max: Duration,
}

impl<S> ServerDeadline<S> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &ServerDeadlineLayer) -> Self
    where
        ServerDeadlineLayer: tower_layer::Layer<S, Service = Self>,
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

impl<S, B> Service<http::Request<B>> for ServerDeadline<S>
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
        let budget = match request.headers().get(&self.header) {
            None => self.max,
            Some(value) => match parse_deadline_header(value.as_bytes(), self.max) {
                Some(budget) => budget,
                None => malformed(&self.header, self.max),
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
fn malformed(header: &HeaderName, max: Duration) -> Duration {
    tracing::debug!(
        target: "steadfast::http",
        layer = "server_deadline",
        header = header.as_str(),
        reason = "malformed",
        "deadline header ignored; using the server's maximum"
    );
    max
}
