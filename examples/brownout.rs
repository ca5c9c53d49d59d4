//! The brownout demo: four clients call the same kind of backend through a
//! timeline of faults, and the numbers show what each one gets.
//!
//! Each client has its own axum backend on 127.0.0.1 (same routes, same
//! seeded faults, switched by a `ChaosLayer` handle on the server side) and
//! drives the same bounded load through the phases
//!
//! healthy → brownout → long tail → outage → recovery
//!
//! The clients are a bare reqwest `Client`, reqwest wrapped in the standard
//! policy, the same with hedging, and the same with a cached fallback. The
//! clients run at the same time, each against its own backend.
//!
//! Run: `cargo run --release --all-features --example brownout [-- --json] [--svg FILE]`

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use steadfast::BoxError;
use steadfast::chaos::{ChaosHandle, ChaosLayer};
use steadfast::circuit_breaker::{CircuitBreakerBuilder, CircuitBreakerLayer};
use steadfast::fallback::{FallbackCache, FallbackLayer, FallbackSource};
use steadfast::hedge::HedgeLayer;
use steadfast::http::HttpClassifier;
use steadfast::policy::{Policy, PolicyBuilder};
use steadfast::retry::{Backoff, Jitter, RetryLayer};
use tokio::time::{Instant, MissedTickBehavior};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

/// Concurrent workers per client.
const WORKERS: usize = 16;
/// Each worker starts a call at most every `PACE` (later if a call is slow).
const PACE: Duration = Duration::from_millis(50);
/// The longest any client waits for one logical call, retries included.
const CALL_TIMEOUT: Duration = Duration::from_millis(1_500);
/// The demo runs the standard policy's settings 20 times faster: 30 s
/// total timeout → 1.5 s, 10 s attempt timeout → 500 ms, and so on.
const SCALE: u32 = 20;
/// Routes × ids: the bounded set of keys, so a cache can be warm.
const ROUTES: [&str; 3] = ["items", "prices", "stock"];
const IDS: usize = 32;
/// Recovery is judged over this many consecutive calls.
const WINDOW: usize = 100;

/// A phase of the timeline: its name, calls per worker, and the faults the
/// backend injects during it.
struct Phase {
    name: &'static str,
    what: &'static str,
    calls_per_worker: usize,
    faults: fn(&ChaosHandle) -> Result<(), steadfast::ConfigError>,
}

const PHASES: [Phase; 5] = [
    Phase {
        name: "healthy",
        what: "no faults",
        calls_per_worker: 40,
        faults: |_| Ok(()),
    },
    Phase {
        name: "brownout",
        what: "10 % 503 + Retry-After: 1, 10 % slowed 200-500 ms",
        calls_per_worker: 60,
        // 10 % answered 503 with Retry-After: 1, 10 % slowed by 200-500 ms.
        faults: |h| {
            h.set_respond_rate(0.10)?;
            h.set_latency(0.10, ms(200), ms(500))
        },
    },
    Phase {
        name: "long tail",
        what: "5 % of calls take 1 s",
        calls_per_worker: 60,
        // 5 % of calls take 1 s.
        faults: |h| h.set_latency(0.05, ms(1_000), ms(1_000)),
    },
    Phase {
        name: "outage",
        what: "90 % 503 + Retry-After: 1, 10 % never answered",
        calls_per_worker: 40,
        // Every call fails: 90 % answered 503, 10 % never answered.
        faults: |h| {
            h.set_respond_rate(0.90)?;
            h.set_hang_rate(0.10)
        },
    },
    Phase {
        name: "recovery",
        what: "no faults",
        calls_per_worker: 60,
        faults: |_| Ok(()),
    },
];

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One backend: its address, its fault switch, and how many requests
/// reached it.
struct Backend {
    addr: SocketAddr,
    chaos: ChaosHandle,
    requests: Arc<AtomicU64>,
}

async fn backend() -> Result<Backend, BoxError> {
    let chaos = ChaosLayer::builder()
        .respond(0.0, || {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "busy",
            )
                .into_response()
        })
        .seed(2026)
        .build()?;
    let handle = chaos.handle();
    let requests = Arc::new(AtomicU64::new(0));
    let counted = requests.clone();
    let answer = |kind: &'static str| {
        get(move |Path(id): Path<u32>| async move {
            format!(
                "{{\"kind\":\"{kind}\",\"id\":{id},\"value\":{}}}",
                id * 7 + 3
            )
        })
    };
    let app = Router::new()
        .route("/items/{id}", answer("item"))
        .route("/prices/{id}", answer("price"))
        .route("/stock/{id}", answer("stock"))
        .layer(
            ServiceBuilder::new()
                // Every request that reaches the backend is counted, faulted or not.
                .map_request(move |request: axum::extract::Request| {
                    counted.fetch_add(1, Ordering::Relaxed);
                    request
                })
                .layer(HandleErrorLayer::new(|_: BoxError| async {
                    StatusCode::INTERNAL_SERVER_ERROR
                }))
                .layer(chaos),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Backend {
        addr,
        chaos: handle,
        requests,
    })
}

