use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::state::{Limiter, LimiterSettings, Node};
use super::{Adaptive, AdaptiveHandle, Algorithm, Throttle};
use crate::classify::DefaultClassifier;
use crate::error::{ConfigError, check};

/// Applies an [`Adaptive`] limiter to services.
///
/// Every service this layer makes, and every clone of them, shares one
/// limiter. Built with [`AdaptiveLayer::builder`].
pub struct AdaptiveLayer<C = DefaultClassifier> {
    node: Arc<Node<C>>,
}

impl AdaptiveLayer {
    /// A builder with the defaults: the [`Gradient`](super::Gradient) algorithm, limits 3 to
    /// 1,000 starting at 20, windows of 100 ms and at least 10 calls, no
    /// throttling; see [`AdaptiveLayerBuilder`] for the reasons.
    pub fn builder() -> AdaptiveLayerBuilder {
        AdaptiveLayerBuilder {
            settings: Settings::default(),
            classifier: DefaultClassifier,
        }
    }
}

impl<C> AdaptiveLayer<C> {
    /// A view of the limiter.
    pub fn handle(&self) -> AdaptiveHandle {
        AdaptiveHandle::new(Arc::clone(&self.node.limiter))
    }
}

impl<C> Clone for AdaptiveLayer<C> {
    fn clone(&self) -> Self {
        Self {
            node: Arc::clone(&self.node),
        }
    }
}

impl<S, C> Layer<S> for AdaptiveLayer<C> {
    type Service = Adaptive<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Adaptive {
            inner,
            node: Arc::clone(&self.node),
        }
    }
}

impl<C> fmt::Debug for AdaptiveLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AdaptiveLayer")
            .field(&self.node.limiter)
            .finish()
    }
}

/// Settings of an adaptive limiter, checked by
/// [`build`](AdaptiveLayerBuilder::build).
///
/// The defaults and why:
///
/// | setting | default | why |
/// |---|---|---|
/// | algorithm | [`Gradient`](super::Gradient) | reacts to queueing before anything fails; AIMD needs drops |
/// | `min_limit` | 3 | Envoy's minimum concurrency: the first no-load round-trip time is measured at it (later ones at what the dependency served without a queue, at least this), so it must stay below any dependency's capacity |
/// | `max_limit` | 1,000 | Envoy's maximum; a bound on the damage of a wrong estimate |
/// | `initial_limit` | 20 | Netflix concurrency-limits' initial limit |
/// | `window` | 100 ms | Envoy's update interval: ten moves a second |
/// | `min_samples` | 10 | a window (and a probe) ends only after 10 calls, so that one call's round-trip time does not move the limit |
/// | throttle | off | it refuses calls that would have succeeded, up to half of them, while it learns |
///
/// ```
/// use std::time::Duration;
/// use steadfast::adaptive::{AdaptiveLayer, Aimd};
///
/// let adaptive = AdaptiveLayer::builder()
///     .aimd(Aimd::default())
///     .limits(5, 500)
///     .initial_limit(50)
///     .window(Duration::from_millis(200))
///     .name("inventory")
///     .build()?;
/// assert_eq!(adaptive.handle().limit(), 50);
///
/// let err = AdaptiveLayer::builder().limits(5, 500).initial_limit(1).build().unwrap_err();
/// assert_eq!(err.field(), "adaptive.initial_limit");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct AdaptiveLayerBuilder<C = DefaultClassifier> {
    pub(super) settings: Settings,
    pub(super) classifier: C,
}

impl<C> fmt::Debug for AdaptiveLayerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLayerBuilder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) algorithm: Algorithm,
    pub(super) initial: usize,
    pub(super) min: usize,
    pub(super) max: usize,
    pub(super) window: Duration,
    pub(super) min_samples: u64,
    pub(super) throttle: Option<Throttle>,
    pub(super) name: Cow<'static, str>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::default(),
            initial: 20,
            min: 3,
            max: 1_000,
            window: Duration::from_millis(100),
            min_samples: 10,
            throttle: None,
            name: Cow::Borrowed("adaptive"),
        }
    }
}

