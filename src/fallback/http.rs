//! HTTP responses: the cache key, what may be stored, bodies recorded as
//! they stream, and the source of an answer in its extensions and header.

use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::cache::{CacheKey, KeyHasher, Slot};
#[cfg(feature = "cache")]
use super::cache::{FallbackCache, FallbackCacheBuilder};
use super::source::{FallbackSource, ResponseKind};

/// The headers that identify the caller (or the site), always in the key.
const IDENTITY: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    header::HOST,
];

/// Keys HTTP requests by method, URI, and a hash of what identifies the
/// caller: `Authorization`, `Proxy-Authorization`, `Cookie`, `Host`, and
/// the headers named with [`vary_on`](FallbackCacheBuilder::vary_on).
///
/// Only `GET` and `HEAD` requests are cached: serving a stored answer to a
/// `POST` would pretend a write happened.
#[derive(Debug, Clone, Default)]
pub struct HttpKey {
    vary: Vec<HeaderName>,
}

impl<B> CacheKey<Request<B>> for HttpKey {
    fn key(&self, request: &Request<B>, hasher: &mut KeyHasher) -> bool {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            return false;
        }
        method.hash(hasher);
        request.uri().hash(hasher);
        let headers = request.headers();
        for name in IDENTITY.iter().chain(&self.vary) {
            name.hash(hasher);
            let mut count = 0usize;
            for value in headers.get_all(name) {
                value.as_bytes().hash(hasher);
                count += 1;
            }
            count.hash(hasher);
        }
        true
    }
}

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl FallbackCache<HttpKey> {
    /// A builder for a cache of HTTP responses keyed by [`HttpKey`].
    ///
    /// Defaults: 10,000 entries, answers at most 5 minutes old, bodies up
    /// to 1 MiB, responses marked `Cache-Control: no-store` or `private`
    /// not stored.
    pub fn http() -> FallbackCacheBuilder<HttpKey> {
        FallbackCacheBuilder::with_key(HttpKey::default())
    }
}

#[cfg(feature = "cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache")))]
impl FallbackCacheBuilder<HttpKey> {
    /// Also keys entries by the values of header `name` (say,
    /// `Accept-Language`, or a tenant header), so that requests that differ
    /// in it never share an answer.
    pub fn vary_on(mut self, name: HeaderName) -> Self {
        self.key.vary.push(name);
        self
    }

    /// The largest body stored, in bytes (default 1 MiB, at least 1). A
    /// larger body is passed on untouched and not stored.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Whether responses marked `Cache-Control: private` are stored
    /// (default `false`). They are only ever served to a caller with the
    /// same key, credentials included.
    pub fn store_private(mut self, store: bool) -> Self {
        self.store_private = store;
        self
    }

    /// Whether responses marked `Cache-Control: no-store` are stored
    /// (default `false`).
    pub fn store_no_store(mut self, store: bool) -> Self {
        self.store_no_store = store;
        self
    }
}

/// Whether a response with `headers` may be stored, given the cache's
/// settings.
fn storable(headers: &HeaderMap, slot: &Slot) -> bool {
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        for directive in value.split(',') {
            let name = directive.split('=').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("no-store") && !slot.stores_no_store()
                || name.eq_ignore_ascii_case("private") && !slot.stores_private()
            {
                return false;
            }
        }
    }
    // `Vary: *` says no two requests are alike.
    !headers.get_all(header::VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii() == b"*")
    })
}

/// HTTP responses: `http::Response<B>` with `B: Body<Data = Bytes>`,
/// answered as `http::Response<FallbackBody<B>>`.
///
/// - A success is recorded into the cache as its body is read by the
///   caller: the body passes through untouched, a copy of up to
///   `max_body_bytes` is kept, and the response is stored once the body
///   ends. A body that turns out larger, that fails, or that has trailers
///   is not stored; nor is a body the caller drops before its end.
/// - Responses marked `Cache-Control: no-store` or `private`, or
///   `Vary: *`, are not stored unless the cache was told otherwise.
/// - A fallback answer carries its [`FallbackSource`] in its extensions,
///   and in a header if one was named with
///   [`source_header`](super::FallbackLayerBuilder::source_header).
/// - Static and computed answers are `http::Response<Bytes>`.
#[derive(Debug, Clone, Default)]
pub struct Http {
    pub(crate) header: Option<HeaderName>,
}

