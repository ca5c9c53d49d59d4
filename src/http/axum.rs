//! axum helpers (feature `axum`).

use crate::error::BoxError;

use super::ErrorResponseLayer;

/// Answers an error of the layers of this crate the way
/// [`ErrorResponseLayer`] does, for axum's `HandleErrorLayer`:
///
/// ```
/// use axum::{Router, error_handling::HandleErrorLayer, routing::get};
/// use std::time::Duration;
/// use steadfast::bulkhead::BulkheadLayer;
/// use tower::ServiceBuilder;
///
/// # fn main() -> Result<(), steadfast::ConfigError> {
/// let app: Router = Router::new().route("/", get(|| async { "hello" })).layer(
///     ServiceBuilder::new()
///         .layer(HandleErrorLayer::new(steadfast::http::axum::handle_error))
///         .layer(BulkheadLayer::builder().max_concurrent(100).build()?),
/// );
/// # Ok(())
/// # }
/// ```
pub async fn handle_error(err: BoxError) -> axum::response::Response {
    ErrorResponseLayer::new().response(&*err)
}
