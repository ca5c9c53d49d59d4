use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use tower_layer::Layer;

use super::state::{QueueOrder, Shared};
use super::{Bulkhead, BulkheadHandle};
use crate::error::{ConfigError, check};
use crate::stripe::Spread;

/// Applies a [`Bulkhead`] to services: at most `max_concurrent` calls in
/// flight at once.
///
/// Every service this layer makes, and every clone of them, shares one set
/// of permits. Built with [`BulkheadLayer::builder`].
pub struct BulkheadLayer {
    shared: Spread<Shared>,
}

impl Clone for BulkheadLayer {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.root(),
        }
    }
}

impl BulkheadLayer {
    /// A builder with the defaults: 25 concurrent calls, no waiting.
    pub fn builder() -> BulkheadLayerBuilder {
        BulkheadLayerBuilder::default()
    }

    /// A view of the bulkhead's permits and waiters.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(self.shared.to_arc())
    }
}

impl<S> Layer<S> for BulkheadLayer {
    type Service = Bulkhead<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::from_shared(inner, self.shared.root())
    }
}

impl fmt::Debug for BulkheadLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BulkheadLayer").field(&self.shared).finish()
    }
}

/// Settings of a bulkhead, checked by [`build`](BulkheadLayerBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use steadfast::bulkhead::BulkheadLayer;
///
/// let bulkhead = BulkheadLayer::builder()
///     .max_concurrent(100)
///     .max_wait(Duration::from_millis(20))
///     .queue(50)
///     .name("search")
///     .build()?;
/// assert_eq!(bulkhead.handle().max_concurrent(), 100);
///
/// let err = BulkheadLayer::builder().max_concurrent(0).build().unwrap_err();
/// assert_eq!(err.field(), "bulkhead.max_concurrent");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct BulkheadLayerBuilder {
    pub(super) settings: Settings,
}

#[derive(Debug, Clone)]
pub(super) struct Settings {
    max_concurrent: usize,
    max_wait: Duration,
    queue: Option<usize>,
    order: QueueOrder,
    name: Cow<'static, str>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_concurrent: 25,
            max_wait: Duration::ZERO,
            queue: None,
            order: QueueOrder::OldestFirst,
            name: Cow::Borrowed("bulkhead"),
        }
    }
}

impl Settings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        check::at_least("bulkhead.max_concurrent", self.max_concurrent, 1)?;
        Ok(())
    }

    pub(super) fn name(&self) -> &Cow<'static, str> {
        &self.name
    }

    pub(super) fn shared(&self) -> Shared {
        Shared::new(
            self.max_concurrent,
            self.max_wait,
            self.queue.unwrap_or(usize::MAX),
            self.order,
            self.name.clone(),
        )
    }
}

macro_rules! settings_methods {
    () => {
        /// The most calls in flight at once (default 25). Must be at least 1.
        pub fn max_concurrent(mut self, permits: usize) -> Self {
            self.settings.set_max_concurrent(permits);
            self
        }

        /// How long a call may wait for a free permit (default zero: a call
        /// that finds every permit taken is refused at once).
        pub fn max_wait(mut self, max_wait: Duration) -> Self {
            self.settings.set_max_wait(max_wait);
            self
        }

        /// The most calls that may wait for a permit at once (default: no
        /// bound). A call that finds the queue full is refused at once.
        /// Has no effect when `max_wait` is zero.
        pub fn queue(mut self, waiters: usize) -> Self {
            self.settings.set_queue(waiters);
            self
        }

        /// Which waiter a returned permit goes to (default
        /// [`QueueOrder::OldestFirst`](crate::bulkhead::QueueOrder::OldestFirst)). A returned permit always goes to a
        /// waiter before any newcomer.
        pub fn order(mut self, order: crate::bulkhead::QueueOrder) -> Self {
            self.settings.set_order(order);
            self
        }

        /// A name for events (default `"bulkhead"`).
        pub fn name(mut self, name: impl Into<std::borrow::Cow<'static, str>>) -> Self {
            self.settings.set_name(name.into());
            self
        }
    };
}
pub(super) use settings_methods;

impl Settings {
    pub(super) fn set_max_concurrent(&mut self, permits: usize) {
        self.max_concurrent = permits;
    }

    pub(super) fn set_max_wait(&mut self, max_wait: Duration) {
        self.max_wait = max_wait;
    }

    pub(super) fn set_queue(&mut self, waiters: usize) {
        self.queue = Some(waiters);
    }

    pub(super) fn set_order(&mut self, order: QueueOrder) {
        self.order = order;
    }

    pub(super) fn set_name(&mut self, name: Cow<'static, str>) {
        self.name = name;
    }
}

impl BulkheadLayerBuilder {
    settings_methods!();

    /// The name set so far.
    pub(crate) fn name_set(&self) -> &str {
        self.settings.name()
    }

    /// Checks the settings and makes the layer.
    ///
    /// # Errors
    ///
    /// `bulkhead.max_concurrent` is zero.
    pub fn build(self) -> Result<BulkheadLayer, ConfigError> {
        self.settings.check()?;
        Ok(BulkheadLayer {
            shared: Spread::new(self.settings.shared()),
        })
    }
}
