//! Replayable request bodies: buffer a body up to a limit so that retry
//! and hedging can send it again.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// Why a request body cannot be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotReplayable {
    /// The body is a stream of unknown length: it was not buffered.
    Streaming,
    /// The body is longer than the buffering limit.
    TooLarge,
}

impl NotReplayable {
    /// A stable lowercase name, as events carry it in their `reason` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            NotReplayable::Streaming => "body_streaming",
            NotReplayable::TooLarge => "body_too_large",
        }
    }
}

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A request body that is either buffered, and can be sent any number
/// of times, or the original body, sent once.
///
/// Made by [`buffer_body`] or [`BufferRequestBodyLayer`](super::BufferRequestBodyLayer);
/// [`HttpReplay`](super::HttpReplay) copies requests whose body is
/// buffered.
// The docs are here, outside `pin_project!`, where rustdoc checks their
// links; the macro's struct is documented by this re-export.
pub use self::replay_body::ReplayBody;

#[allow(missing_docs)]
mod replay_body {
    use super::Kind;
    use pin_project_lite::pin_project;

    pin_project! {
        pub struct ReplayBody<B> {
            #[pin]
            pub(super) kind: Kind<B>,
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Buffered {
            data: Bytes,
            trailers: Option<HeaderMap>,
            // 0: data next, 1: trailers next, 2: done.
            step: u8,
        },
        Once {
            // What was read while trying to buffer.
            prefix: Option<Bytes>,
            #[pin]
            body: B,
            why: NotReplayable,
        },
    }
}

impl<B> ReplayBody<B> {
    /// A buffered body holding `data`.
    pub fn buffered(data: impl Into<Bytes>) -> Self {
        Self::with_trailers(data.into(), None)
    }

    pub(crate) fn with_trailers(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Buffered {
                data,
                trailers,
                step: 0,
            },
        }
    }

    /// `body` as it is, to be sent once.
    pub fn once(body: B, why: NotReplayable) -> Self {
        Self::partly_read(None, body, why)
    }

    pub(crate) fn partly_read(prefix: Option<Bytes>, body: B, why: NotReplayable) -> Self {
        Self {
            kind: Kind::Once { prefix, body, why },
        }
    }

    /// Whether the body can be sent again.
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Buffered { .. })
    }

    /// Why the body cannot be sent again, if it can't.
    pub fn not_replayable(&self) -> Option<NotReplayable> {
        match &self.kind {
            Kind::Buffered { .. } => None,
            Kind::Once { why, .. } => Some(*why),
        }
    }

    /// A fresh copy of a buffered body (from its start, whatever was sent
    /// of this one), or `None`.
    pub fn try_clone(&self) -> Option<Self> {
        match &self.kind {
            Kind::Buffered { data, trailers, .. } => {
                Some(Self::with_trailers(data.clone(), trailers.clone()))
            }
            Kind::Once { .. } => None,
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Buffered { data, .. } => f
                .debug_struct("ReplayBody")
                .field("buffered", &data.len())
                .finish(),
            Kind::Once { why, .. } => f.debug_struct("ReplayBody").field("once", why).finish(),
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Buffered {
                data,
                trailers,
                step,
            } => {
                if *step == 0 {
                    *step = 1;
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
                    }
                }
                if *step == 1 {
                    *step = 2;
                    if let Some(trailers) = trailers {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
                    }
                }
                Poll::Ready(None)
            }
            KindProj::Once { prefix, body, .. } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                let frame = ready!(body.poll_frame(cx));
                Poll::Ready(
                    frame.map(|r| r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))),
                )
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered {
                data,
                trailers,
                step,
            } => match step {
                0 => data.is_empty() && trailers.is_none(),
                1 => trailers.is_none(),
                _ => true,
            },
            Kind::Once { prefix, body, .. } => prefix.is_none() && body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, step, .. } => {
                SizeHint::with_exact(if *step == 0 { data.len() as u64 } else { 0 })
            }
            Kind::Once { prefix, body, .. } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower().saturating_add(extra));
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint
            }
        }
    }
}

