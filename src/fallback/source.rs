//! What a fallback answers with, and why it fires.

use std::fmt;
use std::future::{Future, Pending, pending};
use std::marker::PhantomData;
use std::ops::BitOr;

use crate::classify::Verdict;
use crate::error::{
    BoxError, BulkheadFull, CircuitOpen, ClientThrottled, ConcurrencyLimited, DeadlineExceeded,
    RateLimited,
};
use crate::replay::Replay;

pub use crate::event::FallbackSource;

use super::alternate::AlternateCall;
use super::cache::Slot;

/// Why a fallback fired: the kind of failure or rejection of the primary
/// call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// A transient failure ([`Verdict::Transient`]).
    Transient,
    /// A failure ([`Verdict::Failure`]).
    Failure,
    /// An open circuit refused the call ([`CircuitOpen`]).
    CircuitOpen,
    /// A full bulkhead or an adaptive concurrency limit refused the call
    /// ([`BulkheadFull`], [`ConcurrencyLimited`]).
    BulkheadFull,
    /// A rate limiter or client-side throttling refused the call
    /// ([`RateLimited`], [`ClientThrottled`]).
    RateLimited,
    /// The total deadline passed ([`DeadlineExceeded`]).
    DeadlineExceeded,
    /// A classifier judged the outcome [`Verdict::Rejected`] without one of
    /// the crate's rejection markers.
    OtherRejection,
    /// The call waited longer than its latency budget
    /// ([`serve_stale_after`](super::FallbackLayerBuilder::serve_stale_after)),
    /// and a cached answer was served. Fires whenever a budget is set,
    /// whatever the [`Trigger`]; the verdict reported with it is
    /// [`Verdict::Transient`], as for an attempt that timed out.
    LatencyBudget,
}

impl Reason {
    /// Why an outcome judged `verdict` failed, or `None` for an answer.
    pub fn of(verdict: Verdict, error: Option<&BoxError>) -> Option<Reason> {
        match verdict {
            Verdict::Transient { .. } => Some(Reason::Transient),
            Verdict::Failure => Some(Reason::Failure),
            Verdict::Rejected { .. } => Some(error.map_or(Reason::OtherRejection, rejection)),
            _ => None,
        }
    }

    /// A stable lowercase name, as used in events.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Reason::Transient => "transient",
            Reason::Failure => "failure",
            Reason::CircuitOpen => "circuit_open",
            Reason::BulkheadFull => "bulkhead_full",
            Reason::RateLimited => "rate_limited",
            Reason::DeadlineExceeded => "deadline_exceeded",
            Reason::OtherRejection => "rejected",
            Reason::LatencyBudget => "latency_budget",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Reason::Transient => 1,
            Reason::Failure => 1 << 1,
            Reason::CircuitOpen => 1 << 2,
            Reason::BulkheadFull => 1 << 3,
            Reason::RateLimited => 1 << 4,
            Reason::DeadlineExceeded => 1 << 5,
            Reason::OtherRejection => 1 << 6,
            Reason::LatencyBudget => 1 << 7,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

fn rejection(err: &BoxError) -> Reason {
    if err.is::<CircuitOpen>() {
        Reason::CircuitOpen
    } else if err.is::<BulkheadFull>() || err.is::<ConcurrencyLimited>() {
        Reason::BulkheadFull
    } else if err.is::<RateLimited>() || err.is::<ClientThrottled>() {
        Reason::RateLimited
    } else if err.is::<DeadlineExceeded>() {
        Reason::DeadlineExceeded
    } else {
        Reason::OtherRejection
    }
}

/// The set of [`Reason`]s a fallback fires on; combine with `|`.
///
/// The default, [`Trigger::ALL`], fires on every failure verdict and every
/// rejection; functional errors (a 404) and successes never fire it.
///
/// ```
/// use steadfast::fallback::{Reason, Trigger};
///
/// let on = Trigger::CIRCUIT_OPEN | Trigger::BULKHEAD_FULL;
/// assert!(on.contains(Reason::CircuitOpen));
/// assert!(!on.contains(Reason::Transient));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Trigger(u8);

impl Trigger {
    /// Transient failures: reset connections, timeouts, 503s.
    pub const TRANSIENT: Trigger = Trigger(Reason::Transient.bit());
    /// Failures that won't pass by retrying.
    pub const FAILURE: Trigger = Trigger(Reason::Failure.bit());
    /// Calls refused by an open circuit.
    pub const CIRCUIT_OPEN: Trigger = Trigger(Reason::CircuitOpen.bit());
    /// Calls refused by a full bulkhead.
    pub const BULKHEAD_FULL: Trigger = Trigger(Reason::BulkheadFull.bit());
    /// Calls refused by a rate limiter.
    pub const RATE_LIMITED: Trigger = Trigger(Reason::RateLimited.bit());
    /// Calls whose total deadline passed.
    pub const DEADLINE_EXCEEDED: Trigger = Trigger(Reason::DeadlineExceeded.bit());
    /// Outcomes a classifier judged rejected without a known marker.
    pub const OTHER_REJECTION: Trigger = Trigger(Reason::OtherRejection.bit());
    /// Both failure verdicts.
    pub const FAILURES: Trigger = Trigger(Self::TRANSIENT.0 | Self::FAILURE.0);
    /// Every rejection.
    pub const REJECTIONS: Trigger = Trigger(
        Self::CIRCUIT_OPEN.0
            | Self::BULKHEAD_FULL.0
            | Self::RATE_LIMITED.0
            | Self::DEADLINE_EXCEEDED.0
            | Self::OTHER_REJECTION.0,
    );
    /// Every failure and every rejection: the default.
    pub const ALL: Trigger = Trigger(Self::FAILURES.0 | Self::REJECTIONS.0);
    /// Nothing; refused by `build`.
    pub const NONE: Trigger = Trigger(0);

