//! The parts a policy takes by type: a hedge and a fallback (`Identity`
//! when it has none).

use super::*;

/// The outer level of a [`Policy`], without a fallback ([`Identity`]) or
/// with one ([`FallbackLayer`]): observe outermost, then the fallback, then
/// the total deadline, so that the fallback sees the calls the deadline
/// ends and its events reach the policy's listeners.
///
/// `S` is the bulkhead level over a retry, `T` the bulkhead level over the
/// level below the retry, for a policy that does not retry: the outer
/// level is made over one of them ([`Level::On`] or [`Level::Off`]), and
/// the retry is chosen in the same enum as the outer layers.
pub trait FallbackLevel<S, T, C, R> {
    /// The service made.
    type Service;

    /// Wraps `service` (the bulkhead level) in the outer layers there are.
    fn outer(
        &self,
        observe: Option<&ObserveLayer<C, R>>,
        total: Option<&TotalDeadlineLayer>,
        service: Level<S, T>,
    ) -> Self::Service;
}

/// The variant of [`Outer`] for `$service`, over a retry (`$on`) or not
/// (`$off`), wrapped by `$both`, `$deadline`, `$observed` or `$neither`
/// as `$observe` and `$total` are there.
macro_rules! outer_variant {
    (
        $observe:expr, $total:expr, $service:expr,
        |$o:ident, $t:ident, $s:ident| {
            both: $both:expr,
            deadline: $deadline:expr,
            observed: $observed:expr,
            neither: $neither:expr $(,)?
        }
    ) => {
        match ($service, $observe, $total) {
            (Level::On { service: $s }, Some($o), Some($t)) => Outer::Both { service: $both },
            (Level::On { service: $s }, None, Some($t)) => Outer::Deadline { service: $deadline },
            (Level::On { service: $s }, Some($o), None) => Outer::Observed { service: $observed },
            (Level::On { service: $s }, None, None) => Outer::Neither { service: $neither },
            (Level::Off { service: $s }, Some($o), Some($t)) => Outer::OnceBoth { service: $both },
            (Level::Off { service: $s }, None, Some($t)) => {
                Outer::OnceDeadline { service: $deadline }
            }
            (Level::Off { service: $s }, Some($o), None) => {
                Outer::OnceObserved { service: $observed }
            }
            (Level::Off { service: $s }, None, None) => Outer::Once { service: $neither },
        }
    };
}

impl<S, T, C: Clone, R: Clone> FallbackLevel<S, T, C, R> for Identity {
    type Service = Outer<
        ObserveDeadline<S, C, R>,
        TotalDeadline<S>,
        Observe<S, C, R>,
        S,
        ObserveDeadline<T, C, R>,
        TotalDeadline<T>,
        Observe<T, C, R>,
        T,
    >;

    fn outer(
        &self,
        observe: Option<&ObserveLayer<C, R>>,
        total: Option<&TotalDeadlineLayer>,
        service: Level<S, T>,
    ) -> Self::Service {
        outer_variant!(observe, total, service, |observe, total, service| {
            both: observe.with_deadline(service, total.total()),
            deadline: total.layer(service),
            observed: observe.layer(service),
            neither: service,
        })
    }
}

impl<S, T, C: Clone, R: Clone, A, Ca, Fl, Cf, K> FallbackLevel<S, T, C, R>
    for FallbackLayer<A, Ca, Fl, Cf, K>
where
    K: CheckService<TotalDeadline<S>, Ca, Cf>
        + CheckService<S, Ca, Cf>
        + CheckService<TotalDeadline<T>, Ca, Cf>
        + CheckService<T, Ca, Cf>,
{
    type Service = Outer<
        Observe<Fallback<TotalDeadline<S>, A, Ca, Fl, Cf, K>, C, R>,
        Fallback<TotalDeadline<S>, A, Ca, Fl, Cf, K>,
        Observe<Fallback<S, A, Ca, Fl, Cf, K>, C, R>,
        Fallback<S, A, Ca, Fl, Cf, K>,
        Observe<Fallback<TotalDeadline<T>, A, Ca, Fl, Cf, K>, C, R>,
        Fallback<TotalDeadline<T>, A, Ca, Fl, Cf, K>,
        Observe<Fallback<T, A, Ca, Fl, Cf, K>, C, R>,
        Fallback<T, A, Ca, Fl, Cf, K>,
    >;

    fn outer(
        &self,
        observe: Option<&ObserveLayer<C, R>>,
        total: Option<&TotalDeadlineLayer>,
        service: Level<S, T>,
    ) -> Self::Service {
        outer_variant!(observe, total, service, |observe, total, service| {
            both: observe.layer(self.layer(total.layer(service))),
            deadline: self.layer(total.layer(service)),
            observed: observe.layer(self.layer(service)),
            neither: self.layer(service),
        })
    }
}