/// The outcome of one logical call: a 2xx answer read to its end (real, or
/// from the fallback), or not.
#[derive(Clone, Copy)]
struct Outcome {
    ok: bool,
    fallback: bool,
}

/// A client: sends `GET url` and reports the outcome.
type Client = Arc<dyn Fn(String) -> BoxFuture<'static, Outcome> + Send + Sync>;

fn reqwest_client() -> Result<reqwest::Client, BoxError> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(CALL_TIMEOUT)
        .build()?)
}

/// The standard breaker (10 % failures over the window, once 100 calls
/// were seen; open 5 s, 1 probe) on the demo's time scale.
fn breaker() -> CircuitBreakerBuilder {
    CircuitBreakerLayer::builder()
        .time_window(Duration::from_secs(30) / SCALE, 30)
        .failure_rate_threshold(10.0)
        .minimum_calls(100)
        .open_duration(Duration::from_secs(5) / SCALE)
        .half_open_probes(1)
}

/// `Policy::standard_http_client()` on the demo's time scale: same retry
/// rules (4 attempts, exponential backoff with full jitter, `Retry-After`
/// honoured), same retry budget, same breaker.
fn standard() -> PolicyBuilder<HttpClassifier, steadfast::http::HttpReplay> {
    Policy::standard_http_client()
        .total_timeout(CALL_TIMEOUT)
        .retry(
            RetryLayer::builder().max_attempts(4).backoff(
                Backoff::exponential(Duration::from_secs(2) / SCALE)
                    .cap(Duration::from_secs(8) / SCALE)
                    .jitter(Jitter::Full),
            ),
        )
        .circuit_breaker(breaker())
        .attempt_timeout(Duration::from_secs(10) / SCALE)
}

async fn read(response: reqwest::Response) -> Outcome {
    let ok = response.status().is_success() && response.bytes().await.is_ok();
    Outcome {
        ok,
        fallback: false,
    }
}

fn bare() -> Result<Client, BoxError> {
    let client = reqwest_client()?;
    Ok(Arc::new(move |url: String| {
        let client = client.clone();
        Box::pin(async move {
            match client.get(url).send().await {
                Ok(response) => read(response).await,
                Err(_) => Outcome {
                    ok: false,
                    fallback: false,
                },
            }
        })
    }))
}

/// Sends `GET url` through `service`, a `Service<reqwest::Request>`.
fn through<S>(service: S) -> Client
where
    S: tower::Service<reqwest::Request, Response = reqwest::Response, Error = BoxError>,
    S: Clone + Send + Sync + 'static,
    S::Future: Send,
{
    Arc::new(move |url: String| {
        let service = service.clone();
        Box::pin(async move {
            let Ok(url) = url.parse() else {
                return Outcome {
                    ok: false,
                    fallback: false,
                };
            };
            let request = reqwest::Request::new(reqwest::Method::GET, url);
            match service.oneshot(request).await {
                Ok(response) => read(response).await,
                Err(_) => Outcome {
                    ok: false,
                    fallback: false,
                },
            }
        })
    })
}

fn with_policy() -> Result<Client, BoxError> {
    let policy = standard().build()?;
    Ok(through(policy.layer(reqwest_client()?)))
}

/// Hedging in the standard order: total deadline → bulkhead → retry →
/// hedge → breaker → attempt timeout; hedges draw on the retry budget.
fn with_hedging() -> Result<Client, BoxError> {
    let outer = standard()
        .no_circuit_breaker()
        .no_attempt_timeout()
        .build()?;
    let mut hedge = HedgeLayer::builder()
        .classifier(HttpClassifier::new())
        .replay(steadfast::http::HttpReplay::new())
        // Hedge at most the slowest 10 % of calls, never before 20 ms.
        .latency_percentile(0.10, ms(20));
    if let Some(budget) = outer.retry_budget() {
        hedge = hedge.budget(budget.clone());
    }
    let inner = Policy::builder()
        .classifier(HttpClassifier::new())
        .replay(steadfast::http::HttpReplay::new())
        .circuit_breaker(breaker())
        .attempt_timeout(Duration::from_secs(10) / SCALE)
        .build()?;
    let service = outer.layer(hedge.build()?.layer(inner.layer(reqwest_client()?)));
    Ok(through(service))
}

