//! What the calls measured: per-phase figures, recovery, the targets, the
//! table, the JSON line and the SVG chart.

use std::fmt::Write as _;
use std::time::Duration;

use crate::backend::PHASES;
use crate::clients::Outcome;
use crate::{OPEN_DURATION, WINDOW};

/// One call as measured: when it started (since its phase began), how long
/// it took, and how it ended.
#[derive(Clone, Copy)]
pub(crate) struct Call {
    pub(crate) start: Duration,
    pub(crate) took: Duration,
    pub(crate) outcome: Outcome,
}

/// What one client got in one phase.
pub(crate) struct PhaseStats {
    pub(crate) calls: Vec<Call>,
    pub(crate) backend_requests: u64,
    /// When the breaker opened, from the start of the phase, if it did.
    pub(crate) opened_at: Option<Duration>,
}

impl PhaseStats {
    pub(crate) fn success_rate(&self) -> f64 {
        let ok = self.calls.iter().filter(|c| c.outcome.ok).count();
        ok as f64 / self.calls.len().max(1) as f64
    }

    pub(crate) fn fallbacks(&self) -> usize {
        self.calls.iter().filter(|c| c.outcome.fallback).count()
    }

    /// Latency percentile in ms, over every call (failed ones included).
    pub(crate) fn percentile(&self, p: f64) -> f64 {
        percentile(self.calls.iter(), p)
    }

    /// The same, over the calls that started `from` or later in the phase.
    pub(crate) fn percentile_from(&self, p: f64, from: Duration) -> f64 {
        percentile(self.calls.iter().filter(|c| c.start >= from), p)
    }

    pub(crate) fn requests_per_call(&self) -> f64 {
        self.backend_requests as f64 / self.calls.len().max(1) as f64
    }

    /// Time from the start of this phase until calls get real answers
    /// again (not the fallback's): the calls that ended within the phase's
    /// `length` are ordered by start, the first window of `WINDOW` calls of
    /// which 99 % or more got real answers is found, and the answer is when
    /// the last call without one before it ended (zero if there was none).
    /// `None` if no window passes. Calls still running at the phase's end
    /// are left out: they meet the next phase's faults.
    pub(crate) fn recovery(&self, length: Duration) -> Option<Duration> {
        let mut calls: Vec<Call> = self
            .calls
            .iter()
            .filter(|c| c.start + c.took <= length)
            .copied()
            .collect();
        calls.sort_by_key(|c| c.start);
        let real = |c: &Call| c.outcome.ok && !c.outcome.fallback;
        let bad: Vec<usize> = calls.iter().map(|c| usize::from(!real(c))).collect();
        if bad.len() < WINDOW {
            return None;
        }
        let allowed = WINDOW / 100; // ≥ 99 % of the window get real answers
        let mut failures: usize = bad[..WINDOW].iter().sum();
        let mut first = 0;
        while failures > allowed {
            if first + WINDOW >= bad.len() {
                return None;
            }
            failures = failures + bad[first + WINDOW] - bad[first];
            first += 1;
        }
        let last_failure = calls[..first]
            .iter()
            .filter(|c| !real(c))
            .map(|c| c.start + c.took)
            .max();
        Some(last_failure.unwrap_or(Duration::ZERO))
    }
}

