//! A governor clock that reads tokio's clock, so that limits follow paused
//! time in tests.

use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

/// A reading of tokio's clock, as governor wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TokioInstant(pub(crate) Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;

    fn add(self, other: Nanos) -> Self {
        // Never panics: a sum past what `Instant` can hold stays put.
        let other: Duration = other.into();
        Self(self.0.checked_add(other).unwrap_or(self.0))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        let duration: Duration = duration.into();
        self.0.checked_sub(duration).map_or(*self, Self)
    }
}

/// Governor's clock over [`tokio::time::Instant`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;

    #[inline]
    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}
