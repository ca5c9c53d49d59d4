//! The outer level of a policy: observe and total deadline in one.

// The projection of `Outer` is generated without docs.
#![allow(missing_docs)]

use super::*;

pin_project! {
    /// The outer layers of a [`Policy`]: observe and total deadline,
    /// both, one or neither. Errors become [`BoxError`].
    #[project = OuterProj]
    #[derive(Debug, Clone)]
    pub enum Outer<A, B, C, D> {
        /// Observe over the total deadline.
        Both {
            #[pin]
            service: A,
        },
        /// The total deadline only.
        Deadline {
            #[pin]
            service: B,
        },
        /// Observe only.
        Observed {
            #[pin]
            service: C,
        },
        /// Neither.
        Neither {
            #[pin]
            service: D,
        },
    }
}

impl<A, B, C, D, Req> Service<Req> for Outer<A, B, C, D>
where
    A: Service<Req>,
    A::Error: Into<BoxError>,
    B: Service<Req, Response = A::Response>,
    B::Error: Into<BoxError>,
    C: Service<Req, Response = A::Response>,
    C::Error: Into<BoxError>,
    D: Service<Req, Response = A::Response>,
    D::Error: Into<BoxError>,
{
    type Response = A::Response;
    type Error = BoxError;
    type Future = Outer<A::Future, B::Future, C::Future, D::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Outer::Both { service } => service.poll_ready(cx).map_err(Into::into),
            Outer::Deadline { service } => service.poll_ready(cx).map_err(Into::into),
            Outer::Observed { service } => service.poll_ready(cx).map_err(Into::into),
            Outer::Neither { service } => service.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Outer::Both { service } => Outer::Both {
                service: service.call(request),
            },
            Outer::Deadline { service } => Outer::Deadline {
                service: service.call(request),
            },
            Outer::Observed { service } => Outer::Observed {
                service: service.call(request),
            },
            Outer::Neither { service } => Outer::Neither {
                service: service.call(request),
            },
        }
    }
}

impl<A, B, C, D, T, EA, EB, EC, ED> Future for Outer<A, B, C, D>
where
    A: Future<Output = Result<T, EA>>,
    B: Future<Output = Result<T, EB>>,
    C: Future<Output = Result<T, EC>>,
    D: Future<Output = Result<T, ED>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
    EC: Into<BoxError>,
    ED: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            OuterProj::Both { service } => service.poll(cx).map_err(Into::into),
            OuterProj::Deadline { service } => service.poll(cx).map_err(Into::into),
            OuterProj::Observed { service } => service.poll(cx).map_err(Into::into),
            OuterProj::Neither { service } => service.poll(cx).map_err(Into::into),
        }
    }
}
