//! Replay for unary calls: request bodies that are already complete are
//! kept, so that retry can send them again.

use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};
use http::{HeaderMap, Request};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{BoxError, ConfigError, check};
use crate::http::replay::BufferFuture;
use crate::http::{NotReplayable, ReplayBody};

/// Client side: keeps the request bodies of unary calls in memory so that
/// [`HttpReplay`](crate::http::HttpReplay) can copy them for retry:
/// `Request<B>` in, `Request<ReplayBody<B>>` out.
///
/// A unary call's body (one encoded message) is complete when the call is
/// made; the layer takes it at once, up to the limit, and never waits for
/// a body. A streaming request (client-streaming or bidirectional) is not
/// complete yet: it is sent once, as it is, and retry reports
/// `not_replayable` for it. So are bodies longer than the limit.
///
/// Put it outside retry, like
/// [`BufferRequestBodyLayer`](crate::http::BufferRequestBodyLayer), which
/// it replaces for gRPC: that layer leaves bodies of unknown length alone,
/// and every gRPC body is one.
#[derive(Debug, Clone, Copy)]
pub struct BufferGrpcRequestLayer {
    limit: usize,
}

impl BufferGrpcRequestLayer {
    /// The default limit: 4 MiB, gRPC's default largest message.
    pub const DEFAULT_LIMIT: usize = 4 * 1024 * 1024;

    /// Keeps bodies of at most `limit` bytes; at least 1.
    pub fn new(limit: usize) -> Result<Self, ConfigError> {
        Ok(Self {
            limit: check::at_least("grpc.request_limit", limit, 1)?,
        })
    }

    /// The limit, in bytes.
    pub const fn limit(&self) -> usize {
        self.limit
    }
}

impl Default for BufferGrpcRequestLayer {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
        }
    }
}

impl<S> Layer<S> for BufferGrpcRequestLayer {
    type Service = BufferGrpcRequest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferGrpcRequest {
            inner,
            limit: self.limit,
        }
    }
}

/// Keeps complete request bodies; made by [`BufferGrpcRequestLayer`].
#[derive(Debug, Clone)]
pub struct BufferGrpcRequest<S> {
    inner: S,
    limit: usize,
}

impl<S> BufferGrpcRequest<S> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &BufferGrpcRequestLayer) -> Self
    where
        BufferGrpcRequestLayer: tower_layer::Layer<S, Service = Self>,
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

impl<S, B> Service<Request<B>> for BufferGrpcRequest<S>
where
    S: Service<Request<ReplayBody<B>>>,
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
        match take_complete(body, self.limit) {
            Ok(body) => BufferFuture::calling(self.inner.call(Request::from_parts(parts, body))),
            Err(err) => BufferFuture::failed(err.into()),
        }
    }
}

/// Reads what `body` has ready now, up to `limit`: the whole body if it is
/// complete, else the body to be sent once, what was read first.
pub(crate) fn take_complete<B: Body + Unpin>(
    mut body: B,
    limit: usize,
) -> Result<ReplayBody<B>, B::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    let mut collected = BytesMut::new();
    let mut trailers: Option<HeaderMap> = None;
    let why = loop {
        match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Pending => break NotReplayable::Streaming,
            Poll::Ready(None) => {
                return Ok(ReplayBody::with_trailers(collected.freeze(), trailers));
            }
            Poll::Ready(Some(Err(err))) => return Err(err),
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        let n = chunk.len();
                        collected.extend_from_slice(chunk);
                        data.advance(n);
                    }
                    if collected.len() > limit {
                        break NotReplayable::TooLarge;
                    }
                }
                Err(frame) => {
                    if let Ok(more) = frame.into_trailers() {
                        match &mut trailers {
                            Some(all) => all.extend(more),
                            None => trailers = Some(more),
                        }
                    }
                }
            },
        }
    };
    // Trailers before the end of a request body don't occur in gRPC; a
    // body sent once keeps only its data.
    let prefix = (!collected.is_empty()).then(|| collected.freeze());
    Ok(ReplayBody::partly_read(prefix, body, why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn complete_bodies_are_kept_streams_sent_once() {
        let body = take_complete(Full::new(Bytes::from_static(b"msg")), 16).unwrap();
        assert!(body.is_replayable());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "msg");

        let long = take_complete(Full::new(Bytes::from_static(b"message")), 4).unwrap();
        assert_eq!(long.not_replayable(), Some(NotReplayable::TooLarge));
        assert_eq!(long.collect().await.unwrap().to_bytes(), "message");

        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        tx.send(Ok(Frame::data(Bytes::from_static(b"a"))))
            .await
            .unwrap();
        let stream = StreamBody::new(tokio_stream_from(rx));
        let open = take_complete(stream, 1024).unwrap();
        assert_eq!(open.not_replayable(), Some(NotReplayable::Streaming));
        tx.send(Ok(Frame::data(Bytes::from_static(b"b"))))
            .await
            .unwrap();
        drop(tx);
        assert_eq!(open.collect().await.unwrap().to_bytes(), "ab");
    }

    fn tokio_stream_from<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures::Stream<Item = T> + Unpin {
        Box::pin(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }
}
