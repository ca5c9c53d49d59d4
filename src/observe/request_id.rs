//! Where the request id of a watched call comes from: generated, read
//! from a header, or made by a closure.

use crate::event::context::RequestId;

/// Where the request id of a call comes from.
///
/// [`GenerateRequestId`] (the default) generates one when an event or span
/// first needs it; with the `http` feature, [`RequestIdHeader`] reads it
/// from a header of `http::Request` or `reqwest::Request`, and can write a
/// generated one into requests that lack it, so the callee sees the same
/// id. Closures `Fn(&Req) -> Option<RequestId>` work too.
pub trait MakeRequestId<Req> {
    /// Prepares every request, watched or not, before it is sent: for
    /// example writes a generated id into it. Does nothing by default.
    #[inline]
    fn prepare(&self, request: &mut Req) {
        let _ = request;
    }

    /// The id of `request`, or `None` to generate one when needed. Asked
    /// only for calls that are watched, after [`prepare`](Self::prepare).
    fn request_id(&self, request: &Req) -> Option<RequestId>;
}

/// Generates request ids when they are first needed.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerateRequestId;

impl<Req> MakeRequestId<Req> for GenerateRequestId {
    #[inline]
    fn request_id(&self, _request: &Req) -> Option<RequestId> {
        None
    }
}

impl<F, Req> MakeRequestId<Req> for F
where
    F: Fn(&Req) -> Option<RequestId>,
{
    fn request_id(&self, request: &Req) -> Option<RequestId> {
        self(request)
    }
}

/// Reads the request id from a header (`x-request-id` by default), and
/// optionally writes a generated one into requests without it.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone)]
pub struct RequestIdHeader {
    name: http::HeaderName,
    propagate: bool,
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl RequestIdHeader {
    /// Reads `x-request-id`.
    pub fn new() -> Self {
        Self {
            name: http::HeaderName::from_static("x-request-id"),
            propagate: false,
        }
    }

    /// Reads `name` instead.
    pub fn name(mut self, name: http::HeaderName) -> Self {
        self.name = name;
        self
    }

    /// Writes a generated id into requests that lack one, so that the
    /// callee logs the same id.
    pub fn propagate(mut self) -> Self {
        self.propagate = true;
        self
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Default for RequestIdHeader {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl RequestIdHeader {
    /// The header's value, if it is a usable id: not empty, at most 256
    /// bytes, visible ASCII only (no space, no tab).
    fn read<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        let value = headers.get(&self.name)?.as_bytes();
        let usable =
            (!value.is_empty() && value.len() <= 256 && value.iter().all(|b| b.is_ascii_graphic()))
                .then(|| std::str::from_utf8(value).ok())
                .flatten();
        if usable.is_none() {
            tracing::debug!(
                target: "steadfast::observe",
                header = %self.name,
                "request id header ignored: empty, longer than 256 bytes or not all visible ASCII"
            );
        }
        usable
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<R: crate::http::RequestParts> MakeRequestId<R> for RequestIdHeader {
    /// Writes a generated id into a request without a usable one, when
    /// told to propagate.
    fn prepare(&self, request: &mut R) {
        if !self.propagate || self.read(request.headers()).is_some() {
            return;
        }
        let id = RequestId::generate().to_string();
        if let Ok(value) = http::HeaderValue::from_str(&id) {
            request.headers_mut().insert(self.name.clone(), value);
        }
    }

    fn request_id(&self, request: &R) -> Option<RequestId> {
        self.read(request.headers()).map(RequestId::new)
    }
}
