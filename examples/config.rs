//! Policies from configuration files: a named policy and two routes read
//! from `examples/config/policies.toml`, then per-host breakers and a
//! hedged route from `examples/config/hosts.toml`, the HTTP classifier and
//! replay attached in code, the route tables layered over a reqwest client.
//!
//! Run: `cargo run --example config --features serde,reqwest,axum`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use reqwest::{Method, Request};
use steadfast::config::PolicySetConfig;
use steadfast::http::{HttpClassifier, HttpReplay};
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceExt};

const POLICIES: &str = include_str!("config/policies.toml");
const HOSTS: &str = include_str!("config/hosts.toml");

async fn serve(app: Router) -> Result<SocketAddr, steadfast::BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), steadfast::BoxError> {
    // A backend whose users route fails every other call.
    let calls = Arc::new(AtomicU32::new(0));
    let backend = Router::new()
        .route("/search", get(|| async { "results" }))
        .route(
            "/users/{id}",
            get(move || {
                let calls = calls.clone();
                async move {
                    if calls.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
    let addr = serve(backend).await?;

    // The file holds data; the classifier and replay are attached in code.
    let config = PolicySetConfig::from_deserializer(toml::Deserializer::parse(POLICIES)?)?;
    let policies = config.build_with(|_name, builder| {
        builder
            .classifier(HttpClassifier::new())
            .replay(HttpReplay::new())
    })?;
    for (path, policy) in policies.routes() {
        println!(
            "route {path:<12} policy {:<12} total {:?}, attempt {:?}",
            policy.name(),
            policy.total_timeout(),
            policy.attempt_timeout()
        );
    }

    let mut client = policies.route_table().clone().layer(reqwest::Client::new());
    for path in ["/search", "/users/7", "/users/8", "/health"] {
        let request = Request::new(Method::GET, format!("http://{addr}{path}").parse()?);
        let outcome = match client.ready().await?.call(request).await {
            Ok(response) => response.status().to_string(),
            Err(err) => format!("failed: {err}"),
        };
        println!("GET {path:<10} -> {outcome}");
    }

    // A bad value is refused when the file is loaded, at its full path.
    let bad = POLICIES.replace("max_attempts = 2", "max_attempts = 0");
    let err = PolicySetConfig::from_deserializer(toml::Deserializer::parse(&bad)?)?
        .build()
        .unwrap_err();
    println!("refused: {err}");
    assert_eq!(err.field(), r#"routes."/search".retry.max_attempts"#);

    // Per-host levels and hedging. One host is down, one is up; the up
    // host's search answers its first copy only once a hedge arrives.
    let down = serve(Router::new().route("/users/{id}", get(|| async { StatusCode::BAD_GATEWAY })))
        .await?;
    let hits = Arc::new(AtomicU32::new(0));
    let hedge = Arc::new(Notify::new());
    let up = {
        let (hits, hedge) = (hits.clone(), hedge.clone());
        let search = get(move || {
            let (hits, hedge) = (hits.clone(), hedge.clone());
            async move {
                if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                    hedge.notified().await;
                    "first copy"
                } else {
                    hedge.notify_one();
                    "hedge"
                }
            }
        });
        serve(
            Router::new()
                .route("/search", search)
                .route("/users/{id}", get(|| async { "user" })),
        )
        .await?
    };
    let config = PolicySetConfig::from_deserializer(toml::Deserializer::parse(HOSTS)?)?;
    let hosts = config.build_http_with(|_name, builder| {
        builder
            .classifier(HttpClassifier::new())
            .replay(HttpReplay::new())
    })?;
    let per_host = hosts.policy("per_host").expect("the file names it");
    println!(
        "policy per_host: breaker per host {}, bulkhead per host {}",
        per_host.breaker_per_host(),
        per_host.bulkhead_per_host()
    );
    let mut client = hosts.route_table().clone().layer(reqwest::Client::new());
    for (host, path) in [
        (down, "/users/1"),
        (down, "/users/2"),
        (down, "/users/3"),
        (down, "/users/4"),
        (up, "/users/1"),
        (up, "/search"),
    ] {
        let request = Request::new(Method::GET, format!("http://{host}{path}").parse()?);
        let outcome = match client.ready().await?.call(request).await {
            Ok(response) => {
                let status = response.status();
                format!("{status} {}", response.text().await?)
            }
            Err(err) => format!("failed: {err}"),
        };
        println!("GET {host}{path:<10} -> {outcome}");
    }
    println!(
        "breakers: {} (one per host called), search copies sent: {}",
        per_host.circuit_breakers().len(),
        hits.load(Ordering::SeqCst)
    );
    assert_eq!(per_host.circuit_breakers().len(), 2);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "the search was hedged");

    // Without hosts to read, a level per host is refused at its path.
    let err = config.build().unwrap_err();
    println!("refused: {err}");
    assert_eq!(err.field(), "policies.per_host.circuit_breaker.per");
    Ok(())
}
