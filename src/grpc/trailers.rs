//! Reading unary answers to their end, so that their trailers are judged.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use http::HeaderMap;
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::status::GRPC_STATUS;
use crate::error::{BoxError, ConfigError, check};
use crate::http::{NotReplayable, ReplayBody};

/// The trailers of a gRPC answer, put in the response's extensions by
/// [`GrpcResponseLayer`] once the body ended (empty if it ended without
/// any). [`GrpcClassifier`](super::GrpcClassifier) reads `grpc-status` and
/// `grpc-retry-pushback-ms` from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrpcTrailers(HeaderMap);

impl GrpcTrailers {
    /// Trailers that were received.
    pub const fn new(trailers: HeaderMap) -> Self {
        Self(trailers)
    }

    /// The trailers.
    pub const fn headers(&self) -> &HeaderMap {
        &self.0
    }
}

/// Client side: reads each unary answer to its end, up to a limit, so that
/// the status in its trailers is known when the attempt is judged.
///
/// gRPC answers a call with HTTP 200 and puts its status in the trailers,
/// after the message; only a trailers-only answer (an error without a
/// message) has it in the headers. Put this layer innermost, next to the
/// channel, inside retry, breaker and attempt timeout: each attempt's
/// answer is then read whole before it is judged, and the message is handed
/// on from memory with its trailers.
///
/// - Trailers-only answers and non-200 statuses are passed on at once.
/// - Answers longer than the limit are passed on unread past it, and judged
///   by their headers only.
/// - Methods named by [`streaming_method`](Self::streaming_method)
///   (server-streaming and bidirectional calls, whose answer may last
///   forever) are passed on at once and judged by their headers only.
#[derive(Debug, Clone)]
pub struct GrpcResponseLayer {
    limit: usize,
    streaming: Arc<[Cow<'static, str>]>,
}

impl Default for GrpcResponseLayer {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
            streaming: Arc::from([]),
        }
    }
}

impl GrpcResponseLayer {
    /// The default limit: 4 MiB, gRPC's default largest message.
    pub const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;

    /// Reads answers of at most `limit` bytes; at least 1.
    pub fn new(limit: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            limit: check::at_least("grpc.response_limit", limit, 1)?,
            streaming: Arc::from([]),
        })
    }

    /// Passes the answers of the method at `path`
    /// (`/package.Service/Method`) on at once.
    pub fn streaming_method(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        let mut all: Vec<_> = self.streaming.iter().cloned().collect();
        all.push(path.into());
        self.streaming = all.into();
        self
    }

    /// The limit, in bytes.
    pub const fn limit(&self) -> usize {
        self.limit
    }
}

impl<S> Layer<S> for GrpcResponseLayer {
    type Service = GrpcResponse<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcResponse {
            inner,
            layer: self.clone(),
        }
    }
}

/// Reads unary answers to their end; made by [`GrpcResponseLayer`].
#[derive(Debug, Clone)]
pub struct GrpcResponse<S> {
    inner: S,
    layer: GrpcResponseLayer,
}

impl<S> GrpcResponse<S> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &GrpcResponseLayer) -> Self
    where
        GrpcResponseLayer: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S> GrpcResponse<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, B> Service<http::Request<ReqB>> for GrpcResponse<S>
where
    S: Service<http::Request<ReqB>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<ReplayBody<B>>;
    type Error = BoxError;
    type Future = GrpcResponseFuture<S::Future, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<ReqB>) -> Self::Future {
        let path = request.uri().path();
        let limit = if self.layer.streaming.iter().any(|m| m == path) {
            None
        } else {
            Some(self.layer.limit)
        };
        GrpcResponseFuture {
            inner: self.inner.call(request),
            limit,
            reading: None,
        }
    }
}

pin_project! {
    /// Response future of [`GrpcResponse`].
    #[derive(Debug)]
    pub struct GrpcResponseFuture<F, B> {
        #[pin]
        inner: F,
        limit: Option<usize>,
        reading: Option<Reading<B>>,
    }
}

#[derive(Debug)]
struct Reading<B> {
    parts: http::response::Parts,
    body: B,
    collected: BytesMut,
    trailers: Option<HeaderMap>,
}

