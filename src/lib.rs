//! Composable [tower] layers that make any service fault tolerant.
//!
//! A failing dependency should cost its callers a bounded amount of time,
//! work and load, and nothing more. `steadfast` gives each of the classic
//! fault-tolerance patterns as a tower layer, so that a reqwest or hyper
//! client, or an axum service, gains them by being wrapped:
//!
//! | layer | module | what it does |
//! |---|---|---|
//! | [`TimeoutLayer`](timeout::TimeoutLayer) | [`timeout`] | bounds one attempt |
//! | [`TotalDeadlineLayer`](timeout::TotalDeadlineLayer) | [`timeout`] | bounds the whole logical call, retries included |
//! | [`RetryLayer`](retry::RetryLayer) | [`retry`] | retries transient failures with jittered backoff, within a retry budget |
//! | [`BulkheadLayer`](bulkhead::BulkheadLayer), [`KeyedBulkheadLayer`](bulkhead::KeyedBulkheadLayer) | [`bulkhead`] | caps the calls in flight to a dependency (or per key), with a bounded wait |
//! | [`AdaptiveLayer`](adaptive::AdaptiveLayer), [`KeyedAdaptiveLayer`](adaptive::KeyedAdaptiveLayer) | [`adaptive`] | a concurrency limit that adapts to measured latency (gradient or AIMD), with optional client-side adaptive throttling; per key if needed |
//! | `RateLimitLayer` (feature `rate-limit`) | `rate_limit` | caps calls per client and period by tier (GCRA), rejecting or throttling the excess |
//! | [`ChaosLayer`](chaos::ChaosLayer) | [`chaos`] | injects errors, hangs, chosen responses and latency at run-time rates, seeded, for tests and drills |
//! | [`CircuitBreakerLayer`](circuit_breaker::CircuitBreakerLayer), [`KeyedCircuitBreakerLayer`](circuit_breaker::KeyedCircuitBreakerLayer) | [`circuit_breaker`] | stops calling a failing or slow dependency, probes its recovery; per key if needed |
//! | [`FallbackLayer`](fallback::FallbackLayer) | [`fallback`] | answers failed or refused calls from an alternate service, a cache of recent answers (stale-if-error) or a static answer |
//! | [`Policy`](policy::Policy) | [`policy`] | the standard layers in the standard order, settings checked against each other; the standard HTTP client preset |
//! | `HttpClassifier`, `ServerDeadlineLayer`, `ErrorResponseLayer`, `RouteTable`, ... (feature `http`) | `http` | HTTP classification, `Retry-After`, replayable bodies, deadlines on the wire, error responses, per-route policies |
//! | `GrpcClassifier`, `GrpcServerDeadlineLayer`, `GrpcErrorResponseLayer`, ... (feature `grpc`) | `grpc` | verdicts from `grpc-status`, `grpc-retry-pushback-ms`, deadlines in `grpc-timeout`, replay of unary calls, gRPC statuses for tonic servers, the gRPC client preset |
//! | [`HedgeLayer`](hedge::HedgeLayer), [`Race`](hedge::Race) | [`hedge`] | sends another copy of a slow request (fixed or latency-derived delay, within the retry budget), or races alternatives; the first good answer wins |
//! | [`Scatter`](scatter::Scatter), [`Stages`](scatter::Stages) | [`scatter`] | fans a request out and gathers all, a quorum or the first k; ordered stages with hard and soft stops under one deadline |
//! | `PolicySetConfig`, `RetryConfig`, ... (feature `serde`) | `config` | policies and route tables from configuration files, checked by the builders, errors at their full path |
//! | [`ObserveLayer`](observe::ObserveLayer), [`Health`](observe::Health) | [`observe`] | a span per logical call, request ids on every event, slow-call alerts, listeners, metrics (feature `metrics`), snapshots of every breaker, bulkhead and limiter for health endpoints |
//!
//! Every policy acts on one [`Verdict`](classify::Verdict) per attempt,
//! produced by a [`Classify`](classify::Classify)er: a functional error (a
//! 404) is the callee answering, a reset connection is the callee failing.
//!
//! # Order
//!
//! The standard order of the layers, outermost first, as a
//! [`Policy`](policy::Policy) composes them:
//!
//! ```text
//! observe → fallback → total deadline → bulkhead → retry → hedge
//!         → adaptive limit → circuit breaker → attempt timeout → service
//! ```
//!
//! A rate limiter is not part of a policy: put it outside, where it sheds
//! load before any work is done.
//!
//! # Levels
//!
//! The crate is a stack of levels; a module names only modules of its own
//! level or lower, never one above (`.ci/levels.sh` checks it):
//!
//! | level | modules | what |
//! |---|---|---|
//! | policy | [`policy`], `config`, `http::RouteTable`, the gRPC preset | composed policies, presets, configuration, route tables |
//! | observe | [`observe`] | the observe layer and health snapshots, which read the layers' handles |
//! | layers | [`timeout`], [`retry`], [`circuit_breaker`], [`bulkhead`], [`adaptive`], `rate_limit`, [`hedge`], [`scatter`], [`fallback`], [`chaos`], `http`, `grpc` | one fault-tolerance pattern each |
//! | event core | [`event`] | what every layer reports: [`Event`](event::Event), listeners, the call's context and request id, metric handles, the values events carry |
//! | primitives | [`error`], [`classify`], and crate-private: keyed registries, replay, retry budgets, seeded randomness, deadlines, origins on tokio's clock, the ready-then-call future, the parked call and the interned settings and names | what the layers are made of |
//!
//! The primitives keep their public names in the layers that use them
//! ([`retry::RetryBudget`], [`retry::Replay`], [`retry::SeededRandom`],
//! [`timeout::Deadline`]); the event core's are also in [`observe`],
//! [`circuit_breaker::State`] and [`fallback::FallbackSource`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use steadfast::retry::{Backoff, Jitter, RetryLayer};
//! use steadfast::timeout::{TimeoutLayer, TotalDeadlineLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! let service = ServiceBuilder::new()
//!     .layer(TotalDeadlineLayer::new(Duration::from_secs(2))?)
//!     .layer(
//!         RetryLayer::builder()
//!             .max_attempts(3)
//!             .backoff(Backoff::exponential(Duration::from_millis(50)).jitter(Jitter::Full))
//!             .build()?,
//!     )
//!     .layer(TimeoutLayer::new(Duration::from_millis(500))?)
//!     .service(service_fn(|name: &'static str| async move {
//!         Ok::<_, steadfast::BoxError>(format!("hello, {name}"))
//!     }));
//!
//! assert_eq!(service.oneshot("world").await?, "hello, world");
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! The core layers need no feature.
//!
//! | feature | what it adds |
//! |---|---|
//! | `http` | `HttpClassifier`, `Retry-After`, replayable bodies, deadline header layers, `ErrorResponseLayer`, `RouteTable`, HTTP cached fallback; HTTP requests carry their [`Deadline`](timeout::Deadline) |
//! | `reqwest` | classification and replay of `reqwest::Request` / `reqwest::Response` (enables `http`) |
//! | `hyper` | classification of hyper-util client errors (enables `http`) |
//! | `axum` | `http::axum::handle_error` for `HandleErrorLayer` (enables `http`) |
//! | `grpc` | gRPC for tonic clients and servers (see `grpc`): `GrpcClassifier`, `grpc-timeout`, pushback, error statuses, the gRPC client preset (enables `http`) |
//! | `cache` | `FallbackCache`, the cached (stale-if-error) fallback source (moka) |
//! | `rate-limit` | `RateLimitLayer` (governor) |
//! | `metrics` | metrics through the `metrics` facade (see [`observe`]) |
//! | `serde` | policies from configuration files (`config`), serialisable health snapshots |
//! | `full` | every feature |
//!
//! Items that need a feature say so on docs.rs.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub,
    clippy::all,
    clippy::dbg_macro,
    clippy::todo,
    clippy::unimplemented,
    clippy::mem_forget,
    clippy::inefficient_to_string,
    clippy::needless_continue,
    clippy::match_wildcard_for_single_variants,
    clippy::semicolon_if_nothing_returned,
    clippy::unused_self,
    clippy::imprecise_flops,
    clippy::suboptimal_flops,
    clippy::lossy_float_literal,
    clippy::rest_pat_in_fully_bound_structs,
    clippy::fn_params_excessive_bools,
    clippy::exit,
    clippy::verbose_file_reads,
    clippy::unnested_or_patterns,
    clippy::str_to_string,
    clippy::if_let_mutex
)]

mod budget;
mod clock;
mod deadline;
mod intern;
mod random;
mod replay;
mod stripe;

pub mod event;

pub mod adaptive;
pub mod bulkhead;
pub mod chaos;
pub mod circuit_breaker;
pub mod classify;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod config;
pub mod error;
pub mod fallback;
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc;
pub mod hedge;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
pub(crate) mod keyed;
pub mod observe;
pub(crate) mod oneshot;
pub mod policy;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub mod rate_limit;
pub mod retry;
pub mod scatter;
pub mod timeout;

pub use error::{BoxError, ConfigError};
pub use keyed::{KeyOf, LookupKey};
