//! The rate limiter on its two stores, in one run: per-call cost of the
//! in-process store, Redis `Exact` and Redis `Leased`, as ratios; Redis
//! round trips per 1,000 calls; calls per second from 4 concurrent
//! replicas; and over-admission of 4 replicas sharing one tier.
//!
//! Round trips and over-admission are counts and hold on any machine;
//! the timings are only meaningful on a quiet one.
//!
//! Starts its own `redis-server` on a free port of 127.0.0.1.
//! Run: `cargo bench -p steadfast-benches --features redis --bench redis`

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use steadfast::BoxError;
use steadfast::rate_limit::{ByKey, Consistency, Quota, RateLimitLayer, RedisStore};
use tower::{Layer, Service, ServiceExt, service_fn};

struct Redis {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Redis {
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = std::env::temp_dir().join(format!("steadfast-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .args(["--dir", dir.to_str()?])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut lines = BufReader::new(child.stdout.take()?).lines();
        let redis = Self { child, port, dir };
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Ready to accept connections") => break,
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Some(redis)
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

type Layered = RateLimitLayer<String, ByKey<fn(&String) -> String>>;

#[allow(clippy::ptr_arg)] // The key function takes the key type by reference.
fn key(k: &String) -> String {
    k.clone()
}

fn ok(_: String) -> std::future::Ready<Result<(), BoxError>> {
    std::future::ready(Ok(()))
}

fn layer(quota: Quota, store: Option<RedisStore>) -> Layered {
    let builder = RateLimitLayer::builder()
        .quota(quota)
        .key(key as fn(&String) -> String);
    match store {
        Some(store) => builder.store(store).build().expect("valid"),
        None => builder.build().expect("valid"),
    }
}

fn store(redis: &Redis, namespace: &str, consistency: Consistency) -> RedisStore {
    RedisStore::builder(redis.url())
        .namespace(namespace.to_owned())
        .consistency(consistency)
        .timeout(Duration::from_secs(1))
        .build()
        .expect("valid")
}

/// `calls` sequential calls of one key; answers (time per call, admitted).
async fn sequential(layer: &Layered, calls: usize) -> (Duration, usize) {
    let mut service = layer.layer(service_fn(ok as fn(String) -> _));
    let key = "client".to_owned();
    let started = Instant::now();
    let mut admitted = 0;
    for _ in 0..calls {
        let ready = service.ready().await.expect("ready");
        admitted += usize::from(ready.call(key.clone()).await.is_ok());
    }
    (started.elapsed() / calls as u32, admitted)
}

/// Four replicas, each sending `calls` calls of one key, 16 in flight at a
/// time; answers (calls per second, admitted).
async fn fleet(layers: Vec<Layered>, calls: usize) -> (f64, usize) {
    let started = Instant::now();
    let replicas = layers.into_iter().map(|layer| async move {
        let service = layer.layer(service_fn(ok as fn(String) -> _));
        let mut admitted = 0;
        for _ in 0..calls / 16 {
            let wave = (0..16).map(|_| service.clone().oneshot("client".to_owned()));
            admitted += futures::future::join_all(wave)
                .await
                .into_iter()
                .filter(Result::is_ok)
                .count();
        }
        admitted
    });
    let admitted: usize = futures::future::join_all(replicas).await.into_iter().sum();
    let total = (calls / 16 * 16 * 4) as f64;
    (total / started.elapsed().as_secs_f64(), admitted)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("redis: bench");
        return;
    }
    let Some(redis) = Redis::start() else {
        eprintln!("redis-server not found: apt-get install redis-server");
        std::process::exit(1);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        // Every call passes: the cost of deciding, not of refusing.
        let open = Quota::per_second(1_000_000);
        let calls = 5_000;
        let local = layer(open, None);
        let exact = layer(open, Some(store(&redis, "b-exact", Consistency::Exact)));
        let leased = layer(
            open,
            Some(store(&redis, "b-leased", Consistency::Leased { batch: 50 })),
        );
        // Warm up the connections and the script cache.
        sequential(&exact, 100).await;
        sequential(&leased, 100).await;
        let (t_local, _) = sequential(&local, calls).await;
        let before = (
            exact.handle().store_round_trips(),
            leased.handle().store_round_trips(),
        );
        let (t_exact, _) = sequential(&exact, calls).await;
        let (t_leased, _) = sequential(&leased, calls).await;
        let trips_exact = exact.handle().store_round_trips() - before.0;
        let trips_leased = leased.handle().store_round_trips() - before.1;
        println!("per-call cost, {calls} sequential calls of one key:");
        println!("  local            {t_local:>10.2?}   1.0x");
        let ratio = |t: Duration| t.as_secs_f64() / t_local.as_secs_f64();
        println!(
            "  redis exact      {t_exact:>10.2?}   {:.1}x",
            ratio(t_exact)
        );
        println!(
            "  redis leased(50) {t_leased:>10.2?}   {:.1}x",
            ratio(t_leased)
        );
        println!("redis round trips per 1,000 calls:");
        println!(
            "  exact            {:>6}",
            trips_exact * 1000 / calls as u64
        );
        println!(
            "  leased(50)       {:>6}",
            trips_leased * 1000 / calls as u64
        );

        let per_replica = 4_000;
        println!("calls per second, 4 replicas x {per_replica} calls, 16 in flight each:");
        for (name, consistency) in [
            ("exact", Consistency::Exact),
            ("leased(50)", Consistency::Leased { batch: 50 }),
        ] {
            let layers = (0..4)
                .map(|_| layer(open, Some(store(&redis, &format!("t-{name}"), consistency))))
                .collect();
            let (rate, _) = fleet(layers, per_replica).await;
            println!("  redis {name:<11}{rate:>10.0}/s");
        }
        let layers = (0..4).map(|_| layer(open, None)).collect();
        let (rate, _) = fleet(layers, per_replica).await;
        println!("  local            {rate:>10.0}/s");

        // A tier that refills once a day: admitted beyond 1,000 is
        // over-admission.
        let tier = Quota::new(1_000, Duration::from_secs(86_400));
        println!("over-admission, 4 replicas x {per_replica} calls, one tier of 1,000:");
        let local: Vec<_> = (0..4).map(|_| layer(tier, None)).collect();
        let (_, admitted) = fleet(local, per_replica).await;
        println!(
            "  local            admitted {admitted:>5}  ({:+})",
            admitted as i64 - 1000
        );
        for (name, consistency) in [
            ("exact", Consistency::Exact),
            ("leased(50)", Consistency::Leased { batch: 50 }),
        ] {
            let layers = (0..4)
                .map(|_| layer(tier, Some(store(&redis, &format!("o-{name}"), consistency))))
                .collect();
            let (_, admitted) = fleet(layers, per_replica).await;
            let bound = match consistency {
                Consistency::Leased { batch } => format!("; bound +{}", 4 * batch),
                _ => String::new(),
            };
            println!(
                "  redis {name:<11}admitted {admitted:>5}  ({:+}{bound})",
                admitted as i64 - 1000
            );
        }
    });
    drop(redis);
}
