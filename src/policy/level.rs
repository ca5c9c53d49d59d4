//! One optional level of a policy: the layer's service, or the level
//! below called directly.

// The projection of `Level` is generated without docs.
#![allow(missing_docs)]

use super::*;

pin_project! {
    /// One optional level of a [`Policy`]: the layer's service over the
    /// level below, or, when the policy has no such layer, the level
    /// below itself, called directly. No layer holds a switch, a
    /// sentinel or a stand-in for an absent level: the policy decides,
    /// once, when it layers the service. Errors become [`BoxError`].
    ///
    /// A breaker, bulkhead or attempt timeout level answers with its
    /// layer's own future whether the layer is there or not (a call the
    /// layer does not guard is one of that future's states), so the
    /// standard stack pays no second wrapper per call; the adaptive level
    /// answers with a `Level` of both futures. Whether the policy retries
    /// is chosen in its outer level ([`Outer`]), so the retry's future is
    /// wrapped in no `Level`.
    #[project = LevelProj]
    #[derive(Debug)]
    pub enum Level<On, Off> {
        /// The layer's service.
        On {
            #[pin]
            service: On,
        },
        /// No layer at this level: the service below.
        Off {
            #[pin]
            service: Off,
        },
    }
}

// Always inlined: a retry clones the levels below it on every call, and a
// derived clone of the breaker's level was left out of line, its result
// written to memory and copied into the retry's future.
impl<On: Clone, Off: Clone> Clone for Level<On, Off> {
    #[inline(always)]
    fn clone(&self) -> Self {
        match self {
            Level::On { service } => Level::On {
                service: service.clone(),
            },
            Level::Off { service } => Level::Off {
                service: service.clone(),
            },
        }
    }
}

impl<On, Off> Level<On, Off> {
    /// `layer` over `service` if there is one, else `service` itself.
    pub(crate) fn new<L>(layer: Option<&L>, service: Off) -> Self
    where
        L: Layer<Off, Service = On>,
    {
        match layer {
            Some(layer) => Level::On {
                service: layer.layer(service),
            },
            None => Level::Off { service },
        }
    }

    /// The layer's service, if the level has its layer.
    pub fn layered(&self) -> Option<&On> {
        match self {
            Level::On { service } => Some(service),
            Level::Off { .. } => None,
        }
    }
}

/// A layer a [`Policy`] has or not, for a level whose type is a
/// parameter of the policy (its breaker's): layers `L` over the service
/// when there is one, else leaves the service as it is, in a [`Level`]
/// either way.
#[derive(Debug, Clone)]
pub struct Optional<L>(Option<L>);

impl<L> Optional<L> {
    pub(crate) fn new(layer: Option<L>) -> Self {
        Self(layer)
    }

    /// The layer, if there is one.
    pub fn get(&self) -> Option<&L> {
        self.0.as_ref()
    }
}

impl<S, L: Layer<S>> Layer<S> for Optional<L> {
    type Service = Level<L::Service, S>;

    fn layer(&self, service: S) -> Self::Service {
        Level::new(self.0.as_ref(), service)
    }
}

// A level whose layer's future can carry a call the layer does not
// guard (a breaker's untracked call, a bulkhead's call without a
// permit, an attempt with no bound) answers with that future either way: no second wrapper
// around every call of the standard stack. The others answer with a
// `Level` of both futures.

impl<S, C, Req> Service<Req> for Level<CircuitBreaker<S, C>, S>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    C: crate::classify::Classify<Req, S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = <CircuitBreaker<S, C> as Service<Req>>::Future;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Level::On { service } => service.poll_ready(cx),
            Level::Off { service } => service.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Level::On { service } => service.call(request),
            Level::Off { service } => crate::circuit_breaker::unguarded(service.call(request)),
        }
    }
}

impl<S, Req> Service<Req> for Level<Bulkhead<S>, S>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = <Bulkhead<S> as Service<Req>>::Future;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Level::On { service } => service.poll_ready(cx),
            Level::Off { service } => service.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Level::On { service } => service.call(request),
            Level::Off { service } => crate::bulkhead::unguarded(service.call(request)),
        }
    }
}

impl<S, Req> Service<Req> for Level<Timeout<S>, S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = <Timeout<S> as Service<Req>>::Future;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Level::On { service } => service.poll_ready(cx),
            Level::Off { service } => service.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            Level::On { service } => service.call(request),
            Level::Off { service } => crate::timeout::unbounded(service.call(request)),
        }
    }
}

/// `Service` for a level whose future is a [`Level`] of both futures.
macro_rules! either_level {
    ([$($param:ident),*] $on:ty) => {
        impl<S, $($param,)* Req> Service<Req> for Level<$on, S>
        where
            $on: Service<Req, Error = BoxError>,
            S: Service<Req, Response = <$on as Service<Req>>::Response>,
            S::Error: Into<BoxError>,
        {
            type Response = S::Response;
            type Error = BoxError;
            type Future = Level<<$on as Service<Req>>::Future, S::Future>;

            #[inline(always)]
            fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                match self {
                    Level::On { service } => service.poll_ready(cx),
                    Level::Off { service } => service.poll_ready(cx).map_err(Into::into),
                }
            }

            #[inline(always)]
            fn call(&mut self, request: Req) -> Self::Future {
                match self {
                    Level::On { service } => Level::On {
                        service: service.call(request),
                    },
                    Level::Off { service } => Level::Off {
                        service: service.call(request),
                    },
                }
            }
        }
    };
}

either_level!([C] Adaptive<S, C>);

impl<On, Off, T, EOn, EOff> Future for Level<On, Off>
where
    On: Future<Output = Result<T, EOn>>,
    Off: Future<Output = Result<T, EOff>>,
    EOn: Into<BoxError>,
    EOff: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            LevelProj::On { service } => service.poll(cx).map_err(Into::into),
            LevelProj::Off { service } => service.poll(cx).map_err(Into::into),
        }
    }
}
