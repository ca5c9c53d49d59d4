//! Per-route policies for clients: method + host + path pattern → policy.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use http::Method;
use tower_layer::Layer;
use tower_service::Service;

use super::parts::RequestParts;
use crate::error::ConfigError;

/// Which requests a route takes: a method (or any), a host (or any) and a
/// path pattern in [matchit] syntax, the router axum uses (`/users/{id}`,
/// `/static/{*rest}`).
///
/// [matchit]: https://docs.rs/matchit
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    method: Option<Method>,
    host: Option<String>,
    path: String,
}

impl Route {
    /// Requests with `method` whose path matches `path`.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method: Some(method),
            host: None,
            path: path.into(),
        }
    }

    /// Requests of any method whose path matches `path`.
    pub fn any(path: impl Into<String>) -> Self {
        Self {
            method: None,
            host: None,
            path: path.into(),
        }
    }

    /// `GET` requests whose path matches `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// `POST` requests whose path matches `path`.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    /// Only requests to `host` (without port, compared ignoring case).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into().to_ascii_lowercase());
        self
    }
}

/// The routes of one (host, method) pair, in one path router.
struct Group {
    host: Option<String>,
    method: Option<Method>,
    paths: matchit::Router<usize>,
}

impl Group {
    /// Most specific first: host and method, host, method, neither.
    fn rank(&self) -> u8 {
        u8::from(self.host.is_none()) * 2 + u8::from(self.method.is_none())
    }

    fn takes(&self, method: &Method, host: Option<&str>) -> bool {
        let host_ok = match (&self.host, host) {
            (None, _) => true,
            (Some(want), Some(host)) => want.eq_ignore_ascii_case(host),
            (Some(_), None) => false,
        };
        host_ok && self.method.as_ref().is_none_or(|m| m == method)
    }
}

/// The lookup shared by every service a [`RouteTable`] makes.
struct Routes {
    groups: Vec<Group>,
    /// Index 0: the default route, unnamed.
    names: Vec<Arc<str>>,
}

impl Routes {
    /// The index of the route for a request: 0 is the default route.
    fn find(&self, method: &Method, host: Option<&str>, path: &str) -> usize {
        for group in &self.groups {
            if group.takes(method, host) {
                if let Ok(found) = group.paths.at(path) {
                    return *found.value;
                }
            }
        }
        0
    }

    /// The position of the route for a request among the routes added to
    /// the table, `None` for the default route.
    #[inline]
    fn route(&self, method: &Method, host: Option<&str>, path: &str) -> Option<usize> {
        self.find(method, host, path).checked_sub(1)
    }
}

/// The layer type of a [`RouteTable`] none of whose routes is erased: every
/// route has the table's own layer type, and the table's service answers
/// with that layer's future, unboxed.
///
/// It has no values; it only fills the second type parameter of
/// [`RouteTable`], [`RouteTableBuilder`] and [`RouteService`] until a
/// route is added with [`route_boxed`](RouteTableBuilder::route_boxed).
///
/// ```
/// use std::time::Duration;
/// use steadfast::http::{Route, RouteTable, SameStack};
/// use steadfast::timeout::TimeoutLayer;
///
/// let table: RouteTable<TimeoutLayer, SameStack> =
///     RouteTable::builder(TimeoutLayer::new(Duration::from_secs(10))?)
///         .route(Route::get("/search"), TimeoutLayer::new(Duration::from_millis(300))?)
///         .build()?;
/// # let _ = table;
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameStack {}

impl<S> Layer<S> for SameStack {
    type Service = SameStack;

    fn layer(&self, _inner: S) -> Self::Service {
        match *self {}
    }
}

/// One route's layer or service: of the table's type, or erased.
#[derive(Clone)]
enum Stack<T, B> {
    Typed(T),
    Boxed(B),
}

/// The future of an erased route's service.
pub type BoxRouteFuture<Res, Err> = Pin<Box<dyn Future<Output = Result<Res, Err>> + Send>>;

/// A service erased behind one type, the way tower's
/// `BoxCloneSyncService` erases one: `Clone`, `Send` and `Sync`, with a
/// boxed future. Made by [`BoxRouteLayer`], once per route, when the table
/// is layered over a service.
///
/// ```
/// use steadfast::http::BoxRouteService;
/// use tower::{ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let service: BoxRouteService<u32, u32, steadfast::BoxError> =
///     BoxRouteService::new(service_fn(|n: u32| async move { Ok(n + 1) }));
/// assert_eq!(service.clone().oneshot(1).await?, 2);
/// # Ok(())
/// # }
/// ```
pub struct BoxRouteService<Req, Res, Err> {
    inner: Box<dyn ErasedService<Req, Res, Err>>,
}

