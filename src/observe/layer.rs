//! The layer that watches logical calls: span, request id, slow-call
//! alert, call metrics, `CallEnded` events.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;
use tracing::level_filters::LevelFilter;

use super::context::{Context, RequestId, enter};
use super::event::{Event, Listeners};
use crate::classify::{Classify, DefaultClassifier, Verdict, judge};
use crate::error::ConfigError;
use crate::timeout::Deadline;
use crate::timeout::deadline_parts::{later, poll_deadline};
use tokio::task::futures::TaskLocalFuture;

/// Where the request id of a call comes from.
///
/// [`GenerateRequestId`] (the default) generates one when an event or span
/// first needs it; with the `http` feature, [`RequestIdHeader`] reads it
/// from a header of `http::Request` or `reqwest::Request`, and can write a
/// generated one into requests that lack it, so the callee sees the same
/// id. Closures `Fn(&Req) -> Option<RequestId>` work too.
pub trait MakeRequestId<Req> {
    /// Prepares every request, watched or not, before it is sent: for
    /// example writes a generated id into it. Does nothing by default.
    #[inline]
    fn prepare(&self, request: &mut Req) {
        let _ = request;
    }

    /// The id of `request`, or `None` to generate one when needed. Asked
    /// only for calls that are watched, after [`prepare`](Self::prepare).
    fn request_id(&self, request: &Req) -> Option<RequestId>;
}

/// Generates request ids when they are first needed.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenerateRequestId;

impl<Req> MakeRequestId<Req> for GenerateRequestId {
    #[inline]
    fn request_id(&self, _request: &Req) -> Option<RequestId> {
        None
    }
}

impl<F, Req> MakeRequestId<Req> for F
where
    F: Fn(&Req) -> Option<RequestId>,
{
    fn request_id(&self, request: &Req) -> Option<RequestId> {
        self(request)
    }
}

/// Reads the request id from a header (`x-request-id` by default), and
/// optionally writes a generated one into requests without it.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone)]
pub struct RequestIdHeader {
    name: http::HeaderName,
    propagate: bool,
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl RequestIdHeader {
    /// Reads `x-request-id`.
    pub fn new() -> Self {
        Self {
            name: http::HeaderName::from_static("x-request-id"),
            propagate: false,
        }
    }

    /// Reads `name` instead.
    pub fn name(mut self, name: http::HeaderName) -> Self {
        self.name = name;
        self
    }

    /// Writes a generated id into requests that lack one, so that the
    /// callee logs the same id.
    pub fn propagate(mut self) -> Self {
        self.propagate = true;
        self
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Default for RequestIdHeader {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl RequestIdHeader {
    /// The header's value, if it is a usable id: not empty, at most 256
    /// bytes, visible ASCII only (no space, no tab).
    fn read<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        let value = headers.get(&self.name)?.as_bytes();
        let usable =
            (!value.is_empty() && value.len() <= 256 && value.iter().all(|b| b.is_ascii_graphic()))
                .then(|| std::str::from_utf8(value).ok())
                .flatten();
        if usable.is_none() {
            tracing::debug!(
                target: "steadfast::observe",
                header = %self.name,
                "request id header ignored: empty, longer than 256 bytes or not all visible ASCII"
            );
        }
        usable
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl<R: crate::http::RequestParts> MakeRequestId<R> for RequestIdHeader {
    /// Writes a generated id into a request without a usable one, when
    /// told to propagate.
    fn prepare(&self, request: &mut R) {
        if !self.propagate || self.read(request.headers()).is_some() {
            return;
        }
        let id = RequestId::generate().to_string();
        if let Ok(value) = http::HeaderValue::from_str(&id) {
            request.headers_mut().insert(self.name.clone(), value);
        }
    }

    fn request_id(&self, request: &R) -> Option<RequestId> {
        self.read(request.headers()).map(RequestId::new)
    }
}

/// What every service and future of one [`ObserveLayer`] shares.
pub(crate) struct Shared {
    pub(crate) policy: Cow<'static, str>,
    pub(crate) route: Cow<'static, str>,
    pub(crate) slow_call: Option<Duration>,
    pub(crate) listeners: Listeners,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<super::metrics::CallMetrics>,
}

impl Shared {
    /// Whether attempts are timed (for the attempt-duration histogram).
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self))]
    pub(crate) fn times_attempts(&self) -> bool {
        #[cfg(feature = "metrics")]
        {
            self.metrics.is_some()
        }
        #[cfg(not(feature = "metrics"))]
        {
            false
        }
    }

    /// The shared state of a service this layer makes now: its own, or,
    /// if it names no route and a route is being layered, a copy named
    /// after that route, with its own call metrics.
    fn for_service(shared: &Arc<Self>) -> Arc<Self> {
        if !shared.route.is_empty() {
            return Arc::clone(shared);
        }
        let Some(route) = super::context::route_being_layered() else {
            return Arc::clone(shared);
        };
        let route = Cow::Owned(route.to_string());
        Arc::new(Self {
            #[cfg(feature = "metrics")]
            metrics: shared
                .metrics
                .as_ref()
                .map(|_| super::metrics::CallMetrics::register(&shared.policy, &route)),
            policy: shared.policy.clone(),
            route,
            slow_call: shared.slow_call,
            listeners: shared.listeners.clone(),
        })
    }

    /// Whether calls must be timed and judged whatever the subscriber.
    #[inline]
    fn watches(&self) -> bool {
        self.slow_call.is_some() || !self.listeners.is_empty() || self.times_attempts()
    }
}

/// Whether a call can go through untouched: no subscriber, no listener
/// anywhere, no threshold, no call metrics.
#[inline]
fn nobody_looks(shared: &Shared) -> bool {
    !shared.watches()
        && !super::context::anyone_listening()
        && LevelFilter::current() == LevelFilter::OFF
}

/// Records one attempt's metrics; the context times attempts.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn record_attempt(context: &Context, verdict: Verdict) {
    #[cfg(feature = "metrics")]
    if let Some(metrics) = &context.shared.metrics {
        let now = tokio::time::Instant::now();
        let elapsed = context
            .attempt_start
            .replace(Some(now))
            .map_or(Duration::ZERO, |start| now.saturating_duration_since(start));
        metrics.attempt(verdict, elapsed);
    }
}

/// Watches logical calls: one span per call, the request id on every
/// event inside it, a warning for calls slower than the route's threshold,
/// call and attempt metrics (feature `metrics`), and a
/// [`CallEnded`](Event::CallEnded) event for listeners.
///
/// Put it outermost (a [`Policy`](crate::policy::Policy) does with
/// [`observe`](crate::policy::PolicyBuilder::observe)). See the
/// [module docs](super) for the names of spans, events and metrics.
///
/// With no subscriber, no listener, no slow-call threshold and metrics
/// off, a call reads no clock and judges nothing: the cost is the span's
/// interest check and moving the context in and out of its slot.
pub struct ObserveLayer<C = DefaultClassifier, R = GenerateRequestId> {
    shared: Arc<Shared>,
    classifier: C,
    request_id: R,
}

impl ObserveLayer {
    /// A builder for calls of the policy named `policy`.
    pub fn builder(policy: impl Into<Cow<'static, str>>) -> ObserveLayerBuilder {
        ObserveLayerBuilder {
            policy: policy.into(),
            settings: ObserveSettings::default(),
            classifier: DefaultClassifier,
            request_id: GenerateRequestId,
        }
    }
}

impl<C, R> ObserveLayer<C, R> {
    /// The policy's name.
    pub fn policy(&self) -> &str {
        &self.shared.policy
    }

