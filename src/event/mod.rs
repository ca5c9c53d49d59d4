//! The vocabulary every layer speaks when it decides something: the
//! [`Event`], its [`Listeners`], the context of a watched call
//! ([`CallContext`], [`RequestId`]), the metric handles, and the values
//! events carry ([`State`], [`FallbackSource`]).
//!
//! This module sits below every layer and above the primitives only: the
//! layers report through it, and [`observe`](crate::observe) (the observe
//! layer and health snapshots) reads it from above. The items are also
//! exported where users meet them: [`observe::Event`](crate::event::Event),
//! [`circuit_breaker::State`](crate::circuit_breaker::State),
//! [`fallback::FallbackSource`](crate::fallback::FallbackSource).

pub(crate) mod context;
mod emit;
#[allow(clippy::module_inception)]
mod event;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub(crate) mod scope;
mod status;
mod values;

pub use self::context::{CallContext, RequestId};
pub use self::event::{
    ChaosFault, Event, HedgeRefusal, LimitReason, Listeners, Rejection, RetryStopReason,
    SkipReason, TimeoutReason, TransitionReason,
};
pub use self::status::{KeyUsage, StoreStatus};
pub use self::values::{FallbackSource, Reason as FallbackReason, State, Stop, StopReason};

pub(crate) use self::context::{attempt_ended, attempt_started};
pub(crate) use self::emit::{Decisions, emit, emit_counted, heard};
#[cfg(feature = "http")]
pub(crate) use self::scope::layering_route;
