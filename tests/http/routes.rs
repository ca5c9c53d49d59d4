//! Per-route policies: each route keeps its own breaker.

use std::time::Duration;

use reqwest::{Client, Method, Request};
use steadfast::circuit_breaker::{CircuitBreakerLayer, State};
use steadfast::error::CircuitOpen;
use steadfast::http::{HttpClassifier, HttpReplay, Route, RouteTable};
use steadfast::policy::Policy;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::backend::flaky;

fn breaking() -> Policy<HttpClassifier, HttpReplay> {
    Policy::builder()
        .classifier(HttpClassifier::new())
        .replay(HttpReplay::new())
        .circuit_breaker(
            CircuitBreakerLayer::builder()
                .count_window(2)
                .minimum_calls(2)
                .failure_rate_threshold(50.0)
                .open_duration(Duration::from_secs(60)),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn each_route_keeps_its_own_breaker() {
    let (addr, log) = flaky().await;
    let table = RouteTable::builder(breaking())
        .route(Route::any("/fail/{id}"), breaking())
        .route(Route::get("/ok/{id}").host("127.0.0.1"), breaking())
        .build()
        .unwrap();
    let fail = table
        .layer_of(&Method::GET, None, "/fail/x")
        .circuit_breaker()
        .unwrap();
    let ok = table
        .layer_of(&Method::GET, Some("127.0.0.1"), "/ok/x")
        .circuit_breaker()
        .unwrap();
    let default = table
        .layer_of(&Method::GET, None, "/elsewhere")
        .circuit_breaker()
        .unwrap();
    let mut client = ServiceBuilder::new().layer(table).service(Client::new());
    let mut send = async |path: &str| {
        let req = Request::new(Method::GET, format!("http://{addr}{path}").parse().unwrap());
        client.ready().await.unwrap().call(req).await
    };

    for _ in 0..2 {
        assert_eq!(send("/fail/r").await.unwrap().status(), 500);
    }
    assert_eq!(fail.state(), State::Open);
    assert!(send("/fail/r").await.unwrap_err().is::<CircuitOpen>());
    assert_eq!(log.hits("/fail/r"), 2);

    // Another route, and the default route, still call through.
    for _ in 0..3 {
        assert_eq!(send("/ok/r").await.unwrap().status(), 200);
        assert_eq!(send("/busy/0/r").await.unwrap().status(), 200);
    }
    assert_eq!(ok.state(), State::Closed);
    assert_eq!(default.state(), State::Closed);
    assert_eq!(log.hits("/ok/r"), 3);
}

#[tokio::test]
async fn the_table_built_once_is_shared_by_clones() {
    let (addr, log) = flaky().await;
    let table = RouteTable::builder(breaking())
        .route(Route::any("/fail/{id}"), breaking())
        .build()
        .unwrap();
    let client = ServiceBuilder::new().layer(table).service(Client::new());
    for _ in 0..2 {
        let req = Request::new(
            Method::GET,
            format!("http://{addr}/fail/s").parse().unwrap(),
        );
        assert_eq!(client.clone().oneshot(req).await.unwrap().status(), 500);
    }
    let req = Request::new(
        Method::GET,
        format!("http://{addr}/fail/s").parse().unwrap(),
    );
    assert!(
        client
            .clone()
            .oneshot(req)
            .await
            .unwrap_err()
            .is::<CircuitOpen>()
    );
    assert_eq!(log.hits("/fail/s"), 2);
}

#[test]
fn routes_match_most_specific_first() {
    let table = RouteTable::builder("default")
        .route(Route::any("/users/{id}"), "any")
        .route(Route::get("/users/{id}"), "get")
        .route(Route::get("/users/{id}").host("API.example"), "host+get")
        .route(Route::any("/users/{id}").host("api.example"), "host")
        .route(Route::any("/static/{*rest}"), "static")
        .build()
        .unwrap();
    let at = |m: Method, host, path| *table.layer_of(&m, host, path);
    assert_eq!(at(Method::GET, Some("api.example"), "/users/1"), "host+get");
    assert_eq!(at(Method::POST, Some("api.example"), "/users/1"), "host");
    assert_eq!(at(Method::GET, Some("other.example"), "/users/1"), "get");
    assert_eq!(at(Method::DELETE, None, "/users/1"), "any");
    assert_eq!(at(Method::GET, None, "/static/a/b.css"), "static");
    assert_eq!(at(Method::GET, None, "/nowhere"), "default");
    assert_eq!(table.route_of(&Method::GET, None, "/nowhere"), None);
}

#[test]
fn a_bad_path_pattern_is_refused() {
    let err = RouteTable::builder(())
        .route(Route::any("/a/{id}"), ())
        .route(Route::any("/a/{name}"), ())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "route.path");
    assert_eq!(err.value(), "/a/{name}");
}
