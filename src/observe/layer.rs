//! The layer that watches logical calls, its settings and builder.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::request_id::GenerateRequestId;
use super::service::Observe;
use crate::classify::DefaultClassifier;
use crate::error::ConfigError;
use crate::event::scope::Shared;
use crate::event::{Event, Listeners};

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
    pub(super) shared: Arc<Shared>,
    pub(super) classifier: C,
    pub(super) request_id: R,
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
            listening: crate::event::context::take_listeners_layered(),
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
    /// [`RequestIdHeader`](super::RequestIdHeader)).
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
            .then(|| crate::event::metrics::CallMetrics::register(&self.policy, &settings.route));
        Ok(ObserveLayer {
            shared: Arc::new(Shared {
                policy: self.policy,
                route: settings.route,
                slow_call: settings.slow_call,
                listeners: settings.listeners,
                #[cfg(feature = "metrics")]
                metrics,
                #[cfg(feature = "metrics")]
                decisions: crate::event::Decisions::new(),
            }),
            classifier: self.classifier,
            request_id: self.request_id,
        })
    }
}
