//! gRPC: verdicts from `grpc-status`, deadlines in `grpc-timeout`, server
//! pushback, replay of unary calls, error statuses for tonic servers
//! (feature `grpc`).
//!
//! tonic clients and servers are tower services over [`http::Request`] and
//! [`http::Response`]; this module teaches the crate's policies what gRPC
//! says in their headers and trailers. It needs no tonic itself.
//!
//! | item | side | what it does |
//! |---|---|---|
//! | [`GrpcClassifier`] | client | judges `grpc-status` (headers or trailers), pushback and transport errors |
//! | [`GrpcResponseLayer`] | client | reads unary answers to their end, so their trailers are judged |
//! | [`BufferGrpcRequestLayer`], [`HttpReplay`](crate::http::HttpReplay) | client | keep unary request bodies so retry can send them again |
//! | [`PropagateGrpcTimeoutLayer`] | client | writes the time left into `grpc-timeout` |
//! | [`GrpcServerDeadlineLayer`] | server | bounds a handler by `grpc-timeout`, clamped to the server's maximum |
//! | [`GrpcErrorResponseLayer`] | server | circuit open, bulkhead full → `UNAVAILABLE`, rate limited → `RESOURCE_EXHAUSTED` (with pushback), deadline → `DEADLINE_EXCEEDED` |
//! | [`Policy::grpc_client`](crate::policy::Policy::grpc_client) | client | the standard layers with gRPC's retry policy |
//!
//! # Classification
//!
//! gRPC answers every call with HTTP 200; its status is the `grpc-status`
//! header of a trailers-only answer, or the `grpc-status` trailer after the
//! message. [`GrpcClassifier`] reads the headers first, then the trailers
//! that [`GrpcResponseLayer`] read; without that layer, a 200 answer whose
//! status is still in the stream is a success. An HTTP status other than
//! 200 without `grpc-status` is mapped as gRPC clients map it (503 →
//! `UNAVAILABLE`, 404 → `UNIMPLEMENTED`, ...). The default table, which
//! [`GrpcClassifier::verdict`] changes code by code:
//!
//! | `grpc-status` | verdict |
//! |---|---|
//! | `OK` | success |
//! | `UNAVAILABLE` | transient, with the pushback hint |
//! | `RESOURCE_EXHAUSTED` | transient, with the pushback hint |
//! | `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`, `UNAUTHENTICATED`, `FAILED_PRECONDITION`, `OUT_OF_RANGE`, `UNIMPLEMENTED` | functional error |
//! | `DEADLINE_EXCEEDED` (the call reached the server) | failure |
//! | `INTERNAL`, `UNKNOWN`, `DATA_LOSS`, `CANCELLED`, `ABORTED` | failure |
//! | a number outside 0 to 16, or not a number | `UNKNOWN`: failure |
//! | an answer read to its end without `grpc-status` | `UNKNOWN`: failure |
//!
//! | transport outcome | verdict |
//! |---|---|
//! | the request never left the client (connection refused) | transient, whatever the table says |
//! | attempt timeout ([`Elapsed`](crate::error::Elapsed)): the call may have reached the server | as `DEADLINE_EXCEEDED`: failure |
//! | any other transport error | as `UNAVAILABLE` (what gRPC clients report): transient |
//!
//! # Pushback
//!
//! `grpc-retry-pushback-ms`, read by [`parse_pushback`], is the
//! retry-after hint of a transient answer: whole milliseconds, passed on
//! whole, so that the retry layer's `honor_retry_after` maximum is the one maximum.
//! The retry layer waits the longer of the pushback and its own backoff, where gRPC
//! waits the pushback alone. A negative or malformed value means "do not
//! retry", as gRPC specifies: the answer is then judged a failure.
//!
//! # Deadlines on the wire
//!
//! [`PropagateGrpcTimeoutLayer`] writes the time left before the current
//! [`Deadline`](crate::timeout::Deadline) as `grpc-timeout` (at most 8
//! digits and a unit, rounded down: [`encode_grpc_timeout`]).
//! [`GrpcServerDeadlineLayer`] reads it ([`parse_grpc_timeout`]) and runs
//! the handler under the earliest of it and the server's own maximum: a
//! caller can shorten the server's work, never lengthen it. A malformed
//! value is ignored with an event; nothing a peer sends can panic.
//!
//! # Replay
//!
//! Unary calls are replayed: their body, one message, is complete when the
//! call is made, and [`BufferGrpcRequestLayer`] keeps it. Streaming
//! requests (client-streaming and bidirectional) are sent once; retry
//! reports them `not_replayable` and does not try again.
//!
//! # Example: a retrying gRPC client stack
//!
//! With tonic, `channel` is a `tonic::transport::Channel`, and a
//! `map_request(|r: http::Request<ReplayBody<tonic::body::Body>>| r.map(tonic::body::Body::new))`
//! goes between the stack and the channel (see `examples/grpc.rs`).
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use steadfast::grpc::{BufferGrpcRequestLayer, GrpcResponseLayer, PropagateGrpcTimeoutLayer};
//! use steadfast::http::ReplayBody;
//! use steadfast::policy::Policy;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), steadfast::BoxError> {
//! // Stands for a channel: UNAVAILABLE with a pushback once, then OK.
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let channel = service_fn({
//!     let calls = calls.clone();
//!     move |request: http::Request<ReplayBody<Full<Bytes>>>| {
//!         let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!         assert!(request.headers().contains_key("grpc-timeout"));
//!         async move {
//!             let status = if n == 0 { "14" } else { "0" };
//!             Ok::<_, steadfast::BoxError>(
//!                 http::Response::builder()
//!                     .header("grpc-status", status)
//!                     .header("grpc-retry-pushback-ms", "300")
//!                     .body(Full::new(Bytes::new()))?,
//!             )
//!         }
//!     }
//! });
//! let client = ServiceBuilder::new()
//!     .layer(BufferGrpcRequestLayer::default())
//!     .layer(Policy::grpc_client().build()?)
//!     .layer(PropagateGrpcTimeoutLayer::new())
//!     .layer(GrpcResponseLayer::default())
//!     .service(channel);
//!
//! let request = http::Request::post("http://orders.example/shop.Orders/Get")
//!     .header("content-type", "application/grpc")
//!     .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02\x08\x01")))?;
//! let started = tokio::time::Instant::now();
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.headers()["grpc-status"], "0");
//! assert_eq!(started.elapsed(), Duration::from_millis(300)); // pushback obeyed
//! # Ok(())
//! # }
//! ```
//!
//! # Example: a tonic server stack
//!
//! ```
//! # fn main() -> Result<(), steadfast::ConfigError> {
//! use std::time::Duration;
//! use steadfast::bulkhead::BulkheadLayer;
//! use steadfast::grpc::{GrpcErrorResponseLayer, GrpcServerDeadlineLayer};
//! use tower::ServiceBuilder;
//!
//! // For `tonic::transport::Server::builder().layer(stack)`.
//! let stack = ServiceBuilder::new()
//!     .layer(GrpcErrorResponseLayer::new()) // errors become gRPC statuses
//!     .layer(GrpcServerDeadlineLayer::new(Duration::from_secs(5))?)
//!     .layer(BulkheadLayer::builder().max_concurrent(64).build()?);
//! # let _ = stack;
//! # Ok(())
//! # }
//! ```
//!
//! # The gRPC client preset
//!
//! [`Policy::grpc_client`](crate::policy::Policy::grpc_client) follows
//! gRPC's retry policy where it defines something, and the standard HTTP
//! client preset elsewhere; every default can be overridden before
//! `build`:
//!
//! | layer | default |
//! |---|---|
//! | total timeout | 30 s |
//! | bulkhead | 1,000 calls in flight, no waiting |
//! | retry | [`grpc_retry`]`(4, 100 ms, 1 s, 2.0)`: 4 attempts (gRPC allows at most 5), before retry `n` `random(0, min(100 ms × 2^(n−1), 1 s))`, pushback obeyed, the default retry budget (gRPC's retry throttling) |
//! | circuit breaker | time window 30 s (30 buckets), opens at 50 % failures once 100 calls were seen, open 5 s, 1 probe |
//! | attempt timeout | 10 s |
//! | observe | name `grpc_client`, request ids from `x-request-id` |
//!
//! Attempts are judged by [`GrpcClassifier`] and copied by
//! [`HttpReplay`](crate::http::HttpReplay); put
//! [`BufferGrpcRequestLayer`] outside the policy and
//! [`PropagateGrpcTimeoutLayer`] and [`GrpcResponseLayer`] inside it, as in
//! the first example.

mod classify;
mod error_response;
mod preset;
mod pushback;
mod replay;
mod status;
mod timeout;
mod trailers;

pub use self::classify::GrpcClassifier;
pub use self::error_response::GrpcErrorResponseLayer;
pub use self::preset::{GRPC_MAX_ATTEMPTS, grpc_retry};
pub use self::pushback::{Pushback, parse_pushback};
pub use self::replay::{BufferGrpcRequest, BufferGrpcRequestLayer};
pub use self::status::{Code, GRPC_MESSAGE, GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS, GRPC_TIMEOUT};
pub use self::timeout::{
    GrpcServerDeadline, GrpcServerDeadlineLayer, PropagateGrpcTimeout, PropagateGrpcTimeoutLayer,
    encode_grpc_timeout, parse_grpc_timeout,
};
pub use self::trailers::{GrpcResponse, GrpcResponseFuture, GrpcResponseLayer, GrpcTrailers};