fn percentile<'a>(calls: impl Iterator<Item = &'a Call>, p: f64) -> f64 {
    let mut took: Vec<Duration> = calls.map(|c| c.took).collect();
    took.sort_unstable();
    let rank = ((p * took.len() as f64).ceil() as usize).clamp(1, took.len().max(1));
    took.get(rank - 1).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// How long the phase at `index` took to recover, if it did.
fn recovery(phases: &[PhaseStats], index: usize) -> Option<Duration> {
    let length = PHASES.get(index)?.length;
    phases.get(index)?.recovery(length)
}

/// The figures of outage phases are also taken after this much of it.
const SETTLED: Duration = Duration::from_secs(1);

/// The phases that end an outage, with the phase after each.
fn outages() -> impl Iterator<Item = (usize, usize)> {
    PHASES
        .iter()
        .enumerate()
        .filter(|(i, p)| p.outage && i + 1 < PHASES.len())
        .map(|(i, _)| (i, i + 1))
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or("never".to_owned(), |d| d.as_millis().to_string())
}

/// The table: per client and phase, then recovery per client and outage.
pub(crate) fn table(results: &Results<'_>) {
    println!(
        "\n{:<18} {:<10} {:>6} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8}",
        "client",
        "phase",
        "calls",
        "success",
        "p50 ms",
        "p99 ms",
        "p99 >1s",
        "req/call",
        "fallback",
        "open at"
    );
    for (name, phases) in results {
        for (phase, stats) in PHASES.iter().zip(phases) {
            let settled = if phase.outage {
                format!("{:.1}", stats.percentile_from(0.99, SETTLED))
            } else {
                "-".to_owned()
            };
            let opened = match (name, stats.opened_at) {
                (&"bare reqwest", _) => "-".to_owned(),
                (_, opened) => opt_ms(opened),
            };
            println!(
                "{:<18} {:<10} {:>6} {:>8.2}% {:>8.1} {:>8.1} {:>9} {:>8.2} {:>8} {:>8}",
                name,
                phase.name,
                stats.calls.len(),
                stats.success_rate() * 100.0,
                stats.percentile(0.50),
                stats.percentile(0.99),
                settled,
                stats.requests_per_call(),
                stats.fallbacks(),
                opened,
            );
        }
    }
    println!(
        "\np99 >1s: p99 of the calls that started 1 s or more into the outage; \
         open at: ms into the phase\nwhen the breaker first opened. recovery: from the end \
         of each outage until real answers (not the\nfallback's) first reach 99 % of a \
         window of {WINDOW} calls (the end of the last call without one before it;\n\
         calls still running when the phase ended are left out)"
    );
    print!("  {:<18}", "");
    for (outage, _) in outages() {
        print!(" {:>10}", PHASES[outage].name);
    }
    println!();
    for (name, phases) in results {
        print!("  {name:<18}");
        for (_, after) in outages() {
            print!(" {:>7} ms", opt_ms(recovery(phases, after)));
        }
        println!();
    }
}

pub(crate) type Results<'a> = [(&'a str, Vec<PhaseStats>)];

fn phase<'a>(results: &'a Results<'_>, client: usize, name: &str) -> Option<&'a PhaseStats> {
    let index = PHASES.iter().position(|p| p.name == name)?;
    results.get(client)?.1.get(index)
}

fn verdict(pass: bool) -> &'static str {
    if pass { "met" } else { "NOT met" }
}