/// The standard policy under a fallback to cached answers (stale-if-error),
/// outermost. The fallback works on `http::Request`, so reqwest is adapted.
fn with_fallback() -> Result<Client, BoxError> {
    let policy = standard().build()?;
    let inner = policy.layer(reqwest_client()?);
    let adapted = service_fn(move |request: http::Request<String>| {
        let inner = inner.clone();
        async move {
            let request = reqwest::Request::try_from(request).map_err(BoxError::from)?;
            match inner.oneshot(request).await {
                Ok(response) => Ok(http::Response::<reqwest::Body>::from(response)),
                Err(err) => Err::<_, BoxError>(err),
            }
        }
    });
    let fallback = FallbackLayer::builder()
        .cache(FallbackCache::http().capacity(1_000).build()?)
        .classifier(HttpClassifier::new())
        .http()
        .build()?;
    // Boxed: names the response future's type once, so it is known to be `Send`.
    let service = tower::util::BoxCloneSyncService::new(fallback.layer(adapted));
    Ok(Arc::new(move |url: String| {
        let service = service.clone();
        Box::pin(async move {
            let failed = Outcome {
                ok: false,
                fallback: false,
            };
            let Ok(request) = http::Request::get(url).body(String::new()) else {
                return failed;
            };
            match service.oneshot(request).await {
                Ok(response) => {
                    let fallback = response.extensions().get::<FallbackSource>().is_some();
                    let ok = response.status().is_success()
                        && response.into_body().collect().await.is_ok();
                    Outcome { ok, fallback }
                }
                Err(_) => failed,
            }
        })
    }))
}

/// One call as measured: when it started (since its phase began), how long
/// it took, and how it ended.
#[derive(Clone, Copy)]
struct Call {
    start: Duration,
    took: Duration,
    outcome: Outcome,
}

/// What one client got in one phase.
struct PhaseStats {
    calls: Vec<Call>,
    took: Duration,
    backend_requests: u64,
}

impl PhaseStats {
    fn success_rate(&self) -> f64 {
        let ok = self.calls.iter().filter(|c| c.outcome.ok).count();
        ok as f64 / self.calls.len().max(1) as f64
    }

    fn fallbacks(&self) -> usize {
        self.calls.iter().filter(|c| c.outcome.fallback).count()
    }