/// Reads a body into memory up to a limit; made by [`buffer_body`].
pub struct Buffering<B> {
    body: Option<B>,
    collected: BytesMut,
    trailers: Option<HeaderMap>,
    limit: usize,
}

impl<B> fmt::Debug for Buffering<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffering")
            .field("collected", &self.collected.len())
            .field("limit", &self.limit)
            .finish()
    }
}

/// The outcome of buffering: a [`ReplayBody`] or the body's own error.
pub type Buffered<B> = Result<ReplayBody<B>, <B as Body>::Error>;

/// Reads `body` into memory if it is at most `limit` bytes long.
///
/// A body whose length is unknown (a stream) or known to be longer than
/// `limit` is not read: it is kept as it is, to be sent once. A body that
/// turns out longer than its announced length while being read is sent
/// once, what was read included.
pub fn buffer_body<B: Body + Unpin>(body: B, limit: usize) -> Buffering<B> {
    Buffering {
        body: Some(body),
        collected: BytesMut::new(),
        trailers: None,
        limit,
    }
}

impl<B: Body + Unpin> Buffering<B> {
    /// Tries to finish at once, for a body already in memory.
    pub(crate) fn try_now(&mut self) -> Poll<Buffered<B>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(self).poll(&mut cx)
    }
}

impl<B: Body + Unpin> Future for Buffering<B> {
    type Output = Buffered<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            // Polled after completion: nothing left to give.
            return Poll::Ready(Ok(ReplayBody::buffered(Bytes::new())));
        };
        if this.collected.is_empty() && this.trailers.is_none() {
            let why = match body.size_hint().upper() {
                None => Some(NotReplayable::Streaming),
                Some(upper) if upper > this.limit as u64 => Some(NotReplayable::TooLarge),
                Some(_) => None,
            };
            if let Some(why) = why {
                if let Some(body) = this.body.take() {
                    return Poll::Ready(Ok(ReplayBody::once(body, why)));
                }
            }
        }
        while let Some(body) = this.body.as_mut() {
            match ready!(Pin::new(body).poll_frame(cx)) {
                None => {
                    this.body = None;
                    let data = std::mem::take(&mut this.collected).freeze();
                    return Poll::Ready(Ok(ReplayBody::with_trailers(data, this.trailers.take())));
                }
                Some(Err(err)) => {
                    this.body = None;
                    return Poll::Ready(Err(err));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(mut data) => {
                        let over = this.collected.len() + data.remaining() > this.limit;
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            let n = chunk.len();
                            this.collected.extend_from_slice(chunk);
                            data.advance(n);
                        }
                        if over {
                            let prefix = std::mem::take(&mut this.collected).freeze();
                            if let Some(body) = this.body.take() {
                                return Poll::Ready(Ok(ReplayBody::partly_read(
                                    Some(prefix),
                                    body,
                                    NotReplayable::TooLarge,
                                )));
                            }
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            match &mut this.trailers {
                                Some(all) => all.extend(trailers),
                                None => this.trailers = Some(trailers),
                            }
                        }
                    }
                },
            }
        }
        Poll::Ready(Ok(ReplayBody::buffered(Bytes::new())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn buffers_small_bodies_and_keeps_streams() {
        let body = buffer_body(Full::new(Bytes::from_static(b"hello")), 16)
            .await
            .unwrap();
        assert!(body.is_replayable());
        let copy = body.try_clone().unwrap();
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "hello");

        let big = buffer_body(Full::new(Bytes::from_static(b"hello")), 4)
            .await
            .unwrap();
        assert_eq!(big.not_replayable(), Some(NotReplayable::TooLarge));
        assert_eq!(big.collect().await.unwrap().to_bytes(), "hello");

        let chunks = futures::stream::iter([
            Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ]);
        let stream = buffer_body(StreamBody::new(chunks), 1024).await.unwrap();
        assert_eq!(stream.not_replayable(), Some(NotReplayable::Streaming));
        assert!(stream.try_clone().is_none());
        assert_eq!(stream.collect().await.unwrap().to_bytes(), "ab");
    }
}