    /// Whether the set fires on `reason`.
    #[inline]
    pub const fn contains(self, reason: Reason) -> bool {
        self.0 & reason.bit() != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::ALL
    }
}

impl BitOr for Trigger {
    type Output = Trigger;

    fn bitor(self, rhs: Trigger) -> Trigger {
        Trigger(self.0 | rhs.0)
    }
}

impl fmt::Debug for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const ALL: [Reason; 7] = [
            Reason::Transient,
            Reason::Failure,
            Reason::CircuitOpen,
            Reason::BulkheadFull,
            Reason::RateLimited,
            Reason::DeadlineExceeded,
            Reason::OtherRejection,
        ];
        f.debug_set()
            .entries(
                ALL.iter()
                    .filter(|r| self.contains(**r))
                    .map(Reason::as_str),
            )
            .finish()
    }
}

/// The failed primary outcome a computed fallback answers.
#[derive(Debug)]
pub struct Cause<'a, Res> {
    pub(crate) verdict: Verdict,
    pub(crate) reason: Reason,
    pub(crate) outcome: Result<&'a Res, &'a BoxError>,
}

impl<'a, Res> Cause<'a, Res> {
    /// The verdict on the primary outcome.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Why the fallback fired.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The primary's failed response (a 503), if it answered.
    pub fn response(&self) -> Option<&'a Res> {
        self.outcome.ok()
    }

    /// The primary's error, if it did not answer.
    pub fn error(&self) -> Option<&'a BoxError> {
        self.outcome.err()
    }
}

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

/// The first fallback source: another service called with the original
/// request, or none.
#[diagnostic::on_unimplemented(
    message = "the alternate `{Self}` does not answer `{Req}` with `{Res}`",
    label = "this alternate does not fit",
    note = "the alternate service must take the primary's requests and give its responses, and its requests must be copied: `Clone` requests, or `.replay(..)` (`.replay(HttpReplay::new())` for `reqwest::Request`)"
)]
pub trait AlternateSource<Req, Res> {
    /// The alternate call.
    type Future: Future<Output = Result<Res, BoxError>>;

    /// Whether an alternate service is configured.
    fn is_configured(&self) -> bool;

    /// A copy of `request` for the alternate, taken before the primary call;
    /// `None` skips the alternate.
    fn copy(&self, request: &Req) -> Option<Req>;

    /// Calls the alternate service with the copy.
    fn call(&self, request: Req) -> Self::Future;
}

/// No alternate service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoAlternate;

impl<Req, Res> AlternateSource<Req, Res> for NoAlternate {
    type Future = Pending<Result<Res, BoxError>>;

