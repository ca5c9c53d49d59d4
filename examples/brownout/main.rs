//! The brownout demo: four clients call the same kind of backend through a
//! timeline of outages and brownouts, and the numbers show what each one
//! gets.
//!
//! Each client has its own axum backend on a real socket on 127.0.0.1
//! (same routes, same seeded faults) and 32 callers, each making one call
//! at a time, at most one per 25 ms. The timeline:
//!
//! healthy (30 s, filling the breaker's window) → blackhole → recovery
//! (30 s) → reset → recovery (30 s) → 503 + Retry-After → recovery →
//! brownout → long tail
//!
//! The clients are a bare reqwest `Client`, reqwest wrapped in
//! `Policy::standard_http_client().total_timeout(2 s)` with nothing else
//! set, the same with hedging, and the same under a cached fallback with a
//! 100 ms latency budget. The clients run at the same time, each against
//! its own backend.
//!
//! Run: `cargo run --release --all-features --example brownout [-- --json] [--svg FILE]`

mod backend;
mod clients;
mod report;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use steadfast::BoxError;
use steadfast::circuit_breaker::State;
use tokio::time::{Instant, MissedTickBehavior};

use self::backend::{Backend, PHASES, backend, ms};
use self::clients::{Client, Outcome, bare, with_fallback, with_hedging, with_policy};
use self::report::{Call, PhaseStats};

/// Callers per client, each with one call at a time.
const CALLERS: usize = 32;
/// Each caller starts a call at most every `PACE` (later if a call is slow).
const PACE: Duration = ms(25);
/// The total timeout of one logical call, the same for every client.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// The cached fallback's latency budget.
const STALE_AFTER: Duration = ms(100);
/// The standard breaker's open duration, for the recovery target.
const OPEN_DURATION: Duration = Duration::from_secs(5);
/// Routes × ids: the bounded set of keys, so a cache can be warm.
const ROUTES: [&str; 3] = ["items", "prices", "stock"];
const IDS: usize = 32;
/// Recovery is judged over this many consecutive calls.
const WINDOW: usize = 100;

/// When each phase starts, from the start of the timeline; and its end.
fn starts() -> (Vec<Duration>, Duration) {
    let mut at = Duration::ZERO;
    let starts = PHASES
        .iter()
        .map(|phase| {
            let start = at;
            at += phase.length;
            start
        })
        .collect();
    (starts, at)
}

/// Runs the whole timeline for one client against its own backend.
async fn timeline(client: Client, backend: Backend) -> Vec<PhaseStats> {
    let (starts, end) = starts();
    let starts = Arc::new(starts);
    let began = Instant::now();
    let backend = Arc::new(backend);

    // Switches the faults at each phase's start and reads the request
    // counter there.
    let switch = {
        let (backend, starts) = (backend.clone(), starts.clone());
        tokio::spawn(async move {
            let mut counts = Vec::with_capacity(PHASES.len());
            for (index, start) in starts.iter().enumerate() {
                tokio::time::sleep_until(began + *start).await;
                counts.push(backend.requests.load(Ordering::Relaxed));
                backend.enter(index);
            }
            counts
        })
    };
    // Notes when the breaker opens.
    let watch = client.breaker.clone().map(|breaker_of| {
        let breaker = breaker_of(&backend.addr.to_string());
        tokio::spawn(async move {
            let mut opened = Vec::new();
            let mut last = State::Closed;
            let mut tick = tokio::time::interval(ms(5));
            while began.elapsed() < end {
                tick.tick().await;
                let state = breaker.state();
                if state == State::Open && last != State::Open {
                    opened.push(began.elapsed());
                }
                last = state;
            }
            opened
        })
    });
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (client, starts, backend) = (client.clone(), starts.clone(), backend.clone());
            let addr = backend.addr;
            tokio::spawn(async move {
                let first = began + PACE * caller as u32 / CALLERS as u32;
                let mut pace = tokio::time::interval_at(first, PACE);
                pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let mut calls = Vec::new();
                for i in 0.. {
                    pace.tick().await;
                    let at = began.elapsed();
                    if at >= end {
                        break;
                    }
                    let phase = backend.phase();
                    let key = (caller * 7 + i * 13) % (ROUTES.len() * IDS);
                    let url = format!("http://{addr}/{}/{}", ROUTES[key % 3], key / 3);
                    let start = Instant::now();
                    // A guard only: every client gives up by CALL_TIMEOUT itself.
                    let outcome = tokio::time::timeout(CALL_TIMEOUT + ms(500), (client.call)(url))
                        .await
                        .unwrap_or(Outcome::FAILED);
                    let call = Call {
                        start: at.saturating_sub(starts[phase]),
                        took: start.elapsed(),
                        outcome,
                    };
                    calls.push((phase, call));
                }
                calls
            })
        })
        .collect();
    let mut per_phase: Vec<Vec<Call>> = PHASES.iter().map(|_| Vec::new()).collect();
    for caller in callers {
        for (phase, call) in caller.await.unwrap_or_default() {
            per_phase[phase].push(call);
        }
    }
    let mut counts = switch.await.unwrap_or_default();
    counts.push(backend.requests.load(Ordering::Relaxed));
    backend.heal();
    let opened = match watch {
        Some(watch) => watch.await.unwrap_or_default(),
        None => Vec::new(),
    };
    per_phase
        .into_iter()
        .enumerate()
        .map(|(index, calls)| {
            let (start, length) = (starts[index], PHASES[index].length);
            PhaseStats {
                calls,
                backend_requests: counts.get(index + 1).copied().unwrap_or(0)
                    - counts.get(index).copied().unwrap_or(0),
                opened_at: opened
                    .iter()
                    .find(|at| **at >= start && **at < start + length)
                    .map(|at| *at - start),
            }
        })
        .collect()
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
    let (_, end) = starts();
    println!(
        "{CALLERS} callers per client, one call at a time, at most one per {} ms; \
         total timeout {} ms; cached fallback after {} ms;",
        PACE.as_millis(),
        CALL_TIMEOUT.as_millis(),
        STALE_AFTER.as_millis(),
    );
    println!("success = a 2xx answer read to its end, real or from the fallback cache;");
    println!("latency over every call, failed ones included; req/call = requests that");
    println!("reached the backend per logical call (refused or cached calls send none).");
    println!("\ntimeline ({} s):", end.as_secs());
    for phase in &PHASES {
        println!(
            "  {:<10} {:>5.1} s   {}",
            phase.name,
            phase.length.as_secs_f64(),
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