impl<B> ResponseKind<Response<B>> for Http
where
    B: Body<Data = Bytes>,
{
    type Response = Response<FallbackBody<B>>;
    type Stored = Response<Bytes>;

    #[inline]
    fn pass(&self, response: Response<B>) -> Self::Response {
        response.map(FallbackBody::new)
    }

    fn record(&self, response: Response<B>, slot: Slot) -> Self::Response {
        let cap = slot.max_body_bytes();
        let too_big =
            usize::try_from(response.body().size_hint().lower()).map_or(true, |n| n > cap);
        if too_big || !storable(response.headers(), &slot) {
            return self.pass(response);
        }
        let (parts, body) = response.into_parts();
        let head = Head {
            status: parts.status,
            version: parts.version,
            headers: parts.headers.clone(),
        };
        let body = if body.is_end_stream() {
            slot.insert(head.into_response(Bytes::new()));
            FallbackBody::new(body)
        } else {
            FallbackBody {
                kind: Kind::Live {
                    body,
                    recorder: Some(Box::new(Recorder {
                        slot,
                        head,
                        buf: Vec::new(),
                        cap,
                    })),
                },
            }
        };
        Response::from_parts(parts, body)
    }

    fn rebuild(&self, stored: &Response<Bytes>) -> Self::Response {
        let mut response = Response::new(FallbackBody::from_bytes(stored.body().clone()));
        *response.status_mut() = stored.status();
        *response.version_mut() = stored.version();
        *response.headers_mut() = stored.headers().clone();
        response
    }

    fn revive(&self, stored: Response<Bytes>) -> Self::Response {
        stored.map(FallbackBody::from_bytes)
    }

    fn mark(&self, response: &mut Self::Response, source: &FallbackSource) {
        response.extensions_mut().insert(*source);
        if let Some(name) = &self.header {
            let value = HeaderValue::from_static(source.as_str());
            response.headers_mut().insert(name.clone(), value);
        }
    }
}

/// The head of a response being recorded.
struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
}

impl Head {
    fn into_response(self, body: Bytes) -> Response<Bytes> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        response
    }
}

/// Keeps a copy of a body as it streams, and stores the response at its
/// end.
struct Recorder {
    slot: Slot,
    head: Head,
    buf: Vec<u8>,
    cap: usize,
}

impl Recorder {
    /// Keeps a copy of `frame`; `false` once the body can't be stored.
    fn keep(&mut self, frame: &Frame<Bytes>) -> bool {
        let Some(data) = frame.data_ref() else {
            return false; // trailers: not stored
        };
        if self.buf.len().saturating_add(data.len()) > self.cap {
            return false;
        }
        self.buf.extend_from_slice(data);
        true
    }

    fn finish(self) {
        let response = self.head.into_response(Bytes::from(self.buf));
        self.slot.insert(response);
    }
}

pin_project! {
    /// The body of an HTTP response through a fallback layer: the primary's
    /// or the alternate's body, passed through, or stored bytes.
    pub struct FallbackBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Live { #[pin] body: B, recorder: Option<Box<Recorder>> },
        Stored { data: Option<Bytes> },
    }
}

impl<B> FallbackBody<B> {
    /// `body`, passed through.
    pub fn new(body: B) -> Self {
        Self {
            kind: Kind::Live {
                body,
                recorder: None,
            },
        }
    }

    /// A body of `data`, as stored answers have.
    pub fn from_bytes(data: Bytes) -> Self {
        Self {
            kind: Kind::Stored {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    /// Whether the body is stored bytes rather than a live body.
    pub fn is_stored(&self) -> bool {
        matches!(self.kind, Kind::Stored { .. })
    }
}

impl<B: Body<Data = Bytes>> Body for FallbackBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Stored { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Live { mut body, recorder } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                if recorder.is_some() {
                    let end = body.is_end_stream();
                    record_frame::<B>(recorder, frame.as_ref(), end);
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Live { body, .. } => body.is_end_stream(),
            Kind::Stored { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Live { body, .. } => body.size_hint(),
            Kind::Stored { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Copies a frame into the recorder; stores the response at the body's
/// end, drops the recording if it can't be stored.
#[inline(never)]
fn record_frame<B: Body<Data = Bytes>>(
    recorder: &mut Option<Box<Recorder>>,
    frame: Option<&Result<Frame<Bytes>, B::Error>>,
    end: bool,
) {
    let done = match frame {
        None => true,
        Some(Err(_)) => {
            *recorder = None;
            return;
        }
        Some(Ok(frame)) => {
            if !recorder.as_mut().is_some_and(|r| r.keep(frame)) {
                *recorder = None;
                return;
            }
            end
        }
    };
    if done {
        if let Some(recorder) = recorder.take() {
            recorder.finish();
        }
    }
}

impl<B> fmt::Debug for FallbackBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, recording) = match &self.kind {
            Kind::Live { recorder, .. } => ("live", recorder.is_some()),
            Kind::Stored { .. } => ("stored", false),
        };
        f.debug_struct("FallbackBody")
            .field("kind", &kind)
            .field("recording", &recording)
            .finish()
    }
}
