use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::settings::{Rates, Settings};
use super::{Chaos, ChaosHandle, NoResponse};
use crate::error::ConfigError;

/// Injects faults into the inner service. See the [module docs](super).
pub struct ChaosLayer<R = NoResponse> {
    settings: Arc<Settings>,
    respond: R,
    can_respond: bool,
}

impl ChaosLayer {
    /// Starts building a chaos layer; with no rate set it injects nothing.
    pub fn builder() -> ChaosLayerBuilder {
        ChaosLayerBuilder {
            rates: Rates {
                error: 0.0,
                hang: 0.0,
                respond: 0.0,
                latency: 0.0,
                latency_min: Duration::ZERO,
                latency_max: Duration::ZERO,
            },
            enabled: true,
            seed: 0x5EED_C4A0,
            respond: NoResponse,
            name: Cow::Borrowed("chaos"),
            can_respond: false,
        }
    }
}

impl<R> ChaosLayer<R> {
    /// A handle to read what was injected and to change the rates while
    /// the services run.
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle::new(Arc::clone(&self.settings), self.can_respond)
    }
}

impl<R: Clone> Clone for ChaosLayer<R> {
    fn clone(&self) -> Self {
        Self {
            settings: Arc::clone(&self.settings),
            respond: self.respond.clone(),
            can_respond: self.can_respond,
        }
    }
}

impl<R> fmt::Debug for ChaosLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<S, R: Clone> Layer<S> for ChaosLayer<R> {
    type Service = Chaos<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Chaos::from_parts(inner, Arc::clone(&self.settings), self.respond.clone())
    }
}

/// Builds a [`ChaosLayer`]; settings are checked by [`build`](Self::build).
///
/// ```
/// use std::time::Duration;
/// use steadfast::chaos::ChaosLayer;
///
/// let chaos = ChaosLayer::builder()
///     .error_rate(0.1)
///     .hang_rate(0.05)
///     .latency(0.2, Duration::from_millis(50), Duration::from_millis(300))
///     .enabled(false)
///     .seed(7)
///     .build()?;
/// assert!(!chaos.handle().is_enabled());
///
/// let err = ChaosLayer::builder().error_rate(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "chaos.error_rate");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct ChaosLayerBuilder<R = NoResponse> {
    rates: Rates,
    enabled: bool,
    seed: u64,
    respond: R,
    can_respond: bool,
    name: Cow<'static, str>,
}

impl<R> ChaosLayerBuilder<R> {
    /// The name its log lines carry (default `"chaos"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Share of calls failed at once with
    /// [`InjectedFault`](super::InjectedFault), without calling the service.
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.rates.error = rate;
        self
    }

    /// Share of calls that never answer (until a timeout drops them).
    pub fn hang_rate(mut self, rate: f64) -> Self {
        self.rates.hang = rate;
        self
    }

    /// Share of calls answered by `respond` instead of the service: say, a
    /// 503 with a `Retry-After`.
    pub fn respond<F>(self, rate: f64, respond: F) -> ChaosLayerBuilder<F> {
        let mut rates = self.rates;
        rates.respond = rate;
        ChaosLayerBuilder {
            rates,
            enabled: self.enabled,
            seed: self.seed,
            respond,
            can_respond: true,
            name: self.name,
        }
    }

    /// Share of calls whose outcome is held back by a latency drawn
    /// uniformly between `min` and `max`.
    pub fn latency(mut self, rate: f64, min: Duration, max: Duration) -> Self {
        self.rates.latency = rate;
        self.rates.latency_min = min;
        self.rates.latency_max = max;
        self
    }

    /// Whether faults are injected from the start (default `true`).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The seed of the draws: the same seed and order of calls gives the
    /// same faults.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<ChaosLayer<R>, ConfigError> {
        self.rates.validate(self.can_respond)?;
        Ok(ChaosLayer {
            settings: Arc::new(Settings::new(
                self.name,
                self.rates,
                self.enabled,
                self.seed,
            )),
            respond: self.respond,
            can_respond: self.can_respond,
        })
    }
}

impl<R> fmt::Debug for ChaosLayerBuilder<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosLayerBuilder")
            .field("rates", &self.rates)
            .field("enabled", &self.enabled)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}
