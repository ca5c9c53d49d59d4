//! The outer level of a policy: observe and total deadline in one, over
//! the retry or over the level below it.

// The projection of `Outer` is generated without docs.
#![allow(missing_docs)]

use super::*;

pin_project! {
    /// The outer layers of a [`Policy`]: observe and total deadline,
    /// both, one or neither, over a retry or over the level below it
    /// when the policy does not retry. Errors become [`BoxError`].
    ///
    /// The policy's choices of outer layers and of retry are made here,
    /// once, in one enum: a call's future is wrapped in no other level of
    /// the policy's own, and the retry answers with its own future.
    #[project = OuterProj]
    #[derive(Debug, Clone)]
    pub enum Outer<A, B, C, D, E, F, G, H> {
        /// Observe over the total deadline, over retry.
        Both {
            #[pin]
            service: A,
        },
        /// The total deadline only, over retry.
        Deadline {
            #[pin]
            service: B,
        },
        /// Observe only, over retry.
        Observed {
            #[pin]
            service: C,
        },
        /// Neither, over retry.
        Neither {
            #[pin]
            service: D,
        },
        /// Observe over the total deadline; each call sent once.
        OnceBoth {
            #[pin]
            service: E,
        },
        /// The total deadline only; each call sent once.
        OnceDeadline {
            #[pin]
            service: F,
        },
        /// Observe only; each call sent once.
        OnceObserved {
            #[pin]
            service: G,
        },
        /// Neither; each call sent once.
        Once {
            #[pin]
            service: H,
        },
    }
}

/// `$body` for the service of each variant of `$outer`, bound to
/// `$service`.
macro_rules! each {
    ($outer:expr, $service:ident => $body:expr) => {
        match $outer {
            Outer::Both { service: $service } => $body,
            Outer::Deadline { service: $service } => $body,
            Outer::Observed { service: $service } => $body,
            Outer::Neither { service: $service } => $body,
            Outer::OnceBoth { service: $service } => $body,
            Outer::OnceDeadline { service: $service } => $body,
            Outer::OnceObserved { service: $service } => $body,
            Outer::Once { service: $service } => $body,
        }
    };
}

impl<A, B, C, D, E, F, G, H, Req, T> Service<Req> for Outer<A, B, C, D, E, F, G, H>
where
    A: Service<Req, Response = T>,
    A::Error: Into<BoxError>,
    B: Service<Req, Response = T>,
    B::Error: Into<BoxError>,
    C: Service<Req, Response = T>,
    C::Error: Into<BoxError>,
    D: Service<Req, Response = T>,
    D::Error: Into<BoxError>,
    E: Service<Req, Response = T>,
    E::Error: Into<BoxError>,
    F: Service<Req, Response = T>,
    F::Error: Into<BoxError>,
    G: Service<Req, Response = T>,
    G::Error: Into<BoxError>,
    H: Service<Req, Response = T>,
    H::Error: Into<BoxError>,
{
    type Response = T;
    type Error = BoxError;
    type Future = Outer<
        A::Future,
        B::Future,
        C::Future,
        D::Future,
        E::Future,
        F::Future,
        G::Future,
        H::Future,
    >;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        each!(self, service => service.poll_ready(cx).map_err(Into::into))
    }

    // Always inlined, as is the total deadline's call below it: out of
    // line, the 440-byte future came back through memory and was copied
    // twice more into the caller's state.
    #[inline(always)]
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
            Outer::OnceBoth { service } => Outer::OnceBoth {
                service: service.call(request),
            },
            Outer::OnceDeadline { service } => Outer::OnceDeadline {
                service: service.call(request),
            },
            Outer::OnceObserved { service } => Outer::OnceObserved {
                service: service.call(request),
            },
            Outer::Once { service } => Outer::Once {
                service: service.call(request),
            },
        }
    }
}

impl<A, B, C, D, E, F, G, H, T, EA, EB, EC, ED, EE, EF, EG, EH> Future
    for Outer<A, B, C, D, E, F, G, H>
where
    A: Future<Output = Result<T, EA>>,
    B: Future<Output = Result<T, EB>>,
    C: Future<Output = Result<T, EC>>,
    D: Future<Output = Result<T, ED>>,
    E: Future<Output = Result<T, EE>>,
    F: Future<Output = Result<T, EF>>,
    G: Future<Output = Result<T, EG>>,
    H: Future<Output = Result<T, EH>>,
    EA: Into<BoxError>,
    EB: Into<BoxError>,
    EC: Into<BoxError>,
    ED: Into<BoxError>,
    EE: Into<BoxError>,
    EF: Into<BoxError>,
    EG: Into<BoxError>,
    EH: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            OuterProj::Both { service } => service.poll(cx).map_err(Into::into),
            OuterProj::Deadline { service } => service.poll(cx).map_err(Into::into),
            OuterProj::Observed { service } => service.poll(cx).map_err(Into::into),
            OuterProj::Neither { service } => service.poll(cx).map_err(Into::into),
            OuterProj::OnceBoth { service } => service.poll(cx).map_err(Into::into),
            OuterProj::OnceDeadline { service } => service.poll(cx).map_err(Into::into),
            OuterProj::OnceObserved { service } => service.poll(cx).map_err(Into::into),
            OuterProj::Once { service } => service.poll(cx).map_err(Into::into),
        }
    }
}
