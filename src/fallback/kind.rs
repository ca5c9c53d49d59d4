//! How the responses of a service are passed on, marked, recorded and
//! rebuilt.

use super::cache::Slot;
use super::source::FallbackSource;

/// How the responses of a service are passed on, marked, recorded into a
/// [`FallbackCache`](super::FallbackCache) and rebuilt from it.
///
/// [`Plain`] works for any `Clone` response; [`Http`](super::Http)
/// (feature `http`) for `http::Response<B>` with a streaming body.
#[diagnostic::on_unimplemented(
    message = "this fallback can't pass on `{Res}` responses as `{Self}`",
    label = "`{Self}` does not handle `{Res}`",
    note = "`Plain` needs `Clone` responses; for `http::Response<B>` or `reqwest::Response` call `.http()` or `.reqwest()` on the fallback's builder"
)]
pub trait ResponseKind<Res> {
    /// What the fallback service returns.
    type Response;
    /// A response kept for later: in the cache, or as a static answer.
    type Stored: Send + Sync + 'static;

    /// The primary's response, passed on untouched.
    fn pass(&self, response: Res) -> Self::Response;

    /// The primary's successful response, passed on and recorded into
    /// `slot` (now, or once its body has been read).
    fn record(&self, response: Res, slot: Slot) -> Self::Response;

    /// A response rebuilt from a stored one.
    fn rebuild(&self, stored: &Self::Stored) -> Self::Response;

    /// A response made from a stored one, by value.
    fn revive(&self, stored: Self::Stored) -> Self::Response;

    /// Marks a fallback answer with its source.
    fn mark(&self, response: &mut Self::Response, source: &FallbackSource);
}

/// Marks a non-HTTP fallback answer with its source.
///
/// Closures `Fn(&mut Res, &FallbackSource)` implement this trait.
#[diagnostic::on_unimplemented(
    message = "`{Self}` can't mark `{Res}` answers with their source",
    label = "not a `Fn(&mut {Res}, &FallbackSource)`",
    note = "a mark is a closure `Fn(&mut Res, &FallbackSource)`; HTTP answers are marked in their extensions by `.http()` or `.reqwest()` instead"
)]
pub trait Mark<Res> {
    /// Marks `response`, a fallback answer from `source`.
    fn mark(&self, response: &mut Res, source: &FallbackSource);
}

impl<F, Res> Mark<Res> for F
where
    F: Fn(&mut Res, &FallbackSource),
{
    #[inline]
    fn mark(&self, response: &mut Res, source: &FallbackSource) {
        self(response, source);
    }
}

/// Leaves fallback answers unmarked; events still name their source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoMark;

impl<Res> Mark<Res> for NoMark {
    #[inline]
    fn mark(&self, _response: &mut Res, _source: &FallbackSource) {}
}

/// Responses of any `Clone` type, stored by cloning, marked by a [`Mark`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain<M = NoMark> {
    pub(crate) mark: M,
}

#[diagnostic::do_not_recommend]
impl<Res, M> ResponseKind<Res> for Plain<M>
where
    Res: Clone + Send + Sync + 'static,
    M: Mark<Res>,
{
    type Response = Res;
    type Stored = Res;

    #[inline]
    fn pass(&self, response: Res) -> Res {
        response
    }

    #[inline]
    fn record(&self, response: Res, slot: Slot) -> Res {
        slot.insert(response.clone());
        response
    }

    fn rebuild(&self, stored: &Res) -> Res {
        stored.clone()
    }

    fn revive(&self, stored: Res) -> Res {
        stored
    }

    fn mark(&self, response: &mut Res, source: &FallbackSource) {
        self.mark.mark(response, source);
    }
}
