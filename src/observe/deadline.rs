//! An observe layer and a total deadline in one level of a policy.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_service::Service;

use super::layer::ObserveLayer;
use super::request_id::{GenerateRequestId, MakeRequestId};
use super::watch::{finish, in_span, nobody_looks, poll_in_context, start_watch};
use crate::classify::{Classify, DefaultClassifier};
use crate::deadline::Scoped;
use crate::event::context::Context;
use crate::event::scope::Shared;
use crate::timeout::deadline_parts::{later, poll_deadline};
use crate::timeout::{Deadline, TotalDeadlineLayer};

/// An observe layer and a total deadline in one level of the service (the
/// outer level of a [`Policy`](crate::policy::Policy)): the call's future
/// is built and moved once for both.
pub struct ObserveDeadline<S, C = DefaultClassifier, R = GenerateRequestId> {
    inner: S,
    total: Duration,
    shared: Arc<Shared>,
    classifier: C,
    request_id: R,
    listening: bool,
}

impl<C: Clone, R: Clone> ObserveLayer<C, R> {
    /// Watches `inner` and bounds each call by `total`, in one level.
    pub(crate) fn with_deadline<S>(&self, inner: S, total: Duration) -> ObserveDeadline<S, C, R> {
        ObserveDeadline {
            inner,
            total,
            shared: Shared::for_service(&self.shared),
            classifier: self.classifier.clone(),
            request_id: self.request_id.clone(),
            listening: crate::event::context::take_listeners_layered(),
        }
    }
}

impl<S: Clone, C: Clone, R: Clone> Clone for ObserveDeadline<S, C, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            total: self.total,
            shared: Arc::clone(&self.shared),
            classifier: self.classifier.clone(),
            request_id: self.request_id.clone(),
            listening: self.listening,
        }
    }
}

impl<S: fmt::Debug, C, R> fmt::Debug for ObserveDeadline<S, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveDeadline")
            .field("inner", &self.inner)
            .field("total", &self.total)
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone, R: Clone> ObserveDeadline<S, C, R> {
    /// `inner` watched as `observe` watches services
    /// (`observe.layer(total.layer(inner))`) and each call bounded by
    /// `total`'s deadline, in one level: the service a
    /// [`Policy`](crate::policy::Policy) with both makes.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::error::DeadlineExceeded;
    /// use steadfast::observe::{ObserveDeadline, ObserveLayer};
    /// use steadfast::timeout::TotalDeadlineLayer;
    /// use tower::{ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), steadfast::BoxError> {
    /// let observe = ObserveLayer::builder("orders").build()?;
    /// let total = TotalDeadlineLayer::new(Duration::from_millis(50))?;
    /// let hung = service_fn(|()| std::future::pending::<Result<u32, steadfast::BoxError>>());
    /// let service = ObserveDeadline::new(hung, &observe, &total);
    /// let err = service.oneshot(()).await.unwrap_err();
    /// assert!(err.is::<DeadlineExceeded>(), "{err}");
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(inner: S, observe: &ObserveLayer<C, R>, total: &TotalDeadlineLayer) -> Self {
        observe.with_deadline(inner, total.total())
    }
}

impl<S, C, R> ObserveDeadline<S, C, R> {
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

impl<S, C, R, Req> Service<Req> for ObserveDeadline<S, C, R>
where
    S: Service<Req>,
    S::Error: Into<crate::BoxError>,
    C: Classify<Req, S::Response, crate::BoxError> + Clone,
    R: MakeRequestId<Req>,
{
    type Response = S::Response;
    type Error = crate::BoxError;
    type Future = DeadlineResponseFuture<S::Future, C, Req, C::Facts>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, mut request: Req) -> Self::Future {
        self.request_id.prepare(&mut request);
        let now = tokio::time::Instant::now();
        let deadline = Deadline::at(later(now, self.total)).tighten();
        let inner = &mut self.inner;
        let (mut context, facts) = if nobody_looks(&self.shared, self.listening) {
            (None, None)
        } else {
            let id = self.request_id.request_id(&request);
            let (context, facts) = start_watch(&self.shared, &self.classifier, id, &request);
            (Some(context), Some(facts))
        };
        let future = if context.is_none() {
            deadline.sync_scope_read(now, || inner.call(request))
        } else {
            in_span(&mut context, || {
                deadline.sync_scope_read(now, || inner.call(request))
            })
        };
        DeadlineResponseFuture {
            future: deadline.scope_tightened(future),
            sleep: None,
            at: deadline.instant(),
            context,
            facts,
            classifier: self.classifier.clone(),
            _request: PhantomData,
        }
    }
}

pin_project! {
    /// The response future of [`ObserveDeadline`].
    pub struct DeadlineResponseFuture<F, C, Req, Facts> {
        #[pin]
        future: Scoped<F>,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        at: tokio::time::Instant,
        context: Option<Box<Context>>,
        facts: Option<Facts>,
        classifier: C,
        _request: PhantomData<fn(Req)>,
    }
}

impl<F, C, Req, Facts> fmt::Debug for DeadlineResponseFuture<F, C, Req, Facts> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadlineResponseFuture")
            .field("at", &self.at)
            .field("watched", &self.context.is_some())
            .finish_non_exhaustive()
    }
}

impl<F, C, Req, Facts, T, E> Future for DeadlineResponseFuture<F, C, Req, Facts>
where
    F: Future<Output = Result<T, E>>,
    E: Into<crate::BoxError>,
    C: Classify<Req, T, crate::BoxError, Facts = Facts>,
{
    type Output = Result<T, crate::BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let at = *this.at;
        if this.context.is_none() {
            return poll_deadline(this.future, this.sleep, at, cx);
        }
        let (future, sleep) = (this.future, this.sleep);
        poll_in_context(this.context, || poll_deadline(future, sleep, at, cx)).map(|output| {
            if let Some(facts) = this.facts.as_ref() {
                finish::<C, Req, T, crate::BoxError>(
                    this.classifier,
                    facts,
                    this.context,
                    output.as_ref(),
                );
            }
            output
        })
    }
}
