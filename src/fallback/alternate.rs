//! The call of an alternate service: readiness, then the call.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::BoxError;

/// The error of a fallback future polled after it completed.
pub(super) const DONE: &str = "fallback future polled after it completed";

pin_project! {
    #[project = AltProj]
    enum AltState<T, Req, F> {
        Ready { service: T, request: Option<Req> },
        Called { #[pin] future: F },
    }
}

pin_project! {
    /// The call of an alternate service: readiness, then the call.
    pub struct AlternateCall<T, Req>
    where
        T: Service<Req>,
    {
        #[pin]
        state: AltState<T, Req, T::Future>,
    }
}

impl<T: Service<Req>, Req> AlternateCall<T, Req> {
    pub(crate) fn new(service: T, request: Req) -> Self {
        Self {
            state: AltState::Ready {
                service,
                request: Some(request),
            },
        }
    }
}

impl<T, Req> Future for AlternateCall<T, Req>
where
    T: Service<Req>,
    T::Error: Into<BoxError>,
{
    type Output = Result<T::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                AltProj::Ready { service, request } => {
                    if let Err(err) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Err(err.into()));
                    }
                    let Some(request) = request.take() else {
                        return Poll::Ready(Err(DONE.into()));
                    };
                    let future = service.call(request);
                    this.state.set(AltState::Called { future });
                }
                AltProj::Called { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}

impl<T: Service<Req>, Req> fmt::Debug for AlternateCall<T, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let called = matches!(self.state, AltState::Called { .. });
        f.debug_struct("AlternateCall")
            .field("called", &called)
            .finish_non_exhaustive()
    }
}