trait ErasedService<Req, Res, Err>: Send + Sync {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Err>>;
    fn call(&mut self, request: Req) -> BoxRouteFuture<Res, Err>;
    fn clone_box(&self) -> Box<dyn ErasedService<Req, Res, Err>>;
}

impl<T, Req, Res, Err> ErasedService<Req, Res, Err> for T
where
    T: Service<Req, Response = Res, Error = Err> + Clone + Send + Sync + 'static,
    T::Future: Send + 'static,
{
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Err>> {
        Service::poll_ready(self, cx)
    }

    fn call(&mut self, request: Req) -> BoxRouteFuture<Res, Err> {
        Box::pin(Service::call(self, request))
    }

    fn clone_box(&self) -> Box<dyn ErasedService<Req, Res, Err>> {
        Box::new(self.clone())
    }
}

impl<Req, Res, Err> BoxRouteService<Req, Res, Err> {
    /// Erases `service`.
    pub fn new<T>(service: T) -> Self
    where
        T: Service<Req, Response = Res, Error = Err> + Clone + Send + Sync + 'static,
        T::Future: Send + 'static,
    {
        Self {
            inner: Box::new(service),
        }
    }
}

impl<Req, Res, Err> Clone for BoxRouteService<Req, Res, Err> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone_box(),
        }
    }
}

impl<Req, Res, Err> fmt::Debug for BoxRouteService<Req, Res, Err> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxRouteService").finish_non_exhaustive()
    }
}

impl<Req, Res, Err> Service<Req> for BoxRouteService<Req, Res, Err> {
    type Response = Res;
    type Error = Err;
    type Future = BoxRouteFuture<Res, Err>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Err>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        self.inner.call(request)
    }
}

/// A layer erased behind one type: layered over an `S`, it gives a
/// [`BoxRouteService`] taking `Req` and answering `Res` or `Err`. The
/// stack of a route whose layer type differs from the table's, added with
/// [`route_boxed`](RouteTableBuilder::route_boxed).
///
/// The erasure happens once, when the layer is applied: a call through
/// the service costs one virtual call and one boxed future. A table of
/// such layers only ([`RouteTable::builder`] of a `BoxRouteLayer`) gives
/// every route a stack of its own type.
///
/// ```
/// use std::time::Duration;
/// use steadfast::http::BoxRouteLayer;
/// use steadfast::timeout::TimeoutLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let inner = service_fn(|n: u32| async move { Ok::<_, steadfast::BoxError>(n * 2) });
/// let layer: BoxRouteLayer<_, u32, u32, steadfast::BoxError> =
///     BoxRouteLayer::new(TimeoutLayer::new(Duration::from_secs(1))?);
/// assert_eq!(layer.layer(inner).oneshot(21).await?, 42);
/// # Ok(())
/// # }
/// ```
pub struct BoxRouteLayer<S, Req, Res, Err> {
    make: Arc<dyn Fn(S) -> BoxRouteService<Req, Res, Err> + Send + Sync>,
}

impl<S, Req, Res, Err> BoxRouteLayer<S, Req, Res, Err> {
    /// Erases `layer`.
    pub fn new<L>(layer: L) -> Self
    where
        L: Layer<S> + Send + Sync + 'static,
        L::Service: Service<Req, Response = Res, Error = Err> + Clone + Send + Sync + 'static,
        <L::Service as Service<Req>>::Future: Send + 'static,
    {
        Self {
            make: Arc::new(move |inner| BoxRouteService::new(layer.layer(inner))),
        }
    }
}

impl<S, Req, Res, Err> Clone for BoxRouteLayer<S, Req, Res, Err> {
    fn clone(&self) -> Self {
        Self {
            make: Arc::clone(&self.make),
        }
    }
}

impl<S, Req, Res, Err> fmt::Debug for BoxRouteLayer<S, Req, Res, Err> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxRouteLayer").finish_non_exhaustive()
    }
}

impl<S, Req, Res, Err> Layer<S> for BoxRouteLayer<S, Req, Res, Err> {
    type Service = BoxRouteService<Req, Res, Err>;

