//! Policies from a configuration file: a named policy and two routes read
//! from `examples/config/policies.toml`, the HTTP classifier and replay
//! attached in code, the route table layered over a reqwest client.
//!
//! Run: `cargo run --example config --features serde,reqwest,axum`

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use reqwest::{Method, Request};
use steadfast::config::PolicySetConfig;
use steadfast::http::{HttpClassifier, HttpReplay};
use tower::{Layer, Service, ServiceExt};

const POLICIES: &str = include_str!("config/policies.toml");

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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, backend).await });

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
    Ok(())
}