    /// Latency percentile in ms, over every call (failed ones included).
    fn percentile(&self, p: f64) -> f64 {
        let mut took: Vec<Duration> = self.calls.iter().map(|c| c.took).collect();
        took.sort_unstable();
        let rank = ((p * took.len() as f64).ceil() as usize).clamp(1, took.len().max(1));
        took.get(rank - 1).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    fn amplification(&self) -> f64 {
        self.backend_requests as f64 / self.calls.len().max(1) as f64
    }

    /// Time from the start of this phase until the success rate is back
    /// at or above 99 % for good: the calls are ordered by start, the first
    /// window of `WINDOW` calls from which on every window passes is found,
    /// and the answer is when the last failed call before it ended (zero if
    /// none failed). `None` if the last window fails.
    fn recovery(&self) -> Option<Duration> {
        let mut calls = self.calls.clone();
        calls.sort_by_key(|c| c.start);
        let bad: Vec<usize> = calls.iter().map(|c| usize::from(!c.outcome.ok)).collect();
        if bad.len() < WINDOW {
            return None;
        }
        let allowed = WINDOW / 100; // ≥ 99 % of the window succeed
        let mut failures: usize = bad[bad.len() - WINDOW..].iter().sum();
        if failures > allowed {
            return None;
        }
        // Walk windows backwards while they still pass.
        let mut first = bad.len() - WINDOW;
        while first > 0 {
            failures = failures + bad[first - 1] - bad[first + WINDOW - 1];
            if failures > allowed {
                break;
            }
            first -= 1;
        }
        let last_failure = calls[..first]
            .iter()
            .filter(|c| !c.outcome.ok)
            .map(|c| c.start + c.took)
            .max();
        Some(last_failure.unwrap_or(Duration::ZERO))
    }
}

/// Runs the whole timeline for one client against its own backend.
async fn timeline(client: Client, backend: Backend) -> Vec<PhaseStats> {
    let mut stats = Vec::new();
    for (index, phase) in PHASES.iter().enumerate() {
        backend.chaos.heal();
        if let Err(err) = (phase.faults)(&backend.chaos) {
            eprintln!("bad fault settings for {}: {err}", phase.name);
        }
        let before = backend.requests.load(Ordering::Relaxed);
        let began = Instant::now();
        let workers: Vec<_> = (0..WORKERS)
            .map(|worker| {
                let client = client.clone();
                let addr = backend.addr;
                tokio::spawn(async move {
                    let mut pace = tokio::time::interval(PACE);
                    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    let mut calls = Vec::with_capacity(phase.calls_per_worker);
                    for i in 0..phase.calls_per_worker {
                        pace.tick().await;
                        let key = (worker * 7 + i * 13 + index * 5) % (ROUTES.len() * IDS);
                        let url = format!("http://{addr}/{}/{}", ROUTES[key % 3], key / 3);
                        let start = Instant::now();
                        // A guard only: every client gives up by CALL_TIMEOUT itself.
                        let outcome = tokio::time::timeout(CALL_TIMEOUT + ms(500), client(url))
                            .await
                            .unwrap_or(Outcome {
                                ok: false,
                                fallback: false,
                            });
                        calls.push(Call {
                            start: start - began,
                            took: start.elapsed(),
                            outcome,
                        });
                    }
                    calls
                })
            })
            .collect();
        let mut calls = Vec::new();
        for worker in workers {
            calls.extend(worker.await.unwrap_or_default());
        }
        stats.push(PhaseStats {
            calls,
            took: began.elapsed(),
            backend_requests: backend.requests.load(Ordering::Relaxed) - before,
        });
    }
    backend.chaos.heal();
    stats
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let svg = args
        .iter()
        .position(|a| a == "--svg")
        .and_then(|i| args.get(i + 1).cloned());

    let clients: [(&str, Client); 4] = [
        ("bare reqwest", bare()?),
        ("standard policy", with_policy()?),
        ("+ hedging", with_hedging()?),
        ("+ cached fallback", with_fallback()?),
    ];
    println!(
        "{} workers per client, one call each per {} ms at most, per-call timeout {} ms;",
        WORKERS,
        PACE.as_millis(),
        CALL_TIMEOUT.as_millis()
    );
    println!("success = a 2xx answer read to its end, real or from the fallback cache;");
    println!("latency over every call, failed ones included; amplification = requests that");
    println!("reached the backend per logical call (refused or cached calls send none).");
    println!("\ntimeline:");
    for phase in &PHASES {
        println!(
            "  {:<10} {:>4} calls   {}",
            phase.name,
            phase.calls_per_worker * WORKERS,
            phase.what
        );
    }
    let started = Instant::now();
    let mut runs = Vec::new();
    for (name, client) in &clients {
        let backend = backend().await?;
        runs.push((*name, tokio::spawn(timeline(client.clone(), backend))));
    }
    let mut results = Vec::new();
    for (name, run) in runs {
        results.push((name, run.await?));
    }

    println!(
        "\n{:<18} {:<10} {:>6} {:>9} {:>8} {:>8} {:>7} {:>9} {:>7}",
        "client", "phase", "calls", "success", "p50 ms", "p99 ms", "ampl.", "fallback", "secs"
    );
    for (name, phases) in &results {
        for (phase, stats) in PHASES.iter().zip(phases) {
            println!(
                "{:<18} {:<10} {:>6} {:>8.2}% {:>8.1} {:>8.1} {:>7.2} {:>9} {:>7.1}",
                name,
                phase.name,
                stats.calls.len(),
                stats.success_rate() * 100.0,
                stats.percentile(0.50),
                stats.percentile(0.99),
                stats.amplification(),
                stats.fallbacks(),
                stats.took.as_secs_f64()
            );
        }
    }
    println!(
        "\nrecovery: from the end of the outage until the success rate over every later \
         window of {WINDOW} calls stays ≥ 99 %\n(the end of the last failed call before that)"
    );
    for (name, phases) in &results {
        let recovery = phases.last().and_then(PhaseStats::recovery);
        match recovery {
            Some(d) => println!("  {name:<18} {:>6} ms", d.as_millis()),
            None => println!("  {name:<18}  never"),
        }
    }
    targets(&results);
    println!("\nwall time {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = svg {
        std::fs::write(&path, chart(&results))?;
        println!("chart written to {path}");
    }
    if json {
        println!("{}", to_json(&results));
    }
    Ok(())
}

type Results<'a> = [(&'a str, Vec<PhaseStats>)];

fn phase<'a>(results: &'a Results<'_>, client: usize, name: &str) -> Option<&'a PhaseStats> {
    let index = PHASES.iter().position(|p| p.name == name)?;
    results.get(client)?.1.get(index)
}