    fn layer(&self, inner: S) -> Self::Service {
        (self.make)(inner)
    }
}

/// Per-route policies for a client: each request goes through the policy
/// of the first route that takes it, most specific first (host and method,
/// host, method, neither; then matchit's own precedence among paths), or
/// through the default route.
///
/// Each route's layer is applied once, when the table is layered over a
/// service, and that service is reused for every request of the route: a
/// route keeps its own breaker, bulkhead and budget state (give two routes
/// clones of one policy to make them share it).
///
/// # Naming
///
/// A route names the policy it is layered with: an observe layer inside
/// a route's stack (that of a [`Policy`](crate::policy::Policy) that
/// watches its calls) which names no route of its own takes the route's
/// path pattern, so that its spans, events
/// ([`CallContext::route`](crate::observe::CallContext::route)) and
/// metric labels say `route="/users/{id}"`. This is done once per route
/// when the table is layered; the default route stays unnamed.
///
/// # Different stacks per route
///
/// [`route`](RouteTableBuilder::route) takes a layer of the table's type;
/// [`route_boxed`](RouteTableBuilder::route_boxed) takes any other stack
/// with the same request, response and error types, erased behind a
/// [`BoxRouteService`]. Only those routes pay for the erasure (a boxed
/// future per call); the others keep their own future, behind one enum
/// branch. A table with no boxed route answers with its layer's future
/// itself.
///
/// ```
/// use std::time::Duration;
/// use steadfast::http::{Route, RouteTable};
/// use steadfast::timeout::TimeoutLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), steadfast::BoxError> {
/// let table = RouteTable::builder(TimeoutLayer::new(Duration::from_secs(10))?)
///     .route(Route::get("/search"), TimeoutLayer::new(Duration::from_millis(300))?)
///     .route(Route::any("/users/{id}").host("api.example"), TimeoutLayer::new(Duration::from_secs(2))?)
///     .build()?;
/// assert_eq!(table.route_of(&http::Method::GET, Some("api.example"), "/users/7"), Some("/users/{id}"));
/// assert_eq!(table.route_of(&http::Method::POST, None, "/search"), None); // the default
///
/// let client = table.layer(service_fn(|req: http::Request<()>| async move {
///     Ok::<_, steadfast::BoxError>(req.uri().path().to_owned())
/// }));
/// let req = http::Request::get("http://api.example/users/7").body(())?;
/// assert_eq!(client.oneshot(req).await?, "/users/7");
/// # Ok(())
/// # }
/// ```
pub struct RouteTable<L, B = SameStack> {
    routes: Arc<Routes>,
    /// The default route's layer: always of the table's type.
    default: L,
    /// One per route, in insertion order (route `i` at `i - 1`).
    layers: Vec<Stack<L, B>>,
}

impl<L> RouteTable<L> {
    /// Starts a table whose unknown routes go through `default`.
    pub fn builder(default: L) -> RouteTableBuilder<L> {
        RouteTableBuilder {
            default,
            routes: Vec::new(),
        }
    }

    /// The layer of the route that takes such a request (the default
    /// route's if none does), to reach its handles.
    ///
    /// On a table with boxed routes, use
    /// [`typed_layer_of`](RouteTable::typed_layer_of).
    pub fn layer_of(&self, method: &Method, host: Option<&str>, path: &str) -> &L {
        match self.stack_of(method, host, path) {
            None => &self.default,
            Some(Stack::Typed(layer)) => layer,
            Some(Stack::Boxed(never)) => match *never {},
        }
    }
}

impl<L, B> RouteTable<L, B> {
    /// The path pattern of the route that takes such a request, `None`
    /// for the default route.
    pub fn route_of(&self, method: &Method, host: Option<&str>, path: &str) -> Option<&str> {
        match self.routes.find(method, host, path) {
            0 => None,
            i => self.routes.names.get(i).map(|name| &**name),
        }
    }

