//! Fault injection, for tests, demos and drills.
//!
//! [`ChaosLayer`] makes a healthy service misbehave on purpose, at rates you
//! choose and can change while it runs:
//!
//! - **error**: the call fails at once with [`InjectedFault`], without
//!   reaching the service (as a reset connection would);
//! - **hang**: the call never answers, until a timeout gives up on it;
//! - **respond**: the call is answered by a response you give (say, a 503
//!   with `Retry-After`) instead of the service;
//! - **latency**: the outcome, whatever it is, is held back by a delay drawn
//!   between a least and a most.
//!
//! The three faults that replace the call are exclusive (their rates add up
//! to at most 1); latency is drawn on its own. Draws come from a seeded
//! generator, so the same seed and order of calls gives the same faults.
//! A [`ChaosHandle`] switches faults on and off, changes the rates, and
//! counts what was injected.
//!
//! ```
//! use std::time::Duration;
//! use steadfast::chaos::{ChaosLayer, InjectedFault};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let chaos = ChaosLayer::builder().error_rate(1.0).seed(7).build()?;
//! let handle = chaos.handle();
//! let mut svc = chaos.layer(service_fn(|n: u32| async move { Ok::<_, steadfast::BoxError>(n) }));
//!
//! let err = svc.ready().await?.call(1).await.unwrap_err();
//! assert!(err.is::<InjectedFault>());
//!
//! handle.disable();
//! assert_eq!(svc.ready().await?.call(2).await?, 2);
//! assert_eq!(handle.stats().errors, 1);
//! # Ok(())
//! # }
//! ```
//!
//! A brownout: a fifth of calls answered 503, a tenth slowed down.
//!
//! ```
//! use std::time::Duration;
//! use steadfast::chaos::ChaosLayer;
//!
//! # fn main() -> Result<(), steadfast::ConfigError> {
//! let brownout = ChaosLayer::builder()
//!     .respond(0.2, || (503_u16, "busy"))
//!     .latency(0.1, Duration::from_millis(200), Duration::from_millis(800))
//!     .seed(42)
//!     .build()?;
//! let handle = brownout.handle();
//! handle.set_respond_rate(0.5)?; // worse
//! assert!(handle.set_error_rate(0.6).is_err()); // 0.5 + 0.6 > 1
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tower_service::Service;

use crate::error::{BoxError, ConfigError};

pub mod future;
mod layer;
mod settings;

pub use self::layer::{ChaosLayer, ChaosLayerBuilder};
use self::settings::{Fault, Rates, Settings};

/// The error of a call failed on purpose by a [`ChaosLayer`]. A transient
/// failure to the default classifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectedFault(());

impl InjectedFault {
    /// Creates the error.
    pub const fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("injected fault")
    }
}

impl std::error::Error for InjectedFault {}

/// Gives the response of a call answered by the chaos layer itself.
///
/// Closures `Fn() -> Res` implement it.
pub trait Respond<Res> {
    /// The response to give, or `None` to call the service after all.
    fn respond(&self) -> Option<Res>;
}

/// Gives no response: the layer only fails, hangs or delays calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoResponse;

impl<Res> Respond<Res> for NoResponse {
    fn respond(&self) -> Option<Res> {
        None
    }
}

impl<F, Res> Respond<Res> for F
where
    F: Fn() -> Res,
{
    fn respond(&self) -> Option<Res> {
        Some(self())
    }
}

/// Injects faults into the calls of the inner service. Made by
/// [`ChaosLayer`].
pub struct Chaos<S, R = NoResponse> {
    inner: S,
    settings: Arc<Settings>,
    respond: R,
}

impl<S, R> Chaos<S, R> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &ChaosLayer<R>) -> Self
    where
        ChaosLayer<R>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, R> Chaos<S, R> {
    fn from_parts(inner: S, settings: Arc<Settings>, respond: R) -> Self {
        Self {
            inner,
            settings,
            respond,
        }
    }
}

