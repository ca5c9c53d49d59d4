//! The service of an observe layer and its response future.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::request_id::{GenerateRequestId, MakeRequestId};
use super::watch::{finish, in_span, nobody_looks, poll_in_context, start_watch};
use crate::classify::{Classify, DefaultClassifier};
use crate::event::context::{Context, RequestId};
use crate::event::scope::Shared;

/// The service of an [`ObserveLayer`](super::ObserveLayer).
pub struct Observe<S, C = DefaultClassifier, R = GenerateRequestId> {
    pub(super) inner: S,
    pub(super) shared: Arc<Shared>,
    pub(super) classifier: C,
    pub(super) request_id: R,
    /// Whether a layer inside has listeners of its own, which read the
    /// call's context.
    pub(super) listening: bool,
}

impl<S, C, R> Observe<S, C, R> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &super::ObserveLayer<C, R>) -> Self
    where
        super::ObserveLayer<C, R>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }
}

impl<S: Clone, C: Clone, R: Clone> Clone for Observe<S, C, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
            classifier: self.classifier.clone(),
            request_id: self.request_id.clone(),
            listening: self.listening,
        }
    }
}

impl<S: fmt::Debug, C, R> fmt::Debug for Observe<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observe")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .field("route", &self.shared.route)
            .finish_non_exhaustive()
    }
}

impl<S, C, R> Observe<S, C, R> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, R, Req> Service<Req> for Observe<S, C, R>
where
    S: Service<Req>,
    S::Error: 'static,
    C: Classify<Req, S::Response, S::Error> + Clone,
    R: MakeRequestId<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, C, Req, C::Facts>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Req) -> Self::Future {
        self.request_id.prepare(&mut request);
        // Nobody looks: no subscriber, no listener, no threshold, no
        // metrics. The call goes through untouched.
        if nobody_looks(&self.shared, self.listening) {
            return ResponseFuture {
                future: self.inner.call(request),
                context: None,
                facts: None,
                classifier: self.classifier.clone(),
                _request: PhantomData,
            };
        }
        let id = self.request_id.request_id(&request);
        watched_call(&mut self.inner, &self.shared, &self.classifier, id, request)
    }
}

/// Starts a watched call: its span and context, out of line.
#[inline(never)]
fn watched_call<S, C, Req>(
    inner: &mut S,
    shared: &Arc<Shared>,
    classifier: &C,
    id: Option<RequestId>,
    request: Req,
) -> ResponseFuture<S::Future, C, Req, C::Facts>
where
    S: Service<Req>,
    C: Classify<Req, S::Response, S::Error> + Clone,
{
    let (context, facts) = start_watch(shared, classifier, id, &request);
    let mut context = Some(context);
    let future = in_span(&mut context, || inner.call(request));
    ResponseFuture {
        future,
        context,
        facts: Some(facts),
        classifier: classifier.clone(),
        _request: PhantomData,
    }
}

pin_project! {
    /// The response future of [`Observe`].
    pub struct ResponseFuture<F, C, Req, Facts> {
        #[pin]
        future: F,
        context: Option<Box<Context>>,
        facts: Option<Facts>,
        classifier: C,
        _request: PhantomData<fn(Req)>,
    }
}

impl<F, C, Req, Facts> fmt::Debug for ResponseFuture<F, C, Req, Facts> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("watched", &self.context.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, C, Req, Facts, T, E> Future for ResponseFuture<F, C, Req, Facts>
where
    F: Future<Output = Result<T, E>>,
    C: Classify<Req, T, E, Facts = Facts>,
    E: 'static,
{
    type Output = Result<T, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.context.is_none() {
            return this.future.poll(cx);
        }
        let future = this.future;
        poll_in_context(this.context, || future.poll(cx)).map(|output| {
            if let Some(facts) = this.facts.as_ref() {
                finish::<C, Req, T, E>(this.classifier, facts, this.context, output.as_ref());
            }
            output
        })
    }
}
