//! The levels a file chooses: a breaker or a bulkhead per host, hedging,
//! against real axum servers on 127.0.0.1; and their bad settings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use reqwest::{Client, Method, Request};
use steadfast::config::{PolicySet, PolicySetConfig};
use steadfast::http::{ByHost, HttpClassifier, HttpReplay};
use steadfast::observe::RequestIdHeader;
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceExt};

type HttpSet = PolicySet<HttpClassifier, HttpReplay, RequestIdHeader, ByHost>;

fn load(text: &str) -> PolicySetConfig {
    let de = toml::Deserializer::parse(text).expect("the test's TOML parses");
    PolicySetConfig::from_deserializer(de).expect("the test's settings load")
}

fn build_http(text: &str) -> HttpSet {
    load(text)
        .build_http_with(|_, builder| {
            builder
                .classifier(HttpClassifier::new())
                .replay(HttpReplay::new())
                .request_id(RequestIdHeader::new())
        })
        .expect("the test's settings build")
}

fn client() -> Client {
    Client::builder()
        .retry(reqwest::retry::never())
        .build()
        .unwrap()
}

/// A server on 127.0.0.1 answering `status` to every call, counting them.
async fn server(status: StatusCode) -> (SocketAddr, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let counted = hits.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { status }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

/// Calls `http://{addr}/` through `policy` over reqwest: the status, or
/// the error.
async fn get_through(
    policy: &steadfast::config::ConfigPolicy<HttpClassifier, HttpReplay, RequestIdHeader, ByHost>,
    addr: SocketAddr,
) -> Result<u16, String> {
    let request = Request::new(Method::GET, format!("http://{addr}/").parse().unwrap());
    policy
        .layer(client())
        .oneshot(request)
        .await
        .map(|response| response.status().as_u16())
        .map_err(|err| err.to_string())
}

const BREAKER: &str = r#"
[policies.api]
circuit_breaker = { consecutive_failures = 2, open_duration = "1h", per = "PER" }
"#;

#[tokio::test]
async fn a_breaker_per_host_opens_for_one_host_only() {
    let (failing, failing_hits) = server(StatusCode::SERVICE_UNAVAILABLE).await;
    let (healthy, healthy_hits) = server(StatusCode::OK).await;
    let set = build_http(&BREAKER.replace("PER", "host"));
    let api = set.policy("api").unwrap();
    assert!(api.breaker_per_host());
    assert!(api.circuit_breaker().is_none(), "no single breaker");

    assert_eq!(get_through(api, failing).await, Ok(503));
    assert_eq!(get_through(api, failing).await, Ok(503));
    let refused = get_through(api, failing).await.unwrap_err();
    assert!(refused.contains("circuit open"), "{refused}");
    assert_eq!(
        failing_hits.load(Ordering::SeqCst),
        2,
        "the third call was refused"
    );

    // The other host has a breaker of its own, closed.
    for _ in 0..3 {
        assert_eq!(get_through(api, healthy).await, Ok(200));
    }
    assert_eq!(healthy_hits.load(Ordering::SeqCst), 3);
    assert_eq!(api.circuit_breakers().len(), 2, "one breaker per host");
}

#[tokio::test]
async fn a_shared_breaker_opens_for_every_host() {
    let (failing, _) = server(StatusCode::SERVICE_UNAVAILABLE).await;
    let (healthy, healthy_hits) = server(StatusCode::OK).await;
    for per in ["shared", "left out"] {
        let text = match per {
            "left out" => BREAKER.replace(", per = \"PER\"", ""),
            per => BREAKER.replace("PER", per),
        };
        let set = build_http(&text);
        let api = set.policy("api").unwrap();
        assert!(!api.breaker_per_host(), "{per}");
        assert!(
            api.plain().is_some(),
            "a shared breaker is the plain policy"
        );

        assert_eq!(get_through(api, failing).await, Ok(503));
        assert_eq!(get_through(api, failing).await, Ok(503));
        let refused = get_through(api, healthy).await.unwrap_err();
        assert!(refused.contains("circuit open"), "{refused}");
    }
    assert_eq!(healthy_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_bulkhead_per_host_keeps_one_per_host() {
    let (one, _) = server(StatusCode::OK).await;
    let (two, _) = server(StatusCode::OK).await;
    let set = build_http(
        "[policies.api]\nbulkhead = { max_concurrent = 3, per = \"host\", max_keys = 10 }",
    );
    let api = set.policy("api").unwrap();
    assert!(api.bulkhead_per_host() && !api.breaker_per_host());
    assert!(api.bulkhead().is_none(), "no single bulkhead");
    assert_eq!(get_through(api, one).await, Ok(200));
    assert_eq!(get_through(api, two).await, Ok(200));
    assert_eq!(get_through(api, two).await, Ok(200));
    let bulkheads = api.bulkheads();
    assert_eq!(bulkheads.len(), 2, "one bulkhead per host");
    assert!(bulkheads.iter().all(|b| b.max_concurrent() == 3));
    assert!(
        bulkheads.iter().all(|b| b.available() == 3),
        "every permit released"
    );
}

#[tokio::test]
async fn a_hedge_is_sent_when_the_first_copy_is_slow() {
    // The first call hangs until the second arrives: only a hedge ends it.
    let hits = Arc::new(AtomicU32::new(0));
    let second = Arc::new(Notify::new());
    let app = {
        let (hits, second) = (hits.clone(), second.clone());
        Router::new().route(
            "/",
            get(move || {
                let (hits, second) = (hits.clone(), second.clone());
                async move {
                    if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                        second.notified().await;
                        "first"
                    } else {
                        second.notify_one();
                        "hedge"
                    }
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let set = build_http(
        r#"
        [routes."/"]
        method = "GET"
        # A bound on the call should the hedge never go out.
        timeout = { total = "30s" }
        hedge = { max_hedges = 1, delay = "10ms", unlimited_budget = true }
        "#,
    );
    let (_, route) = set.routes().next().unwrap();
    assert_eq!(route.hedge().map(|h| h.max_hedges()), Some(1));
    let mut client = set.route_table().clone().layer(client());
    let request = Request::new(Method::GET, format!("http://{addr}/").parse().unwrap());
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(body == "hedge" || body == "first", "{body}");
    assert_eq!(hits.load(Ordering::SeqCst), 2, "a hedge was sent");
}

#[test]
fn a_level_per_host_needs_requests_with_hosts() {
    let text = "[routes.\"/users/{id}\"]\nbulkhead = { per = \"host\" }";
    let err = load(text).build().unwrap_err();
    assert_eq!(err.field(), r#"routes."/users/{id}".bulkhead.per"#);
    assert_eq!(err.value(), "host");
    assert!(err.rule().contains("build_http_with"), "{}", err.rule());
}

#[test]
fn bad_hedge_and_key_settings_name_their_full_path() {
    let cases = [
        (
            "hedge = { max_hedges = 4294967295 }",
            r#"routes."/users/{id}".hedge.max_hedges"#,
        ),
        (
            "hedge = { max_hedges = 0 }",
            r#"routes."/users/{id}".hedge.max_hedges"#,
        ),
        (
            "hedge = { delay = \"0s\" }",
            r#"routes."/users/{id}".hedge.delay"#,
        ),
        (
            "hedge = { max_extra_load = 1.5, floor = \"1ms\" }",
            r#"routes."/users/{id}".hedge.max_extra_load"#,
        ),
        (
            "hedge = { max_extra_load = 0.02, floor = \"0s\" }",
            r#"routes."/users/{id}".hedge.floor"#,
        ),
        (
            "hedge = { max_extra_load = 0.02 }",
            r#"routes."/users/{id}".hedge.floor"#,
        ),
        (
            "hedge = { delay = \"10ms\", max_extra_load = 0.02 }",
            r#"routes."/users/{id}".hedge.delay"#,
        ),
        (
            "circuit_breaker = { per = \"host\", max_keys = 0 }",
            r#"routes."/users/{id}".circuit_breaker.max_keys"#,
        ),
        (
            "bulkhead = { max_keys = 5 }",
            r#"routes."/users/{id}".bulkhead.max_keys"#,
        ),
    ];
    for (setting, field) in cases {
        let text = format!("[routes.\"/users/{{id}}\"]\n{setting}");
        let err = load(&text)
            .build_http_with(|_, builder| {
                builder
                    .classifier(HttpClassifier::new())
                    .replay(HttpReplay::new())
            })
            .unwrap_err();
        assert_eq!(err.field(), field, "{setting}: {err}");
    }
}

#[test]
fn the_largest_hedge_and_key_values_are_checked_not_panicked_on() {
    // A Duration::MAX-sized hedge delay and u64::MAX keys are valid.
    let text = "[policies.api]\nhedge = { max_hedges = 10, delay = \"584542046090y\" }\n\
                circuit_breaker = { per = \"host\", max_keys = 18446744073709551615 }\n\
                bulkhead = { per = \"host\", max_keys = 18446744073709551615 }";
    let set = build_http(text);
    let api = set.policy("api").unwrap();
    assert!(api.breaker_per_host() && api.bulkhead_per_host());
    assert_eq!(api.hedge().map(|h| h.max_hedges()), Some(10));

    // u32::MAX hedges are refused, named.
    let text = "[policies.api]\nhedge = { max_hedges = 4294967295, delay = \"584542046090y\" }";
    let err = load(text)
        .build_http_with(|_, builder| {
            builder
                .classifier(HttpClassifier::new())
                .replay(HttpReplay::new())
        })
        .unwrap_err();
    assert_eq!(err.field(), "policies.api.hedge.max_hedges");
    assert_eq!(err.value(), "4294967295");
}

#[test]
fn unknown_hedge_fields_and_kinds_are_refused_at_their_path() {
    let de = toml::Deserializer::parse("[policies.api]\nhedge = { delays = \"1s\" }").unwrap();
    let err = PolicySetConfig::from_deserializer(de).unwrap_err();
    assert_eq!(err.field(), "policies.api.hedge.delays");

    let de = toml::Deserializer::parse("[policies.api]\ncircuit_breaker = { per = \"tenant\" }")
        .unwrap();
    let err = PolicySetConfig::from_deserializer(de).unwrap_err();
    assert_eq!(err.field(), "policies.api.circuit_breaker.per");
}

#[test]
fn the_hosts_example_file_loads() {
    let text = include_str!("../../examples/config/hosts.toml");
    let set = build_http(text);
    let per_host = set.policy("per_host").unwrap();
    assert!(per_host.breaker_per_host() && per_host.bulkhead_per_host());
    assert_eq!(set.default_policy().name(), "per_host");
    let (path, search) = set.routes().next().unwrap();
    assert_eq!(path, "/search");
    assert_eq!(search.hedge().map(|h| h.max_hedges()), Some(1));
    assert!(!search.breaker_per_host(), "the route has no breaker");
}