    /// The route, empty if none was given.
    pub fn route(&self) -> &str {
        &self.shared.route
    }

    /// The slow-call threshold, if any.
    pub fn slow_call(&self) -> Option<Duration> {
        self.shared.slow_call
    }
}

impl<C: Clone, R: Clone> Clone for ObserveLayer<C, R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            classifier: self.classifier.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

impl<C, R> fmt::Debug for ObserveLayer<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveLayer")
            .field("policy", &self.shared.policy)
            .field("route", &self.shared.route)
            .field("slow_call", &self.shared.slow_call)
            .field("listeners", &self.shared.listeners)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone, R: Clone> Layer<S> for ObserveLayer<C, R> {
    type Service = Observe<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            shared: Shared::for_service(&self.shared),
            classifier: self.classifier.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

/// The settings of an observe layer besides its policy's name,
/// classifier and request ids; a [`Policy`](crate::policy::Policy)
/// builder keeps them too, until it builds its observe layer.
#[derive(Debug)]
pub(crate) struct ObserveSettings {
    pub(crate) route: Cow<'static, str>,
    pub(crate) slow_call: Option<Duration>,
    pub(crate) listeners: Listeners,
    pub(crate) metrics: bool,
}

impl Default for ObserveSettings {
    fn default() -> Self {
        Self {
            route: Cow::Borrowed(""),
            slow_call: None,
            listeners: Listeners::none(),
            metrics: false,
        }
    }
}

/// Builds an [`ObserveLayer`].
///
/// ```
/// use std::time::Duration;
/// use steadfast::observe::{Event, ObserveLayer};
///
/// let observe = ObserveLayer::builder("inventory")
///     .route("/items/{id}")
///     .slow_call(Duration::from_millis(250))
///     .on_event(|event: &Event<'_>| println!("{event:?}"))
///     .build()?;
/// assert_eq!(observe.slow_call(), Some(Duration::from_millis(250)));
///
/// let err = ObserveLayer::builder("").build().unwrap_err();
/// assert_eq!(err.field(), "observe.policy");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct ObserveLayerBuilder<C = DefaultClassifier, R = GenerateRequestId> {
    policy: Cow<'static, str>,
    settings: ObserveSettings,
    classifier: C,
    request_id: R,
}

impl<C, R> fmt::Debug for ObserveLayerBuilder<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObserveLayerBuilder")
            .field("policy", &self.policy)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<C, R> ObserveLayerBuilder<C, R> {
    /// The route these calls take, as events and metric labels name it
    /// (for example the path pattern of a [`RouteTable`](crate::http::RouteTable)
    /// route).
    pub fn route(mut self, route: impl Into<Cow<'static, str>>) -> Self {
        self.settings.route = route.into();
        self
    }

    /// Warns (and tells listeners) when a call takes `threshold` or
    /// longer, whatever its outcome.
    pub fn slow_call(mut self, threshold: Duration) -> Self {
        self.settings.slow_call = Some(threshold);
        self
    }

    /// Calls `listener` with every [`Event`] made inside these calls, by
    /// any layer, and with each call's [`CallEnded`](Event::CallEnded).
    pub fn on_event(mut self, listener: impl Fn(&Event<'_>) + Send + Sync + 'static) -> Self {
        self.settings.listeners = std::mem::take(&mut self.settings.listeners).with(listener);
        self
    }

    /// Sends these listeners every event, as [`on_event`](Self::on_event).
    pub fn listeners(mut self, listeners: Listeners) -> Self {
        self.settings.listeners = listeners;
        self
    }

    /// Records call and attempt metrics (feature `metrics`; without it,
    /// this does nothing). Off by default: they cost two clock reads and
    /// two histogram records per call.
    ///
    /// Metric handles are registered when the layer is built: install the
    /// recorder first.
    pub fn metrics(mut self, on: bool) -> Self {
        self.settings.metrics = on;
        self
    }

    /// Judges each call's outcome with `classifier` (for the `verdict`
    /// label and field).
    pub fn classifier<C2>(self, classifier: C2) -> ObserveLayerBuilder<C2, R> {
        ObserveLayerBuilder {
            policy: self.policy,
            settings: self.settings,
            classifier,
            request_id: self.request_id,
        }
    }

    /// Takes request ids from `request_id` (for example a
    /// [`RequestIdHeader`]).
    pub fn request_id<R2>(self, request_id: R2) -> ObserveLayerBuilder<C, R2> {
        ObserveLayerBuilder {
            policy: self.policy,
            settings: self.settings,
            classifier: self.classifier,
            request_id,
        }
    }

    /// A builder from settings kept elsewhere (a policy's builder).
    pub(crate) fn from_settings(
        policy: Cow<'static, str>,
        settings: ObserveSettings,
        classifier: C,
        request_id: R,
    ) -> Self {
        Self {
            policy,
            settings,
            classifier,
            request_id,
        }
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<ObserveLayer<C, R>, ConfigError> {
        if self.policy.is_empty() {
            return Err(ConfigError::new(
                "observe.policy",
                "\"\"",
                "a policy needs a name",
            ));
        }
        let settings = self.settings;
        if let Some(threshold) = settings.slow_call {
            crate::error::check::positive("observe.slow_call", threshold)?;
        }
        #[cfg(feature = "metrics")]
        let metrics = settings
            .metrics
            .then(|| super::metrics::CallMetrics::register(&self.policy, &settings.route));
        Ok(ObserveLayer {
            shared: Arc::new(Shared {
                policy: self.policy,
                route: settings.route,
                slow_call: settings.slow_call,
                listeners: settings.listeners,
                #[cfg(feature = "metrics")]
                metrics,
            }),
            classifier: self.classifier,
            request_id: self.request_id,
        })
    }
}

/// The service of an [`ObserveLayer`].
pub struct Observe<S, C = DefaultClassifier, R = GenerateRequestId> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
    request_id: R,
}

impl<S, C, R> Observe<S, C, R> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &ObserveLayer<C, R>) -> Self
    where
        ObserveLayer<C, R>: tower_layer::Layer<S, Service = Self>,
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
        if nobody_looks(&self.shared) {
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

/// The span and context of a watched call, and the classifier's facts.
#[inline(never)]
fn start_watch<C, Req, Res, E>(
    shared: &Arc<Shared>,
    classifier: &C,
    id: Option<RequestId>,
    request: &Req,
) -> (Box<Context>, C::Facts)
where
    C: Classify<Req, Res, E>,
{
    let span = tracing::debug_span!(
        target: "steadfast::observe",
        "call",
        policy = %shared.policy,
        route = %shared.route,
        request_id = tracing::field::Empty,
        verdict = tracing::field::Empty,
        attempts = tracing::field::Empty,
        elapsed_ms = tracing::field::Empty,
    );
    let context = Box::new(Context::new(Arc::clone(shared), id, span));
    if !context.span.is_disabled() {
        context
            .span
            .record("request_id", tracing::field::display(context.request_id()));
    }
    (context, classifier.facts(request))
}

/// Runs `f` in the call's span and context, if it has them.
#[inline]
fn in_span<T>(context: &mut Option<Box<Context>>, f: impl FnOnce() -> T) -> T {
    if context.is_none() {
        return f();
    }
    let span = match context {
        Some(c) if !c.span.is_disabled() => Some(c.span.clone()),
        _ => None,
    };
    let _entered = span.as_ref().map(Span::enter);
    enter(context, f)
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

/// Polls in the call's span and context.
#[inline(never)]
fn poll_in_context<T>(
    context: &mut Option<Box<Context>>,
    poll: impl FnOnce() -> Poll<T>,
) -> Poll<T> {
    in_span(context, poll)
}

/// Reports a watched call that ended: span fields, slow-call alert,
/// metrics, `SlowCall` and `CallEnded` for listeners, which run in the
/// call's context. Takes the context out of `slot`.
#[inline(never)]
fn finish<C, Req, T, E>(
    classifier: &C,
    facts: &C::Facts,
    slot: &mut Option<Box<Context>>,
    outcome: Result<&T, &E>,
) where
    C: Classify<Req, T, E>,
    E: 'static,
{
    let Some(context) = slot.as_deref() else {
        return;
    };
    let verdict = judge(classifier, facts, outcome);
    let elapsed = context.start.elapsed();
    let span = &context.span;
    let attempts = context.attempts.get().max(1);
    let shared = &*context.shared;
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    span.record("verdict", verdict.as_str());
    span.record("attempts", attempts);
    span.record("elapsed_ms", elapsed_ms);
    #[cfg(feature = "metrics")]
    if let Some(metrics) = &shared.metrics {
        if context.attempts.get() == 0 {
            // No retry layer counted attempts: the call was one attempt.
            metrics.attempt(verdict, elapsed);
        }
        metrics.call(verdict, elapsed);
    }
    let slow = shared.slow_call.filter(|threshold| elapsed >= *threshold);
    if let Some(threshold) = slow {
        tracing::warn!(
            target: "steadfast::observe",
            policy = %shared.policy,
            route = %shared.route,
            request_id = %context.request_id(),
            verdict = verdict.as_str(),
            elapsed_ms,
            threshold_ms = u64::try_from(threshold.as_millis()).unwrap_or(u64::MAX),
            "slow call"
        );
        #[cfg(feature = "metrics")]
        super::metrics::record(
            &Event::SlowCall {
                policy: &shared.policy,
                route: &shared.route,
                elapsed,
                threshold,
                verdict,
            },
            Some((&shared.policy, &shared.route)),
        );
    }
    if shared.listeners.is_empty() {
        *slot = None;
        return;
    }
    // Listeners read the call's context while they run, with every
    // attempt counted (one, if no retry layer counted them).
    context.attempts.set(attempts);
    let shared = Arc::clone(&context.shared);
    enter(slot, || {
        if let Some(threshold) = slow {
            shared.listeners.notify(&Event::SlowCall {
                policy: &shared.policy,
                route: &shared.route,
                elapsed,
                threshold,
                verdict,
            });
        }
        shared.listeners.notify(&Event::CallEnded {
            policy: &shared.policy,
            route: &shared.route,
            verdict,
            attempts,
            elapsed,
        });
    });
    *slot = None;
}

/// An observe layer and a total deadline in one level of the service (the
/// outer level of a [`Policy`](crate::policy::Policy)): the call's future
/// is built and moved once for both.
pub struct ObserveDeadline<S, C = DefaultClassifier, R = GenerateRequestId> {
    inner: S,
    total: Duration,
    shared: Arc<Shared>,
    classifier: C,
    request_id: R,
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

    // Out of line: built in place in the caller's slot, the future is not
    // moved once more (it is the size of the whole stack's).
    #[inline(never)]
    fn call(&mut self, mut request: Req) -> Self::Future {
        self.request_id.prepare(&mut request);
        let deadline = Deadline::at(later(tokio::time::Instant::now(), self.total)).tighten();
        let inner = &mut self.inner;
        let (mut context, facts) = if nobody_looks(&self.shared) {
            (None, None)
        } else {
            let id = self.request_id.request_id(&request);
            let (context, facts) = start_watch(&self.shared, &self.classifier, id, &request);
            (Some(context), Some(facts))
        };
        let future = if context.is_none() {
            deadline.sync_scope(|| inner.call(request))
        } else {
            in_span(&mut context, || deadline.sync_scope(|| inner.call(request)))
        };
        DeadlineResponseFuture {
            future: deadline.scope(future),
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
        future: TaskLocalFuture<Deadline, F>,
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