impl Settings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        self.algorithm.check()?;
        check::at_least("adaptive.min_limit", self.min, 1)?;
        if self.max < self.min {
            return Err(ConfigError::conflict(
                "adaptive.max_limit",
                self.max,
                "adaptive.min_limit",
                self.min,
                "the highest limit must be at least the lowest",
            ));
        }
        if !(self.min..=self.max).contains(&self.initial) {
            return Err(ConfigError::new(
                "adaptive.initial_limit",
                self.initial,
                format!("must be within [{}, {}]", self.min, self.max),
            ));
        }
        check::positive("adaptive.window", self.window)?;
        check::at_least("adaptive.min_samples", self.min_samples, 1)?;
        if let Some(throttle) = &self.throttle {
            throttle.check()?;
        }
        Ok(())
    }

    pub(super) fn limiter(&self) -> Limiter {
        Limiter::new(&LimiterSettings {
            algorithm: self.algorithm,
            initial: self.initial,
            min: self.min,
            max: self.max,
            window: self.window,
            min_samples: self.min_samples,
            throttle: self.throttle,
            name: self.name.clone(),
        })
    }

    /// Names the overflow limiter of a keyed layer.
    pub(super) fn name_overflow(&mut self) {
        self.name = Cow::Owned(format!("{}.overflow", self.name));
    }
}

macro_rules! settings_methods {
    () => {
        /// Moves the limit with the [`Gradient`](super::Gradient) algorithm
        /// (the default).
        pub fn gradient(mut self, gradient: super::Gradient) -> Self {
            self.settings.algorithm = super::Algorithm::Gradient(gradient);
            self
        }

        /// Moves the limit with the [`Aimd`](super::Aimd) algorithm.
        pub fn aimd(mut self, aimd: super::Aimd) -> Self {
            self.settings.algorithm = super::Algorithm::Aimd(aimd);
            self
        }

        /// The lowest and highest limit (default 3 and 1,000). The lowest
        /// must be at least 1 and below the dependency's capacity.
        pub fn limits(mut self, min: usize, max: usize) -> Self {
            self.settings.min = min;
            self.settings.max = max;
            self
        }

        /// The limit to start from (default 20), within the limits.
        pub fn initial_limit(mut self, limit: usize) -> Self {
            self.settings.initial = limit;
            self
        }

        /// The shortest window between two moves of the limit (default
        /// 100 ms).
        pub fn window(mut self, window: std::time::Duration) -> Self {
            self.settings.window = window;
            self
        }

        /// The fewest calls a window (or a probe) needs before it moves the
        /// limit (default 10, at least 1).
        pub fn min_samples(mut self, samples: u64) -> Self {
            self.settings.min_samples = samples;
            self
        }

        /// Refuses calls locally as the dependency accepts fewer of them;
        /// see [`Throttle`](super::Throttle).
        pub fn throttle(mut self, throttle: super::Throttle) -> Self {
            self.settings.throttle = Some(throttle);
            self
        }

        /// A name for events and metrics (default `"adaptive"`).
        pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
            self.settings.name = name.into();
            self
        }
    };
}
pub(super) use settings_methods;

impl<C> AdaptiveLayerBuilder<C> {
    settings_methods!();

    /// Judges calls with `classifier`: a success or a functional error is
    /// a round-trip sample, a failure a drop, a rejection nothing.
    pub fn classifier<C2>(self, classifier: C2) -> AdaptiveLayerBuilder<C2> {
        AdaptiveLayerBuilder {
            settings: self.settings,
            classifier,
        }
    }

    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// A limit of zero, `adaptive.max_limit` below `adaptive.min_limit`,
    /// `adaptive.initial_limit` outside them, a zero window or sample
    /// count, or an algorithm or throttle setting out of its range.
    pub fn build(self) -> Result<AdaptiveLayer<C>, ConfigError> {
        self.settings.check()?;
        Ok(AdaptiveLayer {
            node: Arc::new(Node::new(self.settings.limiter(), self.classifier)),
        })
    }
}
