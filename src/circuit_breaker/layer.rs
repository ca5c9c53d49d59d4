use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::CircuitBreaker;
use super::config::{CircuitBreakerBuilder, Single};
use super::handle::{CircuitBreakerHandle, Lanes, Shared};
use super::state::Breaker;
use crate::classify::DefaultClassifier;
use crate::error::ConfigError;

/// Wraps services in a [`CircuitBreaker`]; every service it makes, and
/// every clone of it, shares one breaker.
///
/// See the [module docs](super) for an example.
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    lanes: Arc<Lanes<C>>,
}

impl CircuitBreakerLayer {
    /// Starts a builder with the default settings and classifier.
    pub fn builder() -> CircuitBreakerBuilder {
        CircuitBreakerBuilder::with_mode(Single)
    }
}

impl<C> CircuitBreakerBuilder<C, Single> {
    /// Checks the settings and makes the layer.
    pub fn build(self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        let settings = self.settings()?;
        Ok(CircuitBreakerLayer {
            lanes: Arc::new(Lanes::new(Arc::new(Shared {
                breaker: Breaker::new(settings, None),
                classifier: self.classifier,
            }))),
        })
    }
}

impl<C: Send + Sync + 'static> CircuitBreakerLayer<C> {
    /// A handle on the breaker this layer's services share.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.lanes.shared.clone())
    }
}

impl<S, C> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        if !self.lanes.shared.breaker.settings.listeners.is_empty() {
            crate::event::context::listeners_layered();
        }
        CircuitBreaker::from_lanes(inner, self.lanes.clone())
    }
}

impl<C> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            lanes: self.lanes.clone(),
        }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("name", &self.lanes.shared.breaker.settings.name)
            .field("state", &self.lanes.shared.breaker.state())
            .finish()
    }
}
