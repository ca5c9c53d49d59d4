//! The request-buffering layer and the HTTP [`Replay`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Request;
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{Buffering, NotReplayable, ReplayBody, buffer_body};
use crate::error::{BoxError, ConfigError, check};
use crate::replay::Replay;

/// Copies HTTP requests for retry and hedging.
///
/// - `http::Request<ReplayBody<B>>`: copies method, URI, version, headers,
///   extensions and a buffered body; a body sent once is not copied.
/// - `reqwest::Request` (feature `reqwest`): `try_clone`, which copies
///   any body but a stream.
///
/// A request that can't be copied is sent once: an event (target
/// `steadfast::http`, field `reason` = `body_streaming` or
/// `body_too_large`) says why, and retry reports `not_replayable`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpReplay;

impl HttpReplay {
    /// The replay.
    pub const fn new() -> Self {
        HttpReplay
    }
}

impl<B> Replay<Request<ReplayBody<B>>> for HttpReplay {
    fn replay(&self, request: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        let Some(body) = request.body().try_clone() else {
            not_replayable(
                request
                    .body()
                    .not_replayable()
                    .unwrap_or(NotReplayable::Streaming),
            );
            return None;
        };
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
impl Replay<reqwest::Request> for HttpReplay {
    fn replay(&self, request: &reqwest::Request) -> Option<reqwest::Request> {
        let copy = request.try_clone();
        if copy.is_none() {
            not_replayable(NotReplayable::Streaming);
        }
        copy
    }
}

#[inline(never)]
fn not_replayable(why: NotReplayable) {
    tracing::debug!(
        target: "steadfast::http",
        layer = "replay",
        reason = why.as_str(),
        "request body can't be replayed; the request is sent once"
    );
}

/// Buffers request bodies up to a limit so that [`HttpReplay`] can copy
/// them: `Request<B>` in, `Request<ReplayBody<B>>` out.
///
/// Put it outside retry or hedging. Bodies already in memory (`Full`,
/// `Bytes`, an empty body) are taken at once; a body still arriving is
/// read before the inner service is called.
#[derive(Debug, Clone, Copy)]
pub struct BufferRequestBodyLayer {
    limit: usize,
}

impl BufferRequestBodyLayer {
    /// The default limit: 64 KiB.
    pub const DEFAULT_LIMIT: usize = 64 * 1024;

    /// Buffers bodies of at most `limit` bytes; at least 1.
    pub fn new(limit: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            limit: check::at_least("http.buffer_limit", limit, 1)?,
        })
    }

    /// The limit, in bytes.
    pub const fn limit(&self) -> usize {
        self.limit
    }
}

impl Default for BufferRequestBodyLayer {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

impl<S> Layer<S> for BufferRequestBodyLayer {
    type Service = BufferRequestBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferRequestBody {
            inner,
            limit: self.limit,
        }
    }
}

/// Buffers request bodies; made by [`BufferRequestBodyLayer`].
#[derive(Debug, Clone)]
pub struct BufferRequestBody<S> {
    inner: S,
    limit: usize,
}

impl<S> BufferRequestBody<S> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &BufferRequestBodyLayer) -> Self
    where
        BufferRequestBodyLayer: tower_layer::Layer<S, Service = Self>,
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

impl<S, B> Service<Request<B>> for BufferRequestBody<S>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BufferFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let mut buffering = buffer_body(body, self.limit);
        match buffering.try_now() {
            Poll::Ready(Ok(body)) => {
                BufferFuture::calling(self.inner.call(Request::from_parts(parts, body)))
            }
            Poll::Ready(Err(err)) => BufferFuture::failed(err.into()),
            Poll::Pending => {
                // The body is still arriving: the ready service waits with
                // it, a clone takes its place.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                BufferFuture {
                    state: BufferState::Reading {
                        buffering,
                        parts: Some(parts),
                        service: ready,
                    },
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`BufferRequestBody`].
    pub struct BufferFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: BufferState<S, B>,
    }
}

pin_project! {
    #[project = BufferStateProj]
    enum BufferState<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        Reading {
            buffering: Buffering<B>,
            parts: Option<http::request::Parts>,
            service: S,
        },
        Calling { #[pin] future: S::Future },
        Failed { error: Option<BoxError> },
    }
}

impl<S, B> BufferFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    pub(crate) fn calling(future: S::Future) -> Self {
        Self {
            state: BufferState::Calling { future },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            state: BufferState::Failed { error: Some(error) },
        }
    }
}

impl<S, B> Future for BufferFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                BufferStateProj::Calling { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                BufferStateProj::Failed { error } => {
                    let err = error
                        .take()
                        .unwrap_or_else(|| "polled after completion".into());
                    return Poll::Ready(Err(err));
                }
                BufferStateProj::Reading {
                    buffering,
                    parts,
                    service,
                } => {
                    let next = match ready!(Pin::new(buffering).poll(cx)) {
                        Ok(body) => match parts.take() {
                            Some(parts) => BufferState::Calling {
                                future: service.call(Request::from_parts(parts, body)),
                            },
                            None => BufferState::Failed {
                                error: Some("polled after completion".into()),
                            },
                        },
                        Err(err) => BufferState::Failed {
                            error: Some(err.into()),
                        },
                    };
                    this.state.set(next);
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for BufferFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferFuture").finish_non_exhaustive()
    }
}
