use std::fmt;

use tower_layer::Layer;

use super::CircuitBreaker;
use super::config::{CircuitBreakerBuilder, Single};
use super::handle::{CircuitBreakerHandle, Shared};
use super::state::Breaker;
use crate::classify::DefaultClassifier;
use crate::error::ConfigError;
use crate::stripe::Spread;

/// Wraps services in a [`CircuitBreaker`]; every service it makes, and
/// every clone of it, shares one breaker.
///
/// See the [module docs](super) for an example.
pub struct CircuitBreakerLayer<C = DefaultClassifier> {
    shared: Spread<Shared<C>>,
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
            shared: Spread::new(Shared {
                breaker: Breaker::new(settings, None),
                classifier: self.classifier,
            }),
        })
    }
}

impl<C: Send + Sync + 'static> CircuitBreakerLayer<C> {
    /// A handle on the breaker this layer's services share.
    pub fn handle(&self) -> CircuitBreakerHandle {
        CircuitBreakerHandle::new(self.shared.to_arc())
    }
}

impl<S, C> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        if !self.shared.breaker.settings.listeners.is_empty() {
            crate::event::context::listeners_layered();
        }
        CircuitBreaker::from_shared(inner, self.shared.root())
    }
}

impl<C> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.root(),
        }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("name", &self.shared.breaker.settings.name)
            .field("state", &self.shared.breaker.state())
            .finish()
    }
}
