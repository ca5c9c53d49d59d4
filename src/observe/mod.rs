//! What the layers decide, for operators: tracing spans and events,
//! metrics, listeners, slow-call alerts, snapshots for health endpoints.
//!
//! Nothing here costs anything on the success path of a call unless it is
//! asked for: events are made only where a layer decides something (a
//! retry, a transition, a refusal, a fallback, a hedge), tracing's callsite
//! interest skips them when no subscriber wants them, an empty set of
//! listeners is one branch, and a decision counted in metrics finds the
//! handle its layer keeps, without allocating. An observe layer watches a
//! call (its span and context, which every event inside carries) only
//! when that layer is asked to:
//!
//! - it has listeners, a slow-call threshold or call metrics;
//! - a layer it wraps has listeners of its own (a breaker's
//!   [`on_event`](crate::circuit_breaker::CircuitBreakerBuilder::on_event)),
//!   which read the call's context;
//! - or the subscriber wants its own callsites: the `call` span at DEBUG
//!   on `steadfast::observe` (`tracing::enabled!`, cached per callsite by
//!   tracing).
//!
//! A subscriber at INFO, or listeners on another policy, leave its calls
//! untouched; events made inside them then carry no `policy`, `route` or
//! `request_id`. A watched call costs one allocation (its context) on top
//! of what the subscriber or recorder does.
//!
//! # Calls
//!
//! An [`ObserveLayer`] (outermost; a [`Policy`](crate::policy::Policy)
//! adds one with [`observe`](crate::policy::PolicyBuilder::observe)) makes
//! one span per logical call and a [`CallContext`] that every layer inside
//! the call sees: its policy, route and [`RequestId`] (read from a header
//! such as `x-request-id` with [`RequestIdHeader`], or generated). Every
//! event of the call carries them; listeners read them with
//! [`CallContext::current`]. A call that takes longer than its route's
//! [`slow_call`](ObserveLayerBuilder::slow_call) threshold makes a warning,
//! even when it succeeds.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use steadfast::observe::{Event, ObserveLayer};
//! use steadfast::retry::{Backoff, RetryLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let log = Arc::clone(&seen);
//! let observe = ObserveLayer::builder("inventory")
//!     .route("/items/{id}")
//!     .slow_call(Duration::from_millis(500))
//!     .on_event(move |event| log.lock().unwrap().push(event.kind()))
//!     .build()?;
//! let tries = Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let service = ServiceBuilder::new()
//!     .layer(observe)
//!     .layer(RetryLayer::builder().backoff(Backoff::constant(Duration::from_millis(10))).build()?)
//!     .service(service_fn(move |x: u32| {
//!         let n = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
//!         async move { if n == 0 { Err("reset".into()) } else { Ok::<_, steadfast::BoxError>(x) } }
//!     }));
//! assert_eq!(service.oneshot(7).await?, 7);
//! assert_eq!(*seen.lock().unwrap(), ["retry_scheduled", "call_ended"]);
//! # Ok(())
//! # }
//! ```
//!
//! # Tracing
//!
//! | target | level | what | fields |
//! |---|---|---|---|
//! | `steadfast::observe` | DEBUG | span `call`, one per logical call | `policy`, `route`, `request_id`; at the end `verdict`, `attempts`, `elapsed_ms` |
//! | `steadfast::observe` | WARN | slow call | `policy`, `route`, `request_id`, `verdict`, `elapsed_ms`, `threshold_ms` |
//! | `steadfast::observe` | TRACE | attempt ended (each attempt a retry layer sends) | `policy`, `route`, `request_id`, `attempt`, `verdict` |
//! | `steadfast::retry` | DEBUG | retry scheduled | `layer = "retry"`, `name`, `attempt`, `verdict`, `delay_ms` |
//! | `steadfast::retry` | WARN / DEBUG | retry budget spent / not retrying | `name`, `attempt`, `verdict`, `reason` |
//! | `steadfast::circuit_breaker` | WARN | breaker opened | `layer`, `name`, `key`, `from`, `to`, `state`, `reason`, `delay_ms` (open period) |
//! | `steadfast::circuit_breaker` | INFO | other transitions | `layer`, `name`, `key`, `from`, `to`, `state`, `reason` |
//! | `steadfast::{circuit_breaker,bulkhead,rate_limit,timeout}` | DEBUG | call refused | `layer`, `name`, `key`, `kind`, `delay_ms` (retry after) |
//! | `steadfast::rate_limit` | DEBUG | call delayed | `layer`, `tier`, `delay_ms` |
//! | `steadfast::fallback` | INFO / WARN | fallback answered / none answered | `layer`, `name`, `source`, `verdict`, `reason`, `age_ms` |
//! | `steadfast::hedge` | DEBUG | copy sent / hedged copy won | `layer`, `name`, `copy`, `delay_ms` |
//!
//! Inside a watched call, every event also has `policy`, `route` and
//! `request_id`.
//!
//! # Metrics (feature `metrics`)
//!
//! Through the [`metrics`](https://docs.rs/metrics) facade; durations in
//! seconds. The decision metrics are on whenever the feature is; the
//! per-call ones (`steadfast_calls_total`, `steadfast_call_duration_seconds`,
//! `steadfast_attempts_total`, `steadfast_attempt_duration_seconds`) are
//! recorded by an observe layer with
//! [`metrics(true)`](ObserveLayerBuilder::metrics), as they read the clock
//! twice per call. Handles of the per-call metrics, the breaker state and
//! the bulkhead gauges are registered when their layer is built (or a
//! keyed breaker's key first seen); those of a decision (a refusal, a
//! retry, a transition) the first time a breaker, bulkhead, retry layer or
//! watched call makes it, and kept by that layer: install the recorder
//! before building layers. A keyed breaker's key that is evicted takes its
//! state series with it: its six gauges read 0 (the `metrics` facade has
//! no way to unregister a series; exporters that drop idle series, such
//! as the Prometheus exporter with an idle timeout, drop it).
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `steadfast_calls_total` | counter | `policy`, `route`, `verdict` |
//! | `steadfast_call_duration_seconds` | histogram | `policy`, `route`, `verdict` |
//! | `steadfast_attempts_total` | counter | `policy`, `route`, `verdict` |
//! | `steadfast_attempt_duration_seconds` | histogram | `policy`, `route`, `verdict` |
//! | `steadfast_retries_total` | counter | `policy`, `route`, `name`, `verdict` |
//! | `steadfast_retries_stopped_total` | counter | `policy`, `route`, `name`, `reason` |
//! | `steadfast_rejections_total` | counter | `policy`, `route`, `kind`, `name` |
//! | `steadfast_circuit_breaker_state` | gauge | `name`, `key`, `state` (exactly one state is 1) |
//! | `steadfast_circuit_breaker_transitions_total` | counter | `name`, `from`, `to`, `reason` |
//! | `steadfast_bulkhead_in_flight` | gauge | `name` (the keys of a keyed bulkhead add up) |
//! | `steadfast_rate_limited_total` | counter | `tier`, `outcome` (`rejected`, `delayed`) |
//! | `steadfast_fallbacks_total` | counter | `policy`, `route`, `name`, `source` |
//! | `steadfast_hedges_sent_total`, `steadfast_hedges_won_total` | counter | `policy`, `route`, `name` |
//! | `steadfast_slow_calls_total` | counter | `policy`, `route` |
//!
//! `verdict` is one of `success`, `functional_error`, `transient`,
//! `failure`, `rejected`. `policy` and `route` are those of the watched
//! call a decision was made in: empty outside one, and for calls an
//! observe layer lets through untouched (see below); an observe layer with
//! call metrics on always watches.
//!
//! # Listeners
//!
//! [`ObserveLayerBuilder::on_event`] receives every [`Event`] inside the
//! calls it watches; a breaker's
//! [`on_event`](crate::circuit_breaker::CircuitBreakerBuilder::on_event)
//! receives that breaker's transitions and refusals, also those forced
//! through its handle outside any call.
//!
//! # Snapshots
//!
//! [`Health`] gathers the handles of breakers, bulkheads, rate limiters
//! and policies under names; [`Health::snapshot`] reads them all at once,
//! for a health endpoint (serialisable with the `serde` feature).

mod deadline;
mod health;
mod layer;
mod request_id;
mod service;
mod watch;

pub use self::deadline::{DeadlineResponseFuture, ObserveDeadline};
pub use self::health::{
    AdaptiveStatus, BreakerStatus, BudgetStatus, BulkheadStatus, Health, HealthSnapshot,
    LimiterStatus, PolicyStatus, Status,
};
pub use self::layer::{ObserveLayer, ObserveLayerBuilder};
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use self::request_id::RequestIdHeader;
pub use self::request_id::{GenerateRequestId, MakeRequestId};
pub use self::service::{Observe, ResponseFuture};
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use crate::event::metrics;
pub use crate::event::{
    CallContext, ChaosFault, Event, HedgeRefusal, KeyUsage, LimitReason, Listeners, Rejection,
    RequestId, RetryStopReason, SkipReason, StoreStatus, TimeoutReason, TransitionReason,
};

pub(crate) use self::layer::ObserveSettings;