/// The targets, measured (not asserted).
fn targets(results: &Results<'_>) {
    println!("\ntargets (measured, not asserted):");
    if let (Some(b), Some(o)) = (phase(results, 3, "brownout"), phase(results, 3, "outage")) {
        let ok = b
            .calls
            .iter()
            .chain(&o.calls)
            .filter(|c| c.outcome.ok)
            .count();
        let rate = ok as f64 / (b.calls.len() + o.calls.len()).max(1) as f64 * 100.0;
        println!("  cached fallback, brownout + outage success ≥ 99.9 %: {rate:.2} %");
    }
    for client in 1..results.len() {
        if let Some(o) = phase(results, client, "outage") {
            println!(
                "  {}, outage amplification ≤ 1.2: {:.2}",
                results[client].0,
                o.amplification()
            );
        }
    }
    if let (Some(bare), Some(hedged)) = (
        phase(results, 0, "long tail"),
        phase(results, 2, "long tail"),
    ) {
        println!(
            "  hedging, long-tail p99 ≤ 1/3 of bare ({:.1} ms): {:.1} ms = {:.2} of bare, \
             {:+.1} % backend requests vs bare",
            bare.percentile(0.99),
            hedged.percentile(0.99),
            hedged.percentile(0.99) / bare.percentile(0.99).max(f64::MIN_POSITIVE),
            (hedged.amplification() / bare.amplification().max(f64::MIN_POSITIVE) - 1.0) * 100.0
        );
    }
}

/// One JSON object: clients → phases → figures, plus `recovery_ms`.
fn to_json(results: &Results<'_>) -> String {
    let mut out = String::from("{\"clients\":{");
    for (c, (name, phases)) in results.iter().enumerate() {
        let _ = write!(
            out,
            "{}\"{name}\":{{\"phases\":{{",
            if c > 0 { "," } else { "" }
        );
        for (p, (phase, stats)) in PHASES.iter().zip(phases).enumerate() {
            let _ = write!(
                out,
                "{}\"{}\":{{\"calls\":{},\"success_rate\":{:.5},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"amplification\":{:.3}}}",
                if p > 0 { "," } else { "" },
                phase.name,
                stats.calls.len(),
                stats.success_rate(),
                stats.percentile(0.50),
                stats.percentile(0.99),
                stats.amplification()
            );
        }
        let recovery = phases.last().and_then(PhaseStats::recovery);
        let recovery = recovery.map_or("null".to_owned(), |d| d.as_millis().to_string());
        let _ = write!(out, "}},\"recovery_ms\":{recovery}}}");
    }
    out.push_str("}}");
    out
}

/// A small bar chart of p99 latency per phase and client (log scale).
fn chart(results: &Results<'_>) -> String {
    const COLORS: [&str; 4] = ["#888888", "#1f77b4", "#ff7f0e", "#2ca02c"];
    let (w, h, top, bottom, left) = (760.0, 320.0, 30.0, 50.0, 60.0);
    let plot_h = h - top - bottom;
    let group = (w - left - 20.0) / PHASES.len() as f64;
    let bar = group / (results.len() as f64 + 1.0);
    // log10 scale from 1 ms to 10 s
    let y = |v: f64| top + plot_h * (1.0 - (v.max(1.0).log10() / 4.0).clamp(0.0, 1.0));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <text x=\"{left}\" y=\"18\" font-size=\"13\">p99 latency per phase (ms, log scale)</text>\n"
    );
    for (i, label) in ["1", "10", "100", "1000", "10000"].iter().enumerate() {
        let yy = top + plot_h * (1.0 - i as f64 / 4.0);
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>",
            w - 20.0,
            left - 4.0,
            yy + 4.0
        );
    }
    for (p, phase) in PHASES.iter().enumerate() {
        let x0 = left + group * p as f64;
        for (c, (_, phases)) in results.iter().enumerate() {
            let v = phases.get(p).map_or(0.0, |st| st.percentile(0.99));
            let x = x0 + bar * (c as f64 + 0.5);
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{v:.1} ms</title></rect>",
                y(v),
                bar * 0.9,
                top + plot_h - y(v),
                COLORS[c % 4]
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x0 + group / 2.0,
            h - bottom + 16.0,
            phase.name
        );
    }
    for (c, (name, _)) in results.iter().enumerate() {
        let x = left + 150.0 * c as f64;
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{name}</text>",
            h - 20.0,
            COLORS[c % 4],
            x + 14.0,
            h - 11.0
        );
    }
    s.push_str("</svg>\n");
    s
}
