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

mod backend;
mod clients;
mod report;

use std::sync::atomic::Ordering;
use std::time::Duration;

use steadfast::BoxError;
use tokio::time::{Instant, MissedTickBehavior};

use self::backend::{Backend, PHASES, backend, ms};
use self::clients::{Client, Outcome, bare, with_fallback, with_hedging, with_policy};
use self::report::{Call, PhaseStats};

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
                            .unwrap_or(Outcome::FAILED);
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

    report::table(&results);
    report::targets(&results);
    println!("\nwall time {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = svg {
        std::fs::write(&path, report::chart(&results))?;
        println!("chart written to {path}");
    }
    if json {
        println!("{}", report::to_json(&results));
    }
    Ok(())
}
