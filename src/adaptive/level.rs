//! The adaptive level of a [`Policy`](crate::policy::Policy): the limiter,
//! or the inner service itself when the policy has none.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::{Adaptive, AdaptiveLayer};
use crate::BoxError;
use crate::classify::Classify;

/// The adaptive level of a [`Policy`](crate::policy::Policy): an
/// [`Adaptive`] limiter, or the inner service called directly. Errors
/// become [`BoxError`].
#[derive(Clone)]
pub enum AdaptiveLevel<S, C> {
    /// Through the limiter.
    Limited(Adaptive<S, C>),
    /// Straight to the inner service.
    Direct(S),
}

impl<S, C> AdaptiveLevel<S, C> {
    pub(crate) fn new(layer: Option<&AdaptiveLayer<C>>, inner: S) -> Self {
        match layer {
            Some(layer) => AdaptiveLevel::Limited(layer.layer(inner)),
            None => AdaptiveLevel::Direct(inner),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        match self {
            AdaptiveLevel::Limited(service) => service.get_ref(),
            AdaptiveLevel::Direct(service) => service,
        }
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        match self {
            AdaptiveLevel::Limited(service) => service.get_mut(),
            AdaptiveLevel::Direct(service) => service,
        }
    }

    /// The inner service, consuming the level.
    pub fn into_inner(self) -> S {
        match self {
            AdaptiveLevel::Limited(service) => service.into_inner(),
            AdaptiveLevel::Direct(service) => service,
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for AdaptiveLevel<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdaptiveLevel::Limited(service) => f.debug_tuple("Limited").field(service).finish(),
            AdaptiveLevel::Direct(service) => f.debug_tuple("Direct").field(service).finish(),
        }
    }
}

impl<S, C, Req> Service<Req> for AdaptiveLevel<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    C: Classify<Req, S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = LevelFuture<<Adaptive<S, C> as Service<Req>>::Future, S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            AdaptiveLevel::Limited(service) => service.poll_ready(cx),
            AdaptiveLevel::Direct(service) => service.poll_ready(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        match self {
            AdaptiveLevel::Limited(service) => LevelFuture::Limited {
                future: service.call(request),
            },
            AdaptiveLevel::Direct(service) => LevelFuture::Direct {
                future: service.call(request),
            },
        }
    }
}

pub use self::level_future::LevelFuture;

// The projection and the variants' fields are generated without docs.
#[allow(missing_docs)]
mod level_future {
    use super::*;

    pin_project! {
        /// The response future of an [`AdaptiveLevel`].
        #[project = LevelProj]
        #[derive(Debug)]
        pub enum LevelFuture<A, B> {
            /// Through the limiter.
            Limited {
                #[pin]
                future: A,
            },
            /// Straight to the inner service.
            Direct {
                #[pin]
                future: B,
            },
        }
    }

    impl<A, B, T, EA, EB> Future for LevelFuture<A, B>
    where
        A: Future<Output = Result<T, EA>>,
        B: Future<Output = Result<T, EB>>,
        EA: Into<BoxError>,
        EB: Into<BoxError>,
    {
        type Output = Result<T, BoxError>;

        #[inline]
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            match self.project() {
                LevelProj::Limited { future } => future.poll(cx).map_err(Into::into),
                LevelProj::Direct { future } => future.poll(cx).map_err(Into::into),
            }
        }
    }
}
