//! Three axum replicas behind a round-robin front, with free and gold
//! tiers: first each replica limits in its own process (the default store),
//! then all three share one Redis (`Exact`, then `Leased`).
//!
//! The example starts its own `redis-server` (Debian: `apt-get install
//! redis-server`) on a free port of 127.0.0.1, without persistence, and
//! stops it at the end.
//!
//! Run: `cargo run --example fleet --features redis,axum,reqwest`

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, Response, StatusCode};
use axum::routing::get;
use steadfast::http::{ErrorResponseLayer, RateLimitHeadersLayer};
use steadfast::rate_limit::{Consistency, FailMode, Quota, RateLimitLayer, RedisStore};
use tower::ServiceBuilder;

const REPLICAS: usize = 3;
/// Free: 10 calls a minute, 10 at once. Gold: 50 a minute, 50 at once.
const FREE: Quota = Quota::per_minute(10);
const GOLD: Quota = Quota::per_minute(50);
/// Calls each client sends, all through the front.
const FREE_CALLS: usize = 60;
const GOLD_CALLS: usize = 200;

/// A `redis-server` of the example's own, killed by its pid on drop.
struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    fn start() -> Result<Self, steadfast::BoxError> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = std::env::temp_dir().join(format!("steadfast-fleet-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .args(["--dir", dir.to_str().ok_or("temp dir is not UTF-8")?])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("redis-server did not start ({e}); apt-get install redis-server")
            })?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let redis = Self { child, port, dir };
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Ready to accept connections") => break,
                Some(Ok(_)) => {}
                _ => return Err("redis-server exited before it was ready".into()),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn api_key(request: &Request<Body>) -> String {
    request
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous")
        .to_owned()
}

/// One replica: its own limiter, and with `store` its own connection.
async fn replica(store: Option<RedisStore>) -> Result<SocketAddr, steadfast::BoxError> {
    let builder = RateLimitLayer::builder()
        .tier("free", FREE)
        .tier("gold", GOLD)
        .default_tier("free")
        .key(api_key)
        .tier_of(|key: &String| {
            if key.starts_with("gold_") {
                "gold"
            } else {
                "free"
            }
        });
    let limit = match store {
        Some(store) => builder.store(store).build()?,
        None => builder.build()?,
    };
    let app = Router::new().route("/", get(|| async { "ok" })).layer(
        ServiceBuilder::new()
            .layer(RateLimitHeadersLayer::new().legacy(true))
            .layer(ErrorResponseLayer::new())
            .layer(limit),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[derive(Clone)]
struct Front {
    replicas: Arc<[SocketAddr]>,
    next: Arc<AtomicUsize>,
    client: reqwest::Client,
}

/// The front: sends each request to the next replica in turn.
async fn forward(State(front): State<Front>, headers: HeaderMap) -> Response<Body> {
    let n = front.next.fetch_add(1, Ordering::Relaxed) % front.replicas.len();
    let mut request = front.client.get(format!("http://{}/", front.replicas[n]));
    if let Some(key) = headers.get("x-api-key") {
        request = request.header("x-api-key", key);
    }
    let Ok(upstream) = request.send().await else {
        return Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::empty())
            .unwrap_or_default();
    };
    let mut response = Response::builder().status(upstream.status().as_u16());
    for (name, value) in upstream.headers() {
        if name.as_str().contains("ratelimit") || name == "retry-after" {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    let body = upstream.bytes().await.unwrap_or_default();
    response.body(Body::from(body)).unwrap_or_default()
}

async fn front(replicas: Vec<SocketAddr>) -> Result<SocketAddr, steadfast::BoxError> {
    let state = Front {
        replicas: replicas.into(),
        next: Arc::default(),
        client: reqwest::Client::new(),
    };
    let app = Router::new().route("/", get(forward)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// What one client saw: admitted calls, and the headers of its last
/// admitted call and of its first refusal.
struct Seen {
    admitted: usize,
    last_ok: Vec<String>,
    first_refusal: Vec<String>,
}

fn rate_headers(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.as_str().contains("ratelimit") || *n == "retry-after")
        .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
        .collect();
    out.sort();
    out
}

async fn client(front: SocketAddr, key: &str, calls: usize) -> Result<Seen, steadfast::BoxError> {
    let http = reqwest::Client::new();
    let mut seen = Seen {
        admitted: 0,
        last_ok: Vec::new(),
        first_refusal: Vec::new(),
    };
    for _ in 0..calls {
        let response = http
            .get(format!("http://{front}/"))
            .header("x-api-key", key)
            .send()
            .await?;
        match response.status().as_u16() {
            200 => {
                seen.admitted += 1;
                seen.last_ok = rate_headers(response.headers());
            }
            429 if seen.first_refusal.is_empty() => {
                seen.first_refusal = rate_headers(response.headers());
            }
            429 => {}
            other => return Err(format!("unexpected status {other}").into()),
        }
    }
    Ok(seen)
}

/// The fleet's allowance over `elapsed`: the burst plus what refilled.
fn allowance(quota: Quota, elapsed: Duration) -> u64 {
    let interval = quota.period() / quota.per_period();
    u64::from(quota.burst_size()) + (elapsed.as_nanos() / interval.as_nanos()) as u64
}

async fn run(label: &str, stores: Option<Vec<RedisStore>>) -> Result<(), steadfast::BoxError> {
    let mut replicas = Vec::new();
    match stores {
        Some(stores) => {
            for store in stores {
                replicas.push(replica(Some(store)).await?);
            }
        }
        None => {
            for _ in 0..REPLICAS {
                replicas.push(replica(None).await?);
            }
        }
    }
    let front = front(replicas).await?;
    let started = Instant::now();
    let (free, gold) = tokio::try_join!(
        client(front, "free_alice", FREE_CALLS),
        client(front, "gold_bob", GOLD_CALLS)
    )?;
    let elapsed = started.elapsed();
    println!("\n== {label}");
    for (tier, quota, seen, calls) in [
        ("free", FREE, &free, FREE_CALLS),
        ("gold", GOLD, &gold, GOLD_CALLS),
    ] {
        let allowed = allowance(quota, elapsed);
        println!(
            "{tier:<5} admitted {:>3} of {calls:>3} calls; the tier allows {allowed:>3} fleet-wide in this run ({:.1}x)",
            seen.admitted,
            seen.admitted as f64 / allowed as f64
        );
    }
    println!("headers of free_alice's last admitted call:");
    for h in &free.last_ok {
        println!("    {h}");
    }
    println!("headers of free_alice's first refusal:");
    for h in &free.first_refusal {
        println!("    {h}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), steadfast::BoxError> {
    run(
        "in-process store (the default): each replica grants the whole tier",
        None,
    )
    .await?;

    let redis = Redis::start()?;
    let stores = |namespace: &'static str, consistency: Consistency| {
        (0..REPLICAS)
            .map(|_| {
                RedisStore::builder(redis.url())
                    .namespace(namespace)
                    .consistency(consistency)
                    .on_failure(FailMode::Local {
                        replicas: REPLICAS as u32,
                    })
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
    };
    run(
        "Redis store, Exact: one script call per call",
        Some(stores("exact", Consistency::Exact)?),
    )
    .await?;
    run(
        "Redis store, Leased { batch: 5 }: permits leased five at a time",
        Some(stores("leased", Consistency::Leased { batch: 5 })?),
    )
    .await?;
    drop(redis);
    Ok(())
}
