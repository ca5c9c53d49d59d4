//! A route table with a different stack per route, and routes that name
//! their policies, on the client (reqwest) and on the server (axum's
//! `MatchedPath`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use reqwest::{Client, Method, Request};
use steadfast::BoxError;
use steadfast::circuit_breaker::CircuitBreakerLayer;
use steadfast::http::axum::MatchedPathLayer;
use steadfast::http::{ErrorResponseLayer, HttpClassifier, HttpReplay, Route, RouteTable};
use steadfast::observe::{CallContext, Event};
use steadfast::policy::Policy;
use steadfast::retry::{Backoff, NoReplay, RetryLayer};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

use crate::backend::{flaky, serve};

/// What each call that ended said: policy, route (from the event and from
/// the call's context), attempts.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Ended>>>);

/// Policy, route of the event, route of the context, attempts.
type Ended = (String, String, String, u32);

impl Calls {
    fn listener(&self) -> impl Fn(&Event<'_>) + Send + Sync + 'static {
        let calls = self.0.clone();
        move |event| {
            if let Event::CallEnded {
                policy,
                route,
                attempts,
                ..
            } = event
            {
                let context = CallContext::current().map(|c| c.route().to_owned());
                calls.lock().unwrap().push((
                    policy.to_string(),
                    route.to_string(),
                    context.unwrap_or_default(),
                    *attempts,
                ));
            }
        }
    }

    fn take(&self) -> Vec<Ended> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn call(policy: &str, route: &str, attempts: u32) -> Ended {
    (policy.into(), route.into(), route.into(), attempts)
}

#[tokio::test]
async fn a_get_route_retries_and_a_post_route_of_another_type_does_not() -> Result<(), BoxError> {
    let (addr, log) = flaky().await;
    let calls = Calls::default();
    // Reads: retried three times, a millisecond apart.
    let reads = Policy::builder()
        .name("reads")
        .classifier(HttpClassifier::new())
        .replay(HttpReplay::new())
        .retry(
            RetryLayer::builder()
                .max_attempts(3)
                .backoff(Backoff::constant(Duration::from_millis(1))),
        )
        .on_event(calls.listener())
        .build()?;
    // Writes: another type (no replay), never sent again, a breaker of
    // their own.
    let writes = Policy::builder()
        .name("writes")
        .classifier(HttpClassifier::new())
        .replay(NoReplay)
        .circuit_breaker(CircuitBreakerLayer::builder().minimum_calls(100))
        .on_event(calls.listener())
        .build()?;
    let writes_breaker = writes.circuit_breaker().unwrap();
    let table = RouteTable::builder(reads.clone())
        .route(Route::get("/gateway/{id}"), reads)
        .route_boxed(Route::post("/gateway/{id}"), writes)
        .build()?;
    assert!(
        table
            .typed_layer_of(&Method::POST, None, "/gateway/x")
            .is_none()
    );
    let mut client = ServiceBuilder::new().layer(table).service(Client::new());
    let mut send = async |method: Method, path: &str| {
        let req = Request::new(method, format!("http://{addr}{path}").parse().unwrap());
        client.ready().await.unwrap().call(req).await
    };

    assert_eq!(send(Method::GET, "/gateway/a").await?.status(), 502);
    assert_eq!(log.hits("/gateway/a"), 3);
    assert_eq!(calls.take(), [call("reads", "/gateway/{id}", 3)]);

    assert_eq!(send(Method::POST, "/gateway/b").await?.status(), 502);
    assert_eq!(log.hits("/gateway/b"), 1);
    assert_eq!(calls.take(), [call("writes", "/gateway/{id}", 1)]);
    assert_eq!(writes_breaker.snapshot().failure_rate(), 100.0);

    // The default route: a clone of the GET route's policy, unnamed.
    assert_eq!(send(Method::GET, "/ok/d").await?.status(), 200);
    assert_eq!(calls.take(), [call("reads", "", 1)]);
    Ok(())
}

#[tokio::test]
async fn a_policy_that_names_its_route_keeps_that_name() -> Result<(), BoxError> {
    let (addr, log) = flaky().await;
    let calls = Calls::default();
    let policy = |route: Option<&'static str>| {
        let builder = Policy::builder()
            .name("named")
            .classifier(HttpClassifier::new())
            .replay(HttpReplay::new())
            .on_event(calls.listener());
        match route {
            Some(route) => builder.route(route),
            None => builder,
        }
        .build()
        .unwrap()
    };
    let table = RouteTable::builder(policy(None))
        .route(Route::get("/ok/{id}"), policy(Some("ok-pages")))
        .route(Route::get("/fail/{id}"), policy(None))
        .build()?;
    let mut client = table.layer(Client::new());
    for path in ["/ok/a", "/fail/b"] {
        let req = Request::new(Method::GET, format!("http://{addr}{path}").parse()?);
        client.ready().await?.call(req).await?;
    }
    assert_eq!(log.hits("/ok/a") + log.hits("/fail/b"), 2);
    assert_eq!(
        calls.take(),
        [call("named", "ok-pages", 1), call("named", "/fail/{id}", 1)]
    );
    Ok(())
}

#[tokio::test]
async fn an_axum_app_names_its_routes_by_their_matched_path() -> Result<(), BoxError> {
    let calls = Calls::default();
    let policy = Policy::builder()
        .name("api")
        .replay(NoReplay)
        .on_event(calls.listener())
        .build()?;
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/orders", post(|| async { "ordered" }))
        .nest(
            "/admin",
            Router::new().route("/jobs/{job}", get(|| async { "job" })),
        )
        .layer(
            ServiceBuilder::new()
                .layer(ErrorResponseLayer::new())
                .layer(MatchedPathLayer::new(policy)),
        );
    let addr = serve(app).await;
    let client = Client::new();
    let url = |path: &str| format!("http://{addr}{path}");

    assert_eq!(
        client.get(url("/users/7")).send().await?.text().await?,
        "user"
    );
    assert_eq!(client.get(url("/users/8")).send().await?.status(), 200);
    assert_eq!(client.post(url("/orders")).send().await?.status(), 200);
    assert_eq!(client.get(url("/admin/jobs/3")).send().await?.status(), 200);
    assert_eq!(client.get(url("/nowhere")).send().await?.status(), 404);
    let routes: Vec<String> = calls.take().into_iter().map(|(_, r, _, _)| r).collect();
    assert_eq!(
        routes,
        [
            "/users/{id}",
            "/users/{id}",
            "/orders",
            "/admin/jobs/{job}",
            ""
        ]
    );
    Ok(())
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn each_route_counts_its_calls_under_its_own_label() -> Result<(), BoxError> {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (addr, _log) = flaky().await;
    let policy = Policy::builder()
        .name("client")
        .classifier(HttpClassifier::new())
        .replay(HttpReplay::new())
        .metrics(true)
        .build()?;
    // One policy for both routes: they share its state, each counts its
    // own calls.
    let table = RouteTable::builder(policy.clone())
        .route(Route::get("/ok/{id}"), policy.clone())
        .route(Route::get("/fail/{id}"), policy)
        .build()?;
    let mut client = table.layer(Client::new());
    for path in ["/ok/a", "/ok/b", "/fail/c", "/elsewhere"] {
        let req = Request::new(Method::GET, format!("http://{addr}{path}").parse()?);
        client.ready().await?.call(req).await?;
    }
    let mut counts: Vec<(String, String, u64)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key().clone();
            let label = |name: &str| {
                key.labels()
                    .find(|l| l.key() == name)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            match value {
                DebugValue::Counter(n) if key.name() == "steadfast_calls_total" && n > 0 => {
                    Some((label("route"), label("verdict"), n))
                }
                _ => None,
            }
        })
        .collect();
    counts.sort();
    assert_eq!(
        counts,
        [
            (String::new(), "functional_error".to_owned(), 1),
            ("/fail/{id}".to_owned(), "failure".to_owned(), 1),
            ("/ok/{id}".to_owned(), "success".to_owned(), 2),
        ]
    );
    Ok(())
}
