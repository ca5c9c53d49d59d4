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
//! | [`RouteTable`] | client | method + host + path pattern → policy, each route with its own state |
//!
//! # Classification
//!
//! | outcome | verdict |
//! |---|---|
//! | 1xx, 2xx, 3xx | success |
//! | 408, 429, 503 | transient, with the `Retry-After` hint: the server did not act on the request |
//! | 502, 504 | transient for idempotent requests, else failure: the upstream may have acted |
//! | other 4xx | functional error |
//! | other 5xx | failure |
//! | transport error before the request left (connection refused, DNS, TLS: `is_connect()`) | transient, whatever the method |
//! | other transport error, attempt timeout ([`Elapsed`](crate::error::Elapsed)) | transient for idempotent requests, else failure |
//!
//! A request is idempotent when its method is GET, HEAD, OPTIONS, PUT,
//! DELETE or TRACE, when it carries an `Idempotency-Key` header or an
//! [`Idempotent`] extension, or when the classifier was told
//! [`retry_non_idempotent`](HttpClassifier::retry_non_idempotent).
//! `Retry-After` values are read by [`parse_retry_after`]: malformed or
//! negative values are ignored with an event. The classifier passes every
//! other hint on whole; the longest wait is the retry layer's to decide
//! ([`max_retry_after`](crate::retry::RetryLayerBuilder::max_retry_after)):
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
pub use self::parts::RequestParts;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use self::rate_limit_headers::{
    RateLimitHeaders, RateLimitHeadersFuture, RateLimitHeadersLayer,
};
pub use self::replay::{BufferFuture, BufferRequestBody, BufferRequestBodyLayer, HttpReplay};
pub use self::retry_after::{parse_retry_after, retry_after};
pub use self::route::{Route, RouteService, RouteTable, RouteTableBuilder};