/// A hedging setting of a [`PolicyBuilder`]: none ([`Identity`]) or a
/// [`HedgeLayerBuilder`], built with the policy's classifier, replay and
/// retry budget.
pub trait HedgeSetting<C, P> {
    /// The level built.
    type Layer;
    /// The copy of the policy's replay the level keeps.
    type Replay;

    /// Copies the policy's replay, if the level needs it.
    fn replay(&self, replay: &P) -> Self::Replay;

    /// Builds the level.
    fn build_level(
        self,
        classifier: C,
        replay: Self::Replay,
        budget: Option<RetryBudget>,
    ) -> Result<Self::Layer, ConfigError>;
}

impl<C, P> HedgeSetting<C, P> for Identity {
    type Layer = Identity;
    type Replay = ();

    fn replay(&self, _: &P) {}

    fn build_level(self, _: C, _: (), _: Option<RetryBudget>) -> Result<Identity, ConfigError> {
        Ok(Identity::new())
    }
}

impl<C, P: Clone> HedgeSetting<C, P> for HedgeLayerBuilder {
    type Layer = HedgeLayer<C, P>;
    type Replay = P;

    fn replay(&self, replay: &P) -> P {
        replay.clone()
    }

    fn build_level(
        self,
        classifier: C,
        replay: P,
        budget: Option<RetryBudget>,
    ) -> Result<HedgeLayer<C, P>, ConfigError> {
        let mut hedge = self;
        if let Some(budget) = budget {
            hedge = hedge.budget(budget);
        }
        hedge.classifier(classifier).replay(replay).build()
    }
}

/// A fallback setting of a [`PolicyBuilder`]: none ([`Identity`]) or a
/// [`FallbackLayerBuilder`], built with the policy's classifier.
pub trait FallbackSetting<C> {
    /// The level built.
    type Layer;

    /// Builds the level.
    fn build_level(self, classifier: C) -> Result<Self::Layer, ConfigError>;
}

impl<C> FallbackSetting<C> for Identity {
    type Layer = Identity;

    fn build_level(self, _: C) -> Result<Identity, ConfigError> {
        Ok(Identity::new())
    }
}

impl<C, A, Ca, Fl, Cf, K> FallbackSetting<C> for FallbackLayerBuilder<A, Ca, Fl, Cf, K>
where
    K: CheckSources<A, Ca, Fl>,
{
    type Layer = FallbackLayer<A, Ca, Fl, C, K>;

    fn build_level(self, classifier: C) -> Result<Self::Layer, ConfigError> {
        self.classifier(classifier).build()
    }
}

/// An adaptive limit setting of a [`PolicyBuilder`]: none ([`Identity`])
/// or an [`AdaptiveLayerBuilder`], built with the policy's classifier.
pub trait AdaptiveSetting<C> {
    /// The level built.
    type Layer;

    /// Builds the level.
    fn build_level(self, classifier: C) -> Result<Self::Layer, ConfigError>;
}

impl<C> AdaptiveSetting<C> for Identity {
    type Layer = Identity;

    fn build_level(self, _: C) -> Result<Identity, ConfigError> {
        Ok(Identity::new())
    }
}

impl<C> AdaptiveSetting<C> for AdaptiveLayerBuilder {
    type Layer = AdaptiveLayer<C>;

    fn build_level(self, classifier: C) -> Result<AdaptiveLayer<C>, ConfigError> {
        self.classifier(classifier).build()
    }
}

/// The adaptive level of a [`Policy`]: none ([`Identity`], the breaker
/// level called directly) or an [`AdaptiveLayer`], chosen by the policy's
/// type, so that a policy without one wraps its calls in no level of it.
pub trait AdaptiveLevel<C> {
    /// The service the level makes over `S`.
    type Service<S>;

    /// Wraps `service` in the level.
    fn layer_level<S>(&self, service: S) -> Self::Service<S>;
    /// A handle on the limit, if there is one.
    fn handle(&self) -> Option<AdaptiveHandle>;
}

impl<C> AdaptiveLevel<C> for Identity {
    type Service<S> = S;

    fn layer_level<S>(&self, service: S) -> S {
        service
    }

    fn handle(&self) -> Option<AdaptiveHandle> {
        None
    }
}

impl<C> AdaptiveLevel<C> for AdaptiveLayer<C> {
    type Service<S> = Adaptive<S, C>;

    fn layer_level<S>(&self, service: S) -> Adaptive<S, C> {
        self.layer(service)
    }

    fn handle(&self) -> Option<AdaptiveHandle> {
        Some(AdaptiveLayer::handle(self))
    }
}