    /// The layer of the route that takes such a request (the default
    /// route's if none does), `None` if that route's stack is boxed (keep
    /// a clone of a boxed policy to reach its handles: clones share their
    /// state).
    ///
    /// ```
    /// use std::time::Duration;
    /// use http::Method;
    /// use steadfast::bulkhead::BulkheadLayer;
    /// use steadfast::http::{Route, RouteTable};
    /// use steadfast::timeout::TimeoutLayer;
    /// use tower::Layer;
    ///
    /// # fn main() -> Result<(), steadfast::BoxError> {
    /// let table = RouteTable::builder(TimeoutLayer::new(Duration::from_secs(10))?)
    ///     .route_boxed(Route::post("/orders"), BulkheadLayer::builder().max_concurrent(4).build()?)
    ///     .build()?;
    /// assert!(table.typed_layer_of(&Method::POST, None, "/orders").is_none());
    /// assert!(table.typed_layer_of(&Method::GET, None, "/orders").is_some()); // the default
    /// # let _ = table.layer(tower::service_fn(|_: http::Request<()>| async { Ok::<_, steadfast::BoxError>(()) }));
    /// # Ok(())
    /// # }
    /// ```
    pub fn typed_layer_of(&self, method: &Method, host: Option<&str>, path: &str) -> Option<&L> {
        match self.stack_of(method, host, path) {
            None => Some(&self.default),
            Some(Stack::Typed(layer)) => Some(layer),
            Some(Stack::Boxed(_)) => None,
        }
    }

    /// The stack of the route that takes such a request, `None` for the
    /// default route.
    fn stack_of(&self, method: &Method, host: Option<&str>, path: &str) -> Option<&Stack<L, B>> {
        self.layers.get(self.routes.route(method, host, path)?)
    }
}

impl<L: Clone, B: Clone> Clone for RouteTable<L, B> {
    fn clone(&self) -> Self {
        Self {
            routes: Arc::clone(&self.routes),
            default: self.default.clone(),
            layers: self.layers.clone(),
        }
    }
}

impl<L, B> fmt::Debug for RouteTable<L, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &&self.routes.names[1..])
            .finish()
    }
}

/// Builds a [`RouteTable`].
///
/// ```
/// use std::time::Duration;
/// use http::Method;
/// use steadfast::http::{Route, RouteTable};
/// use steadfast::timeout::TimeoutLayer;
///
/// let table = RouteTable::builder(TimeoutLayer::new(Duration::from_secs(10))?)
///     .route(Route::get("/search"), TimeoutLayer::new(Duration::from_millis(300))?)
///     .route(Route::post("/orders/{id}").host("api.example"), TimeoutLayer::new(Duration::from_secs(2))?)
///     .build()?;
/// assert_eq!(table.layer_of(&Method::GET, None, "/search").timeout(), Duration::from_millis(300));
///
/// let err = RouteTable::builder(TimeoutLayer::new(Duration::from_secs(10))?)
///     .route(Route::get("/users/{id}"), TimeoutLayer::new(Duration::from_secs(1))?)
///     .route(Route::get("/users/{name}"), TimeoutLayer::new(Duration::from_secs(2))?) // the same path
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "route.path");
/// # Ok::<(), steadfast::ConfigError>(())
/// ```
pub struct RouteTableBuilder<L, B = SameStack> {
    default: L,
    routes: Vec<(Route, Stack<L, B>)>,
}

impl<L, B> fmt::Debug for RouteTableBuilder<L, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<_> = self.routes.iter().map(|(r, _)| r).collect();
        f.debug_struct("RouteTableBuilder")
            .field("routes", &routes)
            .finish()
    }
}

