//! axum helpers (feature `axum`): errors as answers, and per-route stacks
//! named after axum's `MatchedPath`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

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

/// How many path patterns one [`MatchedPathService`] names before it
/// sends the requests of further patterns through its unnamed stack.
const MAX_MATCHED_PATHS: usize = 64;

/// Applies `layer` to each route of an axum app, named after the route:
/// an observe layer inside `layer` (that of a
/// [`Policy`](crate::policy::Policy) that watches its calls) which names
/// no route of its own takes the route's pattern from axum's
/// [`MatchedPath`], so the spans, events
/// ([`CallContext::route`](crate::observe::CallContext::route)) and
/// metric labels of `GET /users/7` say `route="/users/{id}"`, without the
/// patterns being written twice.
///
/// Give it to `Router::layer` or `Router::route_layer`: axum applies it
/// to every route, and sets `MatchedPath` before the route's service is
/// called. Each route's stack is made from `layer` on the route's first
/// request and kept (a route's stacks share the state of `layer`, as
/// clones of a policy do). A request without `MatchedPath` (the
/// fallback) goes through an unnamed stack.
///
/// ```
/// use axum::{Router, routing::get};
/// use std::sync::{Arc, Mutex};
/// use steadfast::http::ErrorResponseLayer;
/// use steadfast::http::axum::MatchedPathLayer;
/// use steadfast::observe::Event;
/// use steadfast::policy::Policy;
/// use steadfast::retry::NoReplay;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let routes = Arc::new(Mutex::new(Vec::new()));
/// let policy = Policy::builder()
///     .name("api")
///     .replay(NoReplay) // a server does not send a request again
///     .on_event({
///         let routes = routes.clone();
///         move |event| {
///             if let Event::CallEnded { route, .. } = event {
///                 routes.lock().unwrap().push(route.to_string());
///             }
///         }
///     })
///     .build()?;
/// let app: Router = Router::new().route("/users/{id}", get(|| async { "user" })).layer(
///     ServiceBuilder::new()
///         .layer(ErrorResponseLayer::new()) // errors become 503 / 429 / 504
///         .layer(MatchedPathLayer::new(policy)),
/// );
///
/// let request = http::Request::get("/users/7").body(axum::body::Body::empty())?;
/// assert_eq!(app.oneshot(request).await?.status(), 200);
/// assert_eq!(*routes.lock().unwrap(), ["/users/{id}"]);
/// # Ok(())
/// # }
/// ```
///
/// [`MatchedPath`]: axum::extract::MatchedPath
#[derive(Debug, Clone)]
pub struct MatchedPathLayer<L> {
    layer: L,
}

impl<L> MatchedPathLayer<L> {
    /// Applies `layer` to each route, named after the route's pattern.
    pub fn new(layer: L) -> Self {
        Self { layer }
    }

    /// The layer applied to each route.
    pub fn get_ref(&self) -> &L {
        &self.layer
    }
}

impl<S: Clone, L: Layer<S> + Clone> Layer<S> for MatchedPathLayer<L> {
    type Service = MatchedPathService<S, L>;

    fn layer(&self, inner: S) -> Self::Service {
        MatchedPathService {
            unnamed: self.layer.layer(inner.clone()),
            named: Arc::new(RwLock::new(Vec::new())),
            layer: self.layer.clone(),
            inner,
        }
    }
}

/// The service of a [`MatchedPathLayer`]: sends each request through the
/// stack of its `MatchedPath`, made on the pattern's first request.
///
/// Always ready: the chosen stack is driven to readiness in the response
/// future (as axum drives a route's service), so each request waits for
/// its own route's stack only. Clones share their stacks.
pub struct MatchedPathService<S, L: Layer<S>> {
    inner: S,
    layer: L,
    unnamed: L::Service,
    named: Arc<RwLock<Named<L::Service>>>,
}

impl<S, L: Layer<S>> MatchedPathService<S, L> {
    /// `inner` wrapped as `layer` wraps services (`layer.layer(inner)`):
    /// with its settings, and sharing its state with every other service
    /// it made.
    pub fn new(inner: S, layer: &MatchedPathLayer<L>) -> Self
    where
        MatchedPathLayer<L>: tower_layer::Layer<S, Service = Self>,
    {
        tower_layer::Layer::layer(layer, inner)
    }

    /// The inner service, over a clone of which the stack of each new
    /// pattern is made.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably: what changes here reaches the stacks
    /// of the patterns seen from now on, not those already made.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming this one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The stacks of the patterns seen so far.
type Named<T> = Vec<(Arc<str>, T)>;

impl<S: Clone, L: Layer<S> + Clone> Clone for MatchedPathService<S, L>
where
    L::Service: Clone,
{
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
            unnamed: self.unnamed.clone(),
            named: Arc::clone(&self.named),
        }
    }
}

impl<S, L: Layer<S>> fmt::Debug for MatchedPathService<S, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = self
            .named
            .read()
            .map(|named| named.len())
            .unwrap_or_else(|poisoned| poisoned.into_inner().len());
        f.debug_struct("MatchedPathService")
            .field("named", &named)
            .finish_non_exhaustive()
    }
}

impl<S, L> MatchedPathService<S, L>
where
    S: Clone,
    L: Layer<S>,
    L::Service: Clone,
{
    /// The stack of the route matched as `path`, made if it is new.
    fn stack_of(&self, path: &str) -> L::Service {
        {
            let named = self.named.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, service)) = named.iter().find(|(p, _)| &**p == path) {
                return service.clone();
            }
        }
        let mut named = self.named.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, service)) = named.iter().find(|(p, _)| &**p == path) {
            return service.clone();
        }
        if named.len() >= MAX_MATCHED_PATHS {
            return self.unnamed.clone();
        }
        let path: Arc<str> = Arc::from(path);
        let service = crate::event::layering_route(Arc::clone(&path), || {
            self.layer.layer(self.inner.clone())
        });
        named.push((path, service.clone()));
        service
    }
}

impl<S, L, B> Service<http::Request<B>> for MatchedPathService<S, L>
where
    S: Clone,
    L: Layer<S>,
    L::Service: Service<http::Request<B>> + Clone,
{
    type Response = <L::Service as Service<http::Request<B>>>::Response;
    type Error = <L::Service as Service<http::Request<B>>>::Error;
    type Future = MatchedPathFuture<
        L::Service,
        http::Request<B>,
        <L::Service as Service<http::Request<B>>>::Future,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let service = match request.extensions().get::<MatchedPath>() {
            Some(path) => self.stack_of(path.as_str()),
            None => self.unnamed.clone(),
        };
        MatchedPathFuture {
            service,
            request: Some(request),
            future: None,
        }
    }
}

pin_project! {
    /// The response future of [`MatchedPathService`]: waits for the
    /// route's stack to be ready, then for its answer.
    pub struct MatchedPathFuture<T, R, F> {
        service: T,
        request: Option<R>,
        #[pin]
        future: Option<F>,
    }
}

impl<T, R, F> fmt::Debug for MatchedPathFuture<T, R, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatchedPathFuture")
            .field("called", &self.future.is_some())
            .finish_non_exhaustive()
    }
}

impl<T, R> Future for MatchedPathFuture<T, R, T::Future>
where
    T: Service<R>,
{
    type Output = Result<T::Response, T::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(future) = this.future.as_mut().as_pin_mut() {
                return future.poll(cx);
            }
            match this.service.poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
            // The request is taken once, when the future is set.
            let Some(request) = this.request.take() else {
                return Poll::Pending;
            };
            this.future.set(Some(this.service.call(request)));
        }
    }
}