impl<S: Clone, R: Clone> Clone for Chaos<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            settings: Arc::clone(&self.settings),
            respond: self.respond.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for Chaos<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<S, Req, R> Service<Req> for Chaos<S, R>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    R: Respond<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = future::ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let (fault, delay) = self.settings.draw();
        if fault != Fault::Pass || delay.is_some() {
            injected(&self.settings, fault, delay);
        }
        match fault {
            Fault::Pass => future::ResponseFuture::inner(self.inner.call(request), delay),
            Fault::Error => {
                future::ResponseFuture::outcome(Err(Box::new(InjectedFault::new())), delay)
            }
            Fault::Hang => future::ResponseFuture::hang(),
            Fault::Respond => match self.respond.respond() {
                Some(response) => future::ResponseFuture::outcome(Ok(response), delay),
                None => future::ResponseFuture::inner(self.inner.call(request), delay),
            },
        }
    }
}

/// Reports an injected fault or delay.
#[cold]
fn injected(settings: &Settings, fault: Fault, delay: Option<Duration>) {
    crate::event::emit_counted(
        &settings.decisions,
        &crate::event::Listeners::none(),
        &crate::event::Event::FaultInjected {
            name: &settings.name,
            fault: fault.event(),
            delay,
        },
    );
}

/// Reads and changes a chaos layer while its services run. Cloneable.
#[derive(Clone)]
pub struct ChaosHandle {
    settings: Arc<Settings>,
    can_respond: bool,
}

/// What a chaos layer has injected so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ChaosStats {
    /// Calls seen, faulted or not.
    pub calls: u64,
    /// Calls failed with [`InjectedFault`].
    pub errors: u64,
    /// Calls that never answered.
    pub hangs: u64,
    /// Calls answered by the layer's own response.
    pub responses: u64,
    /// Calls whose outcome was held back by added latency.
    pub delayed: u64,
}

impl ChaosHandle {
    fn new(settings: Arc<Settings>, can_respond: bool) -> Self {
        Self {
            settings,
            can_respond,
        }
    }

    /// Starts injecting faults.
    pub fn enable(&self) {
        self.settings.set_enabled(true);
    }

    /// Stops injecting faults: every call goes to the service as it is.
    pub fn disable(&self) {
        self.settings.set_enabled(false);
    }

    /// Whether faults are being injected.
    pub fn is_enabled(&self) -> bool {
        self.settings.is_enabled()
    }

    fn update(&self, change: impl FnOnce(&mut Rates)) -> Result<(), ConfigError> {
        let mut rates = self.settings.load();
        change(&mut rates);
        rates.validate(self.can_respond)?;
        self.settings.store(rates);
        Ok(())
    }

    /// Sets the share of calls failed with [`InjectedFault`].
    pub fn set_error_rate(&self, rate: f64) -> Result<(), ConfigError> {
        self.update(|r| r.error = rate)
    }

    /// Sets the share of calls that never answer.
    pub fn set_hang_rate(&self, rate: f64) -> Result<(), ConfigError> {
        self.update(|r| r.hang = rate)
    }

    /// Sets the share of calls answered by the layer's own response.
    pub fn set_respond_rate(&self, rate: f64) -> Result<(), ConfigError> {
        self.update(|r| r.respond = rate)
    }

    /// Sets the share of calls held back, and the range of the delay.
    pub fn set_latency(&self, rate: f64, min: Duration, max: Duration) -> Result<(), ConfigError> {
        self.update(|r| {
            r.latency = rate;
            r.latency_min = min;
            r.latency_max = max;
        })
    }

    /// Sets every fault rate to zero (and keeps the layer enabled).
    pub fn heal(&self) {
        self.settings.store(Rates {
            error: 0.0,
            hang: 0.0,
            respond: 0.0,
            latency: 0.0,
            ..self.settings.load()
        });
    }

    /// What was injected so far.
    pub fn stats(&self) -> ChaosStats {
        let s = &self.settings;
        ChaosStats {
            calls: s.calls.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            hangs: s.hangs.load(Ordering::Relaxed),
            responses: s.responses.load(Ordering::Relaxed),
            delayed: s.delayed.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for ChaosHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosHandle")
            .field("enabled", &self.is_enabled())
            .field("rates", &self.settings.load())
            .field("stats", &self.stats())
            .finish()
    }
}