impl<L> RouteTableBuilder<L> {
    /// Sends the requests `route` takes through `layer`, a stack of
    /// another type than the table's, erased behind a [`BoxRouteService`]
    /// when the table is layered over a service. Its service must take
    /// the same requests and give the same responses and errors as the
    /// table's layer's.
    ///
    /// A policy that retries for the table, and a POST route that is
    /// only bounded in time, in front of a server answering 503:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use steadfast::http::{HttpClassifier, HttpReplay, ReplayBody, Route, RouteTable};
    /// use steadfast::policy::Policy;
    /// use steadfast::retry::RetryLayer;
    /// use steadfast::timeout::TimeoutLayer;
    /// use tower::{Layer, ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), steadfast::BoxError> {
    /// let hits = Arc::new(AtomicU32::new(0));
    /// let server = service_fn({
    ///     let hits = hits.clone();
    ///     move |_: http::Request<ReplayBody<String>>| {
    ///         hits.fetch_add(1, Ordering::SeqCst);
    ///         async { Ok::<_, steadfast::BoxError>(http::Response::builder().status(503).body(())?) }
    ///     }
    /// });
    /// let reads = Policy::builder()
    ///     .classifier(HttpClassifier::new())
    ///     .replay(HttpReplay::new())
    ///     .retry(RetryLayer::builder().max_attempts(3))
    ///     .build()?;
    /// let table = RouteTable::builder(reads)
    ///     .route_boxed(Route::post("/orders"), TimeoutLayer::new(Duration::from_secs(2))?)
    ///     .build()?;
    /// let client = table.layer(server);
    ///
    /// let post = http::Request::post("http://shop.example/orders").body(ReplayBody::buffered(""))?;
    /// assert_eq!(client.clone().oneshot(post).await?.status(), 503);
    /// assert_eq!(hits.swap(0, Ordering::SeqCst), 1); // sent once
    /// let get = http::Request::get("http://shop.example/items").body(ReplayBody::buffered(""))?;
    /// assert_eq!(client.oneshot(get).await?.status(), 503);
    /// assert_eq!(hits.load(Ordering::SeqCst), 3); // retried
    /// # Ok(())
    /// # }
    /// ```
    pub fn route_boxed<M, S, Req, Res, Err>(
        self,
        route: Route,
        layer: M,
    ) -> RouteTableBuilder<L, BoxRouteLayer<S, Req, Res, Err>>
    where
        M: Layer<S> + Send + Sync + 'static,
        M::Service: Service<Req, Response = Res, Error = Err> + Clone + Send + Sync + 'static,
        <M::Service as Service<Req>>::Future: Send + 'static,
    {
        let mut routes: Vec<_> = self
            .routes
            .into_iter()
            .map(|(route, stack)| match stack {
                Stack::Typed(layer) => (route, Stack::Typed(layer)),
                Stack::Boxed(never) => match never {},
            })
            .collect();
        routes.push((route, Stack::Boxed(BoxRouteLayer::new(layer))));
        RouteTableBuilder {
            default: self.default,
            routes,
        }
    }
}

impl<L, S, Req, Res, Err> RouteTableBuilder<L, BoxRouteLayer<S, Req, Res, Err>> {
    /// Sends the requests `route` takes through `layer`, a stack of
    /// another type than the table's, erased; see
    /// [`route_boxed`](RouteTableBuilder::route_boxed) on a table
    /// without boxed routes.
    pub fn route_boxed<M>(mut self, route: Route, layer: M) -> Self
    where
        M: Layer<S> + Send + Sync + 'static,
        M::Service: Service<Req, Response = Res, Error = Err> + Clone + Send + Sync + 'static,
        <M::Service as Service<Req>>::Future: Send + 'static,
    {
        self.routes
            .push((route, Stack::Boxed(BoxRouteLayer::new(layer))));
        self
    }
}

impl<L, B> RouteTableBuilder<L, B> {
    /// Sends the requests `route` takes through `layer`.
    pub fn route(mut self, route: Route, layer: L) -> Self {
        self.routes.push((route, Stack::Typed(layer)));
        self
    }

    /// Checks the path patterns and builds the table.
    pub fn build(self) -> Result<RouteTable<L, B>, ConfigError> {
        let mut groups: Vec<Group> = Vec::new();
        let mut names: Vec<Arc<str>> = vec![Arc::from("")];
        let mut layers = Vec::with_capacity(self.routes.len());
        for (route, layer) in self.routes {
            let index = layers.len() + 1;
            let group = match groups
                .iter_mut()
                .position(|g| g.host == route.host && g.method == route.method)
            {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(Group {
                        host: route.host.clone(),
                        method: route.method.clone(),
                        paths: matchit::Router::new(),
                    });
                    let last = groups.len() - 1;
                    &mut groups[last]
                }
            };
            group
                .paths
                .insert(route.path.clone(), index)
                .map_err(|err| ConfigError::new("route.path", &route.path, err.to_string()))?;
            names.push(Arc::from(route.path));
            layers.push(layer);
        }
        groups.sort_by_key(Group::rank);
        Ok(RouteTable {
            routes: Arc::new(Routes { groups, names }),
            default: self.default,
            layers,
        })
    }
}