/// The targets, measured (not asserted).
pub(crate) fn targets(results: &Results<'_>) {
    println!("\ntargets (measured, not asserted):");
    for (outage, _) in outages() {
        let kind = PHASES[outage].name;
        let figures: Vec<String> = (1..results.len())
            .filter_map(|client| {
                let stats = results[client].1.get(outage)?;
                Some(format!(
                    "{} {:.2}",
                    results[client].0,
                    stats.requests_per_call()
                ))
            })
            .collect();
        let pass = (1..results.len()).all(|client| {
            results[client]
                .1
                .get(outage)
                .is_some_and(|s| s.requests_per_call() <= 1.0)
        });
        println!(
            "  {kind}: requests per call ≤ 1.0 for every steadfast client: {} ({})",
            verdict(pass),
            figures.join(", ")
        );
    }
    let fallback = results.len() - 1;
    if let Some(o) = phase(results, fallback, "blackhole") {
        let p99 = o.percentile_from(0.99, SETTLED);
        println!(
            "  blackhole, cached fallback, p99 after the first second ≤ 100 ms: {} ({p99:.1} ms)",
            verdict(p99 <= 100.0)
        );
    }
    for (outage, _) in outages() {
        if let Some(o) = results[fallback].1.get(outage) {
            let rate = o.success_rate() * 100.0;
            println!(
                "  {}, cached fallback, success ≥ 99.9 %: {} ({rate:.2} %)",
                PHASES[outage].name,
                verdict(rate >= 99.9)
            );
        }
    }
    if let Some(bare) = phase(results, 0, "brownout") {
        for client in 1..results.len() {
            if let Some(b) = phase(results, client, "brownout") {
                println!(
                    "  brownout, {} success ≥ bare's ({:.2} %): {} ({:.2} %)",
                    results[client].0,
                    bare.success_rate() * 100.0,
                    verdict(b.success_rate() >= bare.success_rate()),
                    b.success_rate() * 100.0
                );
            }
        }
    }
    let limit = OPEN_DURATION + Duration::from_secs(1);
    for (name, phases) in &results[1..] {
        let recovery = |after: usize| recovery(phases, after);
        let figures: Vec<String> = outages()
            .map(|(outage, after)| format!("{} {}", PHASES[outage].name, opt_ms(recovery(after))))
            .collect();
        let pass = outages().all(|(_, after)| recovery(after).is_some_and(|r| r <= limit));
        println!(
            "  {name}, recovery ≤ open duration + 1 s ({} ms): {} ({} ms)",
            limit.as_millis(),
            verdict(pass),
            figures.join(", ")
        );
    }
    if let (Some(bare), Some(hedged)) = (
        phase(results, 0, "long tail"),
        phase(results, 2, "long tail"),
    ) {
        println!(
            "  hedging, long-tail p99 vs bare ({:.1} ms): {:.1} ms = {:.2} of bare, \
             {:+.1} % backend requests vs bare",
            bare.percentile(0.99),
            hedged.percentile(0.99),
            hedged.percentile(0.99) / bare.percentile(0.99).max(f64::MIN_POSITIVE),
            (hedged.requests_per_call() / bare.requests_per_call().max(f64::MIN_POSITIVE) - 1.0)
                * 100.0
        );
    }
}

/// One JSON object: clients → phases (in order) → figures, plus
/// `recovery_ms` per outage.
pub(crate) fn to_json(results: &Results<'_>) -> String {
    let json_ms = |d: Option<Duration>| d.map_or("null".to_owned(), |d| d.as_millis().to_string());
    let mut out = String::from("{\"clients\":{");
    for (c, (name, phases)) in results.iter().enumerate() {
        let _ = write!(
            out,
            "{}\"{name}\":{{\"phases\":[",
            if c > 0 { "," } else { "" }
        );
        for (p, (phase, stats)) in PHASES.iter().zip(phases).enumerate() {
            let _ = write!(
                out,
                "{}{{\"name\":\"{}\",\"outage\":{},\"calls\":{},\"success_rate\":{:.5},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"p99_after_1s_ms\":{:.2},\"requests_per_call\":{:.3},\"fallbacks\":{},\"breaker_opened_ms\":{}}}",
                if p > 0 { "," } else { "" },
                phase.name,
                phase.outage,
                stats.calls.len(),
                stats.success_rate(),
                stats.percentile(0.50),
                stats.percentile(0.99),
                stats.percentile_from(0.99, SETTLED),
                stats.requests_per_call(),
                stats.fallbacks(),
                json_ms(stats.opened_at),
            );
        }
        out.push_str("],\"recovery_ms\":{");
        for (i, (outage, after)) in outages().enumerate() {
            let _ = write!(
                out,
                "{}\"{}\":{}",
                if i > 0 { "," } else { "" },
                PHASES[outage].name,
                json_ms(recovery(phases, after))
            );
        }
        out.push_str("}}");
    }
    out.push_str("}}");
    out
}

/// A small bar chart of p99 latency per phase and client (log scale).
pub(crate) fn chart(results: &Results<'_>) -> String {
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
