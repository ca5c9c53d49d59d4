//! Replay: making the second copy of a request that a retry needs.

/// Makes a copy of a request to send again.
///
/// Retry (and hedging) must keep a copy of the request before sending it,
/// in case it has to be sent again. [`CloneReplay`], the default, clones
/// it; an HTTP body adaptor can buffer a body up to a limit instead. A
/// request that cannot be copied (`None`) is sent once and its failure is
/// returned as it is: never a panic.
///
/// Closures `Fn(&Req) -> Option<Req>` implement this trait.
pub trait Replay<Req> {
    /// A copy of `request` to send again, or `None` if it can't be made.
    fn replay(&self, request: &Req) -> Option<Req>;
}

/// Replays requests that are `Clone` by cloning them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneReplay;

impl<Req: Clone> Replay<Req> for CloneReplay {
    #[inline]
    fn replay(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// Never replays: every request is sent once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoReplay;

impl<Req> Replay<Req> for NoReplay {
    #[inline]
    fn replay(&self, _request: &Req) -> Option<Req> {
        None
    }
}

impl<F, Req> Replay<Req> for F
where
    F: Fn(&Req) -> Option<Req>,
{
    #[inline]
    fn replay(&self, request: &Req) -> Option<Req> {
        self(request)
    }
}