impl<S: Clone, L: Layer<S>, B: Layer<S>> Layer<S> for RouteTable<L, B> {
    type Service = RouteService<L::Service, B::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        let default = self.default.layer(inner.clone());
        // Route `i`'s name is at `i`: the default route's, unused, at 0.
        let services = self
            .layers
            .iter()
            .zip(self.routes.names.iter().skip(1))
            .map(|(stack, name)| {
                crate::event::layering_route(Arc::clone(name), || match stack {
                    Stack::Typed(layer) => Stack::Typed(layer.layer(inner.clone())),
                    Stack::Boxed(layer) => Stack::Boxed(layer.layer(inner.clone())),
                })
            })
            .collect();
        RouteService {
            routes: Arc::clone(&self.routes),
            default,
            services,
        }
    }
}

/// Sends each request through its route's service; made by
/// [`RouteTable`].
///
/// Ready when every route's service is ready. A clone clones every
/// route's service (they share their state).
pub struct RouteService<S, B = SameStack> {
    routes: Arc<Routes>,
    /// The default route's service: always of the table's type.
    default: S,
    /// One per route, in insertion order (route `i` at `i - 1`).
    services: Vec<Stack<S, B>>,
}

impl<S: Clone, B: Clone> Clone for RouteService<S, B> {
    fn clone(&self) -> Self {
        Self {
            routes: Arc::clone(&self.routes),
            default: self.default.clone(),
            services: self.services.clone(),
        }
    }
}

impl<S, B> fmt::Debug for RouteService<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteService")
            .field("routes", &(self.services.len() + 1))
            .finish()
    }
}

impl<S, B> RouteService<S, B> {
    /// `inner` wrapped as `table` wraps services (`table.layer(inner)`):
    /// each route's layer applied once over a clone of `inner`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use steadfast::http::{Route, RouteService, RouteTable};
    /// use steadfast::timeout::TimeoutLayer;
    /// use tower::{ServiceExt, service_fn};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), steadfast::BoxError> {
    /// let table = RouteTable::builder(TimeoutLayer::new(Duration::from_secs(10))?)
    ///     .route(Route::get("/search"), TimeoutLayer::new(Duration::from_millis(300))?)
    ///     .build()?;
    /// let inner = service_fn(|req: http::Request<()>| async move {
    ///     Ok::<_, steadfast::BoxError>(req.uri().path().len())
    /// });
    /// let client = RouteService::new(inner, &table);
    /// let req = http::Request::get("http://api.example/search").body(())?;
    /// assert_eq!(client.oneshot(req).await?, 7);
    /// # Ok(())
    /// # }
    /// ```
    pub fn new<T, L, Bl>(inner: T, table: &RouteTable<L, Bl>) -> Self
    where
        RouteTable<L, Bl>: Layer<T, Service = Self>,
    {
        table.layer(inner)
    }

    /// The default route's service (that of requests no route takes).
    pub fn get_ref(&self) -> &S {
        &self.default
    }

    /// The default route's service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.default
    }

    /// The default route's service, consuming this one (every other
    /// route's service is dropped).
    pub fn into_inner(self) -> S {
        self.default
    }

    /// Polls every route's service: `default` is the default route's
    /// poll, `ready` polls one of the others.
    fn poll_all<E>(
        &mut self,
        default: Poll<Result<(), E>>,
        cx: &mut Context<'_>,
        mut ready: impl FnMut(&mut Stack<S, B>, &mut Context<'_>) -> Poll<Result<(), E>>,
    ) -> Poll<Result<(), E>> {
        let mut pending = match default {
            Poll::Ready(Ok(())) => false,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => true,
        };
        for service in &mut self.services {
            match ready(service, cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => pending = true,
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(Ok(()))
        }
    }

    /// The service of the route that takes `request`, `None` for the
    /// default route.
    #[inline]
    fn pick<R: RequestParts>(&mut self, request: &R) -> Option<&mut Stack<S, B>> {
        let route = self
            .routes
            .route(request.method(), request.host(), request.path())?;
        self.services.get_mut(route)
    }
}

impl<S, R> Service<R> for RouteService<S>
where
    S: Service<R>,
    R: RequestParts,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let default = self.default.poll_ready(cx);
        self.poll_all(default, cx, |stack, cx| match stack {
            Stack::Typed(service) => service.poll_ready(cx),
            Stack::Boxed(never) => match *never {},
        })
    }

    fn call(&mut self, request: R) -> Self::Future {
        match self.pick(&request) {
            None => self.default.call(request),
            Some(Stack::Typed(service)) => service.call(request),
            Some(Stack::Boxed(never)) => match *never {},
        }
    }
}