impl<F, B, E> Future for GrpcResponseFuture<F, B>
where
    F: Future<Output = Result<http::Response<B>, E>>,
    E: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<http::Response<ReplayBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let limit = match (this.reading.is_some(), *this.limit) {
            (false, limit) => {
                let response = ready!(this.inner.poll(cx)).map_err(Into::into)?;
                let whole = response.status() != http::StatusCode::OK
                    || response.headers().contains_key(GRPC_STATUS);
                match limit {
                    Some(limit) if !whole => {
                        let (parts, body) = response.into_parts();
                        *this.reading = Some(Reading {
                            parts,
                            body,
                            collected: BytesMut::new(),
                            trailers: None,
                        });
                        limit
                    }
                    _ => {
                        return Poll::Ready(Ok(
                            response.map(|b| ReplayBody::once(b, NotReplayable::Streaming))
                        ));
                    }
                }
            }
            (true, limit) => limit.unwrap_or(usize::MAX),
        };
        let Some(mut r) = this.reading.take() else {
            return Poll::Ready(Err("polled after completion".into()));
        };
        loop {
            let frame = match Pin::new(&mut r.body).poll_frame(cx) {
                Poll::Pending => {
                    *this.reading = Some(r);
                    return Poll::Pending;
                }
                Poll::Ready(frame) => frame,
            };
            match frame {
                Some(Err(err)) => return Poll::Ready(Err(err.into())),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            r.collected.extend_from_slice(chunk);
                            data.advance(n);
                        }
                        if r.collected.len() > limit {
                            let prefix = r.collected.freeze();
                            let body = ReplayBody::partly_read(
                                Some(prefix),
                                r.body,
                                NotReplayable::TooLarge,
                            );
                            return Poll::Ready(Ok(http::Response::from_parts(r.parts, body)));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            match &mut r.trailers {
                                Some(all) => all.extend(trailers),
                                None => r.trailers = Some(trailers),
                            }
                        }
                    }
                },
                None => {
                    let mut parts = r.parts;
                    parts
                        .extensions
                        .insert(GrpcTrailers::new(r.trailers.clone().unwrap_or_default()));
                    let body = ReplayBody::with_trailers(r.collected.freeze(), r.trailers);
                    return Poll::Ready(Ok(http::Response::from_parts(parts, body)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use tower::{ServiceExt, service_fn};

    type Frames =
        StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, BoxError>>>>;

    fn answer(frames: Vec<Result<Frame<Bytes>, BoxError>>) -> http::Response<Frames> {
        http::Response::new(StreamBody::new(futures::stream::iter(frames)))
    }

    #[tokio::test]
    async fn reads_trailers_and_keeps_the_message() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "14".parse().unwrap());
        let frames = vec![
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Ok(Frame::trailers(trailers.clone())),
        ];
        let svc =
            GrpcResponseLayer::new(16)
                .unwrap()
                .layer(service_fn(move |_: http::Request<()>| {
                    let frames = frames.clone_frames();
                    async move { Ok::<_, BoxError>(answer(frames)) }
                }));
        let response = svc.oneshot(http::Request::new(())).await.unwrap();
        assert_eq!(
            response.extensions().get::<GrpcTrailers>(),
            Some(&GrpcTrailers::new(trailers.clone()))
        );
        let collected = response.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), "abc");
    }

    #[tokio::test]
    async fn trailers_only_and_non_200_answers_pass_at_once() {
        for (status, grpc_status) in [(200, Some("14")), (503, None)] {
            let svc = GrpcResponseLayer::default().layer(service_fn(move |_: http::Request<()>| {
                // A body that never ends: the layer must not read it.
                let mut response =
                    http::Response::new(StreamBody::new(futures::stream::pending::<
                        Result<Frame<Bytes>, BoxError>,
                    >()));
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                if let Some(code) = grpc_status {
                    response
                        .headers_mut()
                        .insert("grpc-status", code.parse().unwrap());
                }
                async move { Ok::<_, BoxError>(response) }
            }));
            let response = svc.oneshot(http::Request::new(())).await.unwrap();
            assert_eq!(response.status(), status);
            assert!(response.extensions().get::<GrpcTrailers>().is_none());
        }
    }

    #[tokio::test]
    async fn long_answers_pass_unread() {
        let svc =
            GrpcResponseLayer::new(2)
                .unwrap()
                .layer(service_fn(|_: http::Request<()>| async {
                    Ok::<_, BoxError>(answer(vec![
                        Ok(Frame::data(Bytes::from_static(b"abc"))),
                        Ok(Frame::data(Bytes::from_static(b"def"))),
                    ]))
                }));
        let response = svc.oneshot(http::Request::new(())).await.unwrap();
        assert!(response.extensions().get::<GrpcTrailers>().is_none());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "abcdef");
    }

    trait CloneFrames {
        fn clone_frames(&self) -> Vec<Result<Frame<Bytes>, BoxError>>;
    }

    impl CloneFrames for Vec<Result<Frame<Bytes>, BoxError>> {
        fn clone_frames(&self) -> Vec<Result<Frame<Bytes>, BoxError>> {
            self.iter()
                .map(|f| match f {
                    Ok(frame) => Ok(match frame.data_ref() {
                        Some(d) => Frame::data(d.clone()),
                        None => Frame::trailers(frame.trailers_ref().cloned().unwrap_or_default()),
                    }),
                    Err(e) => Err(e.to_string().into()),
                })
                .collect()
        }
    }
}
