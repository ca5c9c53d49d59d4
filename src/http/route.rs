//! Per-route policies for clients: method + host + path pattern → policy.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

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
    names: Vec<String>,
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
pub struct RouteTable<L> {
    routes: Arc<Routes>,
    // Index 0: the default route; then one per route, in insertion order.
    layers: Vec<L>,
}

impl<L> RouteTable<L> {
    /// Starts a table whose unknown routes go through `default`.
    pub fn builder(default: L) -> RouteTableBuilder<L> {
        RouteTableBuilder {
            default,
            routes: Vec::new(),
        }
    }

    /// The path pattern of the route that takes such a request, `None`
    /// for the default route.
    pub fn route_of(&self, method: &Method, host: Option<&str>, path: &str) -> Option<&str> {
        match self.routes.find(method, host, path) {
            0 => None,
            i => self.routes.names.get(i).map(String::as_str),
        }
    }

    /// The layer of the route that takes such a request (the default
    /// route's if none does), to reach its handles.
    pub fn layer_of(&self, method: &Method, host: Option<&str>, path: &str) -> &L {
        let i = self.routes.find(method, host, path);
        &self.layers[i.min(self.layers.len() - 1)]
    }
}

impl<L: Clone> Clone for RouteTable<L> {
    fn clone(&self) -> Self {
        Self {
            routes: Arc::clone(&self.routes),
            layers: self.layers.clone(),
        }
    }
}

impl<L> fmt::Debug for RouteTable<L> {
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
pub struct RouteTableBuilder<L> {
    default: L,
    routes: Vec<(Route, L)>,
}

impl<L> fmt::Debug for RouteTableBuilder<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<_> = self.routes.iter().map(|(r, _)| r).collect();
        f.debug_struct("RouteTableBuilder")
            .field("routes", &routes)
            .finish()
    }
}

impl<L> RouteTableBuilder<L> {
    /// Sends the requests `route` takes through `layer`.
    pub fn route(mut self, route: Route, layer: L) -> Self {
        self.routes.push((route, layer));
        self
    }

    /// Checks the path patterns and builds the table.
    pub fn build(self) -> Result<RouteTable<L>, ConfigError> {
        let mut groups: Vec<Group> = Vec::new();
        let mut names = vec![String::new()];
        let mut layers = vec![self.default];
        for (route, layer) in self.routes {
            let index = layers.len();
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
            names.push(route.path);
            layers.push(layer);
        }
        groups.sort_by_key(Group::rank);
        Ok(RouteTable {
            routes: Arc::new(Routes { groups, names }),
            layers,
        })
    }
}

impl<S: Clone, L: Layer<S>> Layer<S> for RouteTable<L> {
    type Service = RouteService<L::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteService {
            routes: Arc::clone(&self.routes),
            services: self.layers.iter().map(|l| l.layer(inner.clone())).collect(),
        }
    }
}

/// Sends each request through its route's service; made by
/// [`RouteTable`].
///
/// Ready when every route's service is ready. A clone clones every
/// route's service (they share their state).
#[derive(Clone)]
pub struct RouteService<S> {
    routes: Arc<Routes>,
    services: Vec<S>,
}

impl<S> fmt::Debug for RouteService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteService")
            .field("routes", &self.services.len())
            .finish()
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
        let mut pending = false;
        for service in &mut self.services {
            match service.poll_ready(cx) {
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

    fn call(&mut self, request: R) -> Self::Future {
        let i = self
            .routes
            .find(request.method(), request.host(), request.path());
        let last = self.services.len() - 1;
        self.services[i.min(last)].call(request)
    }
}