    #[inline]
    fn is_configured(&self) -> bool {
        false
    }

    #[inline]
    fn copy(&self, _request: &Req) -> Option<Req> {
        None
    }

    fn call(&self, _request: Req) -> Self::Future {
        pending()
    }
}

/// Another service (API, region, version) that answers the same requests,
/// with the [`Replay`] that copies each request for it.
#[derive(Debug, Clone)]
pub struct Alternate<T, P> {
    pub(crate) service: T,
    pub(crate) replay: P,
}

#[diagnostic::do_not_recommend]
impl<T, P, Req> AlternateSource<Req, T::Response> for Alternate<T, P>
where
    T: tower_service::Service<Req> + Clone,
    T::Error: Into<BoxError>,
    P: Replay<Req>,
{
    type Future = AlternateCall<T, Req>;

    #[inline]
    fn is_configured(&self) -> bool {
        true
    }

    #[inline]
    fn copy(&self, request: &Req) -> Option<Req> {
        self.replay.replay(request)
    }

    fn call(&self, request: Req) -> Self::Future {
        AlternateCall::new(self.service.clone(), request)
    }
}

/// The last fallback source: a static or computed answer, or none.
#[diagnostic::on_unimplemented(
    message = "the static or computed answer `{Self}` does not fit `{Res}` responses",
    label = "this answer does not fit",
    note = "for HTTP (`.http()`, `.reqwest()`), a static answer is an `http::Response<Bytes>`, and a computed answer returns one"
)]
pub trait LastResort<Req, Res, K: ResponseKind<Res>> {
    /// What the answer needs from the request, taken before the call.
    type Facts;

    /// Takes what the answer needs from `request`; `None` when there is no
    /// last resort.
    fn facts(&self, request: &Req) -> Option<Self::Facts>;

    /// The answer to a failed call, if this source has one.
    fn answer(&self, kind: &K, facts: Self::Facts, cause: &Cause<'_, Res>) -> Option<K::Response>;
}

/// No static or computed answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoLast;

impl<Req, Res, K: ResponseKind<Res>> LastResort<Req, Res, K> for NoLast {
    type Facts = ();

    #[inline]
    fn facts(&self, _request: &Req) -> Option<()> {
        None
    }

    fn answer(&self, _: &K, _: (), _: &Cause<'_, Res>) -> Option<K::Response> {
        None
    }
}

/// The same answer to every failed call.
#[derive(Debug, Clone)]
pub struct Static<V>(pub(crate) V);

#[diagnostic::do_not_recommend]
impl<Req, Res, K, V> LastResort<Req, Res, K> for Static<V>
where
    K: ResponseKind<Res, Stored = V>,
{
    type Facts = ();

    #[inline]
    fn facts(&self, _request: &Req) -> Option<()> {
        Some(())
    }

    fn answer(&self, kind: &K, _: (), _: &Cause<'_, Res>) -> Option<K::Response> {
        Some(kind.rebuild(&self.0))
    }
}

/// An answer computed from what was kept of the request and the failure.
pub struct Computed<G, H, T> {
    pub(crate) facts: G,
    pub(crate) make: H,
    pub(crate) _kept: PhantomData<fn() -> T>,
}

impl<G: Clone, H: Clone, T> Clone for Computed<G, H, T> {
    fn clone(&self) -> Self {
        Self {
            facts: self.facts.clone(),
            make: self.make.clone(),
            _kept: PhantomData,
        }
    }
}

impl<G, H, T> fmt::Debug for Computed<G, H, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Computed").finish_non_exhaustive()
    }
}

#[diagnostic::do_not_recommend]
impl<Req, Res, K, G, H, T> LastResort<Req, Res, K> for Computed<G, H, T>
where
    K: ResponseKind<Res>,
    G: Fn(&Req) -> T,
    H: Fn(T, &Cause<'_, Res>) -> Option<K::Stored>,
{
    type Facts = T;

    #[inline]
    fn facts(&self, request: &Req) -> Option<T> {
        Some((self.facts)(request))
    }

    fn answer(&self, kind: &K, facts: T, cause: &Cause<'_, Res>) -> Option<K::Response> {
        (self.make)(facts, cause).map(|stored| kind.revive(stored))
    }
}
