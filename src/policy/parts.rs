//! The parts a policy takes by type: a hedge and a fallback (`Identity`
//! when it has none).

use super::*;

/// The outer level of a [`Policy`], without a fallback ([`Identity`]) or
/// with one ([`FallbackLayer`]): observe outermost, then the fallback, then
/// the total deadline, so that the fallback sees the calls the deadline
/// ends and its events reach the policy's listeners.
pub trait FallbackLevel<S, C, R> {
    /// The service made.
    type Service;

    /// Wraps `service` (the bulkhead level) in the outer layers there are.
    fn outer(
        &self,
        observe: Option<&ObserveLayer<C, R>>,
        total: Option<&TotalDeadlineLayer>,
        service: S,
    ) -> Self::Service;
}

impl<S, C: Clone, R: Clone> FallbackLevel<S, C, R> for Identity {
    type Service = Outer<ObserveDeadline<S, C, R>, TotalDeadline<S>, Observe<S, C, R>, S>;

    fn outer(
        &self,
        observe: Option<&ObserveLayer<C, R>>,
        total: Option<&TotalDeadlineLayer>,
        service: S,
    ) -> Self::Service {
        match (observe, total) {
            (Some(observe), Some(total)) => Outer::Both {
                service: observe.with_deadline(service, total.total()),
            },
            (None, Some(total)) => Outer::Deadline {
                service: total.layer(service),
            },
            (Some(observe), None) => Outer::Observed {
                service: observe.layer(service),
            },
            (None, None) => Outer::Neither { service },
        }
    }
}

impl<S, C: Clone, R: Clone, A, Ca, Fl, Cf, K> FallbackLevel<S, C, R>
    for FallbackLayer<A, Ca, Fl, Cf, K>
where
    K: CheckService<TotalDeadline<S>, Ca, Cf> + CheckService<S, Ca, Cf>,
{
    type Service = Outer<
        Observe<Fallback<TotalDeadline<S>, A, Ca, Fl, Cf, K>, C, R>,
        Fallback<TotalDeadline<S>, A, Ca, Fl, Cf, K>,
        Observe<Fallback<S, A, Ca, Fl, Cf, K>, C, R>,
        Fallback<S, A, Ca, Fl, Cf, K>,
    >;

    fn outer(
        &self,
        observe: Option<&ObserveLayer<C, R>>,
        total: Option<&TotalDeadlineLayer>,
        service: S,
    ) -> Self::Service {
        match (observe, total) {
            (Some(observe), Some(total)) => Outer::Both {
                service: observe.layer(self.layer(total.layer(service))),
            },
            (None, Some(total)) => Outer::Deadline {
                service: self.layer(total.layer(service)),
            },
            (Some(observe), None) => Outer::Observed {
                service: observe.layer(self.layer(service)),
            },
            (None, None) => Outer::Neither {
                service: self.layer(service),
            },
        }
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
