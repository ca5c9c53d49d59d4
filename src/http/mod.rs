//! HTTP: classification, `Retry-After`, replayable bodies, deadlines on the
//! wire, error responses and per-route policies (feature `http`).
//!
//! The other policies of the crate are protocol-agnostic; this module
//! teaches them HTTP. Everything works with
//! [`http::Request`](https://docs.rs/http/1/http/request/struct.Request.html) /
//! [`http::Response`](https://docs.rs/http/1/http/response/struct.Response.html)
//! (hyper, hyper-util, axum) and, with the `reqwest`
//! feature, with `reqwest::Request` / `reqwest::Response`.
//!
//! | item | side | what it does |
//! |---|---|---|
//! | [`HttpClassifier`] | client, server | judges status codes, methods and transport errors; reads `Retry-After` |
//! | [`BufferRequestBodyLayer`], [`ReplayBody`], [`HttpReplay`] | client | buffer a request body up to a limit so retry and hedging can send it again |
//! | [`PropagateDeadlineLayer`] | client | writes the time left into a request header |
//! | [`ServerDeadlineLayer`] | server | bounds a handler by that header, clamped to the server's maximum |
//! | [`ErrorResponseLayer`] | server | circuit open, bulkhead full → 503, rate limited → 429 (with `Retry-After`), deadline → 504 |
//! | `RateLimitHeadersLayer` | server | the `RateLimit-Policy` and `RateLimit` fields (feature `rate-limit`), optionally `X-RateLimit-*` |
//! | [`RouteTable`] | client | method + host + path pattern → policy, each route with its own state and stack type, named after its pattern |
//! | `axum::MatchedPathLayer` | server | each route of an axum app with its stack, named after its `MatchedPath` (feature `axum`) |
//!
//! # Classification
//!
//! | outcome | verdict |
//! |---|---|
//! | 1xx, 2xx, 3xx | success |
//! | 408, 429 | transient, with the `Retry-After` hint, whatever the method: the request was not processed |
//! | 502, 503, 504 | transient for idempotent requests, with the `Retry-After` hint; else failure |
//! | other 4xx | functional error |
//! | other 5xx | failure |
//! | transport error before the request left (connection refused, DNS, TLS: `is_connect()`), HTTP/2 refusal (feature `h2`) | transient, whatever the method |
//! | other transport error (reset, closed without an answer), attempt timeout ([`Elapsed`](crate::error::Elapsed)) | transient for idempotent requests, else failure |
//!
//! # What is sent again
//!
//! One rule decides, for retry and hedging alike: an idempotent request
//! may be sent again whenever the outcome is worth another try; any other
//! request (POST, PATCH, CONNECT, a method of its own) only when it
//! provably did not reach the application. Times a request is sent by a
//! retry layer of 4 attempts, such as the one of
//! [`Policy::standard_http_client`](crate::policy::Policy::standard_http_client):
//!
//! | outcome | GET, HEAD, OPTIONS, TRACE, PUT, DELETE | POST, PATCH, … | POST, PATCH, … with `Idempotency-Key` |
//! |---|---|---|---|
//! | connection refused, DNS, TLS handshake (`is_connect()`) | 4 | 4 | 4 |
//! | HTTP/2 `REFUSED_STREAM`, or a graceful `GOAWAY` below its stream id (feature `h2`) | 4 | 4 | 4 |
//! | 429 Too Many Requests | 4 | 4 | 4 |
//! | 408 Request Timeout | 4 | 4 | 4 |
//! | 503 Service Unavailable, 502, 504 | 4 | **1** | 4 |
//! | connection reset or closed without an answer, attempt timeout | 4 | **1** | 4 |
//! | 500, 501, other 5xx | 1 | 1 | 1 |
//! | 2xx, 3xx, other 4xx | 1 | 1 | 1 |
//! | hedge: a copy sent while the first is still out | yes | **never** | yes |
//!
//! Why these answers, from the standards:
//!
//! - idempotent methods are those of RFC 9110 §9.2.2; an
//!   `Idempotency-Key` header (IETF draft-ietf-httpapi-idempotency-key-header)
//!   asks the server to run the request at most once, so it is sent again
//!   as an idempotent one. An [`Idempotent`] extension does the same for an
//!   `http::Request`, and
//!   [`retry_non_idempotent`](HttpClassifier::retry_non_idempotent) for
//!   every request;
//! - 429 (RFC 6585 §4) is a rate limit refusing the request; 408 (RFC 9110
//!   §15.5.9) says the server did not receive the complete request, and
//!   the RFC lets the client repeat it;
//! - 503 (RFC 9110 §15.6.4) says the server is "currently unable to handle
//!   the request", not that it did nothing: an application may answer 503
//!   after part of the work, a gateway after its upstream acted. No
//!   standard says a 503 was not processed, so a POST answered 503 is not
//!   sent again. 502 and 504 come from gateways whose upstream may have
//!   acted;
//! - HTTP/2 (RFC 9113 §8.7): a stream reset with `REFUSED_STREAM`, or above
//!   the last stream id of a `GOAWAY`, was not processed. With the `h2`
//!   feature the classifier finds these in the error's sources (reqwest's
//!   and hyper's errors carry h2's). A `GOAWAY` with an error code reaches
//!   every open stream alike, and proves nothing.
//!
//! A POST that is not sent again is still a failure for the circuit
//! breaker. Hedging asks [`Classify::may_overlap`](crate::classify::Classify::may_overlap):
//! a request that must not run twice is never hedged on a timer; across
//! [`endpoints`](crate::hedge::HedgeLayer::endpoints) it moves on to the
//! next one only after an outcome above that proves it was not processed.
//!
//! `Retry-After` values are read by [`parse_retry_after`]: malformed or
//! negative values are ignored with an event. The classifier passes every
//! other hint on whole; the longest wait is the retry layer's to decide
//! ([`honor_retry_after`](crate::retry::RetryLayerBuilder::honor_retry_after)):
//! a longer hint ends the call rather than being shortened.
//!
//! # Example: a hyper-util client that retries
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use steadfast::http::{BufferRequestBodyLayer, HttpClassifier, HttpReplay, ReplayBody};
//! use steadfast::retry::RetryLayer;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! // Stands for `hyper_util::client::legacy::Client<_, ReplayBody<Full<Bytes>>>`:
//! // busy once, then fine.
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let client = service_fn({
//!     let calls = calls.clone();
//!     move |_req: http::Request<ReplayBody<Full<Bytes>>>| {
//!         let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!         async move {
//!             let status = if n == 0 { 503 } else { 200 };
//!             Ok::<_, steadfast::BoxError>(
//!                 http::Response::builder().status(status).header("retry-after", "1").body(())?,
//!             )
//!         }
//!     }
//! });
//! let client = ServiceBuilder::new()
//!     .layer(BufferRequestBodyLayer::new(64 * 1024)?)
//!     .layer(
//!         RetryLayer::builder()
//!             .classifier(HttpClassifier::new())
//!             .replay(HttpReplay::new())
//!             .build()?,
//!     )
//!     .service(client);
//!
//! let request = http::Request::post("http://orders.example/")
//!     .header("idempotency-key", "order-17")
//!     .body(Full::new(Bytes::from_static(b"{\"qty\":1}")))?;
//! let started = tokio::time::Instant::now();
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! assert!(started.elapsed() >= Duration::from_secs(1)); // Retry-After obeyed
//! # Ok(())
//! # }
//! ```
//!
//! # Example: an axum server stack
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # fn main() -> Result<(), steadfast::ConfigError> {
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use steadfast::bulkhead::BulkheadLayer;
//! use steadfast::http::{ErrorResponseLayer, ServerDeadlineLayer};
//! use tower::ServiceBuilder;
//!
//! let app: Router = Router::new()
//!     .route("/report", get(|| async { "slow work" }))
//!     .route_layer(
//!         ServiceBuilder::new()
//!             .layer(ErrorResponseLayer::new()) // errors become 503 / 429 / 504
//!             .layer(ServerDeadlineLayer::new(Duration::from_secs(5))?)
//!             .layer(BulkheadLayer::builder().max_concurrent(64).build()?),
//!     );
//! # let _ = app;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "axum"))]
//! # fn main() {}
//! ```

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub(crate) mod body;
pub(crate) mod classify;
mod deadline;
pub(crate) mod error_response;
mod parts;
#[cfg(feature = "rate-limit")]
mod rate_limit_headers;
pub(crate) mod replay;
mod retry_after;
mod route;

pub use self::body::{Buffered, Buffering, NotReplayable, ReplayBody, buffer_body};
pub use self::classify::{HttpClassifier, HttpFacts, Idempotent, is_idempotent_method};
pub use self::deadline::{
    DEFAULT_DEADLINE_HEADER, PropagateDeadline, PropagateDeadlineLayer, ServerDeadline,
    ServerDeadlineLayer, parse_deadline_header,
};
pub use self::error_response::{
    ErrorAnswer, ErrorResponse, ErrorResponseFuture, ErrorResponseLayer,
};
pub use self::parts::{ByHost, HostKey, HostRef, RequestParts};
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use self::rate_limit_headers::{
    RateLimitHeaders, RateLimitHeadersFuture, RateLimitHeadersLayer,
};
pub use self::replay::{BufferFuture, BufferRequestBody, BufferRequestBodyLayer, HttpReplay};
pub use self::retry_after::{parse_retry_after, retry_after};
pub use self::route::{
    BoxRouteFuture, BoxRouteLayer, BoxRouteService, Route, RouteFuture, RouteService, RouteTable,
    RouteTableBuilder, SameStack,
};