impl<S, R> Service<R> for RouteService<S, BoxRouteService<R, S::Response, S::Error>>
where
    S: Service<R>,
    R: RequestParts,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RouteFuture<S::Future, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let default = self.default.poll_ready(cx);
        self.poll_all(default, cx, |stack, cx| match stack {
            Stack::Typed(service) => service.poll_ready(cx),
            Stack::Boxed(service) => Service::poll_ready(service, cx),
        })
    }

    fn call(&mut self, request: R) -> Self::Future {
        let state = match self.pick(&request) {
            None => RouteState::Typed {
                future: self.default.call(request),
            },
            Some(Stack::Typed(service)) => RouteState::Typed {
                future: service.call(request),
            },
            Some(Stack::Boxed(service)) => RouteState::Boxed {
                future: Service::call(service, request),
            },
        };
        RouteFuture { state }
    }
}

pin_project! {
    /// The response future of a [`RouteService`] with boxed routes: the
    /// table's layer's own future, or a boxed one.
    pub struct RouteFuture<F, Res, Err> {
        #[pin]
        state: RouteState<F, Res, Err>,
    }
}

pin_project! {
    #[project = RouteStateProj]
    enum RouteState<F, Res, Err> {
        Typed {
            #[pin]
            future: F,
        },
        Boxed {
            future: BoxRouteFuture<Res, Err>,
        },
    }
}

impl<F, Res, Err> fmt::Debug for RouteFuture<F, Res, Err> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.state {
            RouteState::Typed { .. } => "Typed",
            RouteState::Boxed { .. } => "Boxed",
        };
        f.debug_tuple("RouteFuture").field(&kind).finish()
    }
}

impl<F, Res, Err> Future for RouteFuture<F, Res, Err>
where
    F: Future<Output = Result<Res, Err>>,
{
    type Output = Result<Res, Err>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            RouteStateProj::Typed { future } => future.poll(cx),
            RouteStateProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CallContext;
    use crate::policy::Policy;
    use crate::replay::NoReplay;
    use tower::{ServiceExt, service_fn};

    /// A watched policy that names no route.
    fn unnamed() -> Policy<crate::classify::DefaultClassifier, NoReplay> {
        Policy::builder()
            .name("p")
            .replay(NoReplay)
            .on_event(|_| {})
            .build()
            .unwrap()
    }

    /// A service answering with the route its call is watched as.
    fn echo_route() -> impl Service<
        http::Request<()>,
        Response = String,
        Error = crate::BoxError,
        Future = impl Future<Output = Result<String, crate::BoxError>> + Send,
    > + Clone
    + Send
    + Sync
    + 'static {
        service_fn(|_: http::Request<()>| async {
            Ok::<_, crate::BoxError>(
                CallContext::current()
                    .map(|c| c.route().to_owned())
                    .unwrap_or_else(|| "unwatched".to_owned()),
            )
        })
    }

    async fn route_of<S>(service: &S, path: &str) -> String
    where
        S: Service<http::Request<()>, Response = String, Error = crate::BoxError> + Clone,
    {
        let request = http::Request::get(path).body(()).unwrap();
        service.clone().oneshot(request).await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_innermost_route_names_a_policy_of_nested_tables() {
        let inner = RouteTable::builder(unnamed())
            .route(Route::get("/api/users/{id}"), unnamed())
            .build()
            .unwrap();
        let outer = RouteTable::builder(unnamed())
            .route_boxed(Route::get("/api/{*rest}"), inner)
            .build()
            .unwrap();
        let client = outer.layer(echo_route());
        assert_eq!(route_of(&client, "/api/users/1").await, "/api/users/{id}");
        // The inner table's default route, within the outer route.
        assert_eq!(route_of(&client, "/api/other").await, "/api/{*rest}");
        // The outer default route.
        assert_eq!(route_of(&client, "/elsewhere").await, "");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_while_layering_a_route_leaves_no_name_behind() {
        struct Panics;
        impl<S> Layer<S> for Panics {
            type Service = S;
            fn layer(&self, _inner: S) -> S {
                panic!("layer refused")
            }
        }
        let result = std::panic::catch_unwind(|| {
            crate::event::layering_route(Arc::from("/doomed"), || Panics.layer(()));
        });
        assert!(result.is_err());
        let client = unnamed().layer(echo_route());
        assert_eq!(route_of(&client, "/x").await, "");
    }
}
