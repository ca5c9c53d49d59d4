use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::state::Shared;

/// A cloneable view of one bulkhead's permits and waiters.
///
/// Got from [`BulkheadLayer::handle`](super::BulkheadLayer::handle) or
/// [`Bulkhead::handle`](super::Bulkhead::handle).
#[derive(Clone)]
pub struct BulkheadHandle {
    shared: Arc<Shared>,
}

impl BulkheadHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Calls holding a permit now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.shared
            .max_concurrent()
            .saturating_sub(self.shared.in_flight())
    }

    /// The most calls in flight at once.
    pub fn max_concurrent(&self) -> usize {
        self.shared.max_concurrent()
    }

    /// Calls waiting for a permit now.
    pub fn waiting(&self) -> usize {
        self.shared.waiting()
    }

    /// The longest a call waits for a permit.
    pub fn max_wait(&self) -> Duration {
        self.shared.max_wait()
    }

    /// The most calls that may wait at once (`usize::MAX` when unbounded).
    pub fn queue(&self) -> usize {
        self.shared.queue()
    }

    /// The bulkhead's name, as used in events.
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// The key this bulkhead is for, in a keyed bulkhead (`(overflow)` for
    /// the one shared by keys that found no room); `None` for a bulkhead
    /// of its own.
    pub fn key(&self) -> Option<&str> {
        self.shared.key()
    }
}

impl fmt::Debug for BulkheadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BulkheadHandle").field(&self.shared).finish()
    }
}
