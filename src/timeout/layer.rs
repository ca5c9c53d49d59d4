use std::borrow::Cow;
use std::time::Duration;

use tower_layer::Layer;

use super::{NoStamp, Timeout, TotalDeadline};
use crate::error::{ConfigError, check};

/// Applies an attempt timeout to the inner service. See [`Timeout`].
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    timeout: Duration,
    // Its name (default `"timeout"`) and series.
    name: super::Name,
}

impl TimeoutLayer {
    /// Each attempt may take at most `timeout`; it must be greater than zero.
    ///
    /// An attempt is always cut at the total [`Deadline`](super::Deadline)
    /// in force, whatever its own timeout: `Duration::MAX` (or any timeout
    /// longer than the time left) means "no bound of its own", never "no
    /// bound at all". A policy without an attempt timeout has no attempt
    /// level at all.
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        Ok(Self {
            timeout: check::positive("timeout.attempt", timeout)?,
            name: super::Named::new(None),
        })
    }

    /// The name its log lines carry (default `"timeout"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = super::Named::new(Some(&name.into()));
        self
    }

    /// The attempt timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout::from_parts(inner, self.timeout, self.name.clone())
    }
}

/// Bounds the whole logical call. See [`TotalDeadline`].
#[derive(Debug, Clone)]
pub struct TotalDeadlineLayer<St = NoStamp> {
    total: Duration,
    stamp: St,
    // Its name (default `"total_deadline"`) and series.
    name: super::Name,
}

impl TotalDeadlineLayer {
    /// The whole call, every attempt and backoff included, may take at most
    /// `total`; it must be greater than zero.
    pub fn new(total: Duration) -> Result<Self, ConfigError> {
        Ok(Self {
            total: check::positive("timeout.total", total)?,
            stamp: NoStamp,
            name: super::Named::new(None),
        })
    }
}

impl<St> TotalDeadlineLayer<St> {
    /// The total timeout.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// The name its [`Rejected`](crate::observe::Event::Rejected) events
    /// carry (default `"total_deadline"`).
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.name = super::Named::new(Some(&name.into()));
        self
    }

    /// Also writes the deadline into each request with `stamp`.
    pub fn stamp<T>(self, stamp: T) -> TotalDeadlineLayer<T> {
        TotalDeadlineLayer {
            total: self.total,
            stamp,
            name: self.name,
        }
    }

    /// Also inserts the [`Deadline`](super::Deadline) into each HTTP
    /// request's extensions.
    #[cfg(feature = "http")]
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn stamp_extensions(self) -> TotalDeadlineLayer<super::ExtensionStamp> {
        self.stamp(super::ExtensionStamp)
    }
}

impl<S, St: Clone> Layer<S> for TotalDeadlineLayer<St> {
    type Service = TotalDeadline<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        TotalDeadline::from_parts(inner, self.total, self.stamp.clone(), self.name.clone())
    }
}
